//! What the server benches share: the whole server in-process over a registry, with a
//! relaxed audit log (fsyncs would drown what the benches compare) and a token for
//! alice@example.com from the home's built-in issuer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use palisade_bundle::Store;
use palisade_identity::{HttpFetch, TokenRequest};
use palisade_runtime::{Engine, EngineConfig, UpstreamContext};
use palisade_server::{AppState, Platform, Registry, Security, SecurityConfig, ServerConfig};

/// The router of `palisade_server::app` serving `registry` from `store`'s home, its audit
/// log in `audit_dir`, and a bearer token for alice@example.com.
pub fn serve(store: &Store, registry: Registry, audit_dir: &Path) -> (axum::Router, String) {
    let platform = Platform::parse(Path::new("platform.yaml"), "audit: {mode: relaxed}\n").unwrap();
    let audit = palisade_server::AuditHandle::open(audit_dir, &platform.config.audit, None).unwrap();
    let namespaces = registry.namespaces().into_iter().map(String::from).collect();
    let config = SecurityConfig { platform, policy_dir: None, home: store.root().to_owned() };
    let security = Arc::new(Security::new(config, namespaces, Arc::new(HttpFetch::new().unwrap())).unwrap());
    let mut extra = serde_json::Map::new();
    extra.insert("email".into(), "alice@example.com".into());
    extra.insert("email_verified".into(), true.into());
    let token = security
        .issuer()
        .unwrap()
        .issue(TokenRequest { subject: "alice".into(), extra, ..TokenRequest::default() })
        .unwrap()
        .token
        .expose()
        .to_owned();
    let state = AppState::new(
        registry,
        Engine::start(EngineConfig::default()).unwrap(),
        security,
        audit,
        ServerConfig::default(),
    )
    .unwrap();
    (palisade_server::app(state), token)
}

/// One iris row as a V2 request body.
#[allow(dead_code)]
pub const IRIS_ROW: &str =
    r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#;

/// The served router with alice's token and a runtime of its own: `send` makes one request
/// through the whole server and expects 200.
#[allow(dead_code)]
pub struct Caller {
    router: axum::Router,
    token: String,
    runtime: tokio::runtime::Runtime,
}

#[allow(dead_code)]
impl Caller {
    /// [`serve`], with a two-thread runtime to call it on.
    pub fn new(store: &Store, registry: Registry, audit_dir: &Path) -> Caller {
        let (router, token) = serve(store, registry, audit_dir);
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        Caller { router, token, runtime }
    }

    /// `METHOD uri` with `body` and the bearer token; panics unless the answer is 200.
    pub fn send(&self, method: &str, uri: &str, body: impl Into<axum::body::Body>) {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let request = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {}", self.token))
            .body(body.into())
            .unwrap();
        let router = self.router.clone();
        self.runtime.block_on(async move {
            let response = router.oneshot(request).await.unwrap();
            assert_eq!(response.status(), 200);
            response.into_body().collect().await.unwrap();
        })
    }

    /// One iris row to `/v2/models/MODEL/infer`.
    pub fn infer_iris_row(&self, model: &str) {
        self.send("POST", &format!("/v2/models/{model}/infer"), IRIS_ROW);
    }
}

/// A fixture model of `fixtures/models`, by file stem.
#[allow(dead_code)]
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models").join(format!("{name}.onnx"))
}

/// Builds `manifest` (with the fixture `model` as `model.onnx`, if any) into `store`: a
/// graph compiled against the store, a model prepared with `check` (upstreams not called).
#[allow(dead_code)]
pub fn add(store: &Store, scratch: &Path, manifest: &str, model: Option<&str>, check: &UpstreamContext) {
    let dir = tempfile::tempdir_in(scratch).unwrap();
    std::fs::write(dir.path().join("palisade.yaml"), manifest).unwrap();
    if let Some(model) = model {
        std::fs::copy(fixture(model), dir.path().join("model.onnx")).unwrap();
    }
    let mut staged = store.stage(dir.path()).unwrap();
    let signature = if staged.manifest().is_composite() {
        palisade_graph::compile(staged.manifest(), &palisade_graph::StoreCatalog(store), None)
            .unwrap()
            .signature()
            .clone()
    } else {
        palisade_runtime::prepare_with(staged.manifest(), &staged.model_path(), check)
            .unwrap()
            .signature()
            .clone()
    };
    staged.set_signature(&signature).unwrap();
    store.commit(staged).unwrap();
}
