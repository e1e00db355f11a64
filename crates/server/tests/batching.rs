//! Adaptive batching through the HTTP layer: concurrent requests to a batched model get
//! exactly the bytes each request gets alone, batches really form (the batch-size histogram
//! says so), and bad `batching:` sections are refused.
//!
//! "Alone" is the unbatched model for MLPs and tree ensembles. Linear models compute a
//! lone row in onnxruntime's one-row order, which no batch can reproduce: with batching on,
//! a lone row is run as a batch of two, so alone means alone on the batched model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::*;
use palisade_runtime::EngineConfig;
use palisade_server::{Platform, Registry, ServerConfig};

fn manifest(batching: &str) -> String {
    format!(
        "name: mlp\nversion: \"1\"\nowners: [alice@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\n{batching}"
    )
}

fn app_for(manifest: &str, fixture: &str) -> (tempfile::TempDir, TestApp) {
    let (tmp, store) = store_with_manifest(fixture, manifest);
    let registry = Registry::load(&store).unwrap();
    let app = app_with(
        store.root(),
        registry,
        EngineConfig { threads: 2, queue_capacity: 1024, ..EngineConfig::default() },
        ServerConfig::default(),
        Platform::parse(Path::new("platform.yaml"), "").unwrap(),
        None,
    );
    (tmp, app)
}

fn rows() -> Vec<Vec<f64>> {
    let text = std::fs::read_to_string(fixture("iris").with_extension("json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect())
        .collect()
}

fn body(row: &[f64]) -> String {
    serde_json::json!({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": row}]})
        .to_string()
}

async fn metrics_text(app: &TestApp) -> String {
    let admin = palisade_server::admin_app(app.state.clone());
    let request = axum::http::Request::get("/metrics").body(axum::body::Body::empty()).unwrap();
    let res = tower::ServiceExt::oneshot(admin, request).await.unwrap();
    let bytes = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_answers_are_the_unbatched_bytes() {
    for fixture_name in ["iris_mlp_nozipmap", "iris_lr_nozipmap", "iris_rf_nozipmap"] {
        let (_plain_tmp, plain) = app_for(&manifest(""), fixture_name);
        let (_batched_tmp, batched) =
            app_for(&manifest("batching: {max_batch_size: 32, max_latency_us: 20000}\n"), fixture_name);
        let rows = rows();
        let lone_row_differs = fixture_name.starts_with("iris_lr");
        let mut expected = Vec::new();
        for row in &rows {
            let alone = call(&batched, "POST", "/v2/models/mlp/infer", body(row)).await;
            let unbatched = call(&plain, "POST", "/v2/models/mlp/infer", body(row)).await;
            assert_eq!((alone.status.as_u16(), unbatched.status.as_u16()), (200, 200));
            if !lone_row_differs {
                assert_eq!(alone.json()["outputs"], unbatched.json()["outputs"], "{fixture_name}");
            }
            expected.push(alone.json()["outputs"].clone());
        }
        let tasks: Vec<_> = rows
            .iter()
            .map(|row| {
                let (app, body) = (batched.clone(), body(row));
                tokio::spawn(async move { call(&app, "POST", "/v2/models/mlp/infer", body).await })
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            let reply = task.await.unwrap();
            assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
            assert_eq!(reply.json()["outputs"], expected[i], "{fixture_name}: row {i}");
        }
        let text = metrics_text(&batched).await;
        let batches = metric(&text, r#"palisade_batch_size_rows_count{model="mlp"}"#) - rows.len() as f64;
        let batched_rows = metric(&text, r#"palisade_batch_size_rows_sum{model="mlp"}"#) - rows.len() as f64;
        assert_eq!(batched_rows, rows.len() as f64, "{fixture_name}: every row went through the batcher");
        // How many batches form depends on timing here (a batch goes at once while an
        // engine thread is free); crates/runtime/tests/batching.rs holds the threads busy
        // to show that batches form.
        assert!(batches >= 1.0, "{fixture_name}: no batch ran");
        assert!(!metrics_text(&plain).await.contains(r#"palisade_batch_size_rows_count{model="mlp"}"#));
    }
}

#[test]
fn bad_batching_sections_name_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::copy(fixture("iris_mlp_nozipmap"), dir.join("model.onnx")).unwrap();
    for (section, field) in [
        ("batching: {max_batch_size: 0}\n", "batching.max_batch_size"),
        ("batching: {max_batch_size: 8, max_latency_us: 5000000}\n", "batching.max_latency_us"),
        ("batching: {max_batch_size: 8, queue_size: 0}\n", "batching.queue_size"),
        ("batching: {max_batch_size: 8, max_wait: 3}\n", "batching"),
    ] {
        std::fs::write(dir.join("palisade.yaml"), manifest(section)).unwrap();
        let err = palisade_bundle::manifest::Manifest::load_dir(dir).unwrap_err().to_string();
        assert!(err.contains(field), "{section}: {err}");
    }
    let err = Platform::parse(Path::new("platform.yaml"), "batching: {max_batch_size: 0}\n").unwrap_err();
    assert!(err.to_string().contains("platform.yaml: field `batching.max_batch_size`"), "{err}");
}
