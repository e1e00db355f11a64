//! Tree ensembles copied out of onnx-ml's compiled models, with the affine map from
//! per-column leaf sums to the model's raw margin.

use palisade_onnx_ml::{
    Aggregate, Branch, PostTransform, TreeEnsembleClassifier, TreeEnsembleRegressor, TreeNode, Trees,
};

use crate::ExplainError;

/// Deepest tree TreeSHAP walks (its recursion is as deep as the tree).
pub const MAX_DEPTH: usize = 256;

/// One node of a [`TreeEnsemble`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Node {
    /// A branch, with onnx-ml's comparison; children are ensemble-wide node indices.
    Branch(Branch),
    /// A leaf; its values for the tree's sources start at `values` in
    /// [`TreeEnsemble::leaf_values`].
    Leaf { values: u32 },
}

/// One tree of a [`TreeEnsemble`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tree {
    /// Root node index.
    pub root: u32,
    /// The sources (columns of leaf sums) some leaf of this tree gives a value to, in
    /// increasing order; a leaf stores one value per entry.
    pub sources: Vec<u32>,
}

/// How one output column of the raw margin follows from the leaf sums:
/// `offset + factor * S[source]`, where `S[k]` is the sum over trees of the leaf values of
/// source `k` (or `offset` alone).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Affine {
    pub source: Option<u32>,
    pub factor: f64,
    pub offset: f64,
}

impl Affine {
    fn constant(offset: f64) -> Affine {
        Affine { source: None, factor: 0.0, offset }
    }
    fn sum(source: usize) -> Affine {
        Affine { source: Some(index(source)), factor: 1.0, offset: 0.0 }
    }
    fn plus(self, c: f64) -> Affine {
        Affine { offset: self.offset + c, ..self }
    }
    fn neg(self) -> Affine {
        Affine { source: self.source, factor: -self.factor, offset: -self.offset }
    }
    fn one_minus(self) -> Affine {
        Affine { source: self.source, factor: -self.factor, offset: 1.0 - self.offset }
    }
}

fn index(i: usize) -> u32 {
    // Invariant: indices of nodes, sources and values, all below onnx-ml's node limit (2^31).
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// A tree ensemble as TreeSHAP sees it: the trees of an onnx-ml
/// [`TreeEnsembleClassifier`] or [`TreeEnsembleRegressor`] (same nodes, same branch
/// semantics, missing-value tracking included), the leaf values per *source* (an output
/// column's weights, summed per leaf), and how the model's **raw margin** (its scores
/// before the post-transform) follows from the sums of those values over trees.
///
/// The raw margin is what shap explains for tree models: for a gradient-boosted
/// classifier, the log-odds (binary) or per-class scores (multiclass) before `LOGISTIC` or
/// `SOFTMAX`; for a random forest, the averaged probabilities (skl2onnx stores them
/// pre-divided, with no transform); for a regressor, the prediction (before `PROBIT`,
/// which only a single-target regressor applies). Base values, averaging and
/// onnxruntime's 2-class layouts (a single score written as `[-s, s]` or `[1 - p, p]`) are
/// part of the map, so margins agree with onnx-ml's own scores with the post-transform
/// set to `NONE`.
///
/// Refused ([`ExplainError::Unsupported`]): `MIN`/`MAX` aggregation (not additive), trees
/// that share subtrees, trees deeper than [`MAX_DEPTH`], and the rare layouts where
/// whether a column is scored at all depends on the row and changes the margin by a base
/// value.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeEnsemble {
    pub(crate) nodes: Vec<Node>,
    pub(crate) trees: Vec<Tree>,
    pub(crate) leaf_values: Vec<f64>,
    pub(crate) n_sources: usize,
    pub(crate) outputs: Vec<Affine>,
    /// Per node, its position in the model's `nodes_*` attributes.
    pub(crate) attribute_position: Vec<u32>,
    pub(crate) n_attribute_nodes: usize,
    pub(crate) required_features: usize,
    pub(crate) max_depth: usize,
    pub(crate) post_transform: PostTransform,
}

/// Whether a column is scored for every row, for none, or for some.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scored {
    Always,
    Never,
    Sometimes,
}

impl TreeEnsemble {
    /// The trees of a classifier; one output per class.
    pub fn from_classifier(model: &TreeEnsembleClassifier) -> Result<TreeEnsemble, ExplainError> {
        let n_classes = model.n_classes();
        let (mut ensemble, scored) = Self::copy(model.trees(), n_classes, false)?;
        let has = |c: usize| match scored.get(c).copied().unwrap_or(Scored::Never) {
            Scored::Always => Ok(true),
            Scored::Never => Ok(false),
            Scored::Sometimes => Err(ExplainError::Unsupported(format!(
                "whether class {c} is scored depends on the row (some leaves weight it, some do not)"
            ))),
        };
        let base: Vec<f64> = model.base_values().iter().map(|&b| f64::from(b)).collect();
        let outputs = if n_classes > 2 {
            // Unscored classes take their base value, or 0 without one: either way the
            // margin is base + sum, since an unscored class's sum is 0.
            (0..n_classes).map(|c| Affine::sum(c).plus(base.get(c).copied().unwrap_or(0.0))).collect()
        } else {
            Self::binary_outputs(model, &base, has)?
        };
        ensemble.outputs = outputs;
        ensemble.post_transform = model.post_transform();
        Ok(ensemble)
    }

    /// onnxruntime's 2-class rules (see `TreeEnsembleClassifier::predict_into`), applied to
    /// affine sums instead of numbers.
    fn binary_outputs(
        model: &TreeEnsembleClassifier,
        base: &[f64],
        has: impl Fn(usize) -> Result<bool, ExplainError>,
    ) -> Result<Vec<Affine>, ExplainError> {
        let (s0, s1, two_scores) = match *base {
            [b0, b1] => {
                if has(1)? {
                    let s1 = Affine::sum(0).plus(b1);
                    (s1.neg(), s1, true)
                } else {
                    (Affine::sum(0).plus(b0), Affine::constant(b1), true)
                }
            }
            [b0] => (Affine::sum(0).plus(b0), Affine::sum(1), has(1)?),
            _ => (Affine::sum(0), Affine::sum(1), has(1)?),
        };
        if two_scores {
            let v0 = if has(0)? { s0 } else { Affine::constant(0.0) };
            let v1 = if has(1)? { s1 } else { Affine::constant(0.0) };
            return Ok(vec![v0, v1]);
        }
        let v = if has(0)? { s0 } else { Affine::constant(0.0) };
        let binary = model.single_class_weights();
        Ok(match model.post_transform() {
            PostTransform::Probit => vec![v, Affine::constant(0.0)],
            _ if binary && model.weights_all_positive() => vec![v.one_minus(), v],
            _ if binary || base.is_empty() => vec![v.neg(), v],
            _ => vec![v, Affine::constant(0.0)],
        })
    }

    /// The trees of a regressor; one output per target.
    pub fn from_regressor(model: &TreeEnsembleRegressor) -> Result<TreeEnsemble, ExplainError> {
        let n_targets = model.n_targets();
        let factor = match model.aggregate() {
            Aggregate::Sum => 1.0,
            Aggregate::Average => 1.0 / model.n_trees().max(1) as f64,
            Aggregate::Min | Aggregate::Max => {
                return Err(ExplainError::Unsupported(
                    "MIN and MAX aggregation are not additive over trees".into(),
                ));
            }
        };
        let single = n_targets == 1;
        let (mut ensemble, scored) = Self::copy(model.trees(), n_targets, single)?;
        let base: Vec<f64> = model.base_values().iter().map(|&b| f64::from(b)).collect();
        let mut outputs = Vec::with_capacity(n_targets);
        for t in 0..n_targets {
            let b = base.get(t).copied().unwrap_or(0.0);
            let sum = Affine { source: Some(index(t)), factor, offset: b };
            outputs.push(match (single, scored.get(t).copied().unwrap_or(Scored::Never)) {
                (true, _) | (false, Scored::Always) => sum,
                (false, Scored::Never) => Affine::constant(0.0),
                (false, Scored::Sometimes) if b == 0.0 => sum,
                (false, Scored::Sometimes) => {
                    return Err(ExplainError::Unsupported(format!(
                        "whether target {t} is scored depends on the row, and it has a base value"
                    )));
                }
            });
        }
        ensemble.outputs = outputs;
        ensemble.post_transform = model.post_transform();
        Ok(ensemble)
    }

    /// Copies the trees; `single` takes each leaf's single-target value as source 0.
    /// Also says, per column, whether every row, no row or some rows reach a leaf with a
    /// weight for it (onnxruntime's "scored").
    fn copy(
        view: Trees<'_>,
        n_columns: usize,
        single: bool,
    ) -> Result<(TreeEnsemble, Vec<Scored>), ExplainError> {
        let n_sources = if single { 1 } else { n_columns };
        let n_nodes = view.n_nodes();
        let mut nodes = Vec::with_capacity(n_nodes);
        let mut attribute_position = Vec::with_capacity(n_nodes);
        let mut parents = vec![0u8; n_nodes];
        let mut leaf_values = Vec::new();
        let mut trees = Vec::with_capacity(view.n_trees());
        let mut max_depth = 0;
        let mut any = vec![false; n_columns];
        let mut always = vec![false; n_columns];
        for t in 0..view.n_trees() {
            let root = view.root(t).ok_or_else(|| ExplainError::Unsupported("tree without root".into()))?;
            // Sources this tree's leaves weight, found in a first walk.
            let mut used = vec![false; n_sources];
            // Per column, leaves of this tree with a weight for it.
            let mut weighted = vec![0usize; n_columns];
            let mut last = vec![0usize; n_columns];
            let mut n_leaves = 0usize;
            let mut stack = vec![(root, 0usize)];
            let mut members = Vec::new();
            while let Some((at, depth)) = stack.pop() {
                if depth > MAX_DEPTH {
                    return Err(ExplainError::Unsupported(format!("a tree is deeper than {MAX_DEPTH}")));
                }
                max_depth = max_depth.max(depth);
                members.push(at);
                match view.node(at) {
                    Some(TreeNode::Branch(b)) => {
                        for child in [b.false_child, b.true_child] {
                            let p = parents.get_mut(child as usize).ok_or_else(|| {
                                ExplainError::Unsupported("a child outside the ensemble".into())
                            })?;
                            *p = p.saturating_add(1);
                            if *p > 1 {
                                return Err(ExplainError::Unsupported(
                                    "a tree shares a subtree between two parents".into(),
                                ));
                            }
                            stack.push((child, depth + 1));
                        }
                    }
                    Some(TreeNode::Leaf { weights, .. }) => {
                        n_leaves += 1;
                        for w in weights {
                            let c = w.column as usize;
                            // Counted once per leaf: `last` holds the leaf that last counted it.
                            if let (Some(n), Some(l)) = (weighted.get_mut(c), last.get_mut(c))
                                && *l != n_leaves
                            {
                                *n += 1;
                                *l = n_leaves;
                            }
                        }
                        if single {
                            used[0] = true;
                        } else {
                            for w in weights {
                                if let Some(u) = used.get_mut(w.column as usize) {
                                    *u = true;
                                }
                            }
                        }
                    }
                    None => return Err(ExplainError::Unsupported("a node outside the ensemble".into())),
                }
            }
            let sources: Vec<u32> = (0..n_sources).filter(|&s| used[s]).map(index).collect();
            for (c, &n) in weighted.iter().enumerate() {
                if n > 0 {
                    any[c] = true;
                }
                if n > 0 && n == n_leaves {
                    always[c] = true;
                }
            }
            trees.push(Tree { root, sources });
        }
        // Nodes in ensemble order, with leaf values per tree source.
        let mut tree_of = vec![0u32; n_nodes];
        for (t, tree) in trees.iter().enumerate() {
            let mut stack = vec![tree.root];
            while let Some(at) = stack.pop() {
                tree_of[at as usize] = index(t);
                if let Some(TreeNode::Branch(b)) = view.node(at) {
                    stack.push(b.false_child);
                    stack.push(b.true_child);
                }
            }
        }
        for i in 0..n_nodes {
            let at = index(i);
            attribute_position.push(index(view.attribute_position(at).unwrap_or(0)));
            match view.node(at) {
                Some(TreeNode::Branch(b)) => nodes.push(Node::Branch(b)),
                Some(TreeNode::Leaf { weights, value }) => {
                    let start = index(leaf_values.len());
                    let sources = &trees[tree_of[i] as usize].sources;
                    if single {
                        leaf_values.push(f64::from(value));
                    } else {
                        for &s in sources {
                            let v: f64 =
                                weights.iter().filter(|w| w.column == s).map(|w| f64::from(w.value)).sum();
                            leaf_values.push(v);
                        }
                    }
                    nodes.push(Node::Leaf { values: start });
                }
                None => return Err(ExplainError::Unsupported("a node outside the ensemble".into())),
            }
        }
        let scored = (0..n_columns)
            .map(|c| match (always[c], any[c]) {
                (true, _) => Scored::Always,
                (false, false) => Scored::Never,
                (false, true) => Scored::Sometimes,
            })
            .collect();
        let ensemble = TreeEnsemble {
            nodes,
            trees,
            leaf_values,
            n_sources,
            outputs: Vec::new(),
            attribute_position,
            n_attribute_nodes: view.n_attribute_nodes(),
            required_features: view.required_features(),
            max_depth,
            post_transform: PostTransform::None,
        };
        Ok((ensemble, scored))
    }

    /// Number of output columns (classes or targets).
    pub fn n_outputs(&self) -> usize {
        self.outputs.len()
    }

    /// Number of trees.
    pub fn n_trees(&self) -> usize {
        self.trees.len()
    }

    /// Features a row must have at least.
    pub fn required_features(&self) -> usize {
        self.required_features
    }

    /// The post-transform the model applies after the raw margin this ensemble explains.
    pub fn post_transform(&self) -> PostTransform {
        self.post_transform
    }

    /// Number of entries of the model's `nodes_*` attributes (the length of stored covers).
    pub fn n_attribute_nodes(&self) -> usize {
        self.n_attribute_nodes
    }

    /// The leaf a row reaches in tree `t`.
    pub(crate) fn leaf(&self, t: usize, row: &[f32]) -> u32 {
        let mut at = self.trees[t].root;
        while let Some(Node::Branch(b)) = self.nodes.get(at as usize) {
            at = b.next(row.get(b.feature).copied().unwrap_or(f32::NAN));
        }
        at
    }

    /// Raw margins of one row, one per output, in `f64`.
    pub fn margin(&self, row: &[f32], out: &mut [f64]) -> Result<(), ExplainError> {
        if row.len() < self.required_features {
            return Err(ExplainError::TooFewFeatures { required: self.required_features, actual: row.len() });
        }
        crate::error::check_shape("margin output", out.len(), 1, self.n_outputs())?;
        let mut sums = vec![0.0f64; self.n_sources];
        for t in 0..self.trees.len() {
            self.add_leaf(t, row, &mut sums);
        }
        self.apply_outputs(&sums, out);
        Ok(())
    }

    /// Adds the values of the leaf `row` reaches in tree `t` to `sums` (per source).
    pub(crate) fn add_leaf(&self, t: usize, row: &[f32], sums: &mut [f64]) {
        let leaf = self.leaf(t, row);
        if let Some(Node::Leaf { values }) = self.nodes.get(leaf as usize) {
            for (k, &s) in self.trees[t].sources.iter().enumerate() {
                sums[s as usize] += self.leaf_values[*values as usize + k];
            }
        }
    }

    /// Maps per-source sums to outputs: `out[o] = offset + factor * sums[source]`.
    pub(crate) fn apply_outputs(&self, sums: &[f64], out: &mut [f64]) {
        for (o, a) in out.iter_mut().zip(&self.outputs) {
            *o = a.offset + a.source.map_or(0.0, |s| a.factor * sums[s as usize]);
        }
    }

    /// Maps per-source SHAP values (no offsets) to outputs.
    pub(crate) fn apply_linear(&self, sums: &[f64], out: &mut [f64]) {
        for (o, a) in out.iter_mut().zip(&self.outputs) {
            *o = a.source.map_or(0.0, |s| a.factor * sums[s as usize]);
        }
    }
}
