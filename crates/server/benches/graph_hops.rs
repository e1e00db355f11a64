//! What a hop of an inference graph costs in the server: the same request served by a model
//! directly and through graphs of 1 and 4 model nodes, everything in-process (the router of
//! `palisade_server::app` called with `oneshot`: context, authentication, authorization,
//! audit record building and writing, each hop's authorization and audit record, the engine).
//! The audit log runs in relaxed mode, so that fsyncs (the same for both) do not drown the
//! difference. `cargo bench -p palisade-server --bench graph_hops`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_bundle::Store;
use palisade_server::Registry;

mod support;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models").join(format!("{name}.onnx"))
}

fn add(store: &Store, scratch: &Path, manifest: &str, model: Option<&str>) {
    let dir = tempfile::tempdir_in(scratch).unwrap();
    std::fs::write(dir.path().join("palisade.yaml"), manifest).unwrap();
    if let Some(model) = model {
        std::fs::copy(fixture(model), dir.path().join("model.onnx")).unwrap();
    }
    let mut staged = store.stage(dir.path()).unwrap();
    let signature = if model.is_some() {
        palisade_runtime::prepare(staged.manifest(), &staged.model_path()).unwrap().signature().clone()
    } else {
        palisade_graph::compile(staged.manifest(), &palisade_graph::StoreCatalog(store), None)
            .unwrap()
            .signature()
            .clone()
    };
    staged.set_signature(&signature).unwrap();
    store.commit(staged).unwrap();
}

/// `n` scaler nodes in a chain: scaler, RENAME scaled -> X, scaler, ...
fn chain(n: usize) -> String {
    let mut body = String::from("graph:\n");
    let mut indent = String::from("  ");
    for i in 0..n {
        let first = if i == 0 { "" } else { "- " };
        body.push_str(&format!("{indent}{first}name: s{i}\n"));
        let inner = if i == 0 { indent.clone() } else { format!("{indent}  ") };
        body.push_str(&format!("{inner}model: scaler\n"));
        if i + 1 < n {
            body.push_str(&format!("{inner}children:\n{inner}- name: r{i}\n{inner}  implementation: RENAME\n{inner}  parameters: [{{name: scaled, value: X}}]\n{inner}  children:\n"));
            indent = format!("{inner}  ");
        }
    }
    format!("name: chain{n}\nversion: \"1\"\nowners: [alice@example.com]\n{body}")
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    let model = |name: &str| {
        format!(
            "name: {name}\nversion: \"1\"\nowners: [alice@example.com]\nmodel: {{path: model.onnx, format: onnx}}\n"
        )
    };
    add(&store, tmp.path(), &model("scaler"), Some("graphs/scaler"));
    for (name, fixture) in
        [("iris-lr", "iris_lr_nozipmap"), ("iris-rf", "iris_rf_nozipmap"), ("iris-mlp", "iris_mlp_nozipmap")]
    {
        add(&store, tmp.path(), &model(name), Some(fixture));
    }
    add(&store, tmp.path(), &chain(1), None);
    add(&store, tmp.path(), &chain(4), None);
    add(&store, tmp.path(), "name: split\nversion: \"1\"\nowners: [alice@example.com]\ntraffic: [{model: iris-lr, weight: 90}, {model: iris-lr-b, weight: 10}]\n".replace("iris-lr-b", "iris-mlp").as_str(), None);
    add(
        &store,
        tmp.path(),
        "name: mean\nversion: \"1\"\nowners: [alice@example.com]\ngraph:\n  name: mean\n  implementation: AVERAGE_COMBINER\n  children:\n  - {name: lr, model: iris-lr}\n  - {name: rf, model: iris-rf}\n  - {name: mlp, model: iris-mlp}\n",
        None,
    );

    let registry = Registry::load(&store).unwrap();
    let caller = support::Caller::new(&store, registry, &tmp.path().join("audit"));
    for model in ["scaler", "chain1", "chain4", "iris-lr", "split", "iris-rf", "iris-mlp", "mean"] {
        c.bench_function(&format!("POST /v2/models/{model}/infer"), |b| {
            b.iter(|| caller.infer_iris_row(model))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
