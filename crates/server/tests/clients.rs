//! The routes third-party clients call (issue 23), in-process, through every layer: V2 REST
//! as KServe's SDK sends it (`model_name` in the body, JSON health answers), KServe V1
//! (`/v1/models/...`), Seldon Core v1 without a namespace and over gRPC. For each: anonymous
//! callers get 401, callers the policies refuse 403, unknown models 404 only after
//! authentication, every spelling of a path reaches the same model, and each request that
//! reaches a route leaves exactly one audit record naming the model the route chose.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use http_body_util::BodyExt;
use palisade_audit::{AuditRecord, Decision};
use palisade_protocol::grpc::prost::Message;
use palisade_protocol::seldon::grpc::protos::{
    DefaultData, SeldonMessage, Tensor, default_data, seldon_message,
};
use palisade_runtime::EngineConfig;
use palisade_server::{Platform, Registry, ServerConfig};
use serde_json::{Value, json};
use tower::ServiceExt;

const IRIS_1: &str = "name: iris\nversion: \"1.0.0\"\nowners: [alice@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\n";
const IRIS_2: &str = "name: iris\nversion: \"2.0.0+build.1\"\nowners: [alice@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\n";
const SECRET: &str = "name: secret\nversion: \"1\"\nnamespace: team\nowners: [bob@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\n";
const V1_ROWS: &str = r#"{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}"#;
const SELDON_ROW: &str = r#"{"data": {"ndarray": [[5.1, 3.5, 1.4, 0.2]]}}"#;

struct Setup {
    tmp: tempfile::TempDir,
    app: TestApp,
    alice: String,
    bob: String,
}

fn setup() -> Setup {
    let (tmp, store) = store_with_manifests("iris_lr_nozipmap", &[IRIS_1, IRIS_2, SECRET]);
    let app = app_with(
        store.root(),
        Registry::load(&store).unwrap(),
        EngineConfig::default(),
        ServerConfig::default(),
        Platform::parse(Path::new("platform.yaml"), "{}").unwrap(),
        None,
    );
    let security = app.state.security().clone();
    let alice = token_with(&security, "alice", json!({"email": "alice@example.com"}));
    let bob = token_with(&security, "bob", json!({"email": "bob@example.com"}));
    Setup { tmp, app, alice, bob }
}

fn records(s: &Setup) -> Vec<AuditRecord> {
    request_records(&s.tmp.path().join("home"))
}

/// The one record of a request (by its `x-request-id`).
fn record_of(s: &Setup, request_id: &str) -> AuditRecord {
    let mut matching: Vec<AuditRecord> =
        records(s).into_iter().filter(|r| r.request_id.as_deref() == Some(request_id)).collect();
    assert_eq!(matching.len(), 1, "records for request {request_id}: {matching:?}");
    matching.remove(0)
}

fn id(reply: &Reply) -> String {
    reply.headers["x-request-id"].to_str().unwrap().to_owned()
}

fn assert_json(reply: &Reply) -> Value {
    assert_eq!(
        reply.headers[header::CONTENT_TYPE],
        "application/json",
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()
}

/// The refusals every model route gives, in its protocol's error body (`error` reads the
/// message from it), each audited once against the model the route named.
async fn refusals(
    s: &Setup,
    method: &str,
    own: &str,
    unknown: &str,
    body: &str,
    error: fn(&Value) -> String,
) {
    let anonymous = call_as(&s.app, None, method, own, body.to_owned()).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{own}");
    assert!(error(&assert_json(&anonymous)).contains("authentication required"), "{own}");
    let record = record_of(s, &id(&anonymous));
    assert_eq!(record.status, Some(401));

    let bob = call_as(&s.app, Some(&s.bob), method, own, body.to_owned()).await;
    assert_eq!(bob.status, StatusCode::FORBIDDEN, "{own}");
    assert_eq!(error(&assert_json(&bob)), "RBAC: access denied", "{own}");
    let record = record_of(s, &id(&bob));
    assert_eq!(record.model.as_ref().unwrap().name, "iris", "{own}");
    assert_eq!(record.authz.unwrap().decision, Decision::Deny, "{own}");

    let nobody = call_as(&s.app, None, method, unknown, body.to_owned()).await;
    assert_eq!(
        nobody.status,
        StatusCode::UNAUTHORIZED,
        "{unknown}: no existence revealed before authentication"
    );
    let missing = call_as(&s.app, Some(&s.alice), method, unknown, body.to_owned()).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{unknown}");
    assert!(error(&assert_json(&missing)).contains("not found"), "{unknown}");
    assert_eq!(record_of(s, &id(&missing)).status, Some(404));
}

fn v2_error(body: &Value) -> String {
    body["error"].as_str().unwrap_or_default().to_owned()
}

fn seldon_error(body: &Value) -> String {
    assert_eq!(body["status"]["status"], "FAILURE", "{body}");
    assert!(body["status"]["code"].is_u64(), "{body}");
    body["status"]["info"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn v2_bodies_may_name_the_routes_model_and_no_other() {
    let s = setup();
    let row = |extra: &str| {
        format!(
            r#"{{{extra}"inputs":[{{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}}]}}"#
        )
    };
    for (uri, extra) in [
        ("/v2/models/iris/infer", r#""model_name":"iris","#),
        ("/v2/models/iris/infer", r#""model_name":"iris","model_version":"2.0.0+build.1","#),
        ("/v2/models/iris/versions/1.0.0/infer", r#""model_name":"iris","model_version":"1.0.0","#),
        ("/v2/models/iris/versions/1.0.0/infer", r#""model_version":"","#),
    ] {
        let reply = call_as(&s.app, Some(&s.alice), "POST", uri, row(extra)).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri} {extra}: {}", String::from_utf8_lossy(&reply.body));
    }
    // A body that names another model is refused, naming both, and the record names the
    // model the route chose: alice's `iris`, never bob's `secret`.
    let reply =
        call_as(&s.app, Some(&s.alice), "POST", "/v2/models/iris/infer", row(r#""model_name":"secret","#))
            .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let message = v2_error(&assert_json(&reply));
    assert!(message.contains("`secret`") && message.contains("`iris`"), "{message}");
    let record = record_of(&s, &id(&reply));
    assert_eq!(record.model.as_ref().unwrap().name, "iris");
    assert_eq!(record.status, Some(400));
    // Bob, who owns `secret`, cannot reach it through alice's route either: the route's
    // model decides, so he is refused before the body is read.
    let reply =
        call_as(&s.app, Some(&s.bob), "POST", "/v2/models/iris/infer", row(r#""model_name":"secret","#))
            .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(record_of(&s, &id(&reply)).model.unwrap().name, "iris");
    // The version too: the latest route serves 2.0.0+build.1.
    let reply =
        call_as(&s.app, Some(&s.alice), "POST", "/v2/models/iris/infer", row(r#""model_version":"1.0.0","#))
            .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let message = v2_error(&reply.json());
    assert!(message.contains("`1.0.0`") && message.contains("2.0.0+build.1"), "{message}");
    // Other unknown fields stay refused.
    let reply =
        call_as(&s.app, Some(&s.alice), "POST", "/v2/models/iris/infer", row(r#""model":"iris","#)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn v2_health_answers_json_and_errors_are_json() {
    let s = setup();
    let live = call_as(&s.app, None, "GET", "/v2/health/live", "").await;
    assert_eq!((live.status, assert_json(&live)), (StatusCode::OK, json!({"live": true})));
    let ready = call_as(&s.app, None, "GET", "/v2/health/ready", "").await;
    assert_eq!((ready.status, assert_json(&ready)), (StatusCode::OK, json!({"ready": true})));
    let alive = call_as(&s.app, None, "GET", "/", "").await;
    assert_eq!((alive.status, assert_json(&alive)), (StatusCode::OK, json!({"status": "alive"})));
    refusals(&s, "POST", "/v2/models/iris/infer", "/v2/models/nothere/infer", IRIS_ROW, v2_error).await;
    s.app.state.set_draining();
    let ready = call_as(&s.app, None, "GET", "/v2/health/ready", "").await;
    assert_eq!(
        (ready.status, assert_json(&ready)),
        (StatusCode::SERVICE_UNAVAILABLE, json!({"ready": false}))
    );
    // Probes stay unaudited.
    assert!(
        records(&s)
            .iter()
            .all(|r| r.path.as_deref() != Some("/v2/health/ready") && r.path.as_deref() != Some("/"))
    );
}

#[tokio::test]
async fn kserve_v1_predicts_through_every_layer() {
    let s = setup();
    let ready = call_as(&s.app, Some(&s.alice), "GET", "/v1/models/iris", "").await;
    assert_eq!((ready.status, assert_json(&ready)), (StatusCode::OK, json!({"name": "iris", "ready": true})));

    let v2 = call_as(
        &s.app,
        Some(&s.alice),
        "POST",
        "/v2/models/iris/infer",
        r#"{"inputs":[{"name":"X","shape":[2,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2,6.7,3.0,5.2,2.3]}]}"#,
    )
    .await
    .json();
    // Each output's rows, by name, as V2 answers them (flat data, two rows).
    let rows_of = |output: &Value| -> Vec<Value> {
        let data = output["data"].as_array().unwrap().clone();
        let width = data.len() / 2;
        if output["shape"].as_array().unwrap().len() == 1 {
            data
        } else {
            data.chunks(width).map(|row| Value::Array(row.to_vec())).collect()
        }
    };
    let expected: Vec<(String, Vec<Value>)> = v2["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["name"].as_str().unwrap().to_owned(), rows_of(o)))
        .collect();
    assert_eq!(expected.len(), 2);
    // Every spelling of the path, and each request form, gives the same predictions from the
    // same model, recorded once.
    for (uri, body) in [
        ("/v1/models/iris:predict", V1_ROWS),
        ("/v1/models/iris%3Apredict", V1_ROWS),
        ("/v1/models/iris%3apredict", V1_ROWS),
        ("/v1/models/%69ris:predict", V1_ROWS),
        ("//v1/./models/x/../iris:predict", V1_ROWS),
        ("/v2/health/%2e%2e/%2e%2e/v1/models/iris:predict", V1_ROWS),
        (
            "/v1/models/iris:predict",
            r#"{"instances": [{"X": [5.1, 3.5, 1.4, 0.2]}, {"X": [6.7, 3.0, 5.2, 2.3]}]}"#,
        ),
        ("/v1/models/iris:predict", r#"{"inputs": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}"#),
        ("/v1/models/iris:predict", r#"{"inputs": {"X": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}}"#),
    ] {
        let reply = call_as(&s.app, Some(&s.alice), "POST", uri, body).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}: {}", String::from_utf8_lossy(&reply.body));
        let predictions = assert_json(&reply)["predictions"].clone();
        assert_eq!(predictions.as_array().unwrap().len(), 2, "{uri}");
        for (row, prediction) in predictions.as_array().unwrap().iter().enumerate() {
            for (name, rows) in &expected {
                assert_eq!(prediction[name.as_str()], rows[row], "{uri}: {prediction}");
            }
        }
        let record = record_of(&s, &id(&reply));
        assert_eq!(record.model.as_ref().unwrap().name, "iris", "{uri}");
        assert_eq!(record.path.as_deref(), Some("/v1/models/iris:predict"), "{uri}");
    }
    refusals(&s, "POST", "/v1/models/iris:predict", "/v1/models/nothere:predict", V1_ROWS, v2_error).await;
    refusals(&s, "GET", "/v1/models/iris", "/v1/models/nothere", "", v2_error).await;
    // Bob's model, in its namespace, for bob; `%253A` is no verb.
    let bobs = call_as(&s.app, Some(&s.bob), "POST", "/v1/models/secret:predict", V1_ROWS).await;
    assert_eq!(bobs.status, StatusCode::OK);
    let escaped = call_as(&s.app, Some(&s.alice), "POST", "/v1/models/iris%253Apredict", V1_ROWS).await;
    assert_eq!(escaped.status, StatusCode::METHOD_NOT_ALLOWED);
    // Explanations: authenticated and authorized like predictions, then 501.
    refusals(&s, "POST", "/v1/models/iris:explain", "/v1/models/nothere:explain", V1_ROWS, v2_error).await;
    let explain = call_as(&s.app, Some(&s.alice), "POST", "/v1/models/iris:explain", V1_ROWS).await;
    assert_eq!(explain.status, StatusCode::NOT_IMPLEMENTED);
    assert!(v2_error(&assert_json(&explain)).contains("has no explainer"));
    // Malformed bodies: 400 with the reason.
    let bad =
        call_as(&s.app, Some(&s.alice), "POST", "/v1/models/iris:predict", r#"{"instances": [[1, 2]]}"#)
            .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(&bad.body));
    let bad = call_as(&s.app, Some(&s.alice), "POST", "/v1/models/iris:predict", r#"{"rows": []}"#).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn seldon_without_a_namespace_is_the_default_namespace() {
    let s = setup();
    let reply =
        call_as(&s.app, Some(&s.alice), "POST", "/seldon/iris/api/v1.0/predictions", SELDON_ROW).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", String::from_utf8_lossy(&reply.body));
    let body = reply.json();
    assert_eq!(body["meta"]["requestPath"]["iris"], "2.0.0+build.1");
    assert_eq!(record_of(&s, &id(&reply)).model.unwrap().name, "iris");
    refusals(
        &s,
        "POST",
        "/seldon/iris/api/v1.0/predictions",
        "/seldon/nothere/api/v1.0/predictions",
        SELDON_ROW,
        seldon_error,
    )
    .await;
    refusals(
        &s,
        "POST",
        "/seldon/default/iris/api/v1.0/predictions",
        "/seldon/team/iris/api/v1.0/predictions",
        SELDON_ROW,
        seldon_error,
    )
    .await;
    // `secret` lives in `team`, not in `default`.
    let reply =
        call_as(&s.app, Some(&s.bob), "POST", "/seldon/secret/api/v1.0/predictions", SELDON_ROW).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(seldon_error(&reply.json()).contains("namespace `default`"));
    let reply =
        call_as(&s.app, Some(&s.bob), "POST", "/seldon/team/secret/api/v1.0/predictions", SELDON_ROW).await;
    assert_eq!(reply.status, StatusCode::OK);
}

/// A Seldon gRPC call sent in-process: the method, the message, a token, metadata. Returns
/// the gRPC code, message, the decoded answer (on success) and the request id.
async fn seldon_call(
    s: &Setup,
    rpc: &str,
    message: &[u8],
    token: Option<&str>,
    metadata: &[(&str, &str)],
) -> (i32, String, Option<SeldonMessage>, String) {
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(message);
    let mut req = Request::builder()
        .method("POST")
        .uri(format!("/seldon.protos.Seldon/{rpc}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    for (name, value) in metadata {
        req = req.header(*name, *value);
    }
    let res = s.app.router.clone().oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let headers = res.headers().clone();
    let collected = res.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let bytes = collected.to_bytes();
    let code =
        |map: &axum::http::HeaderMap| map.get("grpc-status").and_then(|v| v.to_str().ok()?.parse().ok());
    let status = code(&headers).or_else(|| code(&trailers)).expect("a gRPC status");
    let text = headers
        .get("grpc-message")
        .or(trailers.get("grpc-message"))
        .map(|v| percent_decode(v.to_str().unwrap()))
        .unwrap_or_default();
    let answer = (bytes.len() > 5).then(|| SeldonMessage::decode(&bytes[5..]).unwrap());
    (status, text, answer, request_id)
}

/// `grpc-message` is percent-encoded.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(value)) => {
                out.push(value);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

fn seldon_message() -> Vec<u8> {
    SeldonMessage {
        data_oneof: Some(seldon_message::DataOneof::Data(DefaultData {
            names: vec![],
            data_oneof: Some(default_data::DataOneof::Tensor(Tensor {
                shape: vec![1, 4],
                values: vec![5.1, 3.5, 1.4, 0.2],
            })),
        })),
        ..SeldonMessage::default()
    }
    .encode_to_vec()
}

#[tokio::test]
async fn seldon_grpc_names_the_model_in_metadata_read_once_by_the_context() {
    let s = setup();
    let message = seldon_message();
    let iris = [("seldon", "iris")];
    for metadata in [&iris[..], &[("seldon", "iris"), ("namespace", "default")]] {
        let (code, text, answer, request_id) =
            seldon_call(&s, "Predict", &message, Some(&s.alice), metadata).await;
        assert_eq!(code, 0, "{metadata:?}: {text}");
        let answer = answer.unwrap();
        assert_eq!(answer.meta.unwrap().request_path["iris"], "2.0.0+build.1");
        let Some(seldon_message::DataOneof::Data(data)) = answer.data_oneof else { panic!() };
        let Some(default_data::DataOneof::Tensor(tensor)) = data.data_oneof else { panic!() };
        assert_eq!(tensor.shape, vec![1, 3], "the class probabilities, in the request's form");
        let record = record_of(&s, &request_id);
        assert_eq!(record.model.as_ref().unwrap().name, "iris");
        assert_eq!(record.path.as_deref(), Some("/seldon.protos.Seldon/Predict"));
        assert_eq!(record.grpc_code, Some(0));
    }
    // 401, 403 and 404 (after authentication), each as a gRPC status, each recorded once.
    let (code, text, _, request_id) = seldon_call(&s, "Predict", &message, None, &iris).await;
    assert_eq!((code, text.as_str()), (16, "authentication required: send a bearer token"));
    assert_eq!(record_of(&s, &request_id).status, Some(401));
    let (code, text, _, request_id) = seldon_call(&s, "Predict", &message, Some(&s.bob), &iris).await;
    assert_eq!((code, text.as_str()), (7, "RBAC: access denied"));
    let record = record_of(&s, &request_id);
    assert_eq!((record.model.unwrap().name.as_str(), record.status), ("iris", Some(403)));
    for metadata in [
        &[("seldon", "nothere")][..],
        &[("seldon", "secret")],
        &[("seldon", "iris"), ("namespace", "team")],
        &[],
        &[("seldon", "iris"), ("seldon", "secret")],
    ] {
        let (code, _, _, _) = seldon_call(&s, "Predict", &message, None, metadata).await;
        assert_eq!(code, 16, "{metadata:?}: nothing revealed before authentication");
        let (code, text, _, request_id) =
            seldon_call(&s, "Predict", &message, Some(&s.alice), metadata).await;
        assert_eq!(code, 5, "{metadata:?}: {text}");
        assert_eq!(record_of(&s, &request_id).status, Some(404));
    }
    // Bob's model, in its namespace, for bob.
    let (code, text, _, _) =
        seldon_call(&s, "Predict", &message, Some(&s.bob), &[("seldon", "secret"), ("namespace", "team")])
            .await;
    assert_eq!(code, 0, "{text}");
    // A malformed message: INVALID_ARGUMENT with the reason.
    let (code, text, _, _) = seldon_call(&s, "Predict", &[0xff, 0xff], Some(&s.alice), &iris).await;
    assert_eq!(code, 3, "{text}");
    let empty = SeldonMessage::default().encode_to_vec();
    let (code, text, _, _) = seldon_call(&s, "Predict", &empty, Some(&s.alice), &iris).await;
    assert_eq!((code, text.as_str()), (3, "the request has no `data`"));
    // Feedback for a model that is not a graph: authenticated, audited, UNIMPLEMENTED with
    // a reason.
    let (code, _, _, _) = seldon_call(&s, "SendFeedback", &[], None, &iris).await;
    assert_eq!(code, 16);
    let (code, text, _, request_id) = seldon_call(&s, "SendFeedback", &[], Some(&s.alice), &iris).await;
    assert_eq!(code, 12, "{text}");
    assert!(text.contains("feedback"), "{text}");
    assert_eq!(record_of(&s, &request_id).grpc_code, Some(12));
}
