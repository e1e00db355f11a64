//! What the server benches share: the whole server in-process over a registry, with a
//! relaxed audit log (fsyncs would drown what the benches compare) and a token for
//! alice@example.com from the home's built-in issuer.

use std::path::Path;
use std::sync::Arc;

use palisade_bundle::Store;
use palisade_identity::{HttpFetch, TokenRequest};
use palisade_runtime::{Engine, EngineConfig};
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
