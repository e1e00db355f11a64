//! Authorization through the HTTP layer: the seed's Istio AuthorizationPolicy unchanged,
//! Palisade's owner default, the platform's root-namespace DENY, path normalization
//! bypass attempts, dry-run, and the 403 body.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use palisade_runtime::EngineConfig;
use palisade_server::{Platform, Registry, ServerConfig};
use serde_json::json;

/// The seed platform's policy, exactly as it was applied with Istio.
const SEED_POLICY: &str = r#"kind: AuthorizationPolicy
apiVersion: security.istio.io/v1beta1
metadata:
  name: allow-to-example-model
  namespace: example-model
spec:
  action: ALLOW
  rules:
    - when:
        - key: "request.auth.claims[email]"
          values:
            - person_a@company.com
            - person_b@company.com
            - service_account_a@company.com
    - to:
        - operation:
            ports:
              - "443"
"#;

const MANIFEST: &str = "name: example\nversion: \"1\"\nnamespace: example-model\nlabels: {team: fraud}\nowners: [owner@company.com, group:fraud-analysts, serviceaccount:billing/billing-batch]\nmodel:\n  path: model.onnx\n  format: onnx\n";

const ROW: &str = r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#;

struct Setup {
    _tmp: tempfile::TempDir,
    _policies: tempfile::TempDir,
    app: TestApp,
}

fn setup(policies: &[(&str, &str)], platform: &str) -> Setup {
    let (tmp, store) = store_with_manifest("iris_lr_nozipmap", MANIFEST);
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in policies {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let platform = Platform::parse(Path::new("platform.yaml"), platform).unwrap();
    let registry = Registry::load(&store).unwrap();
    let app = app_with(
        store.root(),
        registry,
        EngineConfig::default(),
        ServerConfig::default(),
        platform,
        Some(dir.path().to_owned()),
    );
    Setup { _tmp: tmp, _policies: dir, app }
}

fn token(app: &TestApp, claims: serde_json::Value) -> String {
    token_with(app.state.security(), "someone", claims)
}

async fn infer(app: &TestApp, token: &str) -> StatusCode {
    call_as(app, Some(token), "POST", "/v2/models/example/infer", ROW).await.status
}

#[tokio::test]
async fn the_seed_policy_works_unchanged() {
    let s = setup(&[("seed.yaml", SEED_POLICY)], "");
    let app = &s.app;
    for email in ["person_a@company.com", "person_b@company.com", "service_account_a@company.com"] {
        assert_eq!(infer(app, &token(app, json!({"email": email}))).await, StatusCode::OK, "{email}");
    }
    for email in ["person_c@company.com", "PERSON_A@company.com.evil", "owner@company.com"] {
        assert_eq!(infer(app, &token(app, json!({"email": email}))).await, StatusCode::FORBIDDEN, "{email}");
    }
    assert_eq!(infer(app, &token(app, json!({}))).await, StatusCode::FORBIDDEN, "no email claim");
    let reply = call_as(app, None, "POST", "/v2/models/example/infer", ROW).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "no token");
}

#[tokio::test]
async fn denial_body_is_rbac_access_denied() {
    let s = setup(&[("seed.yaml", SEED_POLICY)], "");
    let app = &s.app;
    let stranger = token(app, json!({"email": "person_c@company.com"}));
    let reply = call_as(app, Some(&stranger), "POST", "/v2/models/example/infer", ROW).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    // Istio's text, in the V2 error body every V2 client reads.
    assert_eq!(reply.json(), json!({"error": "RBAC: access denied"}));
    assert_eq!(reply.headers[header::CONTENT_TYPE], "application/json");
    let req = Request::post("/v2/models/example/infer")
        .header("authorization", format!("Bearer {stranger}"))
        .header("accept", "application/json")
        .body(Body::from(ROW))
        .unwrap();
    let reply = send(app, req).await;
    assert_eq!(reply.json(), json!({"error": "RBAC: access denied"}));
}

/// Without an ALLOW policy only the owners listed in palisade.yaml may call.
#[tokio::test]
async fn owner_default() {
    let s = setup(&[], "");
    let app = &s.app;
    let allowed = [
        json!({"email": "owner@company.com", "email_verified": true}),
        json!({"email": "owner@COMPANY.com"}),
        json!({"groups": ["marketing", "fraud-analysts"]}),
        json!({"groups": "fraud-analysts"}),
    ];
    for claims in allowed {
        assert_eq!(infer(app, &token(app, claims.clone())).await, StatusCode::OK, "{claims}");
    }
    let denied = [
        json!({"email": "owner@company.com", "email_verified": false}),
        json!({"email": "Owner@company.com"}),
        json!({"email": "someone@company.com"}),
        json!({"groups": ["fraud-analysts-2"]}),
        json!({"group": "fraud-analysts"}),
        json!({}),
    ];
    for claims in denied {
        assert_eq!(infer(app, &token(app, claims.clone())).await, StatusCode::FORBIDDEN, "{claims}");
    }
    let issuer = app.state.security().issuer().unwrap().clone();
    let (billing, _) =
        issuer.create_account("billing".parse().unwrap(), "billing-batch".parse().unwrap()).unwrap();
    let (other, _) = issuer.create_account("billing".parse().unwrap(), "reporting".parse().unwrap()).unwrap();
    let sa_token = issuer.issue_for(&billing).unwrap().token.expose().to_owned();
    assert_eq!(infer(app, &sa_token).await, StatusCode::OK, "service-account owner");
    let other_token = issuer.issue_for(&other).unwrap().token.expose().to_owned();
    assert_eq!(infer(app, &other_token).await, StatusCode::FORBIDDEN);
    // A token claiming the service account's subject from elsewhere is not the service
    // account: only Palisade's own issuer vouches for it.
    let forged_sub = token(app, json!({}));
    assert_eq!(infer(app, &forged_sub).await, StatusCode::FORBIDDEN);
}

/// An explicit ALLOW policy replaces the owner default.
#[tokio::test]
async fn explicit_policy_replaces_the_owner_default() {
    let s = setup(&[("seed.yaml", SEED_POLICY)], "");
    let owner = token(&s.app, json!({"email": "owner@company.com"}));
    assert_eq!(infer(&s.app, &owner).await, StatusCode::FORBIDDEN);
}

/// A platform DENY in the root namespace beats the model owner's ALLOW.
#[tokio::test]
async fn root_namespace_deny_beats_owners() {
    let deny = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-contractors, namespace: platform}
spec:
  action: DENY
  rules:
    - when:
        - key: request.auth.claims[groups]
          values: [contractors]
"#;
    let s = setup(
        &[("seed.yaml", SEED_POLICY), ("deny.yaml", deny)],
        "authorization: {rootNamespace: platform}\n",
    );
    let app = &s.app;
    assert_eq!(infer(app, &token(app, json!({"email": "person_a@company.com"}))).await, StatusCode::OK);
    let contractor = token(app, json!({"email": "person_a@company.com", "groups": ["contractors"]}));
    assert_eq!(infer(app, &contractor).await, StatusCode::FORBIDDEN);
}

/// Paths are normalized before policies match: encoded and dot-segment variants of a
/// denied path are denied, and `%00` is a 400.
#[tokio::test]
async fn path_normalization_defeats_bypasses() {
    let deny_infer = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-infer, namespace: example-model}
spec:
  action: DENY
  rules:
    - to:
        - operation:
            paths: ["/v2/models/example/infer"]
"#;
    let s = setup(&[("deny.yaml", deny_infer)], "");
    let app = &s.app;
    let owner = token(app, json!({"email": "owner@company.com"}));
    assert_eq!(call_as(app, Some(&owner), "GET", "/v2/models/example", "").await.status, StatusCode::OK);
    for path in [
        "/v2/models/example/infer",
        "/v2/models/example/./infer",
        "/v2//models/example/infer",
        "/v2/models/other/../example/infer",
        "/v2/models/example/%2E/infer",
        "/v2/models/example%2Finfer",
        "/v2/models/example/x/%2e%2e/infer",
        "/v2/models/example/x/..%2Finfer",
        "/v2/models/example%5Cinfer",
    ] {
        let reply = call_as(app, Some(&owner), "POST", path, ROW).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}: {}", String::from_utf8_lossy(&reply.body));
    }
    let reply = call_as(app, Some(&owner), "POST", "/v2/models/example/infer%00", ROW).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

/// `istio.io/dry-run` policies are evaluated, logged and counted, never enforced.
#[tokio::test]
async fn dry_run_is_not_enforced() {
    let dry_deny = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: would-deny-everyone
  namespace: example-model
  annotations: {"istio.io/dry-run": "true"}
spec:
  action: DENY
  rules: [{}]
"#;
    let s = setup(&[("dry.yaml", dry_deny)], "");
    let app = &s.app;
    assert_eq!(infer(app, &token(app, json!({"email": "owner@company.com"}))).await, StatusCode::OK);
}

#[tokio::test]
async fn selectors_match_model_labels() {
    let by_label = |team: &str| {
        format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: by-label, namespace: example-model}}\nspec:\n  selector: {{matchLabels: {{team: {team}}}}}\n  rules:\n  - when:\n    - key: request.auth.claims[email]\n      values: [analyst@company.com]\n"
        )
    };
    let s = setup(&[("p.yaml", &by_label("fraud"))], "");
    assert_eq!(infer(&s.app, &token(&s.app, json!({"email": "analyst@company.com"}))).await, StatusCode::OK);
    let s = setup(&[("p.yaml", &by_label("marketing"))], "");
    assert_eq!(
        infer(&s.app, &token(&s.app, json!({"email": "analyst@company.com"}))).await,
        StatusCode::FORBIDDEN,
        "the policy selects other models, so the owner default applies"
    );
}

#[tokio::test]
async fn decisions_are_counted_by_policy() {
    let s = setup(&[("seed.yaml", SEED_POLICY)], "");
    let app = &s.app;
    infer(app, &token(app, json!({"email": "person_a@company.com"}))).await;
    infer(app, &token(app, json!({"email": "person_c@company.com"}))).await;
    let admin = palisade_server::admin_app(app.state.clone());
    let res = tower::ServiceExt::oneshot(admin, Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(
        http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes().to_vec(),
    )
    .unwrap();
    assert!(text.contains(r#"palisade_authz_decisions_total{decision="allow",policy="example-model/allow-to-example-model"} 1"#), "{text}");
    assert!(
        text.contains(r#"palisade_authz_decisions_total{decision="deny",policy="no-matching-allow"} 1"#),
        "{text}"
    );
}
