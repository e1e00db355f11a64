//! The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`), served on the
//! same port as REST: HTTP/2 with prior knowledge in plaintext, `h2` by ALPN under TLS.
//!
//! gRPC requests pass through the same layers as REST, in the same order (request id,
//! metrics, audit, path normalization, authentication with the token from the
//! `authorization` metadata). Authorization is the one step that moves: the model is named
//! inside the message, so the layer leaves a [`DeferredAuthz`] and every method that
//! addresses a model decides with it before anything else, using the gRPC path
//! (`/inference.GRPCInferenceService/ModelInfer`) and method `POST`, as Istio does.
//!
//! Errors follow the one table in [`crate::error`]: handler errors become statuses with
//! [`ApiError::to_grpc`], and the HTTP refusals of the layers (401, 403, 413, 503) are turned
//! into trailers-only gRPC responses by [`adapt`].

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;
use palisade_core::Tensor;
use palisade_protocol::grpc::inference::{
    ModelMetadataRequest, ModelMetadataResponse, ModelReadyRequest, ModelReadyResponse, ServerLiveRequest,
    ServerLiveResponse, ServerMetadataRequest, ServerMetadataResponse, ServerReadyRequest,
    ServerReadyResponse,
};
use palisade_protocol::grpc::tonic::{self, Code, Status};
use palisade_protocol::grpc::{
    self, GrpcInferenceService, GrpcInferenceServiceServer, ModelInferRequest, ModelInferResponse,
};

use crate::audit::Facts;
use crate::authz::{Admitted, DeferredAuthz, Refusal};
use crate::error::{grpc_code_for, http_status_for};
use crate::registry::clip;
use crate::respond::ModelLabel;
use crate::{ApiError, AppState, ServedModel};

/// Whether a path is a health method (`ServerLive`, `ServerReady`): public and unaudited
/// like `/v2/health/*`, so orchestrators can probe without a token.
pub(crate) fn is_public_method(path: &str) -> bool {
    path.strip_prefix('/')
        .and_then(|p| p.strip_prefix(grpc::SERVICE_NAME))
        .and_then(|p| p.strip_prefix('/'))
        .is_some_and(|method| method == "ServerLive" || method == "ServerReady")
}

/// Whether a request speaks gRPC (by its content type).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// The gRPC status code of a response: from its headers (trailers-only responses, errors)
/// or its trailers (normal completion). `None` for responses that are not gRPC.
pub(crate) fn code_of(headers: &HeaderMap, trailers: Option<&HeaderMap>) -> Option<i32> {
    if !is_grpc(headers) {
        return None;
    }
    let code = |map: &HeaderMap| map.get("grpc-status").and_then(|v| v.to_str().ok()?.parse::<i32>().ok());
    code(headers).or_else(|| trailers.and_then(code))
}

/// The HTTP status a response stands for: for gRPC, the status of its code in the shared
/// table (a gRPC refusal is always sent with HTTP 200); otherwise its own.
pub(crate) fn effective_status(status: StatusCode, grpc_code: Option<i32>) -> StatusCode {
    match grpc_code {
        Some(code) => http_status_for(Code::from_i32(code)),
        None => status,
    }
}

/// The layer that answers gRPC callers in gRPC: a non-gRPC response to a gRPC request
/// (a layer's 401, 403, 413 or 503, or the router's 404) becomes a trailers-only response
/// with the code from the shared table and the error message. Extensions are kept.
pub(crate) async fn adapt(req: Request, next: Next) -> Response {
    let grpc = is_grpc(req.headers());
    let response = next.run(req).await;
    if grpc { as_grpc(response).await } else { response }
}

/// Turns an HTTP error response into its gRPC form (see [`adapt`]).
pub(crate) async fn as_grpc(response: Response) -> Response {
    if is_grpc(response.headers()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    // Error bodies are small JSON documents; read at most 64 KiB of one.
    let bytes = http_body_util::Limited::new(body, 64 * 1024)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let message = serde_json::from_slice::<palisade_protocol::v2::ErrorBody>(&bytes)
        .map(|e| e.error)
        .or_else(|_| String::from_utf8(bytes.to_vec()).map(|s| s.trim().to_owned()))
        .ok()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| parts.status.canonical_reason().unwrap_or("error").to_owned());
    let code = if parts.status.is_success() { Code::Unknown } else { grpc_code_for(parts.status) };
    let mut out: Response = Status::new(code, message).into_http::<Body>();
    *out.extensions_mut() = parts.extensions;
    if let Some(challenge) = parts.headers.get(header::WWW_AUTHENTICATE) {
        out.headers_mut().insert(header::WWW_AUTHENTICATE, challenge.clone());
    }
    if let Some(retry) = parts.headers.get(header::RETRY_AFTER) {
        out.headers_mut().insert(header::RETRY_AFTER, retry.clone());
    }
    out
}

/// The gRPC service, ready to mount at `/inference.GRPCInferenceService/*`.
pub(crate) fn service(state: AppState) -> GrpcInferenceServiceServer<Service> {
    let limit = state.config().max_body_bytes;
    GrpcInferenceServiceServer::new(Service { state })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX)
}

/// `inference.GRPCInferenceService` over the served models.
pub(crate) struct Service {
    state: AppState,
}

/// Logs an error the way REST does (server errors in full, client errors by kind) and
/// turns it into a status.
fn status(err: ApiError) -> Status {
    crate::respond::log_error(&err);
    err.to_grpc()
}

impl Service {
    /// Finds the model a method addresses and authorizes the request for it: the
    /// PeerAuthentication mode, then the policies, on the gRPC path with method `POST`.
    fn admit(
        &self,
        extensions: &axum::http::Extensions,
        name: &str,
        version: &str,
    ) -> Result<Arc<ServedModel>, Status> {
        let version = (!version.is_empty()).then_some(version);
        let served = self.state.registry().get(name, version).map_err(status)?;
        let Some(DeferredAuthz(input)) = extensions.get::<DeferredAuthz>() else {
            if self.state.config().dangerous_disable_security {
                return Ok(served);
            }
            // The authorization layer always leaves its input; without it, refuse.
            tracing::error!("gRPC request without authorization input: refused");
            return Err(Status::permission_denied("RBAC: access denied"));
        };
        match crate::authz::decide(&self.state, extensions.get::<Facts>(), &served, input.as_ref().clone()) {
            Ok(Admitted { .. }) => Ok(served),
            Err(Refusal::PeerRequired(message)) => Err(Status::permission_denied(message)),
            Err(Refusal::Denied(_)) => Err(Status::permission_denied("RBAC: access denied")),
        }
    }
}

fn labelled<T>(message: T, served: &ServedModel) -> tonic::Response<T> {
    let mut response = tonic::Response::new(message);
    response.extensions_mut().insert(ModelLabel(served.id.name.to_string()));
    response
}

#[tonic::async_trait]
impl GrpcInferenceService for Service {
    async fn server_live(
        &self,
        _: tonic::Request<ServerLiveRequest>,
    ) -> Result<tonic::Response<ServerLiveResponse>, Status> {
        Ok(tonic::Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: tonic::Request<ServerReadyRequest>,
    ) -> Result<tonic::Response<ServerReadyResponse>, Status> {
        Ok(tonic::Response::new(ServerReadyResponse { ready: self.state.is_ready() }))
    }

    async fn model_ready(
        &self,
        request: tonic::Request<ModelReadyRequest>,
    ) -> Result<tonic::Response<ModelReadyResponse>, Status> {
        let ModelReadyRequest { name, version } = request.get_ref();
        // An unknown model is simply not ready, as `GET .../ready` answers 404 and clients
        // read that as `false`.
        let version = (!version.is_empty()).then_some(version.as_str());
        if self.state.registry().get(name, version).is_err() {
            return Ok(tonic::Response::new(ModelReadyResponse { ready: false }));
        }
        let served = self.admit(request.extensions(), name, request.get_ref().version.as_str())?;
        Ok(labelled(ModelReadyResponse { ready: self.state.is_ready() }, &served))
    }

    async fn server_metadata(
        &self,
        _: tonic::Request<ServerMetadataRequest>,
    ) -> Result<tonic::Response<ServerMetadataResponse>, Status> {
        Ok(tonic::Response::new(crate::v2::server_metadata_value().into()))
    }

    async fn model_metadata(
        &self,
        request: tonic::Request<ModelMetadataRequest>,
    ) -> Result<tonic::Response<ModelMetadataResponse>, Status> {
        let served = self.admit(request.extensions(), &request.get_ref().name, &request.get_ref().version)?;
        Ok(labelled(crate::v2::metadata(&self.state, &served).into(), &served))
    }

    async fn model_infer(
        &self,
        request: tonic::Request<ModelInferRequest>,
    ) -> Result<tonic::Response<ModelInferResponse>, Status> {
        let (_, extensions, message) = request.into_parts();
        // Authorize on the names alone, before decoding any tensor.
        let served = self.admit(&extensions, &message.model_name, &message.model_version)?;
        let parsed = grpc::parse_infer_request(message).map_err(|e| status(e.into()))?;
        let signature = served.model.signature();
        for wanted in &parsed.outputs {
            if signature.output(&wanted.name).is_none() {
                let known: Vec<&str> = signature.outputs.iter().map(|o| o.name.as_str()).collect();
                return Err(status(ApiError::BadRequest(format!(
                    "unknown output `{}`: the model's outputs are {known:?}",
                    clip(&wanted.name)
                ))));
            }
        }
        let mut outputs =
            crate::v2::infer_tensors(&self.state, &served, parsed.inputs).await.map_err(status)?;
        let selected: Vec<Tensor> = if parsed.outputs.is_empty() {
            outputs
        } else {
            parsed
                .outputs
                .iter()
                .filter_map(|wanted| {
                    let pos = outputs.iter().position(|t| t.name() == wanted.name)?;
                    Some(outputs.swap_remove(pos))
                })
                .collect()
        };
        let response = grpc::encode_infer_response(
            served.id.name.as_str(),
            served.id.version.as_str(),
            parsed.id.as_deref(),
            &selected,
            true,
        );
        Ok(labelled(response, &served))
    }
}
