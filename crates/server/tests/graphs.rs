//! Inference graphs and traffic splits through the real router, engine, policies and audit
//! log: each node type against onnxruntime's answers on the component models, routing in
//! every protocol's response, security hop by hop (REST, Seldon and gRPC), shadows that
//! fail or hang, and hop records linked to the caller's request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use common::*;
use palisade_audit::{AuditRecord, Filter};
use palisade_bundle::Store;
use palisade_protocol::grpc::{self, GrpcInferenceServiceClient};
use palisade_runtime::{EngineConfig, UpstreamContext};
use palisade_server::{Platform, Registry, ServerConfig};
use serde_json::{Value, json};

const OWNER: &str = "owners: [alice@example.com]\n";

fn model(name: &str) -> String {
    format!("name: {name}\nversion: \"1\"\n{OWNER}model:\n  path: model.onnx\n  format: onnx\n")
}

struct Setup {
    tmp: tempfile::TempDir,
    _policies: tempfile::TempDir,
    app: TestApp,
}

impl Setup {
    fn records(&self) -> Vec<AuditRecord> {
        palisade_audit::query(&self.tmp.path().join("home/audit"), Filter::default())
            .unwrap()
            .map(Result::unwrap)
            .filter(|r| r.config.is_none())
            .collect()
    }

    fn token(&self, email: &str) -> String {
        token_with(self.app.state.security(), email, json!({"email": email, "email_verified": true}))
    }
}

/// A store with the iris models (`iris-lr`, `iris-rf`, `iris-mlp`), the graph fixtures
/// (`scaler`, `scaled-lr`, `router`, `gate`) and the given graphs; served with `policies`.
fn setup(graphs: &[&str], policies: &[(&str, &str)]) -> Setup {
    setup_with(graphs, policies, |_, _| {}, &UpstreamContext::default())
}

fn setup_with(
    graphs: &[&str],
    policies: &[(&str, &str)],
    more: impl FnOnce(&Store, &Path),
    upstream: &UpstreamContext,
) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    for (fixture, name) in [
        ("iris_lr_nozipmap", "iris-lr"),
        ("iris_rf_nozipmap", "iris-rf"),
        ("iris_mlp_nozipmap", "iris-mlp"),
        ("graphs/scaler", "scaler"),
        ("graphs/scaled_lr", "scaled-lr"),
        ("graphs/router", "router"),
        ("graphs/gate", "gate"),
    ] {
        add_bundles(&store, tmp.path(), fixture, &[&model(name)]);
    }
    more(&store, tmp.path());
    for graph in graphs {
        add_graph(&store, tmp.path(), graph).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in policies {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let registry = Registry::load_with(&store, upstream).unwrap();
    let app = app_with(
        store.root(),
        registry,
        EngineConfig::default(),
        ServerConfig::default(),
        Platform::parse(Path::new("platform.yaml"), "{}").unwrap(),
        Some(dir.path().to_owned()),
    );
    Setup { tmp, _policies: dir, app }
}

fn expected(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models").join(name);
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// All 150 iris rows as a V2 request.
fn iris_rows() -> String {
    let iris = expected("iris.json");
    let rows = iris["rows"].as_array().unwrap();
    let data: Vec<f64> =
        rows.iter().flat_map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap())).collect();
    json!({"inputs": [{"name": "X", "shape": [rows.len(), 4], "datatype": "FP32", "data": data}]}).to_string()
}

fn output<'a>(reply: &'a Value, name: &str) -> &'a Value {
    reply["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {reply}"))
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|v| match v.as_array() {
            Some(row) => row.iter().map(|x| x.as_f64().unwrap()).collect::<Vec<_>>(),
            None => vec![v.as_f64().unwrap()],
        })
        .collect()
}

fn assert_close(got: &[f64], want: &[f64], tolerance: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tolerance, "{what}[{i}]: {g} vs onnxruntime's {w}");
    }
}

fn graph(name: &str, body: &str) -> String {
    format!("name: {name}\nversion: \"1\"\n{OWNER}{body}")
}

#[tokio::test]
async fn a_transformer_then_a_model_matches_onnxruntime() {
    let s = setup(
        &[
            &graph(
                "pipeline",
                "graph:\n  name: scale\n  type: TRANSFORMER\n  model: scaler\n  children:\n  - name: rename\n    implementation: RENAME\n    parameters: [{name: scaled, value: X}]\n    children:\n    - {name: classify, type: MODEL, model: scaled-lr}\n",
            ),
            &graph(
                "steps",
                "pipeline:\n  steps:\n  - name: scaler\n  - {name: scaled-lr, inputs: [scaler.outputs.scaled], tensorMap: {scaler.outputs.scaled: X}}\n",
            ),
        ],
        &[],
    );
    let reference = expected("graphs/expected.json");
    // The same, in Seldon Core 2's pipeline syntax.
    for model in ["pipeline", "steps"] {
        let reply = call(&s.app, "POST", &format!("/v2/models/{model}/infer"), iris_rows()).await;
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        let reply = reply.json();
        assert_eq!(output(&reply, "label")["data"], reference["label"], "{model}");
        assert_close(
            &floats(&output(&reply, "probabilities")["data"]),
            &floats(&reference["probabilities"]),
            1e-5,
            model,
        );
    }
    // Metadata: clients cannot tell a graph from a model, beyond its platform.
    let meta = call(&s.app, "GET", "/v2/models/pipeline", "").await.json();
    assert_eq!(meta["inputs"][0]["name"], "X");
    assert_eq!(meta["platform"], "graph");
}

#[tokio::test]
async fn a_pipeline_with_triggers_runs_the_branch_onnxruntime_runs() {
    // Seldon Core 2's conditional pipeline: `gate` answers the rows with a long petal as
    // `long` and the others as `short` (no rows: absent); `iris-rf` runs on the long rows,
    // `iris-lr` on the request when triggered by short rows; the first that ran answers.
    let s = setup(
        &[&graph(
            "conditional",
            "pipeline:\n  steps:\n  - name: gate\n  - {name: iris-rf, inputs: [gate.outputs.long], tensorMap: {gate.outputs.long: X}}\n  - {name: iris-lr, inputs: [conditional.inputs.X], triggers: [gate.outputs.short]}\n  output:\n    steps: [iris-rf, iris-lr]\n    stepsJoin: any\n",
        )],
        &[],
    );
    let reference = expected("graphs/expected.json")["conditional"].clone();
    let rows = expected("iris.json")["rows"].clone();
    let mut branches = std::collections::BTreeSet::new();
    for i in [0usize, 1, 49, 50, 51, 99, 100, 149] {
        let row = json!({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": rows[i]}]});
        let reply = call(&s.app, "POST", "/v2/models/conditional/infer", row.to_string()).await;
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        let id = reply.headers["x-request-id"].to_str().unwrap().to_owned();
        let reply = reply.json();
        assert_eq!(output(&reply, "label")["data"], json!([reference["label"][i]]), "row {i}");
        assert_close(
            &floats(&output(&reply, "probabilities")["data"]),
            &floats(&reference["probabilities"][i]),
            1e-5,
            &format!("row {i}"),
        );
        // Only the branch taken was called, each call a hop of its own.
        let branch = reference["branch"][i].as_str().unwrap();
        branches.insert(branch.to_owned());
        let mut nodes: Vec<String> = s
            .records()
            .into_iter()
            .filter(|r| r.parent_request_id.as_deref() == Some(id.as_str()))
            .filter_map(|r| r.node)
            .collect();
        nodes.sort();
        let want = if branch == "long" { ["gate", "iris-rf"] } else { ["gate", "iris-lr"] };
        assert_eq!(nodes, want, "row {i}");
    }
    assert_eq!(branches.len(), 2, "the rows chosen take both branches");
}

#[tokio::test]
async fn combiners_over_three_models_match_onnxruntime() {
    let children = "  children:\n  - {name: lr, model: iris-lr}\n  - {name: rf, model: iris-rf}\n  - {name: mlp, model: iris-mlp}\n";
    let s = setup(
        &[
            &graph(
                "avg",
                &format!(
                    "graph:\n  name: avg\n  type: COMBINER\n  implementation: AVERAGE_COMBINER\n{children}"
                ),
            ),
            &graph(
                "vote",
                &format!(
                    "graph:\n  name: vote\n  implementation: MAJORITY_VOTE\n  parameters: [{{name: tensor, value: label}}]\n{children}"
                ),
            ),
        ],
        &[],
    );
    let refs: Vec<Value> = ["iris_lr_nozipmap", "iris_rf_nozipmap", "iris_mlp_nozipmap"]
        .iter()
        .map(|m| expected(&format!("{m}.expected.json")))
        .collect();
    let probabilities: Vec<Vec<f64>> = refs.iter().map(|r| floats(&r["probabilities"])).collect();
    let mean: Vec<f64> =
        (0..probabilities[0].len()).map(|i| probabilities.iter().map(|p| p[i]).sum::<f64>() / 3.0).collect();
    let reply = call(&s.app, "POST", "/v2/models/avg/infer", iris_rows()).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    assert_close(&floats(&output(&reply.json(), "probabilities")["data"]), &mean, 1e-5, "mean probabilities");

    let labels: Vec<Vec<i64>> = refs
        .iter()
        .map(|r| r["label"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect())
        .collect();
    let majority: Vec<i64> = (0..labels[0].len())
        .map(|row| {
            let votes = |l: i64| labels.iter().filter(|c| c[row] == l).count();
            // Ties go to the earliest child's label.
            let mut best = labels[0][row];
            for child in &labels {
                if votes(child[row]) > votes(best) {
                    best = child[row];
                }
            }
            best
        })
        .collect();
    let reply = call(&s.app, "POST", "/v2/models/vote/infer", iris_rows()).await.json();
    assert_eq!(output(&reply, "label")["data"], json!(majority));
}

#[tokio::test]
async fn a_router_model_routes_per_index_and_says_so() {
    let s = setup(
        &[&graph(
            "routed",
            "graph:\n  name: router\n  type: ROUTER\n  model: router\n  children:\n  - {name: lr, model: iris-lr}\n  - {name: rf, model: iris-rf}\n",
        )],
        &[],
    );
    let row = |first: f64| {
        json!({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [first, 3.0, 1.0, 0.2]}]}).to_string()
    };
    for (index, direct) in [(0, Some("iris-lr")), (1, Some("iris-rf")), (-1, Some("iris-lr")), (-2, None)] {
        let reply = call(&s.app, "POST", "/v2/models/routed/infer", row(index as f64)).await;
        assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
        assert_eq!(reply.headers["x-palisade-route"], format!("router={index}").as_str());
        let body = reply.json();
        assert_eq!(body["parameters"]["routing"], json!({"router": index}));
        match direct {
            Some(model) => {
                let alone = call(&s.app, "POST", &format!("/v2/models/{model}/infer"), row(index as f64))
                    .await
                    .json();
                assert_eq!(body["outputs"], alone["outputs"], "index {index}");
            }
            // -2: the router's input is the answer.
            None => assert_eq!(body["outputs"][0]["name"], "X"),
        }
    }
    let reply = call(&s.app, "POST", "/v2/models/routed/infer", row(2.0)).await;
    // Index 2 of two children: the node failed, which its record says.
    assert_eq!(reply.status, 500);
    let id = reply.headers["x-request-id"].to_str().unwrap().to_owned();
    let own = s.records().into_iter().find(|r| r.request_id.as_deref() == Some(id.as_str())).unwrap();
    assert_eq!(own.node.as_deref(), Some("router"));
}

fn routing_of_seldon(reply: &Reply) -> Value {
    reply.json()["meta"]["routing"].clone()
}

/// Allows bob (and alice, their owner) to call the graphs, not the models they run.
const BOB_ON_GRAPHS: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: bob-graphs, namespace: default}\nspec:\n  selector: {matchLabels: {app: graph}}\n  rules:\n  - when:\n    - key: request.auth.claims[email]\n      values: [bob@example.com, alice@example.com]\n";

/// Allows the graph `as-graph` to call iris-rf.
const GRAPH_ON_RF: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: graph-on-rf, namespace: default}\nspec:\n  selector: {matchLabels: {palisade.dev/model: iris-rf}}\n  rules:\n  - from:\n    - source: {principals: [\"graph:default/as-graph\"]}\n  - when:\n    - key: request.auth.claims[email]\n      values: [alice@example.com]\n";

fn labelled_graph(name: &str, body: &str) -> String {
    format!("name: {name}\nversion: \"1\"\nlabels: {{app: graph}}\n{OWNER}{body}")
}

#[tokio::test]
async fn a_caller_refused_by_a_node_is_refused_through_the_graph_in_every_protocol() {
    let s = setup(
        &[
            &labelled_graph("split", "traffic: [{model: iris-lr, weight: 0}, {model: iris-rf, weight: 1}]\n"),
            &labelled_graph(
                "as-graph",
                "traffic: [{model: iris-lr, weight: 0}, {model: iris-rf, weight: 1}]\ncallAs: graph\n",
            ),
            &labelled_graph(
                "as-graph-lr",
                "traffic: [{model: iris-lr, weight: 1}, {model: iris-rf, weight: 0}]\ncallAs: graph\n",
            ),
        ],
        &[("bob.yaml", BOB_ON_GRAPHS), ("graph.yaml", GRAPH_ON_RF)],
    );
    let bob = s.token("bob@example.com");
    // Bob may not call iris-rf directly...
    let direct = call_as(&s.app, Some(&bob), "POST", "/v2/models/iris-rf/infer", IRIS_ROW).await;
    assert_eq!(direct.status, 403);
    // ...nor through the graph, over REST V2 and Seldon.
    let reply = call_as(&s.app, Some(&bob), "POST", "/v2/models/split/infer", IRIS_ROW).await;
    assert_eq!(reply.status, 403, "{}", String::from_utf8_lossy(&reply.body));
    let request_id = reply.headers["x-request-id"].to_str().unwrap().to_owned();
    let seldon = call_as(
        &s.app,
        Some(&bob),
        "POST",
        "/seldon/default/split/api/v1.0/predictions",
        r#"{"data":{"ndarray":[[5.1,3.5,1.4,0.2]]}}"#,
    )
    .await;
    assert_eq!(seldon.status, 403, "{}", String::from_utf8_lossy(&seldon.body));
    // The owner gets through, and learns the arm.
    let owner = call(&s.app, "POST", "/v2/models/split/infer", IRIS_ROW).await;
    assert_eq!(owner.status, 200);
    assert_eq!(owner.json()["parameters"]["routing"], json!({"traffic": "iris-rf"}));
    assert_eq!(owner.headers["x-palisade-route"], "traffic=iris-rf");
    let seldon = call(
        &s.app,
        "POST",
        "/seldon/default/split/api/v1.0/predictions",
        r#"{"data":{"ndarray":[[5.1,3.5,1.4,0.2]]}}"#,
    )
    .await;
    assert_eq!(routing_of_seldon(&seldon), json!({"traffic": 1}));
    assert_eq!(seldon.json()["meta"]["requestPath"]["traffic"], "iris-rf");

    // The hop record names the node and links to the caller's request.
    let records = s.records();
    let hop = records
        .iter()
        .find(|r| r.parent_request_id.as_deref() == Some(request_id.as_str()))
        .expect("a hop record");
    assert_eq!(hop.node.as_deref(), Some("iris-rf"));
    assert_eq!(hop.status, Some(403));
    assert_eq!(hop.model.as_ref().unwrap().name, "iris-rf");
    assert_eq!(hop.request_principal.as_deref().map(|p| p.ends_with("/bob@example.com")), Some(true));
    let own = records.iter().find(|r| r.request_id.as_deref() == Some(request_id.as_str())).unwrap();
    assert_eq!(own.status, Some(403));
    assert_eq!(own.node.as_deref(), Some("iris-rf"));
    assert_eq!(own.model.as_ref().unwrap().name, "split");

    // callAs: graph: iris-rf's policy allows the graph's principal, so bob gets through;
    // iris-lr's does not, so the graph over iris-lr is refused.
    let reply = call_as(&s.app, Some(&bob), "POST", "/v2/models/as-graph/infer", IRIS_ROW).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let id = reply.headers["x-request-id"].to_str().unwrap().to_owned();
    let reply = call_as(&s.app, Some(&bob), "POST", "/v2/models/as-graph-lr/infer", IRIS_ROW).await;
    assert_eq!(reply.status, 403);
    let records = s.records();
    let hop = records.iter().find(|r| r.parent_request_id.as_deref() == Some(id.as_str())).unwrap();
    assert_eq!(hop.request_principal.as_deref(), Some("graph:default/as-graph"));
    assert_eq!(hop.status, Some(200));

    // `policy explain` shows both: who may call the graph, and what its hops need.
    let explained = call(&s.app, "GET", "/manage/v1/models/as-graph-lr/explain", "").await;
    assert_eq!(explained.status, 200, "{}", String::from_utf8_lossy(&explained.body));
    let text = explained.json()["text"].to_string();
    assert!(text.contains("as `graph:default/as-graph-lr` (callAs: graph)"), "{text}");
    assert!(text.contains("iris-lr: does NOT allow graph:default/as-graph-lr"), "{text}");
    let explained = call(&s.app, "GET", "/manage/v1/models/as-graph/explain", "").await.json();
    assert!(
        explained["text"].to_string().contains("iris-rf: allows graph:default/as-graph"),
        "{}",
        explained["text"]
    );
    let explained = call(&s.app, "GET", "/manage/v1/models/split/explain", "").await.json();
    assert!(
        explained["text"].to_string().contains("as the caller (callAs: caller)"),
        "{}",
        explained["text"]
    );

    // gRPC, on a real socket.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(palisade_server::serve(listener, s.app.router.clone(), std::future::pending()));
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut client = GrpcInferenceServiceClient::new(channel);
    let x = palisade_core::Tensor::new(
        "X",
        vec![1, 4],
        palisade_core::TensorData::Fp32(vec![5.1, 3.5, 1.4, 0.2]),
    )
    .unwrap();
    let message = |token: &str| {
        let mut request = tonic::Request::new(grpc::encode_infer_request(
            "split",
            None,
            None,
            std::slice::from_ref(&x),
            true,
        ));
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        request
    };
    let refused = client.model_infer(message(&bob)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let answered = client.model_infer(message(&s.app.token)).await.unwrap();
    assert_eq!(answered.metadata().get("x-palisade-route").unwrap(), "traffic=iris-rf");
    let routing = &answered.into_inner().parameters["routing"];
    let Some(grpc::inference::infer_parameter::ParameterChoice::StringParam(text)) =
        &routing.parameter_choice
    else {
        panic!("{routing:?}")
    };
    assert_eq!(serde_json::from_str::<Value>(text).unwrap(), json!({"traffic": "iris-rf"}));
}

/// An upstream that reads each request and answers 500 after `delay`, on its own thread
/// and runtime (the test's runtime is single-threaded).
async fn answering_upstream(delay: Duration) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { return };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                let mut seen = Vec::new();
                while let Ok(n) = socket.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    // One answer per request: its headers, then its body (content-length).
                    let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                    let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if seen.len() < end + 4 + length {
                        continue;
                    }
                    seen.drain(..end + 4 + length);
                    std::thread::sleep(delay);
                    let body = r#"{"error":"broken"}"#;
                    let answer = format!(
                        "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if socket.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// A socket that accepts connections and never answers.
async fn silent_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

#[tokio::test]
async fn a_shadow_that_fails_or_hangs_changes_nothing_for_the_caller() {
    let egress =
        palisade_runtime::EgressPolicy { allowed_hosts: vec!["127.0.0.1".to_owned()], own_ports: Vec::new() };
    let upstream = UpstreamContext { egress: std::sync::Arc::new(egress), ..UpstreamContext::default() };
    // Three shadows' models: one whose upstream never answers, one that answers 500 at once,
    // one that answers 500 after a second.
    let shadows = [
        ("hangs", silent_upstream().await),
        ("fails", answering_upstream(Duration::ZERO).await),
        ("slow", answering_upstream(Duration::from_secs(1)).await),
    ];
    let check = UpstreamContext { check_only: true, ..upstream.clone() };
    let s = setup_with(
        &[
            &graph("plain", "traffic: [{model: iris-lr, weight: 1}]\n"),
            &graph(
                "hanging",
                "traffic: [{model: iris-lr, weight: 1}]\nshadow: {model: hangs, percent: 100}\n",
            ),
            &graph(
                "failing",
                "traffic: [{model: iris-lr, weight: 1}]\nshadow: {model: fails, percent: 100}\n",
            ),
            &graph("slowed", "traffic: [{model: iris-lr, weight: 1}]\nshadow: {model: slow, percent: 100}\n"),
            // Only alice owns the shadow's model `refusing`: bob's copies are refused.
            &labelled_graph(
                "refused",
                "traffic: [{model: iris-lr, weight: 1}]\nshadow: {model: iris-rf, percent: 100}\n",
            ),
        ],
        &[
            ("bob.yaml", BOB_ON_GRAPHS),
            (
                "bob-lr.yaml",
                "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: bob-lr, namespace: default}\nspec:\n  selector: {matchLabels: {palisade.dev/model: iris-lr}}\n  rules:\n  - when:\n    - key: request.auth.claims[email]\n      values: [bob@example.com, alice@example.com]\n",
            ),
        ],
        |store, scratch| {
            for (name, url) in &shadows {
                let manifest = format!(
                    "name: {name}\nversion: \"1\"\n{OWNER}model:\n  format: upstream\n  upstream:\n    url: {url}\n    timeout: 1h\n  inputs: [{{name: X, datatype: FP32, shape: [-1, 4]}}]\n  outputs: [{{name: label, datatype: INT64, shape: [-1]}}]\n"
                );
                let dir = tempfile::tempdir_in(scratch).unwrap();
                std::fs::write(dir.path().join("palisade.yaml"), &manifest).unwrap();
                let mut staged = store.stage(dir.path()).unwrap();
                let model =
                    palisade_runtime::prepare_with(staged.manifest(), &staged.model_path(), &check).unwrap();
                staged.set_signature(model.signature()).unwrap();
                store.commit(staged).unwrap();
            }
        },
        &upstream,
    );
    let plain = call(&s.app, "POST", "/v2/models/plain/infer", IRIS_ROW).await;
    assert_eq!(plain.status, 200);
    // The shadows' models fail when called directly.
    let direct = call(&s.app, "POST", "/v2/models/fails/infer", IRIS_ROW).await;
    assert_eq!(direct.status, 502, "{}", String::from_utf8_lossy(&direct.body));
    for graph in ["hanging", "failing", "slowed"] {
        let started = Instant::now();
        let mut ids = Vec::new();
        for _ in 0..5 {
            let reply = call(&s.app, "POST", &format!("/v2/models/{graph}/infer"), IRIS_ROW).await;
            assert_eq!(reply.status, 200, "{graph}");
            assert_eq!(reply.json()["outputs"], plain.json()["outputs"], "{graph}");
            ids.push(reply.headers["x-request-id"].to_str().unwrap().to_owned());
        }
        // Five answers while every shadow call hangs (for up to an hour), fails, or takes a
        // second each: the caller waits for none of them.
        assert!(started.elapsed() < Duration::from_secs(2), "{graph}: {:?}", started.elapsed());
        if graph == "failing" {
            // The shadow's failure is audited, linked to the caller's request, never returned.
            let deadline = Instant::now() + Duration::from_secs(5);
            while !s.records().iter().any(|r| {
                r.parent_request_id.as_deref() == Some(ids[0].as_str())
                    && r.node.as_deref() == Some("shadow")
                    && r.status.is_some_and(|status| status >= 500)
            }) {
                assert!(
                    Instant::now() < deadline,
                    "no failed shadow record for {}: {:?}",
                    ids[0],
                    s.records()
                        .iter()
                        .filter(|r| r.parent_request_id.as_deref() == Some(ids[0].as_str()))
                        .map(|r| (r.node.clone(), r.status, r.model.as_ref().map(|m| m.name.clone())))
                        .collect::<Vec<_>>()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    let bob = s.token("bob@example.com");
    let reply = call_as(&s.app, Some(&bob), "POST", "/v2/models/refused/infer", IRIS_ROW).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.json()["outputs"], plain.json()["outputs"]);
    let id = reply.headers["x-request-id"].to_str().unwrap().to_owned();
    // The shadow's refusal is audited, linked to bob's request, under the node `shadow`.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let records = s.records();
        if let Some(shadow) = records.iter().find(|r| {
            r.parent_request_id.as_deref() == Some(id.as_str()) && r.node.as_deref() == Some("shadow")
        }) {
            assert_eq!(shadow.status, Some(403));
            assert_eq!(shadow.model.as_ref().unwrap().name, "iris-rf");
            break;
        }
        assert!(Instant::now() < deadline, "no shadow record");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sticky_callers_keep_their_arm_by_header() {
    let s = setup(
        &[&graph(
            "sticky",
            "traffic: [{model: iris-lr, weight: 50}, {model: iris-rf, weight: 50}]\nsticky: {header: x-user}\n",
        )],
        &[],
    );
    let mut arms = std::collections::BTreeMap::new();
    for user in 0..40 {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..3 {
            let req = Request::builder()
                .method("POST")
                .uri("/v2/models/sticky/infer")
                .header("authorization", format!("Bearer {}", s.app.token))
                .header("x-user", format!("user-{user}"))
                .body(Body::from(IRIS_ROW))
                .unwrap();
            let reply = send(&s.app, req).await;
            seen.insert(reply.headers["x-palisade-route"].to_str().unwrap().to_owned());
        }
        assert_eq!(seen.len(), 1, "user-{user}: {seen:?}");
        *arms.entry(seen.into_iter().next().unwrap()).or_insert(0) += 1;
    }
    assert_eq!(arms.len(), 2, "{arms:?}");
}

#[test]
fn graph_bundles_that_do_not_fit_are_refused_with_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    add_bundles(&store, tmp.path(), "iris_lr_nozipmap", &[&model("iris-lr")]);
    add_bundles(&store, tmp.path(), "graphs/scaler", &[&model("scaler")]);
    let err =
        add_graph(&store, tmp.path(), &graph("g", "graph:\n  name: a\n  model: iris-nope\n")).unwrap_err();
    assert!(err.contains("field `graph.model`") && err.contains("not in the store"), "{err}");
    // The scaler answers `scaled`; iris-lr takes `X`.
    let err = add_graph(
        &store,
        tmp.path(),
        &graph("g", "graph:\n  name: a\n  model: scaler\n  children:\n  - {name: b, model: iris-lr}\n"),
    )
    .unwrap_err();
    assert!(err.contains("field `graph.children[0].model`") && err.contains("takes tensor `X`"), "{err}");
    // g1 -> g2 -> g1 (latest): a cycle.
    add_graph(&store, tmp.path(), &graph("g1", "graph:\n  name: a\n  model: iris-lr\n")).unwrap();
    add_graph(&store, tmp.path(), &graph("g2", "graph:\n  name: a\n  model: g1\n")).unwrap();
    let err = add_graph(
        &store,
        tmp.path(),
        "name: g1\nversion: \"2\"\nowners: [alice@example.com]\ngraph:\n  name: a\n  model: g2\n",
    )
    .unwrap_err();
    assert!(err.contains("cycle: g1 -> g2 -> g1"), "{err}");
}

/// Allows bob, carol and alice to call every model of the namespace (feedback is decided
/// by the graph: the request's caller or an owner).
const BOTH_ON_BANDIT: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: bandit, namespace: default}\nspec:\n  rules:\n  - when:\n    - key: request.auth.claims[email]\n      values: [bob@example.com, carol@example.com, alice@example.com]\n";

#[tokio::test]
async fn feedback_drives_bandits_only_from_the_caller_or_owners_and_ignores_forged_routes() {
    let s = setup(
        &[&graph(
            "bandit",
            "graph:\n  name: bandit\n  implementation: EPSILON_GREEDY\n  parameters: [{name: epsilon, value: '0.1', type: FLOAT}]\n  children:\n  - {name: lr, model: iris-lr}\n  - {name: rf, model: iris-rf}\n",
        )],
        &[("bandit.yaml", BOTH_ON_BANDIT)],
    );
    let bob = s.token("bob@example.com");
    // Bob's request; alice owns the graph; carol is neither.
    let reply = call_as(&s.app, Some(&bob), "POST", "/v2/models/bandit/infer", IRIS_ROW).await;
    assert_eq!(reply.status, 200);
    let id = reply.headers["x-request-id"].to_str().unwrap().to_owned();
    let taken = reply.json()["parameters"]["routing"]["bandit"].as_i64().unwrap();
    let forged = 1 - taken;
    let body = json!({"request_id": id, "reward": 1.0, "routing": {"bandit": forged}}).to_string();
    let carol = s.token("carol@example.com");
    let refused = call_as(&s.app, Some(&carol), "POST", "/v2/models/bandit/feedback", body.clone()).await;
    assert_eq!(refused.status, 403);
    // Bob's own feedback counts for the arm his request took, not the one the body names.
    let accepted = call_as(&s.app, Some(&bob), "POST", "/v2/models/bandit/feedback", body.clone()).await;
    assert_eq!(accepted.status, 200, "{}", String::from_utf8_lossy(&accepted.body));
    assert_eq!(accepted.json()["routing"], json!({"bandit": taken}));
    // The OpenAPI document describes the route for graphs.
    let document = call(&s.app, "GET", "/openapi.json", "").await.json();
    assert!(document["paths"]["/v2/models/bandit/feedback"]["post"].is_object());
    assert!(document["paths"]["/v2/models/iris-lr/feedback"].is_null());
    // One reward per request.
    let again = call_as(&s.app, Some(&bob), "POST", "/v2/models/bandit/feedback", body).await;
    assert_eq!(again.status, 404);
    assert!(again.json()["error"].as_str().unwrap().contains("rewarded already"));

    // The owner rewards rf whenever it is chosen (Seldon's feedback route, by puid): the
    // bandit converges on rf.
    let mut rf_late = 0;
    for round in 0..300 {
        let reply = call(
            &s.app,
            "POST",
            "/seldon/default/bandit/api/v1.0/predictions",
            r#"{"data":{"ndarray":[[5.1,3.5,1.4,0.2]]}}"#,
        )
        .await;
        assert_eq!(reply.status, 200);
        let reply = reply.json();
        let chose_rf = reply["meta"]["routing"]["bandit"] == 1;
        let feedback = json!({"response": {"meta": {"puid": reply["meta"]["puid"], "routing": {"bandit": 1}}}, "reward": if chose_rf { 1.0 } else { 0.0 }});
        let sent =
            call(&s.app, "POST", "/seldon/default/bandit/api/v1.0/feedback", feedback.to_string()).await;
        assert_eq!(sent.status, 200, "{}", String::from_utf8_lossy(&sent.body));
        if round >= 200 && chose_rf {
            rf_late += 1;
        }
    }
    assert!(rf_late >= 80, "{rf_late} of the last 100 requests went to the rewarded arm");
}

#[tokio::test]
async fn sticky_callers_keep_their_arm_by_claim_and_metrics_show_the_split_served() {
    let s = setup(
        &[&graph(
            "by-claim",
            "traffic: [{model: iris-lr, weight: 50}, {model: iris-rf, weight: 50}]\nsticky: {claim: email}\n",
        )],
        &[("all.yaml", BOTH_ON_BANDIT)],
    );
    let mut arms = std::collections::BTreeMap::new();
    for caller in ["alice@example.com", "bob@example.com", "carol@example.com"] {
        let token = s.token(caller);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..5 {
            let reply = call_as(&s.app, Some(&token), "POST", "/v2/models/by-claim/infer", IRIS_ROW).await;
            assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
            seen.insert(reply.headers["x-palisade-route"].to_str().unwrap().to_owned());
        }
        assert_eq!(seen.len(), 1, "{caller}: {seen:?}");
        *arms.entry(seen.into_iter().next().unwrap()).or_insert(0u32) += 5;
    }
    let admin = palisade_server::admin_app(s.app.state.clone());
    let res = tower::ServiceExt::oneshot(admin, Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(
        http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes().to_vec(),
    )
    .unwrap();
    for (route, count) in arms {
        let arm = route.trim_start_matches("traffic=");
        let line = format!(
            "palisade_graph_routes_total{{arm=\"{arm}\",graph=\"by-claim\",router=\"traffic\"}} {count}"
        );
        assert!(text.contains(&line), "no `{line}` in\n{text}");
    }
    assert!(text.contains("palisade_graph_hops_total{graph=\"by-claim\""), "{text}");
    assert!(text.contains("palisade_graph_hop_duration_seconds_bucket{graph=\"by-claim\""), "{text}");
}

#[test]
fn graphs_follow_the_models_they_name_across_reloads() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    add_bundles(&store, tmp.path(), "iris_lr_nozipmap", &[&model("iris-lr")]);
    add_graph(&store, tmp.path(), &graph("split", "traffic: [{model: iris-lr, weight: 1}]\n")).unwrap();
    let upstream = UpstreamContext::default();
    let first = Registry::load(&store).unwrap();
    let graph_before = first.get("split", None).unwrap();
    assert!(graph_before.model.graph().is_some());
    // A new version of the component with the same signature: the graph is kept as it is
    // (its routers' state too).
    add_bundles(
        &store,
        tmp.path(),
        "iris_lr_nozipmap",
        &[
            "name: iris-lr\nversion: \"2\"\nowners: [alice@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\n",
        ],
    );
    let (second, changes) = first.reload(&store, &upstream).unwrap();
    assert!(changes.failed.is_empty(), "{:?}", changes.failed);
    assert!(std::sync::Arc::ptr_eq(&second.get("split", None).unwrap(), &graph_before));
    // The component gone: the graph is not served, and the reload says why.
    store.delete(&"iris-lr".parse().unwrap(), "1").unwrap();
    store.delete(&"iris-lr".parse().unwrap(), "2").unwrap();
    let (third, changes) = second.reload(&store, &upstream).unwrap();
    assert!(third.get("split", None).is_err());
    assert!(
        changes.failed.iter().any(|(model, why)| model == "split:1" && why.contains("traffic[0].model")),
        "{:?}",
        changes.failed
    );
    assert!(changes.unloaded.iter().any(|m| m.id.name.as_str() == "split"));
}

/// One Seldon gRPC call through the router: (grpc-status, the answer).
async fn seldon_grpc(
    app: &TestApp,
    rpc: &str,
    message: Vec<u8>,
    token: &str,
    model: &str,
) -> (i32, Option<palisade_protocol::seldon::grpc::protos::SeldonMessage>) {
    use prost::Message;
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(&message);
    let req = Request::builder()
        .method("POST")
        .uri(format!("/seldon.protos.Seldon/{rpc}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {token}"))
        .header("seldon", model)
        .header("namespace", "default")
        .body(Body::from(body))
        .unwrap();
    let res = tower::ServiceExt::oneshot(app.router.clone(), req).await.unwrap();
    let headers = res.headers().clone();
    let collected = http_body_util::BodyExt::collect(res.into_body()).await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let bytes = collected.to_bytes();
    let code =
        |map: &axum::http::HeaderMap| map.get("grpc-status").and_then(|v| v.to_str().ok()?.parse().ok());
    let status = code(&headers).or_else(|| code(&trailers)).expect("a gRPC status");
    let message = (bytes.len() > 5)
        .then(|| palisade_protocol::seldon::grpc::protos::SeldonMessage::decode(&bytes[5..]).unwrap());
    (status, message)
}

#[tokio::test]
async fn seldon_grpc_feedback_rewards_the_route_the_server_remembers() {
    use palisade_protocol::seldon::grpc::protos::{Feedback, Meta, SeldonMessage};
    use prost::Message;
    let s = setup(
        &[&graph(
            "bandit",
            "graph:\n  name: bandit\n  implementation: THOMPSON_SAMPLING\n  children:\n  - {name: lr, model: iris-lr}\n  - {name: rf, model: iris-rf}\n",
        )],
        &[("all.yaml", BOTH_ON_BANDIT)],
    );
    // A request has the shape of an answer: `data.ndarray`.
    let request = palisade_protocol::seldon::grpc::response_message(
        &json!({"data": {"names": [], "ndarray": [[5.1, 3.5, 1.4, 0.2]]}, "meta": {}}),
    )
    .unwrap();
    let (code, answer) =
        seldon_grpc(&s.app, "Predict", request.encode_to_vec(), &s.app.token, "bandit").await;
    assert_eq!(code, 0);
    let meta = answer.unwrap().meta.unwrap();
    assert!(meta.routing.contains_key("bandit"), "{meta:?}");
    let feedback = |puid: &str| {
        Feedback {
            response: Some(SeldonMessage {
                meta: Some(Meta { puid: puid.to_owned(), ..Default::default() }),
                ..Default::default()
            }),
            reward: 1.0,
            ..Default::default()
        }
        .encode_to_vec()
    };
    let carol = s.token("carol@example.com");
    let (code, _) = seldon_grpc(&s.app, "SendFeedback", feedback(&meta.puid), &carol, "bandit").await;
    assert_eq!(code, 7, "another caller's feedback is PERMISSION_DENIED");
    let (code, answer) =
        seldon_grpc(&s.app, "SendFeedback", feedback(&meta.puid), &s.app.token, "bandit").await;
    assert_eq!(code, 0);
    assert_eq!(answer.unwrap().meta.unwrap().puid, meta.puid);
    let (code, _) = seldon_grpc(&s.app, "SendFeedback", feedback(&meta.puid), &s.app.token, "bandit").await;
    assert_eq!(code, 5, "one reward per request: NOT_FOUND after");
}

#[tokio::test]
async fn built_in_transformers_and_combiners_match_onnxruntime() {
    let children = "  children:\n  - {name: lr, model: iris-lr}\n  - {name: rf, model: iris-rf}\n  - {name: mlp, model: iris-mlp}\n";
    let s = setup(
        &[
            &graph(
                "halved",
                "inputs: [{name: X, datatype: FP32, shape: [-1, 4]}]\ngraph:\n  name: scale\n  implementation: SCALE\n  parameters: [{name: scale, value: '0.5', type: FLOAT}, {name: offset, value: '0.1', type: FLOAT}]\n  children:\n  - {name: lr, model: iris-lr}\n",
            ),
            &graph(
                "probs64",
                "graph:\n  name: select\n  type: OUTPUT_TRANSFORMER\n  implementation: SELECT\n  parameters: [{name: tensors, value: probabilities}]\n  children:\n  - name: cast\n    type: OUTPUT_TRANSFORMER\n    implementation: CAST\n    parameters: [{name: datatype, value: FP64}, {name: tensors, value: probabilities}]\n    children:\n    - {name: lr, model: iris-lr}\n",
            ),
            &graph(
                "joined",
                &format!(
                    "graph:\n  name: joined\n  implementation: CONCAT_COMBINER\n  parameters: [{{name: tensors, value: probabilities}}]\n{children}"
                ),
            ),
        ],
        &[],
    );
    let reference = expected("graphs/expected.json");
    let reply = call(&s.app, "POST", "/v2/models/halved/infer", iris_rows()).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let reply = reply.json();
    assert_eq!(output(&reply, "label")["data"], reference["scale_then_lr"]["label"]);
    assert_close(
        &floats(&output(&reply, "probabilities")["data"]),
        &floats(&reference["scale_then_lr"]["probabilities"]),
        1e-5,
        "SCALE then iris-lr",
    );

    let lr = expected("iris_lr_nozipmap.expected.json");
    let reply = call(&s.app, "POST", "/v2/models/probs64/infer", iris_rows()).await.json();
    assert_eq!(reply["outputs"].as_array().unwrap().len(), 1, "{reply}");
    assert_eq!(reply["outputs"][0]["datatype"], "FP64");
    assert_close(&floats(&reply["outputs"][0]["data"]), &floats(&lr["probabilities"]), 1e-5, "CAST, SELECT");

    let parts: Vec<Vec<f64>> = ["iris_lr_nozipmap", "iris_rf_nozipmap", "iris_mlp_nozipmap"]
        .iter()
        .map(|m| floats(&expected(&format!("{m}.expected.json"))["probabilities"]))
        .collect();
    let joined: Vec<f64> =
        (0..150).flat_map(|row| parts.iter().flat_map(move |p| p[row * 3..row * 3 + 3].to_vec())).collect();
    let reply = call(&s.app, "POST", "/v2/models/joined/infer", iris_rows()).await.json();
    assert_eq!(reply["outputs"][0]["shape"], json!([150, 9]));
    assert_close(&floats(&reply["outputs"][0]["data"]), &joined, 1e-5, "CONCAT_COMBINER");
}

/// mTLS STRICT through a graph: the graph request arrives on one connection, the caller's,
/// and that is the connection a STRICT component model judges (hops open none), whoever
/// the hop runs as; a STRICT graph refuses before any hop. The connection facts are what
/// the TLS listener attaches (the handshakes are tested with curl in the cli crate).
#[tokio::test]
async fn strict_components_and_strict_graphs_judge_the_callers_connection() {
    let strict = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: strict-tier, namespace: default}\nspec:\n  selector:\n    matchLabels: {tier: strict}\n  mtls: {mode: STRICT}\n";
    let allow_graph = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: as-graph, namespace: default}\nspec:\n  selector:\n    matchLabels: {palisade.dev/model: strict-b}\n  rules:\n  - from:\n    - source: {principals: [\"graph:default/via-graph\"]}\n";
    let labelled = |name: &str| format!("{}labels: {{tier: strict}}\n", model(name));
    let s = setup_with(
        &[
            &graph("open-graph", "traffic: [{model: iris-lr, weight: 1}]\n"),
            &graph("via-caller", "traffic: [{model: strict-a, weight: 1}]\n"),
            &graph("via-graph", "callAs: graph\ntraffic: [{model: strict-b, weight: 1}]\n"),
            &graph("strict-graph", "labels: {tier: strict}\ntraffic: [{model: iris-lr, weight: 1}]\n"),
        ],
        &[("strict.yaml", strict), ("allow-graph.yaml", allow_graph)],
        |store, scratch| {
            add_bundles(store, scratch, "iris_lr_nozipmap", &[&labelled("strict-a"), &labelled("strict-b")]);
        },
        &UpstreamContext::default(),
    );
    let infer = |graph: &str, verified: bool| {
        let mut req = Request::post(format!("/v2/models/{graph}/infer"))
            .header("authorization", format!("Bearer {}", s.app.token))
            .body(Body::from(IRIS_ROW))
            .unwrap();
        let peer = verified.then(|| {
            palisade_tls::PeerIdentity::new(&palisade_tls::TrustDomain::default(), "billing", "batch")
                .unwrap()
        });
        let conn = palisade_server::ConnInfo {
            remote: "10.0.0.7:50000".parse().unwrap(),
            local: "10.0.0.1:8443".parse().unwrap(),
            peer,
            sni: None,
            tls: true,
        };
        req.extensions_mut().insert(axum::extract::ConnectInfo(conn));
        send(&s.app, req)
    };
    let hops_of = |reply: &Reply| -> Vec<AuditRecord> {
        let id = reply.headers["x-request-id"].to_str().unwrap().to_owned();
        s.records().into_iter().filter(|r| r.parent_request_id.as_deref() == Some(id.as_str())).collect()
    };
    for graph in ["open-graph", "via-caller", "via-graph", "strict-graph"] {
        let with_cert = infer(graph, true).await;
        assert_eq!(with_cert.status, 200, "{graph}: {}", String::from_utf8_lossy(&with_cert.body));
        let without = infer(graph, false).await;
        if graph == "open-graph" {
            assert_eq!(
                without.status, 200,
                "a graph of PERMISSIVE models serves TLS without a client certificate"
            );
            continue;
        }
        assert_eq!(without.status, 403, "{graph}");
        let body = String::from_utf8_lossy(&without.body);
        assert!(body.contains("mutual TLS is required"), "{graph}: {body}");
        let hops = hops_of(&without);
        match graph {
            // Refused at the graph's own door: no hop ran.
            "strict-graph" => assert!(hops.is_empty(), "{hops:?}"),
            // Refused at the STRICT node, whose record says so.
            _ => {
                assert_eq!(hops.len(), 1, "{hops:?}");
                assert_eq!(hops[0].status, Some(403));
                assert!(
                    hops[0].node.as_deref().is_some_and(|n| n.starts_with("strict-")),
                    "{:?}",
                    hops[0].node
                );
            }
        }
    }
}

/// Stores an upstream model `name` at `url` taking the iris `X` and answering a `label`.
fn store_upstream(store: &Store, scratch: &Path, name: &str, url: &str, check: &UpstreamContext) {
    let manifest = format!(
        "name: {name}\nversion: \"1\"\n{OWNER}model:\n  format: upstream\n  upstream:\n    url: {url}\n    timeout: 1h\n  inputs: [{{name: X, datatype: FP32, shape: [-1, 4]}}]\n  outputs: [{{name: label, datatype: INT64, shape: [-1]}}]\n"
    );
    let dir = tempfile::tempdir_in(scratch).unwrap();
    std::fs::write(dir.path().join("palisade.yaml"), manifest).unwrap();
    let mut staged = store.stage(dir.path()).unwrap();
    let model = palisade_runtime::prepare_with(staged.manifest(), &staged.model_path(), check).unwrap();
    staged.set_signature(model.signature()).unwrap();
    store.commit(staged).unwrap();
}

#[tokio::test]
async fn pipeline_joins_go_on_without_a_hanging_or_failing_step_only_when_outer_and_audit_it() {
    let hanging = silent_upstream().await;
    // A port nothing listens on: calls to it fail at once (502).
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let egress =
        palisade_runtime::EgressPolicy { allowed_hosts: vec!["127.0.0.1".to_owned()], own_ports: Vec::new() };
    let upstream = UpstreamContext { egress: std::sync::Arc::new(egress), ..UpstreamContext::default() };
    let check = UpstreamContext { check_only: true, ..upstream.clone() };
    // iris-lr and a second step joined at the output, as `join`, within `window`.
    let joined = |name: &str, other: &str, join: &str, window: &str| {
        graph(
            name,
            &format!(
                "pipeline:\n  steps:\n  - name: iris-lr\n  - name: {other}\n  output:\n    steps: [iris-lr, {other}]\n    tensorMap: {{{other}.outputs.label: other_label}}\n    stepsJoin: {join}\n{window}"
            ),
        )
    };
    let s = setup_with(
        &[
            &joined("outer-late", "hangs", "outer", "    joinWindowMs: 300\n"),
            &joined("inner-late", "hangs", "inner", "    joinWindowMs: 300\n"),
            &joined("outer-failing", "refuses", "outer", ""),
            &joined("inner-failing", "refuses", "inner", ""),
        ],
        &[],
        |store, scratch| {
            store_upstream(store, scratch, "hangs", &hanging, &check);
            store_upstream(store, scratch, "refuses", &closed, &check);
        },
        &upstream,
    );
    let direct = call(&s.app, "POST", "/v2/models/iris-lr/infer", IRIS_ROW).await;
    assert_eq!(direct.status, 200);
    let direct = direct.json();
    let hops_of = |id: &str| {
        let mut hops: Vec<(String, u16)> = s
            .records()
            .into_iter()
            .filter(|r| r.parent_request_id.as_deref() == Some(id))
            .map(|r| (r.node.unwrap(), r.status.unwrap()))
            .collect();
        hops.sort();
        hops
    };

    // outer: the answer leaves when the window closes, with iris-lr's tensors alone; the
    // hanging step is cut off, and its hop record says so (499).
    let started = Instant::now();
    let reply = call(&s.app, "POST", "/v2/models/outer-late/infer", IRIS_ROW).await;
    let took = started.elapsed();
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(5), "{took:?}");
    let id = reply.headers["x-request-id"].to_str().unwrap().to_owned();
    let body = reply.json();
    let names: Vec<&str> =
        body["outputs"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert!(!names.contains(&"other_label"), "{names:?}");
    assert_eq!(output(&body, "label"), output(&direct, "label"));
    assert_eq!(output(&body, "probabilities"), output(&direct, "probabilities"));
    assert_eq!(hops_of(&id), [("hangs".to_owned(), 499), ("iris-lr".to_owned(), 200)]);
    // Each hop record is its own event, as the caller, for its node's model and path.
    let records = s.records();
    let own = records.iter().find(|r| r.request_id.as_deref() == Some(id.as_str())).unwrap();
    let hops: Vec<&AuditRecord> =
        records.iter().filter(|r| r.parent_request_id.as_deref() == Some(id.as_str())).collect();
    for hop in &hops {
        assert_ne!(hop.event_id, own.event_id);
        assert_eq!(hop.request_principal, own.request_principal);
        assert!(hop.request_principal.is_some());
        assert_eq!(hop.email, own.email);
        assert_eq!(hop.trace_id, own.trace_id);
        let model = hop.model.as_ref().unwrap();
        assert_eq!(hop.path.as_deref(), Some(format!("/v2/models/{}/versions/1/infer", model.name).as_str()));
        assert_eq!(model.name, hop.node.as_deref().unwrap());
    }
    assert_ne!(hops[0].event_id, hops[1].event_id);
    assert_ne!(hops[0].request_id, hops[1].request_id);

    // inner: the same window fails the request (504), naming the join and the late step.
    let reply = call(&s.app, "POST", "/v2/models/inner-late/infer", IRIS_ROW).await;
    assert_eq!(reply.status, 504, "{}", String::from_utf8_lossy(&reply.body));
    let message = reply.json()["error"].as_str().unwrap().to_owned();
    assert!(
        message.contains("step `output`") && message.contains("[\"hangs\"]") && message.contains("300 ms"),
        "{message}"
    );
    let id = reply.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(hops_of(&id), [("hangs".to_owned(), 499), ("iris-lr".to_owned(), 200)]);
    let own = s.records().into_iter().find(|r| r.request_id.as_deref() == Some(id.as_str())).unwrap();
    assert_eq!((own.status, own.node.as_deref()), (Some(504), Some("output")));

    // A failing step: outer goes on with iris-lr's answer; inner fails with its error (502).
    let reply = call(&s.app, "POST", "/v2/models/outer-failing/infer", IRIS_ROW).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let id = reply.headers["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(output(&reply.json(), "label"), output(&direct, "label"));
    assert_eq!(hops_of(&id), [("iris-lr".to_owned(), 200), ("refuses".to_owned(), 502)]);
    let reply = call(&s.app, "POST", "/v2/models/inner-failing/infer", IRIS_ROW).await;
    assert_eq!(reply.status, 502, "{}", String::from_utf8_lossy(&reply.body));
}

#[tokio::test]
async fn feedback_reaches_only_the_replica_that_served_the_request() {
    let bandit = graph(
        "bandit",
        "graph:\n  name: bandit\n  implementation: EPSILON_GREEDY\n  children:\n  - {name: lr, model: iris-lr}\n  - {name: rf, model: iris-rf}\n",
    );
    // Two replicas of the same graph: each keeps its own requests and bandit state.
    let served_it = setup(&[&bandit], &[]);
    let other = setup(&[&bandit], &[]);
    let reply = call(&served_it.app, "POST", "/v2/models/bandit/infer", IRIS_ROW).await;
    assert_eq!(reply.status, 200);
    let id = reply.headers["x-request-id"].to_str().unwrap().to_owned();
    let body = json!({"request_id": id, "reward": 1.0}).to_string();
    // The other replica says so, rather than dropping the reward silently.
    let elsewhere = call(&other.app, "POST", "/v2/models/bandit/feedback", body.clone()).await;
    assert_eq!(elsewhere.status, 404);
    let message = elsewhere.json()["error"].as_str().unwrap().to_owned();
    assert!(message.contains("by this replica") && message.contains("the replica that served"), "{message}");
    // Seldon's route on the other replica answers the same.
    let seldon = json!({"response": {"meta": {"puid": id}}, "reward": 1.0}).to_string();
    let elsewhere = call(&other.app, "POST", "/seldon/default/bandit/api/v1.0/feedback", seldon).await;
    assert_eq!(elsewhere.status, 404, "{}", String::from_utf8_lossy(&elsewhere.body));
    // The replica that served it rewards it (the refusal elsewhere consumed nothing).
    let here = call(&served_it.app, "POST", "/v2/models/bandit/feedback", body).await;
    assert_eq!(here.status, 200, "{}", String::from_utf8_lossy(&here.body));
    assert_eq!(here.json()["rewarded"], 1);
}
