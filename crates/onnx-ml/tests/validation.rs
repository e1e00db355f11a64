//! Construction rejects inconsistent attributes with an error naming the attribute.

// Helpers outside #[test] functions count as library code for clippy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{leaves, nodes, stump};
use palisade_onnx_ml::{
    Aggregate, ClassLabels, Classification, ClassifierAttributes, LeafAttributes, NodeAttributes,
    OnnxMlError, PostTransform, RegressorAttributes, TreeEnsembleClassifier, TreeEnsembleRegressor,
};

fn regressor(nodes: NodeAttributes, leaves: LeafAttributes) -> Result<TreeEnsembleRegressor, OnnxMlError> {
    TreeEnsembleRegressor::new(RegressorAttributes {
        nodes,
        leaves,
        n_targets: 1,
        base_values: vec![],
        post_transform: PostTransform::None,
        aggregate_function: Aggregate::Sum,
    })
}

fn stump_leaves() -> LeafAttributes {
    leaves(&[0, 0], &[1, 2], &[0, 0], &[1.0, 2.0])
}

fn message(err: OnnxMlError) -> String {
    err.to_string()
}

#[test]
fn a_valid_stump_builds() {
    let m = regressor(stump(), stump_leaves()).unwrap();
    assert_eq!((m.n_trees(), m.n_targets(), m.required_features()), (1, 1, 1));
}

#[test]
fn lengths_must_agree() {
    let mut n = stump();
    n.values.pop();
    let err = regressor(n, stump_leaves()).unwrap_err();
    assert_eq!(
        err,
        OnnxMlError::LengthMismatch {
            attribute: "nodes_values",
            actual: 2,
            reference: "nodes_treeids",
            expected: 3
        }
    );
    assert!(message(err).contains("`nodes_values` has 2 entries"));

    let mut w = stump_leaves();
    w.weights.push(3.0);
    let err = regressor(stump(), w).unwrap_err();
    assert!(message(err).contains("`target_weights`"));

    // Missing-value flags may be shorter; hitrates are not carried at all.
    let mut n = stump();
    n.missing_value_tracks_true = vec![true];
    regressor(n, stump_leaves()).unwrap();
}

#[test]
fn children_must_exist_in_the_same_tree() {
    let mut n = stump();
    n.true_node_ids[0] = 7;
    let err = regressor(n, stump_leaves()).unwrap_err();
    assert_eq!(
        err,
        OnnxMlError::UnknownNode { attribute: "nodes_truenodeids", index: 0, tree_id: 0, node_id: 7 }
    );
    let mut n = stump();
    n.false_node_ids[0] = -1;
    assert!(message(regressor(n, stump_leaves()).unwrap_err()).contains("`nodes_falsenodeids`[0]"));
}

#[test]
fn cycles_are_rejected() {
    let mut n = stump();
    n.true_node_ids[0] = 0;
    assert_eq!(regressor(n, stump_leaves()).unwrap_err(), OnnxMlError::Cycle { tree_id: 0, node_id: 0 });
    // 0 -> 1 -> 0, through a branch.
    let n = nodes(
        &[0, 0, 0],
        &[0, 1, 2],
        &[0, 0, 0],
        &[0.5, 0.5, 0.0],
        &["BRANCH_LEQ", "BRANCH_LEQ", "LEAF"],
        &[1, 0, 0],
        &[2, 2, 0],
        &[],
    );
    let err = regressor(n, leaves(&[0], &[2], &[0], &[1.0])).unwrap_err();
    assert!(matches!(err, OnnxMlError::Cycle { tree_id: 0, .. }), "{err:?}");
}

#[test]
fn duplicate_nodes_and_split_trees_are_rejected() {
    let mut n = stump();
    n.node_ids[2] = 1;
    assert_eq!(
        regressor(n, stump_leaves()).unwrap_err(),
        OnnxMlError::DuplicateNode { index: 2, tree_id: 0, node_id: 1 }
    );
    let n = nodes(
        &[0, 1, 0],
        &[0, 0, 1],
        &[0, 0, 0],
        &[0.0; 3],
        &["LEAF", "LEAF", "LEAF"],
        &[0; 3],
        &[0; 3],
        &[],
    );
    assert_eq!(
        regressor(n, leaves(&[0], &[0], &[0], &[1.0])).unwrap_err(),
        OnnxMlError::NonContiguousTree { index: 2, tree_id: 0 }
    );
}

#[test]
fn feature_ids_of_branches_must_be_valid() {
    let mut n = stump();
    n.feature_ids[0] = -1;
    let err = regressor(n, stump_leaves()).unwrap_err();
    assert!(matches!(err, OnnxMlError::InvalidEntry { attribute: "nodes_featureids", index: 0, .. }));
}

#[test]
fn leaf_weights_must_name_nodes_and_columns() {
    let err = regressor(stump(), leaves(&[0, 0], &[1, 9], &[0, 0], &[1.0, 2.0])).unwrap_err();
    assert_eq!(
        err,
        OnnxMlError::UnknownNode { attribute: "target_nodeids", index: 1, tree_id: 0, node_id: 9 }
    );
    let err = regressor(stump(), leaves(&[0, 0], &[1, 2], &[0, 1], &[1.0, 2.0])).unwrap_err();
    assert!(matches!(err, OnnxMlError::InvalidEntry { attribute: "target_ids", index: 1, value: 1, .. }));
    let err = regressor(stump(), leaves(&[0, 0], &[1, 2], &[0, -1], &[1.0, 2.0])).unwrap_err();
    assert!(matches!(err, OnnxMlError::InvalidEntry { attribute: "target_ids", value: -1, .. }));
}

#[test]
fn regressor_scalars_are_checked() {
    let base = RegressorAttributes {
        nodes: stump(),
        leaves: stump_leaves(),
        n_targets: 0,
        base_values: vec![],
        post_transform: PostTransform::None,
        aggregate_function: Aggregate::Sum,
    };
    let err = TreeEnsembleRegressor::new(base.clone()).unwrap_err();
    assert!(matches!(err, OnnxMlError::InvalidAttribute { attribute: "n_targets", .. }));
    let err =
        TreeEnsembleRegressor::new(RegressorAttributes { n_targets: 1, base_values: vec![1.0, 2.0], ..base })
            .unwrap_err();
    assert!(matches!(err, OnnxMlError::InvalidAttribute { attribute: "base_values", .. }));
}

#[test]
fn classifier_needs_two_classes_and_matching_base_values() {
    let attrs = |labels: ClassLabels, base: Vec<f32>| ClassifierAttributes {
        nodes: stump(),
        leaves: leaves(&[0, 0], &[1, 2], &[0, 0], &[1.0, 2.0]),
        class_labels: labels,
        base_values: base,
        post_transform: PostTransform::None,
    };
    let err = TreeEnsembleClassifier::new(attrs(ClassLabels::Strings(vec!["x".into()]), vec![])).unwrap_err();
    assert!(matches!(err, OnnxMlError::InvalidAttribute { attribute: "classlabels_strings", .. }));
    let three = || ClassLabels::Int64(vec![0, 1, 2]);
    assert!(TreeEnsembleClassifier::new(attrs(three(), vec![1.0])).is_err());
    assert!(TreeEnsembleClassifier::new(attrs(three(), vec![1.0, 2.0])).is_err());
    TreeEnsembleClassifier::new(attrs(three(), vec![1.0, 2.0, 3.0])).unwrap();
    let two = || ClassLabels::Int64(vec![0, 1]);
    TreeEnsembleClassifier::new(attrs(two(), vec![1.0])).unwrap();
    TreeEnsembleClassifier::new(attrs(two(), vec![1.0, 2.0])).unwrap();
    let err = TreeEnsembleClassifier::new(attrs(two(), vec![1.0, 2.0, 3.0])).unwrap_err();
    assert!(message(err).contains("`base_values`"));
}

#[test]
fn string_attributes_parse_or_name_the_attribute() {
    assert_eq!("PROBIT".parse::<PostTransform>().unwrap(), PostTransform::Probit);
    assert_eq!("AVERAGE".parse::<Aggregate>().unwrap(), Aggregate::Average);
    let err = "BRANCH_XX".parse::<palisade_onnx_ml::NodeMode>().unwrap_err();
    assert_eq!(message(err), "attribute `nodes_modes`: unknown value `BRANCH_XX`");
    assert!(message("softmax".parse::<PostTransform>().unwrap_err()).contains("`post_transform`"));
    assert!(message("MEAN".parse::<Aggregate>().unwrap_err()).contains("`aggregate_function`"));
}

#[test]
fn an_empty_ensemble_outputs_its_base_values() {
    let m = TreeEnsembleRegressor::new(RegressorAttributes {
        nodes: NodeAttributes::default(),
        leaves: LeafAttributes::default(),
        n_targets: 1,
        base_values: vec![0.5],
        post_transform: PostTransform::None,
        aggregate_function: Aggregate::Sum,
    })
    .unwrap();
    assert_eq!(m.predict(&[], 2, 0).unwrap(), [0.5, 0.5]);
    let c = TreeEnsembleClassifier::new(ClassifierAttributes {
        nodes: NodeAttributes::default(),
        leaves: LeafAttributes::default(),
        class_labels: ClassLabels::Int64(vec![0, 1, 2]),
        base_values: vec![0.1, 0.3, 0.2],
        post_transform: PostTransform::None,
    })
    .unwrap();
    let out: Classification = c.predict(&[7.0], 1, 1).unwrap();
    assert_eq!(out.labels, [1]);
}
