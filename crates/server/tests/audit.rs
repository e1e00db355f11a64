//! The audit layer: exactly one record per data-plane request (refusals included), with the
//! caller, the decision, the model and digests; strict mode refuses to answer unaudited;
//! payload levels redact; policy changes are audited too; the chain verifies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use palisade_audit::{AuditRecord, FaultInjection, Filter, VerifyOptions};
use palisade_runtime::EngineConfig;
use palisade_server::{Platform, Registry, ServerConfig};
use serde_json::json;

const MANIFEST: &str = "name: iris\nversion: \"1.0.0\"\nnamespace: ml\nowners: [alice@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\n";

struct Setup {
    tmp: tempfile::TempDir,
    app: TestApp,
    faults: FaultInjection,
}

fn setup(manifest: &str, config: ServerConfig) -> Setup {
    setup_with(&[manifest], config, Platform::defaults())
}

/// The iris fixture under each manifest, served with `config` and `platform`, its audit log
/// open to fault injection.
fn setup_with(manifests: &[&str], config: ServerConfig, platform: Platform) -> Setup {
    let (tmp, store) = store_with_manifests("iris_lr_nozipmap", manifests);
    let registry = Registry::load(&store).unwrap();
    let faults = FaultInjection::new();
    let app = app_full(
        store.root(),
        registry,
        EngineConfig::default(),
        config,
        platform,
        None,
        Some(faults.clone()),
    );
    Setup { tmp, app, faults }
}

/// The platform config `yaml` (a file named `platform.yaml`).
fn platform(yaml: &str) -> Platform {
    Platform::parse(std::path::Path::new("platform.yaml"), yaml).unwrap()
}

fn records(s: &Setup) -> Vec<AuditRecord> {
    request_records(&s.tmp.path().join("home"))
}

fn request_id(reply: &Reply) -> String {
    reply.headers["x-request-id"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn one_record_per_request_including_refusals() {
    let s = setup(MANIFEST, ServerConfig { max_body_bytes: 4096, ..ServerConfig::default() });
    let app = &s.app;
    let stranger = token_with(app.state.security(), "bob", json!({"email": "bob@example.com"}));
    let cases: Vec<(Reply, u16)> = vec![
        (call(app, "POST", "/v2/models/iris/infer", IRIS_ROW).await, 200),
        (call_as(app, None, "POST", "/v2/models/iris/infer", IRIS_ROW).await, 401),
        (call_as(app, Some("garbage"), "POST", "/v2/models/iris/infer", IRIS_ROW).await, 401),
        (call_as(app, Some(&stranger), "POST", "/v2/models/iris/infer", IRIS_ROW).await, 403),
        (call(app, "POST", "/v2/models/nope/infer", IRIS_ROW).await, 404),
        (call(app, "POST", "/v2/models/iris/infer", "{\"inputs\": 5}").await, 400),
        (call(app, "POST", "/v2/models/iris/infer", vec![b' '; 8192]).await, 413),
        (call(app, "GET", "/v2/models/iris", "").await, 200),
        (call_as(app, None, "GET", "/nowhere", "").await, 401),
    ];
    // Health probes and the static docs are not audited.
    for path in ["/v2/health/live", "/v2/health/ready", "/docs/", "/openapi.json"] {
        assert_eq!(call_as(app, None, "GET", path, "").await.status, StatusCode::OK, "{path}");
    }
    let log = records(&s);
    assert_eq!(log.len(), cases.len(), "exactly one record per audited request");
    for (reply, status) in &cases {
        assert_eq!(reply.status.as_u16(), *status);
        let id = request_id(reply);
        let matching: Vec<_> = log.iter().filter(|r| r.request_id.as_deref() == Some(id.as_str())).collect();
        assert_eq!(matching.len(), 1, "request {id}");
        assert_eq!(matching[0].status, Some(*status), "request {id}");
    }
    let report = palisade_audit::verify(&s.tmp.path().join("home/audit"), &VerifyOptions::default()).unwrap();
    assert!(report.ok, "{report}");
}

#[tokio::test]
async fn records_say_who_what_decision_and_outcome() {
    let s = setup(MANIFEST, ServerConfig::default());
    let app = &s.app;
    let reply = call(app, "POST", "/v2/models/iris/infer", IRIS_ROW).await;
    let record = records(&s)
        .into_iter()
        .find(|r| r.request_id.as_deref() == Some(request_id(&reply).as_str()))
        .unwrap();
    let serialized = serde_json::to_string(&record).unwrap();
    assert!(!serialized.contains(&app.token), "never the token");
    assert_eq!(record.request_principal.as_deref(), Some("https://palisade.local/alice"));
    assert_eq!(record.email.as_deref(), Some("alice@example.com"));
    let jwt = record.jwt.unwrap();
    assert_eq!(jwt.alg.as_deref(), Some("ES256"));
    assert!(jwt.kid.is_some() && jwt.jti.is_some());
    let model = record.model.unwrap();
    assert_eq!(
        (model.namespace.as_str(), model.name.as_str(), model.version.as_deref()),
        ("ml", "iris", Some("1.0.0"))
    );
    assert!(model.digest.unwrap().starts_with("sha256:"));
    let authz = record.authz.unwrap();
    assert_eq!(authz.decision, palisade_audit::Decision::Allow);
    assert_eq!(authz.policy.as_deref(), Some("owner-default"));
    assert_eq!(record.authn.as_ref().unwrap().outcome, palisade_audit::AuthnOutcome::Authenticated);
    assert_eq!(record.path.as_deref(), Some("/v2/models/iris/infer"));
    assert_eq!(record.request_bytes, Some(IRIS_ROW.len() as u64));
    assert_eq!(
        record.request_sha256.as_deref(),
        Some(palisade_audit::sha256_hex(IRIS_ROW.as_bytes()).as_str())
    );
    assert_eq!(record.response_sha256.as_deref(), Some(palisade_audit::sha256_hex(&reply.body).as_str()));
    assert!(record.trace_id.is_some());
    assert!(record.payloads.is_none(), "Metadata level keeps no payloads");
}

#[tokio::test]
async fn refusals_record_the_reason() {
    let s = setup(MANIFEST, ServerConfig::default());
    let app = &s.app;
    let reply = call_as(app, Some("a.b.c"), "POST", "/v2/models/iris/infer", IRIS_ROW).await;
    let record = records(&s)
        .into_iter()
        .find(|r| r.request_id.as_deref() == Some(request_id(&reply).as_str()))
        .unwrap();
    let authn = record.authn.unwrap();
    assert_eq!(authn.outcome, palisade_audit::AuthnOutcome::Refused);
    assert_eq!(authn.reason.as_deref(), Some("malformed"));
    assert_eq!(record.authz.unwrap().decision, palisade_audit::Decision::Skipped);

    let bob = token_with(app.state.security(), "bob", json!({"email": "bob@example.com"}));
    let reply = call_as(app, Some(&bob), "POST", "/v2/models/iris/infer", IRIS_ROW).await;
    let record = records(&s)
        .into_iter()
        .find(|r| r.request_id.as_deref() == Some(request_id(&reply).as_str()))
        .unwrap();
    assert_eq!(record.status, Some(403));
    assert_eq!(record.authz.unwrap().decision, palisade_audit::Decision::Deny);
    assert_eq!(record.email.as_deref(), Some("bob@example.com"));
}

/// Strict mode: when records cannot be made durable, predictions stop (503) rather than
/// leave unaudited, readiness fails, and service resumes once the disk recovers.
#[tokio::test]
async fn strict_mode_fails_closed_and_recovers() {
    let s = setup(MANIFEST, ServerConfig::default());
    let app = &s.app;
    assert_eq!(call(app, "POST", "/v2/models/iris/infer", IRIS_ROW).await.status, StatusCode::OK);
    s.faults.fail_syncs(true);
    let reply = call(app, "POST", "/v2/models/iris/infer", IRIS_ROW).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.json()["error"].as_str().unwrap().contains("audit log"));
    let reply = call(app, "POST", "/v2/models/iris/infer", IRIS_ROW).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "refused up front while unwritable");
    let admin = palisade_server::admin_app(app.state.clone());
    let ready =
        tower::ServiceExt::oneshot(admin.clone(), Request::get("/readyz").body(Body::empty()).unwrap())
            .await
            .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    s.faults.fail_syncs(false);
    // The next write attempt (the refused request's own record) clears the failure.
    let mut recovered = false;
    for _ in 0..20 {
        if call(app, "POST", "/v2/models/iris/infer", IRIS_ROW).await.status == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recovered, "service resumes once records are durable again");
    let ready = tower::ServiceExt::oneshot(admin, Request::get("/readyz").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let report = palisade_audit::verify(&s.tmp.path().join("home/audit"), &VerifyOptions::default()).unwrap();
    assert!(report.ok, "{report}");
}

/// `audit.level: None` (allowed by a platform minimum of `None`) leaves no record over REST
/// or gRPC, and is refused like every model while a strict log is unwritable: the layer's
/// shortcut for a model known from the path (no announcement, no buffering) changes what
/// it costs, not what it answers, and both protocols answer alike.
#[tokio::test]
async fn records_off_leave_none_and_are_refused_alike_while_the_log_is_down() {
    let manifest = format!("{MANIFEST}audit:\n  level: None\n");
    let kept = MANIFEST.replace("name: iris\n", "name: kept\n");
    let s =
        setup_with(&[&manifest, &kept], ServerConfig::default(), platform("audit:\n  minimumLevel: None\n"));
    let message = infer_message("iris", None);
    let token = s.app.token.clone();
    let rest = call(&s.app, "POST", "/v2/models/iris/infer", IRIS_ROW).await;
    assert_eq!(rest.status, StatusCode::OK);
    let (grpc_status, _, _) = grpc_call(&s.app, "POST", "ModelInfer", &message, Some(&token), &[]).await;
    assert_eq!(grpc_status, Some(0));
    let refused = call_as(&s.app, Some("a.b.c"), "POST", "/v2/models/iris/infer", IRIS_ROW).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(records(&s).len(), 0, "no record for a model whose records are off");

    s.faults.fail_syncs(true);
    // A model that keeps records makes the writer meet the failure: strict mode refuses it.
    let kept_reply = call(&s.app, "POST", "/v2/models/kept/infer", IRIS_ROW).await;
    assert_eq!(kept_reply.status, StatusCode::SERVICE_UNAVAILABLE);
    let rest = call(&s.app, "POST", "/v2/models/iris/infer", IRIS_ROW).await;
    assert_eq!(rest.status, StatusCode::SERVICE_UNAVAILABLE, "refused over REST while unwritable");
    assert!(rest.json()["error"].as_str().unwrap().contains("audit log"), "{:?}", rest.json());
    let (grpc_status, grpc_message, _) =
        grpc_call(&s.app, "POST", "ModelInfer", &message, Some(&token), &[]).await;
    assert_eq!(grpc_status, Some(14), "refused over gRPC alike (UNAVAILABLE): {grpc_message}");

    s.faults.fail_syncs(false);
    let mut recovered = false;
    for _ in 0..20 {
        if call(&s.app, "POST", "/v2/models/kept/infer", IRIS_ROW).await.status == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recovered);
    assert_eq!(call(&s.app, "POST", "/v2/models/iris/infer", IRIS_ROW).await.status, StatusCode::OK);
    let models: Vec<_> =
        records(&s).iter().filter_map(|r| r.model.as_ref().map(|m| m.name.clone())).collect();
    assert!(!models.is_empty() && models.iter().all(|m| m == "kept"), "{models:?}");
}

#[tokio::test]
async fn payload_levels_keep_redacted_payloads() {
    let manifest = format!("{MANIFEST}audit:\n  level: RequestResponse\n  redact: [\"inputs[*].data\"]\n");
    let s = setup(&manifest, ServerConfig::default());
    let reply = call(&s.app, "POST", "/v2/models/iris/infer", IRIS_ROW).await;
    let record = records(&s)
        .into_iter()
        .find(|r| r.request_id.as_deref() == Some(request_id(&reply).as_str()))
        .unwrap();
    assert_eq!(record.level, palisade_audit::Level::RequestResponse);
    let payloads = record.payloads.unwrap();
    let request = payloads.request.unwrap();
    assert_eq!(request["inputs"][0]["name"], "X");
    assert_eq!(request["inputs"][0]["data"], "[redacted]");
    assert_eq!(payloads.response.unwrap()["model_name"], "iris");
}

/// Policy changes through the management API are audited, with who and digests.
#[tokio::test]
async fn policy_changes_are_audited() {
    let s = setup(MANIFEST, ServerConfig::default());
    // The policy leaves alice, the model's owner, out: confirmed, as `--yes` does.
    let policy = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: analysts, namespace: ml}\nspec:\n  rules:\n  - when:\n    - key: request.auth.claims[email]\n      values: [analyst@example.com]\n";
    assert_eq!(
        call(&s.app, "PUT", "/manage/v1/policies?confirm=true", policy).await.status,
        StatusCode::CREATED
    );
    assert_eq!(call(&s.app, "DELETE", "/manage/v1/policies/ml/analysts", "").await.status, StatusCode::OK);
    let dir = s.tmp.path().join("home/audit");
    let changes: Vec<_> = palisade_audit::query(&dir, Filter::default())
        .unwrap()
        .map(Result::unwrap)
        .filter_map(|r| r.config)
        .collect();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0].who, "https://palisade.local/alice");
    assert_eq!(changes[0].what, "policy ml/analysts");
    assert!(changes[0].before_digest.is_none() && changes[0].after_digest.is_some());
    assert_eq!(changes[1].before_digest, changes[0].after_digest);
    assert!(changes[1].after_digest.is_none());

    s.faults.fail_syncs(true);
    let reply = call(&s.app, "PUT", "/manage/v1/policies?confirm=true", policy).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "an unaudited change is undone");
    s.faults.fail_syncs(false);
    assert!(s.app.state.security().policies().authorization_policies.is_empty());
}

#[tokio::test]
async fn traceparent_is_continued_and_recorded() {
    let s = setup(MANIFEST, ServerConfig::default());
    let req = Request::post("/v2/models/iris/infer")
        .header("authorization", format!("Bearer {}", s.app.token))
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .body(Body::from(IRIS_ROW))
        .unwrap();
    let reply = send(&s.app, req).await;
    let out = reply.headers["traceparent"].to_str().unwrap();
    assert!(out.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{out}");
    assert!(!out.contains("00f067aa0ba902b7"), "our own span id goes out");
    let record = records(&s)
        .into_iter()
        .find(|r| r.request_id.as_deref() == Some(request_id(&reply).as_str()))
        .unwrap();
    assert_eq!(record.trace_id.as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
}

#[tokio::test]
async fn metrics_expose_audit_health() {
    let s = setup(MANIFEST, ServerConfig::default());
    call(&s.app, "POST", "/v2/models/iris/infer", IRIS_ROW).await;
    let admin = palisade_server::admin_app(s.app.state.clone());
    let res = tower::ServiceExt::oneshot(admin, Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(
        http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes().to_vec(),
    )
    .unwrap();
    assert!(text.contains("palisade_audit_records_total 1"), "{text}");
    assert!(text.contains("palisade_audit_fsync_seconds_count"), "{text}");
    assert!(text.contains("palisade_audit_queue_depth 0"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_segments_are_sealed_in_the_background_and_the_trail_still_verifies() {
    let (tmp, app) = iris_with_platform(
        MANIFEST,
        "audit:\n  segmentMaxBytes: 12288\n  checkpointEvery: 2\n  seal:\n    frameRecords: 4\n    every: 50ms\n  retention:\n    maxBytes: 1\n",
    );
    for _ in 0..40 {
        assert_eq!(call(&app, "POST", "/v2/models/iris/infer", IRIS_ROW).await.status, StatusCode::OK);
    }
    let dir = tmp.path().join("home/audit");
    // The sealer works in passes: seal every rotated segment, then apply retention, then
    // publish its gauges. Wait for a settled pass (nothing left to seal, retention applied to
    // what was sealed) rather than for files on disk, which appear mid-pass.
    let admin = palisade_server::admin_app(app.state.clone());
    let metrics = || async {
        let res =
            tower::ServiceExt::oneshot(admin.clone(), Request::get("/metrics").body(Body::empty()).unwrap())
                .await
                .unwrap();
        String::from_utf8(
            http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes().to_vec(),
        )
        .unwrap()
    };
    let value = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .parse()
            .unwrap()
    };
    // Every segment but the active one has rotated (no request writes any more).
    let segments = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        // a segment is `.jsonl` until sealed, `.jsonl.zst` after, and `.jsonl.zst.tmp` while
        // the sealer writes it
        .filter_map(|name| name.split_once(".jsonl").map(|(stem, _)| stem.to_owned()))
        .filter(|stem| stem.starts_with("segment-"))
        .collect::<std::collections::BTreeSet<_>>();
    let rotated = segments.len() as u64 - 1;
    assert!(rotated >= 2, "40 records of ~1.2 kB in 12 kB segments: {segments:?}");
    let settled = |text: &str| {
        let sealed = value(text, "palisade_audit_sealed_segments_total");
        sealed == rotated
            && value(text, "palisade_audit_seal_backlog_segments") == 0
            // retention never removes the newest sealed segment, so all others are due
            && value(text, "palisade_audit_retention_blocked_segments") == sealed - 1
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut text = metrics().await;
    while !settled(&text) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        text = metrics().await;
    }
    assert!(settled(&text), "the sealer did not settle: {text}");
    let sealed_files = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".jsonl.zst"))
        .count() as u64;
    assert_eq!(sealed_files, value(&text, "palisade_audit_sealed_segments_total"));
    let report = palisade_audit::verify(&dir, &VerifyOptions::default()).unwrap();
    assert!(report.ok, "{report}");
    assert_eq!(report.records, 40);
    assert!(report.sealed_segments >= 2, "{report}");
    assert_eq!(records_in(&dir).len(), 40, "query reads sealed segments");

    let value = |name: &str| value(&text, name);
    assert!(value("palisade_audit_sealed_segments_total") >= 2, "{text}");
    assert!(value("palisade_audit_sealed_bytes_total") < value("palisade_audit_sealed_plain_bytes_total"));
    assert!(value("palisade_audit_bytes_written_total") > 40 * 500);
    assert_eq!(value("palisade_audit_seal_errors_total"), 0);
    // retention.maxBytes: 1 makes every sealed segment due, and without an archive none is
    // deleted: the trail above verified from seq 0 with all 40 records.
    assert_eq!(value("palisade_audit_retention_blocked_segments"), rotated - 1, "{text}");
    assert!(value("palisade_audit_retention_blocked_bytes") > 0, "{text}");
}

fn records_in(dir: &std::path::Path) -> Vec<AuditRecord> {
    palisade_audit::query(dir, Filter::default()).unwrap().map(Result::unwrap).collect()
}

#[test]
fn seal_and_retention_settings_out_of_range_name_the_field_and_the_fix() {
    for (yaml, field, fix) in [
        ("audit: {seal: {frameRecords: 0}}", "audit.seal.frameRecords", "use 1 to 65536"),
        ("audit: {seal: {level: 22}}", "audit.seal.level", "from 1 to 19"),
        ("audit: {seal: {every: 0s}}", "audit.seal.every", "longer than zero"),
        ("audit: {retention: {}}", "audit.retention", "give maxAge, maxBytes or both"),
        ("audit: {retention: {maxAge: 0s}}", "audit.retention.maxAge", "longer than zero"),
        ("audit: {retention: {maxBytes: 0}}", "audit.retention.maxBytes", "more than zero"),
        ("audit: {retention: {maxAge: 2160h}, seal: {enabled: false}}", "audit.retention", "enable sealing"),
    ] {
        let err = Platform::parse(std::path::Path::new("platform.yaml"), yaml).unwrap_err().to_string();
        assert!(err.contains("platform.yaml") && err.contains(field) && err.contains(fix), "{yaml}: {err}");
    }
    let err =
        Platform::parse(std::path::Path::new("platform.yaml"), "audit: {seal: {frames: 3}}").unwrap_err();
    assert!(err.to_string().contains("frames"), "{err}");
    let ok =
        Platform::parse(std::path::Path::new("platform.yaml"), "audit: {seal: {enabled: false}}").unwrap();
    assert!(!ok.config.audit.seal.enabled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_while_the_seal_backlog_passes_its_bound_and_recovers() {
    let (tmp, app) = iris_with_platform(
        MANIFEST,
        "audit:\n  segmentMaxBytes: 4096\n  checkpointEvery: 2\n  seal:\n    every: 50ms\n    maxBacklog: 1\n",
    );
    let key = tmp.path().join("home/keys/audit-signing.pk8");
    let aside = tmp.path().join("audit-signing.pk8.aside");
    // Without its key the sealer cannot sign seal checkpoints: segments pile up plain.
    std::fs::rename(&key, &aside).unwrap();
    for _ in 0..16 {
        assert_eq!(call(&app, "POST", "/v2/models/iris/infer", IRIS_ROW).await.status, StatusCode::OK);
    }
    let ready = |app: &TestApp| {
        let admin = palisade_server::admin_app(app.state.clone());
        async move {
            let res = tower::ServiceExt::oneshot(admin, Request::get("/readyz").body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = res.status();
            let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let wait_for = |wanted: StatusCode| {
        let app = &app;
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                let (status, body) = ready(app).await;
                if status == wanted || std::time::Instant::now() > deadline {
                    return (status, body);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let (status, body) = wait_for(StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("audit seal backlog") && body.contains("maxBacklog: 1"), "{body}");
    assert!(app.state.audit_sealer().unwrap().stats().errors > 0);
    // Requests are still served and audited meanwhile.
    assert_eq!(call(&app, "POST", "/v2/models/iris/infer", IRIS_ROW).await.status, StatusCode::OK);

    std::fs::rename(&aside, &key).unwrap();
    let (status, body) = wait_for(StatusCode::OK).await;
    assert_eq!(status, StatusCode::OK, "the backlog drains once the key is back: {body}");
    let report = palisade_audit::verify(&tmp.path().join("home/audit"), &VerifyOptions::default()).unwrap();
    assert!(report.ok, "{report}");
    assert_eq!(report.records, 17);
    assert!(report.sealed_segments >= 2, "{report}");
}
