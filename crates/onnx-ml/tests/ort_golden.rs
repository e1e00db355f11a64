//! Random ensembles against onnxruntime's outputs, bit for bit.
//!
//! `golden/ort_random.json` is written by `golden/generate.py` (run it with the fixtures
//! virtualenv): 59 random classifiers and regressors covering every branch mode,
//! missing-value tracking, post-transform, aggregate and base-value layout, evaluated
//! by onnxruntime on rows with NaN and values equal to thresholds.

// Helpers outside #[test] functions count as library code for clippy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_onnx_ml::{
    ClassLabels, ClassifierAttributes, LeafAttributes, NodeAttributes, RegressorAttributes,
    TreeEnsembleClassifier, TreeEnsembleRegressor,
};
use serde_json::Value;

fn ints(case: &Value, key: &str) -> Vec<i64> {
    case[key].as_array().unwrap_or_else(|| panic!("{key}")).iter().map(|v| v.as_i64().unwrap()).collect()
}

/// f32 values stored as bit patterns.
fn floats(case: &Value, key: &str) -> Vec<f32> {
    ints(case, key).into_iter().map(|b| f32::from_bits(u32::try_from(b).unwrap())).collect()
}

fn text(case: &Value, key: &str) -> String {
    case[key].as_str().unwrap_or_else(|| panic!("{key}")).to_owned()
}

fn nodes(case: &Value) -> NodeAttributes {
    NodeAttributes {
        tree_ids: ints(case, "nodes_treeids"),
        node_ids: ints(case, "nodes_nodeids"),
        feature_ids: ints(case, "nodes_featureids"),
        values: floats(case, "nodes_values"),
        modes: case["nodes_modes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().parse().unwrap())
            .collect(),
        true_node_ids: ints(case, "nodes_truenodeids"),
        false_node_ids: ints(case, "nodes_falsenodeids"),
        missing_value_tracks_true: ints(case, "nodes_missing_value_tracks_true")
            .into_iter()
            .map(|v| v == 1)
            .collect(),
    }
}

fn leaves(case: &Value) -> LeafAttributes {
    LeafAttributes {
        tree_ids: ints(case, "leaf_treeids"),
        node_ids: ints(case, "leaf_nodeids"),
        ids: ints(case, "leaf_ids"),
        weights: floats(case, "leaf_weights"),
    }
}

#[track_caller]
fn assert_bits(case: usize, actual: &[f32], expected: &[f32]) {
    assert_eq!(actual.len(), expected.len(), "case {case}: length");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let same = a.to_bits() == e.to_bits() || (a.is_nan() && e.is_nan());
        assert!(same, "case {case}: value {i} is {a:e}, onnxruntime gave {e:e}");
    }
}

#[test]
fn random_ensembles_match_onnxruntime_bit_for_bit() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/ort_random.json");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = json["cases"].as_array().unwrap();
    assert!(cases.len() >= 50, "only {} cases", cases.len());
    let (mut classifiers, mut regressors) = (0, 0);
    for (k, case) in cases.iter().enumerate() {
        let n_features = usize::try_from(case["n_features"].as_u64().unwrap()).unwrap();
        let rows = floats(case, "rows");
        let n_rows = rows.len() / n_features;
        let post_transform = text(case, "post_transform").parse().unwrap();
        let base_values = floats(case, "base_values");
        if case["op"] == "classifier" {
            let labels = case["class_labels"].as_array().unwrap();
            let class_labels = if case["strings"].as_bool().unwrap() {
                ClassLabels::Strings(labels.iter().map(|l| l.as_str().unwrap().to_owned()).collect())
            } else {
                ClassLabels::Int64(labels.iter().map(|l| l.as_i64().unwrap()).collect())
            };
            let model = TreeEnsembleClassifier::new(ClassifierAttributes {
                nodes: nodes(case),
                leaves: leaves(case),
                class_labels,
                base_values,
                post_transform,
            })
            .unwrap_or_else(|e| panic!("case {k}: {e}"));
            let out = model.predict(&rows, n_rows, n_features).unwrap_or_else(|e| panic!("case {k}: {e}"));
            let expected: Vec<usize> =
                ints(case, "expected_labels").into_iter().map(|l| usize::try_from(l).unwrap()).collect();
            assert_eq!(out.labels, expected, "case {k}: labels");
            assert_bits(k, &out.scores, &floats(case, "expected_scores"));
            classifiers += 1;
        } else {
            let model = TreeEnsembleRegressor::new(RegressorAttributes {
                nodes: nodes(case),
                leaves: leaves(case),
                n_targets: case["n_targets"].as_i64().unwrap(),
                base_values,
                post_transform,
                aggregate_function: text(case, "aggregate_function").parse().unwrap(),
            })
            .unwrap_or_else(|e| panic!("case {k}: {e}"));
            let out = model.predict(&rows, n_rows, n_features).unwrap_or_else(|e| panic!("case {k}: {e}"));
            assert_bits(k, &out, &floats(case, "expected_values"));
            regressors += 1;
        }
    }
    assert!(classifiers >= 25 && regressors >= 25, "{classifiers} classifiers, {regressors} regressors");
}
