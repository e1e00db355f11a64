//! One [`RequestContext`] per request: what the request is, derived once, read by every
//! layer and handler.
//!
//! The outermost layer ([`establish`]) gives the request its id and trace context,
//! normalizes its path once, resolves its [`Route`] once, and, when the path names a model,
//! resolves the model once, from the same decoded route parameters the handlers use. The
//! layers inside only add what they learn (the caller, the authorization decision, the
//! request body's digest): nobody works out again which endpoint, which model or which
//! protocol a request is for, so routing, authentication, authorization, audit, metrics and
//! the handler cannot disagree about it. A gRPC message names its model inside the body:
//! authorization reads that name (and nothing else) after authentication and sets the
//! model here, once, before any handler runs.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use axum::extract::Request;
use axum::extract::connect_info::Connected;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::IncomingStream;
use palisade_identity::{Authenticated, VerifiedToken};
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::request_id::{self, Current, RequestId, TraceContext};
use crate::route::{Protocol, Route, SeldonMethod, SeldonTarget};
use crate::{ApiError, AppState, ServedModel};

/// What is known of the connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address.
    pub remote: std::net::SocketAddr,
    /// The local address (its port is what `ports` in policies match).
    pub local: std::net::SocketAddr,
    /// The peer's verified workload identity, over mutual TLS.
    pub peer: Option<palisade_tls::PeerIdentity>,
    /// The TLS server name the client asked for.
    pub sni: Option<String>,
    /// Whether the connection is TLS (false: plaintext HTTP).
    pub tls: bool,
}

impl Connected<IncomingStream<'_, TcpListener>> for ConnInfo {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> ConnInfo {
        let remote = *stream.remote_addr();
        let local = stream.io().local_addr().unwrap_or(remote);
        ConnInfo { remote, local, peer: None, sni: None, tls: false }
    }
}

impl Connected<IncomingStream<'_, palisade_tls::TlsListener>> for ConnInfo {
    fn connect_info(stream: IncomingStream<'_, palisade_tls::TlsListener>) -> ConnInfo {
        let info = stream.io().info();
        ConnInfo {
            remote: info.remote,
            local: info.local,
            peer: info.peer.clone(),
            sni: info.sni.clone(),
            tls: true,
        }
    }
}

/// The model a request addresses, once resolved.
#[derive(Debug, Clone)]
pub enum Target {
    /// A served model version.
    Served(Arc<ServedModel>),
    /// The request names a model that is not served (404 after authentication); the
    /// message says what was looked for.
    Missing(String),
}

/// How the request was authenticated.
#[derive(Debug, Clone)]
pub enum Authentication {
    /// The route is public: no token was looked for.
    Public,
    /// A verified token, or an anonymous caller the platform lets through.
    Authenticated(Authenticated),
    /// Refused (401/403), with the bounded reason.
    Refused(&'static str),
}

/// The authorization outcome, for the audit record.
#[derive(Debug, Clone)]
pub struct Admission {
    /// The policies' decision.
    pub decision: Arc<palisade_policy::Decision>,
    /// The verified mTLS peer (SPIFFE id), when the connection has one.
    pub peer: Option<String>,
}

/// What the request body was, as read (after authorization) by the handler.
#[derive(Debug, Clone)]
pub struct BodyFacts {
    /// Bytes read.
    pub bytes: u64,
    /// Their SHA-256, lower-case hex.
    pub sha256: String,
}

/// A refusal by the per-caller rate limit (see [`crate::layers::rate`]), for the audit
/// record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    /// The budget that was used up.
    pub budget: crate::rate::Kind,
    /// The `Retry-After` the caller was given, in seconds.
    pub retry_after: u32,
}

/// Everything known about one request (see the module docs).
#[derive(Debug)]
pub struct RequestContext {
    /// The request id (UUIDv7), returned as `x-request-id`.
    pub id: RequestId,
    /// The W3C trace context.
    pub trace: TraceContext,
    /// The connection.
    pub conn: Option<ConnInfo>,
    /// The method.
    pub method: Method,
    /// The normalized path: what policies match, the audit record keeps and logs show.
    pub path: String,
    /// The endpoint.
    pub route: Route,
    /// The protocol, which decides how errors are written.
    pub protocol: Protocol,
    /// Whether the route is served without a token.
    pub public: bool,
    /// When the request arrived.
    pub received: palisade_audit::Timestamp,
    /// When the request arrived, for latencies.
    pub started: Instant,
    /// The served models as they were when the request arrived: the request's model, a
    /// gRPC message's model and a graph's nodes are all resolved in this one snapshot.
    registry: Arc<crate::Registry>,
    target: OnceLock<Target>,
    authentication: Mutex<Option<Authentication>>,
    admission: OnceLock<Admission>,
    body: OnceLock<BodyFacts>,
    captured: OnceLock<bytes::Bytes>,
    policy_request: OnceLock<palisade_policy::Request>,
    graph: OnceLock<GraphFacts>,
    rate_limited: OnceLock<RateLimited>,
    outliers: OnceLock<crate::monitoring::OutlierFacts>,
    hops: Mutex<Vec<palisade_audit::AuditRecord>>,
    credential: OnceLock<Credential>,
}

/// The caller's verified bearer token, kept only for an upstream that forwards it (a
/// variant behind Palisade's router); never logged, never audited.
#[derive(Clone)]
pub struct Credential(Arc<str>);

impl Credential {
    /// The token.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential([redacted])")
    }
}

/// What an inference graph did with a request: the routes it took and where it stopped.
#[derive(Debug, Clone, Default)]
pub struct GraphFacts {
    /// Every router's choice (a traffic split's names the arm's model).
    pub routing: Vec<palisade_graph::RouteTaken>,
    /// The node where the request was refused or failed, if it was.
    pub failed_node: Option<String>,
}

impl GraphFacts {
    /// The routes as the response reports them: `{"node": index}` for routers (Seldon's
    /// `meta.routing`), `{"traffic": "iris:1.0.0"}` for a traffic split.
    pub fn routing_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for taken in &self.routing {
            let value = match (&taken.child, taken.node == "traffic") {
                (Some(child), true) => serde_json::Value::from(child.clone()),
                _ => serde_json::Value::from(taken.choice.as_index()),
            };
            map.insert(taken.node.clone(), value);
        }
        serde_json::Value::Object(map)
    }

    /// The routes as Seldon reports them in `meta.routing`: every router by the index of
    /// the child it chose (a traffic split's arm too, in `traffic:` order).
    pub fn seldon_routing(&self) -> serde_json::Value {
        let map = self.routing.iter().map(|t| (t.node.clone(), serde_json::Value::from(t.choice.as_index())));
        serde_json::Value::Object(map.collect())
    }

    /// The `x-palisade-route` header: `node=choice` pairs, comma-separated.
    pub fn route_header(&self) -> String {
        let pairs: Vec<String> = self
            .routing
            .iter()
            .map(|t| match (&t.child, t.node == "traffic") {
                (Some(child), true) => format!("{}={child}", t.node),
                _ => format!("{}={}", t.node, t.choice.as_index()),
            })
            .collect();
        pairs.join(",")
    }
}

impl RequestContext {
    /// The served models as they were when the request arrived (see the field).
    pub fn registry(&self) -> &Arc<crate::Registry> {
        &self.registry
    }

    /// The model the request addresses: set once, from the path when the context is made,
    /// or from a gRPC message by authorization. `None` for routes that address no model.
    pub fn target(&self) -> Option<&Target> {
        self.target.get()
    }

    /// The served model the request addresses, if it is served.
    pub fn served(&self) -> Option<&Arc<ServedModel>> {
        match self.target.get() {
            Some(Target::Served(served)) => Some(served),
            _ => None,
        }
    }

    /// Sets the model named in a gRPC message. Only the first call counts: a model, once
    /// resolved, is never replaced.
    pub(crate) fn resolve_target(&self, target: Target) -> &Target {
        self.target.get_or_init(|| target)
    }

    /// How the request was authenticated (`None` before the authentication layer ran).
    pub fn authentication(&self) -> Option<Authentication> {
        self.authentication.lock().ok().and_then(|a| a.clone())
    }

    pub(crate) fn set_authentication(&self, authentication: Authentication) {
        if let Ok(mut slot) = self.authentication.lock() {
            *slot = Some(authentication);
        }
    }

    /// The verified token of the caller, if any.
    pub fn token(&self) -> Option<Arc<VerifiedToken>> {
        let slot = self.authentication.lock().ok()?;
        match slot.as_ref()? {
            Authentication::Authenticated(authenticated) => authenticated.token().cloned(),
            _ => None,
        }
    }

    /// The authorization outcome, once decided.
    pub fn admission(&self) -> Option<&Admission> {
        self.admission.get()
    }

    pub(crate) fn set_admission(&self, admission: Admission) {
        let _ = self.admission.set(admission);
    }

    /// The request body's size and digest, once read.
    pub fn body(&self) -> Option<&BodyFacts> {
        self.body.get()
    }

    pub(crate) fn set_body(&self, facts: BodyFacts) {
        let _ = self.body.set(facts);
    }

    /// The request body kept for the audit record (at the payload levels only).
    pub fn captured_body(&self) -> Option<&bytes::Bytes> {
        self.captured.get()
    }

    pub(crate) fn capture_body(&self, bytes: &bytes::Bytes) {
        let _ = self.captured.set(bytes.clone());
    }

    /// The request as authorization evaluated it (what a graph's hops are authorized as).
    pub fn policy_request(&self) -> Option<&palisade_policy::Request> {
        self.policy_request.get()
    }

    pub(crate) fn set_policy_request(&self, request: palisade_policy::Request) {
        let _ = self.policy_request.set(request);
    }

    /// What an inference graph did with the request, if one served it.
    pub fn graph(&self) -> Option<&GraphFacts> {
        self.graph.get()
    }

    pub(crate) fn set_graph(&self, facts: GraphFacts) {
        let _ = self.graph.set(facts);
    }

    /// The caller's verified bearer token (see [`Credential`]).
    pub fn credential(&self) -> Option<&Credential> {
        self.credential.get()
    }

    pub(crate) fn set_credential(&self, token: &str) {
        let _ = self.credential.set(Credential(Arc::from(token)));
    }

    /// The rate-limit refusal of the request, if it was refused for its rate.
    pub fn rate_limited(&self) -> Option<&RateLimited> {
        self.rate_limited.get()
    }

    pub(crate) fn set_rate_limited(&self, refusal: RateLimited) {
        let _ = self.rate_limited.set(refusal);
    }

    /// The outlier scores of the request's rows, when its model scores them
    /// (`monitoring.outliers`) and the prediction succeeded.
    pub fn outliers(&self) -> Option<&crate::monitoring::OutlierFacts> {
        self.outliers.get()
    }

    pub(crate) fn set_outliers(&self, facts: crate::monitoring::OutlierFacts) {
        let _ = self.outliers.set(facts);
    }

    /// Adds the audit records of a graph's hops, written before the request's own.
    pub(crate) fn add_hops(&self, records: Vec<palisade_audit::AuditRecord>) {
        if let Ok(mut hops) = self.hops.lock() {
            hops.extend(records);
        }
    }

    /// Takes the audit records of the graph's hops.
    pub(crate) fn take_hops(&self) -> Vec<palisade_audit::AuditRecord> {
        self.hops.lock().map(|mut h| std::mem::take(&mut *h)).unwrap_or_default()
    }

    /// The model's name as a metric label: a served model's name, else `-` (bounded).
    pub fn model_label(&self) -> &str {
        self.served().map_or("-", |m| m.id.name.as_str())
    }
}

/// The context of the request being handled, from its extensions.
#[derive(Debug, Clone)]
pub struct Ctx(pub Arc<RequestContext>);

impl std::ops::Deref for Ctx {
    type Target = RequestContext;
    fn deref(&self) -> &RequestContext {
        &self.0
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Ctx, ApiError> {
        parts
            .extensions
            .get::<Ctx>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("a request reached a handler without its context".to_owned()))
    }
}

/// Whether a request says it speaks gRPC (by its content type).
pub(crate) fn is_grpc_content(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// Resolves the model a route names, once. Routes that name none resolve to `None`; V2
/// gRPC methods name theirs inside the message (see [`crate::layers::grpc_model`]); a
/// Seldon gRPC call names its deployment in its metadata, read here and nowhere else.
fn target_of(registry: &crate::Registry, route: &Route, headers: &HeaderMap) -> Option<Target> {
    let found = match route {
        Route::Model { name, version, .. } => registry.get(name, version.as_deref()),
        Route::KServe { name, .. } => registry.get(name, None),
        Route::SeldonGrpc(SeldonMethod::Predict | SeldonMethod::SendFeedback) => {
            match seldon_metadata(headers) {
                Ok((namespace, name)) => registry.in_namespace(&namespace, &name),
                Err(message) => Err(ApiError::NotFound(message.to_owned())),
            }
        }
        Route::Seldon(SeldonTarget::Single)
        | Route::SeldonFeedback(SeldonTarget::Single)
        | Route::SeldonExplain(SeldonTarget::Single) => registry.single().cloned().ok_or_else(|| {
            ApiError::NotFound(
                "several models are served: use /seldon/{namespace}/{model}/api/v1.0/predictions to name one"
                    .to_owned(),
            )
        }),
        Route::Seldon(SeldonTarget::Named { namespace, name })
        | Route::SeldonFeedback(SeldonTarget::Named { namespace, name })
        | Route::SeldonExplain(SeldonTarget::Named { namespace, name }) => {
            registry.in_namespace(namespace, name)
        }
        _ => return None,
    };
    Some(match found {
        Ok(served) => Target::Served(served),
        Err(err) => Target::Missing(err.public_message()),
    })
}

/// The deployment a Seldon gRPC call names: the `seldon` metadata, in the `namespace` the
/// metadata gives or else the namespace `default` (what Seldon's client sends with and
/// without a namespace). Each may appear once.
fn seldon_metadata(headers: &HeaderMap) -> Result<(String, String), &'static str> {
    fn one<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, &'static str> {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(value), None) => {
                value.to_str().map(Some).map_err(|_| "the `seldon` or `namespace` metadata is not text")
            }
            (Some(_), Some(_)) => Err("the `seldon` or `namespace` metadata appears more than once"),
        }
    }
    let name = one(headers, "seldon")?.filter(|name| !name.is_empty()).ok_or(
        "name the Seldon deployment (the model) in the `seldon` metadata, and its namespace in `namespace`",
    )?;
    let namespace = one(headers, "namespace")?.filter(|ns| !ns.is_empty());
    let namespace = namespace.map_or_else(|| palisade_core::Namespace::default().to_string(), str::to_owned);
    Ok((namespace, name.to_owned()))
}

/// The outermost layer: builds the request's context (see the module docs), runs the
/// request inside a span carrying its id and trace, and returns `x-request-id` and
/// `traceparent`. A caller-sent `x-request-id` is not trusted as ours.
pub(crate) async fn establish(
    state: axum::extract::State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let id = uuid::Uuid::now_v7().to_string();
    let incoming = req.headers().get("traceparent").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let raw_path = req.uri().path();
    let (path, route) = match palisade_policy::normalize_path(raw_path) {
        Ok(path) => {
            let route = Route::resolve(req.method(), &path, state.route_options());
            (path, route)
        }
        Err(err) => (crate::registry::clip(raw_path), Route::Invalid(format!("invalid request path: {err}"))),
    };
    // What runs inside (the gRPC service routes on it) sees the normalized path too.
    if !matches!(route, Route::Invalid(_)) && path != req.uri().path() {
        let normalized = match req.uri().query() {
            Some(query) => format!("{path}?{query}"),
            None => path.clone(),
        };
        match normalized.parse::<axum::http::Uri>() {
            Ok(uri) => *req.uri_mut() = uri,
            Err(_) => {
                return crate::rescue::render(
                    Protocol::V2Rest,
                    &ApiError::BadRequest("invalid request path".to_owned()),
                );
            }
        }
    }
    // The span's name is also its OpenTelemetry name. Every field is formatted by the log
    // layer when the span opens, on every request: keep them few.
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        trace_id = tracing::field::Empty,
        method = %req.method(),
        path = %path
    );
    let trace = request_id::with_exporter(&span, incoming.as_deref())
        .unwrap_or_else(|| TraceContext::from_header(incoming.as_deref()));
    span.record("trace_id", trace.trace_id.as_str());

    let registry = state.registry();
    let target = target_of(&registry, &route, req.headers());
    let context = RequestContext {
        id: RequestId(id.clone()),
        trace: trace.clone(),
        conn: req.extensions().get::<axum::extract::ConnectInfo<ConnInfo>>().map(|c| c.0.clone()),
        method: req.method().clone(),
        protocol: route.protocol(is_grpc_content(req.headers())),
        public: route.is_public(state.docs_public()),
        route,
        path,
        received: palisade_audit::Timestamp::now(),
        started: Instant::now(),
        registry,
        target: target.map(OnceLock::from).unwrap_or_default(),
        authentication: Mutex::new(None),
        admission: OnceLock::new(),
        body: OnceLock::new(),
        captured: OnceLock::new(),
        policy_request: OnceLock::new(),
        graph: OnceLock::new(),
        rate_limited: OnceLock::new(),
        outliers: OnceLock::new(),
        hops: Mutex::new(Vec::new()),
        credential: OnceLock::new(),
    };
    req.extensions_mut().insert(Ctx(Arc::new(context)));
    let current = Current { id: RequestId(id.clone()), trace: trace.clone() };
    let mut response = request_id::CURRENT.scope(current, next.run(req).instrument(span)).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(request_id::HEADER, value);
    }
    if let Ok(value) = HeaderValue::from_str(&trace.traceparent()) {
        response.headers_mut().insert("traceparent", value);
    }
    response
}
