//! Property tests: TreeSHAP on random trees (mixed branch modes, repeated features,
//! missing-value tracking, NaN rows, nodes no background reaches) against the path-dependent
//! game's Shapley values computed from their definition; hostile sizes never panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::needless_range_loop, missing_docs)]

use palisade_explain::{
    DriftMonitor, Inverse, KernelShap, KernelShapOptions, Mahalanobis, TreeEnsemble, TreeShap,
    covers_from_background, ks_2samp,
};
use palisade_onnx_ml::{
    Aggregate, LeafAttributes, NodeAttributes, NodeMode, PostTransform, RegressorAttributes,
    TreeEnsembleRegressor,
};
use proptest::prelude::*;

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f32 {
        self.below(1000) as f32 / 1000.0
    }
}

const MODES: [NodeMode; 4] =
    [NodeMode::BranchLeq, NodeMode::BranchLt, NodeMode::BranchGte, NodeMode::BranchGt];

/// A random single-target regressor of `n_trees` trees over `m` features (mixed modes,
/// repeated features, random missing-value tracking).
fn random_model(seed: u64, m: usize, n_trees: usize) -> TreeEnsembleRegressor {
    let mut rng = Lcg(seed);
    let mut nodes = NodeAttributes::default();
    let mut leaves = LeafAttributes::default();
    for t in 0..n_trees as i64 {
        // Breadth-first: node ids in order; each node a branch with probability 0.7 until depth 5.
        let mut pending = vec![(0i64, 0usize)];
        let mut next_id = 1i64;
        let mut i = 0;
        while i < pending.len() {
            let (id, depth) = pending[i];
            i += 1;
            nodes.tree_ids.push(t);
            nodes.node_ids.push(id);
            if depth < 5 && rng.below(10) < 7 {
                nodes.feature_ids.push(rng.below(m as u64) as i64);
                nodes.values.push(rng.unit());
                nodes.modes.push(MODES[rng.below(4) as usize]);
                nodes.false_node_ids.push(next_id);
                nodes.true_node_ids.push(next_id + 1);
                nodes.missing_value_tracks_true.push(rng.below(2) == 0);
                pending.push((next_id, depth + 1));
                pending.push((next_id + 1, depth + 1));
                next_id += 2;
            } else {
                nodes.feature_ids.push(0);
                nodes.values.push(0.0);
                nodes.modes.push(NodeMode::Leaf);
                nodes.false_node_ids.push(0);
                nodes.true_node_ids.push(0);
                nodes.missing_value_tracks_true.push(false);
                leaves.tree_ids.push(t);
                leaves.node_ids.push(id);
                leaves.ids.push(0);
                leaves.weights.push(rng.unit() * 4.0 - 2.0);
            }
        }
    }
    TreeEnsembleRegressor::new(RegressorAttributes {
        nodes,
        leaves,
        n_targets: 1,
        base_values: vec![0.25],
        post_transform: PostTransform::None,
        aggregate_function: if seed.is_multiple_of(2) { Aggregate::Sum } else { Aggregate::Average },
    })
    .unwrap()
}

/// The path-dependent game's value of coalition `mask`: expected output when features in
/// `mask` follow `x` and others split by the covers (counts of `background`; an unreached
/// node splits evenly).
fn game(model: &TreeEnsembleRegressor, x: &[f32], background: &[f32], m: usize, mask: u32) -> f64 {
    let trees = model.trees();
    let reaches = |node: u32, row: &[f32], tree: usize| -> bool {
        let mut at = trees.root(tree).unwrap();
        loop {
            if at == node {
                return true;
            }
            match trees.node(at).unwrap() {
                palisade_onnx_ml::TreeNode::Branch(b) => at = b.next(row[b.feature]),
                _ => return false,
            }
        }
    };
    let count =
        |node: u32, tree: usize| background.chunks_exact(m).filter(|r| reaches(node, r, tree)).count() as f64;
    fn value(
        trees: &palisade_onnx_ml::Trees<'_>,
        node: u32,
        tree: usize,
        x: &[f32],
        mask: u32,
        count: &dyn Fn(u32, usize) -> f64,
    ) -> f64 {
        match trees.node(node).unwrap() {
            palisade_onnx_ml::TreeNode::Leaf { value, .. } => f64::from(value),
            palisade_onnx_ml::TreeNode::Branch(b) => {
                if mask >> b.feature & 1 == 1 {
                    return value(trees, b.next(x[b.feature]), tree, x, mask, count);
                }
                let c = count(node, tree);
                let (pf, pt) = if c > 0.0 {
                    (count(b.false_child, tree) / c, count(b.true_child, tree) / c)
                } else {
                    (0.5, 0.5)
                };
                let mut v = 0.0;
                if pf > 0.0 {
                    v += pf * value(trees, b.false_child, tree, x, mask, count);
                }
                if pt > 0.0 {
                    v += pt * value(trees, b.true_child, tree, x, mask, count);
                }
                v
            }
        }
    }
    let scale = if model.aggregate() == Aggregate::Average { 1.0 / model.n_trees() as f64 } else { 1.0 };
    let sum: f64 =
        (0..trees.n_trees()).map(|t| value(&trees, trees.root(t).unwrap(), t, x, mask, &count)).sum();
    sum * scale + 0.25
}

fn brute_shapley(model: &TreeEnsembleRegressor, x: &[f32], background: &[f32], m: usize) -> Vec<f64> {
    let values: Vec<f64> = (0..1u32 << m).map(|mask| game(model, x, background, m, mask)).collect();
    let fact = |n: usize| (1..=n).map(|k| k as f64).product::<f64>();
    let mut phi = vec![0.0; m];
    for i in 0..m {
        for mask in 0..1u32 << m {
            if mask >> i & 1 == 1 {
                continue;
            }
            let k = mask.count_ones() as usize;
            let w = fact(k) * fact(m - k - 1) / fact(m);
            phi[i] += w * (values[(mask | 1 << i) as usize] - values[mask as usize]);
        }
    }
    phi
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn tree_shap_is_the_path_dependent_shapley_value(seed in any::<u64>(), m in 1usize..5, n_trees in 1usize..4) {
        let model = random_model(seed, m, n_trees);
        let mut rng = Lcg(seed ^ 0xabcdef);
        let n_background = 1 + rng.below(12) as usize;
        let mut background: Vec<f32> = (0..n_background * m).map(|_| rng.unit()).collect();
        if n_background > 2 {
            background[0] = f32::NAN;
        }
        let mut x: Vec<f32> = (0..3 * m).map(|_| rng.unit()).collect();
        x[m] = f32::NAN;
        let ensemble = TreeEnsemble::from_regressor(&model).unwrap();
        let covers = covers_from_background(&ensemble, &background, n_background, m).unwrap();
        for budget in [palisade_explain::MAX_TABLE_ENTRIES, 0] {
            let shap = TreeShap::with_table_budget(ensemble.clone(), &covers, budget).unwrap();
            let e = shap.explain(&x, 3, m).unwrap();
            for r in 0..3 {
                let brute = brute_shapley(&model, &x[r * m..(r + 1) * m], &background, m);
                let mut sum = e.expected_value[0];
                for j in 0..m {
                    let got = e.value(0, r, j).unwrap();
                    prop_assert!((got - brute[j]).abs() < 1e-9, "row {} feature {}: {} vs {}", r, j, got, brute[j]);
                    sum += got;
                }
                prop_assert!((sum - e.margins[r]).abs() < 1e-9);
                let predicted = model.predict(&x[r * m..(r + 1) * m], 1, m).unwrap()[0];
                prop_assert!((e.margins[r] - f64::from(predicted)).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn hostile_sizes_and_values_never_panic(
        n in 0usize..5,
        f in 0usize..4,
        values in proptest::collection::vec(prop_oneof![Just(f32::NAN), Just(f32::INFINITY), -10.0f32..10.0], 0..24),
    ) {
        let _ = Mahalanobis::fit(&values, n, f, Inverse::default()).map(|s| s.score(&values));
        let _ = KernelShap::new(values.clone(), n, f, KernelShapOptions::default())
            .map(|k| k.explain(&values, n, |_, r| Ok::<_, String>(vec![0.0; r])));
        let _ = DriftMonitor::new(&values, n, f, n.max(1)).map(|mut d| { let _ = d.push(&values, n); d.report(0.05) });
        let a: Vec<f64> = values.iter().map(|&v| f64::from(v)).collect();
        let _ = ks_2samp(&a, &a[..a.len() / 2]);
    }
}
