//! `palisade audit archive` and `palisade audit verify --archive` against a real
//! S3-compatible server (moto on loopback, `.venv/s3`): the command SIGKILLed in the middle
//! of its uploads loses no record, deletes nothing unarchived, and the next run resumes;
//! verify names a removed archived segment and exits 65. CI sets PALISADE_REQUIRE_S3, so a
//! missing moto fails there instead of skipping.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use palisade_archive::testing::Moto;
use palisade_audit::{AuditConfig, AuditLog, AuditRecord, Timestamp};

/// moto's S3 server with a bucket `trails` (see `palisade_archive::testing`).
fn moto() -> Option<Moto> {
    palisade_archive::testing::moto_with_bucket("trails")
}

/// A home whose audit log holds `n` records in many small sealed segments.
fn home_with_trail(n: usize) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("audit");
    std::fs::create_dir(&dir).unwrap();
    let config = AuditConfig {
        replica_id: "r1".into(),
        segment_max_bytes: 4096,
        checkpoint_every: 10,
        ..AuditConfig::default()
    };
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let log = AuditLog::open(&dir, config).unwrap();
        for i in 0..n {
            let mut r = AuditRecord::request();
            r.request_id = Some(format!("req-{i}"));
            r.received = Some(Timestamp::from_unix_millis(1_795_687_200_000 + i as i64 * 1000));
            r.status = Some(200);
            log.append(r).await.unwrap();
        }
        log.close().await.unwrap();
    });
    palisade_audit::seal_segments(&dir, &palisade_audit::SealOptions::default()).unwrap();
    home
}

fn platform(home: &Path, port: u16) -> PathBuf {
    let creds = home.join("s3-credentials");
    std::fs::write(&creds, "[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
        .unwrap();
    let file = home.join("platform.yaml");
    std::fs::write(
        &file,
        format!(
            "audit:\n  retention:\n    maxBytes: 1\n  archive:\n    bucket: trails\n    prefix: prod\n    endpoint: http://127.0.0.1:{port}\n    allowHttp: true\n    credentialsFile: {}\n",
            creds.display()
        ),
    )
    .unwrap();
    file
}

fn palisade(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_palisade"));
    cmd.arg("--home").arg(home);
    cmd
}

fn verify_across(home: &Path, port: u16) -> Output {
    palisade(home)
        .args(["audit", "verify", "--archive", "s3://trails/prod"])
        .args(["--archive-endpoint", &format!("http://127.0.0.1:{port}"), "--archive-allow-http"])
        .arg("--archive-credentials")
        .arg(home.join("s3-credentials"))
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn archive_killed_mid_upload_loses_nothing_deletes_nothing_unarchived_and_resumes() {
    let Some(moto) = moto() else { return };
    let home = home_with_trail(1200);
    let dir = home.path().join("audit");
    let config = platform(home.path(), moto.port);
    let sealed_before = palisade_audit::list_segments(&dir).unwrap().iter().filter(|s| s.sealed).count();
    assert!(sealed_before > 40, "{sealed_before} sealed segments");

    let mut child =
        palisade(home.path()).args(["audit", "archive", "--config"]).arg(&config).spawn().unwrap();
    let state = dir.join(palisade_archive::STATE_FILE);
    let lines = || std::fs::read_to_string(&state).map(|s| s.lines().count()).unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while lines() < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let archived_at_kill = lines();
    assert!(
        archived_at_kill >= 10 && archived_at_kill < sealed_before,
        "killed after {archived_at_kill} of {sealed_before}"
    );
    // Nothing unarchived was deleted: the archive and what is left locally hold every record.
    let out = verify_across(home.path(), moto.port);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("OK: 1200 records"), "{}", text(&out));

    // The next run resumes: it uploads the rest, then retention deletes what is confirmed.
    let out = palisade(home.path()).args(["audit", "archive", "--config"]).arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // The state held one line for the checkpoints and one per segment checked before the
    // kill; the rest is uploaded now, and at most the one in flight is found already there.
    let shown = text(&out);
    let uploaded =
        shown.lines().filter(|l| l.starts_with("archived s3://") && l.contains("/segment-")).count();
    let already = shown.lines().filter(|l| l.starts_with("already archived")).count();
    assert!(already <= 1, "{shown}");
    assert_eq!(uploaded + already, sealed_before - (archived_at_kill - 1), "{shown}");
    assert!(text(&out).contains("deleted segment-"), "{}", text(&out));
    let left = palisade_audit::list_segments(&dir).unwrap().len();
    assert!(left <= 2, "{left} segments left locally");
    let out = verify_across(home.path(), moto.port);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("OK: 1200 records"), "{}", text(&out));
    let again = palisade(home.path()).args(["audit", "archive", "--config"]).arg(&config).output().unwrap();
    assert!(text(&again).contains("nothing new to archive"), "{}", text(&again));
}

#[test]
fn verify_with_the_archive_names_a_removed_archived_segment_and_exits_65() {
    let Some(moto) = moto() else { return };
    let home = home_with_trail(600);
    let config = platform(home.path(), moto.port);
    let out = palisade(home.path()).args(["audit", "archive", "--config"]).arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let ok = verify_across(home.path(), moto.port);
    assert!(ok.status.success(), "{}", text(&ok));

    // Remove the second archived segment (deleted locally by retention) through the store.
    let dir = home.path().join("audit");
    let genesis = palisade_audit::read_genesis(&dir).unwrap().unwrap();
    let target = palisade_archive::ArchiveTarget {
        endpoint: Some(format!("http://127.0.0.1:{}", moto.port)),
        allow_http: true,
        credentials: palisade_archive::Credentials::File(home.path().join("s3-credentials")),
        ..palisade_archive::ArchiveTarget::from_url("s3://trails/prod").unwrap()
    };
    let archive = palisade_archive::Archive::open(&target).unwrap();
    let root = archive.log_root("r1", &genesis.log_id);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let listing = rt.block_on(archive.store().list_with_delimiter(Some(&root))).unwrap();
    let mut keys: Vec<_> = listing.objects.into_iter().map(|o| o.location).collect();
    keys.sort();
    rt.block_on(palisade_archive::object_store::ObjectStoreExt::delete(archive.store().as_ref(), &keys[1]))
        .unwrap();
    let out = verify_across(home.path(), moto.port);
    assert_eq!(out.status.code(), Some(65), "{}", text(&out));
    let name = keys[1].filename().unwrap();
    assert!(text(&out).contains(name) && text(&out).contains("missing"), "{}", text(&out));
}

#[test]
fn query_with_the_archive_reads_archived_segments_in_a_time_range() {
    let Some(moto) = moto() else { return };
    let home = home_with_trail(600);
    let config = platform(home.path(), moto.port);
    let out = palisade(home.path()).args(["audit", "archive", "--config"]).arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let dir = home.path().join("audit");
    let first_local = palisade_audit::list_segments(&dir).unwrap()[0].first_seq;
    assert!(first_local > 200, "records 100..150 are in the archive only (local from seq {first_local})");
    let query = |extra: &[&str]| {
        palisade(home.path())
            .args(["audit", "query", "--output", "json", "--archive", "s3://trails/prod"])
            .args(["--archive-endpoint", &format!("http://127.0.0.1:{}", moto.port), "--archive-allow-http"])
            .arg("--archive-credentials")
            .arg(home.path().join("s3-credentials"))
            .args(extra)
            .output()
            .unwrap()
    };
    let out = query(&["--from", "2026-11-26T10:01:40Z", "--to", "2026-11-26T10:02:30Z"]);
    assert!(out.status.success(), "{}", text(&out));
    let ids: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["request_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids, (100..150).map(|i| format!("req-{i}")).collect::<Vec<_>>());
    // Without a range: every record, archived and local, once.
    let out = query(&[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 600);
}
