//! Single-row and 150-row inference on every fixture: Palisade (tract with Palisade's
//! operators, one reused `SimpleState`) against onnxruntime (through the `ort` crate,
//! one intra-op thread), in the same process.
//!
//! ```sh
//! ORT_DYLIB_PATH=$PWD/.venv/fixtures/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.32.0 \
//!     cargo bench -p palisade-runtime --bench inference
//! ```
//!
//! Without `ORT_DYLIB_PATH` the onnxruntime benches are skipped (with a note) and the
//! Palisade ones still run. Bench ids are `<fixture>/<engine>/<rows>`, where engine is
//! `palisade` (the served path), `direct` (the model's main palisade-onnx-ml operator
//! alone, no tract: a tree ensemble or a linear classifier; the difference is tract's
//! per-run cost and the other nodes) or `ort`.

// A bench aborts on any failure, with the message of the `expect`.
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_onnx_ml::{LinearClassifier, TreeEnsembleClassifier, TreeEnsembleRegressor};
use palisade_runtime::onnx::ops::{
    self, LinearClassifierOp, TreeEnsembleClassifierOp, TreeEnsembleRegressorOp,
};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::SimpleState;

/// Fixtures benched, with their number of input features.
const FIXTURES: [(&str, usize); 14] = [
    ("iris_rf", 4),
    ("iris_rf_nozipmap", 4),
    ("iris_lr", 4),
    ("iris_lr_nozipmap", 4),
    ("iris_gb", 4),
    ("iris_gb_nozipmap", 4),
    ("iris_mlp", 4),
    ("iris_mlp_nozipmap", 4),
    ("iris_binary_rf", 4),
    ("iris_binary_rf_nozipmap", 4),
    ("iris_binary_gb", 4),
    ("iris_binary_gb_nozipmap", 4),
    ("iris_rf_regressor", 3),
    ("iris_gb_regressor", 3),
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models")
}

/// The 150 iris rows, row-major, keeping `width` features.
fn iris(width: usize) -> Vec<f32> {
    let text = std::fs::read_to_string(fixtures().join("iris.json")).expect("fixtures/models/iris.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("iris.json");
    let rows = json["rows"].as_array().expect("rows");
    rows.iter()
        .flat_map(|r| r.as_array().expect("row")[..width].iter().map(|v| v.as_f64().expect("f64") as f32))
        .collect()
}

/// The optimized model as the runtime loads it: Palisade's ops, batch dimension symbolic.
fn optimized(name: &str, width: usize) -> TypedModel {
    let mut onnx = tract_onnx::onnx().with_ignore_output_shapes(true).with_ignore_output_types(true);
    ops::register(&mut onnx.op_register);
    let path = fixtures().join(format!("{name}.onnx"));
    let mut model = onnx.model_for_path(&path).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    let n = model.symbols.sym("N");
    model
        .set_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), tvec![n.to_dim(), width.to_dim()]))
        .expect("input fact");
    model.into_optimized().unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

/// The palisade-onnx-ml operator inside an optimized model, if any, for the `direct`
/// benches.
enum Direct {
    Classifier(TreeEnsembleClassifier),
    Regressor(TreeEnsembleRegressor),
    Linear(LinearClassifier),
}

fn direct_op(model: &TypedModel) -> Option<Direct> {
    model.nodes().iter().find_map(|node| {
        if let Some(op) = node.op_as::<TreeEnsembleClassifierOp>() {
            return Some(Direct::Classifier(op.model().clone()));
        }
        if let Some(op) = node.op_as::<LinearClassifierOp>() {
            return Some(Direct::Linear(op.model().clone()));
        }
        node.op_as::<TreeEnsembleRegressorOp>().map(|op| Direct::Regressor(op.model().clone()))
    })
}

/// onnxruntime's environment, when `ORT_DYLIB_PATH` names the library to load.
fn ort_environment() -> Option<ort::environment::Environment> {
    std::env::var_os("ORT_DYLIB_PATH")?;
    Some(ort::init().with_name("palisade-bench").build().expect("onnxruntime environment"))
}

fn ort_session(env: &ort::environment::Environment, name: &str) -> ort::session::Session {
    let path = fixtures().join(format!("{name}.onnx"));
    let build = || -> Result<ort::session::Session, Box<dyn std::error::Error>> {
        let mut builder =
            ort::session::Session::builder(env)?.with_intra_threads(1)?.with_inter_threads(1)?;
        Ok(builder.commit_from_file(&path)?)
    };
    build().unwrap_or_else(|e| panic!("onnxruntime cannot load {name}: {e}"))
}

fn bench(c: &mut Criterion) {
    let ort_env = ort_environment();
    if ort_env.is_none() {
        eprintln!(
            "note: ORT_DYLIB_PATH is not set, skipping the onnxruntime benches; point it at \
             .venv/fixtures/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.*"
        );
    }
    for (name, width) in FIXTURES {
        let x = iris(width);
        let model = optimized(name, width);
        let direct = direct_op(&model);
        let plan = model.into_runnable().expect("runnable");
        let mut group = c.benchmark_group(name);

        for rows in [1usize, 150] {
            let data = &x[..rows * width];
            let input = Tensor::from_shape(&[rows, width], data).expect("input").into_tvalue();

            let mut state = SimpleState::new(&plan).expect("state");
            group.bench_function(format!("palisade/{rows}"), |b| {
                b.iter(|| black_box(state.run(tvec!(input.clone())).expect("run")))
            });

            if name == "iris_rf" {
                // The alternative to a reused state: a fresh state per run.
                let plan = Arc::clone(&plan);
                group.bench_function(format!("palisade-fresh-state/{rows}"), |b| {
                    b.iter(|| black_box(plan.run(tvec!(input.clone())).expect("run")))
                });
            }

            match &direct {
                Some(Direct::Classifier(m)) => {
                    let mut labels = vec![0; rows];
                    let mut scores = vec![0.0; rows * m.n_classes()];
                    group.bench_function(format!("direct/{rows}"), |b| {
                        b.iter(|| {
                            m.predict_into(black_box(data), rows, width, &mut labels, &mut scores)
                                .expect("predict");
                            black_box(&scores);
                        })
                    });
                }
                Some(Direct::Linear(m)) => {
                    let mut labels = vec![0; rows];
                    let mut scores = vec![0.0; rows * m.n_classes()];
                    group.bench_function(format!("direct/{rows}"), |b| {
                        b.iter(|| {
                            m.predict_into(black_box(data), rows, width, &mut labels, &mut scores)
                                .expect("predict");
                            black_box(&scores);
                        })
                    });
                }
                Some(Direct::Regressor(m)) => {
                    let mut values = vec![0.0; rows * m.n_targets()];
                    group.bench_function(format!("direct/{rows}"), |b| {
                        b.iter(|| {
                            m.predict_into(black_box(data), rows, width, &mut values).expect("predict");
                            black_box(&values);
                        })
                    });
                }
                None => {}
            }

            if let Some(env) = &ort_env {
                let mut session = ort_session(env, name);
                let input_name = session.inputs()[0].name().to_owned();
                group.bench_function(format!("ort/{rows}"), |b| {
                    b.iter(|| {
                        let tensor =
                            ort::value::TensorRef::from_array_view(([rows, width], data)).expect("tensor");
                        let outputs =
                            session.run(ort::inputs![input_name.as_str() => tensor]).expect("ort run");
                        black_box(outputs.len());
                    })
                });
            }
        }
        group.finish();
    }
}

/// tract's fixed cost per run: a plan whose only node is its `[N, 4]` source, which it
/// returns as output.
fn tract_overhead(c: &mut Criterion) {
    let mut model = TypedModel::default();
    let n = model.symbols.sym("N");
    let source = model.add_source("x", f32::fact([n.to_dim(), 4.to_dim()])).expect("source");
    model.select_output_outlets(&[source]).expect("outputs");
    let plan = model.into_runnable().expect("runnable");
    let mut state = SimpleState::new(&plan).expect("state");
    let input = Tensor::from_shape(&[1, 4], &[0.0f32; 4]).expect("input").into_tvalue();
    c.bench_function("tract_overhead/source_only/1", |b| {
        b.iter(|| black_box(state.run(tvec!(input.clone())).expect("run")))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(40);
    targets = tract_overhead, bench
}
criterion_main!(benches);
