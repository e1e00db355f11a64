//! gRPC on a real socket (HTTP/2 cleartext), called with the generated tonic client: the
//! same layers as REST (authentication from `authorization` metadata, per-model policies on
//! the gRPC path, audit, limits) and errors mapped from the one shared table.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use palisade_audit::AuditRecord;
use palisade_core::{Tensor, TensorData};
use palisade_protocol::grpc::inference::{
    ModelMetadataRequest, ModelReadyRequest, ServerLiveRequest, ServerMetadataRequest, ServerReadyRequest,
};
use palisade_protocol::grpc::tonic::{self, Code, Request};
use palisade_protocol::grpc::{self as grpc, GrpcInferenceServiceClient, ModelInferRequest};
use palisade_runtime::EngineConfig;
use palisade_server::{Platform, Registry, ServerConfig};

const MANIFEST: &str = "name: example\nversion: \"1\"\nnamespace: fraud\nowners: [owner@company.com]\nmodel:\n  path: model.onnx\n  format: onnx\n";

/// Lets `grpc-callers@company.com` run inference over gRPC, and nothing else.
const GRPC_ONLY: &str = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: grpc-infer
  namespace: fraud
spec:
  action: ALLOW
  rules:
    - to:
        - operation:
            methods: ["POST"]
            paths: ["/inference.GRPCInferenceService/ModelInfer"]
      when:
        - key: request.auth.claims[email]
          values: ["grpc-caller@company.com"]
    - when:
        - key: request.auth.claims[email]
          values: ["owner@company.com"]
"#;

struct Setup {
    tmp: tempfile::TempDir,
    _policies: tempfile::TempDir,
    app: TestApp,
    client: GrpcInferenceServiceClient<tonic::transport::Channel>,
}

async fn setup(config: ServerConfig) -> Setup {
    let (tmp, store) = store_with_manifest("iris_lr_nozipmap", MANIFEST);
    let policies = tempfile::tempdir().unwrap();
    std::fs::write(policies.path().join("grpc.yaml"), GRPC_ONLY).unwrap();
    let registry = Registry::load(&store).unwrap();
    let app = app_with(
        store.root(),
        registry,
        EngineConfig::default(),
        config,
        Platform::parse(Path::new("platform.yaml"), "{}").unwrap(),
        Some(policies.path().to_owned()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app.router.clone();
    tokio::spawn(palisade_server::serve(listener, router, std::future::pending()));
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    Setup { tmp, _policies: policies, app, client: GrpcInferenceServiceClient::new(channel) }
}

fn with_token<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

fn iris_request(model: &str, rows: usize) -> ModelInferRequest {
    let data: Vec<f32> = [5.1, 3.5, 1.4, 0.2].repeat(rows);
    let x = Tensor::new("X", vec![rows, 4], TensorData::Fp32(data)).unwrap();
    grpc::encode_infer_request(model, None, Some("req-1"), &[x], true)
}

fn records(s: &Setup) -> Vec<AuditRecord> {
    request_records(&s.tmp.path().join("home"))
}

fn token(s: &Setup, email: &str) -> String {
    token_with(s.app.state.security(), "someone", serde_json::json!({"email": email, "email_verified": true}))
}

#[tokio::test]
async fn owners_infer_over_grpc_and_get_what_rest_gives() {
    let mut s = setup(ServerConfig::default()).await;
    let owner = token(&s, "owner@company.com");
    let reply = s
        .client
        .model_infer(with_token(iris_request("example", 2), Some(&owner)))
        .await
        .unwrap()
        .into_inner();
    let parsed = grpc::parse_infer_response(reply).unwrap();
    assert_eq!(parsed.id.as_deref(), Some("req-1"));
    assert_eq!(parsed.model_version, "1");

    let rest = call_as(
        &s.app,
        Some(&owner),
        "POST",
        "/v2/models/example/infer",
        r#"{"inputs":[{"name":"X","shape":[2,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2,5.1,3.5,1.4,0.2]}]}"#,
    )
    .await
    .json();
    let labels = &parsed.outputs[0];
    assert_eq!(labels.name(), rest["outputs"][0]["name"].as_str().unwrap());
    assert_eq!(labels.shape(), [2]);
    let probabilities = &parsed.outputs[1];
    let TensorData::Fp32(values) = probabilities.data() else { panic!("{probabilities:?}") };
    let rest_values: Vec<f32> =
        rest["outputs"][1]["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    assert_eq!(values, &rest_values, "same bits over gRPC and REST");

    let meta = s
        .client
        .model_metadata(with_token(
            ModelMetadataRequest { name: "example".into(), version: String::new() },
            Some(&owner),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.inputs[0].name, "X");
    assert_eq!(meta.inputs[0].shape, [-1, 4]);
    let ready = s
        .client
        .model_ready(with_token(
            ModelReadyRequest { name: "example".into(), version: "1".into() },
            Some(&owner),
        ))
        .await
        .unwrap();
    assert!(ready.into_inner().ready);
    let server = s.client.server_metadata(with_token(ServerMetadataRequest {}, Some(&owner))).await.unwrap();
    assert_eq!(server.into_inner().name, "palisade");
}

#[tokio::test]
async fn no_token_is_unauthenticated_and_health_is_public() {
    let mut s = setup(ServerConfig::default()).await;
    assert!(s.client.server_live(ServerLiveRequest {}).await.unwrap().into_inner().live);
    assert!(s.client.server_ready(ServerReadyRequest {}).await.unwrap().into_inner().ready);
    let err = s.client.model_infer(with_token(iris_request("example", 1), None)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("bearer token"), "{}", err.message());
    let err =
        s.client.server_metadata(with_token(ServerMetadataRequest {}, Some("not-a-jwt"))).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let err = s
        .client
        .model_metadata(with_token(
            ModelMetadataRequest { name: "example".into(), version: String::new() },
            None,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn policies_match_the_grpc_path_and_deny_by_default() {
    let mut s = setup(ServerConfig::default()).await;
    let grpc_caller = token(&s, "grpc-caller@company.com");
    let stranger = token(&s, "mallory@evil.example");
    // The policy names the gRPC path: inference passes.
    s.client.model_infer(with_token(iris_request("example", 1), Some(&grpc_caller))).await.unwrap();
    // ...but not the metadata method, nor the REST path.
    let err = s
        .client
        .model_metadata(with_token(
            ModelMetadataRequest { name: "example".into(), version: String::new() },
            Some(&grpc_caller),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let rest = call_as(&s.app, Some(&grpc_caller), "POST", "/v2/models/example/infer", IRIS_ROW).await;
    assert_eq!(rest.status, 403);
    // Nobody else.
    let err =
        s.client.model_infer(with_token(iris_request("example", 1), Some(&stranger))).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(err.message(), "RBAC: access denied");
    // A denied caller learns nothing from a malformed message: refused before decoding.
    let mut garbage = iris_request("example", 1);
    garbage.raw_input_contents = vec![vec![1, 2, 3]];
    let err = s.client.model_infer(with_token(garbage, Some(&stranger))).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn errors_map_to_grpc_codes() {
    let mut s = setup(ServerConfig { max_body_bytes: 4096, ..ServerConfig::default() }).await;
    let owner = token(&s, "owner@company.com");
    let err = s.client.model_infer(with_token(iris_request("nope", 1), Some(&owner))).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let mut bad = iris_request("example", 1);
    bad.raw_input_contents = vec![vec![1, 2, 3]];
    let err = s.client.model_infer(with_token(bad, Some(&owner))).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let mut wrong_output = iris_request("example", 1);
    wrong_output.outputs.push(grpc::InferRequestedOutputTensor { name: "nope".into(), ..Default::default() });
    let err = s.client.model_infer(with_token(wrong_output, Some(&owner))).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("unknown output"), "{}", err.message());
    // Larger than the body limit: refused by the layer, as RESOURCE_EXHAUSTED.
    let err = s.client.model_infer(with_token(iris_request("example", 400), Some(&owner))).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
}

#[tokio::test]
async fn every_grpc_call_is_audited_with_its_code() {
    let mut s = setup(ServerConfig::default()).await;
    let owner = token(&s, "owner@company.com");
    let stranger = token(&s, "mallory@evil.example");
    s.client.model_infer(with_token(iris_request("example", 1), Some(&owner))).await.unwrap();
    s.client.model_infer(with_token(iris_request("example", 1), Some(&stranger))).await.unwrap_err();
    s.client.model_infer(with_token(iris_request("example", 1), None)).await.unwrap_err();
    s.client.server_live(ServerLiveRequest {}).await.unwrap();
    let records = records(&s);
    let outcomes: Vec<_> = records.iter().map(|r| (r.status, r.grpc_code)).collect();
    assert_eq!(
        outcomes,
        [(Some(200), Some(0)), (Some(403), Some(7)), (Some(401), Some(16))],
        "health unaudited"
    );
    for record in &records {
        assert_eq!(record.path.as_deref(), Some("/inference.GRPCInferenceService/ModelInfer"));
        assert_eq!(record.protocol, Some(palisade_audit::Protocol::V2Grpc));
        assert!(record.request_id.is_some());
    }
    assert_eq!(records[0].model.as_ref().unwrap().name, "example");
    assert_eq!(records[0].email.as_deref(), Some("owner@company.com"));
    assert_eq!(records[1].authz.as_ref().unwrap().decision, palisade_audit::Decision::Deny);
    assert_eq!(records[2].authn.as_ref().unwrap().outcome, palisade_audit::AuthnOutcome::Refused);

    let admin = palisade_server::admin_app(s.app.state.clone());
    let request = axum::http::Request::get("/metrics").body(axum::body::Body::empty()).unwrap();
    let res = tower::ServiceExt::oneshot(admin, request).await.unwrap();
    let body = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
    let text = String::from_utf8(body.to_vec()).unwrap();
    // Refusals travel as HTTP 200 with a gRPC code; metrics count the status they stand for,
    // under the model the message named once it was read (after authentication).
    assert!(text.contains(r#"palisade_requests_total{code="403",model="example"} 1"#), "{text}");
    assert!(text.contains(r#"palisade_requests_total{code="401",model="-"} 1"#), "{text}");
}
