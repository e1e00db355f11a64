//! Shared test setup: real bundles built from the ONNX fixtures, the real engine, and the
//! real security state with Palisade's own issuer minting tokens.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use palisade_bundle::Store;
use palisade_identity::{HttpFetch, TokenRequest};
use palisade_protocol::grpc::prost::Message;
use palisade_runtime::{Engine, EngineConfig, onnxruntime};
use palisade_server::{AppState, Platform, Registry, Security, SecurityConfig, ServerConfig};
use serde_json::Value;
use tower::ServiceExt;

pub const IRIS_ROW: &str =
    r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models").join(format!("{name}.onnx"))
}

/// Builds bundles from fixtures into a fresh store, the way `palisade build` does.
pub fn store_with(models: &[(&str, &str, &str)]) -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    for (i, (fixture_name, name, version)) in models.iter().enumerate() {
        let dir = tmp.path().join(format!("src{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(fixture(fixture_name), dir.join("model.onnx")).unwrap();
        std::fs::write(
            dir.join("palisade.yaml"),
            format!(
                "name: {name}\nversion: \"{version}\"\ndescription: test model\nowners: [alice@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\n"
            ),
        )
        .unwrap();
        let mut staged = store.stage(&dir).unwrap();
        let model = palisade_runtime::prepare(staged.manifest(), &staged.model_path()).unwrap();
        staged.set_signature(model.signature()).unwrap();
        store.commit(staged).unwrap();
    }
    (tmp, store)
}

/// A server under test, with a token for its default caller.
#[derive(Clone)]
pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub token: String,
}

pub fn security_for(
    home: &Path,
    registry: &Registry,
    platform: Platform,
    policy_dir: Option<PathBuf>,
) -> Arc<Security> {
    let namespaces: BTreeSet<String> = registry.namespaces().into_iter().map(String::from).collect();
    let config = SecurityConfig { platform, policy_dir, home: home.to_owned() };
    Arc::new(Security::new(config, namespaces, Arc::new(HttpFetch::new().unwrap())).unwrap())
}

/// A token from the server's own issuer for alice@example.com (the fixtures' owner).
pub fn token_for(security: &Security, subject: &str, email: &str) -> String {
    let mut extra = serde_json::Map::new();
    extra.insert("email".into(), Value::from(email));
    extra.insert("email_verified".into(), Value::Bool(true));
    security
        .issuer()
        .unwrap()
        .issue(TokenRequest { subject: subject.into(), extra, ..TokenRequest::default() })
        .unwrap()
        .token
        .expose()
        .to_owned()
}

pub fn app_with(
    home: &Path,
    registry: Registry,
    engine: EngineConfig,
    config: ServerConfig,
    platform: Platform,
    policy_dir: Option<PathBuf>,
) -> TestApp {
    app_full(home, registry, engine, config, platform, policy_dir, None)
}

/// Everything configurable, including the audit log's storage-failure hook.
pub fn app_full(
    home: &Path,
    registry: Registry,
    engine: EngineConfig,
    config: ServerConfig,
    platform: Platform,
    policy_dir: Option<PathBuf>,
    faults: Option<palisade_audit::FaultInjection>,
) -> TestApp {
    let audit =
        palisade_server::AuditHandle::open(&home.join("audit"), &platform.config.audit, faults).unwrap();
    let security = security_for(home, &registry, platform, policy_dir);
    let token = token_for(&security, "alice", "alice@example.com");
    let state = AppState::new(registry, Engine::start(engine).unwrap(), security, audit, config).unwrap();
    TestApp { router: palisade_server::app(state.clone()), state, token }
}

pub fn app(home: &Path, registry: Registry, engine: EngineConfig, config: ServerConfig) -> TestApp {
    app_with(home, registry, engine, config, Platform::defaults(), None)
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

pub async fn send(app: &TestApp, req: Request<Body>) -> Reply {
    let res = app.router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    Reply { status, headers, body }
}

/// Calls the app as the default caller (with its token).
pub async fn call(app: &TestApp, method: &str, uri: &str, body: impl Into<Body>) -> Reply {
    let token = app.token.clone();
    call_as(app, Some(&token), method, uri, body).await
}

/// Calls the app with the given token, or none.
pub async fn call_as(
    app: &TestApp,
    token: Option<&str>,
    method: &str,
    uri: &str,
    body: impl Into<Body>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    send(app, req.body(body.into()).unwrap()).await
}

/// Builds one bundle from a fixture with the given manifest text.
/// The iris fixture (`iris_lr_nozipmap`) under `manifest`, served with the platform config
/// `yaml` (read as a file named `platform.yaml`).
pub fn iris_with_platform(manifest: &str, yaml: &str) -> (tempfile::TempDir, TestApp) {
    let platform = Platform::parse(Path::new("platform.yaml"), yaml).unwrap();
    let (tmp, store) = store_with_manifest("iris_lr_nozipmap", manifest);
    let registry = Registry::load(&store).unwrap();
    let app = app_full(
        store.root(),
        registry,
        EngineConfig::default(),
        ServerConfig::default(),
        platform,
        None,
        None,
    );
    (tmp, app)
}

pub fn store_with_manifest(fixture_name: &str, manifest: &str) -> (tempfile::TempDir, Store) {
    store_with_manifests(fixture_name, &[manifest])
}

/// Builds one bundle per manifest text, each over the same fixture, into a fresh store.
pub fn store_with_manifests(fixture_name: &str, manifests: &[&str]) -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    add_bundles(&store, tmp.path(), fixture_name, manifests);
    (tmp, store)
}

/// Builds more bundles into an existing store (`scratch` holds their source directories).
pub fn add_bundles(store: &Store, scratch: &Path, fixture_name: &str, manifests: &[&str]) {
    for manifest in manifests {
        let dir = tempfile::tempdir_in(scratch).unwrap();
        std::fs::copy(fixture(fixture_name), dir.path().join("model.onnx")).unwrap();
        std::fs::write(dir.path().join("palisade.yaml"), manifest).unwrap();
        let mut staged = store.stage(dir.path()).unwrap();
        let model = palisade_runtime::prepare(staged.manifest(), &staged.model_path()).unwrap();
        staged.set_signature(model.signature()).unwrap();
        store.commit(staged).unwrap();
    }
}

/// Builds bundles whose manifests declare `explainer: {type: ..., background: bg.csv}`,
/// with `background` (CSV) as `bg.csv`, the way `palisade build` does.
pub fn add_explained_bundles(
    store: &Store,
    scratch: &Path,
    fixture_name: &str,
    manifests: &[&str],
    background: &str,
) {
    for manifest in manifests {
        add_explained(store, scratch, &fixture(fixture_name), manifest, background);
    }
}

/// Builds one bundle of `onnx` whose manifest declares an explainer over `bg.csv`
/// (`background`), computing what `palisade build` stores for it.
pub fn add_explained(store: &Store, scratch: &Path, onnx: &Path, manifest: &str, background: &str) {
    let dir = tempfile::tempdir_in(scratch).unwrap();
    std::fs::copy(onnx, dir.path().join("model.onnx")).unwrap();
    std::fs::write(dir.path().join("palisade.yaml"), manifest).unwrap();
    std::fs::write(dir.path().join("bg.csv"), background).unwrap();
    let mut staged = store.stage(dir.path()).unwrap();
    let model = palisade_runtime::prepare(staged.manifest(), &staged.model_path()).unwrap();
    staged.set_signature(model.signature()).unwrap();
    let kind = staged.manifest().explainer.as_ref().unwrap().kind;
    let bytes = std::fs::read(staged.model_path()).unwrap();
    let (record, _) = palisade_server::explain::build_record(
        kind,
        "bg.csv",
        staged.background().unwrap(),
        &bytes,
        model.signature(),
    )
    .unwrap();
    staged.set_explainer(&record).unwrap();
    store.commit(staged).unwrap();
}

/// A token from the server's issuer with arbitrary extra claims.
pub fn token_with(security: &Security, subject: &str, extra: Value) -> String {
    security
        .issuer()
        .unwrap()
        .issue(TokenRequest {
            subject: subject.into(),
            extra: extra.as_object().cloned().unwrap_or_default(),
            ..TokenRequest::default()
        })
        .unwrap()
        .token
        .expose()
        .to_owned()
}

/// Set to `1` to run without onnxruntime on a machine that lacks it (CI never sets it).
pub const SKIP_ENV: &str = "PALISADE_SKIP_ONNXRUNTIME_TESTS";

/// Loads the onnxruntime library from `PALISADE_ONNXRUNTIME_LIB` or the repository's test
/// environments; `false` only when it is missing and [`SKIP_ENV`] is `1`.
pub fn with_onnxruntime() -> bool {
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

/// Builds a graph or traffic bundle the way `palisade build` does: compiled against the
/// store, its signature recorded.
pub fn add_graph(store: &Store, scratch: &Path, manifest: &str) -> Result<(), String> {
    let dir = tempfile::tempdir_in(scratch).unwrap();
    std::fs::write(dir.path().join("palisade.yaml"), manifest).unwrap();
    let mut staged = store.stage(dir.path()).map_err(|e| e.to_string())?;
    let graph = palisade_graph::compile(staged.manifest(), &palisade_graph::StoreCatalog(store), None)
        .map_err(|e| e.to_string())?;
    staged.set_signature(graph.signature()).unwrap();
    store.commit(staged).unwrap();
    Ok(())
}

/// The request records (config records left out) of the audit trail in `home/audit`.
pub fn request_records(home: &Path) -> Vec<palisade_audit::AuditRecord> {
    palisade_audit::query(&home.join("audit"), palisade_audit::Filter::default())
        .unwrap()
        .map(Result::unwrap)
        .filter(|r| r.config.is_none())
        .collect()
}

/// A gRPC call sent in-process: the HTTP method, the message, a token, extra headers.
pub async fn grpc_call(
    app: &TestApp,
    method: &str,
    rpc: &str,
    message: &[u8],
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> (Option<i32>, String, axum::http::HeaderMap) {
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(message);
    let mut req = Request::builder()
        .method(method)
        .uri(format!("/inference.GRPCInferenceService/{rpc}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let res = app.router.clone().oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
    let response_headers = res.headers().clone();
    let collected = res.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let code =
        |map: &axum::http::HeaderMap| map.get("grpc-status").and_then(|v| v.to_str().ok()?.parse().ok());
    let status = code(&response_headers).or_else(|| code(&trailers));
    let message = response_headers
        .get("grpc-message")
        .or(trailers.get("grpc-message"))
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, message, response_headers)
}

pub fn infer_message(model: &str, version: Option<&str>) -> Vec<u8> {
    let x = palisade_core::Tensor::new(
        "X",
        vec![1, 4],
        palisade_core::TensorData::Fp32(vec![5.1, 3.5, 1.4, 0.2]),
    )
    .unwrap();
    palisade_protocol::grpc::encode_infer_request(model, version, Some("r"), &[x], true).encode_to_vec()
}
