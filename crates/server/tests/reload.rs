//! Versions appear and go without a restart: the running server watches its store, loads
//! what is built, drops what is deleted, skips what fails to verify, and never fails a
//! request during the swap.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::*;
use palisade_runtime::{EngineConfig, UpstreamContext};
use palisade_server::{Platform, Registry, ServerConfig};

fn manifest(version: &str) -> String {
    format!(
        "name: iris\nversion: \"{version}\"\nowners: [alice@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\n"
    )
}

/// Waits until `check` holds, at most `limit`; how long it took.
async fn within(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if check().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn versions_come_and_go_while_serving_without_a_failed_request() {
    let (tmp, store) = store_with_manifests("iris_lr_nozipmap", &[&manifest("1.0.0")]);
    let app = app_with(
        store.root(),
        Registry::load(&store).unwrap(),
        EngineConfig::default(),
        ServerConfig::default(),
        Platform::defaults(),
        None,
    );
    app.state.watch_store(store.clone(), UpstreamContext::default(), Duration::from_millis(200));

    // Load through the whole change: every request must succeed.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (app, stop, failures, sent) = (app.clone(), stop.clone(), failures.clone(), sent.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let reply = call(&app, "POST", "/v2/models/iris/infer", IRIS_ROW).await;
                sent.fetch_add(1, Ordering::Relaxed);
                if reply.status != StatusCode::OK {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Version 2 is built while serving: the latest answers within 5 s.
    add_bundles(&store, tmp.path(), "iris_lr_nozipmap", &[&manifest("2.0.0")]);
    let took = within(Duration::from_secs(5), async || {
        call(&app, "POST", "/v2/models/iris/infer", IRIS_ROW).await.json()["model_version"] == "2.0.0"
    })
    .await
    .expect("version 2.0.0 served within 5 s");
    assert_eq!(
        call(&app, "GET", "/v2/models/iris/versions/1.0.0", "").await.status,
        StatusCode::OK,
        "1.0.0 still served"
    );
    let versions = call(&app, "GET", "/v2/models/iris", "").await.json()["versions"].clone();
    assert_eq!(versions, serde_json::json!(["1.0.0", "2.0.0"]));

    // Version 1 is deleted: it goes.
    store.delete(&"iris".parse().unwrap(), "1.0.0").unwrap();
    within(Duration::from_secs(5), async || {
        call(&app, "GET", "/v2/models/iris/versions/1.0.0", "").await.status == StatusCode::NOT_FOUND
    })
    .await
    .expect("1.0.0 unloaded within 5 s");

    // A bundle that fails to verify is skipped; the rest keep serving.
    add_bundles(&store, tmp.path(), "iris_lr_nozipmap", &[&manifest("3.0.0")]);
    let record = store.resolve(&"iris".parse().unwrap(), "3.0.0").unwrap();
    let bundle = store.root().join("bundles").join(record.digest.hex());
    let model = std::fs::read_dir(&bundle)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "onnx"))
        .unwrap();
    let mut bytes = std::fs::read(&model).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&model, bytes).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    assert_eq!(failures.load(Ordering::Relaxed), 0, "no request failed during the swaps");
    assert!(sent.load(Ordering::Relaxed) > 20, "the load ran");
    let reply = call(&app, "POST", "/v2/models/iris/infer", IRIS_ROW).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["model_version"], "2.0.0", "the tampered 3.0.0 is not served");

    // Each load and unload is in the audit trail, and counted.
    let changes: Vec<String> =
        palisade_audit::query(&store.root().join("audit"), palisade_audit::Filter::default())
            .unwrap()
            .map(Result::unwrap)
            .filter_map(|r| r.config.map(|c| c.what))
            .collect();
    assert!(changes.contains(&"model iris:2.0.0 loaded".to_owned()), "{changes:?}");
    assert!(changes.contains(&"model iris:1.0.0 unloaded".to_owned()), "{changes:?}");
    let admin = palisade_server::admin_app(app.state.clone());
    let metrics = tower::ServiceExt::oneshot(
        admin,
        axum::http::Request::get("/metrics").body(axum::body::Body::empty()).unwrap(),
    )
    .await
    .unwrap();
    let text = String::from_utf8(
        http_body_util::BodyExt::collect(metrics.into_body()).await.unwrap().to_bytes().to_vec(),
    )
    .unwrap();
    assert!(text.contains(r#"palisade_model_loads_total{result="failed"} 1"#), "{text}");
    assert!(text.contains("palisade_models_served 1"), "{text}");
    eprintln!("2.0.0 served {took:?} after its build");
}
