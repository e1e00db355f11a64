//! onnxruntime's post-transforms, reproduced operation by operation in f32.
//!
//! Every function here performs the same f32 operations in the same order as
//! onnxruntime's `ml_common.h`, so that results agree to the last bit when both link
//! the same `expf`/`logf`. Tree ensembles use [`apply`]; linear models
//! [`apply_linear`], whose logistic is MLAS's.

use crate::PostTransform;

/// `sqrt(2)` rounded to f32.
const SQRT2: f32 = std::f32::consts::SQRT_2;

/// The logistic function, computed on `|x|` for stability.
#[inline]
pub(crate) fn logistic(x: f32) -> f32 {
    let v = 1.0 / (1.0 + (-x.abs()).exp());
    if x < 0.0 { 1.0 - v } else { v }
}

/// Winitzki's approximation of the inverse error function (a = 0.147).
#[inline]
pub(crate) fn erf_inv(x: f32) -> f32 {
    let sgn = if x < 0.0 { -1.0f32 } else { 1.0 };
    let x = (1.0 - x) * (1.0 + x);
    let log = x.ln();
    let v = 2.0 / (std::f32::consts::PI * 0.147) + 0.5 * log;
    let v2 = 1.0 / 0.147f32 * log;
    let v3 = -v + (v * v - v2).sqrt();
    sgn * v3.sqrt()
}

/// The probit function: the standard normal quantile of `x`.
#[inline]
pub(crate) fn probit(x: f32) -> f32 {
    SQRT2 * erf_inv(2.0 * x - 1.0)
}

/// Index-free maximum as onnxruntime computes it: starts at `-f32::MAX`, skips NaN.
#[inline]
fn row_max(values: &[f32]) -> f32 {
    let mut max = -f32::MAX;
    for &v in values {
        if v > max {
            max = v;
        }
    }
    max
}

/// Softmax in place, subtracting the maximum first.
pub(crate) fn softmax(values: &mut [f32]) {
    let max = row_max(values);
    let mut sum = 0.0f32;
    for v in values.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in values.iter_mut() {
        *v /= sum;
    }
}

/// Softmax in place that treats scores within 1e-7 of zero as absent: they are scaled
/// by `exp(-max)` instead of exponentiated, and are left out of the sum.
pub(crate) fn softmax_zero(values: &mut [f32]) {
    let max = row_max(values);
    let exp_neg_max = (-max).exp();
    let mut sum = 0.0f32;
    for v in values.iter_mut() {
        if *v > 0.000_000_1 || *v < -0.000_000_1 {
            *v = (*v - max).exp();
            sum += *v;
        } else {
            *v *= exp_neg_max;
        }
    }
    for v in values.iter_mut() {
        *v /= sum;
    }
}

/// Applies `transform` in place to a row of two or more scores.
pub(crate) fn apply(transform: PostTransform, values: &mut [f32]) {
    match transform {
        PostTransform::None => {}
        PostTransform::Logistic => values.iter_mut().for_each(|v| *v = logistic(*v)),
        PostTransform::Probit => values.iter_mut().for_each(|v| *v = probit(*v)),
        PostTransform::Softmax => softmax(values),
        PostTransform::SoftmaxZero => softmax_zero(values),
    }
}

/// Applies `transform` in place to one output row of a linear model, as onnxruntime's
/// `batched_update_scores_inplace` does: on rows of two or more values the logistic is
/// MLAS's approximation ([`crate::mlas::logistic`]); a single value is only changed by
/// `PROBIT`.
///
/// onnxruntime switches `SOFTMAX` to MLAS's vectorized softmax for rows of five or more
/// values (and for very large batches); Palisade keeps this scalar softmax, which differs
/// by a few ulps.
pub(crate) fn apply_linear(transform: PostTransform, values: &mut [f32]) {
    match (transform, values.len()) {
        (PostTransform::Probit, _) => values.iter_mut().for_each(|v| *v = probit(*v)),
        (_, 0 | 1) | (PostTransform::None, _) => {}
        (PostTransform::Logistic, _) => values.iter_mut().for_each(|v| *v = crate::mlas::logistic(*v)),
        (PostTransform::Softmax, _) => softmax(values),
        (PostTransform::SoftmaxZero, _) => softmax_zero(values),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logistic_is_symmetric_and_stable() {
        assert_eq!(logistic(0.0), 0.5);
        assert!((logistic(2.0) - 0.880_797_1).abs() < 1e-7);
        assert!((logistic(-2.0) - (1.0 - logistic(2.0))).abs() < 1e-7);
        assert_eq!(logistic(-1000.0), 0.0);
        assert_eq!(logistic(1000.0), 1.0);
    }

    #[test]
    fn probit_matches_onnxruntime() {
        // Values printed by onnxruntime 1.32 for these inputs.
        assert_eq!(probit(0.1), -1.281_712_9);
        assert_eq!(probit(0.9), 1.281_712_9);
        assert_eq!(probit(0.8), 0.841_756_1);
        assert_eq!(probit(0.0), f32::NEG_INFINITY);
        assert!(probit(-0.1).is_nan());
    }

    #[test]
    fn softmax_subtracts_the_max() {
        let mut v = [1000.0, 1000.0];
        softmax(&mut v);
        assert_eq!(v, [0.5, 0.5]);
        let mut v = [12.0, 0.0];
        softmax(&mut v);
        assert_eq!(v, [0.999_993_8, 6.144_174e-6]);
    }

    #[test]
    fn softmax_zero_leaves_zeros_out_of_the_sum() {
        let mut v = [0.1, 0.0, -0.1];
        softmax_zero(&mut v);
        assert_eq!(v, [0.549_833_95, 0.0, 0.450_166]);
    }
}
