//! Seldon Core v1 prediction endpoints, for callers migrating from Seldon Core.
//!
//! `POST /api/v1.0/predictions` works when exactly one model is served (as in a
//! SeldonDeployment); `POST /seldon/{namespace}/{model}/api/v1.0/predictions` is Seldon's
//! ingress path and names the model. The request context resolves which; errors are
//! written in Seldon's `status` body by the one renderer ([`crate::rescue`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use palisade_core::{ModelSignature, TensorSpec};
use palisade_protocol::seldon;

use crate::context::RequestContext;
use crate::{ApiError, AppState, ServedModel};

/// `POST /api/v1.0/predictions` and `POST /seldon/{namespace}/{model}/api/v1.0/predictions`,
/// for the model the context resolved.
pub(crate) async fn predict(
    state: &AppState,
    ctx: &RequestContext,
    served: &Arc<ServedModel>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let body = state.read_body(ctx, &parts.headers, body).await?;
    let signature = served.model.signature();
    let [input] = signature.inputs.as_slice() else {
        return Err(ApiError::BadRequest(format!(
            "model `{}` has {} inputs; the Seldon protocol carries one: use the V2 endpoint",
            served.id.name,
            signature.inputs.len()
        )));
    };
    let request = seldon::parse_request(&body.bytes, &input.name, input.datatype)?;
    let tags = request.meta.get("tags").cloned();
    let outputs = state.infer(served, vec![request.tensor]).await?;
    let (index, spec) = primary_output(signature)
        .ok_or_else(|| ApiError::Inference("the model has no outputs".to_owned()))?;
    let output = outputs.get(index).ok_or_else(|| ApiError::Inference("an output is missing".to_owned()))?;
    let names = column_names(spec, output.shape());
    Ok(Json(seldon::encode_response(
        output,
        &names,
        request.form,
        served.id.name.as_str(),
        served.id.version.as_str(),
        tags.as_ref(),
    ))
    .into_response())
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
