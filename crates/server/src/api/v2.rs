//! Open Inference Protocol V2 REST handlers. Each gets the model the request context
//! resolved; none reads the path.

use std::sync::Arc;

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use palisade_core::TensorSpec;
use palisade_protocol::v2::{
    self, HEADER_CONTENT_LENGTH, MetadataTensor, ModelMetadata, ResponseOutput, ServerMetadata,
};
use serde_json::json;

use crate::context::RequestContext;
use crate::registry::clip;
use crate::{ApiError, AppState, ServedModel};

/// `GET /v2`
pub(crate) fn server_metadata() -> Response {
    Json(server_metadata_value()).into_response()
}

/// The server's name, version and protocol extensions (REST and gRPC).
pub(crate) fn server_metadata_value() -> ServerMetadata {
    ServerMetadata {
        name: "palisade".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        extensions: vec!["binary_tensor_data".to_owned()],
    }
}

/// `GET /v2/health/live`: `{"live": true}` while the process is up (KServe's SDK reads the
/// body, Triton's clients the status). Public by design, like all health probes.
pub(crate) fn live() -> Response {
    Json(json!({"live": true})).into_response()
}

/// `GET /v2/health/ready`: `{"ready": true}` when every model is loaded and the server is not
/// draining, else 503 `{"ready": false}`.
pub(crate) fn ready(state: &AppState) -> Response {
    if state.is_ready() {
        Json(json!({"ready": true})).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"ready": false}))).into_response()
    }
}

/// `GET /v2/models/{model}[/versions/{version}]`
pub(crate) fn model_metadata(state: &AppState, served: &ServedModel) -> Response {
    Json(metadata(state, served)).into_response()
}

/// `GET /v2/models/{model}[/versions/{version}]/ready`: a local model is ready once
/// loaded; an upstream model when its server says so (503 otherwise, the reason logged).
pub(crate) async fn model_ready(served: &ServedModel) -> Result<Response, ApiError> {
    check_ready(served).await?;
    Ok(StatusCode::OK.into_response())
}

/// Whether a model is ready: a local model once loaded; an upstream model when its server
/// says so (503 otherwise, the reason logged).
pub(crate) async fn check_ready(served: &ServedModel) -> Result<(), ApiError> {
    let Some(upstream) = served.model.upstream() else {
        return Ok(());
    };
    match upstream.ready().await {
        Ok(()) => Ok(()),
        Err(err) => {
            tracing::warn!(error = %err, model = %served.id.name, "upstream model is not ready");
            Err(ApiError::NotReady(format!(
                "model `{}` is not ready: {}",
                served.id.name,
                err.public_message()
            )))
        }
    }
}

/// Reads a V2 infer body (JSON, or with the binary extension when
/// `Inference-Header-Content-Length` says where the JSON ends), for `infer` and `explain`
/// alike; a body naming another model than the route's is refused.
async fn read_infer_request(
    state: &AppState,
    ctx: &RequestContext,
    served: &ServedModel,
    req: Request,
) -> Result<v2::InferRequest, ApiError> {
    let (parts, body) = req.into_parts();
    let body = state.read_body(ctx, &parts.headers, body).await?;
    let json_len = match parts.headers.get(HEADER_CONTENT_LENGTH) {
        None => None,
        Some(value) => {
            Some(value.to_str().ok().and_then(|v| v.trim().parse::<usize>().ok()).ok_or_else(|| {
                ApiError::BadRequest("Inference-Header-Content-Length must be a byte count".to_owned())
            })?)
        }
    };
    let request = v2::parse_infer_request(&body.bytes, json_len)?;
    same_model(served, request.model_name.as_deref(), request.model_version.as_deref())?;
    Ok(request)
}

/// `POST /v2/models/{model}[/versions/{version}]/infer`
pub(crate) async fn infer(
    state: &AppState,
    ctx: &RequestContext,
    served: &Arc<ServedModel>,
    req: Request,
) -> Result<Response, ApiError> {
    let request = read_infer_request(state, ctx, served, req).await?;
    let signature = served.model.signature();
    for wanted in &request.outputs {
        if signature.output(&wanted.name).is_none() {
            let known: Vec<&str> = signature.outputs.iter().map(|o| o.name.as_str()).collect();
            return Err(ApiError::BadRequest(format!(
                "unknown output `{}`: the model's outputs are {known:?}",
                clip(&wanted.name)
            )));
        }
    }
    let binary_default = request.binary_output_default();
    let outputs = state.infer(ctx, served, request.inputs).await?;
    let selected: Vec<ResponseOutput> = if request.outputs.is_empty() {
        outputs.into_iter().map(|tensor| ResponseOutput { tensor, binary: binary_default }).collect()
    } else {
        let mut outputs = outputs;
        request
            .outputs
            .iter()
            .filter_map(|wanted| {
                let pos = outputs.iter().position(|t| t.name() == wanted.name)?;
                Some(ResponseOutput { tensor: outputs.swap_remove(pos), binary: wanted.binary })
            })
            .collect()
    };
    let parameters = response_parameters(ctx);
    let encoded = v2::encode_infer_response_with(
        served.id.name.as_str(),
        served.id.version.as_str(),
        request.id.as_deref(),
        parameters.as_ref(),
        &selected,
    );
    Ok(match encoded.json_len {
        None => ([(header::CONTENT_TYPE, "application/json")], encoded.body).into_response(),
        Some(n) => {
            let mut response = encoded.body.into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            headers.insert(HEADER_CONTENT_LENGTH, HeaderValue::from(n));
            response
        }
    })
}

/// The response's `parameters`: a graph's `routing`; `outlier_score` and `is_outlier`
/// (one per row) for a monitored model.
fn response_parameters(ctx: &RequestContext) -> Option<serde_json::Value> {
    let mut map = serde_json::Map::new();
    if let Some(graph) = ctx.graph() {
        map.insert("routing".to_owned(), graph.routing_json());
    }
    if let Some(outliers) = ctx.outliers() {
        let (scores, flags) = outliers.json();
        map.insert("outlier_score".to_owned(), scores);
        map.insert("is_outlier".to_owned(), flags);
    }
    (!map.is_empty()).then_some(serde_json::Value::Object(map))
}

/// `POST /v2/models/{model}[/versions/{version}]/explain`: the same body as `infer`;
/// answers Alibi's `Explanation` JSON (see [`crate::explain`]).
pub(crate) async fn explain(
    state: &AppState,
    ctx: &RequestContext,
    served: &Arc<ServedModel>,
    req: Request,
) -> Result<Response, ApiError> {
    if served.explainer.is_none() {
        return Err(crate::explain::no_explainer(served));
    }
    let request = read_infer_request(state, ctx, served, req).await?;
    Ok(Json(crate::explain::serve(state, served, request.inputs).await?).into_response())
}

/// The route chooses the model; a body that names one (KServe's and Triton's clients add
/// `model_name`, some `model_version`) must name the same, or the request is refused. An
/// empty version says nothing, as in V2 gRPC.
pub(crate) fn same_model(
    served: &ServedModel,
    model_name: Option<&str>,
    model_version: Option<&str>,
) -> Result<(), ApiError> {
    let (name, version) = (served.id.name.as_str(), served.id.version.as_str());
    if let Some(named) = model_name
        && named != name
    {
        return Err(ApiError::BadRequest(format!(
            "the body's model_name `{}` is not the route's model `{name}`: the path chooses the model",
            clip(named)
        )));
    }
    if let Some(named) = model_version.filter(|v| !v.is_empty())
        && named != version
    {
        return Err(ApiError::BadRequest(format!(
            "the body's model_version `{}` is not the version the route serves, `{name}` version `{version}`: name the version in the path (/v2/models/{name}/versions/{{version}}/infer)",
            clip(named)
        )));
    }
    Ok(())
}

/// The model's metadata (REST and gRPC).
pub(crate) fn metadata(state: &AppState, served: &ServedModel) -> ModelMetadata {
    let signature = served.model.signature();
    let mut parameters = json!({
        "namespace": served.id.namespace.as_str(),
        "bundle_digest": served.digest.to_string(),
        "engine": served.model.engine(),
    });
    if let Some(description) = &served.description {
        parameters["description"] = json!(description);
    }
    ModelMetadata {
        name: served.id.name.to_string(),
        versions: state.registry().versions(&served.id.name).into_iter().map(String::from).collect(),
        platform: served.model.platform().to_owned(),
        inputs: signature.inputs.iter().map(metadata_tensor).collect(),
        outputs: signature.outputs.iter().map(metadata_tensor).collect(),
        parameters: Some(parameters),
    }
}

fn metadata_tensor(spec: &TensorSpec) -> MetadataTensor {
    MetadataTensor {
        name: spec.name.clone(),
        datatype: spec.datatype.as_str().to_owned(),
        shape: spec.shape_i64(),
        parameters: spec.labels.as_ref().map(|labels| json!({ "labels": labels })),
    }
}
