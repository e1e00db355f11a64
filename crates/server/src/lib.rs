//! Palisade's HTTP server: the Open Inference Protocol V2 and Seldon v1 endpoints, the
//! OpenAPI document and Swagger UI, and the admin port (metrics, readiness).
//!
//! [`app`] assembles the data-plane router and its layers in one place; [`serve`] runs it
//! until shutdown.

mod audit;
mod authn;
mod authz;
mod body;
mod certificate;
mod docs;
mod error;
mod grpc;
mod manage;
mod metrics;
mod oauth;
mod openapi;
pub mod platform;
pub mod registry;
mod request_id;
mod respond;
pub mod security;
mod seldon;
mod upstream;
mod v2;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use palisade_runtime::Engine;
use tokio::net::TcpListener;

pub use audit::{AuditHandle, Facts};
pub use authn::Caller;
pub use authz::{Authorization, ConnInfo, PeerIdentityExt};
pub use certificate::ServingCert;
pub use error::ApiError;
pub use metrics::Metrics;
pub use platform::{ConfigError, Platform};
pub use registry::{Registry, RegistryError, ServedModel};
pub use request_id::{RequestId, TraceContext};
pub use security::{Security, SecurityConfig};

/// Data-plane settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request body accepted, in bytes (default 32 MiB); larger bodies get 413.
    pub max_body_bytes: usize,
    /// How long one inference may take, queue wait included (default 60 s); then 504.
    pub inference_timeout: Duration,
    /// Serve without authentication, authorization and audit (`--dangerous-disable-security`),
    /// for measuring the security layers' cost on loopback. Never the default.
    pub dangerous_disable_security: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 32 * 1024 * 1024,
            inference_timeout: Duration::from_secs(60),
            dangerous_disable_security: false,
        }
    }
}

/// Everything handlers share.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    security: Arc<Security>,
    audit: Arc<palisade_audit::AuditLog>,
    registry: Registry,
    // Batchers feed the engine: declared before it, so they stop first.
    batchers: std::collections::HashMap<palisade_core::ModelRef, palisade_runtime::Batcher>,
    engine: Engine,
    config: ServerConfig,
    openapi: bytes::Bytes,
    docs: Arc<utoipa_swagger_ui::Config<'static>>,
    metrics: Metrics,
    ready: AtomicBool,
    serving_cert: OnceLock<certificate::Watched>,
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
        let openapi = bytes::Bytes::from(openapi::document(&registry, &security).to_string());
        let metrics = Metrics::new(&registry)?;
        metrics.register(Box::new(security.reload_failures().clone()))?;
        let batchers = start_batchers(&registry, &engine, &security, &metrics)?;
        audit.attach_histogram(metrics.audit_fsync_histogram());
        let audit = audit.log().clone();
        Ok(AppState {
            inner: Arc::new(Inner {
                security,
                audit,
                registry,
                batchers,
                engine,
                config,
                openapi,
                docs: docs::config(),
                metrics,
                ready: AtomicBool::new(true),
                serving_cert: OnceLock::new(),
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

    /// Whether the docs are served without a token.
    pub fn docs_public(&self) -> bool {
        self.inner.security.platform().config.docs.public
    }

    /// The served models.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The inference engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The batcher of a model version, if its requests are batched.
    pub fn batcher(&self, model: &palisade_core::ModelRef) -> Option<&palisade_runtime::Batcher> {
        self.inner.batchers.get(model)
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
}

/// Starts a batcher per model version with batching: the manifest's `batching:`, else the
/// platform's default (skipped, with a log line, for models that cannot be batched).
fn start_batchers(
    registry: &Registry,
    engine: &Engine,
    security: &Security,
    metrics: &Metrics,
) -> Result<std::collections::HashMap<palisade_core::ModelRef, palisade_runtime::Batcher>, StateError> {
    let default = security.platform().config.batching;
    let mut batchers = std::collections::HashMap::new();
    for served in registry.all() {
        let Some(section) = served.batching.or(default) else { continue };
        let config = palisade_runtime::BatchConfig {
            max_batch_size: section.max_batch_size as usize,
            max_latency: Duration::from_micros(section.max_latency_us),
            queue_size: section.queue_size as usize,
        };
        let observer = metrics.batch_observer(served.id.name.as_str());
        match palisade_runtime::Batcher::start(engine, served.model.clone(), config, Some(observer)) {
            Ok(batcher) => {
                tracing::info!(model = %served.id.name, version = %served.id.version, ?config, "adaptive batching on");
                batchers.insert(served.id.clone(), batcher);
            }
            Err(error) if served.batching.is_none() => {
                tracing::info!(model = %served.id.name, %error, "the platform's batching default does not apply");
            }
            Err(error) => return Err(StateError::Batching { model: served.id.to_string(), error }),
        }
    }
    Ok(batchers)
}

/// The data-plane router with its layers, outermost first:
///
/// 1. request id: every response carries `x-request-id`, so a caller can quote it;
/// 2. metrics: counts every request by model and status, including refusals below;
/// 3. audit: exactly one record per request (health probes and static docs excepted),
///    written from what the layers below learn; in strict mode the response waits until
///    the record is durable, and an unwritable log turns answers into 503;
/// 4. gRPC errors: a gRPC caller refused by a layer below gets a gRPC status, not an HTTP
///    error (the one table in `error.rs`);
/// 5. path normalization: once, before anything reads the path (400 for `%00`), so routing,
///    policies and the model all see the same path;
/// 6. authentication: a valid token or 401/403, before any model or route is looked at, so
///    unauthenticated callers learn nothing (health probes, the issuer's endpoints and public
///    docs are exempt);
/// 7. authorization: the model's policies and owner default, 403 `RBAC: access denied`
///    (for gRPC, where the model is named in the message, the handler decides, with the
///    same function, before decoding any tensor);
/// 8. routing and handlers, which read bodies through [`body::LimitedBody`] (413 past the
///    limit) and queue inference on the engine (429 when full, 504 on timeout). gRPC
///    (`/inference.GRPCInferenceService/*`) is served here too, on the same port.
///
/// With [`ServerConfig::dangerous_disable_security`] steps 3, 6 and 7 are left out, and so
/// are the issuer and `/manage` endpoints.
pub fn app(state: AppState) -> Router {
    let secured = !state.config().dangerous_disable_security;
    let mut routes = Router::new()
        .route("/v2", get(v2::server_metadata))
        .route("/v2/health/live", get(v2::live))
        .route("/v2/health/ready", get(v2::ready))
        .route("/v2/models/{model}", get(v2::model_metadata))
        .route("/v2/models/{model}/ready", get(v2::model_ready))
        .route("/v2/models/{model}/infer", post(v2::infer))
        .route("/v2/models/{model}/versions/{version}", get(v2::model_version_metadata))
        .route("/v2/models/{model}/versions/{version}/ready", get(v2::model_version_ready))
        .route("/v2/models/{model}/versions/{version}/infer", post(v2::infer_version))
        .route("/api/v1.0/predictions", post(seldon::predict))
        .route("/seldon/{namespace}/{model}/api/v1.0/predictions", post(seldon::predict_in_namespace))
        .route("/openapi.json", get(docs::openapi))
        .route("/docs", get(docs::redirect))
        .route("/docs/", get(docs::index))
        .route("/docs/{*file}", get(docs::asset))
        .route_service(
            &format!("/{}/{{*rpc}}", palisade_protocol::grpc::SERVICE_NAME),
            grpc::service(state.clone()),
        );
    if secured {
        // Without authentication nobody could be told apart, so the issuer and the
        // self-service endpoints exist only when security is on.
        routes = routes
            .route("/oauth/token", post(oauth::token))
            .route("/.well-known/openid-configuration", get(oauth::discovery))
            .route("/.well-known/jwks.json", get(oauth::jwks))
            .route("/manage/v1/policies", get(manage::list).put(manage::apply))
            .route("/manage/v1/policies/{namespace}/{name}", axum::routing::delete(manage::delete))
            .route("/manage/v1/models/{model}/explain", get(manage::explain))
            .route("/manage/v1/check", post(manage::check));
    }
    let routes = routes.fallback(respond::not_found).with_state(state.clone());
    // Layers on an outer router run before routing, so the inner router routes the
    // normalized path.
    let outer = Router::new().fallback_service(routes);
    let outer = if secured {
        outer
            .layer(axum::middleware::from_fn_with_state(state.clone(), authz::authorize))
            .layer(axum::middleware::from_fn_with_state(state.clone(), authn::authenticate))
            .layer(axum::middleware::from_fn(authz::normalize))
            .layer(axum::middleware::from_fn(grpc::adapt))
            .layer(axum::middleware::from_fn_with_state(state.clone(), audit::audit))
    } else {
        outer.layer(axum::middleware::from_fn(authz::normalize)).layer(axum::middleware::from_fn(grpc::adapt))
    };
    outer
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(axum::middleware::from_fn(request_id::assign))
}

/// The admin router: Prometheus metrics and probes, on a separate port.
pub fn admin_app(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::render))
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(metrics::readyz))
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
