//! A category the model was not trained on is the caller's mistake: scikit-learn's default
//! `OneHotEncoder(handle_unknown="error")`, exported by skl2onnx as `zeros = 0`, refuses a
//! request carrying one with a 400 (gRPC `INVALID_ARGUMENT`) that names the input, the row
//! and the value, never a 500 and never an answer. Known categories in the same model are
//! answered as usual, and the same requests to a batched model give each request its own
//! outcome.
//!
//! The model is `fixtures/models/corpus/column_transformer.onnx` (a `ColumnTransformer`
//! with `OneHotEncoder(handle_unknown="ignore")` over `city`, `plan` and the integer
//! `visits`), rewritten here with `zeros = 0` on its encoders: what `handle_unknown="error"`
//! exports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use palisade_bundle::Store;
use palisade_core::{Tensor, TensorData};
use palisade_protocol::grpc::tonic::{self, Code, Request};
use palisade_protocol::grpc::{self as grpc, GrpcInferenceServiceClient};
use palisade_runtime::EngineConfig;
use palisade_runtime::onnx::pb;
use palisade_runtime::onnxruntime;
use palisade_server::{Platform, Registry, ServerConfig};
use prost::Message;
use serde_json::{Value, json};

const URI: &str = "/v2/models/shop/infer";

/// The corpus's column transformer with `zeros = 0` on every `OneHotEncoder`.
fn strict_model() -> Vec<u8> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/corpus/column_transformer.onnx");
    let mut model = pb::ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap();
    let graph = model.graph.as_mut().unwrap();
    let mut encoders = 0;
    for node in graph.node.iter_mut().filter(|n| n.op_type == "OneHotEncoder") {
        node.attribute.retain(|a| a.name != "zeros");
        node.attribute.push(pb::AttributeProto {
            name: "zeros".into(),
            r#type: 2,
            i: 0,
            ..Default::default()
        });
        encoders += 1;
    }
    assert!(encoders >= 2, "the fixture encodes strings and integers");
    model.encode_to_vec()
}

fn store(runtime: &str, batching: &str) -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    let dir = tmp.path().join("src");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.onnx"), strict_model()).unwrap();
    std::fs::write(
        dir.join("palisade.yaml"),
        format!(
            "name: shop\nversion: \"1\"\nowners: [alice@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\n  runtime: {runtime}\n{batching}"
        ),
    )
    .unwrap();
    let mut staged = store.stage(&dir).unwrap();
    let model = palisade_runtime::prepare(staged.manifest(), &staged.model_path()).unwrap();
    staged.set_signature(model.signature()).unwrap();
    store.commit(staged).unwrap();
    (tmp, store)
}

fn app_for(runtime: &str, batching: &str, threads: usize) -> (tempfile::TempDir, TestApp) {
    let (tmp, store) = store(runtime, batching);
    let registry = Registry::load(&store).unwrap();
    let app = app_with(
        store.root(),
        registry,
        EngineConfig { threads, queue_capacity: 1024, ..EngineConfig::default() },
        ServerConfig::default(),
        Platform::parse(Path::new("platform.yaml"), "").unwrap(),
        None,
    );
    (tmp, app)
}

/// One customer per row: (city, plan, visits).
fn tensors(rows: &[(&str, &str, i64)]) -> Vec<Tensor> {
    let n = rows.len();
    let floats = |start: f32| TensorData::Fp32((0..n).map(|i| start + i as f32).collect());
    vec![
        Tensor::new("age", vec![n, 1], floats(30.0)).unwrap(),
        Tensor::new("income", vec![n, 1], floats(20000.0)).unwrap(),
        Tensor::new("city", vec![n, 1], TensorData::Bytes(rows.iter().map(|r| r.0.into()).collect()))
            .unwrap(),
        Tensor::new("plan", vec![n, 1], TensorData::Bytes(rows.iter().map(|r| r.1.into()).collect()))
            .unwrap(),
        Tensor::new("visits", vec![n, 1], TensorData::Int64(rows.iter().map(|r| r.2).collect())).unwrap(),
    ]
}

fn body(rows: &[(&str, &str, i64)]) -> String {
    let n = rows.len();
    let column = |name: &str, datatype: &str, data: Value| json!({"name": name, "shape": [n, 1], "datatype": datatype, "data": data});
    json!({"inputs": [
        column("age", "FP32", json!((0..n).map(|i| 30.0 + i as f64).collect::<Vec<_>>())),
        column("income", "FP32", json!((0..n).map(|i| 20000.0 + i as f64).collect::<Vec<_>>())),
        column("city", "BYTES", json!(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
        column("plan", "BYTES", json!(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
        column("visits", "INT64", json!(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
    ]})
    .to_string()
}

const KNOWN: [(&str, &str, i64); 2] = [("paris", "pro", 1), ("lyon", "basic", 3)];

#[tokio::test]
async fn an_unknown_category_is_a_400_naming_the_input_the_row_and_the_value() {
    let (_tmp, app) = app_for("tract", "", 2);
    let ok = call(&app, "POST", URI, body(&KNOWN)).await;
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));

    type Rows<'a> = &'a [(&'a str, &'a str, i64)];
    let cases: [(Rows, &str); 3] = [
        (
            &[("paris", "pro", 1), ("atlantis", "basic", 3)],
            "input `city`, row 1: unknown category \"atlantis\"",
        ),
        (&[("paris", "premium", 1)], "input `plan`, row 0: unknown category \"premium\""),
        // `visits` reaches its encoder through a Cast: the caller's name is still used.
        (&[("lyon", "basic", 999)], "input `visits`, row 0: unknown category 999"),
    ];
    for (rows, expected) in cases {
        let reply = call(&app, "POST", URI, body(rows)).await;
        assert_eq!(reply.status, 400, "{}", String::from_utf8_lossy(&reply.body));
        let error = reply.json()["error"].as_str().unwrap().to_owned();
        assert!(error.starts_with(expected), "{error}");
        assert!(error.contains("handle_unknown=\"error\""), "{error}");
        assert!(reply.headers.contains_key("x-request-id"));
    }

    // A long value is quoted cut, not whole.
    let long = "x".repeat(10_000);
    let reply = call(&app, "POST", URI, body(&[(long.as_str(), "pro", 1)])).await;
    assert_eq!(reply.status, 400);
    let error = reply.json()["error"].as_str().unwrap().to_owned();
    assert!(error.len() < 400, "{error}");

    // The refusals did not hurt the model.
    let again = call(&app, "POST", URI, body(&KNOWN)).await;
    assert_eq!((again.status, again.json()["outputs"].clone()), (ok.status, ok.json()["outputs"].clone()));
}

#[tokio::test]
async fn over_grpc_an_unknown_category_is_invalid_argument() {
    let (_tmp, app) = app_for("tract", "", 2);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(palisade_server::serve(listener, app.router.clone(), std::future::pending()));
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    let mut client = GrpcInferenceServiceClient::new(channel);
    let request = |rows: &[(&str, &str, i64)]| {
        let mut request =
            Request::new(grpc::encode_infer_request("shop", None, Some("r"), &tensors(rows), true));
        request.metadata_mut().insert("authorization", format!("Bearer {}", app.token).parse().unwrap());
        request
    };
    client.model_infer(request(&KNOWN)).await.unwrap();
    let err =
        client.model_infer(request(&[("paris", "pro", 1), ("atlantis", "basic", 3)])).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().starts_with("input `city`, row 1: unknown category \"atlantis\""),
        "{}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_requests_each_get_their_own_outcome() {
    let (_alone_tmp, alone) = app_for("tract", "", 1);
    let (_batched_tmp, batched) =
        app_for("tract", "batching: {max_batch_size: 64, max_latency_us: 20000}\n", 1);
    let requests: Vec<Vec<(&str, &str, i64)>> = (0..12)
        .map(|i| match i {
            4 => vec![("nice", "pro", 2), ("atlantis", "pro", 2)],
            9 => vec![("lille", "gold", 5)],
            _ => vec![KNOWN[i % 2], ("nice", "basic", i as i64 % 4)],
        })
        .collect();
    let mut expected = Vec::new();
    for rows in &requests {
        let reply = call(&alone, "POST", URI, body(rows)).await;
        expected.push((reply.status, reply.json()));
    }
    assert_eq!(expected.iter().filter(|(s, _)| *s == 400).count(), 2);
    let tasks: Vec<_> = requests
        .iter()
        .map(|rows| {
            let (app, body) = (batched.clone(), body(rows));
            tokio::spawn(async move { call(&app, "POST", URI, body).await })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let reply = task.await.unwrap();
        let (status, json) = &expected[i];
        assert_eq!(reply.status, *status, "request {i}: {}", String::from_utf8_lossy(&reply.body));
        if *status == 200 {
            assert_eq!(reply.json()["outputs"], json["outputs"], "request {i}");
        } else {
            assert_eq!(reply.json()["error"], json["error"], "request {i}");
        }
    }
}

/// Set to `1` to run without onnxruntime on a machine that lacks it (CI never sets it).
const SKIP_ENV: &str = "PALISADE_SKIP_ONNXRUNTIME_TESTS";

/// Loads the onnxruntime library from `PALISADE_ONNXRUNTIME_LIB` or the repository's test
/// environments; `false` only when it is missing and [`SKIP_ENV`] is `1`.
fn with_onnxruntime() -> bool {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = onnxruntime::library_path().or_else(|| {
        ["e2e", "fixtures"]
            .iter()
            .find_map(|venv| onnxruntime::find_in_environment(&repo.join(".venv").join(venv)))
    });
    match path {
        Some(path) => {
            onnxruntime::load(&path).unwrap();
            true
        }
        None if std::env::var(SKIP_ENV).is_ok_and(|v| v == "1") => false,
        None => panic!("onnxruntime is needed: run scripts/install-test-deps.sh or set {SKIP_ENV}=1"),
    }
}

#[tokio::test]
async fn on_onnxruntime_an_unknown_category_is_a_400_too() {
    if !with_onnxruntime() {
        return;
    }
    let (_tmp, app) = app_for("onnxruntime", "", 2);
    let ok = call(&app, "POST", URI, body(&KNOWN)).await;
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    let reply = call(&app, "POST", URI, body(&[("paris", "pro", 1), ("atlantis", "basic", 3)])).await;
    assert_eq!(reply.status, 400, "{}", String::from_utf8_lossy(&reply.body));
    let error = reply.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("handle_unknown=\"error\""), "{error}");
}
