//! Every ONNX fixture, run by tract with Palisade's operators, against onnxruntime's
//! outputs recorded by `fixtures/generate.py`: labels must be equal, probabilities and
//! regression values within 1e-5.
//!
//! Models are loaded through the tract API directly (not the runtime's loader), so this
//! test pins the operators alone.

// Helpers outside #[test] functions count as library code for clippy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use palisade_runtime::onnx::ops::{self, CLASSIFIER_OP, LINEAR_CLASSIFIER_OP, NORMALIZER_OP, REGRESSOR_OP};
use serde_json::Value;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::SimpleState;

const CLASSIFIERS: [&str; 12] = [
    "iris_rf",
    "iris_rf_nozipmap",
    "iris_lr",
    "iris_lr_nozipmap",
    "iris_gb",
    "iris_gb_nozipmap",
    "iris_mlp",
    "iris_mlp_nozipmap",
    "iris_binary_rf",
    "iris_binary_rf_nozipmap",
    "iris_binary_gb",
    "iris_binary_gb_nozipmap",
];
const REGRESSORS: [&str; 2] = ["iris_rf_regressor", "iris_gb_regressor"];
const TOLERANCE: f32 = 1e-5;
/// Rows also run one at a time.
const SINGLE_ROWS: [usize; 5] = [0, 57, 70, 83, 149];

type Plan = Arc<TypedSimplePlan>;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models")
}

fn read_json(name: &str) -> Value {
    let path = fixtures().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("fixture {} is missing ({e}); regenerate with fixtures/generate.sh", path.display())
    });
    serde_json::from_str(&text).unwrap()
}

fn framework(palisade_ops: bool) -> tract_onnx::Onnx {
    let mut onnx = tract_onnx::onnx().with_ignore_output_shapes(true).with_ignore_output_types(true);
    if palisade_ops {
        ops::register(&mut onnx.op_register);
    }
    onnx
}

/// Loads a fixture with input `[N, F]` of `dt`, N symbolic, F as declared.
fn optimized_with(name: &str, palisade_ops: bool, dt: DatumType) -> TypedModel {
    let path = fixtures().join(format!("{name}.onnx"));
    assert!(path.exists(), "fixture {} is missing; regenerate with fixtures/generate.sh", path.display());
    let width = if name.ends_with("regressor") { 3 } else { 4 };
    let load = || -> TractResult<TypedModel> {
        let mut model = framework(palisade_ops).model_for_path(&path)?;
        let n = model.symbols.sym("N");
        let fact = InferenceFact::dt_shape(dt, tvec![n.to_dim(), width.to_dim()]);
        model.set_input_fact(0, fact)?;
        model.into_optimized()
    };
    load().unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

fn optimized(name: &str, palisade_ops: bool) -> TypedModel {
    optimized_with(name, palisade_ops, DatumType::F32)
}

fn plan(name: &str) -> Plan {
    optimized(name, true).into_runnable().unwrap()
}

/// The 150 iris rows, keeping the first `width` features.
fn iris(width: usize) -> Vec<Vec<f32>> {
    let json = read_json("iris.json");
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 150);
    rows.iter()
        .map(|r| r.as_array().unwrap()[..width].iter().map(|v| v.as_f64().unwrap() as f32).collect())
        .collect()
}

fn batch(rows: &[Vec<f32>]) -> TValue {
    let width = rows[0].len();
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Tensor::from_shape(&[rows.len(), width], &flat).unwrap().into_tvalue()
}

fn run(plan: &Plan, rows: &[Vec<f32>]) -> TVec<TValue> {
    let mut state = SimpleState::new(plan).unwrap();
    state.run(tvec!(batch(rows))).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

/// Asserts every value is within [`TOLERANCE`]; returns the largest difference.
#[track_caller]
fn assert_close(name: &str, what: &str, actual: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(actual.len(), expected.len(), "{name}: {what} length");
    let mut max = 0.0f32;
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!((a - e).abs() <= TOLERANCE, "{name}: {what}[{i}] = {a}, onnxruntime gave {e}");
        max = max.max((a - e).abs());
    }
    max
}

/// Labels and row-major probabilities of a classifier's outputs.
fn classifier_outputs(name: &str, outputs: &TVec<TValue>) -> (Vec<i64>, Vec<f32>) {
    assert_eq!(outputs.len(), 2, "{name}: outputs");
    let labels =
        outputs[0].cast_to::<i64>().unwrap().try_as_plain_ram().unwrap().as_slice::<i64>().unwrap().to_vec();
    let probabilities = outputs[1].try_as_plain_ram().unwrap().as_slice::<f32>().unwrap().to_vec();
    (labels, probabilities)
}

#[test]
fn classifiers_match_onnxruntime() {
    let rows = iris(4);
    for name in CLASSIFIERS {
        let expected = read_json(&format!("{name}.expected.json"));
        let labels: Vec<i64> =
            expected["label"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        let probabilities: Vec<Vec<f32>> =
            expected["probabilities"].as_array().unwrap().iter().map(floats).collect();
        let n_classes = expected["classes"].as_array().unwrap().len();
        assert_eq!((labels.len(), probabilities.len()), (150, 150), "{name}: expected file");

        let plan = plan(name);
        let outputs = run(&plan, &rows);
        assert_eq!(outputs[1].shape(), [150, n_classes], "{name}: probabilities shape");
        let (got_labels, got_probabilities) = classifier_outputs(name, &outputs);
        assert_eq!(got_labels, labels, "{name}: labels of the 150-row batch");
        let flat: Vec<f32> = probabilities.iter().flatten().copied().collect();
        let max = assert_close(name, "batch probabilities", &got_probabilities, &flat);
        eprintln!("{name}: labels equal, max |probability - onnxruntime| = {max:e}");

        for r in SINGLE_ROWS {
            let outputs = run(&plan, &rows[r..=r]);
            let (got_label, got_probabilities) = classifier_outputs(name, &outputs);
            assert_eq!(got_label, [labels[r]], "{name}: label of row {r} alone");
            assert_close(
                name,
                &format!("probabilities of row {r} alone"),
                &got_probabilities,
                &probabilities[r],
            );
        }
    }
}

#[test]
fn regressors_match_onnxruntime() {
    let rows = iris(3);
    for name in REGRESSORS {
        let expected = floats(&read_json(&format!("{name}.expected.json"))["values"]);
        assert_eq!(expected.len(), 150, "{name}: expected file");
        let plan = plan(name);
        let outputs = run(&plan, &rows);
        assert_eq!(outputs.len(), 1, "{name}: outputs");
        assert_eq!(outputs[0].shape(), [150, 1], "{name}: shape");
        let values = outputs[0].try_as_plain_ram().unwrap().as_slice::<f32>().unwrap().to_vec();
        let max = assert_close(name, "batch values", &values, &expected);
        eprintln!("{name}: max |value - onnxruntime| = {max:e}");
        for r in SINGLE_ROWS {
            let outputs = run(&plan, &rows[r..=r]);
            let value = outputs[0].try_as_plain_ram().unwrap().as_slice::<f32>().unwrap().to_vec();
            assert_close(name, &format!("value of row {r} alone"), &value, &expected[r..=r]);
        }
    }
}

#[test]
fn inputs_of_other_types_are_cast_to_f32() {
    let rows = iris(4);
    let expected = read_json("iris_gb.expected.json");
    let plan = plan("iris_gb");
    let as_f64: Vec<f64> = rows.iter().flatten().map(|&v| f64::from(v)).collect();
    // The plan was typed for f32 input; a f64 model input needs its own plan.
    let f64_plan = optimized_with("iris_gb", true, DatumType::F64).into_runnable().unwrap();
    let x = Tensor::from_shape(&[150, 4], &as_f64).unwrap().into_tvalue();
    let outputs = SimpleState::new(&f64_plan).unwrap().run(tvec!(x)).unwrap();
    let (labels, _) = classifier_outputs("iris_gb (f64 input)", &outputs);
    let want: Vec<i64> = expected["label"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    assert_eq!(labels, want);
    // And the f32 plan still answers.
    assert_eq!(run(&plan, &rows[..1])[0].shape(), [1]);
}

fn op_names(model: &TypedModel) -> Vec<String> {
    model.nodes().iter().map(|n| n.op().name().to_string()).collect()
}

#[test]
fn palisade_ops_replace_tracts() {
    let ours = op_names(&optimized("iris_rf_nozipmap", true));
    assert!(ours.iter().any(|n| n == CLASSIFIER_OP), "no {CLASSIFIER_OP} in {ours:?}");
    assert!(
        !ours.iter().any(|n| n == "TreeEnsembleClassifier"),
        "tract's classifier is still there: {ours:?}"
    );

    // Without Palisade's register, the same file runs tract's own classifier.
    let stock = op_names(&optimized("iris_rf_nozipmap", false));
    assert!(stock.iter().any(|n| n == "TreeEnsembleClassifier"), "stock tract ops: {stock:?}");
    assert!(!stock.iter().any(|n| n == CLASSIFIER_OP));

    let regressor = op_names(&optimized("iris_gb_regressor", true));
    assert!(regressor.iter().any(|n| n == REGRESSOR_OP), "{regressor:?}");

    // ZipMap is a pass-through the optimizer removes; the output keeps its name.
    let zipmap = optimized("iris_rf", true);
    assert!(!op_names(&zipmap).iter().any(|n| n.contains("ZipMap")), "{:?}", op_names(&zipmap));
    let output = zipmap.output_outlets().unwrap()[1];
    assert_eq!(zipmap.outlet_label(output), Some("output_probability"));
}

#[test]
fn linear_models_are_one_palisade_op_each() {
    for name in ["iris_lr", "iris_lr_nozipmap"] {
        let ours = op_names(&optimized(name, true));
        eprintln!("{name}: {ours:?}");
        assert!(
            ours.iter().any(|n| n == LINEAR_CLASSIFIER_OP),
            "{name}: no {LINEAR_CLASSIFIER_OP} in {ours:?}"
        );
        assert!(ours.iter().any(|n| n == NORMALIZER_OP), "{name}: no {NORMALIZER_OP} in {ours:?}");
        // Source, classifier, normalizer: nothing of tract's expansion (EinSum, Softmax,
        // ArgMax, Gather, ...) and no Cast of the int64 labels to int64.
        assert_eq!(ours.len(), 3, "{name}: {ours:?}");
    }
    let stock = op_names(&optimized("iris_lr_nozipmap", false));
    assert!(!stock.iter().any(|n| n.starts_with("Palisade")), "{stock:?}");
    assert!(stock.len() > 6, "tract's own expansion: {stock:?}");
    // The label output keeps its name and type through the removed Cast.
    let model = optimized("iris_lr", true);
    let label = model.output_outlets().unwrap()[0];
    assert_eq!(model.outlet_fact(label).unwrap().datum_type, DatumType::I64);
    assert_eq!(model.node(label.node).op().name(), LINEAR_CLASSIFIER_OP);
}

#[test]
fn label_casts_to_int64_vanish() {
    // skl2onnx's Cast(to=INT64) of the int64 labels of an ONNX-ML classifier.
    for name in ["iris_lr", "iris_rf", "iris_gb", "iris_binary_rf", "iris_binary_gb"] {
        let model = optimized(name, true);
        let ours = op_names(&model);
        assert!(!ours.iter().any(|n| n.contains("Cast")), "{name}: {ours:?}");
        let label = model.output_outlets().unwrap()[0];
        assert_eq!(model.outlet_fact(label).unwrap().datum_type, DatumType::I64, "{name}");
    }
}

#[test]
fn every_fixture_loads_and_optimizes() {
    for name in CLASSIFIERS.iter().chain(&REGRESSORS) {
        let plan = plan(name);
        assert!(!plan.model().nodes().is_empty(), "{name}");
    }
}
