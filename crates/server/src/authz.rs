//! The authorization layer and the path normalization that precedes it.
//!
//! Normalization runs once, before routing and policies, and the normalized path is what
//! every later step (and the model) sees: `/v2/models/iris/../secret/infer` is routed and
//! authorized as `/v2/models/secret/infer`. Authorization then evaluates the model's
//! policies (Istio semantics, Palisade's owner default) and answers 403
//! `RBAC: access denied` when they say no.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::connect_info::Connected;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use palisade_policy::{Decision, Headers};
use tokio::net::TcpListener;

use crate::authn::Caller;
use crate::{ApiError, AppState, ServedModel};

/// What is known of the connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address.
    pub remote: SocketAddr,
    /// The local address (its port is what `ports` in policies match).
    pub local: SocketAddr,
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

/// What a connection proved about its peer, as the `peer` label of
/// `palisade_mtls_requests_total`: what a platform team watches in PERMISSIVE mode before
/// switching a namespace to STRICT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PeerKind {
    /// TLS with a verified client certificate (a SPIFFE workload identity).
    Verified,
    /// TLS without a client certificate.
    TlsWithoutCert,
    /// Plaintext HTTP.
    Plaintext,
    /// No connection information (only in-process tests).
    Unknown,
}

impl PeerKind {
    fn of(conn: Option<&ConnInfo>) -> PeerKind {
        match conn {
            Some(c) if c.peer.is_some() => PeerKind::Verified,
            Some(c) if c.tls => PeerKind::TlsWithoutCert,
            Some(_) => PeerKind::Plaintext,
            None => PeerKind::Unknown,
        }
    }

    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PeerKind::Verified => "verified",
            PeerKind::TlsWithoutCert => "tls_no_client_cert",
            PeerKind::Plaintext => "plaintext",
            PeerKind::Unknown => "unknown",
        }
    }
}

/// The verified mTLS peer of a request (admitted by the model's PeerAuthentication mode).
#[derive(Debug, Clone)]
pub struct PeerIdentityExt(pub palisade_tls::PeerIdentity);

/// The authorization decision of a request, for the audit record.
#[derive(Debug, Clone)]
pub struct Authorization(pub Arc<Decision>);

/// Normalizes the path (dot segments, encoded slashes, merged slashes); a path Palisade
/// refuses to interpret (`%00`, bad escapes) is a 400.
pub(crate) async fn normalize(mut req: Request, next: Next) -> Response {
    let raw = req.uri().path().to_owned();
    let normalized = match palisade_policy::normalize_path(&raw) {
        Ok(path) => path,
        Err(err) => return ApiError::BadRequest(format!("invalid request path: {err}")).into_response(),
    };
    if let Some(facts) = req.extensions().get::<crate::audit::Facts>() {
        facts.path(&normalized);
    }
    if normalized != raw {
        let query = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
        match format!("{normalized}{query}").parse::<Uri>() {
            Ok(uri) => *req.uri_mut() = uri,
            Err(_) => return ApiError::BadRequest("invalid request path".to_owned()).into_response(),
        }
    }
    next.run(req).await
}

/// The model a (normalized) path addresses.
pub(crate) fn model_of(state: &AppState, path: &str) -> Option<Arc<ServedModel>> {
    let mut parts = path.trim_start_matches('/').split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("v2"), Some("models"), Some(model)) => {
            let rest: Vec<&str> = parts.collect();
            let version = match rest.as_slice() {
                ["versions", version, ..] => Some(*version),
                _ => None,
            };
            state.registry().get(model, version).ok()
        }
        (Some("seldon"), Some(namespace), Some(model)) => {
            state.registry().in_namespace(namespace, model).ok()
        }
        (Some("api"), Some("v1.0"), Some("predictions")) => state.registry().single().cloned(),
        _ => None,
    }
}

/// What authorization reads from a request besides the model. Taken from the request head,
/// so it can also be kept for gRPC, whose model is named in the body ([`DeferredAuthz`]).
#[derive(Debug, Clone)]
pub(crate) struct AuthzInput {
    conn: Option<ConnInfo>,
    claims: Option<Arc<serde_json::Map<String, serde_json::Value>>>,
    headers: Headers,
    host: String,
    method: String,
    path: String,
}

impl AuthzInput {
    fn of(req: &Request, path: String) -> AuthzInput {
        AuthzInput {
            conn: req.extensions().get::<axum::extract::ConnectInfo<ConnInfo>>().map(|c| c.0.clone()),
            claims: req.extensions().get::<Caller>().and_then(|c| c.token()).map(|t| t.claims.clone()),
            headers: req
                .headers()
                .iter()
                .filter(|(name, _)| *name != header::AUTHORIZATION)
                .filter_map(|(name, value)| value.to_str().ok().map(|v| (name.as_str(), v.to_owned())))
                .collect::<Headers>(),
            host: req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(palisade_policy::normalize_host)
                .or_else(|| req.uri().authority().map(|a| palisade_policy::normalize_host(a.as_str())))
                .unwrap_or_default(),
            method: req.method().as_str().to_owned(),
            path,
        }
    }
}

/// The authorization of a gRPC request, left to the handler: the layer cannot know the
/// model before the message is decoded. Every gRPC method that addresses a model calls
/// [`decide`] with it before doing anything else.
#[derive(Debug, Clone)]
pub(crate) struct DeferredAuthz(pub Arc<AuthzInput>);

/// Why a request was refused.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The model is mTLS STRICT and the connection has no verified client certificate.
    PeerRequired(String),
    /// The policies said no.
    Denied(Arc<Decision>),
}

/// An admitted request: the decision, and the verified mTLS peer if there is one.
#[derive(Debug)]
pub(crate) struct Admitted {
    pub decision: Arc<Decision>,
    pub peer: Option<palisade_tls::PeerIdentity>,
}

/// Evaluates `served`'s PeerAuthentication mode and policies for a request, recording the
/// model, the peer and the decision in the audit facts and metrics. Takes the input by
/// value: its strings move into the policy request instead of being copied.
pub(crate) fn decide(
    state: &AppState,
    facts: Option<&crate::audit::Facts>,
    served: &Arc<ServedModel>,
    input: AuthzInput,
) -> Result<Admitted, Refusal> {
    if let Some(facts) = facts {
        facts.model(served.clone());
    }
    let mut request = palisade_policy::Request::new(served.target.clone());
    if let Some(conn) = &input.conn {
        request.source_ip = Some(conn.remote.ip());
        request.remote_ip = Some(conn.remote.ip());
        request.destination_ip = Some(conn.local.ip());
        request.port = conn.local.port();
        request.sni = conn.sni.clone();
    }
    // Mutual TLS first: a STRICT model refuses connections without a verified client
    // certificate, whatever the token says (PeerAuthentication).
    let mode = state.security().peer_auth().mtls_mode_for(
        served.target.namespace.as_str(),
        &served.target.labels,
        request.port,
    );
    state.metrics().observe_mtls(served.target.namespace.as_str(), mode, PeerKind::of(input.conn.as_ref()));
    let peer = match palisade_tls::admit(mode, input.conn.as_ref().and_then(|c| c.peer.as_ref())) {
        Ok(peer) => peer.cloned(),
        Err(refused) => {
            tracing::info!(model = %served.id.name, "refused: the model is mTLS STRICT and the connection has no client certificate");
            return Err(Refusal::PeerRequired(refused.to_string()));
        }
    };
    if let Some(peer) = &peer {
        request.source_principal = Some(peer.principal().to_owned());
        if let Some(facts) = facts {
            facts.peer(&peer.spiffe_id);
        }
    }
    request.claims = input.claims;
    request.headers = input.headers;
    request.host = input.host;
    request.method = input.method;
    request.path = input.path;

    let decision = Arc::new(state.security().policy_set().evaluate(&request));
    for (policy, would_allow) in &decision.dry_run {
        tracing::info!(policy = %policy, would_allow, "dry-run policy evaluated (not enforced)");
    }
    state.metrics().observe_decision(&decision);
    if let Some(facts) = facts {
        facts.decision(decision.clone());
    }
    if decision.allowed {
        Ok(Admitted { decision, peer })
    } else {
        tracing::info!(reason = %decision.reason, model = %served.id.name, "authorization denied");
        Err(Refusal::Denied(decision))
    }
}

/// Whether a path is a gRPC method of the inference service.
pub(crate) fn is_grpc_path(path: &str) -> bool {
    path.strip_prefix('/')
        .and_then(|p| p.strip_prefix(palisade_protocol::grpc::SERVICE_NAME))
        .is_some_and(|rest| rest.starts_with('/'))
}

/// Evaluates the model's policies; requests that address no model (server metadata,
/// unknown paths) pass with authentication alone. gRPC requests are authorized by their
/// handler ([`DeferredAuthz`]).
pub(crate) async fn authorize(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if crate::authn::is_public_path(&state, &path) {
        return next.run(req).await;
    }
    if is_grpc_path(&path) {
        let input = AuthzInput::of(&req, path);
        req.extensions_mut().insert(DeferredAuthz(Arc::new(input)));
        return next.run(req).await;
    }
    let Some(served) = model_of(&state, &path) else {
        return next.run(req).await;
    };
    let facts = req.extensions().get::<crate::audit::Facts>().cloned();
    let input = AuthzInput::of(&req, path);
    let refusal = match decide(&state, facts.as_ref(), &served, input) {
        Ok(Admitted { decision, peer }) => {
            if let Some(peer) = peer {
                req.extensions_mut().insert(PeerIdentityExt(peer));
            }
            req.extensions_mut().insert(Authorization(decision.clone()));
            let mut response = next.run(req).await;
            response.extensions_mut().insert(Authorization(decision));
            return response;
        }
        Err(refusal) => refusal,
    };
    let mut response = match refusal {
        Refusal::PeerRequired(message) => {
            (StatusCode::FORBIDDEN, axum::Json(serde_json::json!({"error": message}))).into_response()
        }
        Refusal::Denied(decision) => {
            let wants_json = req
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|accept| accept.contains("application/json"));
            let mut response = if wants_json {
                (StatusCode::FORBIDDEN, axum::Json(serde_json::json!({"error": "RBAC: access denied"})))
                    .into_response()
            } else {
                let mut r = (StatusCode::FORBIDDEN, "RBAC: access denied").into_response();
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                r
            };
            response.extensions_mut().insert(Authorization(decision));
            response
        }
    };
    response.extensions_mut().insert(crate::respond::ModelLabel(served.id.name.to_string()));
    response
}
