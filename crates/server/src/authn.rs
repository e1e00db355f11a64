//! The authentication layer: every data-plane request carries a valid token, or is refused
//! with 401 (403 for an audience mismatch) before it reaches a model.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use palisade_identity::{Authenticated, AuthnError, Target, TokenLocation};
use palisade_protocol::v2::ErrorBody;
use serde_json::Value;

use crate::AppState;

/// The authenticated caller, for the layers and handlers after this one.
#[derive(Debug, Clone)]
pub struct Caller(pub Authenticated);

/// Paths that never require a token: health probes (by design, so orchestrators can probe),
/// the issuer's public endpoints, and the docs when the platform makes them public.
fn is_public(state: &AppState, method: &Method, path: &str, req: &Request) -> bool {
    // CORS preflights carry no credentials by specification.
    let preflight = method == Method::OPTIONS
        && req.headers().contains_key(header::ORIGIN)
        && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    preflight || is_public_path(state, path)
}

/// Whether a path is served without a token (see [`is_public`]).
pub(crate) fn is_public_path(state: &AppState, path: &str) -> bool {
    match path {
        "/v2/health/live" | "/v2/health/ready" => true,
        "/.well-known/openid-configuration" | "/.well-known/jwks.json" | "/oauth/token" => true,
        "/openapi.json" | "/docs" => state.docs_public(),
        _ if path.starts_with("/docs/") => state.docs_public(),
        _ => crate::grpc::is_public_method(path),
    }
}

/// The model a path names, for namespace-scoped rules.
fn target_of(state: &AppState, path: &str) -> Option<(String, BTreeMap<String, String>)> {
    let mut parts = path.trim_start_matches('/').split('/');
    let served = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("v2"), Some("models"), Some(model), _) => state.registry().get(model, None).ok(),
        (Some("seldon"), Some(_namespace), Some(model), _) => state.registry().get(model, None).ok(),
        (Some("api"), Some("v1.0"), Some("predictions"), _) => state.registry().single().cloned(),
        _ => None,
    }?;
    Some((served.id.namespace.to_string(), served.label_map().clone()))
}

/// Authenticates the request (see the module docs); on success stores [`Caller`] in the
/// request extensions, strips the token unless the rule forwards it, and sets the rule's
/// output headers.
pub(crate) async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if is_public(&state, req.method(), &path, &req) {
        return next.run(req).await;
    }
    let facts = req.extensions().get::<crate::audit::Facts>().cloned();
    let target = target_of(&state, &path);
    let target_ref = target.as_ref().map(|(namespace, labels)| Target { namespace, labels });
    let authn = state.security().authenticator();
    let result = authn.authenticate(req.headers(), req.uri().query(), target_ref).await;
    match result {
        Ok(authenticated) => {
            if let Some(facts) = &facts {
                match &authenticated {
                    Authenticated::Token { token, .. } => {
                        facts.authn(palisade_audit::AuthnOutcome::Authenticated, None, Some(token.clone()))
                    }
                    Authenticated::Anonymous => {
                        facts.authn(palisade_audit::AuthnOutcome::Anonymous, None, None)
                    }
                }
            }
            if let Authenticated::Token { token, rule, location } = &authenticated {
                if !rule.forward_original_token
                    && let TokenLocation::Header { name, .. } = location
                {
                    req.headers_mut().remove(name.as_str());
                }
                if let Some(name) = &rule.output_payload_to_header {
                    let payload = URL_SAFE_NO_PAD.encode(Value::Object((*token.claims).clone()).to_string());
                    set_header(&mut req, name, &payload);
                }
                for output in &rule.output_claim_to_headers {
                    let value = match token.claims.get(&output.claim) {
                        Some(Value::String(s)) => Some(s.clone()),
                        Some(v @ (Value::Number(_) | Value::Bool(_))) => Some(v.to_string()),
                        _ => None,
                    };
                    if let Some(value) = value {
                        set_header(&mut req, &output.header, &value);
                    }
                }
            }
            req.extensions_mut().insert(Caller(authenticated));
            next.run(req).await
        }
        Err(err) => {
            if let Some(facts) = &facts {
                facts.authn(palisade_audit::AuthnOutcome::Refused, Some(err.reason()), None);
            }
            state.metrics().observe_authn_failure(err.reason());
            tracing::info!(reason = err.reason(), "authentication refused");
            refusal(&err)
        }
    }
}

fn set_header(req: &mut Request, name: &str, value: &str) {
    if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_str(value)) {
        req.headers_mut().insert(name, value);
    }
}

/// The 401/403 response, with an RFC 6750 `WWW-Authenticate` header.
pub(crate) fn refusal(err: &AuthnError) -> Response {
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let challenge = match err {
        AuthnError::MissingToken => r#"Bearer realm="palisade""#.to_owned(),
        AuthnError::MultipleTokens => {
            r#"Bearer realm="palisade", error="invalid_request", error_description="more than one token""#
                .to_owned()
        }
        other => format!(
            r#"Bearer realm="palisade", error="invalid_token", error_description="{}""#,
            other.to_string().replace('"', "'")
        ),
    };
    let message = match err {
        AuthnError::MissingToken => "authentication required: send a bearer token".to_owned(),
        other => format!("authentication failed: {other}"),
    };
    let mut response = (status, Json(ErrorBody { error: message })).into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

impl Caller {
    /// The verified token, if the caller presented one.
    pub fn token(&self) -> Option<&Arc<palisade_identity::VerifiedToken>> {
        match &self.0 {
            Authenticated::Token { token, .. } => Some(token),
            Authenticated::Anonymous => None,
        }
    }
}
