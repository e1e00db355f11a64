//! Palisade's HTTP server: the Open Inference Protocol V2 and Seldon v1 endpoints, the
//! OpenAPI document and Swagger UI, and the admin port (metrics, readiness).
//!
//! [`app`] assembles the data-plane router and its layers in one place; [`serve`] runs it
//! until shutdown.

mod api;
mod body;
mod certificate;
pub mod context;
mod control;
mod error;
pub mod explain;
pub mod front;
mod graphs;
mod layers;
mod metrics;
pub mod monitoring;
pub mod platform;
pub mod rate;
pub mod registry;
mod request_id;
mod rescue;
pub mod route;
pub mod router;
pub mod security;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::middleware::{from_fn, from_fn_with_state};
use palisade_audit::Level;
use palisade_core::Tensor;
use palisade_runtime::{CallContext, Dispatcher, Engine};
use tokio::net::TcpListener;

pub use body::BodyBudget;
pub use certificate::ServingCert;
pub use context::{ConnInfo, RequestContext};
pub use error::ApiError;
pub use front::{Front, FrontConfig};
pub use layers::AuditHandle;
pub use metrics::Metrics;
pub use platform::{ConfigError, Platform};
pub use registry::{ModelNames, Registry, RegistryError, Servable, ServedModel};
pub use request_id::{RequestId, TraceContext};
pub use security::{Security, SecurityConfig};

/// Data-plane settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request body accepted, in bytes (default 32 MiB); larger bodies get 413.
    pub max_body_bytes: usize,
    /// How long one inference may take, queue wait included (default 60 s); then 504.
    pub inference_timeout: Duration,
    /// Request body bytes held in memory at once, over all requests (512 MiB here; `palisade serve`
    /// defaults to a quarter of the memory limit);
    /// past it, requests are refused with 503 without their bodies being held.
    pub max_inflight_bytes: usize,
    /// Serve without authentication, authorization and audit (`--dangerous-disable-security`),
    /// for measuring the security layers' cost on loopback. Never the default.
    pub dangerous_disable_security: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 32 * 1024 * 1024,
            inference_timeout: Duration::from_secs(60),
            max_inflight_bytes: 512 * 1024 * 1024,
            dangerous_disable_security: false,
        }
    }
}

/// Graph requests remembered for feedback (their routes and callers), at most.
const FEEDBACK_CAPACITY: usize = 100_000;
/// How long a graph request can be given feedback.
const FEEDBACK_MAX_AGE: Duration = Duration::from_secs(3600);

/// Everything handlers share.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    security: Arc<Security>,
    audit: Arc<palisade_audit::AuditLog>,
    sealer: Option<Arc<palisade_audit::Sealer>>,
    archiver: Option<Arc<palisade_archive::Archiver>>,
    /// The models served now: replaced whole when the store changes, read once per request.
    registry: std::sync::RwLock<Arc<Registry>>,
    dispatcher: Dispatcher,
    config: ServerConfig,
    body_budget: Arc<BodyBudget>,
    openapi: std::sync::RwLock<bytes::Bytes>,
    docs: Arc<utoipa_swagger_ui::Config<'static>>,
    metrics: Metrics,
    ready: AtomicBool,
    serving_cert: OnceLock<certificate::Watched>,
    front: OnceLock<Front>,
    feedback: palisade_graph::FeedbackLog,
    limiter: rate::Limiter,
    /// The web console's sessions and sign-in, when the console is on.
    console: Option<Arc<control::console::ConsoleState>>,
}

impl AppState {
    /// Bundles the served models, the engine, the security state and the settings.
    pub fn new(
        registry: Registry,
        engine: Engine,
        security: Arc<Security>,
        audit: AuditHandle,
        config: ServerConfig,
    ) -> Result<AppState, StateError> {
        let openapi = bytes::Bytes::from(api::openapi::document(&registry, &security).to_string());
        let metrics = Metrics::new(&registry)?;
        metrics.register(Box::new(security.reload_failures().clone()))?;
        let dispatcher = Dispatcher::new(engine, config.inference_timeout);
        for served in registry.all() {
            start_batching(served, &dispatcher, &security, &metrics)?;
            warn_rate_loosenings(served, &security);
        }
        let limiter = rate::Limiter::new(security.platform().config.limits.max_tracked_callers);
        audit.attach_histogram(metrics.audit_fsync_histogram());
        let sealer = audit.sealer().cloned();
        let archiver = audit.archiver().cloned();
        let audit = audit.log().clone();
        let body_budget = BodyBudget::new(config.max_inflight_bytes);
        let console = match &security.platform().config.console {
            settings if settings.enabled && !config.dangerous_disable_security => Some(Arc::new(
                control::console::ConsoleState::new(settings, security.authenticator().settings().clone())
                    .map_err(|err| StateError::Console(err.to_string()))?,
            )),
            _ => None,
        };
        Ok(AppState {
            inner: Arc::new(Inner {
                security,
                audit,
                sealer,
                archiver,
                registry: std::sync::RwLock::new(Arc::new(registry)),
                dispatcher,
                config,
                body_budget,
                openapi: std::sync::RwLock::new(openapi),
                docs: api::docs::config(),
                metrics,
                ready: AtomicBool::new(true),
                serving_cert: OnceLock::new(),
                front: OnceLock::new(),
                feedback: palisade_graph::FeedbackLog::new(FEEDBACK_CAPACITY, FEEDBACK_MAX_AGE),
                limiter,
                console,
            }),
        })
    }

    /// The security state.
    pub fn security(&self) -> &Arc<Security> {
        &self.inner.security
    }

    /// The audit log.
    pub fn audit(&self) -> &Arc<palisade_audit::AuditLog> {
        &self.inner.audit
    }

    /// The audit log's background sealer, when sealing is enabled.
    pub fn audit_sealer(&self) -> Option<&Arc<palisade_audit::Sealer>> {
        self.inner.sealer.as_ref()
    }

    /// The audit log's background archiver, when `audit.archive` is set.
    pub fn audit_archiver(&self) -> Option<&Arc<palisade_archive::Archiver>> {
        self.inner.archiver.as_ref()
    }

    /// Whether the docs are served without a token.
    pub fn docs_public(&self) -> bool {
        self.inner.security.platform().config.docs.public
    }

    /// The models served now (a snapshot: a request reads it once, and keeps serving the
    /// versions it resolved even when the store changes meanwhile).
    pub fn registry(&self) -> Arc<Registry> {
        self.inner.registry.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The OpenAPI document of the models served now.
    pub(crate) fn openapi(&self) -> bytes::Bytes {
        self.inner.openapi.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Serves `next` from now on: batchers start for the versions loaded and stop for those
    /// unloaded, the OpenAPI document and metrics follow, and each load and unload leaves an
    /// audit record. Requests in flight finish on the versions they resolved.
    pub async fn replace_models(&self, next: Registry, changes: &registry::Changes) {
        for served in &changes.unloaded {
            self.inner.dispatcher.unbatch(&served.id);
        }
        for served in &changes.loaded {
            if let Err(error) =
                start_batching(served, &self.inner.dispatcher, self.security(), self.metrics())
            {
                tracing::warn!(model = %served.id, %error, "served without batching");
            }
            warn_rate_loosenings(served, self.security());
        }
        let document = bytes::Bytes::from(api::openapi::document(&next, self.security()).to_string());
        let served = next.all().count();
        *self.inner.openapi.write().unwrap_or_else(|e| e.into_inner()) = document;
        *self.inner.registry.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        self.metrics().observe_models(changes, served);
        for (what, list) in [("loaded", &changes.loaded), ("unloaded", &changes.unloaded)] {
            for model in list {
                tracing::info!(model = %model.id, digest = %model.digest, "model {what}");
                let change = palisade_audit::ConfigChange {
                    who: "palisade serve (store watch)".to_owned(),
                    what: format!("model {}:{} {what}", model.id.name, model.id.version),
                    before_digest: (what == "unloaded").then(|| model.digest.to_string()),
                    after_digest: (what == "loaded").then(|| model.digest.to_string()),
                };
                if let Err(error) =
                    self.audit().append(palisade_audit::AuditRecord::config_change(change)).await
                {
                    tracing::error!(%error, "the audit record of a model change could not be written");
                }
            }
        }
        for (model, error) in &changes.failed {
            tracing::error!(%model, %error, "model not loaded; the other models keep serving");
        }
    }

    /// Watches `store` (every `every`) and serves what it holds: versions built, tagged or
    /// deleted while serving appear and go without a restart (see [`AppState::replace_models`]).
    /// Verification and loading run off the request path. Call once, on the runtime.
    pub fn watch_store(
        &self,
        store: palisade_bundle::Store,
        upstream: palisade_runtime::UpstreamContext,
        every: Duration,
    ) {
        let state = self.clone();
        tokio::spawn(async move {
            let mut seen = store.list().ok();
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let now = match store.list() {
                    Ok(records) => records,
                    Err(error) => {
                        tracing::warn!(%error, "cannot list the store; serving what is loaded");
                        continue;
                    }
                };
                if seen.as_ref() == Some(&now) {
                    continue;
                }
                let (current, store2, upstream2) = (state.registry(), store.clone(), upstream.clone());
                let reloaded = tokio::task::spawn_blocking(move || current.reload(&store2, &upstream2)).await;
                match reloaded {
                    Ok(Ok((next, changes))) => {
                        state.replace_models(next, &changes).await;
                        seen = Some(now);
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "cannot reload the store; serving what is loaded")
                    }
                    Err(error) => {
                        tracing::error!(%error, "the store reload panicked; serving what is loaded")
                    }
                }
            }
        });
    }

    /// Samples the request metrics for the console's health page now, and every 10 s
    /// from now on (an hour is kept). Call once, on the runtime; without the console it
    /// does nothing.
    pub fn watch_console_health(&self) {
        if self.inner.console.is_none() {
            return;
        }
        let state = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(control::health::EVERY);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                state.sample_console_health();
            }
        });
    }

    /// Takes one sample of the request metrics for the console's health page.
    pub fn sample_console_health(&self) {
        if let Some(console) = &self.inner.console {
            console.health.sample(self);
        }
    }

    /// The inference engine.
    pub fn engine(&self) -> &Engine {
        self.inner.dispatcher.engine()
    }

    /// The batcher of a model version, if its requests are batched.
    pub fn batcher(&self, model: &palisade_core::ModelRef) -> Option<Arc<palisade_runtime::Batcher>> {
        self.inner.dispatcher.batcher(model)
    }

    /// Whether security is on: authentication, authorization and audit run, and the issuer
    /// and management routes exist.
    pub fn secured(&self) -> bool {
        !self.inner.config.dangerous_disable_security
    }

    /// Which routes exist: the issuer and `/manage` with security, `/console` with the console.
    pub fn route_options(&self) -> route::RouteOptions {
        route::RouteOptions { secured: self.secured(), console: self.inner.console.is_some() }
    }

    /// The web console's state, when the console is on.
    pub(crate) fn console(&self) -> Option<&Arc<control::console::ConsoleState>> {
        self.inner.console.as_ref()
    }

    /// The budget of request body bytes in flight.
    pub fn body_budget(&self) -> &Arc<BodyBudget> {
        &self.inner.body_budget
    }

    /// The audit level of a request for `model` (or for no model): the model's own level,
    /// raised to the platform's minimum.
    pub fn audit_level(&self, model: Option<&ServedModel>) -> Level {
        let manifest = model.map_or(palisade_bundle::manifest::AuditLevel::Metadata, |m| m.audit.level);
        layers::audit::level_of(manifest.max(self.security().platform().config.audit.minimum_level))
    }

    /// What the audit record of this request keeps of its body.
    pub(crate) fn keep(&self, ctx: &RequestContext) -> body::Keep {
        let level = self.audit_level(ctx.served().map(Arc::as_ref));
        if !self.secured() || level == Level::None {
            body::Keep::Nothing
        } else if level >= Level::Request && ctx.route.addresses_model() {
            body::Keep::Payload
        } else {
            body::Keep::Digest
        }
    }

    /// Reads a request body after authorization, within the body limit and the in-flight
    /// budget (see [`body`]), keeping it for the audit record at the payload levels.
    pub(crate) async fn read_body(
        &self,
        ctx: &RequestContext,
        headers: &axum::http::HeaderMap,
        body: axum::body::Body,
    ) -> Result<body::ReadBody, ApiError> {
        // A model's manifest may set its own body limit (`limits.maxBodyBytes`).
        let limit =
            ctx.served().and_then(|s| s.model.max_body_bytes()).unwrap_or(self.inner.config.max_body_bytes);
        body::read(ctx, &self.inner.body_budget, headers, body, limit, self.keep(ctx)).await
    }

    /// Serves `inputs` with the request's model: a model through the one dispatcher, a
    /// graph through its nodes (each hop authorized and audited, see [`graphs`]).
    pub(crate) async fn infer(
        &self,
        ctx: &RequestContext,
        served: &Arc<ServedModel>,
        inputs: Vec<Tensor>,
    ) -> Result<Vec<Tensor>, ApiError> {
        match &served.model {
            registry::Servable::Model(runnable) => match &served.monitor {
                None => self.run_model(served, runnable, inputs, ctx.credential()).await,
                Some(monitor) => {
                    // The rows are taken before the model has the inputs, and only used
                    // once the model accepted them.
                    let rows = monitor.rows(&inputs);
                    let outputs = self.run_model(served, runnable, inputs, ctx.credential()).await?;
                    if let Some(rows) = rows {
                        monitor.push(&rows);
                        if let Some(facts) = monitor.score(self, rows).await? {
                            self.metrics().observe_outliers(served.id.name.as_str(), &facts.scores);
                            ctx.set_outliers(facts);
                        }
                    }
                    Ok(outputs)
                }
            },
            registry::Servable::Graph(graph) => graphs::run(self, ctx, served, graph, inputs).await,
        }
    }

    /// The per-caller rate limiter (see [`rate`]).
    pub(crate) fn limiter(&self) -> &rate::Limiter {
        &self.inner.limiter
    }

    /// What the server remembers of graph requests, for feedback.
    pub(crate) fn feedback(&self) -> &palisade_graph::FeedbackLog {
        &self.inner.feedback
    }

    /// Runs a model on `inputs` through the one dispatcher (checks, batching, engine or
    /// upstream, timeout), recording where the time went.
    pub(crate) async fn run_model(
        &self,
        served: &ServedModel,
        model: &palisade_runtime::Runnable,
        inputs: Vec<Tensor>,
        credential: Option<&context::Credential>,
    ) -> Result<Vec<Tensor>, ApiError> {
        self.run_model_placed(served, model, inputs, credential, false).await
    }

    /// Runs a model like [`AppState::run_model`]; `alongside`: other model calls of the
    /// same request run at the same time (a graph node's children), so an in-process run
    /// goes to the inference threads unless trivially cheap.
    pub(crate) async fn run_model_placed(
        &self,
        served: &ServedModel,
        model: &palisade_runtime::Runnable,
        inputs: Vec<Tensor>,
        credential: Option<&context::Credential>,
        alongside: bool,
    ) -> Result<Vec<Tensor>, ApiError> {
        let current = request_id::Current::get();
        let traceparent = current.as_ref().map(|c| c.trace.traceparent());
        let call = CallContext {
            request_id: current.as_ref().map(|c| c.id.as_str()),
            traceparent: traceparent.as_deref(),
            credential: credential.map(context::Credential::expose),
            alongside,
        };
        // Inputs are checked first (a wrong shape is the caller's 400, whatever it implies);
        // then the outputs are reserved from the in-flight memory budget before the model
        // runs (sizes from a model are budgets, not allocations), for the length of the run.
        let inputs = model.check(inputs)?;
        let needed = model.output_bytes(&inputs);
        let budget = &self.inner.body_budget;
        let limit = budget.limit();
        let refused = ApiError::OutputBudget { needed, limit };
        let bytes = usize::try_from(needed).map_err(|_| ApiError::OutputBudget { needed, limit })?;
        if bytes > limit {
            return Err(refused);
        }
        let _outputs = body::Reservation::new(budget, bytes).ok_or(refused)?;
        let done = self.inner.dispatcher.dispatch(&served.id, model, inputs, call).await?;
        self.metrics().observe_inference(served.id.name.as_str(), done.queue_wait, done.compute);
        Ok(done.outputs)
    }

    /// The settings.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Whether the server accepts inference (false while draining).
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    /// Watches the data port's TLS certificate: its expiry and renewals become metrics on the
    /// admin port, and `/readyz` fails once it has expired. Call it once, when serving TLS.
    pub fn watch_serving_cert(&self, cert: ServingCert) -> Result<(), prometheus::Error> {
        if self.inner.serving_cert.get().is_some() {
            return Err(prometheus::Error::Msg("a serving certificate is already watched".to_owned()));
        }
        let watched = certificate::Watched::register(cert, &self.inner.metrics)?;
        // Only this function sets the cell, and it was empty just above; a concurrent second
        // call would have failed to register the same metric names.
        let _ = self.inner.serving_cert.set(watched);
        Ok(())
    }

    /// Why the server is not ready because of its certificate (it has expired), if so.
    pub(crate) fn serving_cert_problem(&self) -> Option<String> {
        self.inner.serving_cert.get().and_then(certificate::Watched::problem)
    }

    pub(crate) fn sync_serving_cert(&self) {
        if let Some(watched) = self.inner.serving_cert.get() {
            watched.sync();
        }
    }

    /// The data port's front door with these limits (see [`front`]); the first call makes
    /// it, later calls return it, and its connections are counted on the admin port.
    pub fn front(&self, config: FrontConfig) -> Front {
        self.inner.front.get_or_init(|| Front::new(config, &self.inner.metrics)).clone()
    }

    pub(crate) fn front_door(&self) -> Option<&Front> {
        self.inner.front.get()
    }

    /// Marks the server as draining: readiness probes fail so load balancers stop sending.
    pub fn set_draining(&self) {
        self.inner.ready.store(false, Ordering::Release);
    }
}

/// Why the server state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The metrics registry refused a metric.
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A model's `batching:` section cannot be applied.
    #[error("model {model}: {error}; fix or remove its `batching:` section in palisade.yaml")]
    Batching {
        /// The model version.
        model: String,
        /// What is wrong.
        error: palisade_runtime::RuntimeError,
    },
    /// The platform config's `console:` section cannot be used (a client secret file that
    /// cannot be read, say).
    #[error("{0}")]
    Console(String),
}

/// Logs, when a model loads, each way its manifest's `limits.rate` asks for more than the
/// platform allows (the platform's value applies; a manifest only tightens).
fn warn_rate_loosenings(served: &ServedModel, security: &Security) {
    let platform = security.platform().config.limits.rate.as_ref();
    for message in rate::loosenings(platform, served.rate.as_ref()) {
        tracing::warn!(model = %served.id, "{message}");
    }
}

/// Batches a model version if it should: the manifest's `batching:`, else the platform's
/// default (skipped, with a log line, for models that cannot be batched).
fn start_batching(
    served: &ServedModel,
    dispatcher: &Dispatcher,
    security: &Security,
    metrics: &Metrics,
) -> Result<(), StateError> {
    let Some(model) = served.model.runnable() else { return Ok(()) };
    let Some(section) = served.batching.or(security.platform().config.batching) else { return Ok(()) };
    let config = palisade_runtime::BatchConfig {
        max_batch_size: section.max_batch_size as usize,
        max_latency: Duration::from_micros(section.max_latency_us),
        queue_size: section.queue_size as usize,
    };
    let observer = metrics.batch_observer(served.id.name.as_str());
    match dispatcher.batch(served.id.clone(), model, config, Some(observer)) {
        Ok(()) => {
            tracing::info!(model = %served.id.name, version = %served.id.version, ?config, "adaptive batching on");
            Ok(())
        }
        Err(error) if served.batching.is_none() => {
            tracing::info!(model = %served.id.name, %error, "the platform's batching default does not apply");
            Ok(())
        }
        Err(error) => Err(StateError::Batching { model: served.id.to_string(), error }),
    }
}

/// The data-plane router: one handler ([`api::dispatch`]) behind the layers, outermost
/// first. Every layer reads the request context the first one builds.
///
/// 1. context: request id and trace (`x-request-id`, `traceparent`), the path normalized
///    once, the route and the model it names resolved once ([`context`]);
/// 2. metrics: counts every request by model and status, refusals included;
/// 3. audit: exactly one record per audited route, written from the context; in strict
///    mode the response waits until the record is durable, and an unwritable log turns
///    answers into 503 before anything runs;
/// 4. rescue: every error raised inside is written once, in the request's protocol (V2
///    JSON, Seldon, OAuth2, gRPC trailers) ([`rescue`]);
/// 5. CORS: preflights for REST routes from allowed origins are answered here, carrying no
///    credentials, and never reach a handler;
/// 6. to 9. admission ([`layers::admit`], one layer running four steps in order):
///
/// 6. authentication: a valid token or 401/403 before any body is read or any model
///    looked at (public routes are an allow-list: health probes, the issuer's endpoints,
///    the docs when public);
/// 7. gRPC model: a gRPC message names its model; its name alone is read, within the body
///    limit and budget, and resolved into the context;
/// 8. authorization: the model's PeerAuthentication mode and policies, or 403 `RBAC: access
///    denied`; a model route naming no served model is a 404 here, after authentication;
/// 9. rate: the caller (known now) takes a token from its bucket for the model (known now,
///    gRPC's too), or 429 with `Retry-After`, before the handler reads any body;
/// 10. the handler, which reads the body (413 past the limit, 503 past the in-flight
///     budget) and runs the model through the dispatcher (429 when full, 504 on timeout).
///
/// With [`ServerConfig::dangerous_disable_security`] a different stack is built: steps 3,
/// 6, 8 and 9 are left out (there is no caller to limit), and so are the issuer and
/// `/manage` routes. No handler branches on the switch.
pub fn app(state: AppState) -> Router {
    let s = || state.clone();
    let router = Router::new().fallback(api::dispatch).with_state(state.clone());
    let router = if state.secured() {
        router
            .layer(from_fn_with_state(s(), layers::admit::admit))
            .layer(from_fn_with_state(s(), layers::cors::cors))
            .layer(from_fn(rescue::rescue))
            .layer(from_fn_with_state(s(), layers::audit::audit))
    } else {
        router
            .layer(from_fn_with_state(s(), layers::grpc_model::layer))
            .layer(from_fn_with_state(s(), layers::cors::cors))
            .layer(from_fn(rescue::rescue))
    };
    router.layer(from_fn_with_state(s(), metrics::track)).layer(from_fn_with_state(s(), context::establish))
}

/// The admin router: Prometheus metrics and probes, on a separate port.
pub fn admin_app(state: AppState) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(metrics::render))
        .route("/livez", axum::routing::get(|| async { "ok\n" }))
        .route("/readyz", axum::routing::get(metrics::readyz))
        .with_state(state)
}

/// Serves a router over TLS (optionally mutual) until `shutdown` completes, then drains.
pub async fn serve_tls(
    listener: palisade_tls::TlsListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router.into_make_service_with_connect_info::<ConnInfo>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves a router on a listener until `shutdown` completes, then drains connections.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router.into_make_service_with_connect_info::<ConnInfo>())
        .with_graceful_shutdown(shutdown)
        .await
}
