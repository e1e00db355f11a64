//! What monitoring adds to a prediction (docs/monitoring.md): the same iris request served
//! by the same model without monitoring, with Mahalanobis outlier scores, with Mahalanobis
//! scores and the drift window, and with an IsolationForest scored natively (recognized in
//! its skl2onnx export) or as its graph (the same export with the operands of its last
//! `Add` swapped, which Palisade does not recognize, so the graph runs on the engine), through
//! the whole server in-process (the router of `palisade_server::app` called with `oneshot`:
//! context, authentication, authorization, audit, engine, response). The audit log runs in
//! relaxed mode so that fsyncs do not drown the difference.
//! `cargo bench -p palisade-server --bench outliers`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_bundle::Store;
use palisade_server::Registry;

mod support;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// Builds the iris classifier with `monitoring` (YAML lines under `monitoring:`, or none).
fn add(store: &Store, scratch: &Path, name: &str, monitoring: Option<&str>) {
    let dir = tempfile::tempdir_in(scratch).unwrap();
    std::fs::copy(repo().join("fixtures/models/iris_lr_nozipmap.onnx"), dir.path().join("model.onnx"))
        .unwrap();
    for file in ["reference.csv", "iforest.onnx"] {
        std::fs::copy(repo().join("fixtures/monitoring").join(file), dir.path().join(file)).unwrap();
    }
    std::fs::write(dir.path().join("iforest-graph.onnx"), graph_only_forest()).unwrap();
    let section = monitoring.map(|m| format!("monitoring:\n{m}")).unwrap_or_default();
    std::fs::write(
        dir.path().join("palisade.yaml"),
        format!(
            "name: {name}\nversion: \"1\"\nowners: [alice@example.com]\nmodel: {{path: model.onnx, format: onnx}}\n{section}"
        ),
    )
    .unwrap();
    let mut staged = store.stage(dir.path()).unwrap();
    let model = palisade_runtime::prepare(staged.manifest(), &staged.model_path()).unwrap();
    staged.set_signature(model.signature()).unwrap();
    if let Some(section) = staged.manifest().monitoring.clone() {
        let forest = section.forest_model().map(|p| p.under(&staged.dir_path()));
        let reference = |field: &'static str| staged.reference(field).map(<[u8]>::to_vec);
        let (record, notes) = palisade_server::monitoring::build_record(
            &section,
            &reference,
            forest.as_deref(),
            model.signature(),
        )
        .unwrap();
        let expected = match name {
            "forest" => "scored natively",
            "forest-graph" => "scored by running its graph",
            _ => "",
        };
        assert!(notes.iter().any(|n| n.contains(expected)), "{name}: {notes:?}");
        staged.set_monitoring(&record).unwrap();
    }
    store.commit(staged).unwrap();
}

/// fixtures/monitoring/iforest.onnx with `scores = Add(shift, score_samples)` instead of
/// `Add(score_samples, shift)`: the same scores, but not the layout Palisade recognizes.
fn graph_only_forest() -> Vec<u8> {
    use prost::Message;
    let bytes = std::fs::read(repo().join("fixtures/monitoring/iforest.onnx")).unwrap();
    let mut model = palisade_runtime::onnx::pb::ModelProto::decode(&bytes[..]).unwrap();
    let graph = model.graph.as_mut().unwrap();
    let add = graph.node.iter_mut().find(|n| n.output.iter().any(|o| o == "scores")).unwrap();
    add.input.swap(0, 1);
    model.encode_to_vec()
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    let mahalanobis = "  outliers: {method: mahalanobis, reference: reference.csv}\n";
    let drift = "  drift: {reference: reference.csv, window: 1000}\n";
    add(&store, tmp.path(), "plain", None);
    add(&store, tmp.path(), "mahalanobis", Some(mahalanobis));
    add(&store, tmp.path(), "mahalanobis-drift", Some(&format!("{mahalanobis}{drift}")));
    add(&store, tmp.path(), "forest", Some("  outliers: {method: isolation_forest, model: iforest.onnx}\n"));
    add(
        &store,
        tmp.path(),
        "forest-graph",
        Some("  outliers: {method: isolation_forest, model: iforest-graph.onnx}\n"),
    );

    let registry = Registry::load(&store).unwrap();
    let caller = support::Caller::new(&store, registry, &tmp.path().join("audit"));
    let mut group = c.benchmark_group("monitoring");
    // Interleaved rounds, so that load from other work on the machine falls on every model.
    for round in 0..2 {
        for model in ["plain", "mahalanobis", "mahalanobis-drift", "forest", "forest-graph"] {
            group.bench_function(format!("round {round}: POST /v2/models/{model}/infer"), |b| {
                b.iter(|| caller.infer_iris_row(model))
            });
        }
    }
    // A drift report over a full window of 1,000 rows like the reference (150 rows, 4
    // features): the per-scrape cost of the gauges too.
    let text = std::fs::read_to_string(repo().join("fixtures/monitoring/reference.csv")).unwrap();
    let reference: Vec<f64> =
        text.lines().skip(1).flat_map(|l| l.split(',').map(|v| v.parse::<f64>().unwrap())).collect();
    let rows: Vec<f64> = reference.iter().copied().cycle().take(1000 * 4).collect();
    let body =
        serde_json::json!({"inputs": [{"name": "X", "shape": [1000, 4], "datatype": "FP32", "data": rows}]})
            .to_string();
    caller.send("POST", "/v2/models/mahalanobis-drift/infer", body);
    group.bench_function("GET /v2/models/mahalanobis-drift/drift (window of 1000 rows)", |b| {
        b.iter(|| caller.send("GET", "/v2/models/mahalanobis-drift/drift", String::new()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
