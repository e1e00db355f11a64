//! `audit.archive` in the server: the archiver runs in the background beside the writer
//! and the sealer, retention deletes only segments whose archived copy it confirmed, the
//! metrics show what was archived and what waits, and readiness fails while the backlog
//! passes `maxBacklog`. The archive is a real S3-compatible server (moto on loopback,
//! `.venv/s3`); CI sets PALISADE_REQUIRE_S3 so that a missing moto fails there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use palisade_archive::testing::{Moto, free_port};
use palisade_audit::VerifyOptions;
use palisade_server::Platform;

const MANIFEST: &str = "name: iris\nversion: \"1.0.0\"\nnamespace: ml\nowners: [alice@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\n";

/// moto's S3 server with a bucket `trails` (see `palisade_archive::testing`).
fn moto() -> Option<Moto> {
    palisade_archive::testing::moto_with_bucket("trails")
}

fn platform_yaml(port: u16, creds: &Path, extra: &str) -> String {
    format!(
        "audit:\n  segmentMaxBytes: 8192\n  checkpointEvery: 2\n  seal:\n    frameRecords: 4\n    every: 50ms\n  retention:\n    maxBytes: 1\n  archive:\n    bucket: trails\n    prefix: prod\n    endpoint: http://127.0.0.1:{port}\n    allowHttp: true\n    credentialsFile: {}\n    every: 50ms\n    requestTimeout: 2s\n{extra}",
        creds.display()
    )
}

fn credentials() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials");
    std::fs::write(&path, "[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
        .unwrap();
    (dir, path)
}

async fn admin_get(app: &TestApp, path: &str) -> (StatusCode, String) {
    let admin = palisade_server::admin_app(app.state.clone());
    let res =
        tower::ServiceExt::oneshot(admin, Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
    let status = res.status();
    let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .unwrap()
}

async fn until(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_archives_in_the_background_and_retention_deletes_only_confirmed_copies() {
    let Some(moto) = moto() else { return };
    let (_creds_dir, creds) = credentials();
    let (tmp, app) = iris_with_platform(MANIFEST, &platform_yaml(moto.port, &creds, "    maxBacklog: 0\n"));
    for _ in 0..40 {
        assert_eq!(call(&app, "POST", "/v2/models/iris/infer", IRIS_ROW).await.status, StatusCode::OK);
    }
    let archiver = app.state.audit_archiver().unwrap().clone();
    assert!(
        until(|| archiver.stats().segments >= 3
            && archiver.stats().retention_deleted >= 1
            && archiver.stats().backlog_segments == 0)
        .await,
        "{:?}",
        archiver.stats()
    );
    let (status, text) = admin_get(&app, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(metric(&text, "palisade_audit_archived_segments_total") >= 3, "{text}");
    assert!(metric(&text, "palisade_audit_archived_bytes_total") > 0);
    assert!(metric(&text, "palisade_audit_archived_checkpoint_bytes_total") > 0);
    assert!(metric(&text, "palisade_audit_retention_deleted_segments_total") >= 1);
    assert_eq!(metric(&text, "palisade_audit_archive_errors_total"), 0);
    let _ = metric(&text, "palisade_audit_archive_oldest_unarchived_seconds");
    let (status, body) = admin_get(&app, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The archive and what is left locally verify as one chain of all 40 records.
    let dir = tmp.path().join("home/audit");
    let target = palisade_archive::ArchiveTarget {
        endpoint: Some(format!("http://127.0.0.1:{}", moto.port)),
        allow_http: true,
        credentials: palisade_archive::Credentials::File(creds.clone()),
        ..palisade_archive::ArchiveTarget::from_url("s3://trails/prod").unwrap()
    };
    let archive = palisade_archive::Archive::open(&target).unwrap();
    let logs = archive.logs().await.unwrap();
    assert_eq!(logs.len(), 1);
    let work = tempfile::tempdir().unwrap();
    let across =
        archive.verify_across(&logs[0], Some(&dir), &VerifyOptions::default(), work.path()).await.unwrap();
    assert!(across.report.ok, "{}", across.report);
    assert!(across.report.records >= 40, "{}", across.report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_while_the_archive_backlog_passes_its_bound_and_nothing_is_deleted() {
    // No store listens on this port: every pass fails, the backlog grows.
    let (_creds_dir, creds) = credentials();
    let (tmp, app) = iris_with_platform(MANIFEST, &platform_yaml(free_port(), &creds, "    maxBacklog: 1\n"));
    for _ in 0..40 {
        assert_eq!(call(&app, "POST", "/v2/models/iris/infer", IRIS_ROW).await.status, StatusCode::OK);
    }
    let archiver = app.state.audit_archiver().unwrap().clone();
    assert!(until(|| archiver.stats().backlog_segments > 1).await, "{:?}", archiver.stats());
    let (status, body) = admin_get(&app, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("audit archive backlog") && body.contains("maxBacklog: 1"), "{body}");
    let (_, text) = admin_get(&app, "/metrics").await;
    assert!(metric(&text, "palisade_audit_archive_errors_total") > 0, "{text}");
    assert!(metric(&text, "palisade_audit_archive_backlog_bytes") > 0, "{text}");
    assert_eq!(metric(&text, "palisade_audit_retention_deleted_segments_total"), 0);
    // Requests are still served and audited; retention deleted nothing: the whole trail,
    // from seq 0, is still here.
    assert_eq!(call(&app, "POST", "/v2/models/iris/infer", IRIS_ROW).await.status, StatusCode::OK);
    let report = palisade_audit::verify(&tmp.path().join("home/audit"), &VerifyOptions::default()).unwrap();
    assert!(report.ok, "{report}");
    assert_eq!(report.first_seq, Some(0));
    assert!(report.records >= 41);
}

#[test]
fn archive_settings_that_cannot_work_name_the_field_and_the_fix() {
    for (yaml, field, fix) in [
        ("audit: {archive: {bucket: ''}}", "audit.archive.bucket", "give the bucket"),
        ("audit: {archive: {bucket: b, endpoint: 'http://s3.local'}}", "audit.archive.endpoint", "allowHttp"),
        ("audit: {archive: {bucket: b, endpoint: 's3.local'}}", "audit.archive.endpoint", "http(s)://"),
        ("audit: {archive: {bucket: b, every: 0s}}", "audit.archive.every", "longer than zero"),
        ("audit: {archive: {bucket: b}, seal: {enabled: false}}", "audit.archive", "enable sealing"),
    ] {
        let err = Platform::parse(Path::new("platform.yaml"), yaml).unwrap_err().to_string();
        assert!(err.contains("platform.yaml") && err.contains(field) && err.contains(fix), "{yaml}: {err}");
    }
    let err =
        Platform::parse(Path::new("platform.yaml"), "audit: {archive: {bucket: b, secret: x}}").unwrap_err();
    assert!(err.to_string().contains("secret"), "{err}");
    let ok =
        Platform::parse(Path::new("platform.yaml"), "audit: {archive: {bucket: b, prefix: p/q}}").unwrap();
    let target = ok.config.audit.archive.unwrap().target();
    assert_eq!(target.url(), "s3://b/p/q");
    assert_eq!(target.region, "us-east-1");
}
