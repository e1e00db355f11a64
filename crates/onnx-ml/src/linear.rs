//! `LinearClassifier` and `LinearRegressor`.

use crate::{
    ClassLabels, Classification, LinearClassifierAttributes, LinearRegressorAttributes, OnnxMlError,
    PostTransform, mlas, transform,
};

/// The affine map both operators share: `[n_targets, n_features]` coefficients, row-major,
/// and optional intercepts, evaluated in onnxruntime's summation order.
#[derive(Debug, Clone, PartialEq)]
struct Affine {
    coefficients: Vec<f32>,
    intercepts: Option<Vec<f32>>,
    n_targets: usize,
    n_features: usize,
    /// MLAS's K block for batches.
    stride_k: usize,
}

impl Affine {
    /// Splits `coefficients` into `n_targets` rows (`n_targets` is at least 1).
    fn new(
        coefficients: Vec<f32>,
        intercepts: Option<Vec<f32>>,
        n_targets: usize,
    ) -> Result<Self, OnnxMlError> {
        if coefficients.is_empty() || !coefficients.len().is_multiple_of(n_targets) {
            return Err(OnnxMlError::InvalidAttribute {
                attribute: "coefficients",
                reason: format!(
                    "{} values cannot be {n_targets} rows of the same non-zero length",
                    coefficients.len()
                ),
            });
        }
        let n_features = coefficients.len() / n_targets;
        Ok(Affine {
            coefficients,
            intercepts,
            n_targets,
            n_features,
            stride_k: mlas::stride_k(n_targets, n_features),
        })
    }

    /// Checks `n_rows` rows of `n_features` features in `features`.
    fn check_input(&self, features: &[f32], n_rows: usize, n_features: usize) -> Result<(), OnnxMlError> {
        crate::check_input(features, n_rows, n_features, 0)?;
        if n_rows > 0 && n_features != self.n_features {
            return Err(OnnxMlError::FeatureCount { expected: self.n_features, actual: n_features });
        }
        Ok(())
    }

    /// Scores of `n_rows` rows into `out` (`[n_rows, n_targets]`), in onnxruntime's
    /// order, which differs for a batch of one row.
    fn scores(&self, features: &[f32], n_rows: usize, out: &mut [f32]) {
        let intercepts = self.intercepts.as_deref();
        if n_rows == 1 {
            mlas::scores_one_row(features, &self.coefficients, intercepts, out);
        } else {
            mlas::scores_in_batch(
                features,
                self.n_features,
                &self.coefficients,
                intercepts,
                self.stride_k,
                out,
            );
        }
    }
}

/// A validated `LinearClassifier` (ai.onnx.ml opset 1).
///
/// Immutable and `Send + Sync`. It reproduces onnxruntime's results:
///
/// * scores are `X * coefficients^T + intercepts` in f32, summed in the order of
///   onnxruntime's SGEMM (MLAS, x86-64 with AVX2 and FMA3) — which differs between a
///   batch of one row and larger batches, so a row's scores can differ in the last bit
///   depending on the batch it comes in, in onnxruntime as here;
/// * the label is chosen on the raw scores, before the post-transform: the first
///   maximum (NaN never wins over the first score);
/// * with one intercept (a binary classifier, exactly two labels), the label is the
///   second one when the raw score `s` is above 0, and the score row is `[1 - p, p]`
///   with `p` the logistic of `s` (computed with `exp`) under `LOGISTIC`, `p = s` under
///   `NONE`, `SOFTMAX` and `SOFTMAX_ZERO` (onnxruntime applies neither softmax), and
///   `[probit(s), 0]` under `PROBIT` (where onnxruntime leaves the second column
///   uninitialized, and from the second row on writes the probits of the whole batch
///   in row-major order: a bug Palisade does not reproduce);
/// * with two or more intercepts, `LOGISTIC` is MLAS's rational approximation of the
///   logistic function, not `1 / (1 + exp(-x))`.
///
/// `multi_class` is ignored, as in onnxruntime.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearClassifier {
    affine: Affine,
    labels: ClassLabels,
    post_transform: PostTransform,
}

impl LinearClassifier {
    /// Validates the attributes.
    ///
    /// There must be at least one intercept; the coefficients must form one row of the
    /// same non-zero length per intercept; a single intercept needs exactly two labels,
    /// several need one label each. onnxruntime also accepts more labels than
    /// intercepts (never choosing the extra ones); Palisade refuses them.
    pub fn new(attributes: LinearClassifierAttributes) -> Result<Self, OnnxMlError> {
        let LinearClassifierAttributes { coefficients, intercepts, class_labels, post_transform } =
            attributes;
        let n_targets = intercepts.len();
        if n_targets == 0 {
            return Err(OnnxMlError::InvalidAttribute {
                attribute: "intercepts",
                reason: "a classifier needs at least one intercept".to_owned(),
            });
        }
        let expected_labels = if n_targets == 1 { 2 } else { n_targets };
        if class_labels.len() != expected_labels {
            return Err(OnnxMlError::InvalidAttribute {
                attribute: match class_labels {
                    ClassLabels::Int64(_) => "classlabels_ints",
                    ClassLabels::Strings(_) => "classlabels_strings",
                },
                reason: format!(
                    "{} labels for {n_targets} intercepts; expected {expected_labels}{}",
                    class_labels.len(),
                    if n_targets == 1 { " (a binary classifier)" } else { ", one per intercept" }
                ),
            });
        }
        let affine = Affine::new(coefficients, Some(intercepts), n_targets)?;
        Ok(LinearClassifier { affine, labels: class_labels, post_transform })
    }

    /// Number of classes: the width of a score row (2 for a binary classifier).
    pub fn n_classes(&self) -> usize {
        self.labels.len()
    }

    /// Number of coefficient rows (intercepts): 1 for a binary classifier.
    pub fn n_targets(&self) -> usize {
        self.affine.n_targets
    }

    /// Features a row must have.
    pub fn n_features(&self) -> usize {
        self.affine.n_features
    }

    /// The class labels; [`Classification::labels`] index into them.
    pub fn class_labels(&self) -> &ClassLabels {
        &self.labels
    }

    /// The post-transform applied to the scores.
    pub fn post_transform(&self) -> PostTransform {
        self.post_transform
    }

    /// Classifies `n_rows` rows of `n_features` row-major features, allocating the
    /// outputs. See [`LinearClassifier::predict_into`].
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
    /// Fails if the buffers have the wrong sizes or the rows do not have
    /// [`LinearClassifier::n_features`] features.
    pub fn predict_into(
        &self,
        features: &[f32],
        n_rows: usize,
        n_features: usize,
        labels: &mut [usize],
        scores: &mut [f32],
    ) -> Result<(), OnnxMlError> {
        let n_classes = self.n_classes();
        self.affine.check_input(features, n_rows, n_features)?;
        crate::check_output("labels", labels.len(), n_rows)?;
        crate::check_output("scores", scores.len(), n_rows.saturating_mul(n_classes))?;
        if n_rows == 0 {
            return Ok(());
        }
        if self.affine.n_targets == 1 {
            // Raw scores first, then each expanded to two columns, from the last row back
            // so that no score is overwritten before it is read.
            self.affine.scores(features, n_rows, &mut scores[..n_rows]);
            for (row, label) in labels.iter_mut().enumerate().rev() {
                let s = scores[row];
                *label = usize::from(s > 0.0);
                let (negative, positive) = match self.post_transform {
                    PostTransform::Probit => (transform::probit(s), 0.0),
                    PostTransform::Logistic => {
                        let p = transform::logistic(s);
                        (1.0 - p, p)
                    }
                    _ => (1.0 - s, s),
                };
                scores[2 * row] = negative;
                scores[2 * row + 1] = positive;
            }
            return Ok(());
        }
        self.affine.scores(features, n_rows, scores);
        for (out, label) in scores.chunks_exact_mut(n_classes).zip(labels.iter_mut()) {
            let mut best = 0;
            for (c, &s) in out.iter().enumerate().skip(1) {
                if s > out[best] {
                    best = c;
                }
            }
            *label = best;
            transform::apply_linear(self.post_transform, out);
        }
        Ok(())
    }
}

/// A validated `LinearRegressor` (ai.onnx.ml opset 1).
///
/// Immutable and `Send + Sync`. Values are `X * coefficients^T + intercepts` in f32,
/// summed in onnxruntime's order (see [`LinearClassifier`]), then post-transformed: with
/// one target only `PROBIT` applies, as in onnxruntime; with several, `LOGISTIC` is
/// MLAS's approximation.
///
/// onnxruntime ignores `intercepts` whose length is not `targets`; Palisade refuses
/// them.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearRegressor {
    affine: Affine,
    post_transform: PostTransform,
}

impl LinearRegressor {
    /// Validates the attributes: `targets` at least 1, the coefficients one row of the
    /// same non-zero length per target, and no intercepts or one per target.
    pub fn new(attributes: LinearRegressorAttributes) -> Result<Self, OnnxMlError> {
        let LinearRegressorAttributes { coefficients, intercepts, targets, post_transform } = attributes;
        let n_targets = match usize::try_from(targets) {
            Ok(n) if n > 0 => crate::alloc::width("targets", n)?,
            _ => {
                return Err(OnnxMlError::InvalidAttribute {
                    attribute: "targets",
                    reason: format!("must be positive, got {targets}"),
                });
            }
        };
        let intercepts = match intercepts.len() {
            0 => None,
            n if n == n_targets => Some(intercepts),
            n => {
                return Err(OnnxMlError::InvalidAttribute {
                    attribute: "intercepts",
                    reason: format!("{n} values for {n_targets} targets; expected none or one per target"),
                });
            }
        };
        let affine = Affine::new(coefficients, intercepts, n_targets)?;
        Ok(LinearRegressor { affine, post_transform })
    }

    /// Number of targets: the width of an output row.
    pub fn n_targets(&self) -> usize {
        self.affine.n_targets
    }

    /// Features a row must have.
    pub fn n_features(&self) -> usize {
        self.affine.n_features
    }

    /// The post-transform applied to the values.
    pub fn post_transform(&self) -> PostTransform {
        self.post_transform
    }

    /// Predicts `n_rows` rows of `n_features` row-major features, allocating the
    /// row-major `[n_rows, n_targets]` output.
    pub fn predict(
        &self,
        features: &[f32],
        n_rows: usize,
        n_features: usize,
    ) -> Result<Vec<f32>, OnnxMlError> {
        let mut values = crate::filled(crate::alloc::product(n_rows, self.n_targets())?, 0.0)?;
        self.predict_into(features, n_rows, n_features, &mut values)?;
        Ok(values)
    }

    /// Predicts `n_rows` rows of `n_features` row-major features into `values`
    /// (`n_rows * n_targets`, row-major).
    ///
    /// Fails if the buffer has the wrong size or the rows do not have
    /// [`LinearRegressor::n_features`] features.
    pub fn predict_into(
        &self,
        features: &[f32],
        n_rows: usize,
        n_features: usize,
        values: &mut [f32],
    ) -> Result<(), OnnxMlError> {
        self.affine.check_input(features, n_rows, n_features)?;
        crate::check_output("values", values.len(), n_rows.saturating_mul(self.n_targets()))?;
        if n_rows == 0 {
            return Ok(());
        }
        self.affine.scores(features, n_rows, values);
        for out in values.chunks_exact_mut(self.n_targets()) {
            transform::apply_linear(self.post_transform, out);
        }
        Ok(())
    }
}
