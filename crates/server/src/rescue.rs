//! The one renderer: an [`ApiError`] becomes a response in the protocol of the request.
//!
//! Layers and handlers never build error responses themselves: they return [`ApiError`]
//! (its `IntoResponse` leaves a marker response carrying the error), and the [`rescue`]
//! layer, just inside audit, writes the body the caller's protocol expects:
//!
//! | protocol | body |
//! |---|---|
//! | V2 REST, management | `{"error": "..."}`, `application/json` |
//! | web console | the same, with the console's security headers (CSP, no caching) |
//! | Seldon v1 | `{"status": {"code", "info", "reason", "status": "FAILURE"}}` |
//! | OAuth2 token endpoint | `{"error": code, "error_description": "..."}`, `no-store` |
//! | V2 gRPC, Seldon gRPC | a trailers-only response: `grpc-status`, `grpc-message` |
//!
//! Status, gRPC code and message come from [`ApiError`] alone; so do `WWW-Authenticate`,
//! `Retry-After` and `Allow`. Nothing is parsed back out of a body.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::ApiError;
use crate::context::Ctx;
use crate::route::Protocol;

/// The marker an [`ApiError`] leaves in a response until [`rescue`] renders it.
#[derive(Debug, Clone)]
struct Rescued(Arc<ApiError>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = self.status();
        response.extensions_mut().insert(Rescued(Arc::new(self)));
        response
    }
}

/// Logs a failed request: server errors in full, but a run of the same kind of server error
/// (a full audit disk, a dead upstream) once per interval with a count; client errors by
/// kind only, at debug level.
pub(crate) fn log_error(err: &ApiError) {
    let status = err.status();
    if status.is_server_error() {
        if let Some(report) = quiet_for(err.kind()).note() {
            tracing::error!(error = %err.public_message(), kind = err.kind(), status = status.as_u16(), suppressed = report.suppressed, "request failed");
            tracing::debug!(error = %err, "request failed (details)");
        }
    } else {
        // Client errors can quote the request's own bytes (a JSON parse error shows the
        // offending value), and payloads never go to logs: log the kind only.
        tracing::debug!(kind = err.kind(), status = status.as_u16(), "request refused");
    }
}

/// The quiet log of one kind of server error (one line per 10 s, with a count).
fn quiet_for(kind: &'static str) -> Arc<palisade_core::quiet::Quiet> {
    static QUIET: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<&'static str, Arc<palisade_core::quiet::Quiet>>>,
    > = std::sync::OnceLock::new();
    let map = QUIET.get_or_init(Default::default);
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(kind)
        .or_insert_with(|| Arc::new(palisade_core::quiet::Quiet::new(std::time::Duration::from_secs(10))))
        .clone()
}

/// Writes `err` for a caller speaking `protocol`.
pub(crate) fn render(protocol: Protocol, err: &ApiError) -> Response {
    log_error(err);
    let status = err.status();
    let message = err.public_message();
    let response = match protocol {
        Protocol::V2Grpc | Protocol::SeldonGrpc => {
            return with_headers(err.to_grpc().into_http::<Body>(), err);
        }
        Protocol::SeldonV1 => {
            let reason = match status.as_u16() {
                400 | 413 => "MICROSERVICE_BAD_DATA",
                401 | 403 => "UNAUTHORIZED",
                404 => "NOT_FOUND",
                429 | 503 => "UNAVAILABLE",
                _ => "MICROSERVICE_INTERNAL_ERROR",
            };
            let body = json!({"status": {"code": status.as_u16(), "info": message, "reason": reason, "status": "FAILURE"}});
            (status, axum::Json(body)).into_response()
        }
        Protocol::OAuth => {
            let code = match err {
                ApiError::OAuth { error, .. } => *error,
                _ if status.is_server_error() => "server_error",
                _ => "invalid_request",
            };
            let mut response =
                (status, axum::Json(json!({"error": code, "error_description": message}))).into_response();
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Protocol::V2Rest | Protocol::Admin => {
            (status, axum::Json(palisade_protocol::v2::ErrorBody { error: message })).into_response()
        }
        Protocol::Console => {
            let mut response =
                (status, axum::Json(palisade_protocol::v2::ErrorBody { error: message })).into_response();
            palisade_console::assets::secure(response.headers_mut());
            response
        }
    };
    with_headers(response, err)
}

fn with_headers(mut response: Response, err: &ApiError) -> Response {
    let headers = response.headers_mut();
    if let Some(value) = err.challenge().and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(header::WWW_AUTHENTICATE, value);
    }
    if let Some(seconds) = err.retry_after() {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if let ApiError::MethodNotAllowed(allow) = err {
        headers.insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    response
}

/// The layer: renders every error raised inside it in the request's protocol, keeping the
/// response's extensions.
pub(crate) async fn rescue(ctx: Ctx, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    match response.extensions_mut().remove::<Rescued>() {
        None => response,
        Some(Rescued(err)) => {
            let (parts, _) = response.into_parts();
            let mut rendered = render(ctx.protocol, &err);
            rendered.extensions_mut().extend(parts.extensions);
            rendered
        }
    }
}
