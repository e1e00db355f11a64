//! Differential test of the request context: for generated spellings of model routes
//! (percent-encodings of every reserved character in either case, dot segments, repeated
//! slashes, backslashes, disguises under public prefixes) and for gRPC messages, the model
//! the handler served is the model authorization decided on and the model in the audit
//! record, and every request that reaches a model leaves exactly one record.
//!
//! The caller is alice, who owns `iris` (two versions) and not `secret`: a `secret` answer
//! would be an authorization bypass, a model answer without its record an audit bypass.
//! Bounded: a fixed number of cases per run, in-process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use http_body_util::BodyExt;
use palisade_audit::{AuditRecord, Decision, Filter};
use palisade_core::{Tensor, TensorData};
use palisade_protocol::grpc::prost::Message;
use palisade_protocol::grpc::{self, ModelInferResponse};
use palisade_runtime::EngineConfig;
use palisade_server::{Platform, Registry, ServerConfig};
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Every model explains too (KernelShap), so that an explain path that reached `secret`
/// would be answered, not refused for want of an explainer.
const MANIFESTS: [&str; 3] = [
    "name: iris\nversion: \"1.0.0\"\nowners: [alice@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\nexplainer: {type: KernelShap, background: bg.csv}\n",
    "name: iris\nversion: \"2.0.0+build.1\"\nowners: [alice@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\nexplainer: {type: KernelShap, background: bg.csv}\n",
    "name: secret\nversion: \"1\"\nnamespace: team\nowners: [bob@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\nexplainer: {type: KernelShap, background: bg.csv}\n",
];

const BACKGROUND: &str = "a,b,c,d\n5.1,3.5,1.4,0.2\n6.2,2.9,4.3,1.3\n";

struct World {
    tmp: tempfile::TempDir,
    app: TestApp,
    alice: String,
    runtime: tokio::runtime::Runtime,
}

fn world() -> World {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let _guard = runtime.enter();
    let tmp = tempfile::tempdir().unwrap();
    let store = palisade_bundle::Store::open(&tmp.path().join("home")).unwrap();
    add_explained_bundles(&store, tmp.path(), "iris_lr_nozipmap", &MANIFESTS, BACKGROUND);
    let app = app_with(
        store.root(),
        Registry::load(&store).unwrap(),
        EngineConfig::default(),
        ServerConfig::default(),
        Platform::parse(Path::new("platform.yaml"), "{}").unwrap(),
        None,
    );
    let alice = token_with(app.state.security(), "alice", json!({"email": "alice@example.com"}));
    World { tmp, app, alice, runtime }
}

fn records_of(world: &World, request_id: &str) -> Vec<AuditRecord> {
    palisade_audit::query(&world.tmp.path().join("home/audit"), Filter::default())
        .unwrap()
        .map(Result::unwrap)
        .filter(|r| r.request_id.as_deref() == Some(request_id))
        .collect()
}

/// How one character of a path is written.
#[derive(Debug, Clone, Copy)]
enum Spelling {
    Plain,
    Upper,
    Lower,
}

fn spell(c: char, how: Spelling) -> String {
    match how {
        Spelling::Plain => c.to_string(),
        Spelling::Upper => format!("%{:02X}", c as u32),
        Spelling::Lower => format!("%{:02x}", c as u32),
    }
}

/// A path to a model route, in canonical form: mostly to served model versions (alice's
/// `iris`, bob's `secret`), sometimes to names and versions that are not served.
fn canonical() -> impl Strategy<Value = String> {
    let served = prop::sample::select(vec![
        ("iris", None),
        ("iris", Some("1.0.0")),
        ("iris", Some("2.0.0+build.1")),
        ("secret", None),
        ("secret", Some("1")),
    ]);
    let unserved = prop::sample::select(vec![
        ("nothere", None),
        ("IRIS", None),
        ("iris", Some("9")),
        ("secret", Some("2.0.0+build.1")),
    ]);
    let target = prop_oneof![4 => served, 1 => unserved];
    let op = prop::sample::select(vec!["infer", "infer", "", "ready", "explain"]);
    (target, op).prop_map(|((model, version), op)| {
        let mut path = format!("/v2/models/{model}");
        if let Some(v) = version {
            path.push_str(&format!("/versions/{v}"));
        }
        if !op.is_empty() {
            path.push('/');
            path.push_str(op);
        }
        path
    })
}

/// A disguise in front of the path: segments under public prefixes that normalization
/// removes again, each `..` spelled in its own way.
fn disguise() -> impl Strategy<Value = String> {
    prop::sample::select(DISGUISES.to_vec()).prop_map(str::to_owned)
}

const DISGUISES: [&str; 12] = [
    "",
    "/v2/health/../..",
    "/v2/health/%2e%2e/%2E%2E",
    "/v2/health/live/../../..",
    "/v2/health/..%2F..",
    "/docs/..",
    "/docs/%2E%2E",
    "/.well-known/..",
    "/openapi.json/..",
    "/inference.GRPCInferenceService/ServerLive/../..",
    "/a/./b/../..",
    "/%2e/",
];

/// Writes a canonical path with every character spelled in a random way, slashes as `/`,
/// `//`, `%2F`, `%5C` or `%5c` (a raw backslash is no valid URI), and dot segments
/// sprinkled in.
fn respell(path: &str, choices: &[u8]) -> String {
    let mut out = String::new();
    for (i, c) in path.chars().enumerate() {
        let choice = choices[i % choices.len()];
        if c == '/' {
            out.push_str(match choice % 8 {
                0 => "//",
                1 => "%5C",
                2 => "/./",
                3 => "%2F",
                4 => "%5c",
                5 => "/x/../",
                _ => "/",
            });
            continue;
        }
        let how = match choice % 3 {
            0 => Spelling::Plain,
            1 => Spelling::Upper,
            _ => Spelling::Lower,
        };
        out.push_str(&spell(c, how));
    }
    // A path must start with a slash to be a path at all.
    if !out.starts_with('/') {
        out.insert(0, '/');
    }
    out
}

/// What a response says it served: (model, version) from a V2 infer or metadata answer,
/// or an explanation's `meta.model`.
fn served_by(body: &Value) -> Option<(String, Option<String>)> {
    if let Some(model) = body.pointer("/meta/model") {
        let name = model.get("name").and_then(Value::as_str)?;
        return Some((name.to_owned(), model.get("version").and_then(Value::as_str).map(str::to_owned)));
    }
    if let Some(name) = body.get("model_name").and_then(Value::as_str) {
        return Some((name.to_owned(), body.get("model_version").and_then(Value::as_str).map(str::to_owned)));
    }
    if body.get("platform").is_some() {
        return body.get("name").and_then(Value::as_str).map(|n| (n.to_owned(), None));
    }
    None
}

/// The checks every response and its records must pass.
fn judge(what: &str, status: StatusCode, served: Option<(String, Option<String>)>, records: &[AuditRecord]) {
    assert!(!status.is_server_error(), "{what}: {status}");
    assert!(records.len() <= 1, "{what}: {} records for one request", records.len());
    if let Some((name, version)) = &served {
        assert_ne!(name, "secret", "{what}: alice got an answer from bob's model");
        let record =
            records.first().unwrap_or_else(|| panic!("{what}: a model answered with no audit record"));
        let model = record.model.as_ref().unwrap_or_else(|| panic!("{what}: the record names no model"));
        assert_eq!(&model.name, name, "{what}: served and audited models differ");
        if let Some(version) = version {
            assert_eq!(
                model.version.as_deref(),
                Some(version.as_str()),
                "{what}: served and audited versions differ"
            );
        }
        assert_eq!(
            record.authz.as_ref().unwrap().decision,
            Decision::Allow,
            "{what}: served without an allow"
        );
    }
    if let Some(record) = records.first()
        && let Some(model) = &record.model
        && record.authz.as_ref().is_some_and(|a| a.decision != Decision::Skipped)
    {
        let allowed = record.authz.as_ref().unwrap().decision == Decision::Allow;
        assert_eq!(allowed, model.name == "iris", "{what}: decided on {} but allowed={allowed}", model.name);
        if model.name == "secret" {
            assert_eq!(record.status, Some(403), "{what}");
        }
    }
}

fn rest_case(world: &World, raw: &str, method: &str) {
    let uri = raw
        .parse::<axum::http::Uri>()
        .unwrap_or_else(|e| panic!("the generator made an invalid URI {raw}: {e}"));
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {}", world.alice))
        .body(Body::from(IRIS_ROW))
        .unwrap();
    let (status, request_id, body) = world.runtime.block_on(async {
        let res = world.app.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, id, serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null))
    });
    let served = if status == StatusCode::OK { served_by(&body) } else { None };
    judge(&format!("{method} {raw}"), status, served, &records_of(world, &request_id));
}

fn grpc_case(world: &World, path: &str, model: &str, version: &str) {
    let x = Tensor::new("X", vec![1, 4], TensorData::Fp32(vec![5.1, 3.5, 1.4, 0.2])).unwrap();
    let version_opt = (!version.is_empty()).then_some(version);
    let message = grpc::encode_infer_request(model, version_opt, None, &[x], true).encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(&message);
    let uri = path
        .parse::<axum::http::Uri>()
        .unwrap_or_else(|e| panic!("the generator made an invalid URI {path}: {e}"));
    let req = Request::post(uri)
        .header("content-type", "application/grpc")
        .header("authorization", format!("Bearer {}", world.alice))
        .body(Body::from(body))
        .unwrap();
    let (code, request_id, reply) = world.runtime.block_on(async {
        let res = world.app.router.clone().oneshot(req).await.unwrap();
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        let headers = res.headers().clone();
        let collected = res.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let code = headers
            .get("grpc-status")
            .or(trailers.get("grpc-status"))
            .map(|v| v.to_str().unwrap().to_owned());
        (code, id, collected.to_bytes())
    });
    let served = (code.as_deref() == Some("0") && reply.len() > 5)
        .then(|| ModelInferResponse::decode(&reply[5..]).unwrap())
        .map(|r| (r.model_name, Some(r.model_version)));
    let status = match code.as_deref() {
        Some("0") => StatusCode::OK,
        Some("7") => StatusCode::FORBIDDEN,
        Some("5") => StatusCode::NOT_FOUND,
        Some("13") => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    judge(&format!("gRPC {path} {model}:{version}"), status, served, &records_of(world, &request_id));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn rest_spellings_serve_authorize_and_audit_one_model(
        canonical in canonical(),
        disguise in disguise(),
        choices in prop::collection::vec(any::<u8>(), 1..64),
    ) {
        thread_local! { static WORLD: World = world(); }
        let raw = format!("{disguise}{}", respell(&canonical, &choices));
        let method = if canonical.ends_with("/infer") || canonical.ends_with("/explain") { "POST" } else { "GET" };
        WORLD.with(|w| rest_case(w, &raw, method));
    }

    #[test]
    fn grpc_messages_serve_authorize_and_audit_one_model(
        (model, version) in prop_oneof![
            4 => prop::sample::select(vec![("iris", ""), ("iris", "1.0.0"), ("iris", "2.0.0+build.1"), ("secret", ""), ("secret", "1")]),
            1 => prop::sample::select(vec![("nothere", ""), ("IRIS", ""), ("iris ", ""), ("", "1"), ("iris", "2.0.0%2Bbuild.1"), ("iris", "1")]),
        ],
        disguise in prop::sample::select(DISGUISES.to_vec()),
        choices in prop::collection::vec(any::<u8>(), 1..16),
    ) {
        thread_local! { static WORLD: World = world(); }
        let path = format!("{disguise}{}", respell("/inference.GRPCInferenceService/ModelInfer", &choices));
        WORLD.with(|w| grpc_case(w, &path, model, version));
    }
}

/// The examples the generator is built around, always run.
#[test]
fn known_disguises() {
    let world = world();
    for raw in [
        "/v2/models/iris/versions/2.0.0%2Bbuild.1/infer",
        "/v2/models/secret/versions/1/infer",
        "/v2/health/%2e%2e/models/secret/infer",
        "/v2/health/%2e%2e/models/iris/infer",
        "/docs/%2e%2e/v2/models/iris/infer",
        "/.well-known/%2e%2e/v2/models/secret/infer",
        "/v2/models/iris%2Finfer",
        "/v2/models/secr%65t/infer",
        "/v2/models/iris/explain",
        "/v2/models/iris/versions/2.0.0%2Bbuild.1/explain",
        "/v2/models/secret/explain",
        "/v2/models/secr%65t/%65xplain",
        "/v2/health/%2e%2e/models/secret/explain",
        "/v2/models/iris/infer/../../secret/explain",
        "/v2/models/iris%2Fexplain",
    ] {
        rest_case(&world, raw, "POST");
    }
    // The explain route serves (the cases above would otherwise prove little).
    let req = Request::post("/v2/models/iris/versions/2.0.0%2Bbuild.1/explain")
        .header("authorization", format!("Bearer {}", world.alice))
        .body(Body::from(IRIS_ROW))
        .unwrap();
    let body = world.runtime.block_on(async {
        let res = world.app.router.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        serde_json::from_slice::<Value>(&res.into_body().collect().await.unwrap().to_bytes()).unwrap()
    });
    assert_eq!(served_by(&body), Some(("iris".to_owned(), Some("2.0.0+build.1".to_owned()))));
    grpc_case(&world, "/inference.GRPCInferenceService/ModelInfer", "secret", "");
    grpc_case(&world, "/v2/health/../inference.GRPCInferenceService/ModelInfer", "iris", "2.0.0+build.1");
}
