//! Property tests: whatever the attribute vectors, building an ensemble returns `Ok` or
//! `Err` without panicking, and a built ensemble evaluates rows without panicking.

// Helpers outside #[test] functions count as library code for clippy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_onnx_ml::{
    Aggregate, ClassLabels, ClassifierAttributes, LeafAttributes, NodeAttributes, NodeMode, OnnxMlError,
    PostTransform, RegressorAttributes, TreeEnsembleClassifier, TreeEnsembleRegressor,
};
use proptest::collection::vec;
use proptest::prelude::*;

/// Mostly small ids (so lookups often succeed), sometimes anything.
fn id() -> impl Strategy<Value = i64> {
    prop_oneof![12 => -1i64..8, 1 => any::<i64>()]
}

/// `n` elements, or occasionally another number.
fn vec_of<S: Strategy + 'static>(element: fn() -> S, n: usize) -> impl Strategy<Value = Vec<S::Value>> {
    prop_oneof![12 => Just(n), 1 => 0usize..12].prop_flat_map(move |len| vec(element(), len))
}

fn small_tree_id() -> impl Strategy<Value = i64> {
    0i64..3
}

fn feature() -> impl Strategy<Value = i64> {
    prop_oneof![8 => 0i64..4, 1 => any::<i64>()]
}

fn column() -> impl Strategy<Value = i64> {
    prop_oneof![8 => 0i64..4, 1 => id()]
}

fn mode() -> impl Strategy<Value = NodeMode> {
    prop_oneof![
        6 => Just(NodeMode::Leaf),
        4 => Just(NodeMode::BranchLeq),
        1 => Just(NodeMode::BranchLt),
        1 => Just(NodeMode::BranchGte),
        1 => Just(NodeMode::BranchGt),
        1 => Just(NodeMode::BranchEq),
        1 => Just(NodeMode::BranchNeq),
    ]
}

fn value() -> impl Strategy<Value = f32> {
    prop_oneof![8 => -4.0f32..4.0, 1 => Just(f32::NAN), 1 => Just(f32::INFINITY), 1 => any::<f32>()]
}

fn nodes() -> impl Strategy<Value = NodeAttributes> {
    (0usize..20).prop_flat_map(|n| {
        (
            (vec_of(small_tree_id, n), any::<bool>()),
            vec_of(id, n),
            vec_of(feature, n),
            vec_of(value, n),
            vec_of(mode, n),
            vec_of(id, n),
            vec_of(id, n),
            vec(any::<bool>(), 0..=n + 1),
        )
            .prop_map(|((mut trees, sorted), ids, features, values, modes, t, f, missing)| {
                if sorted {
                    trees.sort_unstable();
                }
                NodeAttributes {
                    tree_ids: trees,
                    node_ids: ids,
                    feature_ids: features,
                    values,
                    modes,
                    true_node_ids: t,
                    false_node_ids: f,
                    missing_value_tracks_true: missing,
                }
            })
    })
}

fn leaves() -> impl Strategy<Value = LeafAttributes> {
    (0usize..24).prop_flat_map(|m| {
        (vec_of(small_tree_id, m), vec_of(id, m), vec_of(column, m), vec_of(value, m)).prop_map(
            |(tree_ids, node_ids, ids, weights)| LeafAttributes { tree_ids, node_ids, ids, weights },
        )
    })
}

/// A valid ensemble (children point forward, so no cycle; leaves weighted on columns
/// 0 and 1), then, half of the time, one mutation: an entry replaced by an arbitrary
/// value, or a vector cut short.
fn mostly_valid() -> impl Strategy<Value = (NodeAttributes, LeafAttributes)> {
    let tree = (1usize..9)
        .prop_flat_map(|n| vec((any::<bool>(), any::<u8>(), any::<u8>(), 0i64..4, value(), mode()), n));
    (
        vec(tree, 1..5),
        vec((any::<u8>(), any::<u8>(), 0i64..2, value()), 0..12),
        any::<Option<(u8, u16, i64)>>(),
    )
        .prop_map(|(trees, weights, mutation)| {
            let mut nodes = NodeAttributes::default();
            let mut leaves = LeafAttributes::default();
            let mut sizes = Vec::new();
            for (t, tree) in trees.iter().enumerate() {
                let n = tree.len();
                sizes.push(n);
                for (i, &(branch, a, b, feature, threshold, branch_mode)) in tree.iter().enumerate() {
                    let is_branch = branch && i + 1 < n;
                    let forward = |pick: u8| (i + 1 + pick as usize % (n - i - 1).max(1)) as i64;
                    nodes.tree_ids.push(t as i64);
                    nodes.node_ids.push(i as i64);
                    nodes.feature_ids.push(feature);
                    nodes.values.push(threshold);
                    let leaf_or = |m: NodeMode| if m == NodeMode::Leaf { NodeMode::BranchLeq } else { m };
                    nodes.modes.push(if is_branch { leaf_or(branch_mode) } else { NodeMode::Leaf });
                    nodes.true_node_ids.push(if is_branch { forward(a) } else { 0 });
                    nodes.false_node_ids.push(if is_branch { forward(b) } else { 0 });
                    nodes.missing_value_tracks_true.push(a % 3 == 0);
                }
            }
            for (t, node, column, w) in weights {
                let tree = t as usize % sizes.len();
                leaves.tree_ids.push(tree as i64);
                leaves.node_ids.push((node as usize % sizes[tree]) as i64);
                leaves.ids.push(column);
                leaves.weights.push(w);
            }
            if let Some((which, at, to)) = mutation {
                let ints: [&mut Vec<i64>; 8] = [
                    &mut nodes.tree_ids,
                    &mut nodes.node_ids,
                    &mut nodes.feature_ids,
                    &mut nodes.true_node_ids,
                    &mut nodes.false_node_ids,
                    &mut leaves.tree_ids,
                    &mut leaves.node_ids,
                    &mut leaves.ids,
                ];
                let target = ints.into_iter().nth(which as usize % 8).unwrap();
                if !target.is_empty() {
                    let at = at as usize % target.len();
                    if which >= 128 {
                        target.truncate(at);
                    } else {
                        target[at] = to;
                    }
                }
            }
            (nodes, leaves)
        })
}

fn post_transform() -> impl Strategy<Value = PostTransform> {
    prop_oneof![
        Just(PostTransform::None),
        Just(PostTransform::Softmax),
        Just(PostTransform::Logistic),
        Just(PostTransform::SoftmaxZero),
        Just(PostTransform::Probit),
    ]
}

fn aggregate() -> impl Strategy<Value = Aggregate> {
    prop_oneof![Just(Aggregate::Sum), Just(Aggregate::Average), Just(Aggregate::Min), Just(Aggregate::Max)]
}

/// Rows of `width` features, some NaN.
fn rows(width: usize, n_rows: usize, seed: &[f32]) -> Vec<f32> {
    (0..width * n_rows).map(|i| seed.get(i % seed.len().max(1)).copied().unwrap_or(0.0)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn regressor_construction_never_panics(
        nodes in nodes(),
        leaves in leaves(),
        n_targets in prop_oneof![8 => 1i64..4, 1 => any::<i64>()],
        base_values in vec(value(), 0..4),
        post_transform in post_transform(),
        aggregate_function in aggregate(),
        seed in vec(value(), 1..8),
        extra in 0usize..3,
    ) {
        let built = TreeEnsembleRegressor::new(RegressorAttributes {
            nodes, leaves, n_targets, base_values, post_transform, aggregate_function,
        });
        if let Ok(model) = built {
            let width = model.required_features() + extra;
            let x = rows(width, 3, &seed);
            let out = model.predict(&x, 3, width).unwrap();
            prop_assert_eq!(out.len(), 3 * model.n_targets());
            if model.required_features() > 0 {
                let narrow = model.required_features() - 1;
                prop_assert!(model.predict(&rows(narrow, 2, &seed), 2, narrow).is_err());
            }
        }
    }

    #[test]
    fn classifier_construction_never_panics(
        nodes in nodes(),
        leaves in leaves(),
        n_classes in prop_oneof![4 => 2usize..5, 1 => 0usize..2],
        strings in any::<bool>(),
        base_values in vec(value(), 0..5),
        post_transform in post_transform(),
        seed in vec(value(), 1..8),
    ) {
        let class_labels = if strings {
            ClassLabels::Strings((0..n_classes).map(|c| format!("c{c}")).collect())
        } else {
            ClassLabels::Int64((0..n_classes as i64).collect())
        };
        let built = TreeEnsembleClassifier::new(ClassifierAttributes {
            nodes, leaves, class_labels, base_values, post_transform,
        });
        if let Ok(model) = built {
            let width = model.required_features();
            let x = rows(width, 4, &seed);
            match model.predict(&x, 4, width) {
                Ok(out) => {
                    prop_assert_eq!(out.scores.len(), 4 * model.n_classes());
                    prop_assert!(out.labels.iter().all(|&l| l < model.n_classes()));
                }
                Err(OnnxMlError::NoScore { .. }) => prop_assert!(model.n_classes() > 2),
                Err(other) => prop_assert!(false, "unexpected error {other}"),
            }
        }
    }

    #[test]
    fn mostly_valid_regressors_build_and_evaluate(
        (nodes, leaves) in mostly_valid(),
        post_transform in post_transform(),
        aggregate_function in aggregate(),
        n_targets in 1i64..5,
        seed in vec(value(), 1..8),
    ) {
        let built = TreeEnsembleRegressor::new(RegressorAttributes {
            nodes, leaves, n_targets, base_values: vec![], post_transform, aggregate_function,
        });
        if let Ok(model) = built {
            let width = model.required_features();
            let out = model.predict(&rows(width, 5, &seed), 5, width).unwrap();
            prop_assert_eq!(out.len(), 5 * model.n_targets());
        }
    }

    #[test]
    fn mostly_valid_classifiers_build_and_evaluate(
        (nodes, leaves) in mostly_valid(),
        post_transform in post_transform(),
        n_classes in 2usize..5,
        base in any::<bool>(),
        seed in vec(value(), 1..8),
    ) {
        let built = TreeEnsembleClassifier::new(ClassifierAttributes {
            nodes,
            leaves,
            class_labels: ClassLabels::Int64((0..n_classes as i64).collect()),
            base_values: if base { vec![0.5; n_classes] } else { vec![] },
            post_transform,
        });
        if let Ok(model) = built {
            let width = model.required_features();
            match model.predict(&rows(width, 5, &seed), 5, width) {
                Ok(out) => prop_assert!(out.labels.iter().all(|&l| l < n_classes)),
                Err(OnnxMlError::NoScore { .. }) => prop_assert!(n_classes > 2 && !base),
                Err(other) => prop_assert!(false, "unexpected error {other}"),
            }
        }
    }
}
