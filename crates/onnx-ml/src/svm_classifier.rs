//! `SVMClassifier`.

use crate::svm_kernel::{Kernel, KernelType};
use crate::{ClassLabels, Classification, OnnxMlError, PostTransform};

/// Most classes an SVM classifier may have: its probabilities take `classes^2` values per
/// row, held to [`crate::MAX_ELEMENTS`].
pub const MAX_CLASSES: usize = 1 << 14;

/// Everything `SVMClassifier` (ai.onnx.ml opset 1) is configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct SvmClassifierAttributes {
    /// `kernel_type`.
    pub kernel_type: KernelType,
    /// `kernel_params`: gamma, coef0, degree.
    pub kernel_params: Vec<f32>,
    /// `vectors_per_class`: empty for a linear (liblinear) model.
    pub vectors_per_class: Vec<i64>,
    /// `support_vectors`: row-major `[sum(vectors_per_class), n_features]`.
    pub support_vectors: Vec<f32>,
    /// `coefficients`: `[n_classes - 1, n_vectors]` (libsvm's dual coefficients), or
    /// `[n_classes, n_features]` for a linear model.
    pub coefficients: Vec<f32>,
    /// `rho`: one per pair of classes (or one for a linear model).
    pub rho: Vec<f32>,
    /// `prob_a`: Platt scaling, one per pair of classes; empty without probabilities.
    pub prob_a: Vec<f32>,
    /// `prob_b`: as `prob_a`.
    pub prob_b: Vec<f32>,
    /// `classlabels_ints` or `classlabels_strings`.
    pub class_labels: ClassLabels,
    /// `post_transform`.
    pub post_transform: PostTransform,
}

/// A validated `SVMClassifier`.
///
/// As in onnxruntime (libsvm's one-against-one scheme):
///
/// * with support vectors, each pair of classes `(i, j)`, `i < j`, gets the decision
///   value `s = sum over i's vectors of coef[j-1][v] k(x, v) + sum over j's vectors of
///   coef[i][v] k(x, v) + rho[pair]` (summed in `f64`), a vote for `i` when `s > 0`, else
///   for `j`; the label is the class with most votes (the first on a tie), also when
///   probabilities are computed;
/// * without `prob_a`, the scores are the decision values (one per pair; for two classes
///   `[-s, s]` under `NONE`);
/// * with `prob_a`/`prob_b`, each pair's probability is `1 - logistic(s * a + b)`,
///   clamped to `[1e-7, 1 - 1e-7]`, and the class probabilities come from libsvm's
///   pairwise coupling (at most 100 iterations, tolerance `0.005 / n_classes`), in `f32`;
/// * without support vectors (a linear model), the scores are `x · coef[c] + rho[0]` and
///   the label is the highest score, or for two classes the second label when the score
///   passes 0 (0.5 when every coefficient is non-negative).
///
/// Kernel values are computed in `f32` in feature order; onnxruntime's GEMM sums in
/// another order, so decision values may differ in the last bits.
#[derive(Debug, Clone, PartialEq)]
pub struct SvmClassifier {
    kernel: Kernel,
    svc: bool,
    vectors_per_class: Vec<usize>,
    starts: Vec<usize>,
    n_vectors: usize,
    support_vectors: Vec<f32>,
    coefficients: Vec<f32>,
    n_features: usize,
    rho: Vec<f32>,
    prob_a: Vec<f32>,
    prob_b: Vec<f32>,
    labels: ClassLabels,
    post_transform: PostTransform,
    weights_all_positive: bool,
}

impl SvmClassifier {
    /// Validates the attributes against each other.
    pub fn new(a: SvmClassifierAttributes) -> Result<Self, OnnxMlError> {
        let n_classes = a.class_labels.len();
        if n_classes < 2 {
            return Err(OnnxMlError::InvalidAttribute {
                attribute: "classlabels_ints",
                reason: "a classifier needs at least two classes".into(),
            });
        }
        // Probabilities couple every pair of classes in an n x n matrix per row.
        if n_classes > MAX_CLASSES {
            return Err(OnnxMlError::InvalidAttribute {
                attribute: "classlabels_ints",
                reason: format!("{n_classes} classes is more than the limit of {MAX_CLASSES}"),
            });
        }
        if a.coefficients.is_empty() {
            return Err(OnnxMlError::InvalidAttribute {
                attribute: "coefficients",
                reason: "it is empty".into(),
            });
        }
        if a.prob_a.len() != a.prob_b.len() {
            return Err(OnnxMlError::LengthMismatch {
                attribute: "prob_b",
                actual: a.prob_b.len(),
                reference: "prob_a",
                expected: a.prob_a.len(),
            });
        }
        let pairs = n_classes * (n_classes - 1) / 2;
        let weights_all_positive = a.coefficients.iter().all(|&c| c >= 0.0);
        let svc = !a.vectors_per_class.is_empty();
        let mut vectors_per_class = Vec::with_capacity(a.vectors_per_class.len());
        let mut starts = Vec::with_capacity(a.vectors_per_class.len());
        let mut n_vectors = 0usize;
        for (index, &v) in a.vectors_per_class.iter().enumerate() {
            let v = usize::try_from(v).map_err(|_| OnnxMlError::InvalidEntry {
                attribute: "vectors_per_class",
                index,
                value: v,
                reason: "must be non-negative",
            })?;
            starts.push(n_vectors);
            vectors_per_class.push(v);
            n_vectors = n_vectors.checked_add(v).ok_or(OnnxMlError::TooLarge { elements: usize::MAX })?;
        }
        let n_features = if svc {
            if vectors_per_class.len() != n_classes {
                return Err(OnnxMlError::LengthMismatch {
                    attribute: "vectors_per_class",
                    actual: vectors_per_class.len(),
                    reference: "classlabels",
                    expected: n_classes,
                });
            }
            if n_vectors == 0
                || !a.support_vectors.len().is_multiple_of(n_vectors)
                || a.support_vectors.is_empty()
            {
                return Err(OnnxMlError::InvalidAttribute {
                    attribute: "support_vectors",
                    reason: format!("{} values do not form {n_vectors} vectors", a.support_vectors.len()),
                });
            }
            let expected = crate::alloc::product(n_classes - 1, n_vectors)?;
            if a.coefficients.len() != expected {
                return Err(OnnxMlError::InvalidAttribute {
                    attribute: "coefficients",
                    reason: format!(
                        "{} values, expected (classes - 1) x vectors = {expected}",
                        a.coefficients.len()
                    ),
                });
            }
            if a.rho.len() < pairs {
                return Err(OnnxMlError::InvalidAttribute {
                    attribute: "rho",
                    reason: format!("{} values, one per pair of classes ({pairs}) needed", a.rho.len()),
                });
            }
            if !a.prob_a.is_empty() && a.prob_a.len() < pairs {
                return Err(OnnxMlError::InvalidAttribute {
                    attribute: "prob_a",
                    reason: format!("{} values, one per pair of classes ({pairs}) needed", a.prob_a.len()),
                });
            }
            a.support_vectors.len() / n_vectors
        } else {
            if !a.coefficients.len().is_multiple_of(n_classes) || a.rho.is_empty() {
                return Err(OnnxMlError::InvalidAttribute {
                    attribute: "coefficients",
                    reason: "a linear model needs one row of coefficients per class and one rho".into(),
                });
            }
            a.coefficients.len() / n_classes
        };
        let kernel = if svc { Kernel::new(a.kernel_type, &a.kernel_params)? } else { Kernel::linear() };
        Ok(SvmClassifier {
            kernel,
            svc,
            vectors_per_class,
            starts,
            n_vectors,
            support_vectors: a.support_vectors,
            coefficients: a.coefficients,
            n_features,
            rho: a.rho,
            prob_a: if svc { a.prob_a } else { Vec::new() },
            prob_b: if svc { a.prob_b } else { Vec::new() },
            labels: a.class_labels,
            post_transform: a.post_transform,
            weights_all_positive,
        })
    }

    /// Features per row.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// The class labels.
    pub fn class_labels(&self) -> &ClassLabels {
        &self.labels
    }

    /// Scores per row: one per class with probabilities or in a linear model, else one
    /// per pair of classes (two for a binary model).
    pub fn score_columns(&self) -> usize {
        let n = self.labels.len();
        match (self.svc, self.prob_a.is_empty()) {
            (true, true) if n > 2 => n * (n - 1) / 2,
            (true, true) => 2,
            _ => n,
        }
    }

    /// Labels (indices into the class labels) and scores of `n_rows` rows.
    pub fn predict(&self, features: &[f32], n_rows: usize) -> Result<Classification, OnnxMlError> {
        crate::check_input_len(features.len(), n_rows, self.n_features)?;
        let columns = self.score_columns();
        let mut scores = crate::alloc::filled(crate::alloc::product(n_rows, columns)?, 0.0f32)?;
        let mut labels = crate::alloc::filled(n_rows, 0usize)?;
        let n = self.labels.len();
        let f = self.n_features.max(1);
        let mut kernels = crate::alloc::filled(self.n_vectors, 0.0f32)?;
        let mut votes = crate::filled(n, 0usize)?;
        let mut decisions = crate::filled(n * (n - 1) / 2, 0.0f32)?;
        let mut pairwise = if self.prob_a.is_empty() { Vec::new() } else { crate::filled(n * n, 0.0f32)? };
        let mut coupling =
            if self.prob_a.is_empty() { Vec::new() } else { crate::filled(n * n + n, 0.0f32)? };
        for ((x, row), label) in features.chunks(f).zip(scores.chunks_mut(columns)).zip(labels.iter_mut()) {
            if !self.svc {
                for (c, s) in row.iter_mut().enumerate() {
                    *s = self.kernel.eval(x, &self.coefficients[c * f..(c + 1) * f]) + self.rho[0];
                }
                let (best, max) = first_max(row);
                *label = if n == 2 {
                    let second = if self.weights_all_positive { max >= 0.5 } else { max > 0.0 };
                    if second { 1 } else { best }
                } else {
                    best
                };
                crate::transform::apply(self.post_transform, row);
                continue;
            }
            for (k, sv) in kernels.iter_mut().zip(self.support_vectors.chunks(f)) {
                *k = self.kernel.eval(x, sv);
            }
            votes.fill(0);
            let mut pair = 0;
            for i in 0..n - 1 {
                for j in i + 1..n {
                    let mut sum = 0.0f64;
                    let (si, ni) = (self.starts[i], self.vectors_per_class[i]);
                    let (sj, nj) = (self.starts[j], self.vectors_per_class[j]);
                    let row_j = (j - 1) * self.n_vectors;
                    let row_i = i * self.n_vectors;
                    let terms = self.coefficients[row_j + si..row_j + si + ni]
                        .iter()
                        .zip(&kernels[si..si + ni])
                        .chain(
                            self.coefficients[row_i + sj..row_i + sj + nj].iter().zip(&kernels[sj..sj + nj]),
                        );
                    for (c, k) in terms {
                        sum += f64::from(c * k);
                    }
                    sum += f64::from(self.rho[pair]);
                    decisions[pair] = sum as f32;
                    votes[if sum > 0.0 { i } else { j }] += 1;
                    pair += 1;
                }
            }
            *label = votes.iter().enumerate().fold(0, |best, (c, &v)| if v > votes[best] { c } else { best });
            if self.prob_a.is_empty() {
                if n == 2 {
                    let s = decisions[0];
                    match self.post_transform {
                        PostTransform::None => {
                            row[0] = -s;
                            row[1] = s;
                        }
                        PostTransform::Probit => {
                            row[0] = crate::transform::probit(s);
                            row[1] = 0.0;
                        }
                        PostTransform::Logistic => {
                            row[0] = crate::transform::logistic(-s);
                            row[1] = crate::transform::logistic(s);
                        }
                        _ => {
                            row[0] = 1.0 - s;
                            row[1] = s;
                        }
                    }
                } else {
                    row.copy_from_slice(&decisions);
                    crate::transform::apply(self.post_transform, row);
                }
            } else {
                pairwise.fill(0.0);
                let mut pair = 0;
                for i in 0..n - 1 {
                    for j in i + 1..n {
                        let p = sigmoid_probability(decisions[pair], self.prob_a[pair], self.prob_b[pair])
                            .clamp(1e-7, 1.0 - 1e-7);
                        pairwise[i * n + j] = p;
                        pairwise[j * n + i] = 1.0 - p;
                        pair += 1;
                    }
                }
                coupled_probabilities(n, &pairwise, row, &mut coupling);
                crate::transform::apply(self.post_transform, row);
            }
        }
        Ok(Classification { labels, scores })
    }
}

/// Index and value of the first maximum (NaN never wins).
fn first_max(values: &[f32]) -> (usize, f32) {
    let mut best = (0, values.first().copied().unwrap_or(f32::NAN));
    for (i, &v) in values.iter().enumerate().skip(1) {
        if v > best.1 {
            best = (i, v);
        }
    }
    best
}

/// libsvm's Platt scaling: `1 - logistic(score * a + b)`.
fn sigmoid_probability(score: f32, a: f32, b: f32) -> f32 {
    1.0 - crate::transform::logistic(score * a + b)
}

/// libsvm's pairwise coupling (Wu, Lin and Weng, method 2), in onnxruntime's `f32`
/// arithmetic: `r[i * n + j]` is the probability of `i` against `j`.
/// `scratch` holds `n * n + n` values.
fn coupled_probabilities(n: usize, r: &[f32], p: &mut [f32], scratch: &mut [f32]) {
    scratch.fill(0.0);
    let (q, qp) = scratch.split_at_mut(n * n);
    let eps = 0.005 / n as f32;
    for i in 0..n {
        p[i] = 1.0 / n as f32;
        for j in 0..i {
            q[i * n + i] += r[j * n + i] * r[j * n + i];
            q[i * n + j] = q[j * n + i];
        }
        for j in i + 1..n {
            q[i * n + i] += r[j * n + i] * r[j * n + i];
            q[i * n + j] = -r[j * n + i] * r[i * n + j];
        }
    }
    for _ in 0..100 {
        let mut pqp = 0.0f32;
        for i in 0..n {
            qp[i] = 0.0;
            for j in 0..n {
                qp[i] += q[i * n + j] * p[j];
            }
            pqp += p[i] * qp[i];
        }
        let max_error = qp.iter().fold(0.0f32, |m, &v| m.max((v - pqp).abs()));
        if max_error < eps {
            break;
        }
        for i in 0..n {
            let diff = (-qp[i] + pqp) / q[i * n + i];
            p[i] += diff;
            pqp = (pqp + diff * (diff * q[i * n + i] + 2.0 * qp[i])) / (1.0 + diff) / (1.0 + diff);
            for j in 0..n {
                qp[j] = (qp[j] + diff * q[i * n + j]) / (1.0 + diff);
                p[j] /= 1.0 + diff;
            }
        }
    }
}
