//! Exact path-dependent TreeSHAP (Lundberg, Erion and Lee, "Consistent Individualized
//! Feature Attribution for Tree Ensembles", 2018, Algorithm 2), over [`TreeEnsemble`]s.
//!
//! # The game
//!
//! For a row `x` and a set `S` of features, a tree's value is the expected leaf value when
//! the features in `S` follow `x` and every other split sends the row down both sides in
//! proportion to the *covers* (how much data reached each child). SHAP values are the
//! Shapley values of that game; they sum, with the expected value (the cover-weighted mean
//! leaf value), to the tree's output for `x`. An ensemble's values are the sums of its
//! trees', mapped to the raw margin by [`TreeEnsemble`]'s affine map.
//!
//! # Covers
//!
//! ONNX stores no covers. [`covers_from_background`] routes background rows through every
//! tree with the model's own branch rules (modes, thresholds, missing-value tracking) and
//! counts the rows per node: the expected value is then the mean raw margin over the
//! background. A node no background row reaches splits its weight evenly between its
//! children (there is no data to say otherwise); only rows that reach such a node through
//! features of the coalition see the difference.
//!
//! # Algorithm
//!
//! Per tree, a depth-first walk keeps the path of *unique* features from the root, each
//! with `z` (the fraction of cover that follows the path at its splits) and `o` (whether
//! `x` follows the path there), and the weights `w[k]` of the path's subsets of each size
//! `k`: `w[k] = e_k · k!(n-k)!/(n+1)!` where `e_k` sums, over the subsets of `k` path
//! features, the products of `o` over the subset and `z` over the rest. Extending the path
//! by a feature updates the weights in O(n) (`w'[k] = z·w[k]·(n+1-k)/(n+2) + o·w[k-1]·k/(n+2)`);
//! at a leaf with value `v`, feature `i`'s SHAP value gains `v·(o_i - z_i)·Σ w⁻ⁱ`, where the
//! weights without `i` come from inverting that recurrence (from the top when `o_i ≠ 0`,
//! else from the bottom). A feature met twice on a path is first removed and re-added with
//! the product of its fractions. Subtrees that neither `x` nor any data reaches are
//! skipped. Cost per row: O(leaves · D²) with D the path's unique features (≤ the number of
//! features). All arithmetic is `f64`.

use palisade_onnx_ml::PostTransform;

use crate::ExplainError;
use crate::ensemble::{Node, TreeEnsemble};
use crate::error::{MAX_ELEMENTS, check_shape, filled, product};

/// Background rows routed through the trees: how many reached each node.
///
/// Stored in the model's attribute order (one entry per `nodes_*` attribute, 0 for nodes
/// no root reaches), so they stay valid for the same ONNX file whatever the compiled
/// layout; this is what `palisade build` writes into the bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct Covers {
    counts: Vec<f64>,
}

impl Covers {
    /// Covers as stored (in attribute order), checked against the ensemble: one
    /// non-negative finite count per attribute node, every root with the same positive
    /// count, and every branch's count equal to its children's sum (within 1e-9).
    pub fn from_counts(ensemble: &TreeEnsemble, counts: Vec<f64>) -> Result<Covers, ExplainError> {
        if counts.len() != ensemble.n_attribute_nodes {
            return Err(ExplainError::InvalidCovers(format!(
                "{} counts for {} nodes",
                counts.len(),
                ensemble.n_attribute_nodes
            )));
        }
        if let Some(i) = counts.iter().position(|c| !c.is_finite() || *c < 0.0) {
            return Err(ExplainError::InvalidCovers(format!("count {i} is negative or not finite")));
        }
        let covers = Covers { counts };
        let get = |n: u32| covers.node(ensemble, n);
        let total = ensemble.trees.first().map_or(0.0, |t| get(t.root));
        if total <= 0.0 {
            return Err(ExplainError::InvalidCovers("the roots have no count".into()));
        }
        for tree in &ensemble.trees {
            if get(tree.root) != total {
                return Err(ExplainError::InvalidCovers("trees' roots have different counts".into()));
            }
        }
        for (i, node) in ensemble.nodes.iter().enumerate() {
            if let Node::Branch(b) = node {
                let (c, f, t) = (get(crate::ensemble_index(i)), get(b.false_child), get(b.true_child));
                if (c - f - t).abs() > 1e-9 * c.max(1.0) {
                    return Err(ExplainError::InvalidCovers(format!(
                        "a branch's count {c} is not its children's {f} + {t}"
                    )));
                }
            }
        }
        Ok(covers)
    }

    /// The counts in attribute order, to store.
    pub fn counts(&self) -> &[f64] {
        &self.counts
    }

    /// The count of ensemble node `n`.
    fn node(&self, ensemble: &TreeEnsemble, n: u32) -> f64 {
        let position = ensemble.attribute_position.get(n as usize).copied().unwrap_or(0) as usize;
        self.counts.get(position).copied().unwrap_or(0.0)
    }
}

/// Refuses rows without features (even for a model that reads none).
fn no_features(n_features: usize) -> Result<(), ExplainError> {
    if n_features == 0 {
        return Err(ExplainError::InvalidArgument {
            what: "features",
            reason: "rows have no features".into(),
        });
    }
    Ok(())
}

/// Counts, per node, the background rows (`n_rows` rows of `n_features`, row-major) that
/// reach it, with the model's own branch rules. Rows may hold NaN (missing values go where
/// the model sends them).
pub fn covers_from_background(
    ensemble: &TreeEnsemble,
    rows: &[f32],
    n_rows: usize,
    n_features: usize,
) -> Result<Covers, ExplainError> {
    check_shape("background", rows.len(), n_rows, n_features)?;
    no_features(n_features)?;
    if n_rows == 0 {
        return Err(ExplainError::TooFewRows { what: "background", min: 1, actual: 0 });
    }
    if n_features < ensemble.required_features {
        return Err(ExplainError::TooFewFeatures {
            required: ensemble.required_features,
            actual: n_features,
        });
    }
    let mut by_node = filled("covers", ensemble.nodes.len(), MAX_ELEMENTS, 0.0f64)?;
    for row in rows.chunks_exact(n_features) {
        for tree in &ensemble.trees {
            let mut at = tree.root;
            loop {
                by_node[at as usize] += 1.0;
                match ensemble.nodes.get(at as usize) {
                    Some(Node::Branch(b)) => at = b.next(row[b.feature]),
                    _ => break,
                }
            }
        }
    }
    let mut counts = filled("covers", ensemble.n_attribute_nodes, MAX_ELEMENTS, 0.0f64)?;
    for (n, &c) in by_node.iter().enumerate() {
        if let Some(slot) = counts.get_mut(ensemble.attribute_position[n] as usize) {
            *slot = c;
        }
    }
    Ok(Covers { counts })
}

/// SHAP values of a batch: `shap_values` is `[output][row][feature]` (Alibi's list of one
/// rows × features matrix per output), `expected_value` one per output, and `margins`
/// `[row][output]` the raw margins explained (`expected + Σ shap = margin`).
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// Rows explained.
    pub n_rows: usize,
    /// Outputs (classes or targets).
    pub n_outputs: usize,
    /// Features per row.
    pub n_features: usize,
    /// `[output][row][feature]`.
    pub shap_values: Vec<f64>,
    /// One per output.
    pub expected_value: Vec<f64>,
    /// `[row][output]`: what the values explain (for TreeSHAP, the raw margin).
    pub margins: Vec<f64>,
}

impl Explanation {
    /// The SHAP value of `feature` for `row` and `output`.
    pub fn value(&self, output: usize, row: usize, feature: usize) -> Option<f64> {
        if row >= self.n_rows || feature >= self.n_features {
            return None;
        }
        self.shap_values.get((output * self.n_rows + row) * self.n_features + feature).copied()
    }
}

/// An ensemble with its covers, ready to explain rows (immutable, `Send + Sync`).
#[derive(Debug, Clone, PartialEq)]
pub struct TreeShap {
    ensemble: TreeEnsemble,
    /// Per node: `[false child, true child]` fractions of its cover (branches only).
    split: Vec<[f64; 2]>,
    /// Per source: the cover-weighted mean of the sum of leaf values.
    expected_sources: Vec<f64>,
    expected: Vec<f64>,
    /// Precomputed per-leaf contributions, for the trees that fit the budget.
    tables: crate::leaf_tables::Tables,
}

/// Marks the path's dummy first element.
const NO_FEATURE: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, Default)]
struct Element {
    feature: u32,
    z: f64,
    o: f64,
    w: f64,
}

impl TreeShap {
    /// Prepares `ensemble` with `covers` (from [`covers_from_background`] or stored), with
    /// per-leaf tables for the trees that fit [`MAX_TABLE_ENTRIES`](crate::MAX_TABLE_ENTRIES).
    pub fn new(ensemble: TreeEnsemble, covers: &Covers) -> Result<TreeShap, ExplainError> {
        Self::with_table_budget(ensemble, covers, crate::MAX_TABLE_ENTRIES)
    }

    /// [`TreeShap::new`] with at most `max_table_entries` precomputed `f64` values (0: every
    /// tree is walked recursively per row; same values, more time per row, less memory).
    /// Trees are tabled in order while they fit; a tree with a leaf deeper than 12 unique
    /// features is always walked.
    pub fn with_table_budget(
        ensemble: TreeEnsemble,
        covers: &Covers,
        max_table_entries: usize,
    ) -> Result<TreeShap, ExplainError> {
        if covers.counts.len() != ensemble.n_attribute_nodes {
            return Err(ExplainError::InvalidCovers(format!(
                "{} counts for {} nodes",
                covers.counts.len(),
                ensemble.n_attribute_nodes
            )));
        }
        let mut split = vec![[0.5, 0.5]; ensemble.nodes.len()];
        for (i, node) in ensemble.nodes.iter().enumerate() {
            if let Node::Branch(b) = node {
                let c = covers.node(&ensemble, crate::ensemble_index(i));
                if c > 0.0 {
                    split[i] =
                        [covers.node(&ensemble, b.false_child) / c, covers.node(&ensemble, b.true_child) / c];
                }
            }
        }
        let mut expected_sources = vec![0.0f64; ensemble.n_sources];
        for tree in &ensemble.trees {
            let mut stack = vec![(tree.root, 1.0f64)];
            while let Some((at, p)) = stack.pop() {
                match ensemble.nodes[at as usize] {
                    Node::Branch(b) => {
                        let [f, t] = split[at as usize];
                        stack.push((b.false_child, p * f));
                        stack.push((b.true_child, p * t));
                    }
                    Node::Leaf { values } => {
                        for (k, &s) in tree.sources.iter().enumerate() {
                            expected_sources[s as usize] += p * ensemble.leaf_values[values as usize + k];
                        }
                    }
                }
            }
        }
        let mut expected = vec![0.0; ensemble.n_outputs()];
        ensemble.apply_outputs(&expected_sources, &mut expected);
        let tables = crate::leaf_tables::build(&ensemble, &split, max_table_entries);
        Ok(TreeShap { ensemble, split, expected_sources, expected, tables })
    }

    /// The ensemble explained.
    pub fn ensemble(&self) -> &TreeEnsemble {
        &self.ensemble
    }

    /// The expected raw margin per output (the mean over the background).
    pub fn expected_value(&self) -> &[f64] {
        &self.expected
    }

    /// The post-transform the model applies after the explained raw margin.
    pub fn post_transform(&self) -> PostTransform {
        self.ensemble.post_transform
    }

    /// Explains `n_rows` rows of `n_features` (row-major `f32`, NaN for missing values).
    pub fn explain(
        &self,
        rows: &[f32],
        n_rows: usize,
        n_features: usize,
    ) -> Result<Explanation, ExplainError> {
        check_shape("rows", rows.len(), n_rows, n_features)?;
        no_features(n_features)?;
        if n_features < self.ensemble.required_features {
            return Err(ExplainError::TooFewFeatures {
                required: self.ensemble.required_features,
                actual: n_features,
            });
        }
        let n_outputs = self.ensemble.n_outputs();
        let n_sources = self.ensemble.n_sources;
        let total = product(product(n_rows, n_outputs), n_features);
        let mut shap_values = filled("SHAP values", total, MAX_ELEMENTS, 0.0f64)?;
        let mut margins = filled("margins", product(n_rows, n_outputs), MAX_ELEMENTS, 0.0f64)?;
        let mut phi = filled("SHAP values", product(n_features, n_sources), MAX_ELEMENTS, 0.0f64)?;
        // One path segment per depth; a path holds at most every feature once plus the dummy.
        let width = self.ensemble.max_depth.min(n_features) + 2;
        let walked = self.tables.trees.iter().any(Option::is_none);
        let mut path =
            vec![Element::default(); if walked { width * (self.ensemble.max_depth + 2) } else { 0 }];
        let inv: Vec<f64> = (0..width + 2).map(|k| if k == 0 { 0.0 } else { 1.0 / k as f64 }).collect();
        let mut mapped = vec![0.0f64; n_outputs];
        let mut column = vec![0.0f64; n_sources];
        let tabled = self.tables.trees.iter().any(Option::is_some);
        let n_scratch = if tabled { self.ensemble.nodes.len() } else { 0 };
        let mut scratch = Scratch { patterns: vec![0; n_scratch], goes_true: vec![false; n_scratch] };
        let mut sums = vec![0.0f64; n_sources];
        for (r, row) in rows.chunks_exact(n_features).enumerate() {
            phi.fill(0.0);
            sums.fill(0.0);
            for tree in 0..self.ensemble.trees.len() {
                match self.tables.trees[tree] {
                    Some(_) => self.tabled_tree(tree, row, &mut scratch, &mut phi, &mut sums),
                    None => {
                        self.ensemble.add_leaf(tree, row, &mut sums);
                        let mut walk =
                            Walk { shap: self, tree, row, path: &mut path, width, phi: &mut phi, inv: &inv };
                        walk.recurse(self.ensemble.trees[tree].root, 0, 0, 1.0, 1.0, NO_FEATURE);
                    }
                }
            }
            for f in 0..n_features {
                column.copy_from_slice(&phi[f * n_sources..(f + 1) * n_sources]);
                self.ensemble.apply_linear(&column, &mut mapped);
                for (o, &v) in mapped.iter().enumerate() {
                    shap_values[(o * n_rows + r) * n_features + f] = v;
                }
            }
            self.ensemble.apply_outputs(&sums, &mut margins[r * n_outputs..(r + 1) * n_outputs]);
        }
        Ok(Explanation {
            n_rows,
            n_outputs,
            n_features,
            shap_values,
            expected_value: self.expected.clone(),
            margins,
        })
    }

    /// Adds one tabled tree's contributions for `row`: one sweep over the tree's nodes in
    /// preorder gives each node its pattern (its parent's, with the parent's feature bit
    /// cleared when the row goes the other way), then each leaf looks its pattern up. Also
    /// adds the leaf the row reaches (the one whose pattern is full) to `sums`.
    fn tabled_tree(
        &self,
        tree: usize,
        row: &[f32],
        scratch: &mut Scratch,
        phi: &mut [f64],
        sums: &mut [f64],
    ) {
        let t = &self.tables;
        let ensemble = &self.ensemble;
        let sources = &ensemble.trees[tree].sources;
        let n_sources = ensemble.n_sources;
        let (start, end) = t.node_range[tree];
        let (start, end) = (start as usize, end as usize);
        let patterns = &mut scratch.patterns[start..end];
        let goes = &mut scratch.goes_true[start..end];
        if t.all_leq {
            let features = &t.feature[start..end];
            let thresholds = &t.threshold[start..end];
            for ((g, &f), &threshold) in goes.iter_mut().zip(features).zip(thresholds) {
                *g = row[f as usize] <= threshold;
            }
        } else {
            for (g, node) in goes.iter_mut().zip(&ensemble.nodes[start..end]) {
                if let Node::Branch(b) = node {
                    *g = b.goes_true(row[b.feature]);
                }
            }
        }
        patterns[0] = u32::MAX;
        let parents = &t.parent[start + 1..end];
        let sides = &t.is_true_child[start + 1..end];
        let masks = &t.leave_mask[start + 1..end];
        for (k, ((&p, &side), &mask)) in parents.iter().zip(sides).zip(masks).enumerate() {
            let p = p as usize - start;
            patterns[k + 1] = patterns[p] & if goes[p] == side { u32::MAX } else { mask };
        }
        let Some((first, last)) = t.trees[tree] else { return };
        for leaf in &t.leaves[first as usize..last as usize] {
            let features = &t.features[leaf.features.0 as usize..leaf.features.1 as usize];
            let d = features.len();
            let full = (1usize << d) - 1;
            let pattern = patterns[leaf.node as usize - start] as usize & full;
            let values = &ensemble.leaf_values[leaf.values as usize..leaf.values as usize + sources.len()];
            if pattern == full {
                for (&s, &v) in sources.iter().zip(values) {
                    sums[s as usize] += v;
                }
            }
            let entries = &t.table[leaf.table + pattern * d..leaf.table + (pattern + 1) * d];
            // Zero entries (features the row treats as the data does) add nothing; adding
            // them anyway is cheaper than the branch.
            if let ([s], [v]) = (sources.as_slice(), values) {
                let s = *s as usize;
                for (&c, &feature) in entries.iter().zip(features) {
                    phi[feature as usize * n_sources + s] += c * v;
                }
            } else if sources.len() == n_sources {
                // Every source: a contiguous run of `phi`, unrolled for small class counts.
                match n_sources {
                    2 => add_dense::<2>(entries, features, values, phi),
                    3 => add_dense::<3>(entries, features, values, phi),
                    4 => add_dense::<4>(entries, features, values, phi),
                    _ => {
                        for (&c, &feature) in entries.iter().zip(features) {
                            let base = feature as usize * n_sources;
                            for (p, &v) in phi[base..base + n_sources].iter_mut().zip(values) {
                                *p += c * v;
                            }
                        }
                    }
                }
            } else {
                for (&c, &feature) in entries.iter().zip(features) {
                    let base = feature as usize * n_sources;
                    for (&s, &v) in sources.iter().zip(values) {
                        phi[base + s as usize] += c * v;
                    }
                }
            }
        }
    }

    /// The expected value of each source (the leaf sums, before the output map).
    pub fn expected_sources(&self) -> &[f64] {
        &self.expected_sources
    }
}

/// `phi[feature][..N] += c × values` for each entry `c` of a leaf's pattern row, with
/// `N` sources laid out contiguously per feature.
#[inline(always)]
fn add_dense<const N: usize>(entries: &[f64], features: &[u32], values: &[f64], phi: &mut [f64]) {
    let Ok(values) = <&[f64; N]>::try_from(values) else { return };
    for (&c, &feature) in entries.iter().zip(features) {
        let base = feature as usize * N;
        if let Some(Ok(dst)) = phi.get_mut(base..base + N).map(<&mut [f64; N]>::try_from) {
            for k in 0..N {
                dst[k] += c * values[k];
            }
        }
    }
}

/// Per-row buffers of the tabled trees, indexed by node.
struct Scratch {
    patterns: Vec<u32>,
    goes_true: Vec<bool>,
}

/// One tree's walk for one row.
struct Walk<'a> {
    shap: &'a TreeShap,
    tree: usize,
    row: &'a [f32],
    path: &'a mut [Element],
    width: usize,
    /// `[feature][source]`.
    phi: &'a mut [f64],
    /// `inv[k] = 1 / k` (`inv[0]` unused).
    inv: &'a [f64],
}

impl Walk<'_> {
    /// Visits `node` at `depth`, extending the parent's path (of `len` elements) by
    /// `feature` with fractions `z` (cover) and `o` (the row).
    fn recurse(&mut self, node: u32, depth: usize, len: usize, z: f64, o: f64, feature: u32) {
        let width = self.width;
        let start = depth * width;
        if depth > 0 {
            self.path.copy_within(start - width..start - width + len, start);
        }
        let path = &mut self.path[start..start + width];
        extend(path, len, z, o, feature, self.inv);
        let len = len + 1;
        let ensemble = &self.shap.ensemble;
        match ensemble.nodes[node as usize] {
            Node::Leaf { values } => {
                let sources = &ensemble.trees[self.tree].sources;
                let n_sources = ensemble.n_sources;
                let leaf = &ensemble.leaf_values[values as usize..values as usize + sources.len()];
                let inv = &self.inv;
                // For elements the row does not follow (o = 0) the unwound sum is
                // Σ_j w_j / (len-1-j) times len / z: the sum is shared.
                let shared: f64 =
                    path[..len - 1].iter().enumerate().map(|(j, e)| e.w * inv[len - 1 - j]).sum();
                let l = len as f64;
                for i in 1..len {
                    let e = path[i];
                    if e.o == e.z {
                        continue;
                    }
                    let unwound =
                        if e.o == 0.0 { shared * l / e.z } else { unwound_sum_followed(path, len, e.z, inv) };
                    let scale = unwound * (e.o - e.z);
                    let base = e.feature as usize * n_sources;
                    for (&s, &v) in sources.iter().zip(leaf) {
                        self.phi[base + s as usize] += scale * v;
                    }
                }
            }
            Node::Branch(b) => {
                let x = self.row[b.feature];
                let goes_true = b.goes_true(x);
                let [f_false, f_true] = self.shap.split[node as usize];
                let (hot, cold, p_hot, p_cold) = if goes_true {
                    (b.true_child, b.false_child, f_true, f_false)
                } else {
                    (b.false_child, b.true_child, f_false, f_true)
                };
                let feature = b.feature as u32;
                let (mut iz, mut io, mut len) = (1.0, 1.0, len);
                if let Some(k) = (1..len).find(|&k| path[k].feature == feature) {
                    iz = path[k].z;
                    io = path[k].o;
                    unwind(path, len, k, self.inv);
                    len -= 1;
                }
                if iz * p_hot != 0.0 || io != 0.0 {
                    self.recurse(hot, depth + 1, len, iz * p_hot, io, feature);
                }
                if iz * p_cold != 0.0 {
                    self.recurse(cold, depth + 1, len, iz * p_cold, 0.0, feature);
                }
            }
        }
    }
}

/// Adds an element to a path of `len` elements and updates the subset weights
/// (`inv[k] = 1 / k`).
#[inline]
fn extend(path: &mut [Element], len: usize, z: f64, o: f64, feature: u32, inv: &[f64]) {
    path[len] = Element { feature, z, o, w: if len == 0 { 1.0 } else { 0.0 } };
    let scale = inv[len + 1];
    for i in (0..len).rev() {
        let w = path[i].w * scale;
        path[i + 1].w += o * w * (i + 1) as f64;
        path[i].w = z * w * (len - i) as f64;
    }
}

/// Removes element `i` from a path of `len` elements, restoring the weights it had before
/// that element was added.
fn unwind(path: &mut [Element], len: usize, i: usize, inv: &[f64]) {
    let Element { z, o, .. } = path[i];
    let l = len as f64;
    if o != 0.0 {
        // `o` is 1 here: the product of the row's 0/1 choices.
        let mut next = path[len - 1].w;
        for j in (0..len - 1).rev() {
            let w = next * l * inv[j + 1] / o;
            next = path[j].w - w * z * (len - 1 - j) as f64 * inv[len];
            path[j].w = w;
        }
    } else {
        let lz = l / z;
        for (j, e) in path[..len - 1].iter_mut().enumerate() {
            e.w *= lz * inv[len - 1 - j];
        }
    }
    for j in i..len - 1 {
        path[j].feature = path[j + 1].feature;
        path[j].z = path[j + 1].z;
        path[j].o = path[j + 1].o;
    }
}

/// The sum of the weights [`unwind`] would leave after removing an element the row
/// follows (`o = 1`) with cover fraction `z`, without changing the path.
#[inline]
fn unwound_sum_followed(path: &[Element], len: usize, z: f64, inv: &[f64]) -> f64 {
    let l = len as f64;
    let zl = z * inv[len];
    let mut total = 0.0;
    let mut next = path[len - 1].w;
    for j in (0..len - 1).rev() {
        let w = next * l * inv[j + 1];
        total += w;
        next = path[j].w - w * zl * (len - 1 - j) as f64;
    }
    total
}

/// The sum of the weights [`unwind`] would leave after removing element `i`, computed
/// from the definition (tests compare the shortcuts with it).
#[cfg(test)]
fn unwound_sum(path: &[Element], len: usize, i: usize) -> f64 {
    let mut copy = path.to_vec();
    let inv: Vec<f64> = (0..len + 2).map(|k| if k == 0 { 0.0 } else { 1.0 / k as f64 }).collect();
    unwind(&mut copy, len, i, &inv);
    copy[..len - 1].iter().map(|e| e.w).sum()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Extending then unwinding restores the weights; the leaf shortcuts equal the sums.
    #[test]
    fn unwinding_inverts_extending_and_shortcuts_agree() {
        let inv: Vec<f64> = (0..20).map(|k| if k == 0 { 0.0 } else { 1.0 / k as f64 }).collect();
        let mut path = vec![Element::default(); 16];
        extend(&mut path, 0, 1.0, 1.0, NO_FEATURE, &inv);
        let steps = [(0.3, 1.0), (0.6, 0.0), (0.25, 1.0), (0.9, 0.0), (0.5, 1.0), (0.125, 0.0)];
        for (k, &(z, o)) in steps.iter().enumerate() {
            extend(&mut path, k + 1, z, o, k as u32, &inv);
        }
        let len = steps.len() + 1;
        let shared: f64 = path[..len - 1].iter().enumerate().map(|(j, e)| e.w * inv[len - 1 - j]).sum();
        for i in 1..len {
            let e = path[i];
            let fast = if e.o == 0.0 {
                shared * len as f64 / e.z
            } else {
                unwound_sum_followed(&path, len, e.z, &inv)
            };
            let slow = unwound_sum(&path, len, i);
            assert!((fast - slow).abs() < 1e-12 * slow.abs().max(1.0), "{i}: {fast} vs {slow}");
            // Re-extending what was unwound gives the path back.
            let mut copy = path.clone();
            unwind(&mut copy, len, i, &inv);
            extend(&mut copy, len - 1, e.z, e.o, e.feature, &inv);
            let mut sorted_w: Vec<f64> = copy[..len].iter().map(|e| e.w).collect();
            let mut want: Vec<f64> = path[..len].iter().map(|e| e.w).collect();
            sorted_w.sort_by(f64::total_cmp);
            want.sort_by(f64::total_cmp);
            for (a, b) in sorted_w.iter().zip(&want) {
                assert!((a - b).abs() < 1e-12);
            }
        }
    }
}
