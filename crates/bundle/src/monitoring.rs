//! What `palisade build` stores for `monitoring:` (the file [`MONITORING_FILE`], covered by
//! the bundle digest): the Mahalanobis parameters and threshold, or where the
//! IsolationForest model is, and the drift reference as sorted per-feature samples. Serving
//! fits nothing. Reference files are read with [`crate::explainer::Background::parse`] and
//! are not copied into the bundle.

use serde::{Deserialize, Serialize};

/// The monitoring file in a bundle.
pub const MONITORING_FILE: &str = "monitoring.json";

/// Largest monitoring file a bundle may hold.
pub const MAX_MONITORING_BYTES: u64 = 256 * 1024 * 1024;

/// Most reference rows the drift test keeps (a fixed, evenly spaced subsample above):
/// up to this size its p-values are exact.
pub const MAX_DRIFT_REFERENCE_ROWS: usize = 10_000;

/// What monitoring needs at serve time, computed by `palisade build`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitoringRecord {
    /// The feature names (a reference's CSV header, else `x0`, `x1`, ...): the drift report's
    /// and the gauges' feature labels.
    pub features: Vec<String>,
    /// How outliers are scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outliers: Option<OutlierRecord>,
    /// The drift test's reference and settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftRecord>,
}

/// An outlier scorer, fitted at build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", deny_unknown_fields)]
pub enum OutlierRecord {
    /// Mahalanobis distance: `sqrt((x - mean)ᵀ inverse (x - mean))`.
    #[serde(rename = "mahalanobis")]
    Mahalanobis {
        /// The reference mean.
        mean: Vec<f64>,
        /// The (pseudo-)inverse of the reference covariance, row-major.
        inverse: Vec<f64>,
        /// Scores above it are outliers.
        threshold: f64,
        /// The quantile of the reference's own scores the threshold is.
        quantile: f64,
        /// Rows of the reference.
        #[serde(rename = "referenceRows")]
        reference_rows: u64,
    },
    /// An IsolationForest exported by skl2onnx.
    #[serde(rename = "isolation_forest")]
    IsolationForest {
        /// The model file in the bundle (as the manifest names it).
        model: String,
        /// The forest's `offset_`: `score_samples = decision_function + offset`, and rows
        /// scoring below it are outliers.
        offset: f64,
    },
}

/// The drift test's reference: per feature, its values sorted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftRecord {
    /// Rows of recent inputs tested.
    pub window: usize,
    /// The family-wise significance level.
    pub alpha: f64,
    /// Per feature, the reference's finite values, sorted (each at most
    /// [`MAX_DRIFT_REFERENCE_ROWS`], all of one length).
    pub columns: Vec<Vec<f32>>,
}

impl DriftRecord {
    /// The reference as rows (row-major), from the sorted columns: each feature's
    /// marginal is what the per-feature tests compare, so the pairing of values into rows
    /// does not matter. `None` when the columns differ in length.
    pub fn rows(&self) -> Option<(Vec<f32>, usize)> {
        let n = self.columns.first()?.len();
        if self.columns.iter().any(|c| c.len() != n) {
            return None;
        }
        let f = self.columns.len();
        let mut rows = vec![0.0f32; n * f];
        for (k, column) in self.columns.iter().enumerate() {
            for (i, &v) in column.iter().enumerate() {
                rows[i * f + k] = v;
            }
        }
        Some((rows, n))
    }
}

/// At most `limit` of `n` row indices, evenly spaced (deterministic, so a build is
/// reproducible).
pub fn subsample(n: usize, limit: usize) -> Vec<usize> {
    if n <= limit {
        return (0..n).collect();
    }
    (0..limit).map(|i| i * n / limit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_rows_transpose() {
        let record = MonitoringRecord {
            features: vec!["a".into(), "b".into()],
            outliers: Some(OutlierRecord::IsolationForest { model: "if.onnx".into(), offset: -0.5 }),
            drift: Some(DriftRecord {
                window: 10,
                alpha: 0.05,
                columns: vec![vec![1.0, 2.0], vec![3.0, 4.0]],
            }),
        };
        let json = serde_json::to_string(&record).unwrap();
        assert!(json.contains("\"method\":\"isolation_forest\""), "{json}");
        assert_eq!(serde_json::from_str::<MonitoringRecord>(&json).unwrap(), record);
        assert_eq!(record.drift.unwrap().rows(), Some((vec![1.0, 3.0, 2.0, 4.0], 2)));
        assert_eq!(subsample(5, 10), vec![0, 1, 2, 3, 4]);
        assert_eq!(subsample(10, 4), vec![0, 2, 5, 7]);
    }
}
