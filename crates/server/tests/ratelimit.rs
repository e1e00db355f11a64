//! Per-caller rate limits through every layer: a burst past a caller's budget is answered
//! 429 with `Retry-After` in each protocol's own form (V2 REST, KServe V1, Seldon v1 REST
//! and gRPC, V2 gRPC on a real socket), never 5xx; other callers keep their own budgets;
//! explanations have a lower budget of their own; a manifest tightens the platform's limit
//! but cannot loosen it; anonymous callers are told apart by address; and each refusal is
//! in the audit trail and in `palisade_rate_limited_total`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use http_body_util::BodyExt;
use palisade_audit::{AuditRecord, Decision, Filter};
use palisade_bundle::Store;
use palisade_protocol::grpc::prost::Message;
use palisade_protocol::grpc::tonic::{self, Code};
use palisade_protocol::grpc::{self as grpc, GrpcInferenceServiceClient};
use palisade_protocol::seldon::grpc::protos::{
    DefaultData, SeldonMessage, Tensor, default_data, seldon_message,
};
use palisade_runtime::EngineConfig;
use palisade_server::{Platform, Registry, ServerConfig};
use serde_json::json;
use tower::ServiceExt;

const MODEL: &str = "owners: [group:ml]\nmodel:\n  path: model.onnx\n  format: onnx\n";
const V1_ROWS: &str = r#"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#;
const SELDON_ROW: &str = r#"{"data": {"ndarray": [[5.1, 3.5, 1.4, 0.2]]}}"#;
const BACKGROUND: &str =
    "sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n6.2,2.9,4.3,1.3\n7.7,3.0,6.1,2.3\n";

/// Three requests at once, then one every 100 s; explanations one, then one per 200 s.
const PLATFORM: &str = "limits:\n  rate:\n    requestsPerSecond: 0.01\n    burst: 3\n    explain: {requestsPerSecond: 0.005, burst: 1}\n";

struct Setup {
    tmp: tempfile::TempDir,
    app: TestApp,
}

/// iris (KernelSHAP explainer), tight (manifest: burst 1), loose (manifest asks for more
/// than the platform allows), canary (a traffic split over iris, burst 2), all owned by
/// `group:ml`.
fn setup(platform: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    let iris =
        format!("name: iris\nversion: \"1\"\n{MODEL}explainer:\n  type: KernelShap\n  background: bg.csv\n");
    add_explained(&store, tmp.path(), &fixture("iris_lr_nozipmap"), &iris, BACKGROUND);
    let tight = format!(
        "name: tight\nversion: \"1\"\n{MODEL}limits:\n  rate: {{requestsPerSecond: 0.001, burst: 1}}\n"
    );
    let loose = format!(
        "name: loose\nversion: \"1\"\n{MODEL}limits:\n  rate: {{requestsPerSecond: 1000, burst: 1000}}\n"
    );
    add_bundles(&store, tmp.path(), "iris_lr_nozipmap", &[&tight, &loose]);
    // A traffic split over iris with a limit of its own (burst 2).
    let canary = "name: canary\nversion: \"1\"\nowners: [group:ml]\ntraffic: [{model: iris, weight: 1}]\nlimits:\n  rate: {requestsPerSecond: 0.01, burst: 2}\n";
    add_graph(&store, tmp.path(), canary).unwrap();
    let app = app_with(
        store.root(),
        Registry::load(&store).unwrap(),
        EngineConfig::default(),
        ServerConfig::default(),
        Platform::parse(Path::new("platform.yaml"), platform).unwrap(),
        None,
    );
    Setup { tmp, app }
}

/// A token for `subject`, a member of `ml` (so an owner of every model here).
fn member(s: &Setup, subject: &str) -> String {
    token_with(s.app.state.security(), subject, json!({"groups": ["ml"]}))
}

fn records(s: &Setup) -> Vec<AuditRecord> {
    request_records(&s.tmp.path().join("home"))
}

fn record_of(s: &Setup, request_id: &str) -> AuditRecord {
    let mut matching: Vec<AuditRecord> =
        records(s).into_iter().filter(|r| r.request_id.as_deref() == Some(request_id)).collect();
    assert_eq!(matching.len(), 1, "records for request {request_id}");
    matching.remove(0)
}

fn id(reply: &Reply) -> String {
    reply.headers["x-request-id"].to_str().unwrap().to_owned()
}

/// The `Retry-After` of a 429, checked to be whole seconds within `max`.
fn retry_after(reply: &Reply, max: u32) -> u32 {
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{}", String::from_utf8_lossy(&reply.body));
    let seconds: u32 = reply.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=max).contains(&seconds), "Retry-After {seconds}, at most {max}");
    seconds
}

/// Sends `n` requests; each must be 200 or 429 (never 5xx). Returns the replies.
async fn burst(s: &Setup, token: &str, method: &str, uri: &str, body: &str, n: usize) -> Vec<Reply> {
    let mut replies = Vec::new();
    for _ in 0..n {
        let reply = call_as(&s.app, Some(token), method, uri, body.to_owned()).await;
        assert!(
            reply.status == StatusCode::OK || reply.status == StatusCode::TOO_MANY_REQUESTS,
            "{uri}: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        replies.push(reply);
    }
    replies
}

fn statuses(replies: &[Reply]) -> Vec<u16> {
    replies.iter().map(|r| r.status.as_u16()).collect()
}

async fn metrics(s: &Setup) -> String {
    let admin = palisade_server::admin_app(s.app.state.clone());
    let res = admin.oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

fn counted(metrics: &str, model: &str, endpoint: &str) -> u64 {
    let line = format!("palisade_rate_limited_total{{endpoint=\"{endpoint}\",model=\"{model}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(line.as_str())).map_or(0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn a_burst_past_the_budget_is_429_on_every_rest_protocol_and_audited() {
    let s = setup(PLATFORM);
    let cases: [(&str, &str, &str, &str, &str); 4] = [
        ("v2", "POST", "/v2/models/iris/infer", IRIS_ROW, "v2_infer"),
        ("kserve", "POST", "/v1/models/iris:predict", V1_ROWS, "kserve_predict"),
        ("seldon", "POST", "/seldon/default/iris/api/v1.0/predictions", SELDON_ROW, "seldon_predict"),
        ("meta", "GET", "/v2/models/iris", "", "v2_metadata"),
    ];
    for (caller, method, uri, body, endpoint) in cases {
        let token = member(&s, caller);
        let replies = burst(&s, &token, method, uri, body, 5).await;
        assert_eq!(statuses(&replies), [200, 200, 200, 429, 429], "{uri}");
        let refused = &replies[3];
        let seconds = retry_after(refused, 100);
        assert!(seconds >= 99, "the next token is 100 s away: {seconds}");
        let body = refused.json();
        let message = if caller == "seldon" {
            assert_eq!(body["status"]["code"], 429, "{body}");
            assert_eq!(body["status"]["status"], "FAILURE");
            assert_eq!(body["status"]["reason"], "UNAVAILABLE");
            body["status"]["info"].as_str().unwrap().to_owned()
        } else {
            body["error"].as_str().unwrap().to_owned()
        };
        assert!(message.contains("rate limit") && message.contains("requests budget"), "{message}");

        let record = record_of(&s, &id(refused));
        assert_eq!(record.status, Some(429));
        assert_eq!(record.model.as_ref().unwrap().name, "iris");
        assert_eq!(record.authz.as_ref().unwrap().decision, Decision::Allow, "limited after authorization");
        let limit = record.rate_limit.expect("the refusal names the limit");
        assert_eq!((limit.budget.as_str(), limit.retry_after_s), ("requests", seconds));
        assert!(record_of(&s, &id(&replies[0])).rate_limit.is_none());
        assert!(record.request_sha256.is_none(), "the body was never read");
        assert_eq!(counted(&metrics(&s).await, "iris", endpoint), 2, "{endpoint}");
    }
}

#[tokio::test]
async fn one_budget_per_caller_and_model_across_protocols() {
    let s = setup(PLATFORM);
    let (alice, bob) = (member(&s, "alice"), member(&s, "bob"));
    // Two V2 requests and one KServe request use up alice's burst of 3 on iris...
    burst(&s, &alice, "POST", "/v2/models/iris/infer", IRIS_ROW, 2).await;
    burst(&s, &alice, "POST", "/v1/models/iris:predict", V1_ROWS, 1).await;
    let refused = burst(&s, &alice, "POST", "/seldon/default/iris/api/v1.0/predictions", SELDON_ROW, 1).await;
    assert_eq!(statuses(&refused), [429], "one budget per model, whatever the protocol");
    // ...but not bob's, nor her budget on another model.
    let replies = burst(&s, &bob, "POST", "/v2/models/iris/infer", IRIS_ROW, 3).await;
    assert_eq!(statuses(&replies), [200, 200, 200], "another caller is unaffected");
    let replies = burst(&s, &alice, "POST", "/v2/models/loose/infer", IRIS_ROW, 1).await;
    assert_eq!(statuses(&replies), [200], "another model is another budget");
    // Refusals take nothing: alice stays refused, bob keeps his budget.
    let refused = burst(&s, &alice, "POST", "/v2/models/iris/infer", IRIS_ROW, 1).await;
    assert_eq!(statuses(&refused), [429]);
}

#[tokio::test]
async fn explanations_have_a_lower_budget_of_their_own() {
    let s = setup(PLATFORM);
    let carol = member(&s, "carol");
    let explained = burst(&s, &carol, "POST", "/v2/models/iris/explain", IRIS_ROW, 2).await;
    assert_eq!(statuses(&explained), [200, 429], "explain: burst 1");
    let seconds = retry_after(&explained[1], 200);
    assert!(seconds >= 199, "explain refills at 1 per 200 s: {seconds}");
    assert!(explained[1].json()["error"].as_str().unwrap().contains("explain budget"));
    let limit = record_of(&s, &id(&explained[1])).rate_limit.unwrap();
    assert_eq!((limit.budget.as_str(), limit.retry_after_s), ("explain", seconds));
    // The KServe and Seldon explain routes draw from the same explain budget.
    let kserve = burst(&s, &carol, "POST", "/v1/models/iris:explain", V1_ROWS, 1).await;
    assert_eq!(statuses(&kserve), [429]);
    let seldon = burst(&s, &carol, "POST", "/seldon/default/iris/api/v1.0/explain", SELDON_ROW, 1).await;
    assert_eq!(statuses(&seldon), [429]);
    // Predictions still have their own, larger budget.
    let predicted = burst(&s, &carol, "POST", "/v2/models/iris/infer", IRIS_ROW, 4).await;
    assert_eq!(statuses(&predicted), [200, 200, 200, 429]);
    let m = metrics(&s).await;
    assert_eq!(
        (
            counted(&m, "iris", "v2_explain"),
            counted(&m, "iris", "kserve_explain"),
            counted(&m, "iris", "seldon_explain")
        ),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn a_manifest_tightens_the_platform_limit_but_never_loosens_it() {
    let s = setup(PLATFORM);
    let dave = member(&s, "dave");
    let tight = burst(&s, &dave, "POST", "/v2/models/tight/infer", IRIS_ROW, 2).await;
    assert_eq!(statuses(&tight), [200, 429], "the manifest's burst of 1 applies");
    // Its own rate (one per 1000 s) is tighter than the platform's too.
    assert!(retry_after(&tight[1], 1000) > 900);
    let loose = burst(&s, &dave, "POST", "/v2/models/loose/infer", IRIS_ROW, 5).await;
    assert_eq!(statuses(&loose), [200, 200, 200, 429, 429], "clamped to the platform's burst of 3");
    assert!(retry_after(&loose[3], 100) >= 99, "and to the platform's rate");
}

#[tokio::test]
async fn without_a_platform_limit_the_manifest_alone_limits() {
    let s = setup("{}");
    let erin = member(&s, "erin");
    let unlimited = burst(&s, &erin, "POST", "/v2/models/iris/infer", IRIS_ROW, 20).await;
    assert!(unlimited.iter().all(|r| r.status == StatusCode::OK), "no limit configured, none applied");
    let tight = burst(&s, &erin, "POST", "/v2/models/tight/infer", IRIS_ROW, 2).await;
    assert_eq!(statuses(&tight), [200, 429]);
}

#[tokio::test]
async fn the_bucket_refills_after_the_interval() {
    let s = setup("limits:\n  rate: {requestsPerSecond: 20, burst: 1}\n");
    let frank = member(&s, "frank");
    let replies = burst(&s, &frank, "POST", "/v2/models/iris/infer", IRIS_ROW, 2).await;
    assert_eq!(statuses(&replies), [200, 429]);
    assert_eq!(retry_after(&replies[1], 1), 1, "50 ms rounds up to one second");
    tokio::time::sleep(Duration::from_millis(60)).await;
    let replies = burst(&s, &frank, "POST", "/v2/models/iris/infer", IRIS_ROW, 1).await;
    assert_eq!(statuses(&replies), [200], "one token back after 1/rate");
}

fn seldon_grpc_message() -> Vec<u8> {
    let tensor = Tensor { shape: vec![1, 4], values: vec![5.1, 3.5, 1.4, 0.2] };
    let data = DefaultData { names: vec![], data_oneof: Some(default_data::DataOneof::Tensor(tensor)) };
    SeldonMessage { data_oneof: Some(seldon_message::DataOneof::Data(data)), ..SeldonMessage::default() }
        .encode_to_vec()
}

/// A Seldon gRPC `Predict` for `iris`, in-process: the gRPC status, `retry-after`, request id.
async fn seldon_grpc(s: &Setup, token: &str) -> (i32, Option<String>, String) {
    let message = seldon_grpc_message();
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(&message);
    let req = Request::post("/seldon.protos.Seldon/Predict")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {token}"))
        .header("seldon", "iris")
        .body(Body::from(body))
        .unwrap();
    let res = s.app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "gRPC answers 200 with its status in grpc-status");
    let headers = res.headers().clone();
    let collected = res.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let code =
        |map: &axum::http::HeaderMap| map.get("grpc-status").and_then(|v| v.to_str().ok()?.parse().ok());
    let status = code(&headers).or_else(|| code(&trailers)).expect("a gRPC status");
    let retry = headers.get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_owned());
    (status, retry, headers["x-request-id"].to_str().unwrap().to_owned())
}

#[tokio::test]
async fn seldon_grpc_refusals_are_resource_exhausted() {
    let s = setup(PLATFORM);
    let grace = member(&s, "grace");
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(seldon_grpc(&s, &grace).await);
    }
    let got: Vec<i32> = codes.iter().map(|c| c.0).collect();
    assert_eq!(got, [0, 0, 0, Code::ResourceExhausted as i32]);
    let (_, retry, request_id) = &codes[3];
    let seconds: u32 = retry.as_deref().expect("Retry-After on the gRPC refusal").parse().unwrap();
    assert!((99..=100).contains(&seconds));
    let record = record_of(&s, request_id);
    assert_eq!((record.status, record.grpc_code), (Some(429), Some(Code::ResourceExhausted as i32)));
    assert_eq!(record.rate_limit.unwrap().budget, "requests");
    assert_eq!(counted(&metrics(&s).await, "iris", "seldon_grpc_predict"), 1);
}

#[tokio::test]
async fn v2_grpc_over_a_real_socket_is_resource_exhausted_with_retry_after() {
    let s = setup(PLATFORM);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(palisade_server::serve(listener, s.app.router.clone(), std::future::pending()));
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    let mut client = GrpcInferenceServiceClient::new(channel);
    let (heidi, ivan) = (member(&s, "heidi"), member(&s, "ivan"));
    let request = |token: &str| {
        let x = palisade_core::Tensor::new(
            "X",
            vec![1, 4],
            palisade_core::TensorData::Fp32(vec![5.1, 3.5, 1.4, 0.2]),
        )
        .unwrap();
        let mut r = tonic::Request::new(grpc::encode_infer_request("iris", None, None, &[x], true));
        r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        r
    };
    for _ in 0..3 {
        client.model_infer(request(&heidi)).await.unwrap();
    }
    let refused = client.model_infer(request(&heidi)).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("rate limit"), "{}", refused.message());
    let seconds: u32 = refused.metadata().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!((99..=100).contains(&seconds));
    client.model_infer(request(&ivan)).await.expect("another caller is unaffected");
    assert_eq!(counted(&metrics(&s).await, "iris", "grpc_model_infer"), 1);
    let limited: Vec<AuditRecord> = records(&s).into_iter().filter(|r| r.rate_limit.is_some()).collect();
    assert_eq!(limited.len(), 1);
    assert_eq!(limited[0].grpc_code, Some(Code::ResourceExhausted as i32));
    assert_eq!(limited[0].model.as_ref().unwrap().name, "iris", "gRPC's model, read from the message");
}

/// A raw HTTP/1.1 request from `source` (any 127.x address reaches loopback): the status.
async fn from_address(source: &str, addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer.split(' ').nth(1).unwrap().parse().unwrap();
    let retry = answer
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("retry-after: ").map(str::to_owned))
        .unwrap_or_default();
    (status, retry)
}

/// Anonymous callers (the platform lets requests without a token through, a policy allows
/// everyone) are told apart by their address.
#[tokio::test]
async fn anonymous_callers_are_limited_by_address() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    add_bundles(&store, tmp.path(), "iris_lr_nozipmap", &[&format!("name: iris\nversion: \"1\"\n{MODEL}")]);
    let policies = tempfile::tempdir().unwrap();
    std::fs::write(
        policies.path().join("open.yaml"),
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: open, namespace: default}\nspec:\n  action: ALLOW\n  rules: [{}]\n",
    )
    .unwrap();
    let platform =
        "authentication: {requireToken: false}\nlimits:\n  rate: {requestsPerSecond: 0.01, burst: 2}\n";
    let app = app_with(
        store.root(),
        Registry::load(&store).unwrap(),
        EngineConfig::default(),
        ServerConfig::default(),
        Platform::parse(Path::new("platform.yaml"), platform).unwrap(),
        Some(policies.path().to_owned()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(palisade_server::serve(listener, app.router.clone(), std::future::pending()));
    let path = "/v2/models/iris/infer";
    let mut first = Vec::new();
    for _ in 0..3 {
        first.push(from_address("127.0.0.1", addr, path, IRIS_ROW).await);
    }
    assert_eq!(first.iter().map(|r| r.0).collect::<Vec<_>>(), [200, 200, 429]);
    assert!(first[2].1.parse::<u32>().unwrap() >= 99, "{first:?}");
    let other = from_address("127.0.0.2", addr, path, IRIS_ROW).await;
    assert_eq!(other.0, 200, "another address has its own budget");
    let records: Vec<AuditRecord> = palisade_audit::query(&store.root().join("audit"), Filter::default())
        .unwrap()
        .map(Result::unwrap)
        .filter(|r| r.rate_limit.is_some())
        .collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].source_ip.unwrap().to_string(), "127.0.0.1");
    assert!(records[0].request_principal.is_none());
}

/// A refused request's body is never read: a malformed one is refused for its rate, not
/// parsed (no 400), and its record has no digest.
#[tokio::test]
async fn a_refused_request_is_not_read() {
    let s = setup(PLATFORM);
    let judy = member(&s, "judy");
    burst(&s, &judy, "POST", "/v2/models/tight/infer", IRIS_ROW, 1).await;
    let junk = "{not json at all";
    let refused = call_as(&s.app, Some(&judy), "POST", "/v2/models/tight/infer", junk).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "refused before the body is parsed (no 400)");
    let record = record_of(&s, &id(&refused));
    assert!(record.request_sha256.is_none() && record.rate_limit.is_some());
}

#[tokio::test]
async fn a_graph_is_limited_by_its_own_budget() {
    let s = setup(PLATFORM);
    let kim = member(&s, "kim");
    let replies = burst(&s, &kim, "POST", "/v2/models/canary/infer", IRIS_ROW, 3).await;
    assert_eq!(statuses(&replies), [200, 200, 429], "the graph's manifest: burst 2");
    let record = record_of(&s, &id(&replies[2]));
    assert_eq!(record.model.as_ref().unwrap().name, "canary");
    assert_eq!(record.rate_limit.unwrap().budget, "requests");
    assert_eq!(counted(&metrics(&s).await, "canary", "v2_infer"), 1);
    let seldon = burst(&s, &kim, "POST", "/seldon/default/canary/api/v1.0/predictions", SELDON_ROW, 1).await;
    assert_eq!(statuses(&seldon), [429], "one budget for the graph over every protocol");
}

/// The log lines written while a closure runs.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_looser_manifest_is_clamped_with_a_warning_when_it_loads() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let _s = tracing::subscriber::with_default(subscriber, || setup(PLATFORM));
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("is looser than the platform's")).collect();
    // `loose` asks for 1000/s, burst 1000 (explain: a tenth, 100/s, burst 100); `tight`
    // and `iris` ask for nothing looser.
    assert_eq!(warnings.len(), 2, "{log}");
    assert!(warnings.iter().all(|l| l.contains("WARN") && l.contains("loose")), "{warnings:?}");
    assert!(warnings[0].contains("requests budget: 1000 per second, burst 1000"), "{warnings:?}");
    assert!(warnings[1].contains("explain budget: 100 per second, burst 100"), "{warnings:?}");
}

#[tokio::test]
async fn a_graph_pays_its_node_models_budgets_too() {
    let s = setup(PLATFORM);
    // `relay` forwards to `tight` (burst 1): a graph is no way around a model's limit.
    let store = Store::open(&s.tmp.path().join("home")).unwrap();
    let relay = "name: relay\nversion: \"1\"\nowners: [group:ml]\ntraffic: [{model: tight, weight: 1}]\n";
    add_graph(&store, s.tmp.path(), relay).unwrap();
    let registry = Registry::load(&store).unwrap();
    let changes = palisade_server::registry::Changes {
        loaded: vec![registry.get("relay", None).unwrap()],
        ..Default::default()
    };
    s.app.state.replace_models(registry, &changes).await;

    let leo = member(&s, "leo");
    let replies = burst(&s, &leo, "POST", "/v2/models/relay/infer", IRIS_ROW, 2).await;
    assert_eq!(statuses(&replies), [200, 429], "the hop to `tight` (burst 1) is refused");
    assert!(retry_after(&replies[1], 1000) > 900, "tight's rate");
    let direct = burst(&s, &leo, "POST", "/v2/models/tight/infer", IRIS_ROW, 1).await;
    assert_eq!(statuses(&direct), [429], "the graph's hop used leo's budget on `tight`");
    let all = records(&s);
    let own = all.iter().find(|r| r.request_id.as_deref() == Some(id(&replies[1]).as_str())).unwrap();
    assert_eq!(own.status, Some(429));
    assert_eq!(own.rate_limit.as_ref().unwrap().budget, "requests");
    let hop = all.iter().find(|r| r.parent_request_id.as_deref() == Some(id(&replies[1]).as_str())).unwrap();
    assert_eq!((hop.status, hop.model.as_ref().unwrap().name.as_str()), (Some(429), "tight"));
    assert_eq!(counted(&metrics(&s).await, "tight", "graph_hop"), 1);
}

#[tokio::test]
async fn a_split_over_its_own_models_versions_pays_once() {
    // `iris:2` is a traffic split over `iris:1` (as the router serves a deployment's
    // variants): one bucket for the model, paid by the request, not again by the hop.
    let s = setup(PLATFORM);
    let store = Store::open(&s.tmp.path().join("home")).unwrap();
    let split = "name: iris\nversion: \"2\"\nowners: [group:ml]\ntraffic: [{model: 'iris:1', weight: 1}]\n";
    add_graph(&store, s.tmp.path(), split).unwrap();
    let registry = Registry::load(&store).unwrap();
    let changes = palisade_server::registry::Changes {
        loaded: vec![registry.get("iris", Some("2")).unwrap()],
        ..Default::default()
    };
    s.app.state.replace_models(registry, &changes).await;

    let mia = member(&s, "mia");
    let replies = burst(&s, &mia, "POST", "/v2/models/iris/versions/2/infer", IRIS_ROW, 4).await;
    assert_eq!(statuses(&replies), [200, 200, 200, 429], "the platform's burst 3, one token a request");
}
