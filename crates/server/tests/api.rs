//! The data-plane router, called in-process (`tower::ServiceExt::oneshot`), with real bundles
//! built from the ONNX fixtures and the real inference engine.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use palisade_bundle::BundleDigest;
use palisade_core::{DataType, Dim, ModelRef, ModelSignature, Tensor, TensorSpec};
use palisade_runtime::{EngineConfig, Model, RuntimeError};
use palisade_server::{Registry, ServedModel, ServerConfig};
use proptest::prelude::*;
use serde_json::{Value, json};

mod common;

use common::*;

fn iris_app() -> (tempfile::TempDir, TestApp) {
    let (tmp, store) =
        store_with(&[("iris_lr_nozipmap", "iris", "1.0.0"), ("iris_mlp_nozipmap", "iris", "2.0.0")]);
    let registry = Registry::load(&store).unwrap();
    let app = app(store.root(), registry, EngineConfig::default(), ServerConfig::default());
    (tmp, app)
}

#[tokio::test]
async fn health_metadata_and_versions() {
    let (_tmp, app) = iris_app();
    assert_eq!(call(&app, "GET", "/v2/health/live", "").await.status, StatusCode::OK);
    assert_eq!(call(&app, "GET", "/v2/health/ready", "").await.status, StatusCode::OK);
    let server = call(&app, "GET", "/v2", "").await.json();
    assert_eq!(server["name"], "palisade");

    let meta = call(&app, "GET", "/v2/models/iris", "").await;
    assert_eq!(meta.status, StatusCode::OK);
    let meta = meta.json();
    assert_eq!(meta["name"], "iris");
    assert_eq!(meta["versions"], json!(["1.0.0", "2.0.0"]));
    assert_eq!(meta["platform"], "onnx");
    assert_eq!(meta["inputs"], json!([{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]));
    let v1 = call(&app, "GET", "/v2/models/iris/versions/1.0.0", "").await.json();
    assert_eq!(v1["outputs"][1]["parameters"]["labels"], json!(["0", "1", "2"]), "LinearClassifier labels");
    assert!(meta["parameters"]["bundle_digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(meta["parameters"]["engine"], "tract");

    assert_eq!(call(&app, "GET", "/v2/models/iris/ready", "").await.status, StatusCode::OK);
    assert_eq!(call(&app, "GET", "/v2/models/iris/versions/1.0.0", "").await.json()["name"], "iris");
    assert_eq!(call(&app, "GET", "/v2/models/iris/versions/1.0.0/ready", "").await.status, StatusCode::OK);

    for uri in [
        "/v2/models/nope",
        "/v2/models/nope/ready",
        "/v2/models/iris/versions/9/ready",
        "/v2/models/iris/versions/9",
        "/nowhere",
    ] {
        let reply = call(&app, "GET", uri, "").await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{uri}");
        assert!(reply.json()["error"].is_string(), "{uri}");
    }
}

#[tokio::test]
async fn infer_returns_outputs_with_request_id() {
    let (_tmp, app) = iris_app();
    let reply = call(&app, "POST", "/v2/models/iris/infer", IRIS_ROW).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", String::from_utf8_lossy(&reply.body));
    assert!(reply.headers.get("x-request-id").is_some());
    let body = reply.json();
    assert_eq!(body["model_name"], "iris");
    assert_eq!(body["model_version"], "2.0.0", "latest is the newest build");
    assert_eq!(body["outputs"][0]["name"], "label");
    assert_eq!(body["outputs"][0]["data"], json!([0]));
    let p: Vec<f64> = serde_json::from_value(body["outputs"][1]["data"].clone()).unwrap();
    assert_eq!(p.len(), 3);
    assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-5);

    let reply = call(&app, "POST", "/v2/models/iris/versions/1.0.0/infer", IRIS_ROW).await;
    assert_eq!(reply.json()["model_version"], "1.0.0");
}

#[tokio::test]
async fn infer_options_nested_data_id_and_output_selection() {
    let (_tmp, app) = iris_app();
    let body = json!({
        "id": "req-42",
        "inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}],
        "outputs": [{"name": "label"}],
    });
    let reply = call(&app, "POST", "/v2/models/iris/infer", body.to_string()).await;
    let body = reply.json();
    assert_eq!(body["id"], "req-42");
    assert_eq!(body["outputs"].as_array().unwrap().len(), 1);
    assert_eq!(body["outputs"][0]["data"], json!([0, 2]));
}

#[tokio::test]
async fn binary_tensor_extension_round_trip() {
    let (_tmp, app) = iris_app();
    let header = r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}],"outputs":[{"name":"probabilities","parameters":{"binary_data":true}}]}"#;
    let mut body = header.as_bytes().to_vec();
    for v in [5.1f32, 3.5, 1.4, 0.2] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    let req = Request::post("/v2/models/iris/infer")
        .header("Inference-Header-Content-Length", header.len())
        .header("authorization", format!("Bearer {}", app.token))
        .body(Body::from(body))
        .unwrap();
    let res = send(&app, req).await;
    assert_eq!(res.status, StatusCode::OK);
    let json_len: usize = res.headers["inference-header-content-length"].to_str().unwrap().parse().unwrap();
    let bytes = res.body;
    let head: Value = serde_json::from_slice(&bytes[..json_len]).unwrap();
    assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 12);
    let probs: Vec<f32> =
        bytes[json_len..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert!(probs[0] > 0.9, "{probs:?}");
}

#[tokio::test]
async fn bad_inputs_are_400_with_a_reason() {
    let (_tmp, app) = iris_app();
    let nan_header =
        r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}]}"#;
    let mut nan_body = nan_header.as_bytes().to_vec();
    for v in [5.1f32, f32::NAN, 1.4, 0.2] {
        nan_body.extend_from_slice(&v.to_le_bytes());
    }
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), "must be a JSON object"),
        ("{\"inputs\": [".into(), "invalid JSON"),
        (IRIS_ROW.replace("FP32", "FP64"), "datatype FP64 does not match the model's FP32"),
        (IRIS_ROW.replace("[1,4]", "[1,3]"), "holds 3 elements but 4 were given"),
        (IRIS_ROW.replace("[1,4]", "[4]"), "shape [4] does not match the model's [-1, 4]"),
        (IRIS_ROW.replace("\"X\"", "\"Y\""), "unknown input `Y`"),
        (IRIS_ROW.replace("5.1", "\"5.1\""), "expected a number"),
        (IRIS_ROW.replace("FP32", "FLOAT"), "unknown datatype"),
        (IRIS_ROW.replace("]}]}", "]}],\"outputs\":[{\"name\":\"nope\"}]}"), "unknown output `nope`"),
        (r#"{"inputs":[]}"#.into(), "`inputs` is empty"),
    ];
    for (body, needle) in cases {
        let reply = call(&app, "POST", "/v2/models/iris/infer", body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        let error = reply.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(needle), "{body}: {error}");
    }
    let req = Request::post("/v2/models/iris/infer")
        .header("Inference-Header-Content-Length", nan_header.len())
        .header("authorization", format!("Bearer {}", app.token))
        .body(Body::from(nan_body))
        .unwrap();
    let res = send(&app, req).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    let body = res.body;
    assert!(String::from_utf8_lossy(&body).contains("NaN"), "{body:?}");
}

#[tokio::test]
async fn unknown_model_or_version_is_404() {
    let (_tmp, app) = iris_app();
    let reply = call(&app, "POST", "/v2/models/nope/infer", IRIS_ROW).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.json()["error"], "model `nope` not found");
    let reply = call(&app, "POST", "/v2/models/iris/versions/3.0.0/infer", IRIS_ROW).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.json()["error"].as_str().unwrap().contains("available: 1.0.0, 2.0.0"));
}

#[tokio::test]
async fn oversized_body_is_413() {
    let (_tmp, store) = store_with(&[("iris_lr_nozipmap", "iris", "1.0.0")]);
    let config = ServerConfig { max_body_bytes: 64, ..ServerConfig::default() };
    let app = app(store.root(), Registry::load(&store).unwrap(), EngineConfig::default(), config);
    let reply = call(&app, "POST", "/v2/models/iris/infer", IRIS_ROW).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(reply.json()["error"].as_str().unwrap().contains("limit of 64 bytes"));
    // Without a Content-Length the limit still holds while streaming.
    let stream = futures_body(IRIS_ROW.as_bytes().to_vec());
    let reply = call(&app, "POST", "/v2/models/iris/infer", stream).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
}

fn futures_body(bytes: Vec<u8>) -> Body {
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> =
        bytes.chunks(16).map(|c| Ok(bytes::Bytes::copy_from_slice(c))).collect();
    Body::from_stream(futures_util::stream::iter(chunks))
}

/// Holds every run until the test opens the gate.
struct Gated {
    signature: ModelSignature,
    gate: Mutex<()>,
    runs: AtomicUsize,
}

impl Model for Gated {
    fn signature(&self) -> &ModelSignature {
        &self.signature
    }
    fn platform(&self) -> &'static str {
        "test"
    }
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RuntimeError> {
        let _open = self.gate.lock().map_err(|_| RuntimeError::Execution("poisoned".into()))?;
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok(inputs.into_iter().map(|t| t.with_name("Y")).collect())
    }
}

fn gated_registry(model: Arc<Gated>) -> Registry {
    let owner = palisade_core::Owner::parse("alice@example.com").unwrap();
    let id = ModelRef {
        namespace: "default".parse().unwrap(),
        name: "slow".parse().unwrap(),
        version: "1".parse().unwrap(),
    };
    let target = Arc::new(palisade_policy::TargetModel {
        namespace: id.namespace.clone(),
        name: id.name.clone(),
        labels: Default::default(),
        owners: vec![owner.clone()],
    });
    let mut registry = Registry::default();
    registry.insert(
        ServedModel {
            names: palisade_server::ModelNames::of(&id, &BundleDigest::from_bytes([7; 32])),
            id,
            digest: BundleDigest::from_bytes([7; 32]),
            description: None,
            labels: Default::default(),
            owners: palisade_bundle::manifest::Owners::new(vec![owner]).unwrap(),
            model: palisade_server::Servable::Model(palisade_runtime::Runnable::InProcess(model)),
            target,
            audit: Default::default(),
            batching: None,
            explainer: None,
            rate: None,
            monitor: None,
        },
        true,
    );
    registry
}

fn gated() -> Arc<Gated> {
    let spec = |name: &str| TensorSpec {
        name: name.into(),
        datatype: DataType::Fp32,
        shape: vec![Dim::Dynamic],
        allow_nan: false,
        labels: None,
    };
    Arc::new(Gated {
        signature: ModelSignature { inputs: vec![spec("X")], outputs: vec![spec("Y")] },
        gate: Mutex::new(()),
        runs: AtomicUsize::new(0),
    })
}

const SLOW_BODY: &str = r#"{"inputs":[{"name":"X","shape":[1],"datatype":"FP32","data":[1]}]}"#;

// The gate is a std mutex on purpose: it blocks the inference thread, not the test task.
#[allow(clippy::await_holding_lock)]
#[tokio::test]
async fn full_queue_is_429_and_recovers() {
    let model = gated();
    let home = tempfile::tempdir().unwrap();
    let app = app(
        home.path(),
        gated_registry(model.clone()),
        EngineConfig { threads: 1, queue_capacity: 1, inline_below: Duration::ZERO },
        ServerConfig::default(),
    );
    let held = model.gate.lock().unwrap();
    let first = tokio::spawn({
        let app = app.clone();
        async move { call(&app, "POST", "/v2/models/slow/infer", SLOW_BODY).await.status }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = tokio::spawn({
        let app = app.clone();
        async move { call(&app, "POST", "/v2/models/slow/infer", SLOW_BODY).await.status }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = call(&app, "POST", "/v2/models/slow/infer", SLOW_BODY).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers[header::RETRY_AFTER], "1");
    assert!(refused.json()["error"].as_str().unwrap().contains("overloaded"));
    drop(held);
    assert_eq!(first.await.unwrap(), StatusCode::OK);
    assert_eq!(second.await.unwrap(), StatusCode::OK);
    assert_eq!(call(&app, "POST", "/v2/models/slow/infer", SLOW_BODY).await.status, StatusCode::OK);
}

#[allow(clippy::await_holding_lock)]
#[tokio::test]
async fn slow_inference_times_out_with_504() {
    let model = gated();
    let config = ServerConfig { inference_timeout: Duration::from_millis(200), ..ServerConfig::default() };
    let home = tempfile::tempdir().unwrap();
    let app = app(
        home.path(),
        gated_registry(model.clone()),
        EngineConfig { threads: 1, queue_capacity: 4, inline_below: Duration::ZERO },
        config,
    );
    let held = model.gate.lock().unwrap();
    let reply = call(&app, "POST", "/v2/models/slow/infer", SLOW_BODY).await;
    drop(held);
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(reply.json()["error"].is_string());
}

#[tokio::test]
async fn seldon_protocol() {
    let (_tmp, store) = store_with(&[("iris_lr_nozipmap", "iris", "1.0.0")]);
    let app =
        app(store.root(), Registry::load(&store).unwrap(), EngineConfig::default(), ServerConfig::default());
    let reply =
        call(&app, "POST", "/api/v1.0/predictions", r#"{"data":{"ndarray":[[5.1,3.5,1.4,0.2]]}}"#).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", String::from_utf8_lossy(&reply.body));
    let body = reply.json();
    assert_eq!(body["data"]["names"], json!(["0", "1", "2"]));
    assert!(body["data"]["ndarray"][0][0].as_f64().unwrap() > 0.9);
    assert_eq!(body["meta"]["requestPath"]["iris"], "1.0.0");

    let reply = call(
        &app,
        "POST",
        "/seldon/default/iris/api/v1.0/predictions",
        r#"{"data":{"tensor":{"shape":[1,4],"values":[5.1,3.5,1.4,0.2]}}}"#,
    )
    .await;
    assert_eq!(reply.json()["data"]["tensor"]["shape"], json!([1, 3]));

    let reply = call(&app, "POST", "/seldon/other/iris/api/v1.0/predictions", "{}").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = call(&app, "POST", "/api/v1.0/predictions", r#"{"data":{"ndarray":[[1,2]]}}"#).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["status"]["status"], "FAILURE");
    assert_eq!(reply.json()["status"]["reason"], "MICROSERVICE_BAD_DATA");
}

#[tokio::test]
async fn seldon_needs_a_model_name_when_several_are_served() {
    let (_tmp, store) =
        store_with(&[("iris_lr_nozipmap", "iris", "1.0.0"), ("iris_mlp_nozipmap", "mlp", "1")]);
    let app =
        app(store.root(), Registry::load(&store).unwrap(), EngineConfig::default(), ServerConfig::default());
    let reply =
        call(&app, "POST", "/api/v1.0/predictions", r#"{"data":{"ndarray":[[5.1,3.5,1.4,0.2]]}}"#).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.json()["status"]["info"].as_str().unwrap().contains("/seldon/{namespace}/{model}"));
    let reply = call(
        &app,
        "POST",
        "/seldon/default/mlp/api/v1.0/predictions",
        r#"{"data":{"ndarray":[[5.1,3.5,1.4,0.2]]}}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
}

/// The OpenAPI document describes each model, and its example requests really work.
#[tokio::test]
async fn openapi_examples_run() {
    let (_tmp, app) = iris_app();
    let doc = call(&app, "GET", "/openapi.json", "").await.json();
    assert_eq!(doc["openapi"], "3.0.3");
    let infer = &doc["paths"]["/v2/models/iris/infer"]["post"];
    let request_schema =
        infer["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str().unwrap();
    assert_eq!(request_schema, "#/components/schemas/iris.InferenceRequest");
    let input = &doc["components"]["schemas"]["iris.input.X"]["properties"];
    assert_eq!(input["datatype"]["enum"], json!(["FP32"]));
    assert_eq!(input["name"]["enum"], json!(["X"]));
    let example = infer["requestBody"]["content"]["application/json"]["example"].clone();
    let reply = call(&app, "POST", "/v2/models/iris/infer", example.to_string()).await;
    assert_eq!(reply.status, StatusCode::OK);
    let versioned = &doc["paths"]["/v2/models/iris/versions/{version}/infer"]["post"];
    assert_eq!(versioned["parameters"][0]["schema"]["enum"], json!(["1.0.0", "2.0.0"]));
    let seldon = &doc["paths"]["/seldon/default/iris/api/v1.0/predictions"]["post"];
    let example = seldon["requestBody"]["content"]["application/json"]["example"].clone();
    // /api/v1.0/predictions needs a single model; the namespaced path is what the doc lists.
    let reply = call(&app, "POST", "/seldon/default/iris/api/v1.0/predictions", example.to_string()).await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = call(&app, "POST", "/seldon/iris/api/v1.0/predictions", example.to_string()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(doc["paths"]["/seldon/iris/api/v1.0/predictions"]["post"].is_object());
    let v1 = &doc["paths"]["/v1/models/iris:predict"]["post"];
    let example = v1["requestBody"]["content"]["application/json"]["example"].clone();
    let reply = call(&app, "POST", "/v1/models/iris:predict", example.to_string()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.json()["predictions"].as_array().unwrap().len(), 1);
    assert!(doc["paths"]["/v1/models/iris"]["get"].is_object());
    let properties = &doc["components"]["schemas"]["iris.InferenceRequest"]["properties"];
    assert_eq!(properties["model_name"]["enum"], json!(["iris", null]));
    assert_eq!(properties["model_version"]["enum"], json!(["1.0.0", "2.0.0", "", null]));
}

#[tokio::test]
async fn swagger_ui_is_served_from_embedded_assets() {
    let (_tmp, app) = iris_app();
    let reply = call(&app, "GET", "/docs", "").await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(reply.headers[header::LOCATION], "/docs/");
    let index = call(&app, "GET", "/docs/", "").await;
    assert_eq!(index.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&index.body).contains("swagger-ui"));
    let init = call(&app, "GET", "/docs/swagger-initializer.js", "").await;
    assert!(String::from_utf8_lossy(&init.body).contains("/openapi.json"));
    let bundle = call(&app, "GET", "/docs/swagger-ui-bundle.js", "").await;
    assert_eq!(bundle.status, StatusCode::OK);
    assert!(bundle.body.len() > 100_000);
    assert_eq!(call(&app, "GET", "/docs/nope.js", "").await.status, StatusCode::NOT_FOUND);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Whatever the body, the answer is a clean 4xx or a 200: never a 500, never a panic.
    #[test]
    fn arbitrary_bodies_never_cause_server_errors(body in prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        "\\{\"inputs\":\\[\\{\"name\":\"X\",\"shape\":\\[[0-9,-]{0,12}\\],\"datatype\":\"(FP32|INT8|BOOL|BYTES|FP16)\",\"data\":\\[[0-9a-z.,\\[\\]\"-]{0,40}\\]\\}\\]\\}".prop_map(String::into_bytes),
    ]) {
        let (_tmp, store) = store_with(&[("iris_lr_nozipmap", "iris", "1.0.0")]);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let app = app(store.root(), Registry::load(&store).unwrap(), EngineConfig { threads: 1, queue_capacity: 8, ..EngineConfig::default() }, ServerConfig::default());
        for uri in ["/v2/models/iris/infer", "/api/v1.0/predictions"] {
            let reply = runtime.block_on(call(&app, "POST", uri, body.clone()));
            prop_assert!(reply.status.is_success() || reply.status.is_client_error(), "{} for {:?}", reply.status, String::from_utf8_lossy(&body));
        }
    }
}
