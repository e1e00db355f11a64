//! The generated gRPC server mounted in an axum router beside REST routes, served over
//! HTTP/2 on an ephemeral port, and called with the generated client: proves the mounting
//! recipe the server crate follows, with a toy echo model standing in for the registry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use axum::routing::get;
use palisade_core::{DataType, Dim, ModelSignature, Tensor, TensorData, TensorSpec};
use palisade_protocol::grpc::inference::{
    ModelMetadataRequest, ModelMetadataResponse, ModelReadyRequest, ModelReadyResponse, ServerLiveRequest,
    ServerLiveResponse, ServerMetadataRequest, ServerMetadataResponse, ServerReadyRequest,
    ServerReadyResponse,
};
use palisade_protocol::grpc::tonic::{self, Code, Request, Response, Status};
use palisade_protocol::grpc::{
    self, GrpcInferenceService, GrpcInferenceServiceClient, GrpcInferenceServiceServer, ModelInferRequest,
    ModelInferResponse,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Answers every inference with its inputs, renamed `echo_<name>`.
struct Echo;

#[tonic::async_trait]
impl GrpcInferenceService for Echo {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse { ready: true }))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        Ok(Response::new(ModelReadyResponse { ready: request.get_ref().name == "echo" }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(grpc::server_metadata_response("palisade", "test", vec![])))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        if request.get_ref().name != "echo" {
            return Err(Status::not_found("unknown model"));
        }
        let spec = |name: &str| TensorSpec {
            name: name.to_owned(),
            datatype: DataType::Fp32,
            shape: vec![Dim::Dynamic, Dim::Fixed(4)],
            allow_nan: false,
            labels: None,
        };
        let signature = ModelSignature { inputs: vec![spec("x")], outputs: vec![spec("echo_x")] };
        Ok(Response::new(grpc::model_metadata_response("echo", vec!["1".to_owned()], "test", &signature)))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let parsed = grpc::parse_infer_request(request.into_inner())
            .map_err(|e| Status::invalid_argument(e.message().to_owned()))?;
        let outputs: Vec<Tensor> = parsed
            .inputs
            .into_iter()
            .map(|t| {
                let name = format!("echo_{}", t.name());
                t.with_name(name)
            })
            .collect();
        let raw = parsed.parameters.get("typed").and_then(serde_json::Value::as_bool) != Some(true);
        Ok(Response::new(grpc::encode_infer_response(
            &parsed.model_name,
            "1",
            parsed.id.as_deref(),
            &outputs,
            raw,
        )))
    }
}

const BIG: usize = 64 << 20;

/// REST and gRPC on one port: the axum `http2` feature lets `axum::serve` accept the
/// HTTP/2 prior-knowledge connections gRPC clients open, beside HTTP/1.1.
async fn serve() -> SocketAddr {
    let grpc_service = GrpcInferenceServiceServer::new(Echo).max_decoding_message_size(BIG);
    let app = axum::Router::new()
        .route("/v2/health/live", get(|| async { "live" }))
        .route_service(&format!("/{}/{{*rpc}}", grpc::SERVICE_NAME), grpc_service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn client(addr: SocketAddr) -> GrpcInferenceServiceClient<tonic::transport::Channel> {
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    GrpcInferenceServiceClient::new(channel).max_decoding_message_size(BIG).max_encoding_message_size(BIG)
}

#[tokio::test]
async fn generated_server_in_axum_answers_the_generated_client() {
    let addr = serve().await;
    let mut client = client(addr).await;

    assert!(client.server_live(ServerLiveRequest {}).await.unwrap().into_inner().live);
    assert!(client.server_ready(ServerReadyRequest {}).await.unwrap().into_inner().ready);
    let ready = client.model_ready(ModelReadyRequest { name: "echo".into(), version: String::new() }).await;
    assert!(ready.unwrap().into_inner().ready);
    let meta = client.server_metadata(ServerMetadataRequest {}).await.unwrap().into_inner();
    assert_eq!(meta.name, "palisade");
    let meta = client
        .model_metadata(ModelMetadataRequest { name: "echo".into(), version: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.inputs[0].shape, [-1, 4]);
    let missing =
        client.model_metadata(ModelMetadataRequest { name: "nope".into(), version: String::new() }).await;
    assert_eq!(missing.unwrap_err().code(), Code::NotFound);

    let x =
        Tensor::new("x", vec![2, 4], TensorData::Fp32(vec![5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3])).unwrap();
    for raw in [true, false] {
        let mut request =
            grpc::encode_infer_request("echo", None, Some("r-1"), std::slice::from_ref(&x), raw);
        if !raw {
            request
                .parameters
                .insert("typed".into(), grpc::parameter_from_json(&serde_json::json!(true)).unwrap());
        }
        let response = client.model_infer(request).await.unwrap().into_inner();
        assert_eq!(response.raw_output_contents.is_empty(), !raw);
        let parsed = grpc::parse_infer_response(response).unwrap();
        assert_eq!(parsed.id.as_deref(), Some("r-1"));
        assert_eq!(parsed.outputs, vec![x.clone().with_name("echo_x")]);
    }

    let bad = grpc::encode_infer_request("", None, None, std::slice::from_ref(&x), true);
    let err = client.model_infer(bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("`model_name` is empty"), "{}", err.message());
}

#[tokio::test]
async fn messages_above_the_default_4_mib_pass_when_the_limit_is_raised() {
    let addr = serve().await;
    let mut client = client(addr).await;
    let n = 2 << 20;
    let x = Tensor::new("x", vec![n], TensorData::Fp32(vec![0.5; n])).unwrap();
    let request = grpc::encode_infer_request("echo", None, None, std::slice::from_ref(&x), true);
    let response = client.model_infer(request).await.unwrap().into_inner();
    assert_eq!(response.raw_output_contents[0].len(), 4 * n);
}

#[tokio::test]
async fn rpcs_not_declared_are_unimplemented_and_rest_still_answers() {
    let addr = serve().await;
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut raw = tonic::client::Grpc::new(channel);
    raw.ready().await.unwrap();
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/inference.GRPCInferenceService/ModelConfig");
    let result: Result<Response<ServerLiveResponse>, Status> =
        raw.unary(Request::new(ServerLiveRequest {}), path, tonic_prost::ProstCodec::default()).await;
    assert_eq!(result.unwrap_err().code(), Code::Unimplemented);

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /v2/health/live HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("live"), "{answer}");
}
