//! What an explanation costs through the whole server (docs/explain.md), against a
//! prediction of the same model: the router of `palisade_server::app` called in-process
//! with `oneshot` (context, authentication, authorization, audit in relaxed mode, body,
//! engine, response), as `outliers.rs` does. Models: the wine random forest of
//! `fixtures/explain/wine_rf.onnx` (100 trees, 13 features, 3 classes; TreeShap with covers
//! from the fixture's 60 background rows) and the iris logistic regression
//! (`fixtures/models/iris_lr_nozipmap.onnx`; KernelShap over 20 background rows, every
//! coalition: 16 × 20 model rows per explained row). Requests interleaved in two rounds.
//! `cargo bench -p palisade-server --bench explain`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_bundle::Store;
use palisade_server::Registry;
use serde_json::{Value, json};

mod support;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// Builds `onnx` as `name` with an explainer of `kind` over the CSV `background`.
fn add(store: &Store, scratch: &Path, name: &str, onnx: &Path, kind: &str, background: &str) {
    let dir = tempfile::tempdir_in(scratch).unwrap();
    std::fs::copy(onnx, dir.path().join("model.onnx")).unwrap();
    std::fs::write(dir.path().join("bg.csv"), background).unwrap();
    std::fs::write(
        dir.path().join("palisade.yaml"),
        format!(
            "name: {name}\nversion: \"1\"\nowners: [alice@example.com]\nmodel: {{path: model.onnx, format: onnx}}\nexplainer: {{type: {kind}, background: bg.csv}}\n"
        ),
    )
    .unwrap();
    let mut staged = store.stage(dir.path()).unwrap();
    let model = palisade_runtime::prepare(staged.manifest(), &staged.model_path()).unwrap();
    staged.set_signature(model.signature()).unwrap();
    let kind = staged.manifest().explainer.as_ref().unwrap().kind;
    let bytes = std::fs::read(staged.model_path()).unwrap();
    let (record, _) = palisade_server::explain::build_record(
        kind,
        "bg.csv",
        staged.background().unwrap(),
        &bytes,
        model.signature(),
    )
    .unwrap();
    staged.set_explainer(&record).unwrap();
    store.commit(staged).unwrap();
}

fn csv(rows: &[Vec<f64>]) -> String {
    let m = rows[0].len();
    let mut text = (0..m).map(|j| format!("f{j}")).collect::<Vec<_>>().join(",") + "\n";
    for row in rows {
        text += &(row.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",") + "\n");
    }
    text
}

fn body(rows: &[Vec<f64>]) -> String {
    let data: Vec<f64> = rows.iter().flatten().copied().collect();
    json!({"inputs": [{"name": "X", "shape": [rows.len(), rows[0].len()], "datatype": "FP32", "data": data}]})
        .to_string()
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    let oracle: Value =
        serde_json::from_slice(&std::fs::read(repo().join("fixtures/explain/wine_rf.json")).unwrap())
            .unwrap();
    let rows = |v: &Value| -> Vec<Vec<f64>> {
        v.as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r.as_array().unwrap().iter().map(Value::as_f64).collect::<Option<Vec<f64>>>())
            .collect()
    };
    let wine_background = rows(&oracle["background"]);
    let wine_rows = rows(&oracle["rows"]);
    add(
        &store,
        tmp.path(),
        "wine",
        &repo().join("fixtures/explain/wine_rf.onnx"),
        "TreeShap",
        &csv(&wine_background),
    );
    let iris: Vec<Vec<f64>> = std::fs::read_to_string(repo().join("fixtures/monitoring/reference.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .step_by(7)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    add(
        &store,
        tmp.path(),
        "iris",
        &repo().join("fixtures/models/iris_lr_nozipmap.onnx"),
        "KernelShap",
        &csv(&iris[..20]),
    );

    let registry = Registry::load(&store).unwrap();
    let caller = support::Caller::new(&store, registry, &tmp.path().join("audit"));
    let call = |uri: &str, body: &str| caller.send("POST", uri, body.to_owned());
    let wine_one = body(&wine_rows[..1]);
    let wine_seven = body(&wine_rows[..7]);
    let iris_one = body(&iris[20..21]);
    let cases: [(&str, &str, &str); 6] = [
        ("wine RF-100, 1 row: infer", "/v2/models/wine/infer", &wine_one),
        ("wine RF-100, 1 row: explain (TreeShap)", "/v2/models/wine/explain", &wine_one),
        ("wine RF-100, 7 rows: infer", "/v2/models/wine/infer", &wine_seven),
        ("wine RF-100, 7 rows: explain (TreeShap)", "/v2/models/wine/explain", &wine_seven),
        ("iris LR, 1 row: infer", "/v2/models/iris/infer", &iris_one),
        ("iris LR, 1 row: explain (KernelShap, 20 background rows)", "/v2/models/iris/explain", &iris_one),
    ];
    let mut group = c.benchmark_group("explain");
    // Interleaved rounds, so that load from other work on the machine falls on every case.
    for round in 0..2 {
        for (name, uri, body) in &cases {
            group.bench_function(format!("round {round}: {name}"), |b| b.iter(|| call(uri, body)));
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
