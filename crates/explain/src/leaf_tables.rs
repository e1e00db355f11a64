//! Per-leaf tables that turn TreeSHAP's per-row work into lookups (the idea of Yang's
//! "Fast TreeSHAP" v2, 2021).
//!
//! A leaf's contribution to feature `i` is `v · (o_i - z_i) · Σ w⁻ⁱ`, where along the leaf's
//! path each unique feature has a cover fraction `z` (fixed once the covers are known) and
//! a bit `o` (whether the row follows every split on that feature). So the contributions
//! depend on the row only through the path's `D` bits: for each of the `2^D` patterns they
//! are computed once, at load, with the same extend/unwind arithmetic as the recursive
//! walk. Per row, a leaf then costs its path's split tests and `D` multiply-adds per output.
//! Trees whose tables would pass [`MAX_TABLE_ENTRIES`] in all (deep paths) keep the
//! recursive walk.

use crate::ensemble::{Node, TreeEnsemble};

/// Most table entries (`f64`) all trees of an ensemble may precompute by default (32 MiB;
/// the wine forest of BENCHMARKS.md needs 82,404).
pub const MAX_TABLE_ENTRIES: usize = 1 << 22;

/// Longest path (in unique features) a table is built for (`2^12 × 12` entries per leaf).
const MAX_UNIQUE: usize = 12;

/// One leaf of a tabled tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TabledLeaf {
    /// The leaf's node.
    pub node: u32,
    /// Where its values start in the ensemble's leaf values.
    pub values: u32,
    /// Splits on its path: `(branch node, whether the path takes its true child, unique
    /// feature index)`, a range of [`Tables::splits`].
    pub splits: (u32, u32),
    /// Unique features of the path, a range of [`Tables::features`].
    pub features: (u32, u32),
    /// Start of its `2^D × D` table in [`Tables::table`].
    pub table: usize,
}

/// Tables of the trees that have them.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Tables {
    /// Per tree: its leaves, a range of `leaves` (`None`: walk it recursively).
    pub trees: Vec<Option<(u32, u32)>>,
    pub leaves: Vec<TabledLeaf>,
    pub splits: Vec<(u32, bool, u8)>,
    pub features: Vec<u32>,
    pub table: Vec<f64>,
    /// Per ensemble node of a tabled tree: for a branch, the bit of its feature in the
    /// path's unique features; for a leaf, its index in `leaves`.
    pub slot: Vec<u32>,
    /// Per tabled tree: its nodes, a contiguous range in preorder (parents first).
    pub node_range: Vec<(u32, u32)>,
    /// Per node but a root: its parent.
    pub parent: Vec<u32>,
    /// Per node but a root: whether it is its parent's true child.
    pub is_true_child: Vec<bool>,
    /// Per node but a root: the pattern mask that clears its parent's feature bit.
    pub leave_mask: Vec<u32>,
    /// Whether every branch is `BRANCH_LEQ` without missing-value tracking (skl2onnx's
    /// trees): the per-row sweep then compares `row[feature[n]] <= threshold[n]` for every
    /// node without looking at its kind (a leaf's answer is never read).
    pub all_leq: bool,
    /// Per node: the feature a branch reads (0 for a leaf).
    pub feature: Vec<u32>,
    /// Per node: a branch's threshold (0 for a leaf).
    pub threshold: Vec<f32>,
}

/// Builds the tables that fit `budget` entries; `split[n]` are node `n`'s child fractions.
pub(crate) fn build(ensemble: &TreeEnsemble, split: &[[f64; 2]], budget: usize) -> Tables {
    let n = ensemble.nodes.len();
    let mut tables = Tables {
        trees: vec![None; ensemble.trees.len()],
        slot: vec![0; n],
        node_range: vec![(0, 0); ensemble.trees.len()],
        parent: vec![u32::MAX; n],
        is_true_child: vec![false; n],
        leave_mask: vec![u32::MAX; n],
        ..Tables::default()
    };
    tables.all_leq = true;
    tables.feature = vec![0; n];
    tables.threshold = vec![0.0; n];
    for (i, node) in ensemble.nodes.iter().enumerate() {
        if let Node::Branch(b) = node {
            tables.all_leq &= b.mode == palisade_onnx_ml::NodeMode::BranchLeq && !b.missing_tracks_true;
            tables.feature[i] = b.feature as u32;
            tables.threshold[i] = b.threshold;
            for (child, is_true) in [(b.false_child, false), (b.true_child, true)] {
                tables.parent[child as usize] = i as u32;
                tables.is_true_child[child as usize] = is_true;
            }
        }
    }
    let mut budget = budget;
    for (t, tree) in ensemble.trees.iter().enumerate() {
        // Paths of this tree: (leaf, splits).
        let mut paths: Vec<(u32, Vec<(u32, bool)>)> = Vec::new();
        let mut stack = vec![(tree.root, Vec::new())];
        while let Some((at, path)) = stack.pop() {
            match ensemble.nodes[at as usize] {
                Node::Leaf { .. } => paths.push((at, path)),
                Node::Branch(b) => {
                    let mut f = path.clone();
                    f.push((at, false));
                    stack.push((b.false_child, f));
                    let mut tr = path;
                    tr.push((at, true));
                    stack.push((b.true_child, tr));
                }
            }
        }
        // The tree's nodes must be a contiguous preorder run from the root (onnx-ml's
        // layout), for the per-row pass that computes the patterns in one sweep.
        let root = tree.root as usize;
        let mut end = root + 1;
        while end < n && tables.parent[end] != u32::MAX && (tables.parent[end] as usize) >= root {
            end += 1;
        }
        let mut entries = 0usize;
        let mut fits = paths.len() == (end - root).div_ceil(2)
            && (root + 1..end).all(|k| (tables.parent[k] as usize) < k);
        let mut per_leaf = Vec::with_capacity(paths.len());
        for (_, path) in &paths {
            let mut unique: Vec<u32> = Vec::new();
            for &(node, _) in path {
                if let Node::Branch(b) = ensemble.nodes[node as usize] {
                    let f = b.feature as u32;
                    if !unique.contains(&f) {
                        unique.push(f);
                    }
                }
            }
            let d = unique.len();
            if d > MAX_UNIQUE {
                fits = false;
                break;
            }
            entries = entries.saturating_add((1usize << d) * d.max(1));
            per_leaf.push(unique);
        }
        if !fits || entries > budget {
            continue;
        }
        budget -= entries;
        let first_leaf = tables.leaves.len() as u32;
        for ((leaf, path), unique) in paths.iter().zip(per_leaf) {
            let d = unique.len();
            let split_start = tables.splits.len() as u32;
            let mut z = vec![1.0f64; d];
            for &(node, took_true) in path {
                if let Node::Branch(b) = ensemble.nodes[node as usize] {
                    let u = unique.iter().position(|&f| f == b.feature as u32).unwrap_or(0);
                    z[u] *= split[node as usize][usize::from(took_true)];
                    tables.splits.push((node, took_true, u as u8));
                    // The same for every path through this node: unique features are
                    // numbered in order of first appearance from the root.
                    tables.slot[node as usize] = u as u32;
                }
            }
            tables.slot[*leaf as usize] = tables.leaves.len() as u32;
            let feature_start = tables.features.len() as u32;
            tables.features.extend_from_slice(&unique);
            let table = tables.table.len();
            tables.table.resize(table + (1usize << d) * d, 0.0);
            for pattern in 0..(1usize << d) {
                let out = &mut tables.table[table + pattern * d..table + (pattern + 1) * d];
                contributions(&z, pattern, out);
            }
            let values = match ensemble.nodes[*leaf as usize] {
                Node::Leaf { values } => values,
                Node::Branch(_) => 0,
            };
            tables.leaves.push(TabledLeaf {
                node: *leaf,
                values,
                splits: (split_start, tables.splits.len() as u32),
                features: (feature_start, tables.features.len() as u32),
                table,
            });
        }
        tables.trees[t] = Some((first_leaf, tables.leaves.len() as u32));
        tables.node_range[t] = (root as u32, end as u32);
        for k in root + 1..end {
            let p = tables.parent[k] as usize;
            tables.leave_mask[k] = !(1u32 << tables.slot[p]);
        }
    }
    tables
}

/// `(o_k - z_k) · Σ w⁻ᵏ` for every unique feature `k` of a path with fractions `z` and the
/// row's bits `pattern` (bit `k` set: `o_k = 1`).
fn contributions(z: &[f64], pattern: usize, out: &mut [f64]) {
    let d = z.len();
    out.fill(0.0);
    // A feature neither the row nor any data follows zeroes every term.
    if (0..d).any(|k| pattern >> k & 1 == 0 && z[k] == 0.0) {
        return;
    }
    // Subset weights of the d features (index 0..=d), built as the walk builds them.
    let mut w = vec![0.0f64; d + 1];
    w[0] = 1.0;
    for (n, &zk) in z.iter().enumerate() {
        let o = (pattern >> n & 1) as f64;
        // Extending a set of n features to n + 1.
        let denominator = (n + 2) as f64;
        for i in (0..=n).rev() {
            let wi = w[i];
            w[i + 1] += o * wi * (i + 1) as f64 / denominator;
            w[i] = zk * wi * (n + 1 - i) as f64 / denominator;
        }
    }
    // The dummy element makes the path length d + 1.
    let len = d + 1;
    let l = len as f64;
    let shared: f64 = (0..len - 1).map(|j| w[j] / (len - 1 - j) as f64).sum();
    for k in 0..d {
        let o = (pattern >> k & 1) as f64;
        if o == z[k] {
            continue;
        }
        let unwound = if o == 0.0 {
            shared * l / z[k]
        } else {
            let mut total = 0.0;
            let mut next = w[len - 1];
            for j in (0..len - 1).rev() {
                let wj = next * l / (j + 1) as f64;
                total += wj;
                next = w[j] - wj * z[k] * (len - 1 - j) as f64 / l;
            }
            total
        };
        out[k] = unwound * (o - z[k]);
    }
}
