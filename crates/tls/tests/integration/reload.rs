//! Server certificate hot reload.

use std::time::Duration;

use palisade_tls::{
    ClientAuth, ReloadOutcome, ServerTls, WorkloadRequest, reload_failures_total, sha256_fingerprint,
};

use crate::common::*;

fn server_request() -> WorkloadRequest {
    let mut request = WorkloadRequest::new("palisade-system", "palisade");
    request.dns_names = vec!["localhost".to_owned()];
    request
}

#[tokio::test]
async fn replaced_files_are_served_to_new_handshakes_and_open_connections_survive() {
    let pki = Pki::new();
    let dir = pki.dir.path().join("served");
    let first = pki.ca.issue_workload(&server_request()).unwrap().write_to(&dir).unwrap();
    let mut tls = ServerTls::new(first.source(), ClientAuth::None);
    tls.reload_interval = Duration::from_millis(50);
    let (config, certs) = tls.build().unwrap();
    let server = serve(config).await;
    let client = client_config(pki.ca.trust_anchors(), None);

    let mut open = connect(server.addr, client.clone(), "localhost").await.unwrap();
    assert_eq!(sha256_fingerprint(&server_leaf(&open)), first.sha256_fingerprint);
    assert_eq!(get_on(&mut open, "/").await.unwrap(), (200, "ok".to_owned()));

    let second = pki.ca.issue_workload(&server_request()).unwrap().write_to(&dir).unwrap();
    assert_ne!(first.sha256_fingerprint, second.sha256_fingerprint);
    tokio::time::sleep(Duration::from_millis(80)).await;

    let mut fresh = connect(server.addr, client.clone(), "localhost").await.unwrap();
    assert_eq!(
        sha256_fingerprint(&server_leaf(&fresh)),
        second.sha256_fingerprint,
        "new handshake, new cert"
    );
    assert_eq!(get_on(&mut fresh, "/").await.unwrap().0, 200);
    assert_eq!(certs.fingerprint(), second.sha256_fingerprint);
    assert!(certs.reloads() >= 1);

    // The connection opened before the swap still works, on the old certificate.
    assert_eq!(get_on(&mut open, "/").await.unwrap(), (200, "ok".to_owned()));
    assert_eq!(sha256_fingerprint(&server_leaf(&open)), first.sha256_fingerprint);
}

#[tokio::test]
async fn a_broken_replacement_keeps_the_old_certificate_and_is_counted() {
    let pki = Pki::new();
    let dir = pki.dir.path().join("served");
    let good = pki.ca.issue_workload(&server_request()).unwrap().write_to(&dir).unwrap();
    let mut tls = ServerTls::new(good.source(), ClientAuth::None);
    tls.reload_interval = Duration::from_secs(3600); // checks driven by the test
    let (config, certs) = tls.build().unwrap();
    let server = serve(config).await;
    let client = client_config(pki.ca.trust_anchors(), None);
    let total_before = reload_failures_total();

    // Garbage in the certificate file.
    std::fs::write(&good.cert, "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n")
        .unwrap();
    // The first failure may be a writer caught between two files: retried, not reported.
    assert!(matches!(certs.check_now(), ReloadOutcome::Failed { reported: false, .. }));
    assert!(matches!(certs.check_now(), ReloadOutcome::Failed { reported: true, .. }));
    // Reported once; not retried until the files change again.
    assert_eq!(certs.check_now(), ReloadOutcome::Unchanged);
    assert_eq!(certs.reload_failures(), 1);
    assert!(reload_failures_total() > total_before);

    let stream = connect(server.addr, client.clone(), "localhost").await.unwrap();
    assert_eq!(
        sha256_fingerprint(&server_leaf(&stream)),
        good.sha256_fingerprint,
        "old certificate still served"
    );

    // A key that does not belong to the certificate is refused the same way.
    let other = pki.ca.issue_workload(&server_request()).unwrap();
    std::fs::write(&good.cert, &other.chain_pem).unwrap();
    certs.check_now();
    assert!(
        matches!(certs.check_now(), ReloadOutcome::Failed { reported: true, ref error } if error.contains("does not belong"))
    );
    assert_eq!(certs.reload_failures(), 2);

    // A good pair is picked up again.
    let fixed = pki.ca.issue_workload(&server_request()).unwrap().write_to(&dir).unwrap();
    assert_eq!(certs.check_now(), ReloadOutcome::Reloaded);
    let stream = connect(server.addr, client, "localhost").await.unwrap();
    assert_eq!(sha256_fingerprint(&server_leaf(&stream)), fixed.sha256_fingerprint);
}

#[tokio::test]
async fn a_missing_or_unreadable_initial_pair_is_a_startup_error() {
    let pki = Pki::new();
    let missing = ServerTls::new(
        palisade_tls::CertSource::files(pki.dir.path().join("nope.pem"), &pki.server_key),
        ClientAuth::None,
    );
    let err = missing.build().unwrap_err().to_string();
    assert!(err.contains("nope.pem") && err.contains("cannot read"), "{err}");

    let mismatched =
        ServerTls::new(palisade_tls::CertSource::files(&pki.server_cert, &pki.client_key), ClientAuth::None);
    let err = mismatched.build().unwrap_err().to_string();
    assert!(err.contains("does not belong"), "{err}");

    let empty = pki.dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let err = ServerTls::new(palisade_tls::CertSource::files(&empty, &pki.server_key), ClientAuth::None)
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("no CERTIFICATE section"), "{err}");
}

#[tokio::test]
async fn the_background_watch_reloads_without_handshakes() {
    let pki = Pki::new();
    let dir = pki.dir.path().join("served");
    let first = pki.ca.issue_workload(&server_request()).unwrap().write_to(&dir).unwrap();
    let certs =
        palisade_tls::ReloadingCert::with_interval(&first.source(), Duration::from_secs(3600)).unwrap();
    let watch = certs.spawn_watch(Duration::from_millis(20));
    let second = pki.ca.issue_workload(&server_request()).unwrap().write_to(&dir).unwrap();
    wait_for(|| certs.fingerprint() == second.sha256_fingerprint, "the watcher to reload").await;
    watch.abort();
}
