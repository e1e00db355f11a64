//! Building responses: JSON bodies, the V2 error body, and the model label for metrics.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use palisade_protocol::v2::ErrorBody;

use crate::ApiError;

/// Which model a response belongs to, for metric labels.
#[derive(Debug, Clone)]
pub(crate) struct ModelLabel(pub String);

/// Logs a failed request: server errors in full, client errors by kind only.
pub(crate) fn log_error(err: &ApiError) {
    let status = err.status();
    if status.is_server_error() {
        tracing::error!(error = %err, status = status.as_u16(), "request failed");
    } else {
        // Client errors can quote the request's own bytes (a JSON parse error shows the
        // offending value), and payloads never go to logs: log the kind only.
        tracing::debug!(kind = err.kind(), status = status.as_u16(), "request refused");
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        log_error(&self);
        let status = self.status();
        let mut response = (status, Json(ErrorBody { error: self.public_message() })).into_response();
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Tags a response (success or error) with the model it concerns.
pub(crate) fn for_model(model: &str, result: Result<Response, ApiError>) -> Response {
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    response.extensions_mut().insert(ModelLabel(model.to_owned()));
    response
}

/// A JSON body with status 200.
pub(crate) fn json_bytes(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The router's fallback: unknown paths get a V2 error body.
pub(crate) async fn not_found(uri: axum::http::Uri) -> Response {
    ApiError::NotFound(format!("no route for {}", crate::registry::clip(uri.path()))).into_response()
}
