//! The second security review's findings (issue 24), each sent as the attack with its
//! siblings; after each, the server still serves another model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::*;
use palisade_runtime::EngineConfig;
use palisade_server::{Platform, Registry, ServerConfig};
use serde_json::json;

const MB: usize = 1024 * 1024;

const LAB_BOB: &str = "name: bobmodel\nversion: \"1\"\nnamespace: lab\nowners: [bob@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\n";
const OTHER_ALICE: &str = "name: other\nversion: \"1\"\nnamespace: elsewhere\nowners: [alice@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\n";

struct Lab {
    _tmp: tempfile::TempDir,
    _policy_dir: tempfile::TempDir,
    app: TestApp,
    bob: String,
    eve: String,
}

fn lab() -> Lab {
    let (tmp, store) = store_with_manifests("iris_lr_nozipmap", &[LAB_BOB, OTHER_ALICE]);
    let policy_dir = tempfile::tempdir().unwrap();
    let registry = Registry::load(&store).unwrap();
    let app = app_with(
        store.root(),
        registry,
        EngineConfig::default(),
        ServerConfig::default(),
        Platform::defaults(),
        Some(policy_dir.path().to_owned()),
    );
    let bob = token_with(app.state.security(), "bob", json!({"email": "bob@example.com"}));
    let eve = token_with(app.state.security(), "eve", json!({"email": "eve@example.com"}));
    Lab { _tmp: tmp, _policy_dir: policy_dir, app, bob, eve }
}

/// The other team's model answers, and promptly.
async fn still_serving(app: &TestApp) {
    let start = Instant::now();
    let reply = call(app, "POST", "/v2/models/other/infer", IRIS_ROW).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", String::from_utf8_lossy(&reply.body));
    assert!(start.elapsed() < Duration::from_secs(5), "a prediction took {:?}", start.elapsed());
}

fn policy_head(namespace: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: attack, namespace: {namespace}}}\n"
    )
}

/// The adversarial bodies of finding 2 and their siblings, each about 1 MB.
fn yaml_attacks(namespace: &str) -> Vec<(&'static str, String)> {
    let head = policy_head(namespace);
    let mut laughs = String::from("x: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    let mut previous = 'a';
    for name in 'b'..='k' {
        let refs = vec![format!("*{previous}"); 10].join(", ");
        laughs.push_str(&format!("{name}{name}: &{name} [{refs}]\n"));
        previous = name;
    }
    let mut flat = format!("{head}spec:\n  rules: [");
    while flat.len() < MB - 16 {
        flat.push_str("{}, ");
    }
    flat.push_str("]\n");
    vec![
        ("nested [", format!("{head}spec: {}", "[".repeat(MB - head.len() - 8))),
        ("nested {", format!("{head}spec: {}", "{a: ".repeat((MB - head.len()) / 4 - 4))),
        ("billion laughs", format!("{head}spec:\n  selector:\n    matchLabels: {{a: b}}\n{laughs}")),
        ("a megabyte of nodes", flat),
        ("many documents", format!("{head}spec: {{}}\n{}", "---\na: 1\n".repeat((MB - 256) / 9))),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_2_yaml_from_a_caller_who_owns_nothing_there_is_refused_unparsed() {
    let s = lab();
    for (name, body) in yaml_attacks("lab") {
        let start = Instant::now();
        let reply = call_as(&s.app, Some(&s.eve), "PUT", "/manage/v1/policies", body).await;
        let took = start.elapsed();
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{name}: {}", String::from_utf8_lossy(&reply.body));
        assert!(reply.json()["error"].as_str().unwrap().contains("you own no model in namespace `lab`"));
        assert!(took < Duration::from_secs(2), "{name} took {took:?}");
    }
    // The namespace itself hidden behind an attack is refused within the limits.
    let body = format!("spec: {}\nmetadata: {{namespace: lab}}\n", "[".repeat(MB - 64));
    let reply = call_as(&s.app, Some(&s.eve), "PUT", "/manage/v1/policies", body).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.json()["error"].as_str().unwrap().contains("nest deeper than 64"));
    let reply = call_as(&s.app, Some(&s.eve), "PUT", "/manage/v1/policies", "spec: {}\n").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.json()["error"].as_str().unwrap().contains("metadata.namespace"));
    still_serving(&s.app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_2_yaml_from_an_owner_is_refused_within_the_limits_while_others_are_served() {
    let s = lab();
    for (name, body) in yaml_attacks("lab") {
        let app = s.app.clone();
        let bob = s.bob.clone();
        let attack = tokio::spawn(async move {
            let start = Instant::now();
            let reply = call_as(&app, Some(&bob), "PUT", "/manage/v1/policies", body).await;
            (reply, start.elapsed())
        });
        // Predictions of another team's model go on while the document is judged.
        still_serving(&s.app).await;
        let (reply, took) = tokio::time::timeout(Duration::from_secs(30), attack).await.unwrap().unwrap();
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{name}: {}", String::from_utf8_lossy(&reply.body));
        let error = reply.json()["error"].as_str().unwrap().to_owned();
        assert!(
            error.contains("nest deeper")
                || error.contains("nodes")
                || error.contains("second document")
                || error.contains("expands"),
            "{name}: {error}"
        );
        assert!(took < Duration::from_secs(5), "{name} took {took:?}");
    }
    // A valid policy from the owner still applies (keeping the owner's own access).
    let ok = format!(
        "{}spec:\n  rules:\n  - when:\n    - key: request.auth.claims[email]\n      values: [eve@example.com, bob@example.com]\n",
        policy_head("lab")
    );
    let reply = call_as(&s.app, Some(&s.bob), "PUT", "/manage/v1/policies", ok).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(
        call_as(&s.app, Some(&s.eve), "POST", "/v2/models/bobmodel/infer", IRIS_ROW).await.status,
        StatusCode::OK
    );
    still_serving(&s.app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_3_a_hostile_policy_file_is_refused_by_the_reload_and_the_previous_rules_stay() {
    let s = lab();
    let security = s.app.state.security().clone();
    let dir = s._policy_dir.path();
    let allow_eve = format!(
        "{}spec:\n  rules:\n  - when:\n    - key: request.auth.claims[email]\n      values: [eve@example.com]\n",
        policy_head("lab").replace("attack", "eve")
    );
    std::fs::write(dir.join("eve.yaml"), &allow_eve).unwrap();
    assert!(security.reload_if_changed());
    assert_eq!(
        call_as(&s.app, Some(&s.eve), "POST", "/v2/models/bobmodel/infer", IRIS_ROW).await.status,
        StatusCode::OK
    );
    let mut files: Vec<(&str, Vec<u8>)> = vec![
        // 60,000 tiny documents took 3.9 GB and aborted the server.
        ("tiny-documents.yaml", "a: 1\n---\n".repeat(60_000).into_bytes()),
        ("too-large.yaml", format!("{allow_eve}# {}\n", "x".repeat(MB)).into_bytes()),
    ];
    for (name, body) in yaml_attacks("lab") {
        files.push((name, body.into_bytes()));
    }
    for (name, bytes) in files {
        let file = dir.join("attack.yaml");
        std::fs::write(&file, &bytes).unwrap();
        let failures = security.reload_failures().get();
        let start = Instant::now();
        let reloaded = tokio::task::spawn_blocking({
            let security = security.clone();
            move || security.reload_if_changed()
        })
        .await
        .unwrap();
        assert!(!reloaded, "{name}");
        assert!(start.elapsed() < Duration::from_secs(5), "{name}: reload took {:?}", start.elapsed());
        assert_eq!(security.reload_failures().get(), failures + 1, "{name}");
        // The previous rules are still in effect.
        assert_eq!(
            call_as(&s.app, Some(&s.eve), "POST", "/v2/models/bobmodel/infer", IRIS_ROW).await.status,
            StatusCode::OK,
            "{name}"
        );
        still_serving(&s.app).await;
        std::fs::remove_file(&file).unwrap();
    }
}

#[test]
fn finding_3_the_platform_config_is_bounded_too() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("platform.yaml");
    std::fs::write(&file, format!("authentication: {}", "[".repeat(MB - 32))).unwrap();
    let err = Platform::load(&file).unwrap_err().to_string();
    assert!(err.contains("nest deeper than 64"), "{err}");
    std::fs::write(&file, format!("# {}\n", "x".repeat(2 * MB))).unwrap();
    let err = Platform::load(&file).unwrap_err().to_string();
    assert!(err.contains("larger than"), "{err}");
    assert!(Platform::load(Path::new("/nonexistent/platform.yaml")).is_err());
}

const LAB_BATCH: &str = "name: batchmodel\nversion: \"1\"\nnamespace: lab\nowners: [serviceaccount:lab/batch]\nmodel:\n  path: model.onnx\n  format: onnx\n";

fn token_form(client_id: &str, secret: &str) -> String {
    format!("grant_type=client_credentials&client_id={client_id}&client_secret={secret}")
}

async fn token_request(app: &TestApp, form: String) -> Reply {
    let req = axum::http::Request::post("/oauth/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(axum::body::Body::from(form))
        .unwrap();
    send(app, req).await
}

async fn metrics_text(app: &TestApp) -> String {
    use tower::ServiceExt;
    let res = palisade_server::admin_app(app.state.clone())
        .oneshot(axum::http::Request::get("/metrics").body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let bytes = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn batch_app() -> (tempfile::TempDir, TestApp) {
    let (tmp, store) = store_with_manifests("iris_lr_nozipmap", &[LAB_BATCH, OTHER_ALICE]);
    let registry = Registry::load(&store).unwrap();
    let app = app(store.root(), registry, EngineConfig::default(), ServerConfig::default());
    (tmp, app)
}

#[tokio::test]
async fn finding_7_wrong_secrets_are_throttled_per_client_with_retry_after() {
    let (_tmp, app) = batch_app();
    let issuer = app.state.security().issuer().unwrap().clone();
    let (account, secret) = issuer.create_account("lab".parse().unwrap(), "batch".parse().unwrap()).unwrap();
    let (other, other_secret) =
        issuer.create_account("lab".parse().unwrap(), "other".parse().unwrap()).unwrap();
    let mut statuses = Vec::new();
    for i in 0..200 {
        let reply = token_request(&app, token_form(&account.client_id, &format!("guess-{i}"))).await;
        statuses.push(reply.status);
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = reply.headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=60).contains(&retry), "{retry}");
            assert_eq!(reply.json()["error"], "invalid_request");
        }
    }
    let unauthorized = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    assert_eq!(unauthorized, 5, "five wrong secrets are checked, then the client id waits");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count(), 195);
    // While it waits, even the right secret is not checked; the metric counts every failure.
    let reply = token_request(&app, token_form(&account.client_id, secret.expose())).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    let metrics = metrics_text(&app).await;
    let failed = metrics.lines().find(|l| l.contains("reason=\"client_credentials\"")).unwrap_or_default();
    assert!(failed.ends_with(" 5"), "{metrics}");
    let throttled =
        metrics.lines().find(|l| l.contains("reason=\"client_credentials_throttled\"")).unwrap_or_default();
    assert!(throttled.ends_with(" 196"), "{metrics}");
    // Another client is not affected, and the server serves.
    let reply = token_request(&app, token_form(&other.client_id, other_secret.expose())).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", String::from_utf8_lossy(&reply.body));
    still_serving(&app).await;
}

#[tokio::test]
async fn finding_7_a_revoked_service_accounts_tokens_are_refused_at_once() {
    let (_tmp, app) = batch_app();
    let issuer = app.state.security().issuer().unwrap().clone();
    let (account, secret) = issuer.create_account("lab".parse().unwrap(), "batch".parse().unwrap()).unwrap();
    let reply = token_request(&app, token_form(&account.client_id, secret.expose())).await;
    assert_eq!(reply.status, StatusCode::OK);
    let token = reply.json()["access_token"].as_str().unwrap().to_owned();
    let infer = || call_as(&app, Some(&token), "POST", "/v2/models/batchmodel/infer", IRIS_ROW);
    assert_eq!(infer().await.status, StatusCode::OK);
    assert_eq!(infer().await.status, StatusCode::OK, "now from the verified-token cache");
    // `palisade sa revoke` writes the accounts file; the server reads it within a second.
    issuer.revoke_account(&account.namespace, &account.name).unwrap();
    app.state.security().sync_issuer_keys();
    let reply = infer().await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", String::from_utf8_lossy(&reply.body));
    assert!(reply.headers["www-authenticate"].to_str().unwrap().contains("revoked"));
    // Tokens that name no service account (`palisade token issue`) are not affected.
    still_serving(&app).await;
}

#[tokio::test]
async fn finding_7_a_revoked_signing_key_leaves_the_key_set_at_once() {
    let (_tmp, app) = batch_app();
    let issuer = app.state.security().issuer().unwrap().clone();
    let old_kid = issuer.jwks()["keys"][0]["kid"].as_str().unwrap().to_owned();
    let old_token = app.token.clone();
    issuer.rotate().unwrap();
    app.state.security().sync_issuer_keys();
    // Rotation keeps the old key published for the overlap: its tokens still verify.
    let reply = call(&app, "POST", "/v2/models/other/infer", IRIS_ROW).await;
    assert_eq!(reply.status, StatusCode::OK);
    // Revocation removes it at once.
    assert_eq!(issuer.revoke_key(&old_kid).unwrap(), None, "a retired key: no new key started");
    app.state.security().sync_issuer_keys();
    let jwks = call(&app, "GET", "/.well-known/jwks.json", "").await.json();
    assert!(jwks["keys"].as_array().unwrap().iter().all(|k| k["kid"] != old_kid.as_str()), "{jwks}");
    let reply = call_as(&app, Some(&old_token), "POST", "/v2/models/other/infer", IRIS_ROW).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    // Revoking the signing key starts a new one; new tokens work.
    let active = issuer.jwks()["keys"][0]["kid"].as_str().unwrap().to_owned();
    let started = issuer.revoke_key(&active).unwrap().unwrap();
    assert_ne!(started, active);
    app.state.security().sync_issuer_keys();
    let fresh = token_for(app.state.security(), "alice", "alice@example.com");
    let reply = call_as(&app, Some(&fresh), "POST", "/v2/models/other/infer", IRIS_ROW).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(issuer.revoke_key("no-such-kid").is_err());
}

const IRIS_IO: &str = "  inputs: [{name: X, datatype: FP32, shape: [-1, 4]}]\n  outputs: [{name: label, datatype: INT64, shape: [-1]}]\n";

/// Builds (checks) and loads an upstream model with this URL, returning the load error if
/// any. No connection is attempted by either step.
fn load_upstream(url: &str, egress: palisade_runtime::EgressPolicy, check_only: bool) -> Result<(), String> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gw");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("palisade.yaml"),
        format!("name: gw\nversion: \"1\"\nowners: [alice@example.com]\nmodel:\n  format: upstream\n  upstream:\n    url: {url}\n{IRIS_IO}"),
    )
    .unwrap();
    let manifest = palisade_bundle::Manifest::load_dir(&dir).unwrap();
    let context = palisade_runtime::UpstreamContext {
        check_only,
        egress: std::sync::Arc::new(egress),
        ..palisade_runtime::UpstreamContext::default()
    };
    palisade_runtime::prepare_with(&manifest, &dir.join("palisade.yaml"), &context)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn finding_7_upstreams_to_metadata_link_local_loopback_and_own_ports_are_refused_before_connecting() {
    use palisade_runtime::EgressPolicy;
    let none = EgressPolicy::default;
    for url in [
        "http://169.254.169.254",
        "http://169.254.169.254:80/latest/meta-data",
        "http://[fd00:ec2::254]",
        "http://100.100.100.200",
        "http://169.254.10.1:8000",
        "http://[fe80::1]:8000",
        "http://[::ffff:169.254.169.254]",
        "http://0.0.0.0:8000",
    ] {
        // At build (no platform config) and at load.
        for check_only in [true, false] {
            let err = load_upstream(url, none(), check_only).unwrap_err();
            assert!(
                err.contains("model.upstream.url") && err.contains("upstream.allowedHosts"),
                "{url}: {err}"
            );
        }
    }
    // Loopback: decided at load, where the platform's allowlist is known.
    for url in ["http://127.0.0.1:8000", "http://[::1]:8000", "http://127.1.2.3:8000"] {
        assert!(load_upstream(url, none(), true).is_ok(), "{url} builds");
        let err = load_upstream(url, none(), false).unwrap_err();
        assert!(err.contains("loopback"), "{url}: {err}");
    }
    let allow =
        |host: &str| EgressPolicy { allowed_hosts: vec![host.to_owned()], own_ports: vec![8080, 9090] };
    assert!(load_upstream("http://127.0.0.1:8000", allow("127.0.0.1"), false).is_ok());
    assert!(
        load_upstream("http://169.254.169.254", allow("169.254.169.254"), false).is_ok(),
        "allowed by name"
    );
    // The server's own ports, allowed host or not.
    for url in ["http://127.0.0.1:8080", "http://127.0.0.1:9090", "http://0.0.0.0:8080"] {
        let err = load_upstream(url, allow("127.0.0.1"), false).unwrap_err();
        assert!(err.contains("own port"), "{url}: {err}");
    }
    // Another host is fine, and names are checked when they resolve.
    assert!(load_upstream("http://models.example.com", none(), false).is_ok());
    assert!(load_upstream("http://10.0.0.7:8080", allow("127.0.0.1"), false).is_ok());
}

#[tokio::test]
async fn finding_7_a_name_that_resolves_to_a_refused_address_is_refused_at_connect_time() {
    use palisade_runtime::Runnable;
    // `localhost` resolves to loopback from /etc/hosts, without a packet leaving the
    // machine; the resolver refuses it before any connection, exactly as it would a name
    // pointing at 169.254.169.254. It is loaded without complaint: names are judged when
    // they resolve.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gw");
    std::fs::create_dir_all(&dir).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::fs::write(
        dir.join("palisade.yaml"),
        format!("name: gw\nversion: \"1\"\nowners: [alice@example.com]\nmodel:\n  format: upstream\n  upstream:\n    url: http://localhost:{port}\n{IRIS_IO}"),
    )
    .unwrap();
    let manifest = palisade_bundle::Manifest::load_dir(&dir).unwrap();
    let model = palisade_runtime::prepare_with(
        &manifest,
        &dir.join("palisade.yaml"),
        &palisade_runtime::UpstreamContext::default(),
    )
    .unwrap();
    let Runnable::Upstream(model) = model else { panic!("an upstream model") };
    let row = palisade_core::Tensor::new(
        "X",
        vec![1, 4],
        palisade_core::TensorData::Fp32(vec![5.1, 3.5, 1.4, 0.2]),
    )
    .unwrap();
    let err = model.infer(vec![row], palisade_runtime::CallContext::default()).await.unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err}");
    // Nothing reached the listener.
    assert!(listener.accept().is_err(), "a connection was attempted");
}

/// Finding 7's last item and item 4: private keys open to others, or replaced by a symbolic
/// link, are refused naming the fix (the token signing keys were used without a word).
#[test]
fn finding_7_keys_open_to_others_or_symlinked_are_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let chmod =
        |p: &Path, mode: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    let settings = palisade_server::security::issuer_settings(&Platform::defaults());
    let identity = home.join("identity");
    palisade_identity::LocalIssuer::open(&identity, settings.clone()).unwrap();
    assert_eq!(std::fs::metadata(&identity).unwrap().permissions().mode() & 0o777, 0o700);
    let keys = identity.join("signing-keys.json");
    assert_eq!(std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777, 0o600);
    chmod(&keys, 0o644);
    let err = palisade_identity::LocalIssuer::open(&identity, settings.clone()).unwrap_err().to_string();
    assert!(err.contains(&format!("chmod 600 {}", keys.display())), "{err}");
    chmod(&keys, 0o600);
    let elsewhere = tmp.path().join("keys.json");
    std::fs::rename(&keys, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &keys).unwrap();
    let err = palisade_identity::LocalIssuer::open(&identity, settings).unwrap_err().to_string();
    assert!(err.contains("symbolic link"), "{err}");

    palisade_tls::Ca::open_or_init(&home, palisade_tls::CaOptions::default()).unwrap();
    let ca_key = home.join("ca/issuer-key.pem");
    chmod(&ca_key, 0o640);
    let err = palisade_tls::Ca::open(&home).unwrap_err().to_string();
    assert!(err.contains(&format!("chmod 600 {}", ca_key.display())), "{err}");
    chmod(&ca_key, 0o600);
    assert!(palisade_tls::Ca::open(&home).is_ok());
}
