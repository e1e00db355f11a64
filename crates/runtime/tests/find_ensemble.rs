//! What TreeSHAP reads out of a model file (`onnx::ops::find_ensemble`): the trees and the
//! per-feature preprocessing before them, on the pipelines of `fixtures/explain/`
//! (`fixtures/explain.py`): the preprocessing applied in Rust gives onnxruntime's values of
//! the trees' input bit for bit (missing values imputed included); the opset-5
//! `TreeEnsemble` is read as the runtime runs it; other steps are refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use palisade_runtime::onnx::ops::{FoundEnsemble, find_ensemble};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn oracle(name: &str) -> Value {
    let path = repo().join(format!("fixtures/explain/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Rows as f32, `null` as NaN.
fn rows(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().map_or(f32::NAN, |x| x as f32)))
        .collect()
}

#[test]
fn preprocessing_gives_onnxruntimes_tree_inputs_bit_for_bit() {
    for (name, steps) in
        [("wine_imputed_rf", vec!["Imputer", "Scaler"]), ("diabetes_scaled_gb", vec!["Scaler"])]
    {
        let o = oracle(name);
        let found =
            find_ensemble(&std::fs::read(repo().join(format!("fixtures/explain/{name}.onnx"))).unwrap())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(found.preprocessing.names(), steps);
        let m = o["n_features"].as_u64().unwrap() as usize;
        let mut seen = rows(&o["rows"]);
        assert!(seen[0].is_nan(), "row 0 has a missing value");
        found.preprocessing.apply(&mut seen, m).unwrap();
        let want = rows(&o["rows_seen"]);
        assert_eq!(seen.len(), want.len());
        for (i, (g, w)) in seen.iter().zip(&want).enumerate() {
            assert!(g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()), "{name} value {i}: {g} vs {w}");
        }
        // The Imputer fills the missing value in; a Scaler alone keeps it missing.
        assert_eq!(want[0].is_nan(), name == "diabetes_scaled_gb");
    }
}

#[test]
fn the_opset_5_tree_ensemble_is_read_as_a_regressor() {
    let bytes = std::fs::read(repo().join("fixtures/explain/diabetes_rf_opset5.onnx")).unwrap();
    let found = find_ensemble(&bytes).unwrap();
    assert!(found.preprocessing.is_empty());
    let FoundEnsemble::Regressor(model) = found.ensemble else { panic!("not a regressor") };
    assert_eq!(model.n_targets(), 1);
}

#[test]
fn other_steps_before_the_trees_are_refused() {
    let corpus = repo().join("fixtures/models/corpus");
    let err = find_ensemble(&std::fs::read(corpus.join("lightgbm_binary.onnx")).unwrap()).unwrap_err();
    assert!(err.contains("besides its trees"), "{err}");
    let err = find_ensemble(&std::fs::read(corpus.join("scaler_logreg.onnx")).unwrap()).unwrap_err();
    assert!(err.contains("no TreeEnsembleClassifier"), "{err}");
    assert!(find_ensemble(b"not onnx").is_err());
}
