//! The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`), served on the
//! same port as REST: HTTP/2 with prior knowledge in plaintext, `h2` by ALPN under TLS.
//!
//! gRPC requests pass through the same layers as REST, in the same order, with the same
//! request context: the route is the gRPC method (`POST` only), the token comes from the
//! `authorization` metadata, and the model, which the message names, is read from the
//! message by [`crate::layers::grpc_model`] after authentication and authorized before any
//! tensor is decoded. Every method here serves the model in the context, never a name from
//! the message.
//!
//! Errors follow the one table in [`crate::error`]: handler errors become statuses with
//! [`ApiError::to_grpc`], and errors raised by the layers are written as trailers-only
//! gRPC responses by [`crate::rescue`].

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
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
use tower::ServiceExt;

use crate::context::{Ctx, Target};
use crate::error::http_status_for;
use crate::registry::clip;
use crate::{ApiError, AppState, ServedModel};

/// The gRPC status code of a response: from its headers (trailers-only responses, errors)
/// or its trailers (normal completion). `None` for responses that are not gRPC.
pub(crate) fn code_of(headers: &HeaderMap, trailers: Option<&HeaderMap>) -> Option<i32> {
    if !crate::context::is_grpc_content(headers) {
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

/// Serves a gRPC request with the inference service.
pub(crate) async fn serve(state: &AppState, req: Request) -> Response {
    let limit = state.config().max_body_bytes;
    let service = GrpcInferenceServiceServer::new(Service { state: state.clone() })
        .max_decoding_message_size(limit)
        .max_encoding_message_size(usize::MAX);
    match service.oneshot(req).await {
        Ok(response) => response.map(Body::new),
        Err(never) => match never {},
    }
}

/// `inference.GRPCInferenceService` over the served models.
pub(crate) struct Service {
    state: AppState,
}

/// Logs an error the way REST does (server errors in full, client errors by kind) and
/// turns it into a status.
fn status(err: ApiError) -> Status {
    crate::rescue::log_error(&err);
    err.to_grpc()
}

/// The model the request context resolved from the message: authorized by the layers
/// before the handler runs.
fn served(extensions: &axum::http::Extensions) -> Result<Arc<ServedModel>, Status> {
    match extensions.get::<Ctx>().and_then(|ctx| ctx.target().cloned()) {
        Some(Target::Served(served)) => Ok(served),
        Some(Target::Missing(message)) => Err(status(ApiError::NotFound(message))),
        None => Err(status(ApiError::Internal("a gRPC model method ran without its model".to_owned()))),
    }
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
        // A model that is not served is simply not ready, as Triton answers.
        match request.extensions().get::<Ctx>().and_then(|ctx| ctx.target().cloned()) {
            Some(Target::Missing(_)) => Ok(tonic::Response::new(ModelReadyResponse { ready: false })),
            _ => {
                served(request.extensions())?;
                Ok(tonic::Response::new(ModelReadyResponse { ready: self.state.is_ready() }))
            }
        }
    }

    async fn server_metadata(
        &self,
        _: tonic::Request<ServerMetadataRequest>,
    ) -> Result<tonic::Response<ServerMetadataResponse>, Status> {
        Ok(tonic::Response::new(crate::api::v2::server_metadata_value().into()))
    }

    async fn model_metadata(
        &self,
        request: tonic::Request<ModelMetadataRequest>,
    ) -> Result<tonic::Response<ModelMetadataResponse>, Status> {
        let served = served(request.extensions())?;
        Ok(tonic::Response::new(crate::api::v2::metadata(&self.state, &served).into()))
    }

    async fn model_infer(
        &self,
        request: tonic::Request<ModelInferRequest>,
    ) -> Result<tonic::Response<ModelInferResponse>, Status> {
        let (_, extensions, message) = request.into_parts();
        let served = served(&extensions)?;
        let ctx = extensions
            .get::<Ctx>()
            .cloned()
            .ok_or_else(|| status(ApiError::Internal("a gRPC call without its context".to_owned())))?;
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
        let mut outputs = self.state.infer(&ctx, &served, parsed.inputs).await.map_err(status)?;
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
        let mut response = grpc::encode_infer_response(
            served.id.name.as_str(),
            served.id.version.as_str(),
            parsed.id.as_deref(),
            &selected,
            true,
        );
        if let Some(parameter) = ctx
            .graph()
            .and_then(|g| grpc::parameter_from_json(&serde_json::Value::String(g.routing_json().to_string())))
        {
            response.parameters.insert("routing".to_owned(), parameter);
        }
        // gRPC parameters hold scalars: the per-row lists are JSON arrays in string parameters.
        if let Some(outliers) = ctx.outliers() {
            let (scores, flags) = outliers.json();
            for (name, value) in [("outlier_score", scores), ("is_outlier", flags)] {
                if let Some(parameter) =
                    grpc::parameter_from_json(&serde_json::Value::String(value.to_string()))
                {
                    response.parameters.insert(name.to_owned(), parameter);
                }
            }
        }
        Ok(tonic::Response::new(response))
    }
}
