//! Builders shared by the behaviour tests.
//!
//! Expected values in these tests were printed by onnxruntime 1.32 (CPU, one thread)
//! for the same attributes and inputs, as f64 reprs of its f32 outputs.

#![allow(dead_code)]

use palisade_onnx_ml::{LeafAttributes, NodeAttributes, NodeMode};

/// `nodes_*` attributes from parallel slices; modes as in the ONNX file.
#[allow(clippy::too_many_arguments)]
pub fn nodes(
    tree_ids: &[i64],
    node_ids: &[i64],
    feature_ids: &[i64],
    values: &[f32],
    modes: &[&str],
    true_ids: &[i64],
    false_ids: &[i64],
    missing_value_tracks_true: &[i64],
) -> NodeAttributes {
    NodeAttributes {
        tree_ids: tree_ids.to_vec(),
        node_ids: node_ids.to_vec(),
        feature_ids: feature_ids.to_vec(),
        values: values.to_vec(),
        modes: modes.iter().map(|m| m.parse::<NodeMode>().expect("test mode")).collect(),
        true_node_ids: true_ids.to_vec(),
        false_node_ids: false_ids.to_vec(),
        missing_value_tracks_true: missing_value_tracks_true.iter().map(|&v| v == 1).collect(),
    }
}

/// One stump on feature 0: `x <= 0.5` goes to leaf 1, otherwise to leaf 2. The leaves'
/// `nodes_values` are 0.25 and 0.125.
pub fn stump() -> NodeAttributes {
    nodes(
        &[0, 0, 0],
        &[0, 1, 2],
        &[0, 0, 0],
        &[0.5, 0.25, 0.125],
        &["BRANCH_LEQ", "LEAF", "LEAF"],
        &[1, 0, 0],
        &[2, 0, 0],
        &[],
    )
}

/// Two stumps: tree 0 tests `x0 <= 0.5`, tree 1 tests `x1 < 0.25` (modes overridable).
pub fn two_stumps(mode0: &str, mode1: &str, missing: &[i64]) -> NodeAttributes {
    nodes(
        &[0, 0, 0, 1, 1, 1],
        &[0, 1, 2, 0, 1, 2],
        &[0, 0, 0, 1, 0, 0],
        &[0.5, 0.0, 0.0, 0.25, 0.0, 0.0],
        &[mode0, "LEAF", "LEAF", mode1, "LEAF", "LEAF"],
        &[1, 0, 0, 1, 0, 0],
        &[2, 0, 0, 2, 0, 0],
        missing,
    )
}

/// `class_*` / `target_*` attributes.
pub fn leaves(tree_ids: &[i64], node_ids: &[i64], ids: &[i64], weights: &[f32]) -> LeafAttributes {
    LeafAttributes {
        tree_ids: tree_ids.to_vec(),
        node_ids: node_ids.to_vec(),
        ids: ids.to_vec(),
        weights: weights.to_vec(),
    }
}

/// onnxruntime's printed outputs, back to f32 (exact: they are f32 values).
pub fn ort(values: &[f64]) -> Vec<f32> {
    values.iter().map(|&v| v as f32).collect()
}

/// Asserts bitwise-equal results, NaN matching NaN.
#[track_caller]
pub fn assert_same(actual: &[f32], expected: &[f32]) {
    assert_eq!(actual.len(), expected.len(), "lengths of {actual:?} and {expected:?}");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let same = (a.is_nan() && e.is_nan()) || a.to_bits() == e.to_bits() || a == e;
        assert!(same, "value {i}: got {a} expected {e}\n  actual   {actual:?}\n  expected {expected:?}");
    }
}
