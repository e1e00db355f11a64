//! Owner self-service through the management API: owners change their own models' policies,
//! nobody else's; administrators everything; explain and check.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use axum::http::StatusCode;
use common::*;
use palisade_runtime::EngineConfig;
use palisade_server::{Platform, Registry, ServerConfig};
use serde_json::json;

const MANIFEST: &str = "name: example\nversion: \"1\"\nnamespace: example-model\nowners: [owner@company.com]\nmodel:\n  path: model.onnx\n  format: onnx\n";
const ROW: &str = r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#;

fn allow_email(namespace: &str, name: &str, email: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  rules:\n  - when:\n    - key: request.auth.claims[email]\n      values: [{email}]\n"
    )
}

struct Setup {
    _tmp: tempfile::TempDir,
    _platform_dir: tempfile::TempDir,
    app: TestApp,
    owner: String,
    stranger: String,
    admin: String,
}

fn setup() -> Setup {
    let (tmp, store) = store_with_manifest("iris_lr_nozipmap", MANIFEST);
    let platform_dir = tempfile::tempdir().unwrap();
    std::fs::write(
        platform_dir.path().join("platform.yaml"),
        allow_email("example-model", "platform-owned", "auditor@company.com"),
    )
    .unwrap();
    let platform =
        Platform::parse(Path::new("p.yaml"), "authorization:\n  admins: [group:platform-admins]\n").unwrap();
    let registry = Registry::load(&store).unwrap();
    let app = app_with(
        store.root(),
        registry,
        EngineConfig::default(),
        ServerConfig::default(),
        platform,
        Some(platform_dir.path().to_owned()),
    );
    let security = app.state.security().clone();
    let owner = token_with(&security, "o", json!({"email": "owner@company.com"}));
    let stranger = token_with(&security, "s", json!({"email": "stranger@company.com"}));
    let admin = token_with(&security, "a", json!({"groups": ["platform-admins"]}));
    Setup { _tmp: tmp, _platform_dir: platform_dir, app, owner, stranger, admin }
}

#[tokio::test]
async fn owners_manage_their_models_policies() {
    let s = setup();
    let analyst = token_with(s.app.state.security(), "x", json!({"email": "analyst@company.com"}));
    assert_eq!(
        call_as(&s.app, Some(&analyst), "POST", "/v2/models/example/infer", ROW).await.status,
        StatusCode::FORBIDDEN
    );

    let policy = allow_email("example-model", "analysts", "analyst@company.com");
    let reply = call_as(&s.app, Some(&s.owner), "PUT", "/manage/v1/policies", policy.clone()).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(
        call_as(&s.app, Some(&analyst), "POST", "/v2/models/example/infer", ROW).await.status,
        StatusCode::OK
    );
    let reply = call_as(&s.app, Some(&s.owner), "PUT", "/manage/v1/policies", policy).await;
    assert_eq!(reply.status, StatusCode::OK, "replaced");

    let listed = call_as(&s.app, Some(&s.owner), "GET", "/manage/v1/policies", "").await.json();
    let names: Vec<&str> =
        listed["policies"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"analysts") && names.contains(&"platform-owned"), "{names:?}");

    let reply =
        call_as(&s.app, Some(&s.owner), "DELETE", "/manage/v1/policies/example-model/analysts", "").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        call_as(&s.app, Some(&analyst), "POST", "/v2/models/example/infer", ROW).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn strangers_cannot_change_policies() {
    let s = setup();
    let policy = allow_email("example-model", "mine-now", "stranger@company.com");
    let reply = call_as(&s.app, Some(&s.stranger), "PUT", "/manage/v1/policies", policy).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(
        reply.json()["error"].as_str().unwrap().contains("you own no model in namespace `example-model`"),
        "{}",
        reply.json()
    );
    assert_eq!(
        call_as(&s.app, Some(&s.stranger), "POST", "/v2/models/example/infer", ROW).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call_as(&s.app, None, "GET", "/manage/v1/policies", "").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn root_namespace_and_empty_selections_are_for_admins() {
    let s = setup();
    let root = allow_email("palisade-system", "everyone-in", "owner@company.com");
    assert_eq!(
        call_as(&s.app, Some(&s.owner), "PUT", "/manage/v1/policies", root.clone()).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call_as(&s.app, Some(&s.admin), "PUT", "/manage/v1/policies", root).await.status,
        StatusCode::CREATED
    );
    let elsewhere = allow_email("no-models-here", "p", "owner@company.com");
    assert_eq!(
        call_as(&s.app, Some(&s.owner), "PUT", "/manage/v1/policies", elsewhere).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn platform_policies_are_read_only_here() {
    let s = setup();
    let clash = allow_email("example-model", "platform-owned", "owner@company.com");
    assert_eq!(
        call_as(&s.app, Some(&s.owner), "PUT", "/manage/v1/policies", clash).await.status,
        StatusCode::CONFLICT
    );
    let reply =
        call_as(&s.app, Some(&s.admin), "DELETE", "/manage/v1/policies/example-model/platform-owned", "")
            .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn invalid_policies_are_400_with_the_field() {
    let s = setup();
    let bad = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: bad, namespace: example-model}\nspec:\n  rules:\n  - when:\n    - key: request.auth.claim[email]\n      values: [x]\n";
    let reply = call_as(&s.app, Some(&s.owner), "PUT", "/manage/v1/policies", bad).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let error = reply.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains(":7:") && error.contains("spec.rules[0].when[0].key"), "{error}");
}

#[tokio::test]
async fn explain_and_check() {
    let s = setup();
    let reply = call_as(&s.app, Some(&s.owner), "GET", "/manage/v1/models/example/explain", "").await;
    assert_eq!(reply.status, StatusCode::OK);
    let text = reply.json()["text"].to_string();
    assert!(text.contains("example-model/platform-owned"), "{text}");
    assert!(text.contains("auditor@company.com"), "{text}");
    assert_eq!(
        call_as(&s.app, Some(&s.stranger), "GET", "/manage/v1/models/example/explain", "").await.status,
        StatusCode::FORBIDDEN
    );

    let check = |claims: serde_json::Value| json!({"model": "example", "claims": claims}).to_string();
    let reply = call_as(
        &s.app,
        Some(&s.owner),
        "POST",
        "/manage/v1/check",
        check(json!({"email": "auditor@company.com"})),
    )
    .await
    .json();
    assert_eq!(reply["allowed"], true);
    assert!(reply["reason"].as_str().unwrap().contains("example-model/platform-owned"), "{reply}");
    let reply = call_as(
        &s.app,
        Some(&s.owner),
        "POST",
        "/manage/v1/check",
        check(json!({"email": "nobody@company.com"})),
    )
    .await
    .json();
    assert_eq!(reply["allowed"], false);

    let auditor = token_with(s.app.state.security(), "aud", json!({"email": "auditor@company.com"}));
    let body = json!({"model": "example", "token": auditor}).to_string();
    assert_eq!(
        call_as(&s.app, Some(&s.owner), "POST", "/manage/v1/check", body).await.json()["allowed"],
        true
    );
    let body = json!({"model": "example", "token": "not-a-token"}).to_string();
    let reply = call_as(&s.app, Some(&s.owner), "POST", "/manage/v1/check", body).await.json();
    assert_eq!(reply["allowed"], false);
    assert_eq!(reply["status"], 401);
}

const LAB_BOB: &str = "name: bobmodel\nversion: \"1\"\nnamespace: lab\nowners: [bob@lab.example]\nmodel:\n  path: model.onnx\n  format: onnx\n";
const LAB_ALICE: &str = "name: alicesecret\nversion: \"1\"\nnamespace: lab\nowners: [alice@lab.example]\nmodel:\n  path: model.onnx\n  format: onnx\n";

fn lab_app(store: &palisade_bundle::Store) -> TestApp {
    let platform =
        Platform::parse(Path::new("p.yaml"), "authorization:\n  admins: [group:platform-admins]\n").unwrap();
    app_with(
        store.root(),
        Registry::load(store).unwrap(),
        EngineConfig::default(),
        ServerConfig::default(),
        platform,
        None,
    )
}

fn lab_tokens(app: &TestApp) -> (String, String, String, String) {
    let security = app.state.security();
    (
        token_with(security, "bob", json!({"email": "bob@lab.example"})),
        token_with(security, "alice", json!({"email": "alice@lab.example"})),
        token_with(security, "eve", json!({"email": "eve@elsewhere.example"})),
        token_with(security, "admin", json!({"email": "root@lab.example", "groups": ["platform-admins"]})),
    )
}

/// The first review's finding 5 and the second's finding 6: an owner's policy reaches only
/// the owner's models, including models deployed after it was applied, and nobody replaces
/// or deletes another owner's policy by reusing its name.
#[tokio::test]
async fn an_owners_policy_stays_the_owners() {
    let (tmp, store) = store_with_manifests("iris_lr_nozipmap", &[LAB_BOB]);
    let app = lab_app(&store);
    let (bob, alice, eve, admin) = lab_tokens(&app);
    let open = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: open, namespace: lab}\nspec:\n  rules: [{}]\n";
    let reply = call_as(&app, Some(&bob), "PUT", "/manage/v1/policies", open).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(
        call_as(&app, Some(&eve), "POST", "/v2/models/bobmodel/infer", ROW).await.status,
        StatusCode::OK
    );

    // Alice deploys a model into the same namespace later (a new build, a restart).
    drop(app);
    add_bundles(&store, tmp.path(), "iris_lr_nozipmap", &[LAB_ALICE]);
    let app = lab_app(&store);
    assert_eq!(
        call_as(&app, Some(&eve), "POST", "/v2/models/alicesecret/infer", ROW).await.status,
        StatusCode::FORBIDDEN,
        "bob's selector-free ALLOW does not reach alice's model"
    );
    assert_eq!(
        call_as(&app, Some(&alice), "POST", "/v2/models/alicesecret/infer", ROW).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call_as(&app, Some(&eve), "POST", "/v2/models/bobmodel/infer", ROW).await.status,
        StatusCode::OK
    );

    // Bob guards his model with a DENY; alice cannot replace it under its name, nor learn
    // that it exists by deleting it.
    let guard = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: guard, namespace: lab}\nspec:\n  action: DENY\n  rules:\n  - when:\n    - key: request.auth.claims[email]\n      values: [eve@elsewhere.example]\n";
    assert_eq!(
        call_as(&app, Some(&bob), "PUT", "/manage/v1/policies", guard).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        call_as(&app, Some(&eve), "POST", "/v2/models/bobmodel/infer", ROW).await.status,
        StatusCode::FORBIDDEN
    );
    let harmless = guard.replace("action: DENY", "action: AUDIT");
    let reply = call_as(&app, Some(&alice), "PUT", "/manage/v1/policies", harmless).await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(
        call_as(&app, Some(&eve), "POST", "/v2/models/bobmodel/infer", ROW).await.status,
        StatusCode::FORBIDDEN
    );
    let hidden = call_as(&app, Some(&alice), "DELETE", "/manage/v1/policies/lab/guard", "").await;
    let missing = call_as(&app, Some(&alice), "DELETE", "/manage/v1/policies/lab/no-such-policy", "").await;
    assert_eq!((hidden.status, missing.status), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
    assert_eq!(
        hidden.json()["error"].as_str().unwrap().replace("guard", "X"),
        missing.json()["error"].as_str().unwrap().replace("no-such-policy", "X")
    );

    // Listings show each owner the policies that reach their models; file paths are for
    // administrators.
    let names = |reply: &Reply| -> Vec<String> {
        reply.json()["policies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let of_alice = call_as(&app, Some(&alice), "GET", "/manage/v1/policies", "").await;
    assert!(names(&of_alice).is_empty(), "{:?}", names(&of_alice));
    let of_bob = call_as(&app, Some(&bob), "GET", "/manage/v1/policies", "").await;
    assert_eq!(names(&of_bob), ["guard", "open"]);
    assert!(of_bob.json()["policies"][0].get("file").is_none(), "no server paths for owners");
    assert_eq!(of_bob.json()["policies"][0]["creator"], "https://palisade.local/bob");
    let of_eve = call_as(&app, Some(&eve), "GET", "/manage/v1/policies", "").await;
    assert!(names(&of_eve).is_empty());
    let of_admin = call_as(&app, Some(&admin), "GET", "/manage/v1/policies", "").await;
    assert!(of_admin.json()["policies"][0]["file"].as_str().is_some());

    // The creator deletes; the record of the change names who did it, not only iss/sub.
    assert_eq!(
        call_as(&app, Some(&bob), "DELETE", "/manage/v1/policies/lab/guard", "").await.status,
        StatusCode::OK
    );
    let changes: Vec<_> =
        palisade_audit::query(&store.root().join("audit"), palisade_audit::Filter::default())
            .unwrap()
            .map(Result::unwrap)
            .filter(|r| r.config.is_some())
            .collect();
    let last = changes.last().unwrap();
    assert_eq!(last.email.as_deref(), Some("bob@lab.example"));
    assert!(last.jwt.as_ref().and_then(|j| j.jti.as_ref()).is_some());
    assert!(last.request_id.is_some());
}

/// A co-owner of a model an owner policy reaches may delete it; explain shows, for every
/// version, the policies that apply.
#[tokio::test]
async fn co_owners_may_delete_and_explain_covers_every_version() {
    let shared = "name: shared\nversion: \"1\"\nnamespace: lab\nowners: [bob@lab.example, alice@lab.example]\nmodel:\n  path: model.onnx\n  format: onnx\n";
    let shared_v2 = "name: shared\nversion: \"2\"\nnamespace: lab\nowners: [alice@lab.example]\nmodel:\n  path: model.onnx\n  format: onnx\n";
    let (_tmp, store) = store_with_manifests("iris_lr_nozipmap", &[shared, shared_v2]);
    let app = lab_app(&store);
    let (bob, alice, eve, _) = lab_tokens(&app);
    let open = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: open, namespace: lab}\nspec:\n  rules: [{}]\n";
    assert_eq!(
        call_as(&app, Some(&bob), "PUT", "/manage/v1/policies", open).await.status,
        StatusCode::CREATED
    );
    // Bob owns version 1 only: his policy opens version 1, not version 2.
    assert_eq!(
        call_as(&app, Some(&eve), "POST", "/v2/models/shared/versions/1/infer", ROW).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call_as(&app, Some(&eve), "POST", "/v2/models/shared/versions/2/infer", ROW).await.status,
        StatusCode::FORBIDDEN
    );
    let explained = call_as(&app, Some(&alice), "GET", "/manage/v1/models/shared/explain", "").await.json();
    let versions = explained["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["policies"].as_array().unwrap().len(), 1, "{explained}");
    assert_eq!(versions[1]["policies"].as_array().unwrap().len(), 0, "{explained}");
    assert_eq!(
        call_as(&app, Some(&eve), "GET", "/manage/v1/models/shared/explain", "").await.status,
        StatusCode::FORBIDDEN
    );
    // Alice co-owns what the policy reaches: she may delete it.
    assert_eq!(
        call_as(&app, Some(&alice), "DELETE", "/manage/v1/policies/lab/open", "").await.status,
        StatusCode::OK
    );
    assert_eq!(
        call_as(&app, Some(&eve), "POST", "/v2/models/shared/versions/1/infer", ROW).await.status,
        StatusCode::FORBIDDEN
    );
}

/// Issue 25, item 2: a policy for a colleague that would lock the owner out is shown as such
/// and needs confirmation; a dry run changes nothing; the impact names who gains and loses.
#[tokio::test]
async fn policy_changes_show_who_gains_and_loses_access() {
    let (_tmp, store) = store_with_manifests("iris_lr_nozipmap", &[LAB_BOB, LAB_ALICE]);
    let app = lab_app(&store);
    let (bob, alice, eve, _admin) = lab_tokens(&app);
    let carol = token_with(app.state.security(), "carol", json!({"email": "carol@lab.example"}));
    let infer = |token: String| {
        let app = &app;
        async move { call_as(app, Some(&token), "POST", "/v2/models/bobmodel/infer", ROW).await.status }
    };
    let only_carol = allow_email("lab", "carol-may-call", "carol@lab.example");

    // The dry run: who gains and who loses, and nothing changes.
    let preview =
        call_as(&app, Some(&bob), "PUT", "/manage/v1/policies?dryRun=true", only_carol.clone()).await;
    assert_eq!(preview.status, StatusCode::OK, "{}", String::from_utf8_lossy(&preview.body));
    let preview = preview.json();
    assert_eq!(preview["dry_run"], true);
    assert_eq!(preview["selects"], json!(["lab/alicesecret:1", "lab/bobmodel:1"]));
    assert_eq!(preview["owners_lose_access"], true);
    let impact = preview["impact"].as_array().unwrap();
    assert_eq!(impact.len(), 1, "bob's policy reaches bob's model only: {impact:?}");
    assert_eq!(impact[0]["model"], "lab/bobmodel:1");
    assert_eq!(impact[0]["gains"], json!(["carol@lab.example"]));
    let loses: Vec<&str> =
        impact[0]["loses"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(loses.contains(&"bob@lab.example"), "{loses:?}");
    assert!(
        loses.iter().any(|l| l.starts_with("you (")),
        "the caller is judged by their own token: {loses:?}"
    );
    assert!(impact[0]["owners_losing"].as_array().unwrap().contains(&json!("bob@lab.example")));
    assert_eq!(infer(carol.clone()).await, StatusCode::FORBIDDEN, "a dry run changes nothing");
    assert_eq!(infer(bob.clone()).await, StatusCode::OK);

    // Without confirmation the owner is not locked out.
    let refused = call_as(&app, Some(&bob), "PUT", "/manage/v1/policies", only_carol.clone()).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    let message = refused.json()["error"].as_str().unwrap().to_owned();
    assert!(message.contains("lab/bobmodel:1") && message.contains("confirm=true"), "{message}");
    assert_eq!(infer(carol.clone()).await, StatusCode::FORBIDDEN);
    assert_eq!(infer(bob.clone()).await, StatusCode::OK);

    // A policy that keeps the owner needs no confirmation.
    let keeping = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: carol-may-call, namespace: lab}\nspec:\n  selector:\n    matchLabels: {}\n  rules:\n  - when:\n    - key: request.auth.claims[email]\n      values: [carol@lab.example, bob@lab.example]\n";
    let applied = call_as(&app, Some(&bob), "PUT", "/manage/v1/policies", keeping).await;
    assert_eq!(applied.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&applied.body));
    assert_eq!(applied.json()["impact"][0]["gains"], json!(["carol@lab.example"]));
    assert_eq!(infer(carol.clone()).await, StatusCode::OK);
    assert_eq!(infer(bob.clone()).await, StatusCode::OK);
    assert_eq!(infer(eve.clone()).await, StatusCode::FORBIDDEN);
    assert_eq!(
        call_as(&app, Some(&alice), "POST", "/v2/models/alicesecret/infer", ROW).await.status,
        StatusCode::OK,
        "alice's model in the same namespace is untouched"
    );

    // Replacing it by the owner-dropping one, confirmed: bob said so.
    let confirmed = call_as(&app, Some(&bob), "PUT", "/manage/v1/policies?confirm=true", only_carol).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", String::from_utf8_lossy(&confirmed.body));
    assert_eq!(infer(bob.clone()).await, StatusCode::FORBIDDEN);

    // Deleting it gives bob his access back (and takes carol's): the impact says so.
    let deleted =
        call_as(&app, Some(&bob), "DELETE", "/manage/v1/policies/lab/carol-may-call?dryRun=true", "").await;
    assert_eq!(deleted.status, StatusCode::OK);
    let impact = &deleted.json()["impact"][0];
    assert!(impact["gains"].as_array().unwrap().contains(&json!("bob@lab.example")), "{impact}");
    assert_eq!(impact["loses"], json!(["carol@lab.example"]));
    assert_eq!(
        call_as(&app, Some(&bob), "DELETE", "/manage/v1/policies/lab/carol-may-call", "").await.status,
        StatusCode::OK
    );
    assert_eq!(infer(bob).await, StatusCode::OK);
    assert_eq!(infer(carol).await, StatusCode::FORBIDDEN);

    // Unknown or malformed flags are refused, not ignored.
    for query in ["dryrun=true", "dryRun=yes", "confirm=1"] {
        let reply = call_as(&app, Some(&alice), "PUT", &format!("/manage/v1/policies?{query}"), "x").await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
    }
}

/// `GET /manage/v1/models`: what is served, to those who own it or may call it.
#[tokio::test]
async fn served_models_are_listed_to_those_who_own_or_may_call_them() {
    let (_tmp, store) = store_with_manifests("iris_lr_nozipmap", &[LAB_BOB, LAB_ALICE]);
    let app = lab_app(&store);
    let (bob, _alice, eve, admin) = lab_tokens(&app);
    let names = |reply: serde_json::Value| -> Vec<String> {
        reply["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| format!("{}:{}", m["name"].as_str().unwrap(), m["version"].as_str().unwrap()))
            .collect()
    };
    let all = call_as(&app, Some(&admin), "GET", "/manage/v1/models", "").await;
    assert_eq!(all.status, StatusCode::OK);
    let all = all.json();
    assert_eq!(names(all.clone()), ["alicesecret:1", "bobmodel:1"]);
    assert_eq!(all["models"][1]["latest"], true);
    assert_eq!(all["models"][1]["owners"], json!(["bob@lab.example"]));
    assert!(all["models"][1]["digest"].as_str().unwrap().starts_with("sha256:"), "{all}");
    assert_eq!(names(call_as(&app, Some(&bob), "GET", "/manage/v1/models", "").await.json()), ["bobmodel:1"]);
    assert!(names(call_as(&app, Some(&eve), "GET", "/manage/v1/models", "").await.json()).is_empty());
    assert_eq!(call_as(&app, None, "GET", "/manage/v1/models", "").await.status, StatusCode::UNAUTHORIZED);
}
