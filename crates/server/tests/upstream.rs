//! Palisade as the gateway to an upstream Open Inference Protocol server, against real
//! upstreams on real sockets: a second Palisade (the server app, on a TCP listener) serving
//! iris over plaintext and over mutual TLS in STRICT mode with certificates from the built-in
//! CA; a closed port; and a socket that accepts requests but never answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::middleware::Next;
use common::*;
use palisade_audit::Filter;
use palisade_bundle::Store;
use palisade_runtime::{EngineConfig, UpstreamContext};
use palisade_server::{Platform, Registry, ServerConfig};
use palisade_tls::{Ca, CaOptions, ClientAuth, ReloadingCert, ServerTls, WorkloadRequest};
use serde_json::{Value, json};

/// The identity the gateway presents to the upstream (as `palisade serve` does by default).
const GATEWAY: (&str, &str) = ("palisade-system", "palisade");

/// A Palisade serving the iris fixture on a real port, counting the inference requests
/// that reach it.
struct Upstream {
    base: String,
    infer_calls: Arc<AtomicUsize>,
    _tmp: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Upstream {
    fn calls(&self) -> usize {
        self.infer_calls.load(Ordering::SeqCst)
    }
}

/// Starts the upstream. With `ca`, it serves TLS with a certificate for 127.0.0.1 from that
/// CA and requires client certificates from it (STRICT), and only the gateway's workload
/// identity may call iris; without, plaintext, and anyone may call iris.
async fn start_upstream(ca: Option<&Ca>) -> Upstream {
    let (tmp, store) = store_with(&[("iris_rf", "iris", "1")]);
    let registry = Registry::load(&store).unwrap();
    let policies = tmp.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let allow = match ca {
        None => "  rules: [{}]\n".to_owned(),
        Some(_) => format!(
            "  rules:\n    - from: [{{source: {{principals: [\"cluster.local/ns/{}/sa/{}\"]}}}}]\n",
            GATEWAY.0, GATEWAY.1
        ),
    };
    std::fs::write(
        policies.join("allow.yaml"),
        format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: allow-gateway, namespace: default}}\nspec:\n  action: ALLOW\n{allow}"
        ),
    )
    .unwrap();
    if ca.is_some() {
        std::fs::write(
            policies.join("strict.yaml"),
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: palisade-system}\nspec:\n  mtls: {mode: STRICT}\n",
        )
        .unwrap();
    }
    // The upstream admits callers by their certificate (or lets anyone in, in plaintext):
    // the gateway forwards no token.
    let platform =
        Platform::parse(Path::new("platform.yaml"), "authentication:\n  requireToken: false\n").unwrap();
    let app = app_with(
        store.root(),
        registry,
        EngineConfig { threads: 1, queue_capacity: 16, ..EngineConfig::default() },
        ServerConfig::default(),
        platform,
        Some(policies),
    );
    let infer_calls = Arc::new(AtomicUsize::new(0));
    let counter = infer_calls.clone();
    let router = app.router.clone().layer(axum::middleware::from_fn(move |req: Request, next: Next| {
        let counter = counter.clone();
        async move {
            if req.uri().path().ends_with("/infer") {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            next.run(req).await
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let base = match ca {
        None => {
            tokio::spawn(palisade_server::serve(listener, router, shutdown));
            format!("http://{addr}")
        }
        Some(ca) => {
            let mut request = WorkloadRequest::new("ml", "upstream");
            request.dns_names = vec!["127.0.0.1".to_owned()];
            let dir = tmp.path().join("upstream-tls");
            std::fs::create_dir_all(&dir).unwrap();
            let files = ca.issue_workload(&request).unwrap().write_to(&dir).unwrap();
            let config = palisade_tls::server_config(ServerTls::new(
                files.source(),
                ClientAuth::Required(ca.client_roots()),
            ))
            .unwrap();
            let listener =
                palisade_tls::TlsListener::new(listener, config, palisade_tls::ListenerOptions::default())
                    .unwrap();
            tokio::spawn(palisade_server::serve_tls(listener, router, shutdown));
            format!("https://{addr}")
        }
    };
    Upstream { base, infer_calls, _tmp: tmp, _stop: stop }
}

/// Output names and types of the iris fixture, as the gateway's manifest declares them.
const IRIS_SIGNATURE: &str = "  inputs: [{name: X, datatype: FP32, shape: [-1, 4]}]\n  outputs:\n    - {name: output_label, datatype: INT64, shape: [-1]}\n    - {name: output_probability, datatype: FP32, shape: [-1, 3]}\n";

/// Builds the gateway's bundle for an upstream model, as `palisade build` does; `files` are
/// written next to the manifest first.
fn gateway_store(upstream: &str, files: &[(&str, &[u8])]) -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    let dir = tmp.path().join("src");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    std::fs::write(
        dir.join("palisade.yaml"),
        format!(
            "name: iris-gw\nversion: \"1\"\nowners: [alice@example.com]\nmodel:\n  format: upstream\n  upstream:\n    model: iris\n{upstream}{IRIS_SIGNATURE}"
        ),
    )
    .unwrap();
    let mut staged = store.stage(&dir).unwrap();
    let check = UpstreamContext { check_only: true, ..loopback_allowed() };
    let model = palisade_runtime::prepare_with(staged.manifest(), &staged.model_path(), &check).unwrap();
    staged.set_signature(model.signature()).unwrap();
    store.commit(staged).unwrap();
    (tmp, store)
}

/// The upstreams of these tests listen on 127.0.0.1, which the platform must allow by name.
fn loopback_allowed() -> UpstreamContext {
    let egress =
        palisade_runtime::EgressPolicy { allowed_hosts: vec!["127.0.0.1".to_owned()], own_ports: Vec::new() };
    UpstreamContext { egress: std::sync::Arc::new(egress), ..UpstreamContext::default() }
}

fn gateway(store: &Store, context: &UpstreamContext) -> TestApp {
    let registry = Registry::load_with(store, context).unwrap();
    app(
        store.root(),
        registry,
        EngineConfig { threads: 1, queue_capacity: 16, ..EngineConfig::default() },
        ServerConfig::default(),
    )
}

fn request_id(reply: &Reply) -> String {
    reply.headers["x-request-id"].to_str().unwrap().to_owned()
}

const INFER: &str = "/v2/models/iris-gw/infer";

#[tokio::test]
async fn plaintext_predictions_pass_through_and_refusals_never_reach_the_upstream() {
    let upstream = start_upstream(None).await;
    let (tmp, store) = gateway_store(&format!("    url: {}\n    timeout: 5s\n", upstream.base), &[]);
    let gw = gateway(&store, &loopback_allowed());

    let allowed = call(&gw, "POST", INFER, IRIS_ROW).await;
    assert_eq!(allowed.status, 200, "{}", String::from_utf8_lossy(&allowed.body));
    let body = allowed.json();
    assert_eq!(body["model_name"], "iris-gw", "the gateway answers under its own name");
    assert_eq!(body["outputs"][0]["name"], "output_label");
    assert_eq!(body["outputs"][0]["data"], json!([0]), "setosa");
    assert_eq!(body["outputs"][1]["shape"], json!([1, 3]));
    assert_eq!(upstream.calls(), 1);

    // Only the outputs asked for come back, as for a local model.
    let only_label = r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[6.3,3.3,6.0,2.5]}],"outputs":[{"name":"output_label"}]}"#;
    let reply = call(&gw, "POST", INFER, only_label).await;
    assert_eq!(
        reply.json()["outputs"],
        json!([{"name":"output_label","datatype":"INT64","shape":[1],"data":[2]}])
    );

    // Refusals happen at the gateway, before the upstream is called.
    let calls = upstream.calls();
    let stranger = token_with(gw.state.security(), "bob", json!({"email": "bob@example.com"}));
    let denied = call_as(&gw, Some(&stranger), "POST", INFER, IRIS_ROW).await;
    assert_eq!(denied.status, 403);
    let anonymous = call_as(&gw, None, "POST", INFER, IRIS_ROW).await;
    assert_eq!(anonymous.status, 401);
    let bad_shape = r#"{"inputs":[{"name":"X","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}"#;
    let invalid = call(&gw, "POST", INFER, bad_shape).await;
    assert_eq!(invalid.status, 400);
    assert!(invalid.json()["error"].as_str().unwrap().contains("does not match the model's [-1, 4]"));
    assert_eq!(upstream.calls(), calls, "the upstream saw none of the refused requests");

    // Metadata and readiness describe the upstream model.
    let metadata = call(&gw, "GET", "/v2/models/iris-gw", "").await.json();
    assert_eq!(metadata["platform"], "upstream");
    assert_eq!(metadata["outputs"][1]["name"], "output_probability");
    assert_eq!(call(&gw, "GET", "/v2/models/iris-gw/ready", "").await.status, 200);

    // Every request is audited with the status the caller got and the gateway's model.
    let records: Vec<_> = palisade_audit::query(&tmp.path().join("home/audit"), Filter::default())
        .unwrap()
        .map(Result::unwrap)
        .filter(|r| r.config.is_none())
        .collect();
    let record_of = |reply: &Reply| {
        let id = request_id(reply);
        records.iter().find(|r| r.request_id.as_deref() == Some(id.as_str())).cloned().unwrap()
    };
    let (ok, refused) = (record_of(&allowed), record_of(&denied));
    assert_eq!(ok.status, Some(200));
    assert_eq!(ok.model.as_ref().unwrap().name, "iris-gw");
    assert_eq!(ok.authz.as_ref().unwrap().decision, palisade_audit::Decision::Allow);
    assert_eq!(refused.status, Some(403));
    assert_eq!(refused.authz.as_ref().unwrap().decision, palisade_audit::Decision::Deny);
}

/// The platform's batching default does not apply to upstream models: their calls go to the
/// upstream one by one, never onto the engine.
#[tokio::test]
async fn upstream_models_are_not_batched_by_the_platform_default() {
    let upstream = start_upstream(None).await;
    let (_tmp, store) = gateway_store(&format!("    url: {}\n", upstream.base), &[]);
    let registry = Registry::load_with(&store, &loopback_allowed()).unwrap();
    let platform = Platform::parse(Path::new("platform.yaml"), "batching:\n  max_batch_size: 8\n").unwrap();
    let gw = app_with(
        store.root(),
        registry,
        EngineConfig { threads: 1, queue_capacity: 16, ..EngineConfig::default() },
        ServerConfig::default(),
        platform,
        None,
    );
    let id = gw.state.registry().get("iris-gw", None).unwrap().id.clone();
    assert!(gw.state.batcher(&id).is_none());
    let reply = call(&gw, "POST", INFER, IRIS_ROW).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(upstream.calls(), 1);
}

#[tokio::test]
async fn an_upstream_that_is_down_is_a_502_that_names_no_address() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (_tmp, store) = gateway_store(&format!("    url: {url}\n"), &[]);
    let gw = gateway(&store, &loopback_allowed());
    let reply = call(&gw, "POST", INFER, IRIS_ROW).await;
    assert_eq!(reply.status, 502);
    let message = reply.json()["error"].as_str().unwrap().to_owned();
    assert!(message.starts_with("the upstream model server could not be reached"), "{message}");
    assert!(!message.contains("127.0.0.1"), "{message}");
    // Readiness says so too.
    let ready = call(&gw, "GET", "/v2/models/iris-gw/ready", "").await;
    assert_eq!(ready.status, 503);
    assert!(!String::from_utf8_lossy(&ready.body).contains("127.0.0.1"));
}

/// The slow upstream is a real socket server that accepts the connection, reads the request
/// and never answers, so the gateway's timeout is what ends the call.
#[tokio::test]
async fn an_upstream_slower_than_the_timeout_is_a_504() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let (_tmp, store) = gateway_store(&format!("    url: {url}\n    timeout: 400ms\n"), &[]);
    let gw = gateway(&store, &loopback_allowed());
    let started = Instant::now();
    let reply = call(&gw, "POST", INFER, IRIS_ROW).await;
    assert_eq!(reply.status, 504);
    assert!(started.elapsed() < Duration::from_secs(5));
    let message = reply.json()["error"].as_str().unwrap().to_owned();
    assert!(message.starts_with("the upstream model server did not answer within 400ms"), "{message}");
}

/// Mutual TLS to an upstream Palisade in STRICT mode: with the gateway's workload certificate
/// from the upstream's CA the prediction passes; without a certificate, or with one from
/// another CA, the handshake fails and the caller gets 502 while the log says why.
#[tokio::test]
async fn mutual_tls_to_a_strict_upstream() {
    let cas = tempfile::tempdir().unwrap();
    let ca = Ca::init(&cas.path().join("ca-home"), CaOptions::default()).unwrap();
    let upstream = start_upstream(Some(&ca)).await;
    let ca_pem = ca.trust_anchors().to_pem();
    let mtls = format!(
        "    url: {}\n    timeout: 5s\n    tls: {{ca: upstream-ca.pem, mutual: true}}\n",
        upstream.base
    );
    let (_tmp, store) = gateway_store(&mtls, &[("upstream-ca.pem", ca_pem.as_bytes())]);

    let workload = |ca: &Ca, dir: &str| {
        let dir = cas.path().join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        let files =
            ca.issue_workload(&WorkloadRequest::new(GATEWAY.0, GATEWAY.1)).unwrap().write_to(&dir).unwrap();
        ReloadingCert::load(&files.source()).unwrap()
    };

    // The right certificate: predictions flow.
    let context = UpstreamContext { workload_cert: Some(workload(&ca, "gateway")), ..loopback_allowed() };
    let gw = gateway(&store, &context);
    let reply = call(&gw, "POST", INFER, IRIS_ROW).await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.json()["outputs"][0]["data"], json!([0]));
    assert_eq!(upstream.calls(), 1);
    assert_eq!(call(&gw, "GET", "/v2/models/iris-gw/ready", "").await.status, 200);

    // A certificate from another CA: the upstream refuses the handshake. (Each gateway gets
    // its own home: a home's audit log has one writer.)
    let rogue = Ca::init(&cas.path().join("rogue-home"), CaOptions::default()).unwrap();
    let context = UpstreamContext { workload_cert: Some(workload(&rogue, "rogue")), ..loopback_allowed() };
    let (_tmp1, store) = gateway_store(&mtls, &[("upstream-ca.pem", ca_pem.as_bytes())]);
    let gw = gateway(&store, &context);
    let reply = call(&gw, "POST", INFER, IRIS_ROW).await;
    assert_eq!(reply.status, 502, "{}", String::from_utf8_lossy(&reply.body));
    assert!(!String::from_utf8_lossy(&reply.body).contains("127.0.0.1"));

    // No client certificate at all (`mutual: false`): STRICT refuses it as well.
    let tls_only = format!("    url: {}\n    tls: {{ca: upstream-ca.pem}}\n", upstream.base);
    let (_tmp2, store) = gateway_store(&tls_only, &[("upstream-ca.pem", ca_pem.as_bytes())]);
    let gw = gateway(&store, &loopback_allowed());
    let reply = call(&gw, "POST", INFER, IRIS_ROW).await;
    assert_eq!(reply.status, 502);
    assert_eq!(upstream.calls(), 1, "no refused handshake reached the upstream's handlers");

    // Not trusting the upstream's CA fails the other way round, also as 502.
    let other_ca = rogue.trust_anchors().to_pem();
    let (_tmp3, store) = gateway_store(&tls_only, &[("upstream-ca.pem", other_ca.as_bytes())]);
    let gw = gateway(&store, &loopback_allowed());
    assert_eq!(call(&gw, "POST", INFER, IRIS_ROW).await.status, 502);
}

/// The upstream error the log gets for a refused client certificate, and for an untrusted
/// server, names the cause and the fix.
#[tokio::test]
async fn tls_failures_are_logged_with_their_cause() {
    let cas = tempfile::tempdir().unwrap();
    let ca = Ca::init(&cas.path().join("ca-home"), CaOptions::default()).unwrap();
    let upstream = start_upstream(Some(&ca)).await;
    let ca_pem = ca.trust_anchors().to_pem();
    let text = format!(
        "name: iris-gw\nversion: \"1\"\nowners: [alice@example.com]\nmodel:\n  format: upstream\n  upstream:\n    url: {}\n    model: iris\n    tls: {{ca: upstream-ca.pem}}\n{IRIS_SIGNATURE}",
        upstream.base
    );
    let dir = cas.path().join("bundle");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("upstream-ca.pem"), &ca_pem).unwrap();
    std::fs::write(dir.join("palisade.yaml"), &text).unwrap();
    let manifest = palisade_bundle::Manifest::load_dir(&dir).unwrap();
    let model =
        palisade_runtime::prepare_with(&manifest, &dir.join("palisade.yaml"), &loopback_allowed()).unwrap();
    let row = vec![
        palisade_core::Tensor::new(
            "X",
            vec![1, 4],
            palisade_core::TensorData::Fp32(vec![5.1, 3.5, 1.4, 0.2]),
        )
        .unwrap(),
    ];
    let err =
        model.upstream().unwrap().infer(row, palisade_runtime::CallContext::default()).await.unwrap_err();
    let logged = err.to_string();
    assert!(logged.contains(&upstream.base), "{logged}");
    assert!(logged.contains("TLS: check"), "{logged}");
    assert!(logged.to_ascii_lowercase().contains("certificate"), "{logged}");
    let value: Value = json!(err.public_message());
    assert!(!value.to_string().contains("127.0.0.1"));
}

/// gRPC callers reach upstream models through the same single inference point: a
/// prediction over gRPC, and a down upstream as `UNAVAILABLE` (502's code).
#[tokio::test]
async fn grpc_callers_reach_upstream_models_too() {
    use palisade_protocol::grpc::tonic::{self, Code};
    use palisade_protocol::grpc::{self as grpc, GrpcInferenceServiceClient};

    let upstream = start_upstream(None).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    for (url, expected) in [(upstream.base.clone(), Code::Ok), (down, Code::Unavailable)] {
        let (_tmp, store) = gateway_store(&format!("    url: {url}\n"), &[]);
        let gw = gateway(&store, &loopback_allowed());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(palisade_server::serve(listener, gw.router.clone(), std::future::pending()));
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = GrpcInferenceServiceClient::new(channel);
        let x = palisade_core::Tensor::new(
            "X",
            vec![1, 4],
            palisade_core::TensorData::Fp32(vec![5.1, 3.5, 1.4, 0.2]),
        )
        .unwrap();
        let mut request =
            tonic::Request::new(grpc::encode_infer_request("iris-gw", None, Some("g-1"), &[x], true));
        request.metadata_mut().insert("authorization", format!("Bearer {}", gw.token).parse().unwrap());
        match client.model_infer(request).await {
            Ok(reply) => {
                assert_eq!(expected, Code::Ok);
                let parsed = grpc::parse_infer_response(reply.into_inner()).unwrap();
                assert_eq!(parsed.outputs[0].name(), "output_label");
                assert_eq!(parsed.outputs[0].data(), &palisade_core::TensorData::Int64(vec![0]));
            }
            Err(status) => {
                assert_eq!(status.code(), expected, "{status:?}");
                assert!(status.message().starts_with("the upstream model server could not be reached"));
                assert!(!status.message().contains("127.0.0.1"));
            }
        }
    }
    assert_eq!(upstream.calls(), 1);
}
