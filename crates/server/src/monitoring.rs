//! Monitoring of a model's inputs (docs/monitoring.md): an outlier score for every row of
//! every prediction (`parameters.outlier_score`, `is_outlier`, the audit record, the
//! `palisade_outlier_score` histogram), and drift of a bounded window of recent rows
//! against reference data (`GET /v2/models/NAME[/versions/V]/drift`, the
//! `palisade_drift_p_value` gauges).
//!
//! `palisade build` fits everything ([`build_record`]): the Mahalanobis mean, inverse
//! covariance and threshold, the drift reference's sorted samples; serving only scores.
//! The request context resolved the route and the model; a drift report is authorized on
//! its own path (`/v2/models/NAME/drift`) and audited like every model route.

use std::path::Path;
use std::sync::{Arc, Mutex};

use palisade_bundle::explainer::{self, Background};
use palisade_bundle::manifest::{MonitoringSection, OutliersSection};
use palisade_bundle::monitoring::{
    DriftRecord, MAX_DRIFT_REFERENCE_ROWS, MonitoringRecord, OutlierRecord, subsample,
};
use palisade_core::{DataType, Dim, ModelSignature, Tensor, TensorData};
use palisade_explain::{DriftMonitor, DriftReport, Inverse, IsolationForest, Mahalanobis};
use palisade_runtime::Model;
use palisade_runtime::onnx::isolation_forest::{NativeIsolationForest, recognize_isolation_forest};
use serde_json::{Value, json};

use crate::ApiError;
pub use crate::explain::BuildRefusal;

/// Most scores one audit record keeps (the first rows'); the record always counts them all.
pub const MAX_AUDITED_SCORES: usize = 1000;

/// Above this many multiply-adds (rows × features²), Mahalanobis scores are computed off the
/// async runtime.
const INLINE_SCORE_COST: usize = 1 << 18;

/// Above this many forest nodes times rows (a bound on the node visits), native
/// IsolationForest scores are computed off the async runtime.
const INLINE_FOREST_COST: usize = 1 << 20;

/// A model version's monitoring, loaded once with the model (shared; the drift window
/// behind its own lock).
pub struct Monitor {
    features: Vec<String>,
    outliers: Option<Outliers>,
    drift: Option<Drift>,
}

enum Outliers {
    Mahalanobis {
        scorer: Arc<Mahalanobis>,
        threshold: f64,
    },
    /// An IsolationForest recognized in its skl2onnx export, scored natively.
    NativeForest {
        forest: Arc<IsolationForest>,
        offset: f64,
    },
    /// An IsolationForest export not recognized exactly: its graph, run on the engine.
    Forest {
        model: Arc<dyn Model>,
        /// The forest's input name and datatype.
        input: (String, DataType),
        /// The index of its `scores` output (`decision_function`).
        output: usize,
        offset: f64,
    },
}

struct Drift {
    window: Mutex<DriftMonitor>,
    alpha: f64,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("features", &self.features.len())
            .field("outliers", &self.outliers.is_some())
            .field("drift", &self.drift.is_some())
            .finish()
    }
}

/// One prediction's outlier scores, one per row.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierFacts {
    /// The scores (Mahalanobis: a distance, higher is more abnormal; IsolationForest:
    /// scikit-learn's `score_samples`, lower is more abnormal). NaN for a row with NaN.
    pub scores: Vec<f64>,
    /// Whether each row is an outlier (a NaN score is one).
    pub is_outlier: Vec<bool>,
}

impl OutlierFacts {
    /// `parameters.outlier_score` / `is_outlier` as JSON (NaN as `null`).
    pub fn json(&self) -> (Value, Value) {
        let scores =
            self.scores.iter().map(|&s| serde_json::Number::from_f64(s).map_or(Value::Null, Value::Number));
        (Value::Array(scores.collect()), json!(self.is_outlier))
    }

    /// What the audit record keeps.
    pub fn audit(&self) -> palisade_audit::Outliers {
        palisade_audit::Outliers {
            rows: self.scores.len() as u64,
            outlier_rows: self.is_outlier.iter().filter(|o| **o).count() as u64,
            scores: self
                .scores
                .iter()
                .take(MAX_AUDITED_SCORES)
                .map(|s| s.is_finite().then_some(*s))
                .collect(),
        }
    }
}

/// The rows of a prediction's inputs, as monitoring reads them: the model's one input
/// of `[N, M]` numeric features, as `f32`.
pub struct Rows {
    values: Vec<f32>,
    n: usize,
}

impl Monitor {
    /// Rebuilds what `palisade build` recorded; `bundle_dir` holds the IsolationForest model.
    pub fn load(record: &MonitoringRecord, bundle_dir: &Path) -> Result<Monitor, String> {
        let n_features = record.features.len();
        let outliers = match &record.outliers {
            None => None,
            Some(OutlierRecord::Mahalanobis { mean, inverse, threshold, .. }) => {
                if mean.len() != n_features {
                    return Err(format!("the outlier mean has {} features, not {n_features}", mean.len()));
                }
                let scorer =
                    Mahalanobis::from_parts(mean.clone(), inverse.clone()).map_err(|e| e.to_string())?;
                Some(Outliers::Mahalanobis { scorer: Arc::new(scorer), threshold: *threshold })
            }
            Some(OutlierRecord::IsolationForest { model, offset }) => {
                let path = palisade_bundle::manifest::BundlePath::new(model)
                    .map_err(|e| format!("the outlier model's path: {e}"))?
                    .under(bundle_dir);
                let bytes = std::fs::read(&path)
                    .map_err(|e| format!("cannot read the outlier model {}: {e}", path.display()))?;
                match native_forest(&bytes, n_features) {
                    Ok(native) => {
                        Some(Outliers::NativeForest { forest: Arc::new(native.forest), offset: *offset })
                    }
                    Err(reason) => {
                        tracing::info!(model = %model, %reason, "IsolationForest not recognized: its graph runs on the engine");
                        let loaded = palisade_runtime::onnx::OnnxModel::from_bytes(&path, &bytes)
                            .map_err(|e| e.to_string())?;
                        let (input, output) = forest_interface(loaded.signature(), n_features)?;
                        Some(Outliers::Forest { model: Arc::new(loaded), input, output, offset: *offset })
                    }
                }
            }
        };
        let drift = match &record.drift {
            None => None,
            Some(drift) => {
                let (rows, n) = drift.rows().ok_or("the drift reference's columns differ in length")?;
                let monitor =
                    DriftMonitor::new(&rows, n, n_features, drift.window).map_err(|e| e.to_string())?;
                Some(Drift { window: Mutex::new(monitor), alpha: drift.alpha })
            }
        };
        Ok(Monitor { features: record.features.clone(), outliers, drift })
    }

    /// The feature names.
    pub fn features(&self) -> &[String] {
        &self.features
    }

    /// Whether outliers are scored.
    pub fn scores_outliers(&self) -> bool {
        self.outliers.is_some()
    }

    /// How outliers are scored: `mahalanobis`, `isolation_forest (native)` or
    /// `isolation_forest (graph)`; `None` without `monitoring.outliers`.
    pub fn outlier_method(&self) -> Option<&'static str> {
        self.outliers.as_ref().map(|o| match o {
            Outliers::Mahalanobis { .. } => "mahalanobis",
            Outliers::NativeForest { .. } => "isolation_forest (native)",
            Outliers::Forest { .. } => "isolation_forest (graph)",
        })
    }

    /// Whether drift is tested.
    pub fn tests_drift(&self) -> bool {
        self.drift.is_some()
    }

    /// The rows of `inputs` if they are the monitored features (one `[N, M]` numeric
    /// tensor); `None` otherwise (the model's input check refuses such requests).
    pub fn rows(&self, inputs: &[Tensor]) -> Option<Rows> {
        let [input] = inputs else { return None };
        let [n, m] = input.shape() else { return None };
        if *m != self.features.len() {
            return None;
        }
        let values = match input.data() {
            TensorData::Fp32(v) => v.clone(),
            TensorData::Fp64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::Int32(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::Int64(v) => v.iter().map(|&x| x as f32).collect(),
            _ => return None,
        };
        Some(Rows { values, n: *n })
    }

    /// Adds the rows to the drift window. The lock is held for a copy of the rows (at
    /// most the window); a report copies the window under it and tests outside it.
    pub fn push(&self, rows: &Rows) {
        if let Some(drift) = &self.drift
            && let Ok(mut window) = drift.window.lock()
        {
            // Shapes were checked when the rows were taken.
            let _ = window.push(&rows.values, rows.n);
        }
    }

    /// The outlier scores of the rows: Mahalanobis and a recognized IsolationForest on the
    /// request's task (off it for large requests), an IsolationForest graph on the engine's
    /// threads.
    pub(crate) async fn score(
        &self,
        state: &crate::AppState,
        rows: Rows,
    ) -> Result<Option<OutlierFacts>, ApiError> {
        let Some(outliers) = &self.outliers else { return Ok(None) };
        let m = self.features.len();
        match outliers {
            Outliers::Mahalanobis { scorer, threshold } => {
                let threshold = *threshold;
                let compute = {
                    let scorer = scorer.clone();
                    move || -> Result<OutlierFacts, String> {
                        let mut scores = vec![0.0f64; rows.n];
                        scorer.scores(&rows.values, rows.n, &mut scores).map_err(|e| e.to_string())?;
                        // A NaN score (a row with NaN) is an outlier, never an inlier.
                        let is_outlier = scores.iter().map(|s| s.is_nan() || *s > threshold).collect();
                        Ok(OutlierFacts { scores, is_outlier })
                    }
                };
                let facts = if rows.n.saturating_mul(m).saturating_mul(m) <= INLINE_SCORE_COST {
                    compute()
                } else {
                    tokio::task::spawn_blocking(compute)
                        .await
                        .map_err(|e| ApiError::Internal(format!("outlier scores: {e}")))?
                };
                facts.map(Some).map_err(ApiError::Internal)
            }
            Outliers::NativeForest { forest, offset } => {
                let offset = *offset;
                let compute = {
                    let forest = forest.clone();
                    move || -> Result<OutlierFacts, String> {
                        let mut scores = vec![0.0f64; rows.n];
                        forest.score_samples(&rows.values, rows.n, &mut scores).map_err(|e| e.to_string())?;
                        // scikit-learn's `predict`: an outlier when `decision_function < 0`.
                        let is_outlier = scores.iter().map(|s| s.is_nan() || *s < offset).collect();
                        Ok(OutlierFacts { scores, is_outlier })
                    }
                };
                let facts = if forest.cost(rows.n) <= INLINE_FOREST_COST {
                    compute()
                } else {
                    tokio::task::spawn_blocking(compute)
                        .await
                        .map_err(|e| ApiError::Internal(format!("outlier scores: {e}")))?
                };
                facts.map(Some).map_err(ApiError::Internal)
            }
            Outliers::Forest { model, input, output, offset } => {
                let data = match input.1 {
                    DataType::Fp64 => TensorData::Fp64(rows.values.iter().map(|&x| f64::from(x)).collect()),
                    _ => TensorData::Fp32(rows.values),
                };
                let tensor = Tensor::new(input.0.clone(), vec![rows.n, m], data)
                    .map_err(|e| ApiError::Internal(format!("outlier scores: {e}")))?;
                let timeout = state.inner.dispatcher.timeout();
                let done = tokio::time::timeout(timeout, state.engine().infer(model.clone(), vec![tensor]))
                    .await
                    .map_err(|_| ApiError::Timeout(timeout))??;
                let scores = done
                    .outputs
                    .get(*output)
                    .map(|t| match t.data() {
                        TensorData::Fp32(v) => {
                            Ok(v.iter().map(|&x| f64::from(x) + offset).collect::<Vec<_>>())
                        }
                        TensorData::Fp64(v) => Ok(v.iter().map(|&x| x + offset).collect()),
                        _ => Err(ApiError::Internal("the outlier model's scores are not floats".to_owned())),
                    })
                    .transpose()?
                    .filter(|s| s.len() == rows.n)
                    .ok_or_else(|| {
                        ApiError::Internal("the outlier model answered no score per row".to_owned())
                    })?;
                // scikit-learn's `predict`: an outlier when `decision_function < 0`.
                let is_outlier = scores.iter().map(|s| s.is_nan() || *s < *offset).collect();
                Ok(Some(OutlierFacts { scores, is_outlier }))
            }
        }
    }

    /// The drift report of the window as it is now: the window copied under its lock,
    /// tested outside it. `None` without `monitoring.drift`.
    pub fn report(&self) -> Option<Result<(DriftReport, f64, usize), String>> {
        let drift = self.drift.as_ref()?;
        let window = match drift.window.lock() {
            Ok(w) => w.clone(),
            Err(_) => return Some(Err("the drift window is unavailable".to_owned())),
        };
        Some(
            window
                .report(drift.alpha)
                .map(|r| (r, drift.alpha, window_capacity(&window)))
                .map_err(|e| e.to_string()),
        )
    }
}

fn window_capacity(window: &DriftMonitor) -> usize {
    window.window_capacity()
}

/// The input and `scores` output of a skl2onnx IsolationForest taking `n_features`.
fn forest_interface(
    signature: &ModelSignature,
    n_features: usize,
) -> Result<((String, DataType), usize), String> {
    let [input] = &signature.inputs[..] else {
        return Err(format!(
            "it has {} inputs; a skl2onnx IsolationForest has one (rows of features)",
            signature.inputs.len()
        ));
    };
    if !matches!(input.datatype, DataType::Fp32 | DataType::Fp64) {
        return Err(format!("its input `{}` is {}, not FP32 or FP64", input.name, input.datatype.as_str()));
    }
    match input.shape[..] {
        [_, Dim::Fixed(m)] if m != n_features as u64 => {
            return Err(format!(
                "its input `{}` takes {m} features per row; the model takes {n_features}",
                input.name
            ));
        }
        [_, _] => {}
        _ => {
            return Err(format!("its input `{}` has shape {:?}, not [-1, M]", input.name, input.shape_i64()));
        }
    }
    let output = signature
        .outputs
        .iter()
        .position(|o| o.name == "scores" && matches!(o.datatype, DataType::Fp32 | DataType::Fp64))
        .ok_or_else(|| {
            let names: Vec<&str> = signature.outputs.iter().map(|o| o.name.as_str()).collect();
            format!("it has no float output `scores` (its outputs are {names:?}); export the IsolationForest with skl2onnx")
        })?;
    Ok(((input.name.clone(), input.datatype), output))
}

/// The IsolationForest of a skl2onnx export, if it is recognized exactly and takes
/// `n_features`; otherwise why not.
fn native_forest(bytes: &[u8], n_features: usize) -> Result<NativeIsolationForest, String> {
    let native = recognize_isolation_forest(bytes)?;
    if native.forest.n_features() != n_features {
        return Err(format!(
            "it takes {} features per row; the model takes {n_features}",
            native.forest.n_features()
        ));
    }
    Ok(native)
}

/// The model's number of features: its one input is `[-1, M]`.
fn model_features(signature: &ModelSignature) -> Option<usize> {
    match signature.inputs.as_slice() {
        [input] => match input.shape[..] {
            [_, Dim::Fixed(m)] => usize::try_from(m).ok(),
            _ => None,
        },
        _ => None,
    }
}

/// What `palisade build` stores for `monitoring:`: reads each reference file's bytes
/// (from `reference(field)`), checks them against the model's signature (feature count,
/// datatypes, finite values; the same feature names in both references when both have a
/// header), fits the Mahalanobis scorer and its threshold or checks the IsolationForest
/// model (`forest`, the staged file), and sorts the drift reference per feature. Returns the
/// record and notes for the build's output.
pub fn build_record(
    section: &MonitoringSection,
    reference: &dyn Fn(&'static str) -> Option<Vec<u8>>,
    forest: Option<&Path>,
    signature: &ModelSignature,
) -> Result<(MonitoringRecord, Vec<String>), BuildRefusal> {
    let refuse = |field, message: String, hint| BuildRefusal { field, message, hint };
    let hint = "a reference is a CSV file whose first line names the features (then one row of model inputs per line, in the model's order), or a 2-D .npy array; see docs/monitoring.md";
    let read = |field: &'static str, path: &str| -> Result<Background, BuildRefusal> {
        let bytes = reference(field).ok_or_else(|| refuse(field, "it was not read".to_owned(), hint))?;
        let background = Background::parse(path, &bytes).map_err(|m| refuse(field, m, hint))?;
        explainer::check_background(&background, signature)
            .map_err(|m| refuse(field, m.replace("explainers need", "monitoring needs"), hint))?;
        if let Some(at) = background.values.iter().position(|v| !v.is_finite()) {
            let n = background.features.len();
            return Err(refuse(
                field,
                format!(
                    "row {}, feature `{}` is missing (NaN) or infinite; a reference holds complete rows",
                    at / n + 1,
                    background.features[at % n]
                ),
                hint,
            ));
        }
        Ok(background)
    };
    let mut notes = Vec::new();
    let mut features: Option<(Vec<String>, &'static str)> = None;
    let mut agree = |field: &'static str, names: &[String], path: &str| -> Result<(), BuildRefusal> {
        let named = !path.to_ascii_lowercase().ends_with(".npy");
        match &features {
            Some((known, by)) if named && known != names => Err(refuse(
                field,
                format!("its header names the features {names:?}, but `{by}` names them {known:?}"),
                "give every reference file the same header (the model's features, in its order)",
            )),
            Some(_) => Ok(()),
            None => {
                if named || model_features(signature).is_some() {
                    features = Some((names.to_vec(), field));
                }
                Ok(())
            }
        }
    };
    let outliers = match &section.outliers {
        None => None,
        Some(OutliersSection::Mahalanobis { reference, quantile }) => {
            let field = "monitoring.outliers.reference";
            let background = read(field, reference.as_str())?;
            agree(field, &background.features, reference.as_str())?;
            let rows: Vec<f32> = background.values.iter().map(|&v| v as f32).collect();
            let m = background.features.len();
            let scorer = Mahalanobis::fit(&rows, background.n_rows, m, Inverse::default())
                .map_err(|e| refuse(field, e.to_string(), hint))?;
            let threshold = scorer
                .quantile_of_reference(&rows, background.n_rows, *quantile)
                .map_err(|e| refuse("monitoring.outliers.quantile", e.to_string(), hint))?;
            notes.push(format!(
                "outliers: Mahalanobis over {} reference rows, threshold {threshold:.4} (quantile {quantile})",
                background.n_rows
            ));
            Some(OutlierRecord::Mahalanobis {
                mean: scorer.mean().to_vec(),
                inverse: scorer.inverse_covariance().to_vec(),
                threshold,
                quantile: *quantile,
                reference_rows: background.n_rows as u64,
            })
        }
        Some(OutliersSection::IsolationForest { model, offset }) => {
            let field = "monitoring.outliers.model";
            let forest_hint = "export the fitted IsolationForest with skl2onnx (to_onnx(forest, X[:1].astype(numpy.float32))); see docs/monitoring.md";
            let path = forest.ok_or_else(|| refuse(field, "it was not staged".to_owned(), forest_hint))?;
            let loaded = palisade_runtime::onnx::OnnxModel::load(path)
                .map_err(|e| refuse(field, e.to_string(), forest_hint))?;
            let m = model_features(signature).ok_or_else(|| {
                refuse(field, "the model does not take one input of [-1, M] features".to_owned(), forest_hint)
            })?;
            forest_interface(loaded.signature(), m).map_err(|e| refuse(field, e, forest_hint))?;
            let bytes = std::fs::read(path).map_err(|e| refuse(field, e.to_string(), forest_hint))?;
            let how = match native_forest(&bytes, m) {
                Ok(native) => {
                    // The export adds -offset_ to score_samples (rounded to its float type).
                    let shift = native.decision_shift;
                    if shift != -offset && shift != f64::from(-*offset as f32) {
                        return Err(refuse(
                            "monitoring.outliers.offset",
                            format!(
                                "it is {offset}, but the exported forest was fitted with offset_ = {}",
                                -shift as f32
                            ),
                            "set `offset` to the fitted forest's `offset_` (print(forest.offset_)): it decides which rows are outliers",
                        ));
                    }
                    format!("scored natively, {} trees", native.forest.n_trees())
                }
                Err(reason) => format!("scored by running its graph: not recognized exactly ({reason})"),
            };
            notes.push(format!("outliers: IsolationForest {} (offset {offset}), {how}", model.as_str()));
            Some(OutlierRecord::IsolationForest { model: model.as_str().to_owned(), offset: *offset })
        }
    };
    let drift = match &section.drift {
        None => None,
        Some(drift) => {
            let field = "monitoring.drift.reference";
            let background = read(field, drift.reference.as_str())?;
            agree(field, &background.features, drift.reference.as_str())?;
            let m = background.features.len();
            let keep = subsample(background.n_rows, MAX_DRIFT_REFERENCE_ROWS);
            let mut columns = vec![Vec::with_capacity(keep.len()); m];
            for &row in &keep {
                for (k, column) in columns.iter_mut().enumerate() {
                    column.push(background.values[row * m + k] as f32);
                }
            }
            columns.iter_mut().for_each(|c| c.sort_by(f32::total_cmp));
            notes.push(format!(
                "drift: {} reference rows{}, window {} rows, alpha {}",
                keep.len(),
                if keep.len() < background.n_rows { " (an even subsample)" } else { "" },
                drift.window,
                drift.alpha
            ));
            if features.is_none() {
                features = Some((background.features.clone(), field));
            }
            Some(DriftRecord { window: drift.window, alpha: drift.alpha, columns })
        }
    };
    let features = match features {
        Some((names, _)) => names,
        None => (0..model_features(signature).unwrap_or(0)).map(|i| format!("x{i}")).collect(),
    };
    Ok((MonitoringRecord { features, outliers, drift }, notes))
}

/// 501 for a model without `monitoring.drift`.
fn no_drift(served: &crate::ServedModel) -> ApiError {
    ApiError::NotImplemented(format!(
        "model `{}` version `{}` has no drift monitor: declare `monitoring.drift` in its palisade.yaml and build it again (see docs/monitoring.md)",
        served.id.name, served.id.version
    ))
}

/// `GET /v2/models/{model}[/versions/{version}]/drift`: per feature, the two-sample
/// Kolmogorov-Smirnov test of the window against the reference, Bonferroni corrected.
pub(crate) async fn drift(
    state: &crate::AppState,
    served: &Arc<crate::ServedModel>,
) -> Result<Value, ApiError> {
    let Some(monitor) = served.monitor.clone().filter(|m| m.tests_drift()) else {
        return Err(no_drift(served));
    };
    let report = tokio::task::spawn_blocking(move || {
        let report = monitor.report();
        (monitor, report)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("drift report: {e}")))?;
    let (monitor, report) = report;
    let (report, alpha, window) = report.ok_or_else(|| no_drift(served))?.map_err(ApiError::Internal)?;
    state.metrics().set_drift(
        served.id.name.as_str(),
        served.id.version.as_str(),
        monitor.features(),
        &report,
    );
    Ok(report_json(served, &monitor, &report, alpha, window))
}

fn report_json(
    served: &crate::ServedModel,
    monitor: &Monitor,
    report: &DriftReport,
    alpha: f64,
    window: usize,
) -> Value {
    let number = |x: f64| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number);
    let features: Vec<Value> = monitor
        .features
        .iter()
        .zip(&report.features)
        .map(|(name, f)| {
            json!({
                "name": name,
                "statistic": number(f.test.statistic),
                "p_value": number(f.test.p_value),
                "corrected_p_value": number(f.corrected_p_value),
                "drift": f.drifted,
                "window_values": f.window_values,
            })
        })
        .collect();
    json!({
        "model_name": served.id.name.as_str(),
        "model_version": served.id.version.as_str(),
        "test": "ks_2samp",
        "correction": "bonferroni",
        "alpha": alpha,
        "window": window,
        "window_rows": report.window_rows,
        "drift": report.drift,
        "features": features,
    })
}

/// Reports of every served model with drift, for the gauges (off the async runtime).
pub(crate) fn refresh_gauges(registry: &crate::Registry, metrics: &crate::metrics::Metrics) {
    for served in registry.all() {
        if let Some(monitor) = &served.monitor
            && let Some(Ok((report, _, _))) = monitor.report()
        {
            metrics.set_drift(
                served.id.name.as_str(),
                served.id.version.as_str(),
                monitor.features(),
                &report,
            );
        }
    }
}
