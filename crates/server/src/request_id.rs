//! Request ids: one per data-plane request, returned as `x-request-id` and attached to every
//! log line of the request.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The response header carrying the request id.
pub const HEADER: &str = "x-request-id";

/// The id of the request being handled, available to handlers as an extension.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Gives the request a fresh id (time-ordered UUIDv7), runs it inside a span carrying that id,
/// and returns the id in `x-request-id`. A caller-sent `x-request-id` is not trusted as ours.
pub(crate) async fn assign(mut req: Request, next: Next) -> Response {
    let id = uuid::Uuid::now_v7().to_string();
    req.extensions_mut().insert(RequestId(id.clone()));
    let span =
        tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path());
    let mut response = next.run(req).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}
