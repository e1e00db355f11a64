//! Validated trees compiled into flat arrays, and their traversal.
//!
//! Layout: all nodes of all trees live in one `Vec<Node>`; each tree's reachable nodes
//! are contiguous, in depth-first order with the false child right after its parent.
//! A node stores both children by index; a leaf stores itself as both children, so a
//! walk may take more steps than a path needs and stay on its leaf. That lets
//! [`Forest::leaves`] walk [`GROUP`] trees in lock step with branch-free steps, until
//! none moves (at most the deepest path among them): the walks are independent chains
//! of loads the CPU overlaps.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use crate::{LeafAttributes, NodeAttributes, NodeMode, OnnxMlError};

/// Trees walked in lock step.
const GROUP: usize = 8;
/// Bit of [`Node::feature`] set when a NaN feature goes to the true child.
const MISSING_TRUE: u32 = 1 << 31;
/// Bits of [`Node::feature`] holding the feature index.
const FEATURE_MASK: u32 = MISSING_TRUE - 1;
/// Most nodes an ensemble may have (indices are u32 with room to spare).
const MAX_NODES: usize = (u32::MAX >> 1) as usize;

/// One compiled node (16 bytes).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Node {
    /// A branch's threshold. A leaf's first weight, or its `nodes_values` entry when it
    /// has none: what single-output ensembles add, as onnxruntime does.
    value: f32,
    /// Feature index, with [`MISSING_TRUE`] or'ed in. Leaves read feature 0.
    feature: u32,
    /// `[false child, true child]`; a leaf's children are itself.
    children: [u32; 2],
}

/// Where a leaf's weights are in [`Forest::weights`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    len: u32,
}

/// One weight of a leaf: `value` adds to output column `column`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeafWeight {
    /// Output column (class index or target index).
    pub column: u32,
    /// The weight.
    pub value: f32,
}

/// Trees walked together: `len` entries of `Forest::walk_order` from `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Group {
    start: u32,
    len: u32,
    /// Steps that bring every tree of the group to its leaf.
    depth: u32,
}

/// Which traversal loop the forest needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walker {
    /// Every branch node uses `mode`; `missing` when some track NaN to the true child.
    Uniform { mode: NodeMode, missing: bool },
    /// Branch nodes use different modes: read the mode per node.
    Mixed,
}

/// The names of the leaf attributes, for error messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeafNames {
    pub tree_ids: &'static str,
    pub node_ids: &'static str,
    pub ids: &'static str,
    pub weights: &'static str,
}

/// A validated, compiled tree ensemble, without aggregation or post-transform.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Forest {
    nodes: Vec<Node>,
    /// Per node, its mode: read by the [`Walker::Mixed`] loop only.
    modes: Vec<NodeMode>,
    /// Per node; meaningful for leaves.
    spans: Vec<Span>,
    weights: Vec<LeafWeight>,
    /// When every reachable leaf weights every column exactly once: the weights again,
    /// indexed like `weights` but ordered by column, so a leaf adds a dense slice.
    dense: Option<Vec<f32>>,
    /// Root of each tree, in attribute order (the order scores are aggregated in).
    roots: Vec<u32>,
    /// Tree indices sorted by depth, so groups hold trees of similar depth.
    walk_order: Vec<u32>,
    groups: Vec<Group>,
    /// A leaf, to fill the unused lanes of the last group.
    pad_leaf: u32,
    walker: Walker,
    /// One more than the highest feature a reachable branch node reads; 0 if none.
    required_features: usize,
    /// Per node, its position in the `nodes_*` attributes.
    source: Vec<u32>,
    /// Number of nodes in the `nodes_*` attributes (reachable or not).
    n_source: usize,
}

fn check_len(
    attribute: &'static str,
    actual: usize,
    reference: &'static str,
    expected: usize,
) -> Result<(), OnnxMlError> {
    if actual == expected {
        Ok(())
    } else {
        Err(OnnxMlError::LengthMismatch { attribute, actual, reference, expected })
    }
}

/// Converts an index known to be below [`MAX_NODES`].
fn index(i: usize) -> u32 {
    // Invariant: callers only pass indices of `nodes`/`weights`, whose lengths are
    // checked against MAX_NODES, so this never saturates.
    u32::try_from(i).unwrap_or(u32::MAX)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Color {
    White,
    Gray,
    Black,
}

impl Forest {
    /// Validates the attributes and compiles the reachable part of every tree.
    ///
    /// `n_columns` is the number of output columns leaf ids must index.
    pub(crate) fn build(
        attrs: &NodeAttributes,
        leaves: &LeafAttributes,
        names: LeafNames,
        n_columns: usize,
    ) -> Result<Forest, OnnxMlError> {
        let n = attrs.tree_ids.len();
        check_len("nodes_nodeids", attrs.node_ids.len(), "nodes_treeids", n)?;
        check_len("nodes_featureids", attrs.feature_ids.len(), "nodes_treeids", n)?;
        check_len("nodes_values", attrs.values.len(), "nodes_treeids", n)?;
        check_len("nodes_modes", attrs.modes.len(), "nodes_treeids", n)?;
        check_len("nodes_truenodeids", attrs.true_node_ids.len(), "nodes_treeids", n)?;
        check_len("nodes_falsenodeids", attrs.false_node_ids.len(), "nodes_treeids", n)?;
        let m = leaves.ids.len();
        check_len(names.tree_ids, leaves.tree_ids.len(), names.ids, m)?;
        check_len(names.node_ids, leaves.node_ids.len(), names.ids, m)?;
        check_len(names.weights, leaves.weights.len(), names.ids, m)?;
        if n > MAX_NODES || m > MAX_NODES {
            return Err(OnnxMlError::InvalidAttribute {
                attribute: "nodes_treeids",
                reason: format!("at most {MAX_NODES} nodes and weights are supported"),
            });
        }

        // Trees: contiguous runs of nodes_treeids; the first node of a run is the root.
        let mut roots_old: Vec<usize> = Vec::new();
        let mut tree_index: HashMap<i64, usize> = HashMap::new();
        for (i, &tree_id) in attrs.tree_ids.iter().enumerate() {
            if i > 0 && attrs.tree_ids[i - 1] == tree_id {
                continue;
            }
            match tree_index.entry(tree_id) {
                Entry::Occupied(_) => {
                    return Err(OnnxMlError::NonContiguousTree { index: i, tree_id });
                }
                Entry::Vacant(slot) => {
                    slot.insert(roots_old.len());
                }
            }
            roots_old.push(i);
        }

        // Node lookup by (tree id, node id).
        let mut by_id: HashMap<(i64, i64), usize> = HashMap::with_capacity(n);
        for i in 0..n {
            let (tree_id, node_id) = (attrs.tree_ids[i], attrs.node_ids[i]);
            if by_id.insert((tree_id, node_id), i).is_some() {
                return Err(OnnxMlError::DuplicateNode { index: i, tree_id, node_id });
            }
        }

        // Children of branch nodes, as attribute positions: [false, true].
        let mut children_old: Vec<[usize; 2]> = vec![[0, 0]; n];
        for (i, children) in children_old.iter_mut().enumerate() {
            if attrs.modes[i] == NodeMode::Leaf {
                continue;
            }
            let feature = attrs.feature_ids[i];
            if !(0..=i64::from(FEATURE_MASK)).contains(&feature) {
                return Err(OnnxMlError::InvalidEntry {
                    attribute: "nodes_featureids",
                    index: i,
                    value: feature,
                    reason: "a branch node's feature must be in [0, 2^31 - 1)",
                });
            }
            let tree_id = attrs.tree_ids[i];
            let lookup = |attribute: &'static str, node_id: i64| {
                by_id.get(&(tree_id, node_id)).copied().ok_or(OnnxMlError::UnknownNode {
                    attribute,
                    index: i,
                    tree_id,
                    node_id,
                })
            };
            *children = [
                lookup("nodes_falsenodeids", attrs.false_node_ids[i])?,
                lookup("nodes_truenodeids", attrs.true_node_ids[i])?,
            ];
        }

        // Leaf weights, grouped by node in attribute order.
        let mut weighted: Vec<(usize, usize)> = Vec::with_capacity(m);
        for j in 0..m {
            let (tree_id, node_id) = (leaves.tree_ids[j], leaves.node_ids[j]);
            let Some(&i) = by_id.get(&(tree_id, node_id)) else {
                return Err(OnnxMlError::UnknownNode {
                    attribute: names.node_ids,
                    index: j,
                    tree_id,
                    node_id,
                });
            };
            let column = leaves.ids[j];
            if column < 0 || column >= i64::try_from(n_columns).unwrap_or(i64::MAX) {
                return Err(OnnxMlError::InvalidEntry {
                    attribute: names.ids,
                    index: j,
                    value: column,
                    reason: "must index an output column (a class or a target)",
                });
            }
            // Weights on branch nodes are ignored, as onnxruntime does.
            if attrs.modes[i] == NodeMode::Leaf {
                weighted.push((i, j));
            }
        }
        weighted.sort_by_key(|&(i, _)| i);

        // Cycles and depths, by an iterative depth-first search from every root.
        let mut color = vec![Color::White; n];
        let mut depth = vec![0u32; n];
        let mut stack: Vec<(usize, bool)> = Vec::new();
        for &root in &roots_old {
            stack.push((root, false));
            while let Some((v, exiting)) = stack.pop() {
                let is_leaf = attrs.modes[v] == NodeMode::Leaf;
                if exiting {
                    color[v] = Color::Black;
                    if !is_leaf {
                        let [f, t] = children_old[v];
                        depth[v] = 1 + depth[f].max(depth[t]);
                    }
                    continue;
                }
                if color[v] != Color::White {
                    continue;
                }
                color[v] = Color::Gray;
                stack.push((v, true));
                if is_leaf {
                    continue;
                }
                for child in children_old[v] {
                    match color[child] {
                        Color::Gray => {
                            return Err(OnnxMlError::Cycle {
                                tree_id: attrs.tree_ids[v],
                                node_id: attrs.node_ids[child],
                            });
                        }
                        Color::White => stack.push((child, false)),
                        Color::Black => {}
                    }
                }
            }
        }

        // Compiled positions: preorder per tree, false child first.
        let mut position: Vec<Option<u32>> = vec![None; n];
        let mut order: Vec<usize> = Vec::new();
        let mut roots = Vec::with_capacity(roots_old.len());
        for &root in &roots_old {
            let mut pending = vec![root];
            while let Some(v) = pending.pop() {
                if position[v].is_some() {
                    continue;
                }
                position[v] = Some(index(order.len()));
                order.push(v);
                if attrs.modes[v] != NodeMode::Leaf {
                    let [f, t] = children_old[v];
                    pending.push(t);
                    pending.push(f);
                }
            }
            roots.push(position[root].unwrap_or(0));
        }

        let mut nodes = Vec::with_capacity(order.len());
        let mut modes = Vec::with_capacity(order.len());
        let mut spans = vec![Span::default(); order.len()];
        let mut weights = Vec::new();
        let mut branch_modes: Option<NodeMode> = None;
        let mut mixed = false;
        let mut missing = false;
        let mut required_features = 0usize;
        let mut pad_leaf = 0u32;
        for (new, &v) in order.iter().enumerate() {
            let me = index(new);
            let mode = attrs.modes[v];
            modes.push(mode);
            if mode == NodeMode::Leaf {
                pad_leaf = me;
                let start = weights.len();
                let at = weighted.partition_point(|&(i, _)| i < v);
                for &(_, j) in weighted[at..].iter().take_while(|&&(i, _)| i == v) {
                    weights.push(LeafWeight {
                        column: index(usize::try_from(leaves.ids[j]).unwrap_or(0)),
                        value: leaves.weights[j],
                    });
                }
                let value = weights.get(start).map_or(attrs.values[v], |w| w.value);
                spans[new] = Span { start: index(start), len: index(weights.len() - start) };
                nodes.push(Node { value, feature: 0, children: [me, me] });
                continue;
            }
            let feature = u32::try_from(attrs.feature_ids[v]).unwrap_or(0);
            required_features = required_features.max(feature as usize + 1);
            let tracks_missing = attrs.missing_value_tracks_true.get(v).copied().unwrap_or(false);
            missing |= tracks_missing;
            match branch_modes {
                None => branch_modes = Some(mode),
                Some(first) if first != mode => mixed = true,
                Some(_) => {}
            }
            let [f, t] = children_old[v];
            nodes.push(Node {
                value: attrs.values[v],
                feature: feature | if tracks_missing { MISSING_TRUE } else { 0 },
                children: [position[f].unwrap_or(me), position[t].unwrap_or(me)],
            });
        }
        let dense = Self::dense_weights(&modes, &spans, &weights, n_columns);
        let walker = match (mixed, branch_modes) {
            (false, Some(mode)) => Walker::Uniform { mode, missing },
            (false, None) => Walker::Uniform { mode: NodeMode::BranchLeq, missing: false },
            (true, _) => Walker::Mixed,
        };

        let tree_depth: Vec<u32> = roots_old.iter().map(|&r| depth[r]).collect();
        let mut walk_order: Vec<u32> = (0..roots.len()).map(index).collect();
        walk_order.sort_by_key(|&t| tree_depth[t as usize]);
        let groups = walk_order
            .chunks(GROUP)
            .enumerate()
            .map(|(g, trees)| Group {
                start: index(g * GROUP),
                len: index(trees.len()),
                depth: trees.iter().map(|&t| tree_depth[t as usize]).max().unwrap_or(0),
            })
            .collect();

        Ok(Forest {
            nodes,
            modes,
            spans,
            weights,
            dense,
            roots,
            walk_order,
            groups,
            pad_leaf,
            walker,
            required_features,
            source: order.iter().map(|&v| index(v)).collect(),
            n_source: n,
        })
    }

    /// The dense layout of the weights, if every leaf weights each column exactly once.
    fn dense_weights(
        modes: &[NodeMode],
        spans: &[Span],
        weights: &[LeafWeight],
        n_columns: usize,
    ) -> Option<Vec<f32>> {
        // Every leaf weights each column once, so the weights outnumber the columns; both
        // buffers are then as long as an attribute of the model file.
        if n_columns > weights.len() {
            return None;
        }
        let mut dense = crate::filled(weights.len(), 0.0f32).ok()?;
        let mut seen = crate::filled(n_columns, false).ok()?;
        for (mode, span) in modes.iter().zip(spans) {
            if *mode != NodeMode::Leaf {
                continue;
            }
            if span.len as usize != n_columns {
                return None;
            }
            seen.fill(false);
            let start = span.start as usize;
            for w in weights.get(start..start + n_columns)? {
                let column = w.column as usize;
                if std::mem::replace(seen.get_mut(column)?, true) {
                    return None;
                }
                *dense.get_mut(start + column)? = w.value;
            }
        }
        Some(dense)
    }

    /// A leaf's weights by column, when the dense layout applies (see
    /// [`Forest::has_dense_weights`]); empty otherwise.
    #[inline]
    pub(crate) fn leaf_dense(&self, leaf: u32, n_columns: usize) -> &[f32] {
        let start = self.spans.get(leaf as usize).map_or(0, |s| s.start as usize);
        self.dense.as_deref().and_then(|d| d.get(start..start + n_columns)).unwrap_or(&[])
    }

    /// Whether every leaf weights every column exactly once, so scores can be
    /// accumulated densely (same additions in the same order) with [`Forest::leaf_dense`].
    pub(crate) fn has_dense_weights(&self) -> bool {
        self.dense.is_some()
    }

    /// A read-only view of the trees, for algorithms that walk them themselves.
    pub(crate) fn view(&self) -> Trees<'_> {
        Trees { forest: self }
    }

    /// Number of trees.
    pub(crate) fn n_trees(&self) -> usize {
        self.roots.len()
    }

    /// Features a row must have: one more than the highest feature a branch reads.
    pub(crate) fn required_features(&self) -> usize {
        self.required_features
    }

    /// The single-output value of a leaf (its first weight, see [`Node::value`]).
    #[inline]
    pub(crate) fn leaf_value(&self, leaf: u32) -> f32 {
        self.nodes.get(leaf as usize).map_or(0.0, |n| n.value)
    }

    /// The weights of a leaf, in attribute order.
    #[inline]
    pub(crate) fn leaf_weights(&self, leaf: u32) -> &[LeafWeight] {
        let span = self.spans.get(leaf as usize).copied().unwrap_or_default();
        let start = span.start as usize;
        self.weights.get(start..start + span.len as usize).unwrap_or(&[])
    }

    /// Writes, for each tree in order, the leaf `row` reaches. `leaves.len()` must be
    /// [`Forest::n_trees`] and `row.len()` at least [`Forest::required_features`], as
    /// the callers check (a shorter `leaves` panics; a narrower row would read clamped
    /// feature indices, never out of bounds).
    pub(crate) fn leaves(&self, row: &[f32], leaves: &mut [u32]) {
        match self.walker {
            Walker::Uniform { mode, missing: false } => match mode {
                NodeMode::BranchLeq | NodeMode::Leaf => self.walk::<Leq, false>(row, leaves),
                NodeMode::BranchLt => self.walk::<Lt, false>(row, leaves),
                NodeMode::BranchGte => self.walk::<Gte, false>(row, leaves),
                NodeMode::BranchGt => self.walk::<Gt, false>(row, leaves),
                NodeMode::BranchEq => self.walk::<Eq, false>(row, leaves),
                NodeMode::BranchNeq => self.walk::<Neq, false>(row, leaves),
            },
            Walker::Uniform { mode, missing: true } => match mode {
                NodeMode::BranchLeq | NodeMode::Leaf => self.walk::<Leq, true>(row, leaves),
                NodeMode::BranchLt => self.walk::<Lt, true>(row, leaves),
                NodeMode::BranchGte => self.walk::<Gte, true>(row, leaves),
                NodeMode::BranchGt => self.walk::<Gt, true>(row, leaves),
                NodeMode::BranchEq => self.walk::<Eq, true>(row, leaves),
                NodeMode::BranchNeq => self.walk::<Neq, true>(row, leaves),
            },
            Walker::Mixed => self.walk::<PerNode, true>(row, leaves),
        }
    }

    #[inline(always)]
    fn walk<C: Compare, const MISSING: bool>(&self, row: &[f32], leaves: &mut [u32]) {
        let nodes = self.nodes.as_slice();
        let modes = self.modes.as_slice();
        // Clamping indices that are always in range (checked at construction and by the
        // callers) lets the compiler drop the bounds checks, which cost registers here.
        let Some(last_node) = nodes.len().checked_sub(1) else { return };
        let Some(last_feature) = row.len().checked_sub(1) else {
            // No feature: no reachable branch (checked by callers), every root is a leaf.
            for (leaf, &root) in leaves.iter_mut().zip(&self.roots) {
                *leaf = root;
            }
            return;
        };
        for group in &self.groups {
            let start = group.start as usize;
            let trees = &self.walk_order[start..start + group.len as usize];
            let mut at = [self.pad_leaf; GROUP];
            for (lane, &tree) in at.iter_mut().zip(trees) {
                *lane = self.roots[tree as usize];
            }
            for _ in 0..group.depth {
                let mut moved = false;
                for lane in at.iter_mut() {
                    let node = &nodes[(*lane as usize).min(last_node)];
                    // Without missing-value tracking no node has the flag bit set.
                    let feature = if MISSING { node.feature & FEATURE_MASK } else { node.feature };
                    let x = row[(feature as usize).min(last_feature)];
                    let mut holds = C::holds(x, node.value, modes, *lane);
                    if MISSING {
                        holds |= (node.feature & MISSING_TRUE != 0) & x.is_nan();
                    }
                    let next = node.children[usize::from(holds)];
                    moved |= next != *lane;
                    *lane = next;
                }
                if !moved {
                    break;
                }
            }
            for (&lane, &tree) in at.iter().zip(trees) {
                leaves[tree as usize] = lane;
            }
        }
    }
}

/// A read-only view of a compiled ensemble's trees, for algorithms that walk the trees
/// themselves (TreeSHAP, node statistics), with the same branch semantics as evaluation.
///
/// Nodes are numbered `0..n_nodes()` across all trees; a tree's nodes are contiguous and
/// its root comes first. Only nodes a root reaches are present. A node may be reached
/// from more than one parent only if the model's tree shares a subtree.
#[derive(Debug, Clone, Copy)]
pub struct Trees<'a> {
    forest: &'a Forest,
}

/// One node of [`Trees`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TreeNode<'a> {
    /// A branch node.
    Branch(Branch),
    /// A leaf.
    Leaf {
        /// The leaf's weights, in attribute order: `(output column, weight)`.
        weights: &'a [LeafWeight],
        /// What a single-target regressor adds for this leaf: its first weight, or its
        /// `nodes_values` entry when it has none.
        value: f32,
    },
}

/// A branch node of [`Trees`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Branch {
    /// The feature it reads.
    pub feature: usize,
    /// The threshold.
    pub threshold: f32,
    /// The comparison.
    pub mode: NodeMode,
    /// Whether a NaN feature goes to the true child.
    pub missing_tracks_true: bool,
    /// The node taken when the comparison does not hold.
    pub false_child: u32,
    /// The node taken when the comparison holds.
    pub true_child: u32,
}

impl Branch {
    /// Whether `x` goes to the true child, exactly as evaluation decides.
    #[inline]
    pub fn goes_true(&self, x: f32) -> bool {
        let holds = match self.mode {
            NodeMode::BranchLeq => x <= self.threshold,
            NodeMode::BranchLt => x < self.threshold,
            NodeMode::BranchGte => x >= self.threshold,
            NodeMode::BranchGt => x > self.threshold,
            NodeMode::BranchEq => x == self.threshold,
            NodeMode::BranchNeq => x != self.threshold,
            NodeMode::Leaf => false,
        };
        holds || (self.missing_tracks_true && x.is_nan())
    }

    /// The child `x` goes to.
    #[inline]
    pub fn next(&self, x: f32) -> u32 {
        if self.goes_true(x) { self.true_child } else { self.false_child }
    }
}

impl<'a> Trees<'a> {
    /// Number of trees, in attribute order.
    pub fn n_trees(&self) -> usize {
        self.forest.roots.len()
    }

    /// Number of nodes of all trees.
    pub fn n_nodes(&self) -> usize {
        self.forest.nodes.len()
    }

    /// The root node of tree `tree`.
    pub fn root(&self, tree: usize) -> Option<u32> {
        self.forest.roots.get(tree).copied()
    }

    /// Node `index`.
    pub fn node(&self, index: u32) -> Option<TreeNode<'a>> {
        let i = index as usize;
        let node = self.forest.nodes.get(i)?;
        let mode = *self.forest.modes.get(i)?;
        if mode == NodeMode::Leaf {
            return Some(TreeNode::Leaf { weights: self.forest.leaf_weights(index), value: node.value });
        }
        Some(TreeNode::Branch(Branch {
            feature: (node.feature & FEATURE_MASK) as usize,
            threshold: node.value,
            mode,
            missing_tracks_true: node.feature & MISSING_TRUE != 0,
            false_child: node.children[0],
            true_child: node.children[1],
        }))
    }

    /// The position of node `index` in the model's `nodes_*` attributes.
    pub fn attribute_position(&self, index: u32) -> Option<usize> {
        self.forest.source.get(index as usize).map(|&p| p as usize)
    }

    /// Number of entries of the model's `nodes_*` attributes, reachable or not.
    pub fn n_attribute_nodes(&self) -> usize {
        self.forest.n_source
    }

    /// Features a row must have at least: one more than the highest feature read.
    pub fn required_features(&self) -> usize {
        self.forest.required_features
    }
}

/// A branch comparison, monomorphized per mode.
trait Compare {
    /// Whether `x` goes to the true child of node `at` with threshold `t`.
    fn holds(x: f32, t: f32, modes: &[NodeMode], at: u32) -> bool;
}

struct Leq;
struct Lt;
struct Gte;
struct Gt;
struct Eq;
struct Neq;
/// Reads the mode of each node.
struct PerNode;

impl Compare for Leq {
    #[inline(always)]
    fn holds(x: f32, t: f32, _: &[NodeMode], _: u32) -> bool {
        x <= t
    }
}
impl Compare for Lt {
    #[inline(always)]
    fn holds(x: f32, t: f32, _: &[NodeMode], _: u32) -> bool {
        x < t
    }
}
impl Compare for Gte {
    #[inline(always)]
    fn holds(x: f32, t: f32, _: &[NodeMode], _: u32) -> bool {
        x >= t
    }
}
impl Compare for Gt {
    #[inline(always)]
    fn holds(x: f32, t: f32, _: &[NodeMode], _: u32) -> bool {
        x > t
    }
}
impl Compare for Eq {
    #[inline(always)]
    fn holds(x: f32, t: f32, _: &[NodeMode], _: u32) -> bool {
        x == t
    }
}
impl Compare for Neq {
    #[inline(always)]
    fn holds(x: f32, t: f32, _: &[NodeMode], _: u32) -> bool {
        x != t
    }
}
impl Compare for PerNode {
    #[inline(always)]
    fn holds(x: f32, t: f32, modes: &[NodeMode], at: u32) -> bool {
        match modes[at as usize] {
            NodeMode::BranchLeq => x <= t,
            NodeMode::BranchLt => x < t,
            NodeMode::BranchGte => x >= t,
            NodeMode::BranchGt => x > t,
            NodeMode::BranchEq => x == t,
            NodeMode::BranchNeq => x != t,
            // A leaf's children are itself: either answer stays put.
            NodeMode::Leaf => false,
        }
    }
}
