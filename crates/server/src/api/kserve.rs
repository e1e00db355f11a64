//! KServe's V1 protocol (TensorFlow Serving's REST API): readiness, `:predict` and
//! `:explain` under `/v1/models/{model}`, and the liveness probe at `/`. Each handler gets
//! the model the request context resolved (KServe V1 names no version: the latest);
//! errors are the V2 `{"error": "..."}` body, which is also what KServe's servers answer
//! and what its SDK reads.

use std::sync::Arc;

use axum::Json;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use palisade_protocol::kserve_v1::{self, Input};
use serde_json::json;

use crate::context::RequestContext;
use crate::{ApiError, AppState, ServedModel};

/// `GET /`: `{"status": "alive"}` while the process is up. Public, like every health probe.
pub(crate) fn alive() -> Response {
    Json(json!({"status": "alive"})).into_response()
}

/// `GET /v1/models/{model}`: `{"name", "ready": true}`, or 503 when an upstream model's
/// server says it is not ready (KServe's SDK reads a 503 as "not ready").
pub(crate) async fn ready(served: &ServedModel) -> Result<Response, ApiError> {
    super::v2::check_ready(served).await?;
    Ok(Json(json!({"name": served.id.name.as_str(), "ready": true})).into_response())
}

/// `POST /v1/models/{model}:predict`
pub(crate) async fn predict(
    state: &AppState,
    ctx: &RequestContext,
    served: &Arc<ServedModel>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let body = state.read_body(ctx, &parts.headers, body).await?;
    let signature = served.model.signature();
    let inputs: Vec<Input<'_>> =
        signature.inputs.iter().map(|spec| Input { name: &spec.name, datatype: spec.datatype }).collect();
    let tensors = kserve_v1::parse_predict_request(&body.bytes, &inputs)?;
    let outputs = state.infer(ctx, served, tensors).await?;
    Ok(Json(kserve_v1::encode_predictions(&outputs)?).into_response())
}

/// `POST /v1/models/{model}:explain`: the model's explanation of the `:predict` body
/// (authorized on its own path; 501 for a model without an explainer).
pub(crate) async fn explain(
    state: &AppState,
    ctx: &RequestContext,
    served: &Arc<ServedModel>,
    req: Request,
) -> Result<Response, ApiError> {
    if served.explainer.is_none() {
        return Err(crate::explain::no_explainer(served));
    }
    let (parts, body) = req.into_parts();
    let body = state.read_body(ctx, &parts.headers, body).await?;
    let signature = served.model.signature();
    let inputs: Vec<Input<'_>> =
        signature.inputs.iter().map(|spec| Input { name: &spec.name, datatype: spec.datatype }).collect();
    let tensors = kserve_v1::parse_predict_request(&body.bytes, &inputs)?;
    Ok(Json(crate::explain::serve(state, served, tensors).await?).into_response())
}
