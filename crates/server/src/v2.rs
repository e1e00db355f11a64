//! Open Inference Protocol V2 handlers.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use palisade_core::{Tensor, TensorSpec};
use palisade_protocol::v2::{
    self, HEADER_CONTENT_LENGTH, MetadataTensor, ModelMetadata, ResponseOutput, ServerMetadata,
};
use serde_json::json;

use crate::body::LimitedBody;
use crate::registry::clip;
use crate::respond::{for_model, json_bytes};
use crate::{ApiError, AppState, ServedModel};

/// `GET /v2`
pub(crate) async fn server_metadata() -> Json<ServerMetadata> {
    Json(server_metadata_value())
}

/// The server's name, version and protocol extensions (REST and gRPC).
pub(crate) fn server_metadata_value() -> ServerMetadata {
    ServerMetadata {
        name: "palisade".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        extensions: vec!["binary_tensor_data".to_owned()],
    }
}

/// `GET /v2/health/live`: the process is up. Public by design, like all health probes.
pub(crate) async fn live() -> StatusCode {
    StatusCode::OK
}

/// `GET /v2/health/ready`: every model is loaded and the server is not draining.
pub(crate) async fn ready(State(state): State<AppState>) -> StatusCode {
    if state.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }
}

/// `GET /v2/models/{model}`
pub(crate) async fn model_metadata(State(state): State<AppState>, Path(model): Path<String>) -> Response {
    let result =
        state.registry().get(&model, None).map(|served| Json(metadata(&state, &served)).into_response());
    for_model(&label(&state, &model), result)
}

/// `GET /v2/models/{model}/versions/{version}`
pub(crate) async fn model_version_metadata(
    State(state): State<AppState>,
    Path((model, version)): Path<(String, String)>,
) -> Response {
    let result = state
        .registry()
        .get(&model, Some(&version))
        .map(|served| Json(metadata(&state, &served)).into_response());
    for_model(&label(&state, &model), result)
}

/// `GET /v2/models/{model}/ready`
pub(crate) async fn model_ready(State(state): State<AppState>, Path(model): Path<String>) -> Response {
    let result = match state.registry().get(&model, None) {
        Ok(served) => crate::upstream::ready(&served).await,
        Err(err) => Err(err),
    };
    for_model(&label(&state, &model), result)
}

/// `GET /v2/models/{model}/versions/{version}/ready`
pub(crate) async fn model_version_ready(
    State(state): State<AppState>,
    Path((model, version)): Path<(String, String)>,
) -> Response {
    let result = match state.registry().get(&model, Some(&version)) {
        Ok(served) => crate::upstream::ready(&served).await,
        Err(err) => Err(err),
    };
    for_model(&label(&state, &model), result)
}

/// `POST /v2/models/{model}/infer`
pub(crate) async fn infer(
    State(state): State<AppState>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Result<LimitedBody, ApiError>,
) -> Response {
    let result = match state.registry().get(&model, None) {
        Ok(served) => run(&state, served, &headers, body).await,
        Err(err) => Err(err),
    };
    for_model(&label(&state, &model), result)
}

/// `POST /v2/models/{model}/versions/{version}/infer`
pub(crate) async fn infer_version(
    State(state): State<AppState>,
    Path((model, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<LimitedBody, ApiError>,
) -> Response {
    let result = match state.registry().get(&model, Some(&version)) {
        Ok(served) => run(&state, served, &headers, body).await,
        Err(err) => Err(err),
    };
    for_model(&label(&state, &model), result)
}

/// The metric label for a model named in a path: its name if served, else `-`.
pub(crate) fn label(state: &AppState, model: &str) -> String {
    if state.registry().get(model, None).is_ok() { model.to_owned() } else { "-".to_owned() }
}

async fn run(
    state: &AppState,
    served: Arc<ServedModel>,
    headers: &HeaderMap,
    body: Result<LimitedBody, ApiError>,
) -> Result<Response, ApiError> {
    let LimitedBody(body) = body?;
    let json_len = match headers.get(HEADER_CONTENT_LENGTH) {
        None => None,
        Some(value) => {
            Some(value.to_str().ok().and_then(|v| v.trim().parse::<usize>().ok()).ok_or_else(|| {
                ApiError::BadRequest("Inference-Header-Content-Length must be a byte count".to_owned())
            })?)
        }
    };
    let request = v2::parse_infer_request(&body, json_len)?;
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
    let outputs = infer_tensors(state, &served, request.inputs).await?;
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
    let encoded = v2::encode_infer_response(
        served.id.name.as_str(),
        served.id.version.as_str(),
        request.id.as_deref(),
        &selected,
    );
    Ok(match encoded.json_len {
        None => json_bytes(encoded.body),
        Some(n) => {
            let mut response = encoded.body.into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            headers.insert(HEADER_CONTENT_LENGTH, HeaderValue::from(n));
            response
        }
    })
}

/// Checks inputs against the model, queues the inference, and waits for it within the timeout.
pub(crate) async fn infer_tensors(
    state: &AppState,
    served: &ServedModel,
    inputs: Vec<Tensor>,
) -> Result<Vec<Tensor>, ApiError> {
    let inputs = palisade_runtime::check_inputs(served.model.signature(), inputs)?;
    if let Some(upstream) = served.model.upstream() {
        return crate::upstream::infer(state, served, upstream, inputs).await;
    }
    let timeout = state.config().inference_timeout;
    let output = match state.batcher(&served.id) {
        Some(batcher) => tokio::time::timeout(timeout, batcher.infer(inputs)).await,
        None => tokio::time::timeout(timeout, state.engine().infer(served.model.clone(), inputs)).await,
    }
    .map_err(|_| ApiError::Timeout(timeout))??;
    state.metrics().observe_inference(served.id.name.as_str(), output.queue_wait, output.compute);
    Ok(output.outputs)
}

pub(crate) fn metadata(state: &AppState, served: &ServedModel) -> ModelMetadata {
    let signature = served.model.signature();
    let mut parameters = json!({
        "namespace": served.id.namespace.as_str(),
        "bundle_digest": served.digest.to_string(),
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
