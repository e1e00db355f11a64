//! Serving models that an upstream Open Inference Protocol server runs.
//!
//! By the time a request gets here it went through every layer a local model's does
//! (request id, metrics, audit, authentication, authorization, body limit) and its inputs
//! were checked against the declared signature: the upstream is only called for allowed,
//! well-formed requests. The call carries the request id and trace context; its failures
//! become 502/504 through [`ApiError`], with the upstream's address in the log only.

use std::time::Instant;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use palisade_core::Tensor;
use palisade_runtime::{CallContext, RuntimeError, UpstreamModel};

use crate::request_id::Current;
use crate::{ApiError, AppState, ServedModel};

/// Calls the upstream within the server's inference timeout.
pub(crate) async fn infer(
    state: &AppState,
    served: &ServedModel,
    upstream: &UpstreamModel,
    inputs: Vec<Tensor>,
) -> Result<Vec<Tensor>, ApiError> {
    let current = Current::get();
    let traceparent = current.as_ref().map(|c| c.trace.traceparent());
    let call = CallContext {
        request_id: current.as_ref().map(|c| c.id.as_str()),
        traceparent: traceparent.as_deref(),
    };
    let started = Instant::now();
    let timeout = state.config().inference_timeout;
    let outputs = tokio::time::timeout(timeout, upstream.infer(inputs, call))
        .await
        .map_err(|_| ApiError::Timeout(timeout))?
        .map_err(RuntimeError::Upstream)?;
    state.metrics().observe_inference(served.id.name.as_str(), std::time::Duration::ZERO, started.elapsed());
    Ok(outputs)
}

/// `GET .../ready` for a served model: a local model is ready once loaded; an upstream model
/// when its server says so (503 otherwise, the reason in the log).
pub(crate) async fn ready(served: &ServedModel) -> Result<Response, ApiError> {
    let Some(upstream) = served.model.upstream() else {
        return Ok(StatusCode::OK.into_response());
    };
    match upstream.ready().await {
        Ok(()) => Ok(StatusCode::OK.into_response()),
        Err(err) => {
            tracing::warn!(error = %err, model = %served.id.name, "upstream model is not ready");
            let body = palisade_protocol::v2::ErrorBody {
                error: format!("model `{}` is not ready: {}", served.id.name, err.public_message()),
            };
            Ok((StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response())
        }
    }
}
