//! `SVMRegressor`.

use crate::svm_kernel::{Kernel, KernelType};
use crate::{OnnxMlError, PostTransform};

/// Everything `SVMRegressor` (ai.onnx.ml opset 1) is configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct SvmRegressorAttributes {
    /// `kernel_type`.
    pub kernel_type: KernelType,
    /// `kernel_params`: gamma, coef0, degree.
    pub kernel_params: Vec<f32>,
    /// `n_supports`: 0 for a linear model (then `coefficients` are the weights).
    pub n_supports: i64,
    /// `support_vectors`: row-major `[n_supports, n_features]`.
    pub support_vectors: Vec<f32>,
    /// `coefficients`: one per support vector, or the weights of a linear model.
    pub coefficients: Vec<f32>,
    /// `rho`: the intercept (first entry).
    pub rho: Vec<f32>,
    /// `one_class`: outputs `1` or `-1` by the sign of the score.
    pub one_class: bool,
    /// `post_transform` (onnxruntime does not apply it; neither does Palisade).
    pub post_transform: PostTransform,
}

/// A validated `SVMRegressor`: one `f32` score per row.
///
/// As in onnxruntime: with support vectors, `score = sum(coef[i] * k(x, sv[i])) + rho[0]`
/// with the configured kernel; without, `score = dot(x, coefficients) + rho[0]`; a
/// one-class model answers `1` when the score is above 0, else `-1`; `post_transform` is
/// read but, as in onnxruntime, not applied. Kernels and sums are computed in `f32`
/// (onnxruntime sums with its SGEMM, in another order: sums of many terms that cancel
/// differ by a few ulps of their largest term).
#[derive(Debug, Clone, PartialEq)]
pub struct SvmRegressor {
    kernel: Kernel,
    support_vectors: Vec<f32>,
    coefficients: Vec<f32>,
    n_features: usize,
    rho: f32,
    one_class: bool,
}

impl SvmRegressor {
    /// Validates the attributes.
    pub fn new(a: SvmRegressorAttributes) -> Result<Self, OnnxMlError> {
        let rho = *a
            .rho
            .first()
            .ok_or(OnnxMlError::InvalidAttribute { attribute: "rho", reason: "it is empty".into() })?;
        if a.coefficients.is_empty() {
            return Err(OnnxMlError::InvalidAttribute {
                attribute: "coefficients",
                reason: "it is empty".into(),
            });
        }
        let n_supports = usize::try_from(a.n_supports).map_err(|_| OnnxMlError::InvalidEntry {
            attribute: "n_supports",
            index: 0,
            value: a.n_supports,
            reason: "must be non-negative",
        })?;
        let (kernel, n_features) = if n_supports > 0 {
            if !a.support_vectors.len().is_multiple_of(n_supports) || a.support_vectors.is_empty() {
                return Err(OnnxMlError::InvalidAttribute {
                    attribute: "support_vectors",
                    reason: format!("{} values do not form {n_supports} vectors", a.support_vectors.len()),
                });
            }
            if a.coefficients.len() != n_supports {
                return Err(OnnxMlError::LengthMismatch {
                    attribute: "coefficients",
                    actual: a.coefficients.len(),
                    reference: "n_supports",
                    expected: n_supports,
                });
            }
            (Kernel::new(a.kernel_type, &a.kernel_params)?, a.support_vectors.len() / n_supports)
        } else {
            (Kernel::linear(), a.coefficients.len())
        };
        Ok(SvmRegressor {
            kernel,
            support_vectors: if n_supports > 0 { a.support_vectors } else { Vec::new() },
            coefficients: a.coefficients,
            n_features,
            rho,
            one_class: a.one_class,
        })
    }

    /// Features per row.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Scores `n_rows` rows of [`SvmRegressor::n_features`] values into `output` (one per row).
    pub fn predict_into(
        &self,
        features: &[f32],
        n_rows: usize,
        output: &mut [f32],
    ) -> Result<(), OnnxMlError> {
        crate::check_input_len(features.len(), n_rows, self.n_features)?;
        crate::check_output("Y", output.len(), n_rows)?;
        let f = self.n_features.max(1);
        for (x, out) in features.chunks(f).zip(output.iter_mut()) {
            let score = if self.support_vectors.is_empty() {
                self.kernel.eval(x, &self.coefficients) + self.rho
            } else {
                let mut sum = self.rho;
                for (sv, &c) in self.support_vectors.chunks(f).zip(&self.coefficients) {
                    sum += self.kernel.eval(x, sv) * c;
                }
                sum
            };
            *out = if self.one_class { if score > 0.0 { 1.0 } else { -1.0 } } else { score };
        }
        Ok(())
    }
}
