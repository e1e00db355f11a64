//! What PeerAuthentication does to requests, and what a platform team sees of it: the
//! `palisade_mtls_requests_total` metric and the audit record's `peer_identity`, per kind of
//! connection (plaintext, TLS without a client certificate, verified mTLS peer).
//!
//! The connection facts are what the TLS listener attaches; the handshakes themselves are
//! tested with real clients in the tls and cli crates.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use common::*;
use http_body_util::BodyExt;
use palisade_runtime::EngineConfig;
use palisade_server::{ConnInfo, Platform, Registry, ServerConfig};
use palisade_tls::{PeerIdentity, TrustDomain};
use tower::ServiceExt;

const MANIFEST: &str = "name: scorer\nversion: \"1\"\nnamespace: fraud\nowners: [alice@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\n";

const FRAUD_STRICT: &str = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: fraud}\nspec:\n  mtls: {mode: STRICT}\n";

struct Setup {
    tmp: tempfile::TempDir,
    _policies: tempfile::TempDir,
    app: TestApp,
}

fn setup(policies: &[(&str, &str)]) -> Setup {
    let (tmp, store) = store_with_manifest("iris_lr_nozipmap", MANIFEST);
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in policies {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let registry = Registry::load(&store).unwrap();
    let app = app_with(
        store.root(),
        registry,
        EngineConfig::default(),
        ServerConfig::default(),
        Platform::defaults(),
        Some(dir.path().to_owned()),
    );
    Setup { tmp, _policies: dir, app }
}

#[derive(Clone, Copy)]
enum Conn {
    Plaintext,
    TlsWithoutCert,
    Verified,
}

fn peer() -> PeerIdentity {
    PeerIdentity::new(&TrustDomain::default(), "billing", "batch").unwrap()
}

async fn infer(app: &TestApp, conn: Conn) -> StatusCode {
    let remote: SocketAddr = "10.0.0.7:50000".parse().unwrap();
    let local: SocketAddr = "10.0.0.1:8443".parse().unwrap();
    let (tls, peer) = match conn {
        Conn::Plaintext => (false, None),
        Conn::TlsWithoutCert => (true, None),
        Conn::Verified => (true, Some(peer())),
    };
    let mut req = Request::post("/v2/models/scorer/infer")
        .header("authorization", format!("Bearer {}", app.token))
        .body(Body::from(IRIS_ROW))
        .unwrap();
    req.extensions_mut().insert(ConnectInfo(ConnInfo { remote, local, peer, sni: None, tls }));
    send(app, req).await.status
}

/// `palisade_mtls_requests_total` for one label set, from the admin port's exposition.
async fn metric(app: &TestApp, mode: &str, peer: &str) -> u64 {
    let res = palisade_server::admin_app(app.state.clone())
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    let wanted =
        [r#"namespace="fraud""#.to_owned(), format!(r#"mode="{mode}""#), format!(r#"peer="{peer}""#)];
    text.lines()
        .filter_map(|l| l.strip_prefix("palisade_mtls_requests_total{"))
        .filter_map(|l| l.split_once("} "))
        .find(|(labels, _)| {
            let labels: Vec<&str> = labels.split(',').collect();
            labels.len() == 3 && wanted.iter().all(|w| labels.contains(&w.as_str()))
        })
        .map_or(0, |(_, value)| value.trim().parse().unwrap())
}

fn peers_in_audit(s: &Setup) -> Vec<Option<String>> {
    palisade_audit::query(&s.tmp.path().join("home/audit"), palisade_audit::Filter::default())
        .unwrap()
        .map(Result::unwrap)
        .filter(|r| r.config.is_none())
        .map(|r| r.peer_identity)
        .collect()
}

/// PERMISSIVE (the default): every kind of connection is served, and the metric tells
/// them apart, which is what a team watches before switching to STRICT.
#[tokio::test]
async fn permissive_serves_everyone_and_counts_who_lacks_a_certificate() {
    let s = setup(&[]);
    let app = &s.app;
    assert_eq!(infer(app, Conn::Plaintext).await, StatusCode::OK);
    assert_eq!(infer(app, Conn::TlsWithoutCert).await, StatusCode::OK);
    assert_eq!(infer(app, Conn::TlsWithoutCert).await, StatusCode::OK);
    assert_eq!(infer(app, Conn::Verified).await, StatusCode::OK);
    assert_eq!(metric(app, "PERMISSIVE", "plaintext").await, 1);
    assert_eq!(metric(app, "PERMISSIVE", "tls_no_client_cert").await, 2);
    assert_eq!(metric(app, "PERMISSIVE", "verified").await, 1);
    // The audit record names the verified peer, and only that one.
    let peers = peers_in_audit(&s);
    assert_eq!(peers, [None, None, None, Some(peer().spiffe_id)]);
}

/// STRICT for the namespace: only verified peers are served; the others are refused with
/// 403 and counted under `mode="STRICT"`, so the refusals show on the same metric.
#[tokio::test]
async fn strict_refuses_and_counts_connections_without_a_verified_peer() {
    let s = setup(&[("fraud-strict.yaml", FRAUD_STRICT)]);
    let app = &s.app;
    assert_eq!(infer(app, Conn::Plaintext).await, StatusCode::FORBIDDEN);
    assert_eq!(infer(app, Conn::TlsWithoutCert).await, StatusCode::FORBIDDEN);
    assert_eq!(infer(app, Conn::Verified).await, StatusCode::OK);
    assert_eq!(metric(app, "STRICT", "plaintext").await, 1);
    assert_eq!(metric(app, "STRICT", "tls_no_client_cert").await, 1);
    assert_eq!(metric(app, "STRICT", "verified").await, 1);
    assert_eq!(metric(app, "PERMISSIVE", "verified").await, 0);
    let peers = peers_in_audit(&s);
    assert_eq!(peers, [None, None, Some(peer().spiffe_id)]);
}
