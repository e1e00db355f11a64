//! Authorization: the model's PeerAuthentication mode and policies decide, before any of
//! the model's work (or the request body, for REST) is touched; 403 `RBAC: access denied`
//! when they say no.
//!
//! The model is the context's target, resolved once: from the path, or, for gRPC, from the
//! message (see [`super::grpc_model`]). A route that addresses a model that is not served
//! is answered 404 here, after authentication; routes that address no model (server
//! metadata, the management API) pass with authentication alone.

use std::sync::Arc;

use axum::http::{HeaderMap, Uri, header};
use palisade_identity::Scoping;
use palisade_policy::Headers;

use crate::context::{Admission, Authentication, ConnInfo, Ctx, RequestContext, Target};
use crate::route::{GrpcMethod, Route};
use crate::{ApiError, AppState, ServedModel};

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

/// The step (see the module docs), run by [`super::admit`] once the target is resolved.
pub(crate) async fn authorize(
    state: &AppState,
    ctx: &Ctx,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<(), ApiError> {
    if ctx.public || !ctx.route.addresses_model() {
        return Ok(());
    }
    let served = match ctx.target() {
        Some(Target::Served(served)) => served.clone(),
        // `ModelReady` answers `ready: false` for a model that is not served, as Triton
        // does; there is nothing to authorize and nothing to reveal beyond a 404.
        Some(Target::Missing(_)) if ctx.route == Route::Grpc(GrpcMethod::ModelReady) => {
            return Ok(());
        }
        Some(Target::Missing(message)) => return Err(ApiError::NotFound(message.clone())),
        None => {
            return Err(ApiError::Internal(format!(
                "{:?} reached authorization without its model",
                ctx.route
            )));
        }
    };
    rule_applies(state, ctx, &served, headers, uri.query()).await?;
    decide(state, ctx, &served, headers, uri)
}

/// The token's rule must apply to the model. It already does when the model was known at
/// authentication (the path named it); a gRPC request was authenticated before its message
/// named the model, so the token is checked again against the rules of that model: a
/// namespace's own issuer never applies outside its namespace.
async fn rule_applies(
    state: &AppState,
    ctx: &RequestContext,
    served: &ServedModel,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<(), ApiError> {
    let Some(Authentication::Authenticated(authenticated)) = ctx.authentication() else {
        return Ok(());
    };
    if authenticated.applies_to(served.identity_target()) {
        return Ok(());
    }
    let authn = state.security().authenticator();
    match authn.authenticate(headers, query, Scoping::Model(served.identity_target())).await {
        Ok(again) => {
            ctx.set_authentication(Authentication::Authenticated(again));
            Ok(())
        }
        Err(err) => {
            ctx.set_authentication(Authentication::Refused(err.reason()));
            state.metrics().observe_authn_failure(ctx.model_label(), err.reason());
            tracing::info!(reason = err.reason(), model = %served.id.name, "authentication refused for the model's namespace");
            Err(ApiError::Unauthenticated(err))
        }
    }
}

/// Evaluates `served`'s PeerAuthentication mode and policies for the request, recording
/// the decision in the context and the metrics.
pub(crate) fn decide(
    state: &AppState,
    ctx: &RequestContext,
    served: &Arc<ServedModel>,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<(), ApiError> {
    let mut request = palisade_policy::Request::new(served.target.clone());
    let conn = ctx.conn.as_ref();
    if let Some(conn) = conn {
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
    state.metrics().observe_mtls(served.target.namespace.as_str(), mode, PeerKind::of(conn));
    let peer = match palisade_tls::admit(mode, conn.and_then(|c| c.peer.as_ref())) {
        Ok(peer) => peer.cloned(),
        Err(refused) => {
            tracing::info!(model = %served.id.name, "refused: the model is mTLS STRICT and the connection has no client certificate");
            return Err(ApiError::Forbidden(refused.to_string()));
        }
    };
    if let Some(peer) = &peer {
        request.source_principal = Some(peer.principal().to_owned());
    }
    request.claims = ctx.token().map(|t| t.claims.clone());
    request.headers = Headers::from_lowercase(
        headers
            .iter()
            .filter(|(name, _)| *name != header::AUTHORIZATION)
            .filter_map(|(name, value)| value.to_str().ok().map(|v| (name.as_str(), v))),
    );
    request.host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(palisade_policy::normalize_host)
        .or_else(|| uri.authority().map(|a| palisade_policy::normalize_host(a.as_str())))
        .unwrap_or_default();
    request.method = ctx.method.as_str().to_owned();
    request.path = ctx.path.clone();

    let decision = Arc::new(state.security().policy_set().evaluate(&request));
    ctx.set_policy_request(request);
    for (policy, would_allow) in &decision.dry_run {
        tracing::info!(policy = %policy, would_allow, "dry-run policy evaluated (not enforced)");
    }
    state.metrics().observe_decision(&decision);
    let allowed = decision.allowed;
    if !allowed {
        tracing::info!(reason = %decision.reason, model = %served.id.name, "authorization denied");
    }
    ctx.set_admission(Admission { decision, peer: peer.map(|p| p.spiffe_id) });
    if allowed { Ok(()) } else { Err(ApiError::AccessDenied) }
}
