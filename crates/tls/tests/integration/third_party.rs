//! Real third-party clients: curl (OpenSSL) against the listener.

use std::process::{Command, Output};

use palisade_tls::{ClientAuth, ServerTls};

use crate::common::*;

async fn curl(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "10"])
            .args(args)
            .output()
            .expect("curl is installed")
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_a_client_certificate_succeeds_and_without_one_is_refused_under_strict() {
    let pki = Pki::new();
    let server = serve(
        palisade_tls::server_config(ServerTls::new(
            pki.server_source(),
            ClientAuth::Required(pki.ca.client_roots()),
        ))
        .unwrap(),
    )
    .await;
    let url = format!("https://127.0.0.1:{}/whoami", server.addr.port());
    let path = |p: &std::path::Path| p.display().to_string();

    let ok = curl(vec![
        "--cacert".into(),
        path(&pki.ca_pem),
        "--cert".into(),
        path(&pki.client_cert),
        "--key".into(),
        path(&pki.client_key),
        "--write-out".into(),
        " http=%{http_version}".into(),
        url.clone(),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "curl failed: {}{}", stdout, String::from_utf8_lossy(&ok.stderr));
    assert!(stdout.starts_with("peer=spiffe://cluster.local/ns/fraud/sa/scorer"), "{stdout}");
    assert!(stdout.contains("alpn=h2") && stdout.ends_with("http=2"), "curl negotiated HTTP/2: {stdout}");

    let refused = curl(vec!["--cacert".into(), path(&pki.ca_pem), url.clone()]).await;
    assert!(
        !refused.status.success(),
        "curl without a certificate must fail: {}",
        String::from_utf8_lossy(&refused.stdout)
    );
    assert!(refused.stdout.is_empty());

    // And an old protocol from a real client: curl cannot get below TLS 1.2.
    let old = curl(vec![
        "--cacert".into(),
        path(&pki.ca_pem),
        "--tlsv1.0".into(),
        "--tls-max".into(),
        "1.1".into(),
        url,
    ])
    .await;
    assert!(!old.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_trusts_the_self_signed_default_for_localhost() {
    let dir = tempfile::tempdir().unwrap();
    let files = palisade_tls::self_signed_localhost(dir.path()).unwrap();
    let server =
        serve(palisade_tls::server_config(ServerTls::new(files.source(), ClientAuth::None)).unwrap()).await;
    let port = server.addr.port();
    let out = curl(vec![
        "--cacert".into(),
        files.cert.display().to_string(),
        "--resolve".into(),
        format!("localhost:{port}:127.0.0.1"),
        format!("https://localhost:{port}/"),
    ])
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
}
