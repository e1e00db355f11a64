//! Drift: two-sample Kolmogorov-Smirnov tests between a sliding window of recent inputs and
//! reference data, per feature, Bonferroni corrected.
//!
//! [`ks_2samp`] follows `scipy.stats.ks_2samp(a, b)` (two-sided, `method='auto'`):
//!
//! * the statistic is the largest distance between the two empirical CDFs, ties handled
//!   (both CDFs step past every copy of a value at once), computed exactly in integers as
//!   `h / lcm(n1, n2)`;
//! * when both samples have at most [`EXACT_MAX_N`] values the p-value is exact: the
//!   probability, over the `C(n1 + n2, n1)` equally likely interleavings of two samples from
//!   one continuous distribution, of a statistic at least as large. It is computed as the
//!   probability mass of a random lattice path from `(0, 0)` to `(n1, n2)` that reaches a
//!   point with `|i·n2 - j·n1| ≥ h·gcd(n1, n2)`, one step at a time
//!   (O(n1 · band) time, O(n2) memory), adding only positive terms;
//! * above, scipy uses the exact one-sample distribution `kstwo(round(n1·n2/(n1+n2)))`;
//!   Palisade uses Kolmogorov's limiting distribution with Stephens' finite-sample
//!   correction, an approximation (about 1e-3 from scipy's). [`DriftMonitor`] keeps both
//!   samples at or below [`EXACT_MAX_N`], so monitoring p-values are always exact.

use crate::ExplainError;
use crate::error::check_shape;

/// Largest sample size for which p-values are exact (scipy's `MAX_AUTO_N`).
pub const EXACT_MAX_N: usize = 10_000;

/// A Kolmogorov-Smirnov test result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KsResult {
    /// Largest distance between the empirical CDFs.
    pub statistic: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Whether the p-value is exact (both samples at most [`EXACT_MAX_N`]).
    pub exact: bool,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The two-sample Kolmogorov-Smirnov test of `a` against `b` (finite values; NaN is refused).
pub fn ks_2samp(a: &[f64], b: &[f64]) -> Result<KsResult, ExplainError> {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    for (what, v) in [("first sample", &a), ("second sample", &b)] {
        if v.is_empty() {
            return Err(ExplainError::TooFewRows { what, min: 1, actual: 0 });
        }
        if let Some(i) = v.iter().position(|x| x.is_nan()) {
            return Err(ExplainError::NotFinite { what, row: i, column: 0 });
        }
    }
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    Ok(ks_sorted(&a, &b))
}

/// [`ks_2samp`] on sorted, non-empty, NaN-free samples.
fn ks_sorted(a: &[f64], b: &[f64]) -> KsResult {
    let (n1, n2) = (a.len() as u64, b.len() as u64);
    // Largest |i·n2 - j·n1| over the points where both CDFs have stepped past a value.
    let (mut i, mut j) = (0usize, 0usize);
    let mut widest: u64 = 0;
    while i < a.len() || j < b.len() {
        let x = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => break,
        };
        while a.get(i) == Some(&x) {
            i += 1;
        }
        while b.get(j) == Some(&x) {
            j += 1;
        }
        let gap = (i as u64 * n2).abs_diff(j as u64 * n1);
        widest = widest.max(gap);
    }
    let g = gcd(n1, n2);
    let lcm = (n1 / g) * n2;
    let h = widest / g;
    let statistic = h as f64 / lcm as f64;
    if n1 as usize <= EXACT_MAX_N && n2 as usize <= EXACT_MAX_N {
        let p_value = if h == 0 { 1.0 } else { exact_p_value(n1 as usize, n2 as usize, widest) };
        return KsResult { statistic, p_value, exact: true };
    }
    let en = (n1 as f64 * n2 as f64) / (n1 as f64 + n2 as f64);
    let lambda = (en.sqrt() + 0.12 + 0.11 / en.sqrt()) * statistic;
    KsResult { statistic, p_value: kolmogorov_sf(lambda), exact: false }
}

/// The probability that a uniformly random monotone lattice path from `(0, 0)` to
/// `(n1, n2)` reaches a point with `|i·n2 - j·n1| >= limit`.
fn exact_p_value(n1: usize, n2: usize, limit: u64) -> f64 {
    let (m1, m2) = (n1 as i64, n2 as i64);
    let limit = limit as i64;
    let inside = |i: i64, j: i64| (i * m2 - j * m1).abs() < limit;
    let mut row = vec![0.0f64; n2 + 1];
    let mut next = vec![0.0f64; n2 + 1];
    row[0] = 1.0;
    let mut out = 0.0f64;
    // The band of row i: j with |i·n2 - j·n1| < limit.
    let band = |i: i64| {
        let lo = (i * m2 - limit).div_euclid(m1) + 1;
        let hi = (i * m2 + limit - 1).div_euclid(m1);
        (lo.max(0) as usize, hi.min(m2) as usize)
    };
    for i in 0..=n1 {
        let (lo, hi) = band(i as i64);
        let (next_lo, next_hi) = if i < n1 { band(i as i64 + 1) } else { (1, 0) };
        for v in next.iter_mut().take(next_hi + 1).skip(next_lo) {
            *v = 0.0;
        }
        for j in lo..=hi {
            let mass = row[j];
            if mass == 0.0 {
                continue;
            }
            let left = (n1 - i + n2 - j) as f64;
            if left == 0.0 {
                continue;
            }
            if j < n2 {
                let up = mass * (n2 - j) as f64 / left;
                if inside(i as i64, j as i64 + 1) {
                    row[j + 1] += up;
                } else {
                    out += up;
                }
            }
            if i < n1 {
                let right = mass * (n1 - i) as f64 / left;
                if inside(i as i64 + 1, j as i64) {
                    next[j] += right;
                } else {
                    out += right;
                }
            }
        }
        for v in row.iter_mut().take(hi + 1).skip(lo) {
            *v = 0.0;
        }
        std::mem::swap(&mut row, &mut next);
    }
    out.min(1.0)
}

/// Kolmogorov's limiting survival function `2 Σ (-1)^(k-1) exp(-2 k² λ²)`.
fn kolmogorov_sf(lambda: f64) -> f64 {
    if lambda < 0.2 {
        return 1.0;
    }
    let mut sum = 0.0;
    for k in 1..=100 {
        let k = f64::from(k);
        let term = (-2.0 * k * k * lambda * lambda).exp();
        sum += if k as u32 % 2 == 1 { term } else { -term };
        if term < 1e-17 {
            break;
        }
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

/// One feature's drift test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureDrift {
    /// The test against the reference.
    pub test: KsResult,
    /// `min(1, p × features)`.
    pub corrected_p_value: f64,
    /// Whether the corrected p-value is below the level asked for.
    pub drifted: bool,
    /// Window values of this feature that were tested (NaN ones are left out).
    pub window_values: usize,
}

/// The drift of every feature.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftReport {
    /// Per feature, in column order.
    pub features: Vec<FeatureDrift>,
    /// Rows in the window.
    pub window_rows: usize,
    /// Whether any feature drifted.
    pub drift: bool,
}

/// A bounded sliding window of recent rows and the reference they are tested against.
///
/// Memory: the reference (`≤ EXACT_MAX_N` values per feature, sorted once) and a ring
/// buffer of `window × features` values; pushing past the window overwrites the oldest row.
/// `push` needs `&mut self`: the server keeps the monitor behind a lock, pushes each
/// request's rows, and for a report clones the monitor (bounded) under the lock and tests
/// outside it.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftMonitor {
    /// Per feature, the sorted finite reference values.
    reference: Vec<Vec<f64>>,
    n_features: usize,
    capacity: usize,
    ring: Vec<f32>,
    /// Next row slot to write.
    head: usize,
    rows: usize,
}

impl DriftMonitor {
    /// A monitor of `n_features` over `n_rows` reference rows (NaN values are left out;
    /// at most [`EXACT_MAX_N`] rows: subsample larger references at build) and a window
    /// of `window` rows (1 to [`EXACT_MAX_N`]).
    pub fn new(
        reference: &[f32],
        n_rows: usize,
        n_features: usize,
        window: usize,
    ) -> Result<Self, ExplainError> {
        check_shape("reference", reference.len(), n_rows, n_features)?;
        if n_features == 0 {
            return Err(ExplainError::InvalidArgument { what: "features", reason: "none".into() });
        }
        if !(1..=EXACT_MAX_N).contains(&window) {
            return Err(ExplainError::InvalidArgument {
                what: "window",
                reason: format!("{window} rows; 1 to {EXACT_MAX_N}"),
            });
        }
        if n_rows > EXACT_MAX_N {
            return Err(ExplainError::TooLarge {
                what: "drift reference rows",
                requested: n_rows,
                limit: EXACT_MAX_N,
            });
        }
        let mut columns = Vec::with_capacity(n_features);
        for f in 0..n_features {
            let mut column: Vec<f64> = reference
                .iter()
                .skip(f)
                .step_by(n_features)
                .filter(|v| !v.is_nan())
                .map(|&v| f64::from(v))
                .collect();
            if column.is_empty() {
                return Err(ExplainError::TooFewRows {
                    what: "reference (a feature's values)",
                    min: 1,
                    actual: 0,
                });
            }
            column.sort_by(f64::total_cmp);
            columns.push(column);
        }
        let ring = crate::error::filled("drift window", window * n_features, crate::MAX_ELEMENTS, 0.0f32)?;
        Ok(DriftMonitor { reference: columns, n_features, capacity: window, ring, head: 0, rows: 0 })
    }

    /// Adds `n_rows` rows to the window, dropping the oldest past its size.
    pub fn push(&mut self, rows: &[f32], n_rows: usize) -> Result<(), ExplainError> {
        check_shape("rows", rows.len(), n_rows, self.n_features)?;
        let f = self.n_features;
        // Only the last `capacity` rows can stay.
        let skip = n_rows.saturating_sub(self.capacity);
        for row in rows.chunks_exact(f).skip(skip) {
            self.ring[self.head * f..(self.head + 1) * f].copy_from_slice(row);
            self.head = (self.head + 1) % self.capacity;
            self.rows = (self.rows + 1).min(self.capacity);
        }
        Ok(())
    }

    /// Most rows the window keeps.
    pub fn window_capacity(&self) -> usize {
        self.capacity
    }

    /// Rows in the window.
    pub fn window_rows(&self) -> usize {
        self.rows
    }

    /// Tests every feature of the window against the reference; a feature drifts when its
    /// Bonferroni-corrected p-value is below `alpha`. Features whose window holds no
    /// finite value report a p-value of 1.
    pub fn report(&self, alpha: f64) -> Result<DriftReport, ExplainError> {
        if !(0.0..=1.0).contains(&alpha) {
            return Err(ExplainError::InvalidArgument {
                what: "alpha",
                reason: format!("{alpha} is not in [0, 1]"),
            });
        }
        let f = self.n_features;
        let mut features = Vec::with_capacity(f);
        let mut column = Vec::with_capacity(self.rows);
        for (k, reference) in self.reference.iter().enumerate() {
            column.clear();
            column.extend(
                self.ring[..self.rows * f]
                    .iter()
                    .skip(k)
                    .step_by(f)
                    .filter(|v| !v.is_nan())
                    .map(|&v| f64::from(v)),
            );
            column.sort_by(f64::total_cmp);
            let test = if column.is_empty() {
                KsResult { statistic: 0.0, p_value: 1.0, exact: true }
            } else {
                ks_sorted(&column, reference)
            };
            let corrected_p_value = (test.p_value * f as f64).min(1.0);
            features.push(FeatureDrift {
                test,
                corrected_p_value,
                drifted: corrected_p_value < alpha,
                window_values: column.len(),
            });
        }
        let drift = features.iter().any(|d| d.drifted);
        Ok(DriftReport { features, window_rows: self.rows, drift })
    }
}
