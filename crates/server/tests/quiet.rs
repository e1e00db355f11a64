//! Quiet failures: with the audit disk full, refused predictions do not write one log line
//! each (the hostile-load review measured 399 lines for 400 refusals); after space returns,
//! predictions are served and the chain verifies. Alone in its test binary: it installs the
//! process's log subscriber to count lines.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use palisade_audit::FaultInjection;
use palisade_runtime::EngineConfig;
use palisade_server::{Platform, Registry, ServerConfig};

/// Counts the lines the log writes (and keeps them, to show on failure).
#[derive(Clone, Default)]
struct Lines(Arc<(AtomicUsize, std::sync::Mutex<Vec<u8>>)>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.0.fetch_add(buf.iter().filter(|b| **b == b'\n').count(), Ordering::SeqCst);
        self.0.1.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_full_audit_disk_does_not_flood_the_log() {
    let lines = Lines::default();
    let writer = lines.clone();
    tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let (tmp, store) = store_with_manifest(
        "iris_lr_nozipmap",
        "name: iris\nversion: \"1.0.0\"\nowners: [alice@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\n",
    );
    let faults = FaultInjection::new();
    let app = app_full(
        store.root(),
        Registry::load(&store).unwrap(),
        EngineConfig::default(),
        ServerConfig::default(),
        Platform::defaults(),
        None,
        Some(faults.clone()),
    );
    assert_eq!(call(&app, "POST", "/v2/models/iris/infer", IRIS_ROW).await.status, StatusCode::OK);

    let before = lines.0.0.load(Ordering::SeqCst);
    faults.fail_writes(true);
    for _ in 0..400 {
        let reply = call(&app, "POST", "/v2/models/iris/infer", IRIS_ROW).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            !String::from_utf8_lossy(&reply.body).contains(&tmp.path().display().to_string()),
            "no paths to callers"
        );
    }
    let written = lines.0.0.load(Ordering::SeqCst) - before;
    let log = String::from_utf8_lossy(&lines.0.1.lock().unwrap()).into_owned();
    assert!(written <= 40, "{written} log lines for 400 refusals:\n{log}");
    assert!(written >= 1, "the outage is logged");

    let admin = palisade_server::admin_app(app.state.clone());
    let metrics = tower::ServiceExt::oneshot(admin, Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(
        http_body_util::BodyExt::collect(metrics.into_body()).await.unwrap().to_bytes().to_vec(),
    )
    .unwrap();
    let refusals: u64 = text
        .lines()
        .filter(|l| l.starts_with("palisade_audit_refusals_total{"))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.trim().parse::<u64>().ok()))
        .sum();
    assert!(refusals >= 400, "every refusal is counted: {refusals}");

    // Space returns: predictions are served again, and the chain verifies.
    faults.fail_writes(false);
    let mut served = false;
    for _ in 0..40 {
        if call(&app, "POST", "/v2/models/iris/infer", IRIS_ROW).await.status == StatusCode::OK {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served);
    let report =
        palisade_audit::verify(&tmp.path().join("home/audit"), &palisade_audit::VerifyOptions::default())
            .unwrap();
    assert!(report.ok, "{report}");
}
