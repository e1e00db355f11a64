//! Seldon Core v1 prediction endpoints, for callers migrating from Seldon Core.
//!
//! REST: `POST /api/v1.0/predictions` works when exactly one model is served (as in a
//! SeldonDeployment); `POST /seldon/{namespace}/{model}/api/v1.0/predictions` (Seldon's
//! ingress path) and `/seldon/{model}/api/v1.0/predictions` (the namespace `default`) name
//! the model. gRPC: `seldon.protos.Seldon/Predict` on the same port, the deployment named
//! in the `seldon` (and `namespace`) metadata. The request context resolves which model,
//! for every form; errors are written in Seldon's `status` body (REST) or as gRPC statuses
//! by the one renderer ([`crate::rescue`]).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use palisade_core::{ModelSignature, TensorSpec};
use palisade_protocol::grpc::tonic::{self, Status};
use palisade_protocol::seldon::grpc::protos::{Feedback, SeldonMessage};
use palisade_protocol::seldon::grpc::{Seldon, SeldonServer};
use palisade_protocol::seldon::{self, SeldonRequest};
use serde_json::Value;
use tower::ServiceExt;

use crate::context::{Ctx, RequestContext};
use crate::{ApiError, AppState, ServedModel};

/// `POST /api/v1.0/predictions` and `POST /seldon/[{namespace}/]{model}/api/v1.0/predictions`,
/// for the model the context resolved.
pub(crate) async fn predict(
    state: &AppState,
    ctx: &RequestContext,
    served: &Arc<ServedModel>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let body = state.read_body(ctx, &parts.headers, body).await?;
    let input = single_input(served)?;
    let request = seldon::parse_request(&body.bytes, &input.name, input.datatype)?;
    Ok(Json(run(state, ctx, served, request).await?).into_response())
}

/// `POST /api/v1.0/explain` (and `/seldon/.../api/v1.0/explain`): the model's explanation
/// of a prediction body, as Alibi's `Explanation` JSON (authorized on its own path; 501
/// for a model without an explainer).
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
    let input = single_input(served)?;
    let request = seldon::parse_request(&body.bytes, &input.name, input.datatype)?;
    Ok(Json(crate::explain::serve(state, served, vec![request.tensor]).await?).into_response())
}

/// `POST /seldon.protos.Seldon/Predict`, for the model the context resolved from the call's
/// metadata. The message is read here, after authorization, like a REST body (limit,
/// in-flight budget, digest), and handed to the generated gRPC server.
pub(crate) async fn predict_grpc(
    state: &AppState,
    ctx: &Ctx,
    served: &Arc<ServedModel>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let read = state.read_body(ctx, &parts.headers, body).await?;
    // Decoded once here to answer a malformed message as the caller's error (tonic calls
    // it INTERNAL); tonic decodes the same bytes for the service below.
    if ctx.route == crate::route::Route::SeldonGrpc(crate::route::SeldonMethod::Predict) {
        seldon::grpc::decode_frame(&read.bytes)?;
    }
    let service =
        SeldonServer::new(Service { state: state.clone(), ctx: ctx.clone(), served: served.clone() })
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
    let request = Request::from_parts(parts, Body::from(read.bytes.clone()));
    let response = match service.oneshot(request).await {
        Ok(response) => response.map(Body::new),
        Err(never) => match never {},
    };
    // The bytes stay reserved from the in-flight budget until the message is decoded.
    drop(read);
    Ok(response)
}

/// Feedback for a model that is not a graph: nothing to reward.
pub(crate) fn feedback_unsupported(served: &ServedModel) -> ApiError {
    ApiError::NotImplemented(format!(
        "Seldon feedback rewards the routers of an inference graph; model `{}` is not one",
        served.id.name
    ))
}

/// The model's one input: the Seldon protocol carries one tensor.
fn single_input(served: &ServedModel) -> Result<&TensorSpec, ApiError> {
    let signature = served.model.signature();
    match signature.inputs.as_slice() {
        [input] => Ok(input),
        inputs => Err(ApiError::BadRequest(format!(
            "model `{}` has {} inputs; the Seldon protocol carries one: use the V2 endpoint",
            served.id.name,
            inputs.len()
        ))),
    }
}

/// Runs a parsed request and writes Seldon's JSON response (the gRPC form is converted
/// from it, so both transports answer the same).
async fn run(
    state: &AppState,
    ctx: &RequestContext,
    served: &Arc<ServedModel>,
    request: SeldonRequest,
) -> Result<Value, ApiError> {
    let signature = served.model.signature();
    let tags = request.meta.get("tags").cloned();
    let outputs = state.infer(ctx, served, vec![request.tensor]).await?;
    let (index, spec) = primary_output(signature)
        .ok_or_else(|| ApiError::Inference("the model has no outputs".to_owned()))?;
    let output = outputs.get(index).ok_or_else(|| ApiError::Inference("an output is missing".to_owned()))?;
    let names = column_names(spec, output.shape());
    let mut response = seldon::encode_response(
        output,
        &names,
        request.form,
        served.id.name.as_str(),
        served.id.version.as_str(),
        tags.as_ref(),
    );
    // Seldon Core's outlier detectors reported their scores in `meta.tags`.
    if let (Some(outliers), Some(meta)) =
        (ctx.outliers(), response.get_mut("meta").and_then(Value::as_object_mut))
    {
        let (scores, flags) = outliers.json();
        let tags = meta.entry("tags").or_insert_with(|| Value::Object(Default::default()));
        if let Some(tags) = tags.as_object_mut() {
            tags.insert("outlier_score".to_owned(), scores);
            tags.insert("is_outlier".to_owned(), flags);
        }
    }
    // Seldon's executor reports routers' choices in `meta.routing`.
    if let (Some(graph), Some(meta)) = (ctx.graph(), response.get_mut("meta").and_then(Value::as_object_mut))
    {
        meta.insert("routing".to_owned(), graph.seldon_routing());
        // The model that answered, where Seldon names the units that ran.
        if let Some(arm) = graph.routing.iter().find(|t| t.node == "traffic").and_then(|t| t.child.clone()) {
            let path = meta.entry("requestPath").or_insert_with(|| Value::Object(Default::default()));
            if let Some(path) = path.as_object_mut() {
                path.insert("traffic".to_owned(), Value::from(arm));
            }
        }
        // What a Seldon client sends back with its feedback.
        meta.insert("puid".to_owned(), Value::from(ctx.id.as_str()));
    }
    Ok(response)
}

/// `seldon.protos.Seldon` for one request's model, resolved by the request context.
struct Service {
    state: AppState,
    ctx: Ctx,
    served: Arc<ServedModel>,
}

/// Logs an error the way REST does and turns it into a status.
fn status(err: ApiError) -> Status {
    crate::rescue::log_error(&err);
    err.to_grpc()
}

#[tonic::async_trait]
impl Seldon for Service {
    async fn predict(
        &self,
        request: tonic::Request<SeldonMessage>,
    ) -> Result<tonic::Response<SeldonMessage>, Status> {
        let input = single_input(&self.served).map_err(status)?;
        let request = seldon::grpc::parse_message(request.into_inner(), &input.name, input.datatype)
            .map_err(|e| status(e.into()))?;
        let response = run(&self.state, &self.ctx, &self.served, request).await.map_err(status)?;
        let message = seldon::grpc::response_message(&response).map_err(|e| status(e.into()))?;
        Ok(tonic::Response::new(message))
    }

    async fn send_feedback(
        &self,
        request: tonic::Request<Feedback>,
    ) -> Result<tonic::Response<SeldonMessage>, Status> {
        if self.served.model.graph().is_none() {
            return Err(status(feedback_unsupported(&self.served)));
        }
        let feedback = request.into_inner();
        let puid = feedback.response.and_then(|r| r.meta).map(|m| m.puid).unwrap_or_default();
        if puid.is_empty() {
            return Err(status(ApiError::BadRequest(
                "Seldon feedback needs `response.meta.puid`: the puid of the response being rewarded"
                    .to_owned(),
            )));
        }
        crate::graphs::reward(&self.state, &self.ctx, &self.served, &puid, f64::from(feedback.reward))
            .map_err(status)?;
        let meta = palisade_protocol::seldon::grpc::protos::Meta { puid, ..Default::default() };
        Ok(tonic::Response::new(SeldonMessage { meta: Some(meta), ..Default::default() }))
    }
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
