//! Whether a node's children run in parallel (issue 14: "parallel children take about as
//! long as the slowest child"): each child alone, then an AVERAGE_COMBINER over them, one
//! request after the other, medians of wall time through the whole server in-process.
//!
//! - Children that wait: three upstream models on a V2 server on 127.0.0.1 (in this
//!   process) that answers after 5, 10 and 20 ms. In turn they would take 35 ms; in
//!   parallel, the slowest's 20 ms.
//! - Children that compute: iris LogisticRegression, RandomForest-100 and MLP on a batch of
//!   2,000 rows (a few ms each on tract). On 2 vCPUs three computing children cannot all
//!   run at once, so "the slowest" is the bound only with a core per child.
//!
//! `cargo bench -p palisade-server --bench graph_parallel` (`GRAPH_PARALLEL_REQUESTS`
//! sets the requests per row and round, default 60).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::Path as UrlPath;
use palisade_bundle::Store;
use palisade_runtime::UpstreamContext;
use palisade_server::Registry;
use serde_json::{Value, json};

mod support;

/// The upstream children: name and how long the upstream takes to answer.
const WAITING: [(&str, u64); 3] = [("wait-5ms", 5), ("wait-10ms", 10), ("wait-20ms", 20)];

fn requests() -> usize {
    std::env::var("GRAPH_PARALLEL_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(60)
}

/// A V2 server that answers `/v2/models/wait-Nms/infer` after N ms with a label and three
/// probabilities per input row.
async fn waiting_upstream() -> String {
    async fn infer(UrlPath(model): UrlPath<String>, Json(body): Json<Value>) -> Json<Value> {
        let ms = model.trim_start_matches("wait-").trim_end_matches("ms").parse().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        let rows = body["inputs"][0]["shape"][0].as_u64().unwrap_or(1) as usize;
        Json(json!({
            "model_name": model,
            "outputs": [
                {"name": "label", "datatype": "INT64", "shape": [rows], "data": vec![1; rows]},
                {"name": "probabilities", "datatype": "FP32", "shape": [rows, 3], "data": vec![0.25; rows * 3]},
            ],
        }))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/v2/models/{model}/infer", axum::routing::post(infer));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn rows(n: usize) -> String {
    let data: Vec<f32> = (0..n).flat_map(|i| [5.1 + (i % 7) as f32 / 10.0, 3.5, 1.4, 0.2]).collect();
    json!({"inputs": [{"name": "X", "shape": [n, 4], "datatype": "FP32", "data": data}]}).to_string()
}

fn median_ms(caller: &support::Caller, model: &str, body: &str, n: usize) -> f64 {
    let mut took: Vec<Duration> = (0..n)
        .map(|_| {
            let started = Instant::now();
            caller.send("POST", &format!("/v2/models/{model}/infer"), body.to_owned());
            started.elapsed()
        })
        .collect();
    took.sort();
    took[took.len() / 2].as_secs_f64() * 1e3
}

fn main() {
    let upstream_runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let url = upstream_runtime.block_on(waiting_upstream());
    let egress =
        palisade_runtime::EgressPolicy { allowed_hosts: vec!["127.0.0.1".to_owned()], own_ports: Vec::new() };
    let upstream = UpstreamContext { egress: Arc::new(egress), ..UpstreamContext::default() };
    let check = UpstreamContext { check_only: true, ..upstream.clone() };

    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    let head = |name: &str| format!("name: {name}\nversion: \"1\"\nowners: [alice@example.com]\n");
    for (name, _) in WAITING {
        let manifest = format!(
            "{}model:\n  format: upstream\n  upstream: {{url: \"{url}\", timeout: 10s}}\n  inputs: [{{name: X, datatype: FP32, shape: [-1, 4]}}]\n  outputs: [{{name: label, datatype: INT64, shape: [-1]}}, {{name: probabilities, datatype: FP32, shape: [-1, 3]}}]\n",
            head(name)
        );
        support::add(&store, tmp.path(), &manifest, None, &check);
    }
    for (name, fixture) in
        [("iris-lr", "iris_lr_nozipmap"), ("iris-rf", "iris_rf_nozipmap"), ("iris-mlp", "iris_mlp_nozipmap")]
    {
        support::add(
            &store,
            tmp.path(),
            &format!("{}model: {{path: model.onnx, format: onnx}}\n", head(name)),
            Some(fixture),
            &check,
        );
    }
    let combiner = |name: &str, children: &[&str]| {
        let children: String = children.iter().map(|c| format!("  - {{name: {c}, model: {c}}}\n")).collect();
        format!(
            "{}graph:\n  name: {name}\n  implementation: AVERAGE_COMBINER\n  children:\n{children}",
            head(name)
        )
    };
    support::add(&store, tmp.path(), &combiner("mean-waiting", &WAITING.map(|(n, _)| n)), None, &check);
    support::add(
        &store,
        tmp.path(),
        &combiner("mean-computing", &["iris-lr", "iris-rf", "iris-mlp"]),
        None,
        &check,
    );

    let registry = Registry::load_with(&store, &upstream).unwrap();
    let caller = support::Caller::new(&store, registry, &tmp.path().join("audit"));
    let (one, batch) = (rows(1), rows(2_000));
    let n = requests();
    println!("| request | round | median (ms) |");
    println!("|---|---:|---:|");
    for round in 0..2 {
        let mut sum = 0.0;
        for (name, _) in WAITING {
            let ms = median_ms(&caller, name, &one, n);
            sum += ms;
            println!("| `{name}` directly, 1 row | {round} | {ms:.2} |");
        }
        println!("| the three in turn (sum of the rows above) | {round} | {sum:.2} |");
        println!(
            "| AVERAGE_COMBINER over the three | {round} | {:.2} |",
            median_ms(&caller, "mean-waiting", &one, n)
        );
        let mut sum = 0.0;
        for name in ["iris-lr", "iris-rf", "iris-mlp"] {
            let ms = median_ms(&caller, name, &batch, n);
            sum += ms;
            println!("| `{name}` directly, 2,000 rows | {round} | {ms:.2} |");
        }
        println!("| the three in turn (sum of the rows above) | {round} | {sum:.2} |");
        println!(
            "| AVERAGE_COMBINER over the three, 2,000 rows | {round} | {:.2} |",
            median_ms(&caller, "mean-computing", &batch, n)
        );
    }
}
