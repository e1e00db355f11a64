//! `TreeEnsembleRegressor`.

use crate::forest::{Forest, LeafNames};
use crate::{Aggregate, OnnxMlError, PostTransform, RegressorAttributes, transform};

const NAMES: LeafNames = LeafNames {
    tree_ids: "target_treeids",
    node_ids: "target_nodeids",
    ids: "target_ids",
    weights: "target_weights",
};

/// A compiled `TreeEnsembleRegressor` (ai.onnx.ml opsets 1 and 3).
///
/// Built once from the node's attributes, it is immutable and `Send + Sync`. It
/// reproduces onnxruntime's results:
///
/// * with one target, each tree contributes its leaf's *first* weight (or, for a leaf
///   without weights, its `nodes_values` entry), the base value is added after
///   aggregation, and only `PROBIT` is applied (other transforms are ignored);
/// * with several targets, a target no leaf of a row weighted outputs 0 before the
///   transform, whatever its base value.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeEnsembleRegressor {
    forest: Forest,
    n_targets: usize,
    base_values: Vec<f32>,
    post_transform: PostTransform,
    aggregate: Aggregate,
}

impl TreeEnsembleRegressor {
    /// Validates the attributes and compiles the trees.
    pub fn new(attributes: RegressorAttributes) -> Result<Self, OnnxMlError> {
        let RegressorAttributes { nodes, leaves, n_targets, base_values, post_transform, aggregate_function } =
            attributes;
        let n_targets = match usize::try_from(n_targets) {
            Ok(n) if n > 0 => crate::alloc::width("n_targets", n)?,
            _ => {
                return Err(OnnxMlError::InvalidAttribute {
                    attribute: "n_targets",
                    reason: format!("must be positive, got {n_targets}"),
                });
            }
        };
        if !base_values.is_empty() && base_values.len() != n_targets {
            return Err(OnnxMlError::InvalidAttribute {
                attribute: "base_values",
                reason: format!(
                    "{} values for {n_targets} targets; expected none or one per target",
                    base_values.len()
                ),
            });
        }
        let forest = Forest::build(&nodes, &leaves, NAMES, n_targets)?;
        Ok(TreeEnsembleRegressor {
            forest,
            n_targets,
            base_values,
            post_transform,
            aggregate: aggregate_function,
        })
    }

    /// Number of targets: the width of an output row.
    pub fn n_targets(&self) -> usize {
        self.n_targets
    }

    /// Number of trees.
    pub fn n_trees(&self) -> usize {
        self.forest.n_trees()
    }

    /// Features a row must have at least: one more than the highest feature read.
    pub fn required_features(&self) -> usize {
        self.forest.required_features()
    }

    /// The trees, for algorithms that walk them (TreeSHAP).
    pub fn trees(&self) -> crate::Trees<'_> {
        self.forest.view()
    }

    /// The base values, as given (empty or one per target).
    pub fn base_values(&self) -> &[f32] {
        &self.base_values
    }

    /// The post-transform applied to the values.
    pub fn post_transform(&self) -> PostTransform {
        self.post_transform
    }

    /// The aggregate function.
    pub fn aggregate(&self) -> Aggregate {
        self.aggregate
    }

    /// Predicts `n_rows` rows of `n_features` row-major features, allocating the
    /// row-major `[n_rows, n_targets]` output.
    pub fn predict(
        &self,
        features: &[f32],
        n_rows: usize,
        n_features: usize,
    ) -> Result<Vec<f32>, OnnxMlError> {
        let mut values = crate::filled(crate::alloc::product(n_rows, self.n_targets)?, 0.0)?;
        self.predict_into(features, n_rows, n_features, &mut values)?;
        Ok(values)
    }

    /// Predicts `n_rows` rows of `n_features` row-major features into `values`
    /// (`n_rows * n_targets`, row-major).
    ///
    /// Fails if the buffers have the wrong sizes or a row is narrower than
    /// [`TreeEnsembleRegressor::required_features`].
    pub fn predict_into(
        &self,
        features: &[f32],
        n_rows: usize,
        n_features: usize,
        values: &mut [f32],
    ) -> Result<(), OnnxMlError> {
        crate::check_input(features, n_rows, n_features, self.forest.required_features())?;
        crate::check_output("values", values.len(), n_rows.saturating_mul(self.n_targets))?;
        if n_rows == 0 {
            return Ok(());
        }
        let (mut leaves_stack, mut leaves_heap) = ([0u32; crate::STACK_TREES], Vec::new());
        let leaves = crate::scratch(&mut leaves_stack, &mut leaves_heap, self.forest.n_trees())?;
        let row = |r: usize| &features[r * n_features..(r + 1) * n_features];
        if self.n_targets == 1 {
            for (r, out) in values.iter_mut().enumerate() {
                let row = row(r);
                self.forest.leaves(row, leaves);
                *out = self.single_target(leaves);
            }
            return Ok(());
        }
        let (mut sums_stack, mut sums_heap) = ([0.0f32; crate::STACK_COLUMNS], Vec::new());
        let sums = crate::scratch(&mut sums_stack, &mut sums_heap, self.n_targets)?;
        let (mut has_stack, mut has_heap) = ([false; crate::STACK_COLUMNS], Vec::new());
        let has = crate::scratch(&mut has_stack, &mut has_heap, self.n_targets)?;
        for (r, out) in values.chunks_exact_mut(self.n_targets).enumerate() {
            self.forest.leaves(row(r), leaves);
            if matches!(self.aggregate, Aggregate::Sum | Aggregate::Average) {
                crate::accumulate_sums(&self.forest, leaves, sums, has);
                self.finish_targets(sums, has, out);
                continue;
            }
            sums.fill(0.0);
            has.fill(false);
            for &leaf in leaves.iter() {
                for w in self.forest.leaf_weights(leaf) {
                    let t = w.column as usize;
                    sums[t] = match self.aggregate {
                        Aggregate::Min if !has[t] || w.value < sums[t] => w.value,
                        Aggregate::Max if !has[t] || w.value > sums[t] => w.value,
                        _ => sums[t],
                    };
                    has[t] = true;
                }
            }
            self.finish_targets(sums, has, out);
        }
        Ok(())
    }

    /// One output: aggregate each tree's leaf value, add the base value, maybe probit.
    fn single_target(&self, leaves: &[u32]) -> f32 {
        let origin = self.base_values.first().copied().unwrap_or(0.0);
        let mut values = leaves.iter().map(|&leaf| self.forest.leaf_value(leaf));
        let score = match self.aggregate {
            Aggregate::Sum => values.fold(0.0f32, |acc, v| acc + v) + origin,
            Aggregate::Average => values.fold(0.0f32, |acc, v| acc + v) / leaves.len() as f32 + origin,
            Aggregate::Min | Aggregate::Max => {
                let min = self.aggregate == Aggregate::Min;
                let first = values.next();
                let best = first.map(|first| {
                    values.fold(first, |best, v| {
                        let better = if min { v < best } else { v > best };
                        if better { v } else { best }
                    })
                });
                best.map_or(origin, |best| best + origin)
            }
        };
        if self.post_transform == PostTransform::Probit { transform::probit(score) } else { score }
    }

    /// Several outputs: base values, then unscored targets at 0, then the transform.
    fn finish_targets(&self, sums: &[f32], has: &[bool], out: &mut [f32]) {
        let n_trees = self.forest.n_trees() as f32;
        for (t, (o, &s)) in out.iter_mut().zip(sums).enumerate() {
            let base = self.base_values.get(t).copied();
            *o = if !has[t] {
                0.0
            } else {
                match (self.aggregate, base) {
                    (Aggregate::Sum, Some(b)) => s + b,
                    (Aggregate::Sum, None) => s,
                    (Aggregate::Average, Some(b)) => s / n_trees + b,
                    (Aggregate::Average, None) => s / n_trees,
                    (Aggregate::Min | Aggregate::Max, b) => b.unwrap_or(0.0) + s,
                }
            };
        }
        transform::apply(self.post_transform, out);
    }
}
