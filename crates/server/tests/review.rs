//! The first security review's findings, each sent as the attack, with its siblings (other
//! encodings, other routes, other protocols). Every test here failed on the code the review
//! was made against.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use palisade_audit::{AuditRecord, FaultInjection};
use palisade_runtime::EngineConfig;
use palisade_server::{Platform, Registry, ServerConfig};
use serde_json::json;

const IRIS_1: &str = "name: iris\nversion: \"1.0.0\"\nowners: [alice@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\n";
const IRIS_2: &str = "name: iris\nversion: \"2.0.0+build.1\"\nowners: [alice@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\n";
const SECRET: &str = "name: secret\nversion: \"1\"\nnamespace: team\nowners: [bob@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\n";

struct Setup {
    tmp: tempfile::TempDir,
    _policies: tempfile::TempDir,
    app: TestApp,
    faults: FaultInjection,
    alice: String,
    bob: String,
}

fn setup_with(platform: &str, policies: &[(&str, &str)], config: ServerConfig) -> Setup {
    let (tmp, store) = store_with_manifests("iris_lr_nozipmap", &[IRIS_1, IRIS_2, SECRET]);
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in policies {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let faults = FaultInjection::new();
    let app = app_full(
        store.root(),
        Registry::load(&store).unwrap(),
        EngineConfig::default(),
        config,
        Platform::parse(Path::new("platform.yaml"), platform).unwrap(),
        Some(dir.path().to_owned()),
        Some(faults.clone()),
    );
    let security = app.state.security().clone();
    let alice = token_with(&security, "alice", json!({"email": "alice@example.com"}));
    let bob = token_with(&security, "bob", json!({"email": "bob@example.com"}));
    Setup { tmp, _policies: dir, app, faults, alice, bob }
}

fn setup() -> Setup {
    setup_with("{}", &[], ServerConfig::default())
}

fn records(s: &Setup) -> Vec<AuditRecord> {
    request_records(&s.tmp.path().join("home"))
}

fn record_of<'a>(records: &'a [AuditRecord], reply: &Reply) -> &'a AuditRecord {
    let id = reply.headers["x-request-id"].to_str().unwrap();
    let mut matching = records.iter().filter(|r| r.request_id.as_deref() == Some(id));
    let record = matching.next().unwrap_or_else(|| panic!("no audit record for request {id}"));
    assert!(matching.next().is_none(), "two records for request {id}");
    record
}

/// Finding 1 (critical): `%2B` in a version skipped authorization. Every spelling of the
/// version, on every model route, is authorized against the model it serves.
#[tokio::test]
async fn an_encoded_version_is_authorized_like_any_other() {
    let s = setup();
    let versions =
        ["2.0.0+build.1", "2.0.0%2Bbuild.1", "2.0.0%2bbuild.1", "2%2e0.0%2Bbuild%2E1", "%32.0.0+build.1"];
    for version in versions {
        for (method, uri, body) in [
            ("POST", format!("/v2/models/iris/versions/{version}/infer"), IRIS_ROW),
            ("GET", format!("/v2/models/iris/versions/{version}"), ""),
            ("GET", format!("/v2/models/iris/versions/{version}/ready"), ""),
        ] {
            let bob = call_as(&s.app, Some(&s.bob), method, &uri, body).await;
            assert_eq!(
                bob.status,
                StatusCode::FORBIDDEN,
                "{method} {uri}: {}",
                String::from_utf8_lossy(&bob.body)
            );
            let alice = call_as(&s.app, Some(&s.alice), method, &uri, body).await;
            assert_eq!(alice.status, StatusCode::OK, "{method} {uri}");
            if method == "POST" {
                assert_eq!(alice.json()["model_version"], "2.0.0+build.1");
            }
        }
    }
    // The model name too: `%69ris` is `iris`.
    let reply = call_as(&s.app, Some(&s.bob), "POST", "/v2/models/%69ris/infer", IRIS_ROW).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    // And over gRPC, where the version travels in the message.
    for version in ["2.0.0+build.1", "1.0.0", ""] {
        let message = infer_message("iris", Some(version).filter(|v| !v.is_empty()));
        let (code, text, _) = grpc_call(&s.app, "POST", "ModelInfer", &message, Some(&s.bob), &[]).await;
        assert_eq!(code, Some(7), "gRPC version {version:?}: {text}");
        let (code, _, _) = grpc_call(&s.app, "POST", "ModelInfer", &message, Some(&s.alice), &[]).await;
        assert_eq!(code, Some(0), "gRPC version {version:?}");
    }
    // Every decision above is in the audit trail, against the model that was addressed.
    for record in records(&s) {
        let model = record.model.as_ref().expect("every request named a served model");
        assert_eq!(model.name, "iris");
        let allowed = record.authz.as_ref().unwrap().decision == palisade_audit::Decision::Allow;
        assert_eq!(allowed, record.email.as_deref() == Some("alice@example.com"), "{record:?}");
    }
}

/// Finding 2 (high): paths that normalize onto a model route were routed to the model but
/// judged by their raw spelling as health probes or docs, and left no record. The route is
/// decided once, on the normalized path: they are model requests, audited, and refused when
/// strict audit cannot write.
#[tokio::test]
async fn no_spelling_of_a_model_route_escapes_the_audit() {
    let s = setup();
    let disguised = [
        "/v2/health/%2e%2e/models/iris/infer",
        "/v2/health/..%2Fmodels/iris/infer",
        "/v2/health/live/%2E%2E/%2E%2E/models/iris/infer",
        "/docs/%2e%2e/v2/models/iris/infer",
        "/docs/..%5Cv2/models/iris/infer",
        "/.well-known/%2e%2e/v2/models/iris/infer",
        "/openapi.json/../v2/models/iris/infer",
        "/inference.GRPCInferenceService/ServerLive/../../v2/models/iris/infer",
        "//v2//models//iris//infer",
        "/v2/./models/iris/./infer",
    ];
    for path in disguised {
        let reply = call_as(&s.app, Some(&s.alice), "POST", path, IRIS_ROW).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        let records = records(&s);
        let record = record_of(&records, &reply);
        assert_eq!(record.model.as_ref().unwrap().name, "iris", "{path}");
        assert_eq!(record.path.as_deref(), Some("/v2/models/iris/infer"), "{path}");
    }
    // Strict audit that cannot write: nothing is served, whatever the spelling.
    s.faults.fail_writes(true);
    let tripped = call_as(&s.app, Some(&s.alice), "POST", "/v2/models/iris/infer", IRIS_ROW).await;
    assert_eq!(tripped.status, StatusCode::SERVICE_UNAVAILABLE);
    for path in disguised {
        let reply = call_as(&s.app, Some(&s.alice), "POST", path, IRIS_ROW).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(reply.json().get("outputs").is_none(), "{path}");
    }
    // The real probes stay public and unaudited, and keep answering.
    let live = call_as(&s.app, None, "GET", "/v2/health/live", "").await;
    assert_eq!(live.status, StatusCode::OK);
}

/// Finding 3 (high): a CORS preflight skipped authentication, and gRPC answered an OPTIONS
/// ModelInfer. Under an ALLOW rule that names no identity, an anonymous caller got
/// predictions. Only POST reaches gRPC; a preflight is answered for REST routes only, by
/// the CORS layer, and never reaches a handler.
#[tokio::test]
async fn a_preflight_never_reaches_a_model() {
    const OPEN_GRPC: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: open, namespace: default}\nspec:\n  rules:\n  - to:\n    - operation:\n        paths: [\"/inference.GRPCInferenceService/*\", \"/v2/models/iris/*\"]\n";
    let preflight = [("origin", "https://app.example"), ("access-control-request-method", "POST")];
    for platform in [
        "{}",
        "cors: {allowedOrigins: ['https://app.example']}",
        "authentication: {requireToken: false}\ncors: {allowedOrigins: ['*']}",
    ] {
        let s = setup_with(platform, &[("open.yaml", OPEN_GRPC)], ServerConfig::default());
        let message = infer_message("iris", None);
        for method in ["OPTIONS", "GET", "PUT", "HEAD"] {
            let (code, text, headers) =
                grpc_call(&s.app, method, "ModelInfer", &message, None, &preflight).await;
            assert_ne!(code, Some(0), "{platform}: anonymous {method} ModelInfer was served: {text}");
            assert!(
                !headers.contains_key("access-control-allow-origin"),
                "{platform}: a gRPC route answered a preflight"
            );
        }
        // A REST preflight from an allowed origin is answered, with no prediction.
        let req = Request::options("/v2/models/iris/infer")
            .header("origin", "https://app.example")
            .header("access-control-request-method", "POST")
            .body(Body::from(IRIS_ROW))
            .unwrap();
        let reply = send(&s.app, req).await;
        if platform == "{}" {
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "no CORS configured: an OPTIONS like any other"
            );
        } else {
            assert_eq!(reply.status, StatusCode::NO_CONTENT, "{platform}");
            assert_eq!(reply.headers["access-control-allow-methods"], "POST");
            assert!(reply.body.is_empty());
        }
        // Anonymous POSTs are what they always were: 401 when tokens are required.
        let (code, _, _) = grpc_call(&s.app, "POST", "ModelInfer", &message, None, &[]).await;
        let expected = if platform.contains("requireToken: false") { 0 } else { 16 };
        assert_eq!(code, Some(expected), "{platform}");
    }
}

/// Finding 4 (high): a token verified under a namespace's own `RequestAuthentication` (its
/// own keys, the built-in issuer's name) was cached and then accepted for a model in
/// another namespace under the built-in issuer's rule. REST and gRPC.
#[tokio::test]
async fn a_namespace_issuer_never_applies_outside_its_namespace() {
    let key = palisade_identity::SigningKey::generate(palisade_identity::Algorithm::ES256).unwrap();
    let jwks = json!({"keys": [key.public_jwk()]}).to_string();
    let ra = format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: team-idp, namespace: team}}\nspec:\n  jwtRules:\n  - issuer: https://palisade.local\n    jwks: '{jwks}'\n"
    );
    let allow_all = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: all, namespace: palisade-system}\nspec:\n  rules: [{}]\n";
    let s = setup_with("{}", &[("ra.yaml", &ra), ("all.yaml", allow_all)], ServerConfig::default());
    let now = palisade_identity::authn::unix_now() as u64;
    let claims = json!({"iss": "https://palisade.local", "sub": "mallory", "aud": "palisade", "iat": now, "exp": now + 300});
    let forged = key.sign(claims.as_object().unwrap(), "JWT").unwrap();

    for _ in 0..2 {
        // In its own namespace the team's token works (and is cached)...
        let reply = call_as(&s.app, Some(&forged), "POST", "/v2/models/secret/infer", IRIS_ROW).await;
        assert_eq!(reply.status, StatusCode::OK);
        // ...and nowhere else, from the cache or not.
        for (method, uri, body) in [
            ("POST", "/v2/models/iris/infer", IRIS_ROW),
            ("GET", "/v2/models/iris", ""),
            ("GET", "/v2", ""),
            ("GET", "/manage/v1/policies", ""),
        ] {
            let reply = call_as(&s.app, Some(&forged), method, uri, body).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
        }
        let (code, _, _) =
            grpc_call(&s.app, "POST", "ModelInfer", &infer_message("iris", None), Some(&forged), &[]).await;
        assert_eq!(code, Some(16), "gRPC, model named in the message");
        let (code, _, _) =
            grpc_call(&s.app, "POST", "ModelInfer", &infer_message("secret", None), Some(&forged), &[]).await;
        assert_eq!(code, Some(0));
    }
    // A model that is not served, asked with the team's valid token: 404, not 401.
    let reply = call_as(&s.app, Some(&forged), "GET", "/v2/models/nothing-here", "").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

/// Finding 7 (medium): at the payload levels the issuer's `access_token` and the check
/// endpoint's `token` were stored in the audit trail. No credential reaches a record.
#[tokio::test]
async fn no_credential_reaches_the_audit_trail() {
    let s = setup_with(
        "audit: {minimumLevel: RequestResponse}\nauthorization: {admins: [alice@example.com]}",
        &[],
        ServerConfig::default(),
    );
    let issuer = s.app.state.security().issuer().unwrap().clone();
    let (account, secret) = issuer.create_account("team".parse().unwrap(), "batch".parse().unwrap()).unwrap();
    let form = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        account.client_id,
        secret.expose()
    );
    let req = Request::post("/oauth/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .unwrap();
    let issued = send(&s.app, req).await;
    assert_eq!(issued.status, StatusCode::OK, "{}", String::from_utf8_lossy(&issued.body));
    let access_token = issued.json()["access_token"].as_str().unwrap().to_owned();
    let check = json!({"model": "iris", "token": s.bob}).to_string();
    assert_eq!(
        call_as(&s.app, Some(&s.alice), "POST", "/manage/v1/check", check).await.status,
        StatusCode::OK
    );
    let with_secrets = json!({
        "inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}],
        "parameters": {"token": s.bob, "access_token": access_token, "client_secret": secret.expose()},
    })
    .to_string();
    assert_eq!(
        call_as(&s.app, Some(&s.alice), "POST", "/v2/models/iris/infer", with_secrets).await.status,
        StatusCode::OK
    );

    let mut trail = String::new();
    for entry in std::fs::read_dir(s.tmp.path().join("home/audit")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            trail.push_str(&std::fs::read_to_string(path).unwrap());
        }
    }
    assert!(trail.contains("/oauth/token") && trail.contains("/manage/v1/check"), "the requests are audited");
    assert!(trail.contains(palisade_audit::REDACTED), "the model request's payload was kept, redacted");
    for credential in [access_token.as_str(), s.bob.as_str(), s.alice.as_str(), secret.expose()] {
        let piece = &credential[credential.len() - 24..];
        assert!(!trail.contains(piece), "a credential reached the audit trail");
    }
}

/// A request body that notes whether anyone read it, and how much.
fn watched_body(size: usize) -> (Body, Arc<AtomicBool>, Arc<AtomicUsize>) {
    let touched = Arc::new(AtomicBool::new(false));
    let read = Arc::new(AtomicUsize::new(0));
    let (t, r) = (touched.clone(), read.clone());
    let chunks = (0..size.div_ceil(65536)).map(move |i| {
        t.store(true, Ordering::SeqCst);
        let n = 65536.min(size - i * 65536);
        r.fetch_add(n, Ordering::SeqCst);
        Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; n]))
    });
    (Body::from_stream(futures_util::stream::iter(chunks)), touched, read)
}

/// Finding 8 (medium): bodies were buffered before authentication; anonymous 31 MiB POSTs
/// took the server to 800 MB. Nobody reads a body before the request is authenticated and
/// authorized, and the bytes in flight have a budget: a body past it is thrown away as it
/// arrives, never held.
#[tokio::test]
async fn bodies_are_read_only_after_authorization_and_within_the_budget() {
    let s = setup_with(
        "{}",
        &[],
        ServerConfig { max_inflight_bytes: 3 * 1024 * 1024, ..ServerConfig::default() },
    );
    let size = 2 * 1024 * 1024;
    for (token, uri, expected) in [
        (None, "/v2/models/iris/infer", StatusCode::UNAUTHORIZED),
        (Some("not-a-token"), "/v2/models/iris/infer", StatusCode::UNAUTHORIZED),
        (Some(s.bob.as_str()), "/v2/models/iris/infer", StatusCode::FORBIDDEN),
        (Some(s.bob.as_str()), "/v2/models/nothing/infer", StatusCode::NOT_FOUND),
        (None, "/api/v1.0/predictions", StatusCode::UNAUTHORIZED),
        (None, "/inference.GRPCInferenceService/ModelInfer", StatusCode::UNAUTHORIZED),
        (None, "/manage/v1/policies", StatusCode::UNAUTHORIZED),
    ] {
        let (body, touched, _) = watched_body(size);
        let mut req =
            Request::builder().method(if uri.starts_with("/manage") { "PUT" } else { "POST" }).uri(uri);
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let reply = send(&s.app, req.body(body).unwrap()).await;
        let status = if uri.starts_with("/inference") {
            // gRPC refusals travel as HTTP 200 with a code; 16 is UNAUTHENTICATED.
            assert_eq!(reply.headers["grpc-status"], "16");
            StatusCode::UNAUTHORIZED
        } else {
            reply.status
        };
        assert_eq!(status, expected, "{uri}");
        assert!(!touched.load(Ordering::SeqCst), "{uri}: the body was read before the refusal");
    }
    // Two authorized requests at once, past the budget: the first holds its reservation
    // (its declared length, reserved before a byte is read) while its body trickles; the
    // second is refused before anything of it is read.
    let (sender, receiver) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
    let trickle = futures_util::stream::unfold(receiver, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
    });
    let hold = Request::post("/v2/models/iris/infer")
        .header("authorization", format!("Bearer {}", s.alice))
        .header(header::CONTENT_LENGTH, size.to_string())
        .body(Body::from_stream(trickle))
        .unwrap();
    let budget = s.app.state.body_budget().clone();
    let app = s.app.clone();
    let first = tokio::spawn(async move { send(&app, hold).await });
    sender.send(bytes::Bytes::from_static(b"{")).await.unwrap();
    for _ in 0..400 {
        if budget.in_use() >= size {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(budget.in_use(), size, "the first request reserved its declared length");
    let (second, _, read_second) = watched_body(size);
    let reply = send(
        &s.app,
        Request::post("/v2/models/iris/infer")
            .header("authorization", format!("Bearer {}", s.alice))
            .header(header::CONTENT_LENGTH, size.to_string())
            .body(second)
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", String::from_utf8_lossy(&reply.body));
    assert!(reply.headers.contains_key(header::RETRY_AFTER));
    // The refused body was thrown away as it came (so the client reads the 503 rather than a
    // reset), never held: the budget stayed with the first request alone.
    assert_eq!(read_second.load(Ordering::SeqCst), size);
    assert_eq!(budget.in_use(), size, "nothing of the refused body was reserved");
    // The same over gRPC: RESOURCE_EXHAUSTED.
    let (code, _, _) = grpc_call(&s.app, "POST", "ModelInfer", &vec![0u8; size], Some(&s.alice), &[]).await;
    assert_eq!(code, Some(8));
    drop(sender);
    let first = first.await.unwrap();
    assert_eq!(first.status, StatusCode::BAD_REQUEST, "the first body ended early: not JSON");
    assert_eq!(budget.in_use(), 0, "every reservation is given back");
}
