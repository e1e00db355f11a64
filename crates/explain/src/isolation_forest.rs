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

/// An IsolationForest ready to score rows (immutable, `Send + Sync`).
#[derive(Debug, Clone)]
pub struct IsolationForest {
    nodes: Vec<Packed>,
    values: Vec<f64>,
    roots: Vec<u32>,
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
        Ok(IsolationForest { nodes, values, roots, n_features, denominator })
    }

    /// The number of trees.
    pub fn n_trees(&self) -> usize {
        self.roots.len()
    }

    /// The number of features a row has.
    pub fn n_features(&self) -> usize {
        self.n_features
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
        if self.n_features == 0 {
            out.iter_mut().for_each(|o| *o = -(-self.path_length_sum(&[]) / self.denominator).exp2());
            return Ok(());
        }
        for (row, o) in rows.chunks_exact(self.n_features).zip(out.iter_mut()) {
            *o = if row.iter().any(|x| x.is_nan()) {
                f64::NAN
            } else {
                -(-self.path_length_sum(row) / self.denominator).exp2()
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
