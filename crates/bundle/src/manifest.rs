//! `palisade.yaml`: what a data scientist writes next to a model file.
//!
//! ```yaml
//! name: iris                 # Kubernetes DNS label; also the V2 model name
//! version: "1.0.0"           # quoted: YAML reads 1.0 as a number
//! namespace: default         # optional, default `default`
//! description: Iris species  # optional
//! labels: {team: ml}         # optional, Kubernetes label syntax
//! owners: [alice@example.com, group:fraud-analysts, serviceaccount:billing/batch]
//! model:
//!   path: model.onnx         # relative to this file
//!   format: onnx
//!   inputs:                  # optional: inferred from the ONNX graph when absent
//!     - {name: X, datatype: FP32, shape: [-1, 4]}
//!   outputs: [...]           # optional, same form
//! batching:                  # optional: adaptive batching (see docs/manifest.md)
//!   max_batch_size: 32       # rows per batch
//!   max_latency_us: 500      # longest wait for a batch to fill
//!   queue_size: 1024         # requests waiting before 429
//! ```
//!
//! A model served by an upstream Open Inference Protocol server has no file; its interface
//! is declared:
//!
//! ```yaml
//! model:
//!   format: upstream
//!   upstream:
//!     url: https://mlserver.ml.svc:8443   # base URL, http or https
//!     model: iris-sklearn                 # optional: the name there (default `name`)
//!     tls: {ca: upstream-ca.pem, mutual: true}
//!   inputs:  [{name: X, datatype: FP64, shape: [-1, 4]}]
//!   outputs: [{name: predict, datatype: INT64, shape: [-1, 1]}]
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use palisade_core::{ModelName, ModelRef, Namespace, Owner, TensorSpec, Version};
use serde::{Deserialize, Deserializer, Serialize};

use crate::BundleError;
use crate::graph::{CallAs, GraphNode, Pipeline, Shadow, Sticky, TrafficArm};

/// The manifest's file name inside a model directory and a bundle.
pub const MANIFEST_FILE: &str = "palisade.yaml";

/// Largest manifest accepted, checked before parsing.
pub const MAX_MANIFEST_BYTES: usize = 256 * 1024;

/// A parsed, valid `palisade.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The model's name (a DNS label); the Open Inference Protocol model name.
    pub name: ModelName,
    /// The model's version; the Open Inference Protocol model version.
    #[serde(deserialize_with = "quoted_version")]
    pub version: Version,
    /// The namespace whose policies apply to the model.
    #[serde(default)]
    pub namespace: Namespace,
    /// Free text shown in `models show` and the API docs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Kubernetes-style labels, matched by policy selectors.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// Who owns the model: by default the only callers allowed.
    pub owners: Owners,
    /// The model file and its interface; absent in a bundle that serves other models
    /// (`graph:` or `traffic:`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelSection>,
    /// An inference graph over stored models (Seldon Core v1 syntax; see [`crate::graph`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<GraphNode>,
    /// Seldon Core 2's pipeline syntax over stored models (see [`crate::graph::Pipeline`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<Pipeline>,
    /// Weighted arms over stored model versions (a canary, an A/B test).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<Vec<TrafficArm>>,
    /// A model mirrored a share of the requests of the graph or traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Shadow>,
    /// What keeps a caller in one arm of `traffic:` and the random routers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<Sticky>,
    /// Whose authority a graph's nodes run with (default: the caller's).
    #[serde(default, rename = "callAs", skip_serializing_if = "CallAs::is_caller")]
    pub call_as: CallAs,
    /// A graph's inputs, when its first node does not determine them (a built-in
    /// transformer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<TensorSpec>>,
    /// What the audit log keeps of this model's requests (the platform's minimum wins).
    #[serde(default, skip_serializing_if = "AuditSection::is_default")]
    pub audit: AuditSection,
    /// Adaptive batching of this model's requests; off when absent (unless the platform
    /// sets a default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batching: Option<BatchingSection>,
    /// Limits of this model's requests, where they differ from the platform's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsSection>,
    /// SHAP explanations of this model's predictions (`POST .../explain`); none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explainer: Option<ExplainerSection>,
    /// Outlier scores and drift of this model's inputs (docs/monitoring.md); none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<MonitoringSection>,
}

/// The `monitoring:` section: outlier scores of every prediction's rows and drift of the
/// recent inputs against reference data (docs/monitoring.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitoringSection {
    /// Outlier scores (`parameters.outlier_score`, `is_outlier`) of every prediction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outliers: Option<OutliersSection>,
    /// Drift of a window of recent inputs against the reference (`GET .../drift`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftSection>,
}

/// How outlier scores are computed (`monitoring.outliers.method`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum OutliersSection {
    /// The Mahalanobis distance of each row to the reference's mean, under the
    /// (pseudo-)inverse of its covariance; an outlier above the `quantile` of the
    /// reference's own distances.
    Mahalanobis {
        /// Rows of model inputs (CSV with a header of feature names, or a 2-D `.npy`),
        /// relative to palisade.yaml.
        reference: BundlePath,
        /// The threshold, as a quantile of the reference's own scores (0 < q ≤ 1).
        #[serde(default = "default_quantile")]
        quantile: f64,
    },
    /// An IsolationForest exported by skl2onnx, scored in scikit-learn's `score_samples`
    /// convention (lower is more abnormal); an outlier below `offset`.
    IsolationForest {
        /// The skl2onnx export, relative to palisade.yaml; copied into the bundle.
        model: BundlePath,
        /// The fitted forest's `offset_` (-0.5 with `contamination='auto'`).
        #[serde(default = "default_offset")]
        offset: f64,
    },
}

fn default_quantile() -> f64 {
    0.99
}

fn default_offset() -> f64 {
    -0.5
}

/// `monitoring.drift`: per-feature Kolmogorov-Smirnov tests of a window of recent rows
/// against the reference, Bonferroni corrected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftSection {
    /// Rows of model inputs (CSV with a header of feature names, or a 2-D `.npy`),
    /// relative to palisade.yaml; at most 10,000 rows are kept (a fixed subsample above).
    pub reference: BundlePath,
    /// Rows of recent inputs tested (1 to 10,000).
    #[serde(default = "default_window")]
    pub window: usize,
    /// The family-wise significance level (0 < alpha < 1), divided among the features.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
}

fn default_window() -> usize {
    1000
}

fn default_alpha() -> f64 {
    0.05
}

/// Most rows `monitoring.drift.window` may keep.
pub const MAX_DRIFT_WINDOW: usize = 10_000;

impl MonitoringSection {
    /// Checks values serde cannot: ranges. Returns the field and the message.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        match &self.outliers {
            Some(OutliersSection::Mahalanobis { quantile, .. }) if !(*quantile > 0.0 && *quantile <= 1.0) => {
                return Err((
                    "monitoring.outliers.quantile",
                    format!(
                        "{quantile} is not in (0, 1]; 0.99 flags the 1% of reference rows that score highest"
                    ),
                ));
            }
            Some(OutliersSection::IsolationForest { offset, .. }) if !offset.is_finite() => {
                return Err((
                    "monitoring.outliers.offset",
                    "must be a finite number: the fitted forest's `offset_`".to_owned(),
                ));
            }
            _ => {}
        }
        if let Some(drift) = &self.drift {
            if !(1..=MAX_DRIFT_WINDOW).contains(&drift.window) {
                return Err((
                    "monitoring.drift.window",
                    format!("{} rows is out of range: use 1 to {MAX_DRIFT_WINDOW}", drift.window),
                ));
            }
            if !(drift.alpha > 0.0 && drift.alpha < 1.0) {
                return Err((
                    "monitoring.drift.alpha",
                    format!("{} is not in (0, 1); 0.05 is usual", drift.alpha),
                ));
            }
        }
        if self.outliers.is_none() && self.drift.is_none() {
            return Err((
                "monitoring",
                "it names neither `outliers` nor `drift`; add one, or remove `monitoring:`".to_owned(),
            ));
        }
        Ok(())
    }

    /// The files it names, with their fields: reference files (read at build, not
    /// copied) and the IsolationForest model (copied into the bundle).
    pub fn references(&self) -> Vec<(&'static str, &BundlePath)> {
        let mut out = Vec::new();
        if let Some(OutliersSection::Mahalanobis { reference, .. }) = &self.outliers {
            out.push(("monitoring.outliers.reference", reference));
        }
        if let Some(drift) = &self.drift {
            out.push(("monitoring.drift.reference", &drift.reference));
        }
        out
    }

    /// The IsolationForest model file, if outliers are scored by one.
    pub fn forest_model(&self) -> Option<&BundlePath> {
        match &self.outliers {
            Some(OutliersSection::IsolationForest { model, .. }) => Some(model),
            _ => None,
        }
    }
}

/// The `explainer:` section: which SHAP explainer serves `POST .../explain`, and the
/// background rows it is computed against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainerSection {
    /// `TreeShap` or `KernelShap`.
    #[serde(rename = "type")]
    pub kind: ExplainerKind,
    /// Rows of model inputs, relative to palisade.yaml: a CSV file whose header names the
    /// features, or a 2-D `.npy` array. `palisade build` reads it and stores what the
    /// explainer needs (TreeSHAP's node covers, KernelSHAP's rows) in the bundle.
    pub background: BundlePath,
}

/// The kinds of explainer (`explainer.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExplainerKind {
    /// Exact path-dependent TreeSHAP over the model's tree ensemble.
    TreeShap,
    /// Model-agnostic KernelSHAP (exact up to 12 features, sampled above).
    KernelShap,
}

impl ExplainerKind {
    /// The name as written in `palisade.yaml`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExplainerKind::TreeShap => "TreeShap",
            ExplainerKind::KernelShap => "KernelShap",
        }
    }
}

/// The `limits:` section: this model's own request limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitsSection {
    /// Largest request body, in bytes (1024 to 4 GiB), replacing the platform's body limit
    /// (`--max-body-bytes`, default 32 MiB) for this model's REST requests; bodies in flight
    /// still count against the server's budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    /// Each caller's rate limit for this model (see [`crate::rate`]). It can only tighten
    /// the platform's `limits.rate`: a looser value is clamped to the platform's at serve
    /// time, with a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<crate::rate::RateSection>,
}

/// The range of `limits.maxBodyBytes`.
pub const MAX_BODY_BYTES_RANGE: std::ops::RangeInclusive<u64> = 1024..=(4 << 30);

/// The `batching:` section: requests that arrive together run as one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchingSection {
    /// Most rows in one batch (1 to 65536); a larger request runs alone.
    pub max_batch_size: u32,
    /// Longest the oldest request of a batch waits for others, in microseconds (0 to
    /// 1000000; default 500).
    #[serde(default = "default_max_latency_us")]
    pub max_latency_us: u64,
    /// Requests that may wait for a batch before new ones get 429 (1 to 1000000; default
    /// 1024).
    #[serde(default = "default_queue_size")]
    pub queue_size: u32,
}

fn default_max_latency_us() -> u64 {
    500
}

fn default_queue_size() -> u32 {
    1024
}

impl BatchingSection {
    /// Checks the ranges; on error, the field (under `batching.`) and what is wrong.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(1..=65_536).contains(&self.max_batch_size) {
            return Err((
                "batching.max_batch_size",
                format!("{} is out of range: use 1 to 65536 rows", self.max_batch_size),
            ));
        }
        if self.max_latency_us > 1_000_000 {
            return Err((
                "batching.max_latency_us",
                format!(
                    "{} is out of range: use 0 to 1000000 microseconds (one second)",
                    self.max_latency_us
                ),
            ));
        }
        if !(1..=1_000_000).contains(&self.queue_size) {
            return Err((
                "batching.queue_size",
                format!("{} is out of range: use 1 to 1000000 requests", self.queue_size),
            ));
        }
        Ok(())
    }
}

/// The `audit:` section of the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// How much each record keeps (default `Metadata`: who, what, decision, outcome, payload
    /// sizes and digests; `Request`/`RequestResponse` add the redacted payloads).
    #[serde(default)]
    pub level: AuditLevel,
    /// Payload fields replaced by `[redacted]` at the payload levels, such as
    /// `inputs[*].data` (see docs/audit.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redact: Vec<String>,
}

impl AuditSection {
    fn is_default(&self) -> bool {
        self == &AuditSection::default()
    }
}

/// Audit levels, as in Kubernetes auditing, from least to most.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AuditLevel {
    /// No record (only effective when the platform's minimum allows it).
    None,
    /// Metadata only: the default.
    #[default]
    Metadata,
    /// Metadata and the redacted request payload.
    Request,
    /// Metadata and the redacted request and response payloads.
    RequestResponse,
}

/// The `model:` section of the manifest: what runs the model, and its interface.
///
/// Parsed from the flat YAML form (`path`, `format`, `upstream`, `inputs`, `outputs`) into a
/// value that cannot mix the two kinds: a model file has a `path` and no `upstream`; an
/// upstream model has `upstream`, declared `inputs` and `outputs`, and no `path`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawModelSection", into = "RawModelSection")]
pub struct ModelSection {
    /// What runs the model.
    pub source: ModelSource,
    /// Declared inputs; for a model file, inferred from the model when absent.
    pub inputs: Option<Vec<TensorSpec>>,
    /// Declared outputs; for a model file, inferred from the model when absent.
    pub outputs: Option<Vec<TensorSpec>>,
}

/// What runs a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// An ONNX file in the bundle, run in-process.
    Onnx {
        /// Path of the model file, relative to the manifest.
        path: BundlePath,
        /// The engine that runs it (`model.runtime`).
        runtime: EngineChoice,
    },
    /// An Open Inference Protocol (V2) server that Palisade calls on the caller's behalf.
    Upstream(Box<UpstreamSpec>),
}

/// Which engine runs an ONNX model (`model.runtime`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    /// tract (pure Rust, always available) where it prepares the model and passes the
    /// build-time self-test; onnxruntime otherwise, when its library is present.
    #[default]
    Auto,
    /// tract only.
    Tract,
    /// onnxruntime only (its library must be present at build and serve time).
    Onnxruntime,
}

impl EngineChoice {
    /// The value as written in `palisade.yaml`.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineChoice::Auto => "auto",
            EngineChoice::Tract => "tract",
            EngineChoice::Onnxruntime => "onnxruntime",
        }
    }

    fn is_auto(&self) -> bool {
        *self == EngineChoice::Auto
    }
}

/// A model format Palisade can serve (`model.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    /// ONNX, run in-process.
    Onnx,
    /// Served by an upstream Open Inference Protocol server (`model.upstream`).
    Upstream,
}

impl ModelSection {
    /// The model's format.
    pub fn format(&self) -> ModelFormat {
        match self.source {
            ModelSource::Onnx { .. } => ModelFormat::Onnx,
            ModelSource::Upstream(_) => ModelFormat::Upstream,
        }
    }

    /// The model file, for models run in-process.
    pub fn path(&self) -> Option<&BundlePath> {
        match &self.source {
            ModelSource::Onnx { path, .. } => Some(path),
            ModelSource::Upstream(_) => None,
        }
    }

    /// The engine asked for, for models run in-process.
    pub fn runtime(&self) -> Option<EngineChoice> {
        match &self.source {
            ModelSource::Onnx { runtime, .. } => Some(*runtime),
            ModelSource::Upstream(_) => None,
        }
    }

    /// The upstream server, for upstream models.
    pub fn upstream(&self) -> Option<&UpstreamSpec> {
        match &self.source {
            ModelSource::Upstream(upstream) => Some(upstream),
            ModelSource::Onnx { .. } => None,
        }
    }

    /// Every file of the model directory that the section names, with its field: the model
    /// file, or the upstream's CA file. They are copied into the bundle and covered by its
    /// digest.
    pub fn files(&self) -> Vec<(&'static str, &BundlePath)> {
        match &self.source {
            ModelSource::Onnx { path, .. } => vec![("model.path", path)],
            ModelSource::Upstream(upstream) => upstream
                .tls
                .as_ref()
                .and_then(|tls| tls.ca.as_ref())
                .map(|ca| ("model.upstream.tls.ca", ca))
                .into_iter()
                .collect(),
        }
    }
}

/// `model:` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModelSection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<BundlePath>,
    format: ModelFormat,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    runtime: Option<EngineChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upstream: Option<UpstreamSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inputs: Option<Vec<TensorSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outputs: Option<Vec<TensorSpec>>,
}

impl TryFrom<RawModelSection> for ModelSection {
    type Error = String;

    fn try_from(raw: RawModelSection) -> Result<Self, String> {
        if raw.format == ModelFormat::Upstream && raw.runtime.is_some() {
            return Err(
                "`model.runtime` chooses the engine of an ONNX model; an upstream model runs on its server: remove it"
                    .to_owned(),
            );
        }
        let source = match (raw.format, raw.path, raw.upstream) {
            (ModelFormat::Onnx, Some(path), None) => {
                ModelSource::Onnx { path, runtime: raw.runtime.unwrap_or_default() }
            }
            (ModelFormat::Onnx, None, _) => {
                return Err("`model.path` is required: the ONNX file, relative to palisade.yaml".to_owned());
            }
            (ModelFormat::Onnx, Some(_), Some(_)) => {
                return Err(
                    "`model.upstream` applies to `format: upstream` only; remove it, or set `format: upstream` and remove `model.path`"
                        .to_owned(),
                );
            }
            (ModelFormat::Upstream, Some(_), _) => {
                return Err(
                    "an upstream model has no model file: remove `model.path` (the upstream server holds the model)"
                        .to_owned(),
                );
            }
            (ModelFormat::Upstream, None, None) => {
                return Err(
                    "`format: upstream` needs `model.upstream` with at least `url`, e.g. `upstream: {url: http://127.0.0.1:8080}` (see docs/upstream.md)"
                        .to_owned(),
                );
            }
            (ModelFormat::Upstream, None, Some(upstream)) => {
                for (field, specs) in [("inputs", &raw.inputs), ("outputs", &raw.outputs)] {
                    if specs.as_ref().is_none_or(Vec::is_empty) {
                        return Err(format!(
                            "an upstream model must declare `model.{field}` (name, datatype, shape of each), so that Palisade can check requests before they leave; copy them from the upstream's model metadata (GET /v2/models/NAME)"
                        ));
                    }
                }
                ModelSource::Upstream(Box::new(upstream))
            }
        };
        Ok(ModelSection { source, inputs: raw.inputs, outputs: raw.outputs })
    }
}

impl From<ModelSection> for RawModelSection {
    fn from(section: ModelSection) -> Self {
        let format = section.format();
        let (path, runtime, upstream) = match section.source {
            ModelSource::Onnx { path, runtime } => (Some(path), Some(runtime).filter(|r| !r.is_auto()), None),
            ModelSource::Upstream(upstream) => (None, None, Some(*upstream)),
        };
        RawModelSection { path, format, runtime, upstream, inputs: section.inputs, outputs: section.outputs }
    }
}

/// `model.upstream`: the Open Inference Protocol server that serves the model, and how to
/// reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawUpstream", into = "RawUpstream")]
pub struct UpstreamSpec {
    /// The server's base URL (`http` or `https`); requests go to `{url}/v2/models/...`.
    pub url: UpstreamUrl,
    /// The model's name on the server; the manifest's `name` when absent.
    pub model: Option<String>,
    /// The model version on the server; the server's default when absent.
    pub version: Option<String>,
    /// How long one call may take, connection included (default 30 s).
    pub timeout: Duration,
    /// How long connecting (TCP and TLS) may take (default 5 s, or `timeout` when shorter).
    pub connect_timeout: Duration,
    /// The connection pool.
    pub pool: UpstreamPool,
    /// Calls in flight at once, per Palisade replica (default 64); more are refused with 429
    /// at once, like a full inference queue.
    pub max_concurrency: usize,
    /// TLS settings; present exactly when the URL is `https`.
    pub tls: Option<UpstreamTls>,
}

/// `model.upstream.pool`: idle connections kept for reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpstreamPool {
    /// Idle connections kept per upstream host (default 32; 0 closes each after use).
    #[serde(default = "UpstreamPool::default_max_idle")]
    pub max_idle_per_host: usize,
    /// How long an idle connection is kept (default 90 s).
    #[serde(default = "UpstreamPool::default_idle_timeout", with = "duration_text")]
    pub idle_timeout: Duration,
}

impl UpstreamPool {
    fn default_max_idle() -> usize {
        32
    }

    fn default_idle_timeout() -> Duration {
        Duration::from_secs(90)
    }
}

impl Default for UpstreamPool {
    fn default() -> Self {
        UpstreamPool {
            max_idle_per_host: UpstreamPool::default_max_idle(),
            idle_timeout: UpstreamPool::default_idle_timeout(),
        }
    }
}

/// `model.upstream.tls`: whom to trust, and whether to prove Palisade's own identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpstreamTls {
    /// PEM trust anchors for the server's certificate, relative to the manifest (copied into
    /// the bundle). When absent, the serving home's built-in CA (`palisade ca init`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<BundlePath>,
    /// Present Palisade's workload certificate (mutual TLS).
    #[serde(default)]
    pub mutual: bool,
}

/// Longest upstream model name or version accepted.
const MAX_UPSTREAM_NAME: usize = 256;
/// Longest timeout accepted.
const MAX_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawUpstream {
    url: UpstreamUrl,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "quoted_text")]
    version: Option<String>,
    #[serde(default = "default_timeout", with = "duration_text")]
    timeout: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "duration_text_opt")]
    connect_timeout: Option<Duration>,
    #[serde(default)]
    pool: UpstreamPool,
    #[serde(default = "default_max_concurrency")]
    max_concurrency: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls: Option<UpstreamTls>,
}

fn default_max_concurrency() -> usize {
    64
}

/// Most calls in flight a model may allow.
const MAX_UPSTREAM_CONCURRENCY: usize = 10_000;

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// The connect timeout when none is given: 5 s, or the whole timeout when shorter.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn upstream_name_ok(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_UPSTREAM_NAME
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+' | b'@'))
        && text != "."
        && text != ".."
}

impl TryFrom<RawUpstream> for UpstreamSpec {
    type Error = String;

    fn try_from(raw: RawUpstream) -> Result<Self, String> {
        for (field, value) in [("model", &raw.model), ("version", &raw.version)] {
            if let Some(value) = value
                && !upstream_name_ok(value)
            {
                return Err(format!(
                    "`model.upstream.{field}` `{value}` is invalid: use 1-{MAX_UPSTREAM_NAME} of letters, digits, `-_.+@`"
                ));
            }
        }
        let connect_timeout = raw.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT.min(raw.timeout));
        for (field, value) in [("timeout", raw.timeout), ("connectTimeout", connect_timeout)] {
            if value.is_zero() || value > MAX_UPSTREAM_TIMEOUT {
                return Err(format!(
                    "`model.upstream.{field}` must be more than 0 and at most 1h, e.g. `{field}: 30s`"
                ));
            }
        }
        if connect_timeout > raw.timeout {
            return Err(
                "`model.upstream.connectTimeout` is longer than `timeout`, which includes connecting; shorten it"
                    .to_owned(),
            );
        }
        if raw.pool.idle_timeout > MAX_UPSTREAM_TIMEOUT || raw.pool.max_idle_per_host > 1024 {
            return Err(
                "`model.upstream.pool`: `maxIdlePerHost` is at most 1024 and `idleTimeout` at most 1h"
                    .to_owned(),
            );
        }
        if raw.max_concurrency == 0 || raw.max_concurrency > MAX_UPSTREAM_CONCURRENCY {
            return Err(format!(
                "`model.upstream.maxConcurrency` must be 1-{MAX_UPSTREAM_CONCURRENCY} (calls in flight at once)"
            ));
        }
        let tls = match (raw.url.is_https(), raw.tls) {
            (true, tls) => Some(tls.unwrap_or_default()),
            (false, None) => None,
            (false, Some(_)) => {
                return Err(format!(
                    "`model.upstream.tls` needs an https URL, but `url` is {}; write https://",
                    raw.url
                ));
            }
        };
        Ok(UpstreamSpec {
            url: raw.url,
            model: raw.model,
            version: raw.version,
            timeout: raw.timeout,
            connect_timeout,
            pool: raw.pool,
            max_concurrency: raw.max_concurrency,
            tls,
        })
    }
}

impl From<UpstreamSpec> for RawUpstream {
    fn from(spec: UpstreamSpec) -> Self {
        RawUpstream {
            url: spec.url,
            model: spec.model,
            version: spec.version,
            timeout: spec.timeout,
            connect_timeout: Some(spec.connect_timeout),
            pool: spec.pool,
            max_concurrency: spec.max_concurrency,
            tls: spec.tls,
        }
    }
}

/// An upstream server's base URL: `http` or `https`, a host, an optional port and path
/// prefix; no credentials, query or fragment. Kept without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct UpstreamUrl(url::Url);

impl UpstreamUrl {
    /// Parses a base URL.
    pub fn new(text: &str) -> Result<UpstreamUrl, String> {
        let url = url::Url::parse(text).map_err(|e| {
            format!("`{text}` is not a URL ({e}); write the server's base URL, e.g. http://127.0.0.1:8080")
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("`{text}`: the scheme must be http or https"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("`{text}` has no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "`{}` carries credentials; a bundle must not hold secrets: remove them (use mutual TLS to authenticate Palisade)",
                url.scheme()
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("`{text}` has a query or fragment; give the base URL only"));
        }
        if url.path().trim_end_matches('/').ends_with("/v2") {
            return Err(format!(
                "`{text}` ends in /v2; give the base URL without it (Palisade adds /v2/models/...)"
            ));
        }
        let mut url = url;
        let trimmed = url.path().trim_end_matches('/').to_owned();
        url.set_path(&trimmed);
        Ok(UpstreamUrl(url))
    }

    /// Whether the URL is `https`.
    pub fn is_https(&self) -> bool {
        self.0.scheme() == "https"
    }

    /// The URL.
    pub fn as_url(&self) -> &url::Url {
        &self.0
    }

    /// The host, as dialled (a DNS name or an IP address).
    pub fn host(&self) -> &str {
        self.0.host_str().unwrap_or_default()
    }

    /// The base URL with `segments` appended, each percent-encoded as one path segment.
    pub fn join(&self, segments: &[&str]) -> url::Url {
        let mut url = self.0.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(segments);
        }
        url
    }
}

impl fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str().trim_end_matches('/'))
    }
}

impl From<UpstreamUrl> for String {
    fn from(url: UpstreamUrl) -> String {
        url.to_string()
    }
}

impl<'de> Deserialize<'de> for UpstreamUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        UpstreamUrl::new(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Durations written as `30s`, `1m30s`, `250ms`.
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&palisade_core::format_duration(*value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        palisade_core::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// Optional durations written as `30s`, `1m30s`, `250ms`.
mod duration_text_opt {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => super::duration_text::serialize(value, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        super::duration_text::deserialize(d).map(Some)
    }
}

/// A string field that YAML may have read as a number (`version: 1`).
fn quoted_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a version string such as \"1\"")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Err(E::custom(format!("`{v}` is not a version; quote it, e.g. version: \"1\"")))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Err(E::custom(format!(
                "YAML read the version as the number {v}; quote it, e.g. version: \"{v}\""
            )))
        }
    }
    d.deserialize_any(Visitor)
}

impl Manifest {
    /// Reads and parses `palisade.yaml` in a model directory.
    pub fn load_dir(dir: &Path) -> Result<Manifest, BundleError> {
        Manifest::load(&dir.join(MANIFEST_FILE))
    }

    /// Reads and parses a manifest file.
    pub fn load(path: &Path) -> Result<Manifest, BundleError> {
        let bytes = std::fs::read(path).map_err(|source| BundleError::Io {
            path: path.to_owned(),
            action: "read the manifest",
            source,
        })?;
        Manifest::parse(path, &bytes)
    }

    /// Parses manifest bytes; `file` names the source in errors.
    pub fn parse(file: &Path, bytes: &[u8]) -> Result<Manifest, BundleError> {
        let invalid = |field: &str, line: Option<usize>, column: Option<usize>, message: String| {
            BundleError::Manifest(ManifestError {
                file: file.to_owned(),
                line,
                column,
                field: field.to_owned(),
                message,
            })
        };
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(invalid(
                "",
                None,
                None,
                format!("the file is {} bytes; a manifest is at most {MAX_MANIFEST_BYTES}", bytes.len()),
            ));
        }
        let text = std::str::from_utf8(bytes).map_err(|e| {
            invalid(
                "",
                None,
                None,
                format!("the file is not UTF-8 (invalid byte at offset {})", e.valid_up_to()),
            )
        })?;
        if text.trim().is_empty() {
            return Err(invalid("", None, None, "the file is empty".to_owned()));
        }
        let manifest: Manifest = palisade_core::yaml::from_str(file, text).map_err(|mut err| {
            err.message = hint_for(&err.field, std::mem::take(&mut err.message));
            BundleError::Manifest(err)
        })?;
        if let Some(batching) = &manifest.batching
            && let Err((field, message)) = batching.validate()
        {
            return Err(invalid(field, None, None, message));
        }
        if let Some(max) = manifest.limits.and_then(|l| l.max_body_bytes)
            && !MAX_BODY_BYTES_RANGE.contains(&max)
        {
            return Err(invalid(
                "limits.maxBodyBytes",
                None,
                None,
                format!("{max} is out of range: use 1024 to 4294967296 bytes (4 GiB)"),
            ));
        }
        check_kind(&manifest).map_err(|(field, message)| invalid(&field, None, None, message))?;
        if manifest.explainer.is_some() && manifest.model.as_ref().and_then(ModelSection::path).is_none() {
            return Err(invalid(
                "explainer",
                None,
                None,
                "an explainer needs a model Palisade runs itself (`model.path`, an ONNX file); remove `explainer:` from a graph, a traffic split or an upstream model".to_owned(),
            ));
        }
        if let Some(monitoring) = &manifest.monitoring {
            monitoring.validate().map_err(|(field, message)| invalid(field, None, None, message))?;
            if let (Some(forest), Some(model)) = (monitoring.forest_model(), manifest.model.as_ref())
                && model.files().iter().any(|(_, file)| *file == forest)
            {
                return Err(invalid(
                    "monitoring.outliers.model",
                    None,
                    None,
                    format!(
                        "`{}` is a file of the model itself; name the IsolationForest's own skl2onnx export",
                        forest.as_str()
                    ),
                ));
            }
            if manifest.model.as_ref().and_then(ModelSection::path).is_none() {
                return Err(invalid(
                    "monitoring",
                    None,
                    None,
                    "monitoring needs a model Palisade runs itself (`model.path`, an ONNX file); remove `monitoring:` from a graph, a traffic split or an upstream model and declare it on the models it calls".to_owned(),
                ));
            }
        }
        if manifest.batching.is_some() && manifest.model.as_ref().is_some_and(|m| m.upstream().is_some()) {
            return Err(invalid(
                "batching",
                None,
                None,
                "an upstream model's calls are passed on one by one; remove `batching:` and batch on the upstream server (MLServer's `max_batch_size`, Triton's dynamic batcher)".to_owned(),
            ));
        }
        Ok(manifest)
    }

    /// Whether the bundle serves other models (`graph:` or `traffic:`) rather than its own.
    pub fn is_composite(&self) -> bool {
        self.model.is_none()
    }

    /// The model version this manifest describes.
    pub fn model_ref(&self) -> ModelRef {
        ModelRef { namespace: self.namespace.clone(), name: self.name.clone(), version: self.version.clone() }
    }
}

/// A manifest serves exactly one of `model:`, `graph:` or `traffic:`; the sections of a
/// composite bundle appear only with one.
fn check_kind(manifest: &Manifest) -> Result<(), (String, String)> {
    let given: Vec<&str> = [
        ("model", manifest.model.is_some()),
        ("graph", manifest.graph.is_some()),
        ("pipeline", manifest.pipeline.is_some()),
        ("traffic", manifest.traffic.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, present)| present.then_some(name))
    .collect();
    match given.as_slice() {
        [] => {
            return Err((
                "model".to_owned(),
                "missing field `model`: say what the bundle serves: `model:` (a model file or an upstream server), `graph:` or `pipeline:` (an inference graph over stored models) or `traffic:` (weighted arms over stored versions); see docs/manifest.md and docs/graphs.md".to_owned(),
            ));
        }
        [_] => {}
        [first, second, ..] => {
            return Err((
                (*second).to_owned(),
                format!(
                    "`{first}:` and `{second}:` are both given; a bundle serves one of `model:`, `graph:` or `traffic:`"
                ),
            ));
        }
    }
    if manifest.model.is_some() {
        for (field, present) in [
            ("shadow", manifest.shadow.is_some()),
            ("sticky", manifest.sticky.is_some()),
            ("callAs", !manifest.call_as.is_caller()),
            ("inputs", manifest.inputs.is_some()),
        ] {
            if present {
                return Err((
                    field.to_owned(),
                    format!(
                        "`{field}:` belongs to a bundle with `graph:` or `traffic:`; declare a model's inputs under `model.inputs`"
                    ),
                ));
            }
        }
    }
    if manifest.inputs.is_some() && manifest.traffic.is_some() {
        return Err((
            "inputs".to_owned(),
            "a traffic bundle's inputs are its arms'; remove `inputs:`".to_owned(),
        ));
    }
    if manifest.model.is_none() && manifest.batching.is_some() {
        return Err((
            "batching".to_owned(),
            "a graph or traffic bundle runs other models, which batch on their own: remove `batching:` here and set it in their manifests".to_owned(),
        ));
    }
    if let Some(pipeline) = &manifest.pipeline {
        check_pipeline(pipeline)?;
    }
    crate::graph::check_syntax(
        manifest.graph.as_ref(),
        manifest.traffic.as_deref(),
        manifest.shadow.as_ref(),
        manifest.sticky.as_ref(),
    )
}

fn check_pipeline(pipeline: &Pipeline) -> Result<(), (String, String)> {
    if pipeline.steps.is_empty() || pipeline.steps.len() > crate::graph::MAX_NODES {
        return Err(("pipeline.steps".to_owned(), format!("list 1 to {} steps", crate::graph::MAX_NODES)));
    }
    for (i, step) in pipeline.steps.iter().enumerate() {
        if pipeline.steps[..i].iter().any(|s| s.name == step.name) {
            return Err((
                format!("pipeline.steps[{i}].name"),
                format!("step `{}` is listed twice", step.name),
            ));
        }
        if let Err(message) = step.target() {
            return Err((
                format!("pipeline.steps[{i}].name"),
                format!("{message}; name a stored model with `model:`"),
            ));
        }
        if step.triggers_join_type.is_some() && step.triggers.is_empty() {
            return Err((
                format!("pipeline.steps[{i}].triggersJoinType"),
                "the step has no `triggers` to join: add `triggers: [STEP.outputs.TENSOR]` or remove it"
                    .to_owned(),
            ));
        }
    }
    for (i, step) in pipeline.steps.iter().enumerate() {
        let references = step.inputs.len().max(1) + step.triggers.len();
        check_join_window(step.join_window_ms, references, &format!("pipeline.steps[{i}].joinWindowMs"))?;
    }
    if let Some(output) = &pipeline.output {
        check_join_window(output.join_window_ms, output.steps.len(), "pipeline.output.joinWindowMs")?;
    }
    Ok(())
}

/// A join window is a positive number of milliseconds, up to an hour, over a join of at
/// least two references (with one, nothing is waited for).
fn check_join_window(window: Option<u32>, references: usize, field: &str) -> Result<(), (String, String)> {
    let Some(window) = window else { return Ok(()) };
    if window == 0 || window > crate::graph::MAX_JOIN_WINDOW_MS {
        return Err((
            field.to_owned(),
            format!(
                "{window} is not a join window: give milliseconds from 1 to {} (or remove it to wait for every reference)",
                crate::graph::MAX_JOIN_WINDOW_MS
            ),
        ));
    }
    if references < 2 {
        return Err((
            field.to_owned(),
            "a join window waits for the other references of a join once the first is present, and this join has one: remove `joinWindowMs`".to_owned(),
        ));
    }
    Ok(())
}

/// Adds a fix to the messages users hit most.
fn hint_for(field: &str, message: String) -> String {
    if message.starts_with("missing field `owners`") {
        return format!(
            "{message}: every model needs owners (emails, group:NAME or serviceaccount:NS/NAME), for example `owners: [you@example.com]`"
        );
    }
    if message.starts_with("unknown field") {
        return format!("{message}; check the spelling (see docs/manifest.md)");
    }
    if field == "explainer.type" {
        return format!(
            "{message}; use `TreeShap` (tree ensembles) or `KernelShap` (any model), see docs/explain.md"
        );
    }
    if field == "monitoring.outliers" && message.starts_with("unknown variant") {
        return format!(
            "{message}; use `method: mahalanobis` (with `reference:`) or `method: isolation_forest` (with `model:`), see docs/monitoring.md"
        );
    }
    if field == "model.format" {
        return format!(
            "{message}; Palisade runs `onnx` models (export with skl2onnx, tf2onnx or torch.onnx), or serves `upstream` ones from an Open Inference Protocol server (see docs/upstream.md)"
        );
    }
    message
}

fn quoted_version<'de, D: Deserializer<'de>>(d: D) -> Result<Version, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Version;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a version string such as \"1.0.0\"")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Version, E> {
            Version::new(v).map_err(E::custom)
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Version, E> {
            Err(E::custom(format!(
                "YAML read the version as the number {v}; quote it, e.g. version: \"{v}\""
            )))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Version, E> {
            Err(E::custom(format!(
                "YAML read the version as the number {v}; quote it, e.g. version: \"{v}\""
            )))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Version, E> {
            Err(E::custom(format!(
                "YAML read the version as the number {v}; quote it, e.g. version: \"{v}\""
            )))
        }
    }
    d.deserialize_any(Visitor)
}

/// A manifest that failed to parse: file, line, column, field and message.
pub use palisade_core::yaml::LocatedError as ManifestError;

/// A non-empty, duplicate-free owner list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Owners(Vec<Owner>);

impl Owners {
    /// Builds an owner list; it must not be empty.
    pub fn new(owners: Vec<Owner>) -> Option<Owners> {
        let mut unique: Vec<Owner> = Vec::with_capacity(owners.len());
        for owner in owners {
            if !unique.contains(&owner) {
                unique.push(owner);
            }
        }
        (!unique.is_empty()).then_some(Owners(unique))
    }

    /// The owners, in manifest order.
    pub fn as_slice(&self) -> &[Owner] {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Owners {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let owners = Vec::<Owner>::deserialize(d)?;
        Owners::new(owners).ok_or_else(|| {
            serde::de::Error::custom(
                "at least one owner is required (an email, group:NAME or serviceaccount:NS/NAME)",
            )
        })
    }
}

/// The label every model carries with its name as the value, so a policy can select one
/// model (`selector: {matchLabels: {palisade.dev/model: iris}}`). Manifests cannot set it.
pub const MODEL_NAME_LABEL: &str = "palisade.dev/model";

/// Label keys under this prefix are Palisade's own: a manifest that sets one is refused.
pub const RESERVED_LABEL_PREFIX: &str = "palisade.dev/";

/// Kubernetes-style labels: keys `[prefix/]name`, values of at most 63 characters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Labels(BTreeMap<String, String>);

impl Labels {
    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The labels, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value of a label.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The labels as a map.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

/// A label name segment or value: at most 63 of `[A-Za-z0-9._-]`, alphanumeric at the ends.
fn label_segment_ok(s: &str, allow_empty: bool) -> bool {
    if s.is_empty() {
        return allow_empty;
    }
    s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

fn label_key_ok(key: &str) -> bool {
    match key.rsplit_once('/') {
        Some((prefix, name)) => {
            !prefix.is_empty()
                && prefix.len() <= 253
                && prefix.split('.').all(|part| {
                    !part.is_empty()
                        && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                        && !part.starts_with('-')
                        && !part.ends_with('-')
                })
                && label_segment_ok(name, false)
        }
        None => label_segment_ok(key, false),
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, String>::deserialize(d)?;
        for (key, value) in &map {
            if key.starts_with(RESERVED_LABEL_PREFIX) {
                return Err(serde::de::Error::custom(format!(
                    "label key `{key}` is reserved: Palisade sets the labels under `{RESERVED_LABEL_PREFIX}` itself \
                     (every model carries `{MODEL_NAME_LABEL}: <its name>`); remove it"
                )));
            }
            if !label_key_ok(key) {
                return Err(serde::de::Error::custom(format!(
                    "label key `{key}` is invalid: use [prefix/]name, name at most 63 characters of letters, digits, '-', '_' or '.'"
                )));
            }
            if !label_segment_ok(value, true) {
                return Err(serde::de::Error::custom(format!(
                    "label `{key}` has invalid value `{value}`: at most 63 characters of letters, digits, '-', '_' or '.'"
                )));
            }
        }
        Ok(Labels(map))
    }
}

/// A relative path inside a bundle: no `..`, no absolute paths, `/`-separated.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "String")]
pub struct BundlePath(String);

/// Names Palisade writes itself into every bundle.
pub const RESERVED_FILES: [&str; 4] =
    [MANIFEST_FILE, crate::store::INDEX_FILE, crate::store::SIGNATURE_FILE, crate::store::ENGINE_FILE];

impl BundlePath {
    /// Parses a bundle-relative path.
    pub fn new(path: &str) -> Result<BundlePath, String> {
        if path.is_empty() || path.len() > 1024 {
            return Err("the path must be 1-1024 characters".to_owned());
        }
        if path.starts_with('/') || path.contains('\\') || path.contains(':') {
            return Err(format!(
                "`{path}` must be a relative path using '/' (it is resolved next to palisade.yaml)"
            ));
        }
        for part in path.split('/') {
            if part.is_empty() || part == "." || part == ".." {
                return Err(format!("`{path}` must not contain empty, `.` or `..` segments"));
            }
            if part.starts_with('.') {
                return Err(format!("`{path}` must not contain hidden (dot) files or directories"));
            }
            if part.chars().any(char::is_control) {
                return Err(format!("`{path}` contains a control character"));
            }
        }
        Ok(BundlePath(path.to_owned()))
    }

    /// The path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path under a directory.
    pub fn under(&self, dir: &Path) -> PathBuf {
        self.0.split('/').fold(dir.to_owned(), |acc, part| acc.join(part))
    }
}

impl From<BundlePath> for String {
    fn from(path: BundlePath) -> String {
        path.0
    }
}

impl fmt::Display for BundlePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for BundlePath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let path = String::deserialize(d)?;
        let parsed = BundlePath::new(&path).map_err(serde::de::Error::custom)?;
        if RESERVED_FILES.contains(&parsed.as_str()) {
            return Err(serde::de::Error::custom(format!("`{path}` is a name Palisade reserves for itself")));
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "name: iris\nversion: \"1.0.0\"\nowners: [alice@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\n";

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        match Manifest::parse(Path::new("dir/palisade.yaml"), text.as_bytes()) {
            Ok(m) => Ok(m),
            Err(BundleError::Manifest(e)) => Err(e),
            Err(other) => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn monitoring_parses_with_defaults_and_names_bad_fields() {
        assert_eq!(parse(MINIMAL).unwrap().monitoring, None);
        let m = parse(&format!(
            "{MINIMAL}monitoring:\n  outliers: {{method: mahalanobis, reference: ref.csv}}\n  drift: {{reference: data/ref.npy}}\n"
        ))
        .unwrap()
        .monitoring
        .unwrap();
        assert_eq!(
            m.outliers,
            Some(OutliersSection::Mahalanobis {
                reference: BundlePath::new("ref.csv").unwrap(),
                quantile: 0.99
            })
        );
        let drift = m.drift.clone().unwrap();
        assert_eq!((drift.reference.as_str(), drift.window, drift.alpha), ("data/ref.npy", 1000, 0.05));
        assert_eq!(m.references().len(), 2);
        let m = parse(&format!(
            "{MINIMAL}monitoring:\n  outliers: {{method: isolation_forest, model: iforest.onnx, offset: -0.4}}\n"
        ))
        .unwrap()
        .monitoring
        .unwrap();
        assert_eq!(m.forest_model().unwrap().as_str(), "iforest.onnx");
        let e = parse(&format!(
            "{MINIMAL}monitoring:\n  outliers: {{method: isolation_forest, model: model.onnx}}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("monitoring.outliers.model") && e.contains("model itself"), "{e}");
        let err = |yaml: &str| parse(&format!("{MINIMAL}{yaml}")).unwrap_err().to_string();
        let e = err("monitoring:\n  outliers: {method: lof, reference: r.csv}\n");
        assert!(e.contains("monitoring.outliers") && e.contains("mahalanobis"), "{e}");
        let e = err("monitoring:\n  outliers: {method: mahalanobis, reference: r.csv, quantile: 1.5}\n");
        assert!(e.contains("monitoring.outliers.quantile") && e.contains("1.5"), "{e}");
        let e = err("monitoring:\n  outliers: {method: mahalanobis, reference: ../r.csv}\n");
        assert!(e.contains("monitoring.outliers"), "{e}");
        let e = err("monitoring:\n  outliers: {method: mahalanobis}\n");
        assert!(e.contains("reference"), "{e}");
        let e = err("monitoring:\n  drift: {reference: r.csv, window: 0}\n");
        assert!(e.contains("monitoring.drift.window") && e.contains("1 to 10000"), "{e}");
        let e = err("monitoring:\n  drift: {reference: r.csv, alpha: 0}\n");
        assert!(e.contains("monitoring.drift.alpha"), "{e}");
        let e = err("monitoring:\n  drift: {reference: r.csv, windw: 5}\n");
        assert!(e.contains("windw"), "{e}");
        let e = err("monitoring: {}\n");
        assert!(e.contains("neither"), "{e}");
        let upstream = "name: iris\nversion: \"1\"\nowners: [a@b.c]\nmodel:\n  format: upstream\n  upstream: {url: http://h:1}\n  inputs: [{name: X, datatype: FP32, shape: [-1, 4]}]\n  outputs: [{name: Y, datatype: FP32, shape: [-1]}]\nmonitoring: {drift: {reference: r.csv}}\n";
        let e = parse(upstream).unwrap_err().to_string();
        assert!(e.contains("monitoring") && e.contains("model Palisade runs itself"), "{e}");
    }

    #[test]
    fn explainer_names_its_type_and_background() {
        assert_eq!(parse(MINIMAL).unwrap().explainer, None);
        let m = parse(&format!("{MINIMAL}explainer: {{type: TreeShap, background: data/bg.csv}}\n")).unwrap();
        let explainer = m.explainer.unwrap();
        assert_eq!((explainer.kind, explainer.background.as_str()), (ExplainerKind::TreeShap, "data/bg.csv"));
        let e = parse(&format!("{MINIMAL}explainer: {{type: Anchors, background: bg.csv}}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("explainer.type") && e.contains("`TreeShap`"), "{e}");
        let e = parse(&format!("{MINIMAL}explainer: {{type: KernelShap, background: ../bg.csv}}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("explainer.background"), "{e}");
        let e = parse(&format!("{MINIMAL}explainer: {{type: KernelShap}}\n")).unwrap_err().to_string();
        assert!(e.contains("background"), "{e}");
        let upstream = "name: iris\nversion: \"1\"\nowners: [a@b.c]\nmodel:\n  format: upstream\n  upstream: {url: http://h:1}\n  inputs: [{name: X, datatype: FP32, shape: [-1, 4]}]\n  outputs: [{name: Y, datatype: FP32, shape: [-1]}]\nexplainer: {type: KernelShap, background: bg.csv}\n";
        let e = parse(upstream).unwrap_err().to_string();
        assert!(e.contains("explainer") && e.contains("model Palisade runs itself"), "{e}");
    }

    #[test]
    fn limits_set_the_body_limit() {
        assert_eq!(parse(MINIMAL).unwrap().limits, None);
        let m = parse(&format!("{MINIMAL}limits: {{maxBodyBytes: 268435456}}\n")).unwrap();
        assert_eq!(m.limits.and_then(|l| l.max_body_bytes), Some(256 << 20));
        for bad in
            ["limits: {maxBodyBytes: 10}", "limits: {maxBodyBytes: 9999999999}", "limits: {maxBodyBytes: -1}"]
        {
            let e = parse(&format!("{MINIMAL}{bad}\n")).unwrap_err().to_string();
            assert!(e.contains("maxBodyBytes"), "{bad}: {e}");
        }
        let e = parse(&format!("{MINIMAL}limits: {{max_body_bytes: 2048}}\n")).unwrap_err().to_string();
        assert!(e.contains("unknown field `max_body_bytes`"), "{e}");
    }

    #[test]
    fn limits_set_a_rate() {
        let m = parse(&format!("{MINIMAL}limits:\n  rate: {{requestsPerSecond: 5, burst: 10, explain: {{requestsPerSecond: 0.5, burst: 1}}}}\n")).unwrap();
        let rate = m.limits.and_then(|l| l.rate).unwrap();
        assert_eq!((rate.requests.burst.get(), rate.explain_budget().burst.get()), (10, 1));
        let e = parse(&format!("{MINIMAL}limits:\n  rate: {{requestsPerSecond: 5, burst: 0}}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("limits.rate") && e.contains("out of range"), "{e}");
        let e = parse(&format!(
            "{MINIMAL}limits:\n  rate: {{requestsPerSecond: 5, burst: 10, explain: {{requestsPerSecond: 6, burst: 1}}}}\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("limits.rate") && e.contains("looser"), "{e}");
    }

    #[test]
    fn model_runtime_chooses_the_engine() {
        let m = parse(MINIMAL).unwrap();
        assert_eq!(m.model.as_ref().unwrap().runtime(), Some(EngineChoice::Auto));
        for (text, engine) in [
            ("tract", EngineChoice::Tract),
            ("onnxruntime", EngineChoice::Onnxruntime),
            ("auto", EngineChoice::Auto),
        ] {
            let m = parse(&format!("{MINIMAL}  runtime: {text}\n")).unwrap();
            assert_eq!(m.model.as_ref().unwrap().runtime(), Some(engine));
        }
        let e = parse(&format!("{MINIMAL}  runtime: torch\n")).unwrap_err().to_string();
        assert!(e.contains("model.runtime") && e.contains("unknown variant `torch`"), "{e}");
        let upstream = "name: iris\nversion: \"1\"\nowners: [a@b.c]\nmodel:\n  format: upstream\n  runtime: tract\n  upstream: {url: http://h:1}\n  inputs: [{name: X, datatype: FP32, shape: [-1, 4]}]\n  outputs: [{name: Y, datatype: FP32, shape: [-1]}]\n";
        let e = parse(upstream).unwrap_err().to_string();
        assert!(e.contains("`model.runtime` chooses the engine of an ONNX model"), "{e}");
    }

    #[test]
    fn minimal_manifest_is_accepted() {
        let m = parse(MINIMAL).unwrap();
        assert_eq!(m.name.as_str(), "iris");
        assert_eq!(m.version.as_str(), "1.0.0");
        assert_eq!(m.namespace.as_str(), "default");
        assert_eq!(m.owners.as_slice(), &[Owner::Email("alice@example.com".into())]);
        assert_eq!(m.model.as_ref().unwrap().path().map(BundlePath::as_str), Some("model.onnx"));
        assert_eq!(m.model.as_ref().unwrap().format(), ModelFormat::Onnx);
        assert!(m.model.as_ref().unwrap().upstream().is_none());
        assert!(m.model.as_ref().unwrap().inputs.is_none());
    }

    #[test]
    fn full_manifest() {
        let text = r#"
name: fraud-scorer
version: "2024.06.01-rc1"
namespace: risk
description: Scores card transactions
labels: {team: fraud, app.kubernetes.io/part-of: payments}
owners: [person_a@company.com, group:fraud-analysts, serviceaccount:billing/billing-batch]
model:
  path: models/scorer.onnx
  format: onnx
  inputs:
    - {name: X, datatype: FP32, shape: [-1, 4], allow_nan: true}
  outputs:
    - {name: probabilities, datatype: FP32, shape: [-1, 3]}
"#;
        let m = parse(text).unwrap();
        assert_eq!(m.namespace.as_str(), "risk");
        assert_eq!(m.labels.get("app.kubernetes.io/part-of"), Some("payments"));
        assert_eq!(m.owners.as_slice().len(), 3);
        assert!(m.model.as_ref().unwrap().inputs.as_ref().unwrap()[0].allow_nan);
    }

    #[test]
    fn unknown_field_names_file_line_and_field() {
        let err = parse(&MINIMAL.replace("  format: onnx", "  format: onnx\n  fromat: onnx")).unwrap_err();
        assert_eq!(err.field, "model.fromat");
        assert_eq!(err.line, Some(7));
        let shown = err.to_string();
        assert!(shown.starts_with("dir/palisade.yaml:7:"), "{shown}");
        assert!(shown.contains("unknown field `fromat`"), "{shown}");
    }

    #[test]
    fn invalid_values_name_the_field() {
        let cases = [
            ("name: iris", "name: Iris_Model", "name", "not a valid model name"),
            ("version: \"1.0.0\"", "version: 1.0", "version", "quote it"),
            ("format: onnx", "format: pickle", "model.format", "unknown variant `pickle`"),
            ("path: model.onnx", "path: ../model.onnx", "model.path", "`..`"),
            ("path: model.onnx", "path: /etc/passwd", "model.path", "relative path"),
            ("path: model.onnx", "path: bundle.json", "model.path", "reserves"),
            ("[alice@example.com]", "[alice]", "owners[0]", "not a valid owner"),
            ("[alice@example.com]", "[]", "owners", "at least one owner"),
        ];
        for (from, to, field, needle) in cases {
            let err = parse(&MINIMAL.replace(from, to)).unwrap_err();
            assert_eq!(err.field, field, "{to}: {err}");
            assert!(err.line.is_some(), "{to}: {err}");
            assert!(err.message.contains(needle), "{to}: {err}");
            assert!(!err.message.starts_with(field), "the field is not repeated: {err}");
        }
    }

    #[test]
    fn missing_owners_explains_why() {
        let err = parse(&MINIMAL.replace("owners: [alice@example.com]\n", "")).unwrap_err();
        assert!(err.message.contains("missing field `owners`"), "{err}");
        assert!(err.message.contains("every model needs owners"), "{err}");
    }

    #[test]
    fn refuses_palisades_own_label_keys() {
        for key in ["palisade.dev/model", "palisade.dev/anything"] {
            let err = parse(&format!("{MINIMAL}labels: {{{key}: other}}\n")).unwrap_err();
            assert_eq!(err.field, "labels", "{err}");
            assert!(err.to_string().contains(&format!("label key `{key}` is reserved")), "{err}");
        }
    }

    #[test]
    fn rejects_bad_labels() {
        for bad in ["{\"-x\": a}", "{x: \"a b\"}", "{\"a/b/c\": x}", "{\"Bad_Prefix/x\": y}"] {
            let err = parse(&format!("{MINIMAL}labels: {bad}\n")).unwrap_err();
            assert_eq!(err.field, "labels", "{bad}: {err}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in ["", "   ", "- a\n- b", "name: [", "\u{0}", "name: iris\nname: iris2", "*a"] {
            assert!(parse(text).is_err(), "{text:?}");
        }
        let err = Manifest::parse(Path::new("p.yaml"), &[0xff, 0xfe]).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"));
    }

    const UPSTREAM: &str = "name: iris\nversion: \"1.0.0\"\nowners: [alice@example.com]\nmodel:\n  format: upstream\n  upstream:\n    url: http://127.0.0.1:8080\n  inputs:\n    - {name: X, datatype: FP32, shape: [-1, 4]}\n  outputs:\n    - {name: predict, datatype: INT64, shape: [-1]}\n";

    #[test]
    fn upstream_model_with_defaults() {
        let m = parse(UPSTREAM).unwrap();
        assert_eq!(m.model.as_ref().unwrap().format(), ModelFormat::Upstream);
        assert!(m.model.as_ref().unwrap().path().is_none());
        assert!(m.model.as_ref().unwrap().files().is_empty());
        let up = m.model.as_ref().unwrap().upstream().unwrap();
        assert_eq!(up.url.to_string(), "http://127.0.0.1:8080");
        assert_eq!(up.model, None);
        assert_eq!(up.timeout, Duration::from_secs(30));
        assert_eq!(up.connect_timeout, Duration::from_secs(5));
        let short = parse(
            &UPSTREAM.replace("    url: http://127.0.0.1:8080\n", "    url: http://h:1\n    timeout: 2s\n"),
        )
        .unwrap();
        assert_eq!(short.model.as_ref().unwrap().upstream().unwrap().connect_timeout, Duration::from_secs(2));
        assert_eq!(up.pool, UpstreamPool::default());
        assert_eq!(up.max_concurrency, 64);
        assert!(up.tls.is_none());
        assert_eq!(
            up.url.join(&["v2", "models", "iris", "infer"]).as_str(),
            "http://127.0.0.1:8080/v2/models/iris/infer"
        );
    }

    #[test]
    fn upstream_model_fully_specified_round_trips() {
        let text = UPSTREAM.replace(
            "    url: http://127.0.0.1:8080\n",
            "    url: https://mlserver.ml.svc:8443/prefix/\n    model: iris-sklearn\n    version: \"v1\"\n    timeout: 1m30s\n    connectTimeout: 250ms\n    pool: {maxIdlePerHost: 4, idleTimeout: 10s}\n    maxConcurrency: 8\n    tls: {ca: certs/ca.pem, mutual: true}\n",
        );
        let m = parse(&text).unwrap();
        let up = m.model.as_ref().unwrap().upstream().unwrap();
        assert!(up.url.is_https());
        assert_eq!(up.url.host(), "mlserver.ml.svc");
        assert_eq!(up.model.as_deref(), Some("iris-sklearn"));
        assert_eq!(up.version.as_deref(), Some("v1"));
        assert_eq!(up.timeout, Duration::from_secs(90));
        assert_eq!(up.connect_timeout, Duration::from_millis(250));
        assert_eq!(up.pool, UpstreamPool { max_idle_per_host: 4, idle_timeout: Duration::from_secs(10) });
        assert_eq!(up.max_concurrency, 8);
        let tls = up.tls.as_ref().unwrap();
        assert!(tls.mutual);
        assert_eq!(
            m.model.as_ref().unwrap().files(),
            vec![("model.upstream.tls.ca", tls.ca.as_ref().unwrap())]
        );
        // Segments are encoded, and the prefix kept.
        assert_eq!(
            up.url.join(&["v2", "models", "a b", "ready"]).as_str(),
            "https://mlserver.ml.svc:8443/prefix/v2/models/a%20b/ready"
        );
        // Serialized and parsed again, the manifest is the same.
        let yaml = serde_yaml::to_string(&m).unwrap();
        assert_eq!(parse(&yaml).unwrap(), m, "{yaml}");
        // An https URL without a tls section gets the defaults (the built-in CA, no client certificate).
        let m = parse(&UPSTREAM.replace("http://", "https://")).unwrap();
        assert_eq!(m.model.as_ref().unwrap().upstream().unwrap().tls, Some(UpstreamTls::default()));
    }

    #[test]
    fn invalid_upstream_models_say_which_field_and_how_to_fix_it() {
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "  format: upstream\n",
                "  format: upstream\n  path: model.onnx\n",
                "model",
                "remove `model.path`",
            ),
            ("  upstream:\n    url: http://127.0.0.1:8080\n", "", "model", "needs `model.upstream`"),
            (
                "  outputs:\n    - {name: predict, datatype: INT64, shape: [-1]}\n",
                "",
                "model",
                "must declare `model.outputs`",
            ),
            (
                "  inputs:\n    - {name: X, datatype: FP32, shape: [-1, 4]}\n",
                "  inputs: []\n",
                "model",
                "must declare `model.inputs`",
            ),
            ("url: http://127.0.0.1:8080", "url: ftp://x", "model.upstream.url", "http or https"),
            ("url: http://127.0.0.1:8080", "url: not a url", "model.upstream.url", "not a URL"),
            ("url: http://127.0.0.1:8080", "url: http://u:secret@h:1", "model.upstream.url", "credentials"),
            ("url: http://127.0.0.1:8080", "url: http://h:1/v2", "model.upstream.url", "without it"),
            ("url: http://127.0.0.1:8080", "url: http://h:1/?x=1", "model.upstream.url", "query"),
            (
                "    url: http://127.0.0.1:8080\n",
                "    url: http://h:1\n    tls: {mutual: true}\n",
                "model.upstream",
                "needs an https URL",
            ),
            (
                "    url: http://127.0.0.1:8080\n",
                "    url: http://h:1\n    timeout: 0s\n",
                "model.upstream",
                "more than 0",
            ),
            (
                "    url: http://127.0.0.1:8080\n",
                "    url: http://h:1\n    timeout: soon\n",
                "model.upstream.timeout",
                "not a duration",
            ),
            (
                "    url: http://127.0.0.1:8080\n",
                "    url: http://h:1\n    timeout: 1s\n    connectTimeout: 2s\n",
                "model.upstream",
                "longer than `timeout`",
            ),
            (
                "    url: http://127.0.0.1:8080\n",
                "    url: http://h:1\n    model: a/b\n",
                "model.upstream",
                "`model.upstream.model` `a/b` is invalid",
            ),
            (
                "    url: http://127.0.0.1:8080\n",
                "    url: http://h:1\n    version: 1.5\n",
                "model.upstream.version",
                "quote it",
            ),
            (
                "    url: http://127.0.0.1:8080\n",
                "    url: http://h:1\n    maxConcurrency: 0\n",
                "model.upstream",
                "1-10000",
            ),
            (
                "    url: http://127.0.0.1:8080\n",
                "    url: http://h:1\n    pool: {maxIdle: 3}\n",
                "model.upstream.pool.maxIdle",
                "unknown field `maxIdle`",
            ),
            (
                "    url: http://127.0.0.1:8080\n",
                "    url: https://h:1\n    tls: {ca: ../ca.pem}\n",
                "model.upstream.tls.ca",
                "`..`",
            ),
            (
                "    url: http://127.0.0.1:8080\n",
                "    url: https://h:1\n    tls: {ca: bundle.json}\n",
                "model.upstream.tls.ca",
                "reserves",
            ),
        ];
        for (from, to, field, needle) in cases {
            assert!(UPSTREAM.contains(from), "{from}");
            let err = parse(&UPSTREAM.replace(from, to)).unwrap_err();
            assert_eq!(err.field, *field, "{to}: {err}");
            assert!(err.line.is_some(), "{to}: {err}");
            assert!(err.message.contains(needle), "{to}: {err}");
        }
        // Credentials are not echoed back.
        let err = parse(&UPSTREAM.replace("http://127.0.0.1:8080", "http://u:hunter2@h:1")).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        // An ONNX model needs its file.
        let err = parse(&MINIMAL.replace("  path: model.onnx\n", "")).unwrap_err();
        assert!(err.message.contains("`model.path` is required"), "{err}");
        // Batching is the upstream's business.
        let err = parse(&format!("{UPSTREAM}batching: {{max_batch_size: 8}}\n")).unwrap_err();
        assert_eq!(err.field, "batching", "{err}");
        assert!(err.message.contains("remove `batching:`"), "{err}");
        // The format hint mentions both formats.
        let err = parse(&MINIMAL.replace("format: onnx", "format: triton")).unwrap_err();
        assert!(err.message.contains("`upstream`"), "{err}");
    }
}
