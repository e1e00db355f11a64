//! Mahalanobis outlier scores against reference rows.
//!
//! `score(x) = sqrt((x - μ)ᵀ VI (x - μ))`, as `scipy.spatial.distance.mahalanobis(x, μ, VI)`,
//! with `μ` the reference mean and `VI` the inverse of the reference covariance (`ddof = 1`,
//! as `numpy.cov`). A singular covariance (a constant feature, or features that are linear
//! combinations of others) has no inverse, so [`Inverse`] says what is used instead:
//!
//! * [`Inverse::Pseudo`] (default, `rtol = 1e-10`): the Moore-Penrose pseudo-inverse from the
//!   symmetric eigendecomposition, eigenvalues at or below `rtol × the largest` dropped, as
//!   `numpy.linalg.pinv(cov, rtol=rtol, hermitian=True)`. Deviations along dropped
//!   directions (where the reference never varied) do not count: a row that breaks a
//!   correlation the reference always kept is not seen as an outlier.
//! * [`Inverse::Ridge`]: `(cov + λI)⁻¹`, which does count such deviations (heavily, for a
//!   small `λ`), at the price of changing every score a little.
//!
//! The threshold for `is_outlier` is a quantile of the reference rows' own scores
//! ([`Mahalanobis::quantile_of_reference`], numpy's default linear interpolation).

use crate::ExplainError;
use crate::error::{check_shape, filled, product};
use crate::linalg::symmetric_eigen;

/// Most features [`Mahalanobis::fit`] accepts (the eigendecomposition is cubic).
pub const MAX_FEATURES: usize = 512;

/// How the inverse of the reference covariance is formed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Inverse {
    /// Moore-Penrose pseudo-inverse dropping eigenvalues at or below `rtol × the largest`.
    Pseudo {
        /// Relative cutoff.
        rtol: f64,
    },
    /// `(cov + lambda × I)⁻¹`.
    Ridge {
        /// Added to every variance (> 0).
        lambda: f64,
    },
}

impl Default for Inverse {
    fn default() -> Self {
        Inverse::Pseudo { rtol: 1e-10 }
    }
}

/// A fitted Mahalanobis scorer (immutable, `Send + Sync`).
#[derive(Debug, Clone, PartialEq)]
pub struct Mahalanobis {
    mean: Vec<f64>,
    /// Row-major `n_features × n_features`.
    inverse: Vec<f64>,
    n_features: usize,
}

impl Mahalanobis {
    /// Fits mean and inverse covariance to `n_rows` (at least 2) finite reference rows.
    pub fn fit(
        reference: &[f32],
        n_rows: usize,
        n_features: usize,
        inverse: Inverse,
    ) -> Result<Self, ExplainError> {
        check_shape("reference", reference.len(), n_rows, n_features)?;
        if n_rows < 2 {
            return Err(ExplainError::TooFewRows { what: "reference", min: 2, actual: n_rows });
        }
        if n_features == 0 || n_features > MAX_FEATURES {
            return Err(ExplainError::InvalidArgument {
                what: "features",
                reason: format!("1 to {MAX_FEATURES} features, got {n_features}"),
            });
        }
        match inverse {
            Inverse::Pseudo { rtol } if rtol.is_finite() && rtol >= 0.0 => {}
            Inverse::Ridge { lambda } if lambda.is_finite() && lambda > 0.0 => {}
            _ => {
                return Err(ExplainError::InvalidArgument {
                    what: "inverse",
                    reason: "rtol must be finite and >= 0, lambda finite and > 0".into(),
                });
            }
        }
        if let Some(i) = reference.iter().position(|v| !v.is_finite()) {
            return Err(ExplainError::NotFinite {
                what: "reference",
                row: i / n_features,
                column: i % n_features,
            });
        }
        let f = n_features;
        let mut mean = vec![0.0f64; f];
        for row in reference.chunks_exact(f) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += f64::from(v);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n_rows as f64);
        let mut cov = filled("covariance", product(f, f), crate::MAX_ELEMENTS, 0.0f64)?;
        let mut d = vec![0.0f64; f];
        for row in reference.chunks_exact(f) {
            for ((di, &v), m) in d.iter_mut().zip(row).zip(&mean) {
                *di = f64::from(v) - m;
            }
            for i in 0..f {
                for j in 0..=i {
                    cov[i * f + j] += d[i] * d[j];
                }
            }
        }
        for i in 0..f {
            for j in 0..=i {
                let v = cov[i * f + j] / (n_rows - 1) as f64;
                cov[i * f + j] = v;
                cov[j * f + i] = v;
            }
        }
        let (values, vectors) = symmetric_eigen(&cov, f);
        let largest = values.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        let reciprocal: Vec<f64> = values
            .iter()
            .map(|&l| match inverse {
                Inverse::Pseudo { rtol } => {
                    if l.abs() > rtol * largest && l != 0.0 {
                        1.0 / l
                    } else {
                        0.0
                    }
                }
                Inverse::Ridge { lambda } => 1.0 / (l + lambda),
            })
            .collect();
        let mut vi = filled("inverse covariance", product(f, f), crate::MAX_ELEMENTS, 0.0f64)?;
        for i in 0..f {
            for j in 0..=i {
                let v: f64 = (0..f).map(|k| vectors[i * f + k] * reciprocal[k] * vectors[j * f + k]).sum();
                vi[i * f + j] = v;
                vi[j * f + i] = v;
            }
        }
        Ok(Mahalanobis { mean, inverse: vi, n_features: f })
    }

    /// A scorer from stored parts: the mean and the row-major inverse covariance (checked
    /// for shape, finiteness and symmetry).
    pub fn from_parts(mean: Vec<f64>, inverse: Vec<f64>) -> Result<Self, ExplainError> {
        let f = mean.len();
        check_shape("inverse covariance", inverse.len(), f, f)?;
        if f == 0 {
            return Err(ExplainError::InvalidArgument { what: "mean", reason: "no features".into() });
        }
        if let Some(i) = mean.iter().chain(&inverse).position(|v| !v.is_finite()) {
            return Err(ExplainError::NotFinite { what: "Mahalanobis parameters", row: 0, column: i });
        }
        for i in 0..f {
            for j in 0..i {
                let (a, b) = (inverse[i * f + j], inverse[j * f + i]);
                if (a - b).abs() > 1e-9 * a.abs().max(b.abs()).max(1e-300) {
                    return Err(ExplainError::InvalidArgument {
                        what: "inverse covariance",
                        reason: "not symmetric".into(),
                    });
                }
            }
        }
        Ok(Mahalanobis { mean, inverse, n_features: f })
    }

    /// The reference mean.
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// The inverse covariance used, row-major.
    pub fn inverse_covariance(&self) -> &[f64] {
        &self.inverse
    }

    /// Features per row.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// The score of one row: NaN if the row holds NaN, NaN or infinite if it holds an
    /// infinity (the caller decides how such rows count; they are never scored as inliers).
    pub fn score(&self, row: &[f32]) -> Result<f64, ExplainError> {
        check_shape("row", row.len(), 1, self.n_features)?;
        Ok(self.score_unchecked(row))
    }

    fn score_unchecked(&self, row: &[f32]) -> f64 {
        let f = self.n_features;
        let mut total = 0.0;
        for i in 0..f {
            let di = f64::from(row[i]) - self.mean[i];
            let line = &self.inverse[i * f..(i + 1) * f];
            let mut s = 0.0;
            for (j, &v) in line.iter().enumerate() {
                s += v * (f64::from(row[j]) - self.mean[j]);
            }
            total += di * s;
        }
        // Rounding can leave a tiny negative for a row at the mean; NaN stays NaN (f64::max
        // would turn it into 0, an inlier).
        if total.is_nan() { f64::NAN } else { total.max(0.0).sqrt() }
    }

    /// Scores `n_rows` rows into `out`.
    pub fn scores(&self, rows: &[f32], n_rows: usize, out: &mut [f64]) -> Result<(), ExplainError> {
        check_shape("rows", rows.len(), n_rows, self.n_features)?;
        check_shape("scores", out.len(), n_rows, 1)?;
        for (o, row) in out.iter_mut().zip(rows.chunks_exact(self.n_features)) {
            *o = self.score_unchecked(row);
        }
        Ok(())
    }

    /// The `q` quantile (in [0, 1]) of the reference rows' own scores, with numpy's
    /// default linear interpolation: the threshold above which a score is an outlier.
    pub fn quantile_of_reference(
        &self,
        reference: &[f32],
        n_rows: usize,
        q: f64,
    ) -> Result<f64, ExplainError> {
        if !(0.0..=1.0).contains(&q) {
            return Err(ExplainError::InvalidArgument {
                what: "quantile",
                reason: format!("{q} is not in [0, 1]"),
            });
        }
        if n_rows == 0 {
            return Err(ExplainError::TooFewRows { what: "reference", min: 1, actual: 0 });
        }
        check_shape("reference", reference.len(), n_rows, self.n_features)?;
        if let Some(i) = reference.iter().position(|v| !v.is_finite()) {
            let f = self.n_features;
            return Err(ExplainError::NotFinite { what: "reference", row: i / f, column: i % f });
        }
        let mut scores = filled("reference scores", n_rows, crate::MAX_ELEMENTS, 0.0)?;
        self.scores(reference, n_rows, &mut scores)?;
        scores.sort_by(f64::total_cmp);
        Ok(quantile_sorted(&scores, q))
    }
}

/// numpy's default (`linear`) quantile of sorted, non-empty values.
pub(crate) fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}
