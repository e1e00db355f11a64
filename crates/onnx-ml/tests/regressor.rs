//! `TreeEnsembleRegressor` against onnxruntime 1.32's outputs for small hand-built trees.

// Helpers outside #[test] functions count as library code for clippy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_same, leaves, nodes, ort, stump, two_stumps};
use palisade_onnx_ml::{
    Aggregate, LeafAttributes, NodeAttributes, PostTransform, RegressorAttributes, TreeEnsembleRegressor,
};

fn regressor(
    nodes: NodeAttributes,
    leaves: LeafAttributes,
    n_targets: i64,
    base_values: &[f32],
    post_transform: PostTransform,
    aggregate_function: Aggregate,
) -> TreeEnsembleRegressor {
    TreeEnsembleRegressor::new(RegressorAttributes {
        nodes,
        leaves,
        n_targets,
        base_values: base_values.to_vec(),
        post_transform,
        aggregate_function,
    })
    .unwrap()
}

#[track_caller]
fn check(model: &TreeEnsembleRegressor, rows: &[f32], n_features: usize, expected: &[f64]) {
    let out = model.predict(rows, rows.len() / n_features, n_features).unwrap();
    assert_same(&out, &ort(expected));
}

/// Tree 0 puts 1 or 2, tree 1 10 or 20, on target 0.
fn two_stump_leaves() -> LeafAttributes {
    leaves(&[0, 0, 1, 1], &[1, 2, 1, 2], &[0, 0, 0, 0], &[1.0, 2.0, 10.0, 20.0])
}

/// Rows (x0, x1) hitting both sides of both stumps, and a NaN row.
const ROWS: [f32; 8] = [0.0, 0.0, 1.0, 0.25, 0.5, 0.3, f32::NAN, f32::NAN];

#[test]
fn single_target_aggregates_then_adds_the_base_value() {
    for (aggregate, expected) in [
        (Aggregate::Sum, [11.5, 22.5, 21.5, 22.5]),
        (Aggregate::Average, [6.0, 11.5, 11.0, 11.5]),
        (Aggregate::Min, [1.5, 2.5, 1.5, 2.5]),
        (Aggregate::Max, [10.5, 20.5, 20.5, 20.5]),
    ] {
        let nodes = two_stumps("BRANCH_LEQ", "BRANCH_LT", &[]);
        let m = regressor(nodes, two_stump_leaves(), 1, &[0.5], PostTransform::None, aggregate);
        check(&m, &ROWS, 2, &expected);
    }
    let nodes = two_stumps("BRANCH_LEQ", "BRANCH_LT", &[]);
    let m = regressor(nodes, two_stump_leaves(), 1, &[], PostTransform::None, Aggregate::Average);
    check(&m, &ROWS[..2], 2, &[5.5]);
}

#[test]
fn every_branch_mode_with_and_without_missing_tracks() {
    let cases = [
        ("BRANCH_LEQ", [11.0, 12.0, 21.0, 22.0], [11.0, 12.0, 21.0, 11.0]),
        ("BRANCH_LT", [11.0, 22.0, 22.0, 22.0], [11.0, 22.0, 22.0, 11.0]),
        ("BRANCH_GTE", [22.0, 11.0, 11.0, 22.0], [22.0, 11.0, 11.0, 11.0]),
        ("BRANCH_GT", [22.0, 21.0, 12.0, 22.0], [22.0, 21.0, 12.0, 11.0]),
        ("BRANCH_EQ", [22.0, 12.0, 21.0, 22.0], [22.0, 12.0, 21.0, 11.0]),
        ("BRANCH_NEQ", [11.0, 21.0, 12.0, 11.0], [11.0, 21.0, 12.0, 11.0]),
    ];
    for (mode, plain, missing) in cases {
        let m = regressor(
            two_stumps(mode, mode, &[]),
            two_stump_leaves(),
            1,
            &[],
            PostTransform::None,
            Aggregate::Sum,
        );
        check(&m, &ROWS, 2, &plain);
        let m = regressor(
            two_stumps(mode, mode, &[1, 0, 0, 1, 0, 0]),
            two_stump_leaves(),
            1,
            &[],
            PostTransform::None,
            Aggregate::Sum,
        );
        check(&m, &ROWS, 2, &missing);
    }
}

#[test]
fn mixed_modes_with_missing_tracks_on_some_nodes() {
    let m = regressor(
        two_stumps("BRANCH_LEQ", "BRANCH_LT", &[1]),
        two_stump_leaves(),
        1,
        &[],
        PostTransform::None,
        Aggregate::Sum,
    );
    check(&m, &ROWS, 2, &[11.0, 22.0, 21.0, 21.0]);
    let m = regressor(
        two_stumps("BRANCH_LEQ", "BRANCH_LT", &[0, 0, 0, 1, 0, 0]),
        two_stump_leaves(),
        1,
        &[],
        PostTransform::None,
        Aggregate::Sum,
    );
    check(&m, &ROWS, 2, &[11.0, 22.0, 21.0, 12.0]);
}

#[test]
fn single_target_uses_the_first_weight_or_the_leaf_value() {
    // Leaf 1 has two weights (3.0 listed after leaf 2's); leaf 2 none in the 2nd model.
    let w = leaves(&[0, 0, 0], &[1, 2, 1], &[0, 0, 0], &[2.0, 5.0, 3.0]);
    let m = regressor(stump(), w, 1, &[], PostTransform::None, Aggregate::Sum);
    check(&m, &[0.0, 1.0], 1, &[2.0, 5.0]);
    let w = leaves(&[0], &[1], &[0], &[2.0]);
    let m = regressor(stump(), w, 1, &[], PostTransform::None, Aggregate::Sum);
    check(&m, &[0.0, 1.0], 1, &[2.0, 0.125]);
}

#[test]
fn single_target_ignores_weights_on_branch_nodes() {
    let w = leaves(&[0, 0, 0], &[0, 1, 2], &[0, 0, 0], &[100.0, 2.0, 5.0]);
    let m = regressor(stump(), w, 1, &[], PostTransform::None, Aggregate::Sum);
    check(&m, &[0.0, 1.0], 1, &[2.0, 5.0]);
}

#[test]
fn single_target_applies_only_probit() {
    let w = leaves(&[0, 0], &[1, 2], &[0, 0], &[2.0, -5.0]);
    let m = regressor(stump(), w, 1, &[], PostTransform::Logistic, Aggregate::Sum);
    check(&m, &[0.0, 1.0], 1, &[2.0, -5.0]);
    let w = leaves(&[0, 0], &[1, 2], &[0, 0], &[0.2, 0.9]);
    let m = regressor(stump(), w, 1, &[], PostTransform::Probit, Aggregate::Sum);
    check(&m, &[0.0, 1.0], 1, &[-0.8417561054229736, 1.2817128896713257]);
}

/// Tree 0: leaf 1 gives (1, -1), leaf 2 gives (2, _); tree 1: leaf 1 (_, 10), leaf 2 (_, 20).
fn two_target_leaves() -> LeafAttributes {
    leaves(&[0, 0, 0, 1, 1], &[1, 1, 2, 1, 2], &[0, 1, 0, 1, 1], &[1.0, -1.0, 2.0, 10.0, 20.0])
}

#[test]
fn several_targets_every_aggregate_with_and_without_base_values() {
    let cases: [(Aggregate, [f64; 8], [f64; 8]); 4] = [
        (
            Aggregate::Sum,
            [1.5, 9.25, 2.5, 20.25, 1.5, 19.25, 2.5, 20.25],
            [1.0, 9.0, 2.0, 20.0, 1.0, 19.0, 2.0, 20.0],
        ),
        (
            Aggregate::Average,
            [1.0, 4.75, 1.5, 10.25, 1.0, 9.75, 1.5, 10.25],
            [0.5, 4.5, 1.0, 10.0, 0.5, 9.5, 1.0, 10.0],
        ),
        (
            Aggregate::Min,
            [1.5, -0.75, 2.5, 20.25, 1.5, -0.75, 2.5, 20.25],
            [1.0, -1.0, 2.0, 20.0, 1.0, -1.0, 2.0, 20.0],
        ),
        (
            Aggregate::Max,
            [1.5, 10.25, 2.5, 20.25, 1.5, 20.25, 2.5, 20.25],
            [1.0, 10.0, 2.0, 20.0, 1.0, 20.0, 2.0, 20.0],
        ),
    ];
    for (aggregate, with_base, without) in cases {
        let nodes = || two_stumps("BRANCH_LEQ", "BRANCH_LT", &[]);
        let m = regressor(nodes(), two_target_leaves(), 2, &[0.5, 0.25], PostTransform::None, aggregate);
        check(&m, &ROWS, 2, &with_base);
        let m = regressor(nodes(), two_target_leaves(), 2, &[], PostTransform::None, aggregate);
        check(&m, &ROWS, 2, &without);
    }
}

#[test]
fn several_targets_every_transform() {
    let nodes = || two_stumps("BRANCH_LEQ", "BRANCH_LT", &[]);
    let rows = &ROWS[..4];
    let m = |t| regressor(nodes(), two_target_leaves(), 2, &[], t, Aggregate::Sum);
    check(
        &m(PostTransform::Logistic),
        rows,
        2,
        &[0.7310585975646973, 0.9998766183853149, 0.8807970285415649, 1.0],
    );
    let softmax = [0.00033535013790242374, 0.9996646642684937, 1.5229979055675358e-08, 1.0];
    check(&m(PostTransform::Softmax), rows, 2, &softmax);
    check(&m(PostTransform::SoftmaxZero), rows, 2, &softmax);
    check(&m(PostTransform::Probit), rows, 2, &[f64::INFINITY, f64::NAN, f64::NAN, f64::NAN]);
}

#[test]
fn several_targets_unscored_output_zero_despite_base_values() {
    let w = leaves(&[0, 0], &[1, 2], &[0, 1], &[2.0, -5.0]);
    for aggregate in [Aggregate::Sum, Aggregate::Min] {
        let m = regressor(stump(), w.clone(), 2, &[10.0, 20.0], PostTransform::None, aggregate);
        check(&m, &[0.0, 1.0], 1, &[12.0, 0.0, 0.0, 15.0]);
    }
    let m = regressor(stump(), w, 2, &[10.0, 20.0], PostTransform::Softmax, Aggregate::Sum);
    check(
        &m,
        &[0.0, 1.0],
        1,
        &[0.9999938011169434, 6.144174221844878e-06, 3.0590220490012143e-07, 0.9999996423721313],
    );
}

#[test]
fn three_targets_softmax_zero() {
    let w = leaves(&[0, 0, 0], &[1, 1, 2], &[0, 1, 2], &[2.0, 0.0, -5.0]);
    let m = regressor(stump(), w, 3, &[], PostTransform::SoftmaxZero, Aggregate::Sum);
    check(&m, &[0.0, 1.0], 1, &[1.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
}

#[test]
fn shared_children_unreachable_nodes_and_late_roots() {
    // Node 1's true child is node 0's true child (a DAG, as LightGBM exports produce).
    let dag = nodes(
        &[0; 4],
        &[0, 1, 2, 3],
        &[0; 4],
        &[0.5, 0.7, 0.0, 0.0],
        &["BRANCH_LEQ", "BRANCH_LEQ", "LEAF", "LEAF"],
        &[2, 2, 0, 0],
        &[1, 3, 0, 0],
        &[],
    );
    let w = leaves(&[0, 0], &[2, 3], &[0, 0], &[1.0, 2.0]);
    let m = regressor(dag, w.clone(), 1, &[], PostTransform::None, Aggregate::Sum);
    check(&m, &[0.0, 0.6, 1.0], 1, &[1.0, 1.0, 2.0]);

    // Node 3 is never reached.
    let unreachable = nodes(
        &[0; 4],
        &[0, 1, 2, 3],
        &[0; 4],
        &[0.5, 0.0, 0.0, 0.0],
        &["BRANCH_LEQ", "LEAF", "LEAF", "LEAF"],
        &[1, 0, 0, 0],
        &[2, 0, 0, 0],
        &[],
    );
    let w2 = leaves(&[0, 0], &[1, 2], &[0, 0], &[1.0, 2.0]);
    let m = regressor(unreachable, w2.clone(), 1, &[], PostTransform::None, Aggregate::Sum);
    check(&m, &[0.0, 1.0], 1, &[1.0, 2.0]);

    // The first node listed is the root, even if it is a leaf with id 1.
    let late_root = nodes(
        &[0; 3],
        &[1, 0, 2],
        &[0; 3],
        &[0.0, 0.5, 0.0],
        &["LEAF", "BRANCH_LEQ", "LEAF"],
        &[0, 1, 0],
        &[0, 2, 0],
        &[],
    );
    let m = regressor(late_root, w2, 1, &[], PostTransform::None, Aggregate::Sum);
    check(&m, &[0.0, 1.0], 1, &[1.0, 1.0]);
}

#[test]
fn leaves_feature_ids_are_not_read() {
    let mut n = stump();
    n.feature_ids = vec![0, 5, 7];
    let w = leaves(&[0, 0], &[1, 2], &[0, 0], &[2.0, 5.0]);
    let m = regressor(n, w, 1, &[], PostTransform::None, Aggregate::Sum);
    assert_eq!(m.required_features(), 1);
    check(&m, &[0.0, 1.0], 1, &[2.0, 5.0]);
}

#[test]
fn many_trees_of_uneven_depth_keep_their_summation_order() {
    // 19 trees (more than two lock-step groups): tree k is a chain of k branch nodes on
    // feature 0 ending in leaves weighted 10^(k mod 4) * (1 or -1).
    let mut n = NodeAttributes::default();
    let mut w = LeafAttributes::default();
    let mut expected = [0.0f32; 3];
    let rows = [-1.0f32, 0.5, 100.0];
    for k in 0..19i64 {
        for d in 0..k {
            n.tree_ids.push(k);
            n.node_ids.push(d);
            n.feature_ids.push(0);
            n.values.push(d as f32);
            n.modes.push("BRANCH_LEQ".parse().unwrap());
            n.true_node_ids.push(k + d); // a leaf
            n.false_node_ids.push(if d + 1 < k { d + 1 } else { 2 * k });
        }
        for leaf in k..=2 * k {
            n.tree_ids.push(k);
            n.node_ids.push(leaf);
            n.feature_ids.push(0);
            n.values.push(0.0);
            n.modes.push("LEAF".parse().unwrap());
            n.true_node_ids.push(0);
            n.false_node_ids.push(0);
            let sign = if leaf % 2 == 0 { 1.0 } else { -1.0 };
            w.tree_ids.push(k);
            w.node_ids.push(leaf);
            w.ids.push(0);
            w.weights.push(sign * 10f32.powi((k % 4) as i32) * 1.1);
        }
        for (r, &x) in rows.iter().enumerate() {
            // The first d with x <= d, else the last leaf.
            let leaf = (0..k).find(|&d| x <= d as f32).map_or(2 * k, |d| k + d);
            let sign = if leaf % 2 == 0 { 1.0 } else { -1.0 };
            expected[r] += sign * 10f32.powi((k % 4) as i32) * 1.1;
        }
    }
    let m = regressor(n, w, 1, &[], PostTransform::None, Aggregate::Sum);
    assert_eq!(m.n_trees(), 19);
    let out = m.predict(&rows, 3, 1).unwrap();
    assert_same(&out, &expected);
}

/// The `Trees` view walks to the leaves evaluation reaches (modes, NaN tracking), and maps
/// nodes back to their attribute positions.
#[test]
fn the_trees_view_walks_as_evaluation_does() {
    for tracks in [&[][..], &[1, 0, 0, 1, 0, 0][..]] {
        let nodes = two_stumps("BRANCH_LEQ", "BRANCH_LT", tracks);
        let m = regressor(nodes, two_stump_leaves(), 1, &[], PostTransform::None, Aggregate::Sum);
        let trees = m.trees();
        assert_eq!((trees.n_trees(), trees.n_nodes(), trees.n_attribute_nodes()), (2, 6, 6));
        assert_eq!(trees.required_features(), m.required_features());
        for row in ROWS.chunks_exact(2) {
            let mut sum = 0.0;
            for t in 0..trees.n_trees() {
                let mut at = trees.root(t).unwrap();
                loop {
                    match trees.node(at).unwrap() {
                        palisade_onnx_ml::TreeNode::Branch(b) => at = b.next(row[b.feature]),
                        palisade_onnx_ml::TreeNode::Leaf { value, weights } => {
                            assert_eq!(weights.first().map(|w| w.value), Some(value));
                            sum += value;
                            break;
                        }
                    }
                }
            }
            assert_eq!(sum, m.predict(row, 1, 2).unwrap()[0]);
        }
        let mut positions: Vec<usize> = (0..6).map(|n| trees.attribute_position(n).unwrap()).collect();
        positions.sort_unstable();
        assert_eq!(positions, (0..6).collect::<Vec<_>>());
        assert!(trees.node(6).is_none() && trees.root(2).is_none());
    }
}
