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
//! * [`IsolationForest`]: scikit-learn's IsolationForest `score_samples`, in one pass over
//!   a compact forest (the runtime reads the trees out of a skl2onnx export, whose own
//!   graph runs one operator per tree and about 27 elementwise nodes per tree).
//!
//! Every function that takes rows or sizes from outside returns an [`ExplainError`] rather
//! than panicking, and checks sizes against a limit before reserving memory.
//!
//! ```
//! use palisade_explain::{KernelShap, KernelShapOptions, TreeEnsemble, TreeShap, covers_from_background};
//! use palisade_onnx_ml::{
//!     Aggregate, LeafAttributes, NodeAttributes, NodeMode, PostTransform, RegressorAttributes,
//!     TreeEnsembleRegressor,
//! };
//!
//! // One stump: feature 0 <= 0.5 gives 1.0, otherwise 3.0.
//! let model = TreeEnsembleRegressor::new(RegressorAttributes {
//!     nodes: NodeAttributes {
//!         tree_ids: vec![0, 0, 0],
//!         node_ids: vec![0, 1, 2],
//!         feature_ids: vec![0, 0, 0],
//!         values: vec![0.5, 0.0, 0.0],
//!         modes: vec![NodeMode::BranchLeq, NodeMode::Leaf, NodeMode::Leaf],
//!         true_node_ids: vec![1, 0, 0],
//!         false_node_ids: vec![2, 0, 0],
//!         missing_value_tracks_true: vec![],
//!     },
//!     leaves: LeafAttributes { tree_ids: vec![0, 0], node_ids: vec![1, 2], ids: vec![0, 0], weights: vec![1.0, 3.0] },
//!     n_targets: 1,
//!     base_values: vec![],
//!     post_transform: PostTransform::None,
//!     aggregate_function: Aggregate::Sum,
//! })?;
//! let ensemble = TreeEnsemble::from_regressor(&model)?;
//! // Background: three rows go left, one goes right (2 features each).
//! let background = [0.0, 9.0, 0.1, 9.0, 0.2, 9.0, 0.9, 9.0];
//! let covers = covers_from_background(&ensemble, &background, 4, 2)?;
//! let shap = TreeShap::new(ensemble, &covers)?;
//! let e = shap.explain(&[0.9, 0.0], 1, 2)?;
//! assert_eq!(e.expected_value, vec![1.5]); // (1 + 1 + 1 + 3) / 4
//! assert_eq!(e.value(0, 0, 0), Some(1.5)); // feature 0 moves 1.5 to 3.0
//! assert_eq!(e.value(0, 0, 1), Some(0.0)); // feature 1 is never read
//! assert_eq!(e.margins, vec![3.0]);
//!
//! // KernelSHAP on any model: here f(x) = 2·x0 + x0·x1, one call for the whole batch.
//! let kernel = KernelShap::new(vec![0.0, 0.0, 1.0, 1.0], 2, 2, KernelShapOptions::default())?;
//! let e = kernel.explain(&[1.0, 2.0], 1, |rows: &[f32], n: usize| {
//!     let out: Vec<f64> = rows.chunks_exact(2).map(|x| f64::from(2.0 * x[0] + x[0] * x[1])).collect();
//!     assert_eq!(out.len(), n);
//!     Ok::<_, std::convert::Infallible>(out)
//! })?;
//! let sum: f64 = e.explanation.shap_values.iter().sum::<f64>() + e.explanation.expected_value[0];
//! assert!((sum - 4.0).abs() < 1e-12 && e.exact);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What is explained
//!
//! TreeSHAP explains the tree ensemble's **raw margin**, as shap does for tree models: the
//! scores before `LOGISTIC`, `SOFTMAX` or `PROBIT` (log-odds for a boosted binary
//! classifier, per-class scores for a multiclass one, averaged probabilities for a random
//! forest, the prediction for a regressor). [`TreeShap::post_transform`] says which
//! transform the model applies after it. KernelSHAP explains whatever the model closure
//! returns (usually the probabilities the model serves).
//!
//! # Wiring (for the server and `palisade build`)
//!
//! * **`palisade build`** with `explainer.type: TreeShap`: read the background file and check
//!   it against the signature; take the model's `TreeEnsembleClassifier`/`Regressor` node
//!   (the runtime parses it into onnx-ml, with the per-feature preprocessing before the
//!   trees; the background and the explained rows are transformed the same way first), build a
//!   [`TreeEnsemble`] (refusals are [`ExplainError::Unsupported`]), compute
//!   [`covers_from_background`] and store [`Covers::counts`] in the bundle (one `f64` per
//!   `nodes_*` attribute entry, in attribute order), covered by the bundle digest. With
//!   `KernelShap`: store the background rows (few: each costs `2^M` model rows per explained
//!   row). With `monitoring.outliers.method: mahalanobis`: [`Mahalanobis::fit`] on the
//!   reference, store [`Mahalanobis::mean`], [`Mahalanobis::inverse_covariance`] and the
//!   threshold from [`Mahalanobis::quantile_of_reference`]. With `monitoring.drift`: store
//!   the reference rows (at most [`EXACT_MAX_N`], subsampled with a fixed seed).
//! * **Load** (`palisade serve`): rebuild the [`TreeEnsemble`] from the prepared model,
//!   [`Covers::from_counts`] (refuses counts that do not belong to the trees), then
//!   [`TreeShap::new`] once per model version; [`KernelShap::new`],
//!   [`Mahalanobis::from_parts`], [`DriftMonitor::new`]. All but the drift monitor are
//!   immutable and `Send + Sync`: share them in an `Arc` next to the prepared model.
//! * **Explain** (`POST .../explain`, after authorization on the explain path): on an
//!   inference thread, never on the async runtime. TreeSHAP: [`TreeShap::explain`] on the
//!   request's rows. KernelSHAP: [`KernelShap::explain`] with a closure that runs the model
//!   **once** on the whole synthetic batch (the engine's `infer` on
//!   `n_rows × KernelShap::evaluations_per_row` rows); check
//!   [`KernelShapOptions::max_batch_values`] against the server's limits, and refuse a
//!   request whose batch would pass it (the error says so before anything is allocated).
//!   The [`Explanation`] maps onto Alibi's shape: `data.shap_values` is one
//!   `rows × features` matrix per output (`shap_values` is laid out `[output][row][feature]`),
//!   `data.expected_value` is [`Explanation::expected_value`], `data.raw.prediction` the
//!   model's served prediction (run it as for `infer`).
//! * **Outliers**: after each prediction, on the inference thread, [`Mahalanobis::scores`]
//!   on the request's rows (O(features²) per row) → `parameters.outlier_score`, and
//!   `is_outlier` when above the stored threshold. An IsolationForest recognized in its
//!   skl2onnx export: [`IsolationForest::score_samples`]; one that is not: its graph on the
//!   engine.
//! * **Drift**: a [`DriftMonitor`] per model behind a mutex; push each request's rows
//!   (cheap copy into the ring); for `GET .../drift` and the Prometheus gauges, clone the
//!   monitor under the lock (bounded: window × features) and call
//!   [`DriftMonitor::report`] outside it, off the async runtime.

mod drift;
mod ensemble;
mod error;
mod isolation_forest;
mod kernel_shap;
mod leaf_tables;
mod linalg;
mod mahalanobis;
mod rng;
mod tree_shap;

pub use drift::{DriftMonitor, DriftReport, EXACT_MAX_N, FeatureDrift, KsResult, ks_2samp};
pub use ensemble::{MAX_DEPTH, TreeEnsemble};
pub use error::{ExplainError, MAX_ELEMENTS};
pub use isolation_forest::{
    IsolationForest, IsolationNode, IsolationTree, MAX_FOREST_NODES, average_path_length,
};
pub use kernel_shap::{EXACT_MAX_FEATURES, KernelExplanation, KernelShap, KernelShapOptions, MAX_SAMPLES};
pub use leaf_tables::MAX_TABLE_ENTRIES;

pub use mahalanobis::{Inverse, Mahalanobis};
pub use tree_shap::{Covers, Explanation, TreeShap, covers_from_background};

/// Converts an ensemble node index (below onnx-ml's node limit of 2^31) to `u32`.
fn ensemble_index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}
