//! Seldon Core v1 prediction endpoints, for callers migrating from Seldon Core.
//!
//! `POST /api/v1.0/predictions` works when exactly one model is served (as in a
//! SeldonDeployment); `POST /seldon/{namespace}/{model}/api/v1.0/predictions` is Seldon's
//! ingress path and names the model. Errors use Seldon's `status` body.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use palisade_core::{ModelSignature, TensorSpec};
use palisade_protocol::seldon;
use serde_json::json;

use crate::body::LimitedBody;
use crate::respond::ModelLabel;
use crate::v2::{infer_tensors, label};
use crate::{ApiError, AppState, ServedModel};

/// `POST /api/v1.0/predictions`
pub(crate) async fn predict(State(state): State<AppState>, body: Result<LimitedBody, ApiError>) -> Response {
    let served = state.registry().single().cloned().ok_or_else(|| {
        ApiError::NotFound(
            "several models are served: use /seldon/{namespace}/{model}/api/v1.0/predictions to name one"
                .to_owned(),
        )
    });
    match served {
        Ok(served) => {
            let name = served.id.name.to_string();
            respond(&name, run(&state, served, body).await)
        }
        Err(err) => respond("-", Err(err)),
    }
}

/// `POST /seldon/{namespace}/{model}/api/v1.0/predictions`
pub(crate) async fn predict_in_namespace(
    State(state): State<AppState>,
    Path((namespace, model)): Path<(String, String)>,
    body: Result<LimitedBody, ApiError>,
) -> Response {
    let result = match state.registry().in_namespace(&namespace, &model) {
        Ok(served) => run(&state, served, body).await,
        Err(err) => Err(err),
    };
    respond(&label(&state, &model), result)
}

async fn run(
    state: &AppState,
    served: Arc<ServedModel>,
    body: Result<LimitedBody, ApiError>,
) -> Result<serde_json::Value, ApiError> {
    let LimitedBody(body) = body?;
    let signature = served.model.signature();
    let [input] = signature.inputs.as_slice() else {
        return Err(ApiError::BadRequest(format!(
            "model `{}` has {} inputs; the Seldon protocol carries one: use the V2 endpoint",
            served.id.name,
            signature.inputs.len()
        )));
    };
    let request = seldon::parse_request(&body, &input.name, input.datatype)?;
    let tags = request.meta.get("tags").cloned();
    let outputs = infer_tensors(state, &served, vec![request.tensor]).await?;
    let (index, spec) = primary_output(signature)
        .ok_or_else(|| ApiError::Inference("the model has no outputs".to_owned()))?;
    let output = outputs.get(index).ok_or_else(|| ApiError::Inference("an output is missing".to_owned()))?;
    let names = column_names(spec, output.shape());
    Ok(seldon::encode_response(
        output,
        &names,
        request.form,
        served.id.name.as_str(),
        served.id.version.as_str(),
        tags.as_ref(),
    ))
}

/// The output a Seldon caller gets: the only one, else the class probabilities (the output
/// with class labels), else the last floating-point output.
fn primary_output(signature: &ModelSignature) -> Option<(usize, &TensorSpec)> {
    let outputs = &signature.outputs;
    if outputs.len() == 1 {
        return outputs.first().map(|o| (0, o));
    }
    outputs
        .iter()
        .enumerate()
        .find(|(_, o)| o.labels.is_some())
        .or_else(|| outputs.iter().enumerate().rev().find(|(_, o)| o.datatype.is_float()))
        .or_else(|| outputs.first().map(|o| (0, o)))
}

fn column_names(spec: &TensorSpec, shape: &[usize]) -> Vec<String> {
    match &spec.labels {
        Some(labels) => labels.clone(),
        None => {
            let columns = if shape.len() >= 2 { shape[shape.len() - 1] } else { 1 };
            (0..columns).map(|i| format!("t:{i}")).collect()
        }
    }
}

fn respond(model: &str, result: Result<serde_json::Value, ApiError>) -> Response {
    let mut response = match result {
        Ok(body) => Json(body).into_response(),
        Err(err) => {
            let status = err.status();
            if status.is_server_error() {
                tracing::error!(error = %err, status = status.as_u16(), "request failed");
            }
            let reason = match status.as_u16() {
                400 | 413 => "MICROSERVICE_BAD_DATA",
                404 => "NOT_FOUND",
                429 | 503 => "UNAVAILABLE",
                _ => "MICROSERVICE_INTERNAL_ERROR",
            };
            let body = json!({"status": {"code": status.as_u16(), "info": err.public_message(), "reason": reason, "status": "FAILURE"}});
            (status, Json(body)).into_response()
        }
    };
    response.extensions_mut().insert(ModelLabel(model.to_owned()));
    response
}
