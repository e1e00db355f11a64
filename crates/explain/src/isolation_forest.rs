//! IsolationForest outlier scores, evaluated natively over a compact forest.
//!
//! scikit-learn's `score_samples(x) = -2^(-E[h(x)] / c(max_samples))`, where `h(x)` is,
//! in each tree, the depth of the leaf `x` reaches plus `c(n)` for the `n` training samples
//! that leaf still held (the expected depth of the subtree the tree stopped growing), minus
//! one for the root, and `c(n) = 2(ln(n - 1) + γ) - 2(n - 1)/n` for `n > 2`, `1` for
//! `n = 2`, `0` below ([`average_path_length`]).
//!
//! The forest is built from parts ([`IsolationTree`]: splits on `x[feature] <= threshold`
//! in `f32`, as the ONNX export compares, and each leaf's whole `h` term) by whoever read
//! the model; this module only checks the parts form trees and scores rows in one pass.
//!
//! Forests whose trees are at most [`COMPLETE_DEPTH`] deep (scikit-learn's default
//! `max_samples` of at most 256 grows trees of at most 8 levels) over at most 256 features
//! are also laid out as complete trees: below a shallower leaf, every leaf of the complete
//! tree holds that leaf's value whichever way the filler splits send a row, so that every
//! row takes exactly as many steps as the deepest tree has levels, each one a
//! load, a compare and an index computed without a branch or a bounds check (the indices
//! are masked into fixed-size arrays). The sum is the same, tree by tree in the same order.

use crate::ExplainError;
use crate::error::{check_shape, product};

/// Most nodes a forest may hold (all trees together).
pub const MAX_FOREST_NODES: usize = 1 << 24;

/// One node of an [`IsolationTree`], in the tree's node list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IsolationNode {
    /// `x[feature] <= threshold` goes to `left`, otherwise (and for NaN) to `right`. Both
    /// children come after this node in the list.
    Split {
        /// Index of the feature in the scored row.
        feature: u32,
        /// The threshold, compared in `f32`.
        threshold: f32,
        /// Index of the true child.
        left: u32,
        /// Index of the false child.
        right: u32,
    },
    /// A leaf: its `h` term (depth + `c(samples)` - 1).
    Leaf {
        /// What a row reaching this leaf adds to the forest's sum of path lengths.
        path_length: f64,
    },
}

/// One tree: its nodes, the root first.
#[derive(Debug, Clone, PartialEq)]
pub struct IsolationTree {
    /// The nodes; a split's children come after it.
    pub nodes: Vec<IsolationNode>,
}

/// A packed node: a split (`feature < u32::MAX`) or a leaf (its value in `values[left]`).
#[derive(Debug, Clone, Copy)]
struct Packed {
    threshold: f32,
    feature: u32,
    left: u32,
    right: u32,
}

const LEAF: u32 = u32::MAX;

/// How deep a tree may be to be laid out as a complete tree.
pub const COMPLETE_DEPTH: usize = 8;

/// Slots of a complete tree's splits (heap order from 1; slot 0 unused) and of its leaves.
const SLOTS: usize = 1 << COMPLETE_DEPTH;

/// Most trees laid out as complete trees (4 KiB each): 16 MiB.
const MAX_COMPLETE_TREES: usize = 4096;

/// A split of a complete tree: `x[feature] <= threshold` goes left (slot `2i`), otherwise
/// right (`2i + 1`).
#[derive(Debug, Clone, Copy)]
struct Step {
    threshold: f32,
    feature: u8,
}

/// The filler split below a shallow leaf (either way leads to a copy of the leaf's value).
const PASS: Step = Step { threshold: f32::INFINITY, feature: 0 };

/// A tree as a complete binary tree of the forest's depth (at most [`COMPLETE_DEPTH`]).
#[derive(Debug, Clone)]
struct CompleteTree {
    steps: [Step; SLOTS],
    leaves: [f64; SLOTS],
}

/// How many splits the deepest path from `node` down holds, or `None` past
/// [`COMPLETE_DEPTH`] (or for a node that is not in the tree).
fn depth_below(tree: &IsolationTree, node: usize, level: usize) -> Option<usize> {
    match tree.nodes.get(node)? {
        _ if level > COMPLETE_DEPTH => None,
        IsolationNode::Leaf { .. } => Some(level),
        &IsolationNode::Split { left, right, .. } => Some(
            depth_below(tree, left as usize, level + 1)?.max(depth_below(tree, right as usize, level + 1)?),
        ),
    }
}

impl CompleteTree {
    /// Lays `tree` out `depth` levels deep (at least its own depth, at most
    /// [`COMPLETE_DEPTH`]), or `None` when it does not fit or a feature index does not fit
    /// in a byte.
    fn new(tree: &IsolationTree, depth: usize) -> Option<CompleteTree> {
        let mut complete = CompleteTree { steps: [PASS; SLOTS], leaves: [0.0; SLOTS] };
        complete.fill(tree, 0, 1, 0, depth).then_some(complete)
    }

    /// Places the subtree at `node` at `slot`, `level` levels down of `depth`.
    fn fill(&mut self, tree: &IsolationTree, node: usize, slot: usize, level: usize, depth: usize) -> bool {
        match tree.nodes.get(node) {
            Some(&IsolationNode::Split { feature, threshold, left, right }) => {
                let Ok(feature) = u8::try_from(feature) else { return false };
                if level >= depth || depth > COMPLETE_DEPTH {
                    return false;
                }
                self.steps[slot] = Step { threshold, feature };
                self.fill(tree, left as usize, 2 * slot, level + 1, depth)
                    && self.fill(tree, right as usize, 2 * slot + 1, level + 1, depth)
            }
            Some(&IsolationNode::Leaf { path_length }) => {
                // The splits below `slot` stay fillers; every leaf below it holds its value.
                let below = depth - level;
                let first = (slot << below) ^ (1 << depth);
                self.leaves[first..first + (1 << below)].fill(path_length);
                true
            }
            None => false,
        }
    }

    /// The path length of `row` (which holds no NaN) in a tree laid out `D` levels deep.
    #[inline(always)]
    fn path_length<const D: usize>(&self, row: &[f32; SLOTS]) -> f64 {
        // Opaque to the optimizer: with a known root slot, it rebuilds each level's slot
        // from the bits taken so far instead of one shift and add.
        let mut slot = std::hint::black_box(1usize);
        for _ in 0..D {
            let step = self.steps[slot % SLOTS];
            let left = row[usize::from(step.feature)] <= step.threshold;
            slot = 2 * slot + usize::from(!left);
        }
        self.leaves[(slot ^ (1 << D)) % SLOTS]
    }
}

/// The sum of `trees`' path lengths for `row`, the trees laid out `D` levels deep.
fn complete_sum<const D: usize>(trees: &[CompleteTree], row: &[f32; SLOTS]) -> f64 {
    trees.iter().fold(0.0, |sum, tree| sum + tree.path_length::<D>(row))
}

/// An IsolationForest ready to score rows (immutable, `Send + Sync`).
#[derive(Debug, Clone)]
pub struct IsolationForest {
    nodes: Vec<Packed>,
    values: Vec<f64>,
    roots: Vec<u32>,
    /// The same trees laid out complete, when they all fit (see the module's docs).
    complete: Vec<CompleteTree>,
    /// The deepest tree's depth: the complete trees' depth.
    depth: usize,
    n_features: usize,
    denominator: f64,
}

/// `c(n)`: the average path length of an unsuccessful search in a binary search tree of
/// `n` samples, as scikit-learn's `_average_path_length` (and skl2onnx's formula, which
/// agrees with it for every `n`): `0` for `n <= 1`, `1` for `n = 2`,
/// `2(ln(n - 1) + γ) - 2(n - 1)/n` above.
pub fn average_path_length(n: f64) -> f64 {
    const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;
    if n > 2.0 {
        2.0 * ((n - 1.0).ln() + EULER_GAMMA) - 2.0 * (n - 1.0) / n
    } else if n == 2.0 {
        1.0
    } else {
        0.0
    }
}

impl IsolationForest {
    /// Packs `trees` over rows of `n_features`; `denominator` is `n_trees × c(max_samples)`.
    /// Refuses an empty forest, a non-positive or non-finite denominator, a feature index
    /// past the row, a child that does not come after its parent or lies outside the tree,
    /// a non-finite leaf value, and forests past [`MAX_FOREST_NODES`].
    pub fn new(
        trees: Vec<IsolationTree>,
        n_features: usize,
        denominator: f64,
    ) -> Result<IsolationForest, ExplainError> {
        let unsupported = |m: String| ExplainError::Unsupported(format!("IsolationForest: {m}"));
        if trees.is_empty() {
            return Err(unsupported("the forest has no trees".to_owned()));
        }
        if !(denominator.is_finite() && denominator > 0.0) {
            return Err(unsupported(format!("the path-length normalizer {denominator} is not positive")));
        }
        let total: usize = trees.iter().map(|t| t.nodes.len()).fold(0, usize::saturating_add);
        if total > MAX_FOREST_NODES {
            return Err(ExplainError::TooLarge {
                what: "IsolationForest nodes",
                requested: total,
                limit: MAX_FOREST_NODES,
            });
        }
        let mut nodes = Vec::with_capacity(total);
        let mut values = Vec::new();
        let mut roots = Vec::with_capacity(trees.len());
        for (t, tree) in trees.iter().enumerate() {
            if tree.nodes.is_empty() {
                return Err(unsupported(format!("tree {t} has no nodes")));
            }
            let base = nodes.len();
            roots.push(crate::ensemble_index(base));
            let len = tree.nodes.len();
            for (i, node) in tree.nodes.iter().enumerate() {
                match *node {
                    IsolationNode::Split { feature, threshold, left, right } => {
                        if feature as usize >= n_features {
                            return Err(unsupported(format!(
                                "tree {t} node {i} reads feature {feature} of rows of {n_features}"
                            )));
                        }
                        for child in [left, right] {
                            if (child as usize) <= i || child as usize >= len {
                                return Err(unsupported(format!(
                                    "tree {t} node {i} has child {child}, which does not follow it in the tree"
                                )));
                            }
                        }
                        nodes.push(Packed {
                            threshold,
                            feature,
                            left: crate::ensemble_index(base + left as usize),
                            right: crate::ensemble_index(base + right as usize),
                        });
                    }
                    IsolationNode::Leaf { path_length } => {
                        if !path_length.is_finite() {
                            return Err(unsupported(format!(
                                "tree {t} leaf {i} has path length {path_length}"
                            )));
                        }
                        nodes.push(Packed {
                            threshold: 0.0,
                            feature: LEAF,
                            left: crate::ensemble_index(values.len()),
                            right: 0,
                        });
                        values.push(path_length);
                    }
                }
            }
        }
        let depth = trees.iter().map(|tree| depth_below(tree, 0, 0)).try_fold(0, |d, t| Some(t?.max(d)));
        let complete = match depth {
            Some(depth) if trees.len() <= MAX_COMPLETE_TREES && n_features <= SLOTS => trees
                .iter()
                .map(|tree| CompleteTree::new(tree, depth))
                .collect::<Option<Vec<_>>>()
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let depth = depth.unwrap_or(0);
        Ok(IsolationForest { nodes, values, roots, complete, depth, n_features, denominator })
    }

    /// Whether rows take the complete-tree walk (every tree at most [`COMPLETE_DEPTH`] deep
    /// over at most 256 features).
    pub fn is_complete(&self) -> bool {
        !self.complete.is_empty()
    }

    /// The number of trees.
    pub fn n_trees(&self) -> usize {
        self.roots.len()
    }

    /// The number of features a row has.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// The sum of the complete trees' path lengths for one row, their depth a constant.
    fn complete_sum(&self, row: &[f32; SLOTS]) -> f64 {
        let trees = &self.complete;
        match self.depth {
            0 => complete_sum::<0>(trees, row),
            1 => complete_sum::<1>(trees, row),
            2 => complete_sum::<2>(trees, row),
            3 => complete_sum::<3>(trees, row),
            4 => complete_sum::<4>(trees, row),
            5 => complete_sum::<5>(trees, row),
            6 => complete_sum::<6>(trees, row),
            7 => complete_sum::<7>(trees, row),
            _ => complete_sum::<COMPLETE_DEPTH>(trees, row),
        }
    }

    /// `E[h(x)] × n_trees / n_trees`: the sum of the trees' path lengths for one row.
    fn path_length_sum(&self, row: &[f32]) -> f64 {
        let mut sum = 0.0;
        for &root in &self.roots {
            let mut at = root as usize;
            // Children always follow their parent (checked in `new`), so this ends.
            while let Some(node) = self.nodes.get(at) {
                if node.feature == LEAF {
                    sum += self.values.get(node.left as usize).copied().unwrap_or(f64::NAN);
                    break;
                }
                let x = row.get(node.feature as usize).copied().unwrap_or(f32::NAN);
                at = if x <= node.threshold { node.left } else { node.right } as usize;
            }
        }
        sum
    }

    /// scikit-learn's `score_samples` of `n_rows` rows (row-major, `n_features` each) into
    /// `out` (one per row): in `[-1, 0]`, lower is more abnormal. A row holding NaN scores
    /// NaN (scikit-learn refuses such rows).
    pub fn score_samples(&self, rows: &[f32], n_rows: usize, out: &mut [f64]) -> Result<(), ExplainError> {
        check_shape("rows", rows.len(), n_rows, self.n_features)?;
        if out.len() != n_rows {
            return Err(ExplainError::Shape {
                what: "scores",
                rows: n_rows,
                columns: 1,
                expected: n_rows,
                actual: out.len(),
            });
        }
        let score = |sum: f64| -(-sum / self.denominator).exp2();
        if self.n_features == 0 {
            out.iter_mut().for_each(|o| *o = score(self.path_length_sum(&[])));
            return Ok(());
        }
        let mut padded = [0.0f32; SLOTS];
        for (row, o) in rows.chunks_exact(self.n_features).zip(out.iter_mut()) {
            *o = if row.iter().any(|x| x.is_nan()) {
                f64::NAN
            } else if let Some(head) = padded.get_mut(..row.len()).filter(|_| self.is_complete()) {
                head.copy_from_slice(row);
                score(self.complete_sum(&padded))
            } else {
                score(self.path_length_sum(row))
            };
        }
        Ok(())
    }

    /// The work of scoring `n_rows` rows, in node visits at most (rows × trees × the
    /// deepest tree bound, here the node count), for deciding where to run it.
    pub fn cost(&self, n_rows: usize) -> usize {
        product(n_rows, self.nodes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stump(threshold: f32, left: f64, right: f64) -> IsolationTree {
        IsolationTree {
            nodes: vec![
                IsolationNode::Split { feature: 1, threshold, left: 1, right: 2 },
                IsolationNode::Leaf { path_length: left },
                IsolationNode::Leaf { path_length: right },
            ],
        }
    }

    /// A random tree of at most `depth` levels in preorder (a deterministic generator).
    fn random_tree(state: &mut u64, depth: usize, n_features: u32) -> IsolationTree {
        fn next(state: &mut u64) -> u32 {
            *state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (*state >> 33) as u32
        }
        fn grow(
            nodes: &mut Vec<IsolationNode>,
            state: &mut u64,
            level: usize,
            depth: usize,
            n_features: u32,
        ) {
            let at = nodes.len();
            if level == depth || (level > 0 && next(state).is_multiple_of(4)) {
                nodes.push(IsolationNode::Leaf {
                    path_length: f64::from(next(state) % 1000) / 64.0 + level as f64,
                });
                return;
            }
            let threshold = (next(state) % 2000) as f32 / 100.0 - 10.0;
            nodes.push(IsolationNode::Split {
                feature: next(state) % n_features,
                threshold,
                left: 0,
                right: 0,
            });
            let left = nodes.len() as u32;
            grow(nodes, state, level + 1, depth, n_features);
            let right = nodes.len() as u32;
            grow(nodes, state, level + 1, depth, n_features);
            nodes[at] = IsolationNode::Split { feature: next(state) % n_features, threshold, left, right };
        }
        let mut nodes = Vec::new();
        grow(&mut nodes, state, 0, depth, n_features);
        IsolationTree { nodes }
    }

    /// The sum of path lengths by walking the trees as given, the definition.
    fn reference(trees: &[IsolationTree], row: &[f32]) -> f64 {
        trees.iter().fold(0.0, |sum, tree| {
            let mut at = 0;
            loop {
                match tree.nodes[at] {
                    IsolationNode::Leaf { path_length } => break sum + path_length,
                    IsolationNode::Split { feature, threshold, left, right } => {
                        at = if row[feature as usize] <= threshold { left } else { right } as usize;
                    }
                }
            }
        })
    }

    #[test]
    fn both_walks_give_the_definitions_scores_bit_for_bit() {
        let mut state = 7;
        // (trees' depth bound, features): complete layouts, and forests too deep or too wide
        // for it, which take the node walk.
        for (depth, n_features, complete) in
            [(1, 1, true), (5, 3, true), (8, 4, true), (8, 256, true), (9, 4, false), (6, 257, false)]
        {
            let trees: Vec<_> = (0..20).map(|_| random_tree(&mut state, depth, n_features)).collect();
            let denominator = 20.0 * average_path_length(256.0);
            let forest = IsolationForest::new(trees.clone(), n_features as usize, denominator).unwrap();
            assert_eq!(forest.is_complete(), complete, "depth {depth}, {n_features} features");
            let n_rows = 33;
            let mut rows: Vec<f32> = (0..n_rows * n_features as usize)
                .map(|i| match i % 11 {
                    // Values equal to thresholds, infinities and signed zeros too.
                    0 => 1.0,
                    1 => f32::INFINITY,
                    2 => f32::NEG_INFINITY,
                    3 => -0.0,
                    _ => ((i as u64).wrapping_mul(2_654_435_761) % 2400) as f32 / 100.0 - 12.0,
                })
                .collect();
            rows[n_features as usize] = f32::NAN;
            let mut out = vec![0.0; n_rows];
            forest.score_samples(&rows, n_rows, &mut out).unwrap();
            for (r, row) in rows.chunks_exact(n_features as usize).enumerate() {
                if row.iter().any(|x| x.is_nan()) {
                    assert!(out[r].is_nan());
                    continue;
                }
                let expected = -(-reference(&trees, row) / denominator).exp2();
                assert_eq!(out[r].to_bits(), expected.to_bits(), "depth {depth}, row {r}");
            }
        }
    }

    #[test]
    fn average_path_length_is_sklearns() {
        assert_eq!(average_path_length(0.0), 0.0);
        assert_eq!(average_path_length(1.0), 0.0);
        assert_eq!(average_path_length(2.0), 1.0);
        // c(256) from scikit-learn's _average_path_length([256]).
        assert!((average_path_length(256.0) - 10.244_770_920_119_917).abs() < 1e-12);
    }

    #[test]
    fn scores_follow_the_formula() {
        let forest = IsolationForest::new(vec![stump(0.5, 1.0, 3.0), stump(2.0, 2.0, 4.0)], 2, 4.0).unwrap();
        let mut out = [0.0; 3];
        forest.score_samples(&[9.0, 0.0, 9.0, 1.0, 9.0, f32::NAN], 3, &mut out).unwrap();
        assert_eq!(out[0], -(-(1.0 + 2.0) / 4.0f64).exp2());
        assert_eq!(out[1], -(-(3.0 + 2.0) / 4.0f64).exp2());
        assert!(out[2].is_nan());
    }

    #[test]
    fn refuses_what_is_not_a_forest() {
        let cycle = IsolationTree {
            nodes: vec![
                IsolationNode::Leaf { path_length: 1.0 },
                IsolationNode::Split { feature: 0, threshold: 0.0, left: 0, right: 0 },
            ],
        };
        assert!(IsolationForest::new(vec![cycle], 1, 1.0).is_err());
        assert!(IsolationForest::new(vec![stump(0.0, 1.0, 1.0)], 1, 1.0).is_err(), "feature past the row");
        assert!(IsolationForest::new(vec![stump(0.0, 1.0, 1.0)], 2, 0.0).is_err(), "zero normalizer");
        assert!(IsolationForest::new(vec![], 2, 1.0).is_err());
        let forest = IsolationForest::new(vec![stump(0.0, 1.0, 1.0)], 2, 1.0).unwrap();
        assert!(forest.score_samples(&[1.0], 1, &mut [0.0]).is_err(), "short row");
        assert!(forest.score_samples(&[1.0, 2.0], 1, &mut [0.0, 0.0]).is_err(), "wrong output length");
    }
}
