//! Explanations and monitoring math for Palisade, as a pure library (no I/O, no async):
//!
//! * [`TreeShap`]: exact path-dependent TreeSHAP over the tree ensembles
//!   `palisade-onnx-ml` evaluates ([`TreeEnsemble`]), with node covers computed from
//!   background rows ([`covers_from_background`]), explaining the raw margin;
//! * [`KernelShap`]: model-agnostic Shapley values of the interventional game over a
//!   background, exact for up to [`EXACT_MAX_FEATURES`] features, sampled (seeded, with an
//!   error estimate) above;
//! * [`Mahalanobis`]: outlier scores against reference rows, with a threshold at a quantile
//!   of the reference's own scores;
//! * [`ks_2samp`] and [`DriftMonitor`]: two-sample Kolmogorov-Smirnov tests (exact p-values
//!   for the sample sizes scipy computes exactly) over a bounded sliding window, per feature,
//!   Bonferroni corrected.
//!
//! IsolationForest scores need nothing here: skl2onnx exports the fitted IsolationForest as
//! an ONNX graph of tree ensembles that Palisade already runs; its output is the score.
//!
//! Every function that takes rows or sizes from outside returns an [`ExplainError`] rather
//! than panicking, and checks sizes against a limit before reserving memory.
//!
//! # Wiring (for the server and `palisade build`)
//!
//! * Build: parse the model's tree-ensemble node with onnx-ml, make a [`TreeEnsemble`],
//!   compute [`covers_from_background`] from the background file, and store
//!   [`Covers::counts`] (attribute order) in the bundle. For KernelSHAP store the background
//!   rows; for Mahalanobis store [`Mahalanobis::mean`], the inverse and the threshold (or the
//!   reference rows); for drift, the reference columns.
//! * Serve: load once ([`Covers::from_counts`] checks the counts belong to the model), keep
//!   the [`TreeShap`] / [`KernelShap`] / [`Mahalanobis`] next to the prepared model (all
//!   `Send + Sync`), and call them on the inference threads, never on the async runtime.

mod drift;
mod ensemble;
mod error;
mod kernel_shap;
mod leaf_tables;
mod linalg;
mod mahalanobis;
mod rng;
mod tree_shap;

pub use drift::{DriftMonitor, DriftReport, EXACT_MAX_N, FeatureDrift, KsResult, ks_2samp};
pub use ensemble::{MAX_DEPTH, TreeEnsemble};
pub use error::{ExplainError, MAX_ELEMENTS};
pub use kernel_shap::{EXACT_MAX_FEATURES, KernelExplanation, KernelShap, KernelShapOptions};
pub use leaf_tables::MAX_TABLE_ENTRIES;

pub use mahalanobis::{Inverse, Mahalanobis};
pub use tree_shap::{Covers, Explanation, TreeShap, covers_from_background};

/// Converts an ensemble node index (below onnx-ml's node limit of 2^31) to `u32`.
fn ensemble_index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}
