//! The f32 arithmetic of onnxruntime's MLAS kernels on x86-64 with AVX2 and FMA3 (the
//! kernels MLAS selects on such CPUs, with or without AVX-512), reproduced operation by
//! operation: the SGEMM behind `LinearClassifier` and `LinearRegressor`, and MLAS's
//! rational approximation of the logistic function.
//!
//! onnxruntime computes `X * coefficients^T + intercepts` with MLAS's SGEMM, whose
//! summation order depends on the number of rows:
//!
//! * one row: the AVX kernel for `M = 1` with a transposed `B`. Each dot product is
//!   spread over eight lanes (lane `l` adds the products of features `l`, `l + 8`, ...
//!   with separate multiplies and adds), the lanes are reduced in one of three orders
//!   depending on whether the target is computed in a group of four, two or one, and the
//!   intercept is added last ([`scores_one_row`]);
//! * several rows: the FMA3 and AVX-512F kernels, which agree. Each dot product is a
//!   chain of fused multiply-adds in feature order, restarted for every block of
//!   [`stride_k`] features; the intercept plus the first block's sum, plus each later
//!   block's sum, is the score ([`scores_in_batch`]).
//!
//! A row's scores thus depend on whether it is alone in its batch, in onnxruntime as
//! here.
//!
//! With several intra-op threads onnxruntime may split a large GEMM into pieces whose
//! blocking differs; these functions follow its single-threaded order.

/// Fused multiply-add `a * b + c`, rounded once.
#[cfg(target_feature = "fma")]
#[inline]
pub(crate) fn fma(a: f32, b: f32, c: f32) -> f32 {
    a.mul_add(b, c)
}

/// Fused multiply-add `a * b + c`, rounded once.
///
/// Without the FMA instruction, `f32::mul_add` is a libm call; this computes in f64
/// instead, where the product of two f32 is exact. The f64 sum is rounded twice (to f64,
/// then to f32), which only goes wrong when it lands exactly halfway between two f32
/// values while the exact sum does not: that case is detected and corrected.
#[cfg(not(target_feature = "fma"))]
#[inline]
pub(crate) fn fma(a: f32, b: f32, c: f32) -> f32 {
    let product = f64::from(a) * f64::from(b);
    let addend = f64::from(c);
    let sum = product + addend;
    let bits = sum.to_bits();
    // The 29 bits f32 drops from an f64 significand are exactly a half: a tie. Below
    // f32's normal range (biased f64 exponent 1023 - 126) ties sit elsewhere.
    let tie_bits = bits & 0x1FFF_FFFF == 0x1000_0000;
    let below_normal = (bits >> 52) & 0x7FF < 897;
    if !(tie_bits | below_normal) {
        return sum as f32;
    }
    fma_near_tie(product, addend, sum)
}

/// The rounding of `product + addend` to f32 when its f64 rounding `sum` may sit on an
/// f32 tie.
#[cfg(not(target_feature = "fma"))]
#[cold]
fn fma_near_tie(product: f64, addend: f64, sum: f64) -> f32 {
    let rounded = sum as f32;
    if !sum.is_finite() || f64::from(rounded) == sum {
        return rounded;
    }
    // Knuth's TwoSum: `sum + error` is exactly `product + addend`.
    let b = sum - product;
    let error = (product - (sum - b)) + (addend - b);
    if error == 0.0 {
        return rounded;
    }
    let other = if f64::from(rounded) < sum { rounded.next_up() } else { rounded.next_down() };
    if (f64::from(rounded) + f64::from(other)) * 0.5 != sum {
        return rounded;
    }
    // A tie of the f64 sum but not of the exact one: round toward the error.
    if (error > 0.0) == (other > rounded) { other } else { rounded }
}

/// The K-dimension block of MLAS's SGEMM for `n_targets` output columns and
/// `n_features` features (`MLAS_SGEMM_STRIDEN` and `MLAS_SGEMM_STRIDEK` are both 128,
/// then traded against each other).
pub(crate) fn stride_k(n_targets: usize, n_features: usize) -> usize {
    let mut stride_k = 128usize;
    if n_targets >= n_features {
        // MLAS doubles the N block each time it halves the K block.
        while stride_k / 2 >= n_features.max(1) {
            stride_k /= 2;
        }
    } else {
        let mut stride_n = 128usize;
        while stride_n > 16 && stride_n / 2 >= n_targets {
            stride_k *= 2;
            stride_n /= 2;
        }
    }
    stride_k
}

/// Rows whose multiply-add chains [`scores_in_batch`] interleaves.
const CHAINS: usize = 4;

/// Scores of rows of a batch of several rows: per row and target, fused multiply-adds
/// in feature order, block by block, onto the intercept (or onto the first block's sum
/// without one).
///
/// `x` is `[n_rows, n_features]`, `coefficients` `[n_targets, n_features]` and `out`
/// `[n_rows, n_targets]`, all row-major. [`CHAINS`] rows are computed together so that
/// their independent chains overlap; the result does not depend on the grouping.
pub(crate) fn scores_in_batch(
    x: &[f32],
    n_features: usize,
    coefficients: &[f32],
    intercepts: Option<&[f32]>,
    stride_k: usize,
    out: &mut [f32],
) {
    let n_targets = coefficients.len() / n_features.max(1);
    if n_features == 0 || n_targets == 0 {
        return;
    }
    let mut rows = x.chunks_exact(CHAINS * n_features);
    let mut outs = out.chunks_exact_mut(CHAINS * n_targets);
    for (xs, os) in (&mut rows).zip(&mut outs) {
        let [x0, x1, x2, x3] = [0, 1, 2, 3].map(|r| &xs[r * n_features..(r + 1) * n_features]);
        for (t, w) in coefficients.chunks_exact(n_features).enumerate() {
            let mut value = intercepts.and_then(|i| i.get(t).copied()).map(|b| [b; CHAINS]);
            let mut start = 0;
            while start < n_features {
                let block = start..n_features.min(start + stride_k);
                let (first, rest) = (block.start, block.start + 1..block.end);
                let w0 = w[first];
                let mut acc = [x0[first], x1[first], x2[first], x3[first]].map(|a| first_product(a, w0));
                let lanes = w[rest.clone()].iter().zip(&x0[rest.clone()]).zip(&x1[rest.clone()]);
                for (((&w, &a0), &a1), (&a2, &a3)) in lanes.zip(x2[rest.clone()].iter().zip(&x3[rest])) {
                    acc = [fma(a0, w, acc[0]), fma(a1, w, acc[1]), fma(a2, w, acc[2]), fma(a3, w, acc[3])];
                }
                value = Some(match value {
                    Some(v) => [v[0] + acc[0], v[1] + acc[1], v[2] + acc[2], v[3] + acc[3]],
                    None => acc,
                });
                start = block.end;
            }
            let value = value.unwrap_or_default();
            for (r, v) in value.into_iter().enumerate() {
                os[r * n_targets + t] = v;
            }
        }
    }
    for (row, o) in
        rows.remainder().chunks_exact(n_features).zip(outs.into_remainder().chunks_exact_mut(n_targets))
    {
        for ((score, w), t) in o.iter_mut().zip(coefficients.chunks_exact(n_features)).zip(0..) {
            let mut value = intercepts.and_then(|i| i.get(t).copied());
            let mut start = 0;
            while start < n_features {
                let block = start..n_features.min(start + stride_k);
                let mut acc = first_product(row[block.start], w[block.start]);
                for (&w, &a) in w[block.start + 1..block.end].iter().zip(&row[block.start + 1..block.end]) {
                    acc = fma(a, w, acc);
                }
                value = Some(value.map_or(acc, |v| v + acc));
                start = block.end;
            }
            *score = value.unwrap_or(0.0);
        }
    }
}

/// `fma(a, w, 0.0)`, the first step of a chain, as a plain product: the same single
/// rounding, except that an exactly zero product gives +0 as `-0 + 0` does.
#[inline]
fn first_product(a: f32, w: f32) -> f32 {
    let product = a * w;
    if product == 0.0 && (a == 0.0 || w == 0.0) { 0.0 } else { product }
}

/// Scores of a single row `x`, as the `M = 1` kernel computes them.
///
/// `coefficients` is `[out.len(), x.len()]`, row-major.
pub(crate) fn scores_one_row(x: &[f32], coefficients: &[f32], intercepts: Option<&[f32]>, out: &mut [f32]) {
    let n_targets = out.len();
    let in_quads = n_targets / 4 * 4;
    let in_pair = if n_targets % 4 >= 2 { in_quads + 2 } else { in_quads };
    for (t, (score, weights)) in out.iter_mut().zip(coefficients.chunks_exact(x.len().max(1))).enumerate() {
        let lanes = lane_sums(x, weights);
        let dot = if t < in_quads {
            reduce_in_quad(&lanes)
        } else if t < in_pair {
            reduce_in_pair(&lanes)
        } else {
            reduce_alone(&lanes)
        };
        *score = dot + intercepts.and_then(|i| i.get(t).copied()).unwrap_or(0.0);
    }
}

/// Lane `l` adds `x[k] * w[k]` for `k = l, l + 8, ...` in order; lanes past the last
/// feature add `0 * 0`, as the masked loads do.
#[inline]
fn lane_sums(x: &[f32], w: &[f32]) -> [f32; 8] {
    let mut lanes = [0.0f32; 8];
    let (mut xs, mut ws) = (x.chunks_exact(8), w.chunks_exact(8));
    for (xc, wc) in (&mut xs).zip(&mut ws) {
        for ((lane, &a), &b) in lanes.iter_mut().zip(xc).zip(wc) {
            *lane += a * b;
        }
    }
    let (xr, wr) = (xs.remainder(), ws.remainder());
    if !xr.is_empty() {
        for (l, lane) in lanes.iter_mut().enumerate() {
            let product = match (xr.get(l), wr.get(l)) {
                (Some(&a), Some(&b)) => a * b,
                _ => 0.0,
            };
            *lane += product;
        }
    }
    lanes
}

/// Reduction of a target computed with three others (a 4x8 transpose, then adds).
#[inline]
fn reduce_in_quad(l: &[f32; 8]) -> f32 {
    (((l[0] + l[1]) + l[2]) + l[3]) + (((l[4] + l[5]) + l[6]) + l[7])
}

/// Reduction of a target computed with one other (unpack, then adds).
#[inline]
fn reduce_in_pair(l: &[f32; 8]) -> f32 {
    ((l[0] + l[2]) + (l[4] + l[6])) + ((l[1] + l[3]) + (l[5] + l[7]))
}

/// Reduction of a target computed alone (two horizontal adds, then the halves).
#[inline]
fn reduce_alone(l: &[f32; 8]) -> f32 {
    ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
}

// The coefficients are MLAS's (`MlasLogisticConstants`), digit for digit; they round to
// the same f32 values as in C++.
#[allow(clippy::excessive_precision)]
mod logistic_constants {
    pub(super) const LOWER_RANGE: f32 = -18.0;
    pub(super) const UPPER_RANGE: f32 = 18.0;
    pub(super) const ALPHA_9: f32 = 4.37031012579801e-11;
    pub(super) const ALPHA_7: f32 = 1.15627324459942e-07;
    pub(super) const ALPHA_5: f32 = 6.08574864600143e-05;
    pub(super) const ALPHA_3: f32 = 8.51377133304701e-03;
    pub(super) const ALPHA_1: f32 = 2.48287947061529e-01;
    pub(super) const BETA_10: f32 = 6.10247389755681e-13;
    pub(super) const BETA_8: f32 = 5.76102136993427e-09;
    pub(super) const BETA_6: f32 = 6.29106785017040e-06;
    pub(super) const BETA_4: f32 = 1.70198817374094e-03;
    pub(super) const BETA_2: f32 = 1.16817656904453e-01;
    pub(super) const BETA_0: f32 = 9.93151921023180e-01;
}

/// MLAS's logistic function (its FMA3 kernel): a rational approximation on the input
/// clamped to [-18, 18], clamped below at 0. NaN stays NaN.
#[inline]
pub(crate) fn logistic(x: f32) -> f32 {
    use logistic_constants::*;
    let v = x.clamp(LOWER_RANGE, UPPER_RANGE);
    let v2 = v * v;
    let mut p = fma(v2, ALPHA_9, ALPHA_7);
    p = fma(v2, p, ALPHA_5);
    p = fma(v2, p, ALPHA_3);
    p = fma(v2, p, ALPHA_1);
    let mut q = fma(v2, BETA_10, BETA_8);
    q = fma(v2, q, BETA_6);
    q = fma(v2, q, BETA_4);
    q = fma(v2, q, BETA_2);
    q = fma(v2, q, BETA_0);
    let y = v * p / q + 0.5;
    if y < 0.0 { 0.0 } else { y }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fma_rounds_once() {
        // x * y = 2^-24 - 2^-54, so c + x * y lies just below the f32 tie between
        // 1 + 2^-23 and 1 + 2^-22; the f64 sum is the tie itself, whose even side is up.
        let (x, y, c) =
            (1.0 + 2.0f32.powi(-15), 2.0f32.powi(-24) * (1.0 - 2.0f32.powi(-15)), 1.0 + 2.0f32.powi(-23));
        assert_eq!(fma(x, y, c), c);
        assert_eq!(fma(x, y, c), x.mul_add(y, c));
        assert_eq!(fma(-x, y, -c), -c);
        for (a, b, c) in [
            (f32::NAN, 1.0, 1.0),
            (f32::INFINITY, 0.0, 1.0),
            (f32::INFINITY, 1.0, f32::NEG_INFINITY),
            (-0.0, 1.0, 0.0),
            (-0.0, 1.0, -0.0),
            (1e-30, 1e-30, 1e-45),
            (1e-20, 1e-20, -1e-40),
            (f32::MAX, 2.0, -f32::MAX),
            (3.0, 1.0 / 3.0, -1.0),
        ] {
            let (got, want) = (fma(a, b, c), a.mul_add(b, c));
            assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "{a} {b} {c}");
        }
    }

    proptest::proptest! {
        #[test]
        fn fma_matches_libm(a in proptest::num::f32::ANY, b in proptest::num::f32::ANY, c in proptest::num::f32::ANY) {
            let (got, want) = (fma(a, b, c), a.mul_add(b, c));
            proptest::prop_assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()));
        }

        #[test]
        fn fma_matches_libm_near_ties(m in 0u32..1 << 23, e in -140i32..100, k in 1i32..24, s in 0u32..1 << 12) {
            // c + a * b where a * b is about half an ulp of c: ties and near-ties.
            let exponent = (e.clamp(-126, 127) + 127) as u32;
            let c = f32::from_bits((exponent << 23) | m);
            let half_ulp = (c.next_up() - c) / 2.0;
            let a = 1.0 + (s as f32) * 2.0f32.powi(-k - 12);
            let b = half_ulp / a;
            let (got, want) = (fma(a, b, c), a.mul_add(b, c));
            proptest::prop_assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()));
        }
    }

    #[test]
    fn k_blocks_follow_mlas() {
        assert_eq!(stride_k(3, 4), 1024);
        assert_eq!(stride_k(4, 4), 4);
        assert_eq!(stride_k(20, 600), 512);
        assert_eq!(stride_k(40, 1300), 256);
        assert_eq!(stride_k(200, 150), 128);
        assert_eq!(stride_k(5, 0), 1);
    }

    #[test]
    fn logistic_is_clamped_and_keeps_nan() {
        assert_eq!(logistic(0.0), 0.5);
        assert!(logistic(f32::NAN).is_nan());
        assert_eq!(logistic(-100.0), logistic(-18.0));
        assert_eq!(logistic(100.0), logistic(18.0));
        assert!(logistic(-18.0) >= 0.0 && logistic(18.0) <= 1.0 + f32::EPSILON);
        assert!((logistic(2.0) - 0.880_797_1).abs() < 1e-6);
    }
}
