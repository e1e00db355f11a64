//! The web console's own security, in process: sessions, CSRF, owner-only views, its
//! headers and its audit records. (Sign-in with a real identity provider and the pages in a
//! real browser: tests/e2e/test_console.py.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use palisade_runtime::EngineConfig;
use palisade_server::{Platform, Registry, ServerConfig};
use serde_json::json;

const MINE: &str = "name: example\nversion: \"1\"\nnamespace: team-a\nowners: [owner@company.com]\nmodel:\n  path: model.onnx\n  format: onnx\n";
const THEIRS: &str = "name: theirs\nversion: \"1\"\nnamespace: team-b\nowners: [other@company.com]\nmodel:\n  path: model.onnx\n  format: onnx\n";
const HOST: &str = "palisade.test";

struct Setup {
    tmp: tempfile::TempDir,
    app: TestApp,
    owner: String,
}

fn setup_with(platform: &str) -> Setup {
    let (tmp, store) = store_with_manifests("iris_lr_nozipmap", &[MINE, THEIRS]);
    let platform = Platform::parse(Path::new("p.yaml"), platform).unwrap();
    let registry = Registry::load(&store).unwrap();
    let app =
        app_with(store.root(), registry, EngineConfig::default(), ServerConfig::default(), platform, None);
    let owner = token_with(app.state.security(), "owner", json!({"email": "owner@company.com"}));
    Setup { tmp, app, owner }
}

fn setup() -> Setup {
    setup_with("")
}

/// A request from the console's own page: `Host` and `Origin` agree, with the cookie.
fn request(
    method: &str,
    uri: &str,
    cookie: Option<&str>,
    csrf: Option<&str>,
    body: impl Into<Body>,
) -> Request<Body> {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", HOST)
        .header("origin", format!("http://{HOST}"))
        .header("content-type", "application/json");
    if let Some(cookie) = cookie {
        req = req.header("cookie", format!("palisade_console={cookie}"));
    }
    if let Some(csrf) = csrf {
        req = req.header("x-csrf-token", csrf);
    }
    req.body(body.into()).unwrap()
}

/// Signs in by pasting a token of the built-in issuer: the session cookie's value.
async fn sign_in(app: &TestApp, token: &str) -> String {
    let reply =
        send(app, request("POST", "/console/session", None, None, json!({"token": token}).to_string())).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", String::from_utf8_lossy(&reply.body));
    let set = reply
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>();
    let session = set.iter().find(|c| c.starts_with("palisade_console=")).expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(session.contains(flag), "{session}");
    }
    session.trim_start_matches("palisade_console=").split(';').next().unwrap().to_owned()
}

async fn csrf_of(app: &TestApp, cookie: &str) -> String {
    let me = send(app, request("GET", "/console/api/me", Some(cookie), None, "")).await;
    assert_eq!(me.status, StatusCode::OK);
    me.json()["csrf"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn without_a_session_pages_go_to_sign_in_and_calls_are_401() {
    let s = setup();
    for page in ["/console", "/console/", "/console/models/example"] {
        let reply = send(&s.app, request("GET", page, None, None, "")).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{page}");
        assert_eq!(reply.headers["location"], "/console/signin", "{page}");
    }
    for call in ["/console/api/me", "/console/api/models", "/console/api/models/example"] {
        assert_eq!(
            send(&s.app, request("GET", call, None, None, "")).await.status,
            StatusCode::UNAUTHORIZED,
            "{call}"
        );
    }
    // A made-up session is no session; neither is a bearer token on a console call.
    let reply = send(&s.app, request("GET", "/console/api/models", Some("forged"), None, "")).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let mut bearer = request("GET", "/console/api/models", None, None, "");
    bearer.headers_mut().insert("authorization", format!("Bearer {}", s.owner).parse().unwrap());
    assert_eq!(send(&s.app, bearer).await.status, StatusCode::UNAUTHORIZED);
    // The public parts answer without one.
    for public in ["/console/signin", "/console/assets/console.js", "/console/assets/console.css"] {
        assert_eq!(
            send(&s.app, request("GET", public, None, None, "")).await.status,
            StatusCode::OK,
            "{public}"
        );
    }
}

#[tokio::test]
async fn changes_need_the_sessions_csrf_token() {
    let s = setup();
    let cookie = sign_in(&s.app, &s.owner).await;
    let csrf = csrf_of(&s.app, &cookie).await;
    for sent in [None, Some("wrong"), Some("")] {
        let reply = send(&s.app, request("POST", "/console/logout", Some(&cookie), sent, "")).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{sent:?}");
        assert!(reply.json()["error"].as_str().unwrap().contains("CSRF"));
    }
    // Another session's token is no good either.
    let other = sign_in(&s.app, &s.owner).await;
    let other_csrf = csrf_of(&s.app, &other).await;
    let reply = send(&s.app, request("POST", "/console/logout", Some(&cookie), Some(&other_csrf), "")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    // With it, sign-out ends the session and clears the cookie.
    let reply = send(&s.app, request("POST", "/console/logout", Some(&cookie), Some(&csrf), "")).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(reply.headers["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let after = send(&s.app, request("GET", "/console/api/me", Some(&cookie), None, "")).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        send(&s.app, request("GET", "/console/api/me", Some(&other), None, "")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_pasted_sign_in_comes_from_the_console_page_with_a_built_in_token() {
    let s = setup();
    let body = || json!({"token": s.owner}).to_string();
    let mut foreign = request("POST", "/console/session", None, None, body());
    foreign.headers_mut().insert("origin", "http://evil.test".parse().unwrap());
    assert_eq!(send(&s.app, foreign).await.status, StatusCode::FORBIDDEN);
    let mut no_origin = request("POST", "/console/session", None, None, body());
    no_origin.headers_mut().remove("origin");
    assert_eq!(send(&s.app, no_origin).await.status, StatusCode::FORBIDDEN);
    let forged = json!({"token": "eyJhbGciOiJFUzI1NiJ9.e30.c2ln"}).to_string();
    let reply = send(&s.app, request("POST", "/console/session", None, None, forged)).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.headers.get("set-cookie").is_none());
}

#[tokio::test]
async fn owners_see_their_own_models_and_nothing_of_others() {
    let s = setup();
    let cookie = sign_in(&s.app, &s.owner).await;
    let listed = send(&s.app, request("GET", "/console/api/models", Some(&cookie), None, "")).await.json();
    let names: Vec<&str> =
        listed["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["example"]);
    let model = &listed["models"][0];
    assert_eq!(model["namespace"], "team-a");
    assert_eq!(model["versions"][0]["status"], "ready");
    assert!(model["versions"][0]["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(model["versions"][0]["inputs"][0]["name"], "X");

    let mine = send(&s.app, request("GET", "/console/api/models/example", Some(&cookie), None, "")).await;
    assert_eq!(mine.status, StatusCode::OK);
    // Another owner's model and a model that does not exist answer alike.
    let theirs = send(&s.app, request("GET", "/console/api/models/theirs", Some(&cookie), None, "")).await;
    let missing = send(&s.app, request("GET", "/console/api/models/nothing", Some(&cookie), None, "")).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        theirs.json()["error"].as_str().unwrap().replace("theirs", "X"),
        missing.json()["error"].as_str().unwrap().replace("nothing", "X")
    );
    for page in ["/console/models/theirs", "/console/models/nothing"] {
        assert_eq!(
            send(&s.app, request("GET", page, Some(&cookie), None, "")).await.status,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(
        send(&s.app, request("GET", "/console/models/example", Some(&cookie), None, "")).await.status,
        StatusCode::OK
    );

    // Someone who owns nothing sees an empty list.
    let stranger = token_with(s.app.state.security(), "s", json!({"email": "stranger@company.com"}));
    let cookie = sign_in(&s.app, &stranger).await;
    let listed = send(&s.app, request("GET", "/console/api/models", Some(&cookie), None, "")).await.json();
    assert_eq!(listed["models"], json!([]));
}

#[tokio::test]
async fn every_console_answer_has_a_strict_csp_and_pages_no_inline_script() {
    let s = setup();
    let cookie = sign_in(&s.app, &s.owner).await;
    let answers = [
        send(&s.app, request("GET", "/console/signin", None, None, "")).await,
        send(&s.app, request("GET", "/console/", Some(&cookie), None, "")).await,
        send(&s.app, request("GET", "/console/", None, None, "")).await,
        send(&s.app, request("GET", "/console/assets/console.js", None, None, "")).await,
        send(&s.app, request("GET", "/console/assets/nothing.js", None, None, "")).await,
        send(&s.app, request("GET", "/console/api/models", None, None, "")).await,
        send(&s.app, request("POST", "/console/logout", Some(&cookie), None, "")).await,
    ];
    for reply in &answers {
        let csp = reply.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
        assert_eq!(reply.headers["x-frame-options"], "DENY");
        assert_eq!(reply.headers["x-content-type-options"], "nosniff");
        assert_eq!(reply.headers["cache-control"], "no-store");
        assert_eq!(reply.headers["referrer-policy"], "no-referrer");
    }
    for page in &answers[..2] {
        let html = String::from_utf8_lossy(&page.body).to_ascii_lowercase();
        assert!(html.starts_with("<!doctype html>"));
        for script in html.split("<script").skip(1) {
            assert!(
                script.split('>').next().unwrap().contains("src=\"/console/assets/"),
                "inline script: {script}"
            );
        }
        assert!(!html.contains(" style=") && !html.contains("<style"));
    }
    // No cross-origin access to the console, whatever the platform's CORS allows.
    let mut preflight = request("OPTIONS", "/console/api/models", None, None, "");
    preflight.headers_mut().insert("origin", "http://evil.test".parse().unwrap());
    preflight.headers_mut().insert("access-control-request-method", "GET".parse().unwrap());
    let reply = send(&s.app, preflight).await;
    assert!(reply.headers.get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn console_requests_are_audited_with_the_person() {
    let s = setup();
    let cookie = sign_in(&s.app, &s.owner).await;
    send(&s.app, request("GET", "/console/api/models/theirs", Some(&cookie), None, "")).await;
    send(&s.app, request("GET", "/console/api/models", None, None, "")).await;
    send(&s.app, request("GET", "/console/assets/console.css", None, None, "")).await;
    let records = request_records(&s.tmp.path().join("home"));
    let by_path = |path: &str| records.iter().filter(|r| r.path.as_deref() == Some(path)).collect::<Vec<_>>();
    let signed_in = by_path("/console/session");
    assert_eq!(signed_in.len(), 1);
    assert_eq!(signed_in[0].email.as_deref(), Some("owner@company.com"));
    let refused = by_path("/console/api/models/theirs");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].status, Some(404));
    assert!(refused[0].request_principal.as_deref().unwrap().ends_with("/owner"));
    let anonymous = by_path("/console/api/models");
    assert_eq!(anonymous.len(), 1);
    assert_eq!(anonymous[0].status, Some(401));
    assert!(by_path("/console/assets/console.css").is_empty(), "static assets are not audited");
}

#[tokio::test]
async fn the_console_can_be_switched_off() {
    let s = setup_with("console:\n  enabled: false\n");
    // No console route exists: like any unknown path, 401 without a token, 404 with one.
    for path in ["/console/", "/console/signin", "/console/assets/console.js"] {
        assert_eq!(
            send(&s.app, request("GET", path, None, None, "")).await.status,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
        assert_eq!(
            call_as(&s.app, Some(&s.owner), "GET", path, "").await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let err = Platform::parse(Path::new("p.yaml"), "console:\n  oidc:\n    issuer: http://idp.example\n    clientId: c\n    redirectUri: https://p.example/console/callback\n")
        .unwrap_err();
    assert!(err.to_string().contains("p.yaml: field `console.oidc.issuer`"), "{err}");
    let err = Platform::parse(Path::new("p.yaml"), "console:\n  sessionTTL: 1h\n").unwrap_err();
    assert!(err.to_string().contains("sessionTTL"), "{err}");
}

#[tokio::test]
async fn who_can_call_and_would_this_caller_be_allowed_for_owners_only() {
    let s = setup();
    let cookie = sign_in(&s.app, &s.owner).await;
    let csrf = csrf_of(&s.app, &cookie).await;
    let access =
        send(&s.app, request("GET", "/console/api/models/example/access", Some(&cookie), None, "")).await;
    assert_eq!(access.status, StatusCode::OK);
    let access = access.json();
    assert_eq!(access["versions"][0]["owner_default"], true, "{access}");
    assert_eq!(access["versions"][0]["owners"][0]["owner"], "owner@company.com");
    let theirs =
        send(&s.app, request("GET", "/console/api/models/theirs/access", Some(&cookie), None, "")).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);

    let check = |claims: serde_json::Value, model: &str| {
        let body = json!({"model": model, "claims": claims}).to_string();
        send(&s.app, request("POST", "/console/api/check", Some(&cookie), Some(&csrf), body))
    };
    let reply = check(json!({"email": "owner@company.com"}), "example").await;
    assert_eq!(reply.json()["allowed"], true, "{}", reply.json());
    let reply = check(json!({"email": "bob@company.com"}), "example").await;
    let answer = reply.json();
    assert_eq!(answer["allowed"], false);
    assert_eq!(answer["status"], 403);
    assert!(!answer["reason"].as_str().unwrap().is_empty());
    // Another owner's model: nothing to learn. Without the CSRF token: refused.
    let reply = check(json!({"email": "other@company.com"}), "theirs").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let body = json!({"model": "example", "claims": {}}).to_string();
    let reply = send(&s.app, request("POST", "/console/api/check", Some(&cookie), None, body)).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn owners_change_access_with_a_dry_run_first_and_the_change_is_audited() {
    let s = setup();
    let cookie = sign_in(&s.app, &s.owner).await;
    let csrf = csrf_of(&s.app, &cookie).await;
    let policy = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: example-callers\n  namespace: team-a\nspec:\n  rules:\n  - when:\n    - key: request.auth.claims[email]\n      values: [dave@company.com]\n";
    let dave = token_with(s.app.state.security(), "dave", json!({"email": "dave@company.com"}));
    const ROW: &str = r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#;
    let infer = || call_as(&s.app, Some(&dave), "POST", "/v2/models/example/infer", ROW);
    assert_eq!(infer().await.status, StatusCode::FORBIDDEN);

    let dry = send(
        &s.app,
        request("POST", "/console/api/policies?dryRun=true", Some(&cookie), Some(&csrf), policy),
    )
    .await;
    assert_eq!(dry.status, StatusCode::OK, "{}", String::from_utf8_lossy(&dry.body));
    let dry = dry.json();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["impact"][0]["model"], "team-a/example:1");
    assert!(dry["impact"][0]["gains"].as_array().unwrap().iter().any(|g| g == "dave@company.com"), "{dry}");
    assert_eq!(dry["owners_lose_access"], true, "the owner is not in the rules: {dry}");
    assert_eq!(infer().await.status, StatusCode::FORBIDDEN, "a dry run changes nothing");

    // Without the CSRF token nothing is applied; with it, dave's next request is served.
    let refused =
        send(&s.app, request("POST", "/console/api/policies?confirm=true", Some(&cookie), None, policy))
            .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(infer().await.status, StatusCode::FORBIDDEN);
    // The policy leaves the owner out: refused unless confirmed (the management API's rule).
    let lose =
        send(&s.app, request("POST", "/console/api/policies", Some(&cookie), Some(&csrf), policy)).await;
    assert_eq!(lose.status, StatusCode::CONFLICT);
    assert_eq!(infer().await.status, StatusCode::FORBIDDEN);
    let policy = policy.replace("[dave@company.com]", "[owner@company.com, dave@company.com]");
    let applied =
        send(&s.app, request("POST", "/console/api/policies", Some(&cookie), Some(&csrf), policy.clone()))
            .await;
    assert_eq!(applied.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&applied.body));
    assert_eq!(infer().await.status, StatusCode::OK);

    // Someone else's namespace: the management API's own refusal.
    let theirs = policy.replace("team-a", "team-b");
    let reply =
        send(&s.app, request("POST", "/console/api/policies", Some(&cookie), Some(&csrf), theirs)).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    let changes = config_changes(s.tmp.path(), "policy team-a/example-callers");
    assert_eq!(changes.len(), 1);
    assert!(changes[0].who.ends_with("/owner"), "{}", changes[0].who);
}

#[tokio::test]
async fn the_audit_page_shows_ones_own_models_and_auditors_everything() {
    let s = setup_with("console:\n  auditors: [group:auditors]\n");
    const ROW: &str = r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#;
    let other = token_with(s.app.state.security(), "other", json!({"email": "other@company.com"}));
    assert_eq!(
        call_as(&s.app, Some(&s.owner), "POST", "/v2/models/example/infer", ROW).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call_as(&s.app, Some(&other), "POST", "/v2/models/theirs/infer", ROW).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call_as(&s.app, Some(&other), "POST", "/v2/models/example/infer", ROW).await.status,
        StatusCode::FORBIDDEN
    );
    let models = |reply: &Reply| -> Vec<String> {
        reply.json()["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["model"]["name"].as_str().unwrap().to_owned())
            .collect()
    };

    let cookie = sign_in(&s.app, &s.owner).await;
    let mine = send(&s.app, request("GET", "/console/api/audit", Some(&cookie), None, "")).await;
    assert_eq!(mine.status, StatusCode::OK);
    assert_eq!(models(&mine), ["example", "example"], "{}", mine.json());
    assert_eq!(mine.json()["auditor"], false);
    let denied = send(
        &s.app,
        request("GET", "/console/api/audit?decision=deny&caller=other@company.com", Some(&cookie), None, ""),
    )
    .await;
    assert_eq!(denied.json()["records"].as_array().unwrap().len(), 1);
    assert_eq!(denied.json()["records"][0]["status"], 403);
    // Requests over time: every matching record counted per bucket, allowed and refused.
    let counted = |reply: &Reply, limit_note: &str| -> (u64, u64) {
        let timeline = &reply.json()["timeline"];
        assert!(timeline["bucket_s"].as_u64().unwrap() >= 60, "{timeline}");
        let buckets = timeline["buckets"].as_array().unwrap();
        assert!(!buckets.is_empty() && buckets.len() <= 60, "{limit_note}: {timeline}");
        buckets.iter().fold((0, 0), |(a, r), b| {
            (a + b["allowed"].as_u64().unwrap(), r + b["refused"].as_u64().unwrap())
        })
    };
    assert_eq!(counted(&mine, "mine"), (1, 1), "the owner's 200 and other's 403 on example");
    assert_eq!(counted(&denied, "denied"), (0, 1), "the filters apply to the chart too");
    let one = send(&s.app, request("GET", "/console/api/audit?limit=1", Some(&cookie), None, "")).await;
    assert_eq!(one.json()["records"].as_array().unwrap().len(), 1);
    assert_eq!(counted(&one, "limit"), (1, 1), "the chart counts every match, not only those listed");
    let theirs =
        send(&s.app, request("GET", "/console/api/audit?model=theirs", Some(&cookie), None, "")).await;
    assert_eq!(theirs.json()["records"], json!([]), "another owner's model's records stay hidden");
    let export =
        send(&s.app, request("GET", "/console/api/audit?format=jsonl", Some(&cookie), None, "")).await;
    assert_eq!(export.headers["content-type"], "application/jsonl; charset=utf-8");
    let lines: Vec<serde_json::Value> =
        String::from_utf8(export.body).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    let bad = send(&s.app, request("GET", "/console/api/audit?status=teapot", Some(&cookie), None, "")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.json()["error"].as_str().unwrap().contains("`status`"));

    let auditor = token_with(
        s.app.state.security(),
        "aud",
        json!({"email": "aud@company.com", "groups": ["auditors"]}),
    );
    let cookie = sign_in(&s.app, &auditor).await;
    let all = send(&s.app, request("GET", "/console/api/audit", Some(&cookie), None, "")).await;
    assert_eq!(all.json()["auditor"], true);
    let mut seen = models(&all);
    seen.sort();
    assert_eq!(seen, ["example", "example", "theirs"]);
    assert_eq!(
        send(&s.app, request("GET", "/console/api/audit", None, None, "")).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_health_page_shows_ones_own_models_rate_latency_and_refusals() {
    let s = setup();
    const ROW: &str = r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#;
    let other = token_with(s.app.state.security(), "other", json!({"email": "other@company.com"}));
    let cookie = sign_in(&s.app, &s.owner).await;
    s.app.state.sample_console_health();
    for _ in 0..3 {
        call_as(&s.app, Some(&s.owner), "POST", "/v2/models/example/infer", ROW).await;
    }
    call_as(&s.app, Some(&other), "POST", "/v2/models/example/infer", ROW).await;
    call_as(&s.app, None, "POST", "/v2/models/example/infer", ROW).await;
    for _ in 0..5 {
        call_as(&s.app, Some(&other), "POST", "/v2/models/theirs/infer", ROW).await;
    }
    call_as(&s.app, None, "POST", "/v2/models/theirs/infer", ROW).await;
    s.app.state.sample_console_health();
    let health = send(&s.app, request("GET", "/console/api/health", Some(&cookie), None, "")).await.json();
    let points = health["points"].as_array().unwrap();
    assert_eq!(points.len(), 1, "{health}");
    assert_eq!(points[0]["refused"]["403"], 1, "{health}");
    assert_eq!(points[0]["refused"]["401"], 1, "{health}");
    assert_eq!(points[0]["requests"], 5, "example's 5 requests, not theirs' 6: {health}");
    // Refusals by reason: the 401's authentication reason comes from the authentication
    // metric, labelled with the model by the request context before authentication.
    let reasons = &points[0]["reasons"];
    assert_eq!(reasons["401 missing"], 1, "{health}");
    assert_eq!(reasons["403 denied"], 1, "{health}");
    assert_eq!(points[0]["by_model"]["example"]["401 missing"], 1, "{health}");
    assert_eq!(points[0]["by_model"].as_object().unwrap().len(), 1, "theirs stays hidden: {health}");
    assert!(points[0]["rps"].as_f64().unwrap() > 0.0);
    assert!(points[0]["p50_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(
        send(&s.app, request("GET", "/console/api/health", None, None, "")).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// The seqs and model names of the audit records the page lists for this session.
async fn listed(app: &TestApp, cookie: &str, query: &str) -> Vec<(u64, String)> {
    let reply =
        send(app, request("GET", &format!("/console/api/audit{query}"), Some(cookie), None, "")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", String::from_utf8_lossy(&reply.body));
    reply.json()["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["seq"].as_u64().unwrap(), r["model"]["name"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn one_audit_record_opens_with_its_chain_verification_for_whom_the_list_shows_it() {
    let s = setup_with("console:\n  auditors: [group:auditors]\n");
    const ROW: &str = r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#;
    let other = token_with(s.app.state.security(), "other", json!({"email": "other@company.com"}));
    // The sign-in is record 0 (a console record, of no model).
    let cookie = sign_in(&s.app, &s.owner).await;
    call_as(&s.app, Some(&s.owner), "POST", "/v2/models/example/infer", ROW).await;
    call_as(&s.app, Some(&other), "POST", "/v2/models/theirs/infer", ROW).await;
    let mine = listed(&s.app, &cookie, "").await;
    let (seq, _) = mine.first().cloned().expect("the owner's record");
    let open = |cookie: String, seq: String| {
        let app = &s.app;
        async move {
            send(app, request("GET", &format!("/console/api/audit/{seq}"), Some(&cookie), None, "")).await
        }
    };
    let reply = open(cookie.clone(), seq.to_string()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", String::from_utf8_lossy(&reply.body));
    let body = reply.json();
    assert_eq!(body["record"]["seq"], seq);
    assert_eq!(body["record"]["model"]["name"], "example");
    assert_eq!(body["record"]["status"], 200);
    let verification = &body["verification"];
    // The writer has not signed yet (it signs every 1000 records or 10 s): chained, pending.
    assert!(verification["status"] == "pending" || verification["status"] == "verified", "{body}");
    assert_eq!(verification["chained"], true, "{body}");
    assert!(verification["problem"].is_null(), "{body}");
    assert!(verification["first_seq"].as_u64().unwrap() < seq, "the link to the record before was checked");

    // Another owner's record, asked for by its seq: 404, as for a seq that does not exist.
    let auditor = token_with(
        s.app.state.security(),
        "aud",
        json!({"email": "aud@company.com", "groups": ["auditors"]}),
    );
    let auditor = sign_in(&s.app, &auditor).await;
    let all = listed(&s.app, &auditor, "").await;
    let (theirs, _) = all.iter().find(|(_, m)| m == "theirs").cloned().expect("their record");
    let refused = open(cookie.clone(), theirs.to_string()).await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    let missing = open(cookie.clone(), "999999".to_owned()).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        refused.json()["error"].as_str().unwrap().replace(&theirs.to_string(), "N"),
        missing.json()["error"].as_str().unwrap().replace("999999", "N"),
        "the same answer"
    );
    // Records of no model (the sessions' own sign-ins are console records of no model) and
    // seqs that are not numbers: 404 too.
    for seq in ["0", "-1", "+1", "abc", "1e3"] {
        assert_eq!(open(cookie.clone(), seq.to_owned()).await.status, StatusCode::NOT_FOUND, "{seq}");
    }
    // The auditor opens it; without a session there is nothing.
    let reply = open(auditor.clone(), theirs.to_string()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["record"]["model"]["name"], "theirs");
    let anonymous = send(&s.app, request("GET", &format!("/console/api/audit/{seq}"), None, None, "")).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_opened_record_is_verified_once_signed_and_failed_once_edited() {
    // A checkpoint after every record: what the page opens is signed at once.
    let s = setup_with("audit:\n  checkpointEvery: 1\n");
    const ROW: &str = r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#;
    call_as(&s.app, Some(&s.owner), "POST", "/v2/models/example/infer", ROW).await;
    let cookie = sign_in(&s.app, &s.owner).await;
    let (seq, _) = listed(&s.app, &cookie, "").await[0].clone();
    let open = || send(&s.app, request("GET", &format!("/console/api/audit/{seq}"), Some(&cookie), None, ""));
    let reply = open().await;
    assert_eq!(reply.status, StatusCode::OK, "{}", String::from_utf8_lossy(&reply.body));
    let verification = reply.json()["verification"].clone();
    assert_eq!(verification["status"], "verified", "{verification}");
    assert_eq!(verification["checkpoint"]["seq"], seq, "{verification}");

    // Someone edits the record on disk (same length, in place): the console says so.
    let dir = s.tmp.path().join("home").join("audit");
    let (segment, offset) = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("segment-"))
        .find_map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let mut at = 0;
            for line in text.split_inclusive('\n') {
                let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
                if v["seq"] == seq {
                    return Some((path.clone(), at + line.find(r#""status":200"#).unwrap()));
                }
                at += line.len();
            }
            None
        })
        .unwrap();
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut file = std::fs::OpenOptions::new().write(true).open(&segment).unwrap();
        file.seek(SeekFrom::Start(offset as u64)).unwrap();
        file.write_all(br#""status":201"#).unwrap();
    }
    let verification = open().await.json()["verification"].clone();
    assert_eq!(verification["status"], "failed", "{verification}");
    assert!(verification["problem"].as_str().unwrap().contains("hash mismatch"), "{verification}");
}

const CALLERS: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: example-callers\n  namespace: team-a\nspec:\n  rules:\n  - when:\n    - key: request.auth.claims[email]\n      values: [owner@company.com, dave@company.com]\n";

#[tokio::test]
async fn a_dry_run_shows_the_policys_yaml_line_by_line_against_the_one_it_replaces() {
    let s = setup();
    let cookie = sign_in(&s.app, &s.owner).await;
    let csrf = csrf_of(&s.app, &cookie).await;
    let post = |query: &str, body: String| {
        send(
            &s.app,
            request("POST", &format!("/console/api/policies{query}"), Some(&cookie), Some(&csrf), body),
        )
    };
    // A new policy: every line added.
    let dry = post("?dryRun=true", CALLERS.to_owned()).await.json();
    let diff = dry["diff"].as_array().unwrap();
    assert_eq!(diff.len(), CALLERS.lines().count(), "{dry}");
    assert!(diff.iter().all(|d| d["op"] == "added"), "{dry}");
    assert_eq!(post("", CALLERS.to_owned()).await.status, StatusCode::CREATED);
    // A change to it: only the changed line, removed then added; the rest the same.
    let changed = CALLERS.replace("dave@company.com]", "dave@company.com, erin@company.com]");
    let dry = post("?dryRun=true", changed.clone()).await.json();
    let ops: Vec<(String, String)> = dry["diff"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["op"].as_str().unwrap().to_owned(), d["line"].as_str().unwrap().to_owned()))
        .collect();
    let changes: Vec<&(String, String)> = ops.iter().filter(|(op, _)| op != "same").collect();
    assert_eq!(
        changes,
        [
            &("removed".to_owned(), "      values: [owner@company.com, dave@company.com]".to_owned()),
            &(
                "added".to_owned(),
                "      values: [owner@company.com, dave@company.com, erin@company.com]".to_owned()
            )
        ],
        "{dry}"
    );
    assert_eq!(ops.len(), CALLERS.lines().count() + 1);
    assert!(dry["impact"][0]["gains"].as_array().unwrap().iter().any(|g| g == "erin@company.com"), "{dry}");
    // The management API's dry run is the same code: it shows the same diff.
    let mut api = request("PUT", "/manage/v1/policies?dryRun=true", None, None, changed);
    api.headers_mut().insert("authorization", format!("Bearer {}", s.owner).parse().unwrap());
    let api = send(&s.app, api).await;
    assert_eq!(api.status, StatusCode::OK, "{}", String::from_utf8_lossy(&api.body));
    assert_eq!(api.json()["diff"], dry["diff"]);
}

#[tokio::test]
async fn owners_delete_their_policy_with_a_dry_run_first_and_the_deletion_is_audited() {
    let s = setup_with("console:\n  auditors: [group:auditors]\n");
    let cookie = sign_in(&s.app, &s.owner).await;
    let csrf = csrf_of(&s.app, &cookie).await;
    let dave = token_with(s.app.state.security(), "dave", json!({"email": "dave@company.com"}));
    const ROW: &str = r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#;
    let infer = || call_as(&s.app, Some(&dave), "POST", "/v2/models/example/infer", ROW);
    let applied =
        send(&s.app, request("POST", "/console/api/policies", Some(&cookie), Some(&csrf), CALLERS)).await;
    assert_eq!(applied.status, StatusCode::CREATED);
    assert_eq!(infer().await.status, StatusCode::OK);
    // The access table offers to delete it (the management API's rule, not the page's).
    let access = send(&s.app, request("GET", "/console/api/models/example/access", Some(&cookie), None, ""))
        .await
        .json();
    let listed = &access["versions"][0]["policies"];
    let mine = listed.as_array().unwrap().iter().find(|p| p["policy"] == "team-a/example-callers").unwrap();
    assert_eq!(mine["deletable"], true, "{access}");

    let delete = |query: &'static str, cookie: String, csrf: Option<String>, path: &'static str| {
        let app = &s.app;
        async move {
            send(
                app,
                request(
                    "DELETE",
                    &format!("/console/api/policies/{path}{query}"),
                    Some(&cookie),
                    csrf.as_deref(),
                    "",
                ),
            )
            .await
        }
    };
    // Without the CSRF token, or with another's: 403, and nothing is deleted.
    let refused = delete("", cookie.clone(), None, "team-a/example-callers").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.json()["error"].as_str().unwrap().contains("CSRF"));
    let refused = delete("", cookie.clone(), Some("wrong".into()), "team-a/example-callers").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(infer().await.status, StatusCode::OK);

    // The dry run: every line removed, dave loses access, nothing changes.
    let dry = delete("?dryRun=true", cookie.clone(), Some(csrf.clone()), "team-a/example-callers").await;
    assert_eq!(dry.status, StatusCode::OK, "{}", String::from_utf8_lossy(&dry.body));
    let dry = dry.json();
    assert!(dry["diff"].as_array().unwrap().iter().all(|d| d["op"] == "removed"), "{dry}");
    assert_eq!(dry["diff"].as_array().unwrap().len(), CALLERS.lines().count());
    assert!(dry["impact"][0]["loses"].as_array().unwrap().iter().any(|g| g == "dave@company.com"), "{dry}");
    assert_eq!(infer().await.status, StatusCode::OK, "a dry run deletes nothing");

    // Another owner's policy (in their namespace): 404, as the management API answers, and
    // the same for a policy that does not exist.
    let other = token_with(s.app.state.security(), "other", json!({"email": "other@company.com"}));
    let other_cookie = sign_in(&s.app, &other).await;
    let other_csrf = csrf_of(&s.app, &other_cookie).await;
    let theirs = CALLERS
        .replace("team-a", "team-b")
        .replace("example-callers", "theirs-callers")
        .replace("[owner@company.com, dave@company.com]", "[other@company.com]");
    let created = send(
        &s.app,
        request("POST", "/console/api/policies", Some(&other_cookie), Some(&other_csrf), theirs),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&created.body));
    for path in ["team-b/theirs-callers", "team-b/no-such-policy"] {
        let reply = delete("", cookie.clone(), Some(csrf.clone()), path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
    let hidden = delete("?dryRun=true", cookie.clone(), Some(csrf.clone()), "team-b/theirs-callers").await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND, "not even a dry run tells it exists");
    // Theirs still stands: other's own dry run of its deletion finds it.
    let theirs =
        delete("?dryRun=true", other_cookie.clone(), Some(other_csrf.clone()), "team-b/theirs-callers").await;
    assert_eq!(theirs.status, StatusCode::OK);

    // The owner deletes their own: dave is refused again, and one record names the owner.
    let deleted = delete("?confirm=true", cookie.clone(), Some(csrf.clone()), "team-a/example-callers").await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", String::from_utf8_lossy(&deleted.body));
    assert_eq!(deleted.json()["deleted"], "team-a/example-callers");
    assert_eq!(infer().await.status, StatusCode::FORBIDDEN);
    let again = delete("", cookie.clone(), Some(csrf.clone()), "team-a/example-callers").await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let changes = config_changes(s.tmp.path(), "policy team-a/example-callers");
    assert_eq!(changes.len(), 2, "created, then deleted");
    assert!(changes[1].who.ends_with("/owner") && changes[1].after_digest.is_none(), "{:?}", changes[1]);
    assert_eq!(changes[1].before_digest, changes[0].after_digest);
}

#[tokio::test]
async fn a_platform_policy_is_not_deletable_from_the_console() {
    let policies = tempfile::tempdir().unwrap();
    std::fs::write(
        policies.path().join("allow.yaml"),
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: platform-allow, namespace: team-a}\nspec:\n  rules:\n  - when:\n    - key: request.auth.claims[email]\n      values: [owner@company.com]\n",
    )
    .unwrap();
    let (tmp, store) = store_with_manifests("iris_lr_nozipmap", &[MINE, THEIRS]);
    let platform = Platform::parse(Path::new("p.yaml"), "").unwrap();
    let registry = Registry::load(&store).unwrap();
    let app = app_with(
        store.root(),
        registry,
        EngineConfig::default(),
        ServerConfig::default(),
        platform,
        Some(policies.path().to_owned()),
    );
    let owner = token_with(app.state.security(), "owner", json!({"email": "owner@company.com"}));
    let cookie = sign_in(&app, &owner).await;
    let csrf = csrf_of(&app, &cookie).await;
    let access = send(&app, request("GET", "/console/api/models/example/access", Some(&cookie), None, ""))
        .await
        .json();
    let policy = access["versions"][0]["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["policy"] == "team-a/platform-allow")
        .cloned()
        .unwrap_or_else(|| panic!("{access}"));
    assert_eq!(policy["deletable"], false);
    // The management API's answer: a platform policy is an administrator's, so to an owner
    // it is one they may not manage: 404, as for one that does not exist.
    let reply = send(
        &app,
        request("DELETE", "/console/api/policies/team-a/platform-allow", Some(&cookie), Some(&csrf), ""),
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(policies.path().join("allow.yaml").exists());
    drop(tmp);
}

#[tokio::test]
async fn the_forms_service_account_path_and_method_rules_do_what_they_say() {
    let s = setup();
    let cookie = sign_in(&s.app, &s.owner).await;
    let csrf = csrf_of(&s.app, &cookie).await;
    let me = send(&s.app, request("GET", "/console/api/me", Some(&cookie), None, "")).await.json();
    let issuer = me["builtin_issuer"].as_str().expect("the built-in issuer").to_owned();
    let issuing = s.app.state.security().issuer().unwrap();
    let (account, _) = issuing.create_account("team-a".parse().unwrap(), "batch".parse().unwrap()).unwrap();
    let batch = issuing.issue_for(&account).unwrap().token.expose().to_owned();
    // The YAML the page's form writes for owner@company.com, the service account
    // team-a/batch, the path of the model's predictions and the method POST.
    let op = "    to:\n    - operation:\n        paths: [\"/v2/models/example/infer\"]\n        methods: [\"POST\"]\n";
    let policy = format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: example-callers\n  namespace: team-a\nspec:\n  action: ALLOW\n  rules:\n  - when:\n    - key: request.auth.claims[email]\n      values: [\"owner@company.com\"]\n{op}  - from:\n    - source:\n        requestPrincipals: [\"{issuer}/system:serviceaccount:team-a:batch\"]\n{op}"
    );
    const ROW: &str = r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#;
    assert_eq!(
        call_as(&s.app, Some(&batch), "POST", "/v2/models/example/infer", ROW).await.status,
        StatusCode::FORBIDDEN
    );
    let dry = send(
        &s.app,
        request("POST", "/console/api/policies?dryRun=true", Some(&cookie), Some(&csrf), policy.clone()),
    )
    .await;
    assert_eq!(dry.status, StatusCode::OK, "{}", String::from_utf8_lossy(&dry.body));
    let applied = send(
        &s.app,
        request("POST", "/console/api/policies?confirm=true", Some(&cookie), Some(&csrf), policy),
    )
    .await;
    assert_eq!(applied.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&applied.body));
    // The service account may predict (POST on the path), and nothing else.
    assert_eq!(
        call_as(&s.app, Some(&batch), "POST", "/v2/models/example/infer", ROW).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call_as(&s.app, Some(&batch), "GET", "/v2/models/example", "").await.status,
        StatusCode::FORBIDDEN
    );
    // So may the owner; another person may not.
    assert_eq!(
        call_as(&s.app, Some(&s.owner), "POST", "/v2/models/example/infer", ROW).await.status,
        StatusCode::OK
    );
    let dave = token_with(s.app.state.security(), "dave", json!({"email": "dave@company.com"}));
    assert_eq!(
        call_as(&s.app, Some(&dave), "POST", "/v2/models/example/infer", ROW).await.status,
        StatusCode::FORBIDDEN
    );
}

/// The audited config changes of `what` in the trail under `tmp`'s home, oldest first.
fn config_changes(tmp: &Path, what: &str) -> Vec<palisade_audit::ConfigChange> {
    palisade_audit::query(&tmp.join("home").join("audit"), palisade_audit::Filter::default())
        .unwrap()
        .map(Result::unwrap)
        .filter_map(|r| r.config)
        .filter(|c| c.what == what)
        .collect()
}
