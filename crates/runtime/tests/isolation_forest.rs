//! The native IsolationForest scorer (`onnx::isolation_forest`) against scikit-learn's
//! `score_samples` and against the export's own graph on tract, on the forests of
//! `fixtures/monitoring/` (written by `fixtures/monitoring.py`): iris with 50 trees, a
//! small forest (5 trees, 32 samples), one with `contamination=0.1` and bootstrap, and a
//! deeper one (600 samples per tree); and an altered export that must not be recognized.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use palisade_core::{Tensor, TensorData};
use palisade_runtime::Model;
use palisade_runtime::onnx::OnnxModel;
use palisade_runtime::onnx::isolation_forest::recognize_isolation_forest;
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/monitoring")
}

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join(name)).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn rows(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().flat_map(|r| floats(r).into_iter().map(|x| x as f32)).collect()
}

/// (file, probes, sklearn's score_samples, offset_) of every fixture forest.
fn forests() -> Vec<(String, Vec<f32>, Vec<f64>, f64)> {
    let oracle = json("oracle.json");
    let mut all = vec![(
        "iforest.onnx".to_owned(),
        rows(&oracle["probes"]),
        floats(&oracle["iforest_score_samples"]),
        oracle["iforest_offset"].as_f64().unwrap(),
    )];
    for f in json("forests.json")["forests"].as_array().unwrap() {
        all.push((
            f["file"].as_str().unwrap().to_owned(),
            rows(&f["probes"]),
            floats(&f["score_samples"]),
            f["offset"].as_f64().unwrap(),
        ));
    }
    all
}

/// The graph's `scores` output on tract for `rows`.
fn graph_scores(file: &str, rows: &[f32], n: usize) -> Vec<f64> {
    let model = OnnxModel::load(&dir().join(file)).unwrap();
    let x = Tensor::new("X", vec![n, 4], TensorData::Fp32(rows.to_vec())).unwrap();
    let out = model.run(vec![x]).unwrap();
    let scores = out.iter().find(|t| t.name() == "scores").unwrap();
    match scores.data() {
        TensorData::Fp32(v) => v.iter().map(|&s| f64::from(s)).collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn native_scores_equal_sklearn_score_samples_at_every_batch_size() {
    for (file, probes, want, offset) in forests() {
        let native = recognize_isolation_forest(&std::fs::read(dir().join(&file)).unwrap())
            .unwrap_or_else(|e| panic!("{file} not recognized: {e}"));
        assert_eq!(native.input, "X");
        assert_eq!(native.forest.n_features(), 4);
        // The export's decision_function adds -offset_ (stored as f32).
        assert_eq!(native.decision_shift, f64::from(-offset as f32), "{file}");
        let n = want.len();
        assert!(n >= 10, "{file}: {n} probes");
        for batch in [1, 7, 64] {
            let mut got = Vec::new();
            for chunk in probes.chunks(batch * 4) {
                let mut out = vec![0.0; chunk.len() / 4];
                native.forest.score_samples(chunk, chunk.len() / 4, &mut out).unwrap();
                got.extend(out);
            }
            assert_eq!(got.len(), n);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((g - w).abs() < 1e-6, "{file}, batches of {batch}, row {i}: {g} vs sklearn {w}");
            }
        }
    }
}

#[test]
fn native_scores_agree_with_the_exported_graph() {
    for (file, probes, _, _) in forests() {
        let native = recognize_isolation_forest(&std::fs::read(dir().join(&file)).unwrap()).unwrap();
        let n = probes.len() / 4;
        let graph = graph_scores(&file, &probes, n);
        let mut got = vec![0.0; n];
        native.forest.score_samples(&probes, n, &mut got).unwrap();
        for (i, (g, d)) in got.iter().zip(&graph).enumerate() {
            // The graph computes in f32: decision_function = score_samples + shift.
            let from_graph = d - native.decision_shift;
            assert!((g - from_graph).abs() < 1e-5, "{file} row {i}: native {g}, graph {from_graph}");
        }
    }
}

#[test]
fn forest_shapes_are_read_from_the_export() {
    let forests = json("forests.json");
    let expect = |file: &str, trees: usize, max_samples: u64| {
        let native = recognize_isolation_forest(&std::fs::read(dir().join(file)).unwrap()).unwrap();
        assert_eq!(native.forest.n_trees(), trees, "{file}");
        // The normalizer n_trees × c(max_samples) is recovered exactly from its f32 value.
        assert_eq!(native.max_samples, Some(max_samples), "{file}");
    };
    expect("iforest.onnx", 50, 150);
    for f in forests["forests"].as_array().unwrap() {
        let trees = f["settings"]["n_estimators"].as_u64().unwrap() as usize;
        expect(f["file"].as_str().unwrap(), trees, f["max_samples_"].as_u64().unwrap());
    }
    // skl2onnx cannot export a forest whose trees see a subset of the features.
    assert!(
        forests["max_features_below_1"].as_str().unwrap().contains("does not support"),
        "{}",
        forests["max_features_below_1"]
    );
}

#[test]
fn an_altered_export_is_not_recognized_and_its_graph_still_runs() {
    let altered = &json("forests.json")["altered"];
    let file = altered["file"].as_str().unwrap();
    let err = recognize_isolation_forest(&std::fs::read(dir().join(file)).unwrap()).unwrap_err();
    assert!(err.contains("0.6") && err.contains("0.5772"), "{err}");
    // Run as a graph, it answers what onnxruntime answers for it.
    let probes = rows(&altered["probes"]);
    let graph = graph_scores(file, &probes, probes.len() / 4);
    for (g, w) in graph.iter().zip(floats(&altered["onnxruntime_scores"])) {
        assert!((g - w).abs() < 1e-5, "{g} vs onnxruntime {w}");
    }
}

#[test]
fn other_models_are_not_recognized() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models");
    let err = recognize_isolation_forest(&std::fs::read(models.join("iris_lr_nozipmap.onnx")).unwrap())
        .unwrap_err();
    assert!(err.contains("scores"), "{err}");
    assert!(recognize_isolation_forest(b"not onnx").is_err());
    // Every truncation of a real export is refused or read, never a panic.
    let bytes = std::fs::read(dir().join("iforest_small.onnx")).unwrap();
    for cut in (0..bytes.len()).step_by(997) {
        let _ = recognize_isolation_forest(&bytes[..cut]);
    }
}
