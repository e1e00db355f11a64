//! Prometheus metrics for the admin port. Label values are bounded: the model label only ever
//! holds a served model's name or `-`.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, TextEncoder};

use crate::context::Ctx;
use crate::{AppState, Registry};

/// The server's metrics, in their own Prometheus registry.
#[derive(Clone)]
pub struct Metrics {
    registry: prometheus::Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    queue_wait_seconds: HistogramVec,
    inference_seconds: HistogramVec,
    batch_rows: HistogramVec,
    queue_depth: IntGauge,
    authn_failures: IntCounterVec,
    decisions: IntCounterVec,
    mtls_requests: IntCounterVec,
    audit_refusals: IntCounterVec,
    audit_queue_depth: IntGauge,
    audit_records: prometheus::IntCounter,
    audit_dropped: prometheus::IntCounter,
    audit_write_errors: prometheus::IntCounter,
    audit_shipped: prometheus::IntCounter,
    audit_ship_dropped: prometheus::IntCounter,
    audit_ship_errors: prometheus::IntCounter,
    audit_fsync_seconds: prometheus::Histogram,
    audit_bytes_written: prometheus::IntCounter,
    audit_sealed_segments: prometheus::IntCounter,
    audit_sealed_records: prometheus::IntCounter,
    audit_sealed_plain_bytes: prometheus::IntCounter,
    audit_sealed_bytes: prometheus::IntCounter,
    audit_seal_errors: prometheus::IntCounter,
    audit_retention_blocked_segments: IntGauge,
    audit_retention_blocked_bytes: IntGauge,
    audit_seal_backlog_segments: IntGauge,
    audit_seal_backlog_bytes: IntGauge,
    audit_archive: ArchiveMetrics,
    connections: prometheus::IntGaugeVec,
    models_served: IntGauge,
    model_engines: prometheus::IntGaugeVec,
    model_loads: IntCounterVec,
    pub(crate) connections_refused: IntCounterVec,
    hops: IntCounterVec,
    hop_seconds: HistogramVec,
    routes: IntCounterVec,
    pub(crate) connections_closed: IntCounterVec,
    rate_limited: IntCounterVec,
    outlier_score: HistogramVec,
    drift_p_value: prometheus::GaugeVec,
}

/// Latency buckets from 50 µs to about 13 s.
fn buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.00005, 2.0, 19).unwrap_or_default()
}

impl Metrics {
    /// Every metric now (what `/metrics` renders), for the console's health page.
    pub(crate) fn families(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.registry.gather()
    }

    /// Creates the metrics for a set of served models.
    pub fn new(models: &Registry) -> Result<Metrics, prometheus::Error> {
        let registry = prometheus::Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("palisade_requests_total", "Data-plane requests by model and HTTP status."),
            &["model", "code"],
        )?;
        let request_seconds = HistogramVec::new(
            HistogramOpts::new("palisade_request_duration_seconds", "Data-plane request latency by model.")
                .buckets(buckets()),
            &["model"],
        )?;
        let queue_wait_seconds = HistogramVec::new(
            HistogramOpts::new(
                "palisade_inference_queue_wait_seconds",
                "Time inference jobs waited for a thread (and, with batching, for their batch).",
            )
            .buckets(buckets()),
            &["model"],
        )?;
        let inference_seconds = HistogramVec::new(
            HistogramOpts::new("palisade_inference_duration_seconds", "Time spent running models.")
                .buckets(buckets()),
            &["model"],
        )?;
        let batch_rows = HistogramVec::new(
            HistogramOpts::new("palisade_batch_size_rows", "Rows per batch run by adaptive batching.")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0]),
            &["model"],
        )?;
        let queue_depth =
            IntGauge::new("palisade_inference_queue_depth", "Inference jobs waiting for a thread.")?;
        let served = IntGauge::new("palisade_models_served", "Model versions being served.")?;
        let engines = prometheus::IntGaugeVec::new(
            Opts::new(
                "palisade_model_engine",
                "1 for each served model version, labelled with the engine that computes it (tract, onnxruntime, upstream).",
            ),
            &["model", "version", "engine"],
        )?;
        let authn_failures = IntCounterVec::new(
            Opts::new(
                "palisade_authn_failures_total",
                "Requests refused by authentication, by model (a served model's name, else `-`) and reason.",
            ),
            &["model", "reason"],
        )?;
        registry.register(Box::new(authn_failures.clone()))?;
        let decisions = IntCounterVec::new(
            Opts::new(
                "palisade_authz_decisions_total",
                "Authorization decisions by deciding policy (namespace/name, or the default that decided).",
            ),
            &["policy", "decision"],
        )?;
        registry.register(Box::new(decisions.clone()))?;
        let mtls_requests = IntCounterVec::new(
            Opts::new(
                "palisade_mtls_requests_total",
                "Authenticated model requests by model namespace, PeerAuthentication mode (STRICT, PERMISSIVE, DISABLE) and what the connection proved (peer: verified, tls_no_client_cert, plaintext). Under STRICT only `verified` requests are served.",
            ),
            &["namespace", "mode", "peer"],
        )?;
        registry.register(Box::new(mtls_requests.clone()))?;
        let audit_refusals = IntCounterVec::new(
            Opts::new(
                "palisade_audit_refusals_total",
                "Responses replaced by 503 because their audit record could not be made durable, by model (a served model's name, else `-`).",
            ),
            &["model"],
        )?;
        let audit_queue_depth =
            IntGauge::new("palisade_audit_queue_depth", "Audit records waiting for the writer.")?;
        let audit_records = prometheus::IntCounter::new(
            "palisade_audit_records_total",
            "Audit records written and fsynced.",
        )?;
        let audit_dropped = prometheus::IntCounter::new(
            "palisade_audit_dropped_total",
            "Audit records dropped (relaxed mode only: buffer full or write failed).",
        )?;
        let audit_write_errors = prometheus::IntCounter::new(
            "palisade_audit_write_errors_total",
            "Failed audit segment writes or fsyncs.",
        )?;
        let audit_bytes_written = prometheus::IntCounter::new(
            "palisade_audit_bytes_written_total",
            "Bytes of audit records written and fsynced to the active (plain) segment.",
        )?;
        let audit_sealed_segments = prometheus::IntCounter::new(
            "palisade_audit_sealed_segments_total",
            "Rotated audit segments sealed (zstd frames, index, signed seal checkpoint).",
        )?;
        let audit_sealed_records = prometheus::IntCounter::new(
            "palisade_audit_sealed_records_total",
            "Audit records in the segments sealed.",
        )?;
        let audit_sealed_plain_bytes = prometheus::IntCounter::new(
            "palisade_audit_sealed_plain_bytes_total",
            "Bytes of the plain segments sealed (before compression).",
        )?;
        let audit_sealed_bytes = prometheus::IntCounter::new(
            "palisade_audit_sealed_bytes_total",
            "Bytes of the sealed segment files written (after compression).",
        )?;
        let audit_seal_errors = prometheus::IntCounter::new(
            "palisade_audit_seal_errors_total",
            "Sealing passes that failed (the plain segments are kept; see the log for why).",
        )?;
        let audit_retention_blocked_segments = IntGauge::new(
            "palisade_audit_retention_blocked_segments",
            "Sealed audit segments audit.retention would delete but keeps, because no archive holds a checked copy.",
        )?;
        let audit_retention_blocked_bytes =
            IntGauge::new("palisade_audit_retention_blocked_bytes", "Bytes of those segments.")?;
        let audit_seal_backlog_segments = IntGauge::new(
            "palisade_audit_seal_backlog_segments",
            "Rotated audit segments still plain after the sealer's last pass (grows while sealing fails or waits).",
        )?;
        let audit_seal_backlog_bytes =
            IntGauge::new("palisade_audit_seal_backlog_bytes", "Bytes of those segments.")?;
        let audit_shipped = prometheus::IntCounter::new(
            "palisade_audit_shipped_lines_total",
            "Audit lines (records and checkpoints) copied to stdout for a log collector (audit.ship.stdout).",
        )?;
        let audit_ship_dropped = prometheus::IntCounter::new(
            "palisade_audit_ship_dropped_lines_total",
            "Audit lines not copied to stdout (queue full or stdout failed); they are in the local trail.",
        )?;
        let audit_ship_errors = prometheus::IntCounter::new(
            "palisade_audit_ship_errors_total",
            "Failed writes of audit lines to stdout.",
        )?;
        let audit_fsync_seconds = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "palisade_audit_fsync_seconds",
                "Duration of audit log fsyncs (one per group commit).",
            )
            .buckets(buckets()),
        )?;
        let connections = prometheus::IntGaugeVec::new(
            Opts::new(
                "palisade_connections",
                "Open data-port connections by state: fresh (no complete request yet), busy, idle.",
            ),
            &["state"],
        )?;
        let connections_refused = IntCounterVec::new(
            Opts::new(
                "palisade_connections_refused_total",
                "Connections closed at accept: per_ip (the address holds --max-connections-per-ip), global (--max-connections reached and nothing to shed).",
            ),
            &["reason"],
        )?;
        let connections_closed = IntCounterVec::new(
            Opts::new(
                "palisade_connections_closed_total",
                "Connections the server closed: header_timeout (no complete request head in time), idle_timeout, shed (to make room at --max-connections).",
            ),
            &["reason"],
        )?;
        for collector in [
            Box::new(connections.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(connections_refused.clone()),
            Box::new(connections_closed.clone()),
            Box::new(audit_refusals.clone()),
            Box::new(audit_queue_depth.clone()),
            Box::new(audit_records.clone()),
            Box::new(audit_dropped.clone()),
            Box::new(audit_write_errors.clone()),
            Box::new(audit_shipped.clone()),
            Box::new(audit_ship_dropped.clone()),
            Box::new(audit_ship_errors.clone()),
            Box::new(audit_fsync_seconds.clone()),
            Box::new(audit_bytes_written.clone()),
            Box::new(audit_sealed_segments.clone()),
            Box::new(audit_sealed_records.clone()),
            Box::new(audit_sealed_plain_bytes.clone()),
            Box::new(audit_sealed_bytes.clone()),
            Box::new(audit_seal_errors.clone()),
            Box::new(audit_retention_blocked_segments.clone()),
            Box::new(audit_retention_blocked_bytes.clone()),
            Box::new(audit_seal_backlog_segments.clone()),
            Box::new(audit_seal_backlog_bytes.clone()),
        ] {
            registry.register(collector)?;
        }
        let audit_archive = ArchiveMetrics::new(&registry)?;
        let hops = IntCounterVec::new(
            Opts::new(
                "palisade_graph_hops_total",
                "Model calls made by inference graph nodes, by graph, node, model and outcome (ok, denied, error); shadow calls under node `shadow`.",
            ),
            &["graph", "node", "model", "outcome"],
        )?;
        let hop_seconds = HistogramVec::new(
            HistogramOpts::new(
                "palisade_graph_hop_duration_seconds",
                "Time of one graph node's model call, authorization and queueing included.",
            )
            .buckets(buckets()),
            &["graph", "node"],
        )?;
        let routes = IntCounterVec::new(
            Opts::new(
                "palisade_graph_routes_total",
                "Requests by the arm a graph's router or traffic split served them with: the traffic split actually served.",
            ),
            &["graph", "router", "arm"],
        )?;
        let outlier_score = HistogramVec::new(
            HistogramOpts::new(
                "palisade_outlier_score",
                "Outlier scores of predicted rows by model (monitoring.outliers): Mahalanobis distances (higher is more abnormal) or IsolationForest score_samples (in [-1, 0], lower is more abnormal).",
            )
            .buckets(vec![
                -1.0, -0.8, -0.7, -0.6, -0.55, -0.5, -0.45, -0.4, -0.3, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5,
                10.0, 20.0, 50.0,
            ]),
            &["model"],
        )?;
        let drift_p_value = prometheus::GaugeVec::new(
            Opts::new(
                "palisade_drift_p_value",
                "Two-sample Kolmogorov-Smirnov p-value (not corrected) of each feature's recent window against the model's reference (monitoring.drift), as of the last scrape or drift report.",
            ),
            &["model", "version", "feature"],
        )?;
        registry.register(Box::new(outlier_score.clone()))?;
        registry.register(Box::new(drift_p_value.clone()))?;
        registry.register(Box::new(hops.clone()))?;
        registry.register(Box::new(hop_seconds.clone()))?;
        registry.register(Box::new(routes.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_seconds.clone()))?;
        registry.register(Box::new(queue_wait_seconds.clone()))?;
        registry.register(Box::new(inference_seconds.clone()))?;
        registry.register(Box::new(batch_rows.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(served.clone()))?;
        registry.register(Box::new(engines.clone()))?;
        let model_loads = IntCounterVec::new(
            Opts::new(
                "palisade_model_loads_total",
                "Model versions loaded (at startup and as the store changed), stopped serving (unloaded), or refused while serving (failed: the bundle did not verify or prepare; the other versions kept serving).",
            ),
            &["result"],
        )?;
        registry.register(Box::new(model_loads.clone()))?;
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "palisade_rate_limited_total",
                "Requests refused with 429 by a caller's rate limit (limits.rate), by model and endpoint.",
            ),
            &["model", "endpoint"],
        )?;
        registry.register(Box::new(rate_limited.clone()))?;
        model_loads.with_label_values(&["loaded"]).inc_by(models.all().count() as u64);
        model_loads.with_label_values(&["unloaded"]).reset();
        model_loads.with_label_values(&["failed"]).reset();
        for model in models.all() {
            engines
                .with_label_values(&[model.id.name.as_str(), model.id.version.as_str(), model.model.engine()])
                .set(1);
        }
        #[cfg(target_os = "linux")]
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        served.set(models.all().count() as i64);
        Ok(Metrics {
            registry,
            requests,
            request_seconds,
            queue_wait_seconds,
            inference_seconds,
            batch_rows,
            queue_depth,
            authn_failures,
            decisions,
            mtls_requests,
            audit_refusals,
            audit_queue_depth,
            audit_records,
            audit_dropped,
            audit_write_errors,
            audit_shipped,
            audit_ship_dropped,
            audit_ship_errors,
            audit_fsync_seconds,
            audit_bytes_written,
            audit_sealed_segments,
            audit_sealed_records,
            audit_sealed_plain_bytes,
            audit_sealed_bytes,
            audit_seal_errors,
            audit_retention_blocked_segments,
            audit_retention_blocked_bytes,
            audit_seal_backlog_segments,
            audit_seal_backlog_bytes,
            audit_archive,
            connections,
            models_served: served,
            model_engines: engines,
            model_loads,
            connections_refused,
            hops,
            hop_seconds,
            routes,
            connections_closed,
            rate_limited,
            outlier_score,
            drift_p_value,
        })
    }

    /// Records one prediction's outlier scores (NaN scores are left out).
    pub(crate) fn observe_outliers(&self, model: &str, scores: &[f64]) {
        let histogram = self.outlier_score.with_label_values(&[model]);
        for score in scores.iter().filter(|s| s.is_finite()) {
            histogram.observe(*score);
        }
    }

    /// Sets a model version's drift gauges from a report.
    pub(crate) fn set_drift(
        &self,
        model: &str,
        version: &str,
        features: &[String],
        report: &palisade_explain::DriftReport,
    ) {
        for (name, feature) in features.iter().zip(&report.features) {
            self.drift_p_value.with_label_values(&[model, version, name]).set(feature.test.p_value);
        }
    }

    /// Counts what a change of the served models did, and follows the served set.
    pub(crate) fn observe_models(&self, changes: &crate::registry::Changes, served: usize) {
        for model in &changes.loaded {
            self.model_engines
                .with_label_values(&[model.id.name.as_str(), model.id.version.as_str(), model.model.engine()])
                .set(1);
        }
        for model in &changes.unloaded {
            let labels = [model.id.name.as_str(), model.id.version.as_str(), model.model.engine()];
            let _ = self.model_engines.remove_label_values(&labels);
        }
        self.model_loads.with_label_values(&["loaded"]).inc_by(changes.loaded.len() as u64);
        self.model_loads.with_label_values(&["unloaded"]).inc_by(changes.unloaded.len() as u64);
        self.model_loads.with_label_values(&["failed"]).inc_by(changes.failed.len() as u64);
        self.models_served.set(served as i64);
    }

    /// Sets the connection gauges from a front door's counts (fresh, busy, idle).
    pub(crate) fn sync_connections(&self, counts: [usize; 3]) {
        for (state, count) in ["fresh", "busy", "idle"].iter().zip(counts) {
            self.connections.with_label_values(&[state]).set(count as i64);
        }
    }

    /// Registers another collector (from other parts of the server).
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) -> Result<(), prometheus::Error> {
        self.registry.register(collector)
    }

    /// Counts a request refused by a caller's rate limit. Labels are bounded: served model
    /// names and the route's endpoint name.
    pub(crate) fn observe_rate_limited(&self, model: &str, endpoint: &'static str) {
        self.rate_limited.with_label_values(&[model, endpoint]).inc();
    }

    /// Counts a refused authentication. Labels are bounded: `model` is the request
    /// context's [`model_label`](crate::context::RequestContext::model_label) (a served
    /// model's name, else `-`), `reason` one of the authenticator's fixed reasons.
    pub fn observe_authn_failure(&self, model: &str, reason: &str) {
        self.authn_failures.with_label_values(&[model, reason]).inc();
    }

    /// Counts an authorization decision. The policy label is bounded by the configured
    /// policies.
    pub fn observe_decision(&self, decision: &palisade_policy::Decision) {
        use palisade_policy::DecisionReason as R;
        let policy = match &decision.reason {
            R::DeniedByPolicy { policy, .. }
            | R::AllowedByPolicy { policy, .. }
            | R::CustomDeny { policy } => policy.to_string(),
            R::OwnerDefault { .. } => "owner-default".to_owned(),
            R::NotAnOwner => "owner-default".to_owned(),
            R::NoMatchingAllow => "no-matching-allow".to_owned(),
        };
        let outcome = if decision.allowed { "allow" } else { "deny" };
        self.decisions.with_label_values(&[policy.as_str(), outcome]).inc();
    }

    /// Counts a request that reached a model's mTLS check. Labels are bounded: namespaces of
    /// served models, three modes, four peer kinds.
    pub(crate) fn observe_mtls(
        &self,
        namespace: &str,
        mode: palisade_tls::MtlsMode,
        peer: crate::layers::authz::PeerKind,
    ) {
        self.mtls_requests.with_label_values(&[namespace, mode.as_str(), peer.as_str()]).inc();
    }

    /// Counts a response replaced by 503 for lack of a durable audit record; `model` is the
    /// request context's model label (a served model's name, else `-`).
    pub fn observe_audit_refusal(&self, model: &str) {
        self.audit_refusals.with_label_values(&[model]).inc();
    }

    /// The histogram the audit writer reports fsync durations to.
    pub fn audit_fsync_histogram(&self) -> prometheus::Histogram {
        self.audit_fsync_seconds.clone()
    }

    fn sync_audit(&self, stats: &palisade_audit::AuditStats) {
        self.audit_queue_depth.set(stats.queue_depth as i64);
        catch_up(&self.audit_records, stats.records_written);
        catch_up(&self.audit_dropped, stats.dropped);
        catch_up(&self.audit_write_errors, stats.write_errors);
        catch_up(&self.audit_shipped, stats.ship.shipped);
        catch_up(&self.audit_ship_dropped, stats.ship.dropped);
        catch_up(&self.audit_ship_errors, stats.ship.errors);
        catch_up(&self.audit_bytes_written, stats.bytes_written);
    }

    fn sync_sealer(&self, stats: &palisade_audit::SealerStats) {
        catch_up(&self.audit_sealed_segments, stats.segments);
        catch_up(&self.audit_sealed_records, stats.records);
        catch_up(&self.audit_sealed_plain_bytes, stats.plain_bytes);
        catch_up(&self.audit_sealed_bytes, stats.sealed_bytes);
        catch_up(&self.audit_seal_errors, stats.errors);
        self.audit_retention_blocked_segments
            .set(i64::try_from(stats.retention_blocked_segments).unwrap_or(i64::MAX));
        self.audit_retention_blocked_bytes
            .set(i64::try_from(stats.retention_blocked_bytes).unwrap_or(i64::MAX));
        self.audit_seal_backlog_segments.set(i64::try_from(stats.backlog_segments).unwrap_or(i64::MAX));
        self.audit_seal_backlog_bytes.set(i64::try_from(stats.backlog_bytes).unwrap_or(i64::MAX));
    }

    fn sync_archiver(&self, stats: &palisade_archive::ArchiverStats) {
        let a = &self.audit_archive;
        catch_up(&a.segments, stats.segments);
        catch_up(&a.bytes, stats.segment_bytes);
        catch_up(&a.checkpoint_bytes, stats.checkpoint_bytes);
        catch_up(&a.errors, stats.errors);
        catch_up(&a.retention_deleted, stats.retention_deleted);
        let gauge = |g: &IntGauge, v: u64| g.set(i64::try_from(v).unwrap_or(i64::MAX));
        gauge(&a.backlog_segments, stats.backlog_segments);
        gauge(&a.backlog_bytes, stats.backlog_bytes);
        gauge(&a.oldest_unarchived_seconds, stats.oldest_unarchived_secs);
        gauge(&self.audit_retention_blocked_segments, stats.retention_blocked_segments);
        gauge(&self.audit_retention_blocked_bytes, stats.retention_blocked_bytes);
    }

    /// What a model's batcher reports each batch to: its rows, in the batch-size histogram.
    pub fn batch_observer(&self, model: &str) -> palisade_runtime::BatchObserver {
        let histogram = self.batch_rows.with_label_values(&[model]);
        std::sync::Arc::new(move |stats: &palisade_runtime::BatchStats| histogram.observe(stats.rows as f64))
    }

    /// Counts and times one hop of a graph.
    pub(crate) fn observe_hop(
        &self,
        graph: &str,
        node: &str,
        model: &str,
        outcome: &str,
        took: std::time::Duration,
    ) {
        self.hops.with_label_values(&[graph, node, model, outcome]).inc();
        self.hop_seconds.with_label_values(&[graph, node]).observe(took.as_secs_f64());
    }

    /// Counts the arm a router chose.
    pub(crate) fn observe_route(&self, graph: &str, router: &str, arm: &str) {
        self.routes.with_label_values(&[graph, router, arm]).inc();
    }

    /// Records one inference's queue wait and compute time.
    pub fn observe_inference(
        &self,
        model: &str,
        queue_wait: std::time::Duration,
        compute: std::time::Duration,
    ) {
        self.queue_wait_seconds.with_label_values(&[model]).observe(queue_wait.as_secs_f64());
        self.inference_seconds.with_label_values(&[model]).observe(compute.as_secs_f64());
    }
}

/// Raises a Prometheus counter to `total`, a count kept elsewhere (never lowers it).
pub(crate) fn catch_up(counter: &prometheus::IntCounter, total: u64) {
    let current = counter.get();
    if total > current {
        counter.inc_by(total - current);
    }
}

/// Counts every data-plane response by model and status, and times it.
pub(crate) async fn track(State(state): State<AppState>, ctx: Ctx, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let metrics = state.metrics();
    // A gRPC refusal travels as HTTP 200 with its code in the headers: count it under the
    // status it stands for. (Completed gRPC calls carry their code in trailers: 200.)
    let status = crate::api::grpc::effective_status(
        response.status(),
        crate::api::grpc::code_of(response.headers(), None),
    );
    let model = ctx.model_label();
    metrics.requests.with_label_values(&[model, status.as_str()]).inc();
    metrics.request_seconds.with_label_values(&[model]).observe(ctx.started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics` on the admin port, in the Prometheus text format.
pub(crate) async fn render(State(state): State<AppState>) -> Response {
    let metrics = state.metrics();
    metrics.queue_depth.set(state.engine().queue_depth() as i64);
    metrics.sync_audit(&state.audit().stats());
    if let Some(sealer) = state.audit_sealer() {
        metrics.sync_sealer(&sealer.stats());
    }
    // After the sealer: with an archive, retention runs in the archiver, whose blocked
    // counts are the ones that mean something.
    if let Some(archiver) = state.audit_archiver() {
        metrics.sync_archiver(&archiver.stats());
    }
    if let Some(front) = state.front_door() {
        metrics.sync_connections(front.counts());
    }
    state.sync_serving_cert();
    let (registry, copy) = (state.registry(), metrics.clone());
    // Drift tests sort and walk each window: off the async runtime.
    let _ = tokio::task::spawn_blocking(move || crate::monitoring::refresh_gauges(&registry, &copy)).await;
    let mut out = Vec::new();
    let encoder = TextEncoder::new();
    match encoder.encode(&metrics.registry.gather(), &mut out) {
        Ok(()) => ([(header::CONTENT_TYPE, encoder.format_type().to_owned())], out).into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

/// `GET /readyz` on the admin port: 200 while serving; 503 while draining, while the audit
/// log cannot be written in strict mode (the data port then refuses predictions), or once
/// the data port's TLS certificate has expired (clients refuse it).
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let health = state.audit().health();
    if health.mode == palisade_audit::Mode::Strict && !health.writable {
        let reason = health.last_error.unwrap_or_default();
        return (StatusCode::SERVICE_UNAVAILABLE, format!("audit log unavailable: {reason}\n"))
            .into_response();
    }
    if let Some(problem) = state.serving_cert_problem() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{problem}\n")).into_response();
    }
    let bound = state.security().platform().config.audit.seal.max_backlog;
    if let (Some(bound), Some(sealer)) = (bound, state.audit_sealer()) {
        let backlog = sealer.stats().backlog_segments;
        if backlog > bound {
            let message = format!(
                "audit seal backlog: {backlog} rotated segments wait to be sealed (audit.seal.maxBacklog: {bound}); the server log says why sealing fails\n"
            );
            return (StatusCode::SERVICE_UNAVAILABLE, message).into_response();
        }
    }
    let bound = state.security().platform().config.audit.archive.as_ref().and_then(|a| a.max_backlog);
    if let (Some(bound), Some(archiver)) = (bound, state.audit_archiver()) {
        let stats = archiver.stats();
        if stats.backlog_segments > bound {
            let message = format!(
                "audit archive backlog: {} sealed segments ({} bytes, the oldest sealed {} s ago) wait to be archived (audit.archive.maxBacklog: {bound}); the server log says why archiving fails\n",
                stats.backlog_segments, stats.backlog_bytes, stats.oldest_unarchived_secs
            );
            return (StatusCode::SERVICE_UNAVAILABLE, message).into_response();
        }
    }
    if state.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    }
}

/// The archiver's metrics (`audit.archive`).
#[derive(Clone)]
struct ArchiveMetrics {
    segments: prometheus::IntCounter,
    bytes: prometheus::IntCounter,
    checkpoint_bytes: prometheus::IntCounter,
    errors: prometheus::IntCounter,
    retention_deleted: prometheus::IntCounter,
    backlog_segments: IntGauge,
    backlog_bytes: IntGauge,
    oldest_unarchived_seconds: IntGauge,
}

impl ArchiveMetrics {
    fn new(registry: &prometheus::Registry) -> Result<ArchiveMetrics, prometheus::Error> {
        let counter = |name: &str, help: &str| prometheus::IntCounter::new(name, help);
        let metrics = ArchiveMetrics {
            segments: counter(
                "palisade_audit_archived_segments_total",
                "Sealed audit segments copied to the archive and read back identical (size and SHA-256).",
            )?,
            bytes: counter("palisade_audit_archived_bytes_total", "Bytes of those segments.")?,
            checkpoint_bytes: counter(
                "palisade_audit_archived_checkpoint_bytes_total",
                "Bytes of checkpoints.jsonl copied to the archive and read back identical.",
            )?,
            errors: counter(
                "palisade_audit_archive_errors_total",
                "Archiving passes or retention checks that failed (the store unreachable, an archived object that differs); the local trail is kept.",
            )?,
            retention_deleted: counter(
                "palisade_audit_retention_deleted_segments_total",
                "Sealed audit segments deleted locally by audit.retention, each after its archived copy was confirmed.",
            )?,
            backlog_segments: IntGauge::new(
                "palisade_audit_archive_backlog_segments",
                "Sealed audit segments not yet archived after the archiver's last pass.",
            )?,
            backlog_bytes: IntGauge::new("palisade_audit_archive_backlog_bytes", "Bytes of those segments.")?,
            oldest_unarchived_seconds: IntGauge::new(
                "palisade_audit_archive_oldest_unarchived_seconds",
                "Seconds since the oldest sealed audit segment not yet archived was sealed (0 when none).",
            )?,
        };
        for collector in [
            &metrics.segments,
            &metrics.bytes,
            &metrics.checkpoint_bytes,
            &metrics.errors,
            &metrics.retention_deleted,
        ] {
            registry.register(Box::new(collector.clone()))?;
        }
        for gauge in [&metrics.backlog_segments, &metrics.backlog_bytes, &metrics.oldest_unarchived_seconds] {
            registry.register(Box::new(gauge.clone()))?;
        }
        Ok(metrics)
    }
}
