//! Authentication through the HTTP layer: 401/403 with RFC 6750 challenges, public paths,
//! Palisade's own issuer (client credentials), external issuers from the policy directory,
//! and hot reload of that directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use common::*;
use palisade_identity::{Algorithm, SigningKey};
use palisade_runtime::EngineConfig;
use palisade_server::{Platform, Registry, ServerConfig};
use serde_json::json;

/// A policy directory letting every authenticated caller through, so that these tests see
/// authentication's decisions only.
fn allow_authenticated() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("allow.yaml"),
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: any-authenticated, namespace: default}\nspec:\n  rules:\n  - from:\n    - source:\n        requestPrincipals: [\"*\"]\n",
    )
    .unwrap();
    dir
}

/// The platform of the seed's setup: its `RequestAuthentication` sits in namespace `api`,
/// where Istio's ingress gateway ran, and applies to every model.
fn gateway_api() -> Platform {
    Platform::parse(std::path::Path::new("platform.yaml"), "authentication: {gatewayNamespaces: [api]}\n")
        .unwrap()
}

fn iris(platform: Platform, policy_dir: Option<std::path::PathBuf>) -> (tempfile::TempDir, TestApp) {
    let (tmp, store) = store_with(&[("iris_lr_nozipmap", "iris", "1.0.0")]);
    let registry = Registry::load(&store).unwrap();
    let app = app_with(
        store.root(),
        registry,
        EngineConfig::default(),
        ServerConfig::default(),
        platform,
        policy_dir,
    );
    (tmp, app)
}

#[tokio::test]
async fn no_token_is_401_with_a_challenge() {
    let (_tmp, app) = iris(Platform::defaults(), None);
    for (method, uri) in [
        ("POST", "/v2/models/iris/infer"),
        ("GET", "/v2/models/iris"),
        ("GET", "/v2"),
        ("GET", "/v2/models/unknown"),
        ("POST", "/api/v1.0/predictions"),
        ("GET", "/no/such/path"),
    ] {
        let reply = call_as(&app, None, method, uri, IRIS_ROW).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
        assert_eq!(reply.headers[header::WWW_AUTHENTICATE], r#"Bearer realm="palisade""#);
        // Every protocol writes its own error body: V2's `error`, Seldon's `status.info`.
        let body = reply.json();
        let message = body["error"].as_str().or(body["status"]["info"].as_str()).unwrap();
        assert!(message.contains("authentication required"), "{method} {uri}: {body}");
    }
}

#[tokio::test]
async fn invalid_tokens_are_401_invalid_token() {
    let (_tmp, app) = iris(Platform::defaults(), None);
    let mut tampered = app.token.clone();
    tampered.pop();
    tampered.push(if app.token.ends_with('A') { 'B' } else { 'A' });
    for token in ["not-a-jwt", "a.b.c", tampered.as_str()] {
        let reply = call_as(&app, Some(token), "POST", "/v2/models/iris/infer", IRIS_ROW).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{token}");
        let challenge = reply.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(challenge.starts_with(r#"Bearer realm="palisade", error="invalid_token""#), "{challenge}");
    }
}

#[tokio::test]
async fn two_tokens_are_401() {
    let (_tmp, app) = iris(Platform::defaults(), None);
    let req = Request::post("/v2/models/iris/infer")
        .header("authorization", format!("Bearer {}", app.token))
        .header("authorization", format!("Bearer {}x", app.token))
        .body(Body::from(IRIS_ROW))
        .unwrap();
    let reply = send(&app, req).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.headers[header::WWW_AUTHENTICATE].to_str().unwrap().contains("invalid_request"));
}

#[tokio::test]
async fn public_paths_need_no_token() {
    let (_tmp, app) = iris(Platform::defaults(), None);
    for uri in [
        "/v2/health/live",
        "/v2/health/ready",
        "/openapi.json",
        "/docs/",
        "/.well-known/openid-configuration",
        "/.well-known/jwks.json",
    ] {
        let reply = call_as(&app, None, "GET", uri, "").await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}");
    }
    // A CORS preflight is no way around authentication: without an allowed origin it is an
    // OPTIONS like any other (401 without a token), on REST and gRPC routes alike.
    for path in ["/v2/models/iris/infer", "/inference.GRPCInferenceService/ModelInfer", "/v2/models/iris"] {
        let preflight = Request::options(path)
            .header("origin", "https://app.example")
            .header("access-control-request-method", "POST")
            .body(Body::empty())
            .unwrap();
        let reply = send(&app, preflight).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(!reply.headers.contains_key("access-control-allow-origin"), "{path}");
    }

    let private_docs = Platform::parse(std::path::Path::new("p.yaml"), "docs: {public: false}\n").unwrap();
    let (_tmp, app) = iris(private_docs, None);
    assert_eq!(call_as(&app, None, "GET", "/openapi.json", "").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&app, "GET", "/openapi.json", "").await.status, StatusCode::OK);
}

#[tokio::test]
async fn service_account_client_credentials() {
    let policies = allow_authenticated();
    let (_tmp, app) = iris(Platform::defaults(), Some(policies.path().to_owned()));
    let issuer = app.state.security().issuer().unwrap().clone();
    let (account, secret) =
        issuer.create_account("billing".parse().unwrap(), "billing-batch".parse().unwrap()).unwrap();

    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        account.client_id,
        secret.expose()
    ));
    let req = Request::post("/oauth/token")
        .header("authorization", format!("Basic {basic}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("grant_type=client_credentials"))
        .unwrap();
    let reply = send(&app, req).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    let body = reply.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    let token = body["access_token"].as_str().unwrap().to_owned();
    let reply = call_as(&app, Some(&token), "POST", "/v2/models/iris/infer", IRIS_ROW).await;
    assert_eq!(reply.status, StatusCode::OK);

    let form = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        account.client_id,
        secret.expose()
    );
    assert_eq!(
        send(&app, Request::post("/oauth/token").body(Body::from(form)).unwrap()).await.status,
        StatusCode::OK
    );

    let wrong = format!("grant_type=client_credentials&client_id={}&client_secret=wrong", account.client_id);
    let reply = send(&app, Request::post("/oauth/token").body(Body::from(wrong)).unwrap()).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.json()["error"], "invalid_client");
    let reply =
        send(&app, Request::post("/oauth/token").body(Body::from("grant_type=password&username=a")).unwrap())
            .await;
    assert_eq!(reply.json()["error"], "unsupported_grant_type");

    issuer.revoke_account(&account.namespace, &account.name).unwrap();
    let form = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        account.client_id,
        secret.expose()
    );
    assert_eq!(
        send(&app, Request::post("/oauth/token").body(Body::from(form)).unwrap()).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn discovery_and_keys_are_published() {
    let (_tmp, app) = iris(Platform::defaults(), None);
    let doc = call_as(&app, None, "GET", "/.well-known/openid-configuration", "").await.json();
    assert_eq!(doc["issuer"], "https://palisade.local");
    assert_eq!(doc["jwks_uri"], "https://palisade.local/.well-known/jwks.json");
    let keys = call_as(&app, None, "GET", "/.well-known/jwks.json", "").await.json();
    assert_eq!(keys["keys"][0]["kty"], "EC");
    assert!(keys["keys"][0].get("d").is_none(), "never the private part");
}

/// Keys rotated by the CLI (another process) are picked up by the running server.
#[tokio::test]
async fn rotated_keys_are_used_without_restart() {
    let policies = allow_authenticated();
    let (_tmp, app) = iris(Platform::defaults(), Some(policies.path().to_owned()));
    let home_identity = app.state.security().issuer().unwrap().clone();
    let cli =
        palisade_identity::LocalIssuer::open(home_identity.identity_dir(), home_identity.settings().clone())
            .unwrap();
    let old_token = app.token.clone();
    cli.rotate().unwrap();
    let new_token = cli
        .issue(palisade_identity::TokenRequest { subject: "alice".into(), ..Default::default() })
        .unwrap()
        .token
        .expose()
        .to_owned();
    app.state.security().sync_issuer_keys();
    assert_eq!(call_as(&app, Some(&new_token), "GET", "/v2/models/iris", "").await.status, StatusCode::OK);
    assert_eq!(
        call_as(&app, Some(&old_token), "GET", "/v2/models/iris", "").await.status,
        StatusCode::OK,
        "the old key stays for the overlap"
    );
}

fn seed_ra(jwks: &str) -> String {
    format!(
        r#"kind: RequestAuthentication
apiVersion: security.istio.io/v1beta1
metadata:
  name: enforce-jwt-for-apis
  namespace: api
spec:
  jwtRules:
    - audiences:
        - ml
      fromHeaders:
        - name: Authorization
          prefix: "Bearer "
      issuer: "https://idp.local/auth/realms/ML"
      jwks: '{jwks}'
"#
    )
}

fn external_token(key: &SigningKey, aud: &str) -> String {
    let now = palisade_identity::authn::unix_now() as u64;
    let claims = json!({"iss": "https://idp.local/auth/realms/ML", "sub": "person-a", "aud": aud, "iat": now, "exp": now + 300, "email": "alice@example.com"});
    key.sign(claims.as_object().unwrap(), "at+jwt").unwrap()
}

/// An Istio RequestAuthentication in the policy directory trusts an external issuer; its
/// audience rule gives 403 on mismatch, as Envoy does.
#[tokio::test]
async fn request_authentication_from_the_policy_dir() {
    let key = SigningKey::generate(Algorithm::RS256).unwrap();
    let dir = allow_authenticated();
    let jwks = json!({"keys": [key.public_jwk()]}).to_string();
    std::fs::write(dir.path().join("ra.yaml"), seed_ra(&jwks)).unwrap();
    let (_tmp, app) = iris(gateway_api(), Some(dir.path().to_owned()));

    let token = external_token(&key, "ml");
    assert_eq!(
        call_as(&app, Some(&token), "POST", "/v2/models/iris/infer", IRIS_ROW).await.status,
        StatusCode::OK
    );
    let wrong_aud = external_token(&key, "other");
    let reply = call_as(&app, Some(&wrong_aud), "POST", "/v2/models/iris/infer", IRIS_ROW).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let stranger = SigningKey::generate(Algorithm::RS256).unwrap();
    let reply =
        call_as(&app, Some(&external_token(&stranger, "ml")), "POST", "/v2/models/iris/infer", IRIS_ROW)
            .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

/// Finding 4 of the first security review: a `RequestAuthentication` in a namespace with no
/// served model became global. It applies to its own namespace only, unless the platform
/// names the namespace a gateway; in the root namespace it applies everywhere.
#[tokio::test]
async fn request_authentication_applies_only_where_it_is_scoped() {
    let key = SigningKey::generate(Algorithm::RS256).unwrap();
    let jwks = json!({"keys": [key.public_jwk()]}).to_string();
    let token = external_token(&key, "ml");
    for (namespace, platform, expected) in [
        ("api", Platform::defaults(), StatusCode::UNAUTHORIZED),
        ("other", Platform::defaults(), StatusCode::UNAUTHORIZED),
        ("api", gateway_api(), StatusCode::OK),
        ("default", Platform::defaults(), StatusCode::OK),
        ("palisade-system", Platform::defaults(), StatusCode::OK),
    ] {
        let dir = allow_authenticated();
        std::fs::write(
            dir.path().join("ra.yaml"),
            seed_ra(&jwks).replace("namespace: api", &format!("namespace: {namespace}")),
        )
        .unwrap();
        let (_tmp, app) = iris(platform, Some(dir.path().to_owned()));
        for (method, uri, body) in
            [("POST", "/v2/models/iris/infer", IRIS_ROW), ("GET", "/v2/models/iris", "")]
        {
            let reply = call_as(&app, Some(&token), method, uri, body).await;
            assert_eq!(reply.status, expected, "RequestAuthentication in {namespace}: {method} {uri}");
        }
    }
}

/// A valid change to the policy directory takes effect; an invalid one keeps the old rules
/// and is counted.
#[tokio::test]
async fn policy_dir_hot_reload() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let dir = allow_authenticated();
    let (_tmp, app) = iris(gateway_api(), Some(dir.path().to_owned()));
    let token = external_token(&key, "ml");
    assert_eq!(
        call_as(&app, Some(&token), "GET", "/v2/models/iris", "").await.status,
        StatusCode::UNAUTHORIZED
    );

    let jwks = json!({"keys": [key.public_jwk()]}).to_string();
    std::fs::write(dir.path().join("ra.yaml"), seed_ra(&jwks)).unwrap();
    assert!(app.state.security().reload_if_changed());
    assert_eq!(call_as(&app, Some(&token), "GET", "/v2/models/iris", "").await.status, StatusCode::OK);

    tokio::time::sleep(Duration::from_millis(20)).await;
    std::fs::write(dir.path().join("broken.yaml"), "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: b}\nspec:\n  jwtRulez: []\n").unwrap();
    assert!(!app.state.security().reload_if_changed());
    assert_eq!(app.state.security().reload_failures().get(), 1);
    assert_eq!(
        call_as(&app, Some(&token), "GET", "/v2/models/iris", "").await.status,
        StatusCode::OK,
        "old rules kept"
    );

    std::fs::remove_file(dir.path().join("broken.yaml")).unwrap();
    std::fs::remove_file(dir.path().join("ra.yaml")).unwrap();
    assert!(app.state.security().reload_if_changed());
    assert_eq!(
        call_as(&app, Some(&token), "GET", "/v2/models/iris", "").await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// With `requireToken: false` (Istio's behaviour), a request without a token passes
/// authentication and authorization decides: the owner default refuses it (403), an
/// ALLOW-everything policy lets it through. A bad token is still refused (401).
#[tokio::test]
async fn optional_tokens_when_the_platform_says_so() {
    let platform =
        Platform::parse(std::path::Path::new("p.yaml"), "authentication: {requireToken: false}\n").unwrap();
    let (_tmp, app) = iris(platform.clone(), None);
    assert_eq!(call_as(&app, None, "GET", "/v2/models/iris", "").await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        call_as(&app, Some("garbage"), "GET", "/v2/models/iris", "").await.status,
        StatusCode::UNAUTHORIZED
    );

    let open = tempfile::tempdir().unwrap();
    std::fs::write(
        open.path().join("open.yaml"),
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: open, namespace: default}\nspec:\n  rules: [{}]\n",
    )
    .unwrap();
    let (_tmp, app) = iris(platform, Some(open.path().to_owned()));
    assert_eq!(call_as(&app, None, "GET", "/v2/models/iris", "").await.status, StatusCode::OK);
}

#[tokio::test]
async fn failures_are_counted_by_reason() {
    let (_tmp, app) = iris(Platform::defaults(), None);
    call_as(&app, None, "GET", "/v2/models/iris", "").await;
    call_as(&app, Some("x.y.z"), "GET", "/v2/models/iris", "").await;
    let admin = palisade_server::admin_app(app.state.clone());
    let res = tower::ServiceExt::oneshot(admin, Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(
        http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes().to_vec(),
    )
    .unwrap();
    assert!(text.contains(r#"palisade_authn_failures_total{model="iris",reason="missing"} 1"#), "{text}");
    assert!(text.contains(r#"palisade_authn_failures_total{model="iris",reason="malformed"} 1"#), "{text}");
    // The model label comes from the route, known before authentication: only served
    // models' names, and one fixed label for everything else (no raw path text).
    call_as(&app, None, "GET", "/v2/models/no-such-model-x1", "").await;
    let res = tower::ServiceExt::oneshot(
        palisade_server::admin_app(app.state.clone()),
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await
    .unwrap();
    let text = String::from_utf8(
        http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes().to_vec(),
    )
    .unwrap();
    assert!(text.contains(r#"palisade_authn_failures_total{model="-",reason="missing"} 1"#), "{text}");
    assert!(!text.contains("no-such-model-x1"), "{text}");
    assert!(!text.contains(&app.token), "no token in metrics");
}
