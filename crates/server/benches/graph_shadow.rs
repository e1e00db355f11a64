//! What a hop and a shadow add to the caller's latency. The same one-row request, 20,000
//! times one after the other, to `iris-lr` directly, to a traffic split over it (one hop)
//! without a shadow, with a shadow model that runs (iris RandomForest-100) and with a
//! shadow that never answers (an upstream socket that accepts and stays silent): p50 and
//! p99 of each, in-process as in `graph_hops`.
//! `cargo bench -p palisade-server --bench graph_shadow`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use palisade_bundle::Store;
use palisade_runtime::UpstreamContext;
use palisade_server::Registry;
use tower::ServiceExt;

mod support;

/// Requests per graph and round (`GRAPH_SHADOW_REQUESTS` overrides, for a quick check).
fn requests() -> usize {
    std::env::var("GRAPH_SHADOW_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1e6
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let url = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        url
    });
    let egress =
        palisade_runtime::EgressPolicy { allowed_hosts: vec!["127.0.0.1".to_owned()], own_ports: Vec::new() };
    let upstream = UpstreamContext { egress: Arc::new(egress), ..UpstreamContext::default() };
    let check = UpstreamContext { check_only: true, ..upstream.clone() };

    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    let owner = "version: \"1\"\nowners: [alice@example.com]\n";
    let model = |name: &str| format!("name: {name}\n{owner}model: {{path: model.onnx, format: onnx}}\n");
    support::add(&store, tmp.path(), &model("iris-lr"), Some("iris_lr_nozipmap"), &check);
    support::add(&store, tmp.path(), &model("iris-rf"), Some("iris_rf_nozipmap"), &check);
    support::add(
        &store,
        tmp.path(),
        &format!(
            "name: hangs\n{owner}model:\n  format: upstream\n  upstream: {{url: \"{url}\", timeout: 1h}}\n  inputs: [{{name: X, datatype: FP32, shape: [-1, 4]}}]\n  outputs: [{{name: label, datatype: INT64, shape: [-1]}}]\n"
        ),
        None,
        &check,
    );
    support::add(
        &store,
        tmp.path(),
        &format!("name: plain\n{owner}traffic: [{{model: iris-lr, weight: 1}}]\n"),
        None,
        &check,
    );
    support::add(
        &store,
        tmp.path(),
        &format!(
            "name: shadowed\n{owner}traffic: [{{model: iris-lr, weight: 1}}]\nshadow: {{model: iris-rf}}\n"
        ),
        None,
        &check,
    );
    support::add(
        &store,
        tmp.path(),
        &format!(
            "name: hanging\n{owner}traffic: [{{model: iris-lr, weight: 1}}]\nshadow: {{model: hangs}}\n"
        ),
        None,
        &check,
    );

    let registry = Registry::load_with(&store, &upstream).unwrap();
    let (router, token) = support::serve(&store, registry, &tmp.path().join("audit"));
    let row = r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#;
    let requests = requests();
    println!("| graph | p50 (µs) | p99 (µs) | mean (µs) |");
    println!("|---|---:|---:|---:|");
    for round in 0..2 {
        for model in ["iris-lr", "plain", "shadowed", "hanging"] {
            let mut latencies = Vec::with_capacity(requests);
            for _ in 0..requests {
                let request = Request::builder()
                    .method("POST")
                    .uri(format!("/v2/models/{model}/infer"))
                    .header("authorization", format!("Bearer {token}"))
                    .body(Body::from(row))
                    .unwrap();
                let router = router.clone();
                let started = Instant::now();
                runtime.block_on(async move {
                    let response = router.oneshot(request).await.unwrap();
                    assert_eq!(response.status(), 200);
                    response.into_body().collect().await.unwrap();
                });
                latencies.push(started.elapsed());
            }
            let mean = latencies.iter().map(Duration::as_secs_f64).sum::<f64>() / requests as f64 * 1e6;
            latencies.sort();
            if round == 1 {
                println!(
                    "| {model} | {:.1} | {:.1} | {mean:.1} |",
                    percentile(&latencies, 0.5),
                    percentile(&latencies, 0.99)
                );
            }
        }
    }
}
