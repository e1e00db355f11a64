//! `TreeEnsemble` (ai.onnx.ml opset 5), compiled into the ensemble of
//! [`TreeEnsembleRegressor`].

use crate::{
    Aggregate, LeafAttributes, NodeAttributes, NodeMode, OnnxMlError, PostTransform, RegressorAttributes,
    TreeEnsembleRegressor,
};

/// Most nodes the rewriting into branch and leaf nodes may produce (shared subtrees are
/// copied once per path that reaches them, and set memberships become one node per member).
const MAX_REWRITTEN_NODES: usize = 1 << 26;

/// The attributes of a `TreeEnsemble` node (thresholds, weights and members as given,
/// in `f32` or `f64`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TreeEnsembleAttributes {
    /// `n_targets`.
    pub n_targets: i64,
    /// `aggregate_function`: 0 AVERAGE, 1 SUM (the default), 2 MIN, 3 MAX.
    pub aggregate_function: i64,
    /// `post_transform`, as onnxruntime numbers it: 0 NONE, 1 LOGISTIC, 2 SOFTMAX,
    /// 3 SOFTMAX_ZERO, 4 PROBIT.
    pub post_transform: i64,
    /// `tree_roots`: the node of each tree's root.
    pub tree_roots: Vec<i64>,
    /// `nodes_featureids`.
    pub nodes_featureids: Vec<i64>,
    /// `nodes_splits`.
    pub nodes_splits: Vec<f64>,
    /// `nodes_modes`: 0 LEQ, 1 LT, 2 GTE, 3 GT, 4 EQ, 5 NEQ, 6 MEMBER.
    pub nodes_modes: Vec<u8>,
    /// `nodes_truenodeids`: a node, or a leaf where `nodes_trueleafs` says so.
    pub nodes_truenodeids: Vec<i64>,
    /// `nodes_trueleafs`.
    pub nodes_trueleafs: Vec<i64>,
    /// `nodes_falsenodeids`.
    pub nodes_falsenodeids: Vec<i64>,
    /// `nodes_falseleafs`.
    pub nodes_falseleafs: Vec<i64>,
    /// `nodes_missing_value_tracks_true` (empty: none).
    pub nodes_missing_value_tracks_true: Vec<i64>,
    /// `leaf_targetids`.
    pub leaf_targetids: Vec<i64>,
    /// `leaf_weights`.
    pub leaf_weights: Vec<f64>,
    /// `membership_values`: the members of each MEMBER node in node order, each set
    /// ended by a NaN.
    pub membership_values: Vec<f64>,
}

/// Compiles a `TreeEnsemble` into a [`TreeEnsembleRegressor`] with onnxruntime's
/// semantics: each tree starts at its root, a node's children are nodes or leaves, a
/// leaf adds its one weight to its target; a MEMBER node sends a value equal to one of
/// its members (or NaN, where tracked) to the true side, like a chain of EQ nodes; the
/// aggregation and the post-transform are the regressor's (with one target, only PROBIT
/// is applied, as onnxruntime does).
///
/// `post_transform` follows onnxruntime, which reads 1 as LOGISTIC and 2 as SOFTMAX
/// where the ONNX specification's text says the reverse: the ensemble computes what the
/// model computed under onnxruntime.
///
/// Thresholds, weights and inputs are evaluated in `f32` (a `double` model's inputs are
/// cast by the caller, as for the opset-3 operators).
pub fn tree_ensemble(attributes: TreeEnsembleAttributes) -> Result<TreeEnsembleRegressor, OnnxMlError> {
    let a = attributes;
    let n = a.nodes_modes.len();
    let same = |attribute: &'static str, len: usize| {
        if len == n {
            Ok(())
        } else {
            Err(OnnxMlError::LengthMismatch { attribute, actual: len, reference: "nodes_modes", expected: n })
        }
    };
    same("nodes_featureids", a.nodes_featureids.len())?;
    same("nodes_truenodeids", a.nodes_truenodeids.len())?;
    same("nodes_trueleafs", a.nodes_trueleafs.len())?;
    same("nodes_falsenodeids", a.nodes_falsenodeids.len())?;
    same("nodes_falseleafs", a.nodes_falseleafs.len())?;
    if !a.nodes_missing_value_tracks_true.is_empty() {
        same("nodes_missing_value_tracks_true", a.nodes_missing_value_tracks_true.len())?;
    }
    if a.leaf_weights.len() != a.leaf_targetids.len() {
        return Err(OnnxMlError::LengthMismatch {
            attribute: "leaf_weights",
            actual: a.leaf_weights.len(),
            reference: "leaf_targetids",
            expected: a.leaf_targetids.len(),
        });
    }
    let aggregate = match a.aggregate_function {
        0 => Aggregate::Average,
        1 => Aggregate::Sum,
        2 => Aggregate::Min,
        3 => Aggregate::Max,
        other => {
            return Err(OnnxMlError::InvalidAttribute {
                attribute: "aggregate_function",
                reason: format!("must be 0 to 3, got {other}"),
            });
        }
    };
    let post_transform = match a.post_transform {
        0 => PostTransform::None,
        1 => PostTransform::Logistic,
        2 => PostTransform::Softmax,
        3 => PostTransform::SoftmaxZero,
        4 => PostTransform::Probit,
        other => {
            return Err(OnnxMlError::InvalidAttribute {
                attribute: "post_transform",
                reason: format!("must be 0 to 4, got {other}"),
            });
        }
    };

    // The members of each MEMBER node, in node order, each set ended by NaN.
    let mut members: Vec<&[f64]> = vec![&[]; n];
    let mut rest = a.membership_values.as_slice();
    for (i, &mode) in a.nodes_modes.iter().enumerate() {
        if mode != 6 {
            continue;
        }
        let end = rest.iter().position(|v| v.is_nan()).unwrap_or(rest.len());
        if end == 0 {
            return Err(OnnxMlError::InvalidAttribute {
                attribute: "membership_values",
                reason: format!("node {i} is a set membership test with no members"),
            });
        }
        members[i] = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or(&[]);
    }

    let mut rewrite =
        Rewrite { a: &a, members, nodes: NodeAttributes::default(), leaves: LeafAttributes::default() };
    for (tree, &root) in a.tree_roots.iter().enumerate() {
        let root = rewrite.node_index("tree_roots", tree, root)?;
        let leaf_root = a.nodes_truenodeids[root] == a.nodes_falsenodeids[root]
            && a.nodes_trueleafs[root] != 0
            && a.nodes_falseleafs[root] != 0;
        let tree_id = i64::try_from(tree).unwrap_or(i64::MAX);
        let child = if leaf_root { Child::Leaf(a.nodes_truenodeids[root]) } else { Child::Node(root) };
        rewrite.tree(tree_id, child)?;
    }
    let Rewrite { nodes, leaves, .. } = rewrite;
    TreeEnsembleRegressor::new(RegressorAttributes {
        nodes,
        leaves,
        n_targets: a.n_targets,
        base_values: vec![],
        post_transform,
        aggregate_function: aggregate,
    })
}

/// What a branch leads to.
#[derive(Debug, Clone, Copy)]
enum Child {
    Node(usize),
    Leaf(i64),
}

/// The rewriting into the opset-3 form: node and leaf attributes of each tree.
struct Rewrite<'a> {
    a: &'a TreeEnsembleAttributes,
    members: Vec<&'a [f64]>,
    nodes: NodeAttributes,
    leaves: LeafAttributes,
}

impl Rewrite<'_> {
    fn node_index(&self, attribute: &'static str, index: usize, value: i64) -> Result<usize, OnnxMlError> {
        usize::try_from(value)
            .ok()
            .filter(|&i| i < self.a.nodes_modes.len())
            .ok_or(OnnxMlError::InvalidEntry { attribute, index, value, reason: "must index a node" })
    }

    /// Appends one node to the tree, returning its id.
    fn push(
        &mut self,
        tree: i64,
        mode: NodeMode,
        feature: i64,
        value: f32,
        missing: bool,
    ) -> Result<i64, OnnxMlError> {
        let id = self.nodes.node_ids.len();
        if id >= MAX_REWRITTEN_NODES {
            return Err(OnnxMlError::InvalidAttribute {
                attribute: "tree_roots",
                reason: format!("the trees unfold into more than {MAX_REWRITTEN_NODES} nodes"),
            });
        }
        let id = i64::try_from(id).unwrap_or(i64::MAX);
        self.nodes.tree_ids.push(tree);
        self.nodes.node_ids.push(id);
        self.nodes.feature_ids.push(feature);
        self.nodes.values.push(value);
        self.nodes.modes.push(mode);
        self.nodes.true_node_ids.push(0);
        self.nodes.false_node_ids.push(0);
        self.nodes.missing_value_tracks_true.push(missing);
        Ok(id)
    }

    /// Rewrites one tree, depth first, without recursion. Node ids are positions in the
    /// rewritten attributes, unique across trees.
    fn tree(&mut self, tree: i64, root: Child) -> Result<(), OnnxMlError> {
        // (what to rewrite, how many nodes deep, the rewritten nodes whose true or false
        // child it is).
        let mut stack: Vec<(Child, usize, Vec<usize>, bool)> = vec![(root, 0, Vec::new(), false)];
        let limit = self.a.nodes_modes.len() + 1;
        while let Some((child, depth, parents, branch)) = stack.pop() {
            if depth > limit {
                return Err(OnnxMlError::InvalidAttribute {
                    attribute: "nodes_truenodeids",
                    reason: format!("tree {tree} has a cycle"),
                });
            }
            let id = match child {
                Child::Leaf(leaf) => {
                    let index = usize::try_from(leaf)
                        .ok()
                        .filter(|&l| l < self.a.leaf_targetids.len())
                        .ok_or(OnnxMlError::InvalidEntry {
                            attribute: "nodes_truenodeids",
                            index: 0,
                            value: leaf,
                            reason: "must index a leaf",
                        })?;
                    let id = self.push(tree, NodeMode::Leaf, 0, 0.0, false)?;
                    self.leaves.tree_ids.push(tree);
                    self.leaves.node_ids.push(id);
                    self.leaves.ids.push(self.a.leaf_targetids[index]);
                    self.leaves.weights.push(self.a.leaf_weights[index] as f32);
                    id
                }
                Child::Node(i) => {
                    let a = self.a;
                    let feature = a.nodes_featureids[i];
                    let missing = a.nodes_missing_value_tracks_true.get(i).is_some_and(|&m| m == 1);
                    let (true_child, false_child) = (self.child(i, true)?, self.child(i, false)?);
                    let mode = match a.nodes_modes[i] {
                        0 => NodeMode::BranchLeq,
                        1 => NodeMode::BranchLt,
                        2 => NodeMode::BranchGte,
                        3 => NodeMode::BranchGt,
                        4 | 6 => NodeMode::BranchEq,
                        5 => NodeMode::BranchNeq,
                        other => {
                            return Err(OnnxMlError::InvalidEntry {
                                attribute: "nodes_modes",
                                index: i,
                                value: i64::from(other),
                                reason: "must be 0 to 6",
                            });
                        }
                    };
                    let splits: Vec<f32> = if a.nodes_modes[i] == 6 {
                        self.members[i].iter().map(|&m| m as f32).collect()
                    } else {
                        let split = a.nodes_splits.get(i).ok_or(OnnxMlError::LengthMismatch {
                            attribute: "nodes_splits",
                            actual: a.nodes_splits.len(),
                            reference: "nodes_modes",
                            expected: a.nodes_modes.len(),
                        })?;
                        vec![*split as f32]
                    };
                    // A set membership is a chain of EQ nodes: equal goes to the true
                    // child, otherwise on to the next member, the last one to the false child.
                    let mut first = None;
                    let mut chain = Vec::with_capacity(splits.len());
                    for split in splits {
                        let id = self.push(tree, mode, feature, split, missing)?;
                        if let Some(&p) = chain.last() {
                            self.nodes.false_node_ids[p] = id;
                        }
                        first.get_or_insert(id);
                        chain.push(self.nodes.node_ids.len() - 1);
                    }
                    let last = chain.last().copied().into_iter().collect();
                    stack.push((false_child, depth + 1, last, false));
                    stack.push((true_child, depth + 1, chain, true));
                    first.unwrap_or(0)
                }
            };
            for position in parents {
                if branch {
                    self.nodes.true_node_ids[position] = id;
                } else {
                    self.nodes.false_node_ids[position] = id;
                }
            }
        }
        Ok(())
    }

    fn child(&self, i: usize, branch: bool) -> Result<Child, OnnxMlError> {
        let a = self.a;
        let (ids, leafs, attribute) = if branch {
            (&a.nodes_truenodeids, &a.nodes_trueleafs, "nodes_truenodeids")
        } else {
            (&a.nodes_falsenodeids, &a.nodes_falseleafs, "nodes_falsenodeids")
        };
        if leafs[i] != 0 {
            Ok(Child::Leaf(ids[i]))
        } else {
            Ok(Child::Node(self.node_index(attribute, i, ids[i])?))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// One tree: MEMBER(feature 0, {1, 3}) ? leaf 0 (target 0, 10) : leaf 1 (target 1, 20).
    fn member_tree() -> TreeEnsembleAttributes {
        TreeEnsembleAttributes {
            n_targets: 2,
            aggregate_function: 1,
            tree_roots: vec![0],
            nodes_featureids: vec![0],
            nodes_splits: vec![0.0],
            nodes_modes: vec![6],
            nodes_truenodeids: vec![0],
            nodes_trueleafs: vec![1],
            nodes_falsenodeids: vec![1],
            nodes_falseleafs: vec![1],
            nodes_missing_value_tracks_true: vec![1],
            leaf_targetids: vec![0, 1],
            leaf_weights: vec![10.0, 20.0],
            membership_values: vec![1.0, 3.0, f64::NAN],
            ..TreeEnsembleAttributes::default()
        }
    }

    #[test]
    fn membership_and_missing_values() {
        let model = tree_ensemble(member_tree()).unwrap();
        let out = model.predict(&[1.0, 3.0, 2.0, f32::NAN, 3.5], 5, 1).unwrap();
        assert_eq!(out, vec![10.0, 0.0, 10.0, 0.0, 0.0, 20.0, 10.0, 0.0, 0.0, 20.0]);
    }

    #[test]
    fn a_leaf_alone_is_a_tree() {
        let mut a = member_tree();
        a.tree_roots = vec![0, 1];
        a.nodes_featureids.push(0);
        a.nodes_splits.push(0.0);
        a.nodes_modes.push(0);
        a.nodes_truenodeids.push(1);
        a.nodes_trueleafs.push(1);
        a.nodes_falsenodeids.push(1);
        a.nodes_falseleafs.push(1);
        a.nodes_missing_value_tracks_true.push(0);
        let model = tree_ensemble(a).unwrap();
        assert_eq!(model.predict(&[1.0, 2.0], 2, 1).unwrap(), vec![10.0, 20.0, 0.0, 40.0]);
    }

    #[test]
    fn malformed_ensembles_are_errors() {
        let mut cycle = member_tree();
        cycle.nodes_modes = vec![0];
        cycle.nodes_trueleafs = vec![0];
        assert!(tree_ensemble(cycle).is_err());
        let mut empty = member_tree();
        empty.membership_values = vec![f64::NAN];
        assert!(tree_ensemble(empty).is_err());
        let mut mode = member_tree();
        mode.nodes_modes = vec![7];
        assert!(tree_ensemble(mode).is_err());
        let mut leaf = member_tree();
        leaf.nodes_falsenodeids = vec![5];
        assert!(tree_ensemble(leaf).is_err());
        let mut transform = member_tree();
        transform.post_transform = 5;
        assert!(tree_ensemble(transform).is_err());
        let mut root = member_tree();
        root.tree_roots = vec![3];
        assert!(tree_ensemble(root).is_err());
    }
}
