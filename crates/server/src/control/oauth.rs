//! Palisade's issuer endpoints: OAuth2 client credentials (`POST /oauth/token`, RFC 6749
//! section 4.4), OIDC discovery and the key set.

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::json;

use crate::context::RequestContext;
use crate::{ApiError, AppState};

#[derive(Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    scope: Option<String>,
}

/// An RFC 6749 section 5.2 error.
fn oauth_error(status: StatusCode, error: &'static str, description: &str) -> ApiError {
    ApiError::OAuth { status, error, description: description.to_owned() }
}

/// `POST /oauth/token` with `grant_type=client_credentials`; the client authenticates with
/// HTTP Basic or with `client_id`/`client_secret` in the form (not both).
pub(crate) async fn token(
    state: &AppState,
    ctx: &RequestContext,
    req: Request,
) -> Result<Response, ApiError> {
    let Some(issuer) = state.security().issuer().cloned() else {
        return Err(oauth_error(StatusCode::NOT_FOUND, "invalid_request", "the built-in issuer is disabled"));
    };
    let (parts, body) = req.into_parts();
    let body = state.read_body(ctx, &parts.headers, body).await?;
    let Ok(form) = serde_urlencoded::from_bytes::<TokenForm>(&body.bytes) else {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        ));
    };
    if form.grant_type.as_deref() != Some("client_credentials") {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only client_credentials is supported",
        ));
    }
    let basic = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(parse_basic);
    let credentials = match (basic, form.client_id, form.client_secret) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "use one client authentication method, not two",
            ));
        }
        (Some(pair), None, None) => Some(pair),
        (None, Some(id), Some(secret)) => Some((id, secret)),
        _ => None,
    };
    let Some((client_id, secret)) = credentials else {
        return Err(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication is required",
        ));
    };
    // A client id or an address past its failures is refused before the secret is checked.
    let address = ctx.conn.as_ref().map(|c| c.remote.ip());
    let throttle = state.security().credential_throttle();
    if let Err(wait) = throttle.check(&client_id, address) {
        state.metrics().observe_authn_failure("-", "client_credentials_throttled");
        let retry_after = u32::try_from(wait.as_secs().max(1)).unwrap_or(u32::MAX);
        return Err(ApiError::Throttled { retry_after });
    }
    let id = client_id.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let account = issuer.authenticate_client(&client_id, &secret)?;
        Some(issuer.issue_for(&account))
    })
    .await
    .ok()
    .flatten();
    state.security().sync_issuer_keys();
    match checked {
        None => {
            state.metrics().observe_authn_failure("-", "client_credentials");
            throttle.failed(&id, address);
            Err(oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "unknown client, wrong secret, or revoked",
            ))
        }
        Some(Err(err)) => Err(ApiError::Internal(format!("cannot issue a token: {err}"))),
        Some(Ok(issued)) => {
            throttle.succeeded(&id);
            let mut response = Json(json!({
                "access_token": issued.token.expose(),
                "token_type": "Bearer",
                "expires_in": issued.expires_in,
            }))
            .into_response();
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            Ok(response)
        }
    }
}

/// `Authorization: Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 2.3.1).
fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let decode = |s: &str| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}")).ok()?.pop().map(|p| p.1)
    };
    Some((decode(id)?, decode(secret)?))
}

/// `GET /.well-known/openid-configuration`
pub(crate) fn discovery(state: &AppState) -> Result<Response, ApiError> {
    match state.security().issuer() {
        Some(issuer) => Ok(Json(issuer.discovery()).into_response()),
        None => Err(ApiError::NotFound("the built-in issuer is disabled".into())),
    }
}

/// `GET /.well-known/jwks.json`
pub(crate) fn jwks(state: &AppState) -> Result<Response, ApiError> {
    state.security().sync_issuer_keys();
    match state.security().issuer() {
        Some(issuer) => {
            let mut response = Json(issuer.jwks()).into_response();
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
            Ok(response)
        }
        None => Err(ApiError::NotFound("the built-in issuer is disabled".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials() {
        let header = format!("Basic {}", STANDARD.encode("a%3Ab:s%20t"));
        assert_eq!(parse_basic(&header), Some(("a:b".into(), "s t".into())));
        assert_eq!(parse_basic("Bearer xyz"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
    }
}
