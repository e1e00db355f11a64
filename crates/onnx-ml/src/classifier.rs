//! `TreeEnsembleClassifier`.

use crate::forest::{Forest, LeafNames};
use crate::{ClassLabels, ClassifierAttributes, OnnxMlError, PostTransform, transform};

const NAMES: LeafNames = LeafNames {
    tree_ids: "class_treeids",
    node_ids: "class_nodeids",
    ids: "class_ids",
    weights: "class_weights",
};

/// A compiled `TreeEnsembleClassifier` (ai.onnx.ml opsets 1 and 3).
///
/// Built once from the node's attributes, it is immutable and `Send + Sync`; evaluate
/// it from any number of threads. It reproduces onnxruntime's results, including the
/// ways onnxruntime departs from a plain "sum, add base values, transform, argmax":
///
/// * a class no leaf of a row gave a weight to is *unscored*: it outputs 0 (before the
///   transform) and is never the label, even with a base value in a 2-class model;
/// * with more than two classes, base values (one per class) score every class;
/// * with two classes, the label is class 1 when its score (or, when it has none,
///   class 0's) is above 0, or above 0.5 when only one class id carries weights and
///   all weights are non-negative; and when only class 0 carries weights, its score is
///   taken as class 1's and the row is written `[1 - p, p]` (`[-s, s]`, or the
///   logistic of both, for signed weights), see [`TreeEnsembleClassifier::predict_into`].
#[derive(Debug, Clone, PartialEq)]
pub struct TreeEnsembleClassifier {
    forest: Forest,
    labels: ClassLabels,
    base_values: Vec<f32>,
    post_transform: PostTransform,
    /// Two classes and a single distinct class id among the weights.
    binary_case: bool,
    /// No class weight is negative.
    weights_all_positive: bool,
}

/// Labels and scores of a batch, as returned by [`TreeEnsembleClassifier::predict`].
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// Per row, the index of its label in [`TreeEnsembleClassifier::class_labels`].
    pub labels: Vec<usize>,
    /// Row-major `[n_rows, n_classes]` scores, columns in class label order.
    pub scores: Vec<f32>,
}

impl TreeEnsembleClassifier {
    /// Validates the attributes and compiles the trees.
    pub fn new(attributes: ClassifierAttributes) -> Result<Self, OnnxMlError> {
        let ClassifierAttributes { nodes, leaves, class_labels, base_values, post_transform } = attributes;
        let n_classes = crate::alloc::width("classlabels", class_labels.len())?;
        if n_classes < 2 {
            return Err(OnnxMlError::InvalidAttribute {
                attribute: match class_labels {
                    ClassLabels::Int64(_) => "classlabels_int64s",
                    ClassLabels::Strings(_) => "classlabels_strings",
                },
                reason: format!("a classifier needs at least 2 classes, got {n_classes}"),
            });
        }
        let base_ok = if n_classes == 2 {
            base_values.len() <= 2
        } else {
            base_values.is_empty() || base_values.len() == n_classes
        };
        if !base_ok {
            return Err(OnnxMlError::InvalidAttribute {
                attribute: "base_values",
                reason: format!(
                    "{} values for {n_classes} classes; expected none or one per class{}",
                    base_values.len(),
                    if n_classes == 2 { " (or exactly one)" } else { "" }
                ),
            });
        }
        let forest = Forest::build(&nodes, &leaves, NAMES, n_classes)?;
        let first_id = leaves.ids.first();
        let binary_case = n_classes == 2 && leaves.ids.iter().all(|id| Some(id) == first_id);
        let binary_case = binary_case && first_id.is_some();
        let weights_all_positive = !leaves.weights.iter().any(|&w| w < 0.0);
        Ok(TreeEnsembleClassifier {
            forest,
            labels: class_labels,
            base_values,
            post_transform,
            binary_case,
            weights_all_positive,
        })
    }

    /// Number of classes: the width of a score row.
    pub fn n_classes(&self) -> usize {
        self.labels.len()
    }

    /// The class labels; [`Classification::labels`] index into them.
    pub fn class_labels(&self) -> &ClassLabels {
        &self.labels
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

    /// The base values, as given (empty, one, or one per class).
    pub fn base_values(&self) -> &[f32] {
        &self.base_values
    }

    /// Whether this is a 2-class model whose weights all name one class id: onnxruntime
    /// then writes a single score `v` as two columns (see
    /// [`TreeEnsembleClassifier::predict_into`]).
    pub fn single_class_weights(&self) -> bool {
        self.binary_case
    }

    /// Whether no class weight is negative.
    pub fn weights_all_positive(&self) -> bool {
        self.weights_all_positive
    }

    /// The post-transform applied to the scores.
    pub fn post_transform(&self) -> PostTransform {
        self.post_transform
    }

    /// Classifies `n_rows` rows of `n_features` row-major features, allocating the
    /// outputs. See [`TreeEnsembleClassifier::predict_into`].
    pub fn predict(
        &self,
        features: &[f32],
        n_rows: usize,
        n_features: usize,
    ) -> Result<Classification, OnnxMlError> {
        let mut labels = crate::filled(n_rows, 0)?;
        let mut scores = crate::filled(crate::alloc::product(n_rows, self.n_classes())?, 0.0)?;
        self.predict_into(features, n_rows, n_features, &mut labels, &mut scores)?;
        Ok(Classification { labels, scores })
    }

    /// Classifies `n_rows` rows of `n_features` row-major features into caller buffers:
    /// `labels` (`n_rows` class indices) and `scores` (`n_rows * n_classes`).
    ///
    /// In a 2-class model whose row ends with a single score (class 1 unscored, see the
    /// type's documentation) and no rule writes the second column, onnxruntime leaves
    /// it uninitialized; Palisade writes 0. This happens with `PROBIT`, or with one base
    /// value when both classes carry weights.
    ///
    /// Fails if the buffers have the wrong sizes, if a row is narrower than
    /// [`TreeEnsembleClassifier::required_features`], or if a row of a model with more
    /// than two classes and no base values reaches only leaves without weights.
    pub fn predict_into(
        &self,
        features: &[f32],
        n_rows: usize,
        n_features: usize,
        labels: &mut [usize],
        scores: &mut [f32],
    ) -> Result<(), OnnxMlError> {
        let n_classes = self.n_classes();
        crate::check_input(features, n_rows, n_features, self.forest.required_features())?;
        crate::check_output("labels", labels.len(), n_rows)?;
        crate::check_output("scores", scores.len(), n_rows.saturating_mul(n_classes))?;
        if n_rows == 0 {
            return Ok(());
        }
        let (mut leaves_stack, mut leaves_heap) = ([0u32; crate::STACK_TREES], Vec::new());
        let leaves = crate::scratch(&mut leaves_stack, &mut leaves_heap, self.forest.n_trees())?;
        let (mut sums_stack, mut sums_heap) = ([0.0f32; crate::STACK_COLUMNS], Vec::new());
        let sums = crate::scratch(&mut sums_stack, &mut sums_heap, n_classes)?;
        let (mut has_stack, mut has_heap) = ([false; crate::STACK_COLUMNS], Vec::new());
        let has = crate::scratch(&mut has_stack, &mut has_heap, n_classes)?;
        let outputs = scores.chunks_exact_mut(n_classes).zip(labels.iter_mut());
        for (row_index, (out, label)) in outputs.enumerate() {
            let row = &features[row_index * n_features..(row_index + 1) * n_features];
            self.forest.leaves(row, leaves);
            crate::accumulate_sums(&self.forest, leaves, sums, has);
            *label = if n_classes == 2 {
                self.finish_binary(sums, has, out)
            } else {
                self.finish_multiclass(sums, has, out).ok_or(OnnxMlError::NoScore { row: row_index })?
            };
        }
        Ok(())
    }

    /// Base values, label and scores of a row of a model with more than two classes.
    fn finish_multiclass(&self, sums: &mut [f32], has: &mut [bool], out: &mut [f32]) -> Option<usize> {
        for ((s, h), &base) in sums.iter_mut().zip(has.iter_mut()).zip(&self.base_values) {
            if *h {
                *s += base;
            } else {
                *s = base;
                *h = true;
            }
        }
        let mut best: Option<(usize, f32)> = None;
        for (c, (&s, &h)) in sums.iter().zip(has.iter()).enumerate() {
            if h && best.is_none_or(|(_, max)| s > max) {
                best = Some((c, s));
            }
        }
        for ((o, &s), &h) in out.iter_mut().zip(sums.iter()).zip(has.iter()) {
            *o = if h { s } else { 0.0 };
        }
        transform::apply(self.post_transform, out);
        best.map(|(c, _)| c)
    }

    /// Base values, label and scores of a row of a 2-class model, following
    /// onnxruntime's binary special cases step by step.
    fn finish_binary(&self, sums: &mut [f32], has: &mut [bool], out: &mut [f32]) -> usize {
        // How the single remaining score is expanded to two columns; -1: it is not.
        let mut expand: i8 = -1;
        let mut two_scores = true;
        match self.base_values.as_slice() {
            [b0, b1] => {
                if has[1] {
                    // onnxruntime adds class 0's sum, not class 1's, and mirrors it.
                    sums[1] = b1 + sums[0];
                    sums[0] = -sums[1];
                } else {
                    sums[1] += b1;
                    sums[0] += b0;
                }
            }
            [b0] => {
                sums[0] += b0;
                two_scores = has[1];
            }
            _ => {
                expand = 3;
                two_scores = has[1];
            }
        }
        let positive = if two_scores && has[1] {
            sums[1]
        } else if has[0] {
            sums[0]
        } else {
            0.0
        };
        let label = if self.binary_case {
            let (threshold, if_positive, if_negative) =
                if self.weights_all_positive { (0.5, 0, 1) } else { (0.0, 2, 3) };
            if positive > threshold {
                expand = if_positive;
                1
            } else {
                expand = if_negative;
                0
            }
        } else {
            usize::from(positive > 0.0)
        };
        let value = |c: usize| if has[c] { sums[c] } else { 0.0 };
        if two_scores {
            out[0] = value(0);
            out[1] = value(1);
            transform::apply(self.post_transform, out);
            return label;
        }
        let v = value(0);
        let negated = if has[0] { -sums[0] } else { 0.0 };
        match (self.post_transform, expand) {
            (PostTransform::Probit, _) => {
                out[0] = transform::probit(v);
                out[1] = 0.0;
            }
            (_, 0 | 1) => {
                out[0] = 1.0 - v;
                out[1] = v;
            }
            (PostTransform::Logistic, 2 | 3) => {
                out[0] = transform::logistic(negated);
                out[1] = transform::logistic(v);
            }
            (_, 2 | 3) => {
                out[0] = negated;
                out[1] = v;
            }
            _ => {
                out[0] = v;
                out[1] = 0.0;
            }
        }
        label
    }
}
