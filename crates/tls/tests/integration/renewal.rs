//! A running Palisade renews its own workload certificate at half-life, and the hot
//! reloader serves the renewed one.

use std::sync::Arc;
use std::time::Duration;

use palisade_tls::{Ca, CaOptions, ClientAuth, ServerTls, WorkloadCert, WorkloadRequest, sha256_fingerprint};

use crate::common::*;

#[tokio::test]
async fn renewal_at_half_life_is_served_by_the_reloader() {
    let home = tempfile::tempdir().unwrap();
    let ca = Arc::new(Ca::init(home.path(), CaOptions::default()).unwrap());
    let mut request = WorkloadRequest::new("palisade-system", "palisade");
    request.dns_names = vec!["localhost".to_owned()];
    request.lifetime = Duration::from_secs(4);
    let out = home.path().join("workload");
    let workload = WorkloadCert::start(ca.clone(), request, &out).unwrap();
    let first = workload.files().sha256_fingerprint.clone();
    let first_expiry = workload.not_after();

    let mut tls = ServerTls::new(workload.cert_source(), ClientAuth::Required(ca.client_roots()));
    tls.reload_interval = Duration::from_millis(50);
    let server = serve(palisade_tls::server_config(tls).unwrap()).await;

    // The server's own workload certificate doubles as the client identity (mTLS to itself),
    // through the shared resolver that every renewal updates.
    let identity = workload.resolver();
    let mut client = (*workload.client_config(ca.trust_anchors()).unwrap()).clone();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let client = Arc::new(client);

    let mut stream = connect(server.addr, client.clone(), "localhost").await.unwrap();
    assert_eq!(sha256_fingerprint(&server_leaf(&stream)), first);
    let (status, body) = get_on(&mut stream, "/whoami").await.unwrap();
    assert_eq!(status, 200);
    assert!(body.starts_with("peer=spiffe://cluster.local/ns/palisade-system/sa/palisade"), "{body}");

    // Half of 4 s: renewed after about 2 s.
    let started = std::time::Instant::now();
    wait_for(|| workload.renewals() >= 1, "the half-life renewal").await;
    let waited = started.elapsed();
    assert!(waited <= Duration::from_millis(3500), "renewed at half-life, not later: {waited:?}");
    assert!(workload.not_after() > first_expiry);
    assert_eq!(workload.renewal_failures(), 0);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let renewed = connect(server.addr, client, "localhost").await.unwrap();
    let second = sha256_fingerprint(&server_leaf(&renewed));
    assert_ne!(second, first, "the new handshake sees the renewed certificate");
    assert_eq!(
        palisade_tls::PeerIdentity::from_certificate(&server_leaf(&renewed)).unwrap().spiffe_id,
        "spiffe://cluster.local/ns/palisade-system/sa/palisade"
    );
    assert_eq!(get_on(&mut stream, "/").await.unwrap().0, 200, "the old connection survives");
    // The client side presents the renewed pair too: the shared resolver was swapped by the
    // renewal itself.
    assert!(identity.reloads() >= 1);
    assert_eq!(identity.fingerprint(), second);
}

/// A renewal that cannot write its files keeps the current certificate, is counted and
/// retried with backoff; once the certificate expires clients refuse it; when the cause
/// goes away the next retry renews and new handshakes succeed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_renewal_keeps_the_old_certificate_retries_and_recovers() {
    let home = tempfile::tempdir().unwrap();
    let ca = Arc::new(Ca::init(home.path(), CaOptions::default()).unwrap());
    let mut request = WorkloadRequest::new("palisade-system", "palisade");
    request.dns_names = vec!["localhost".to_owned()];
    request.lifetime = Duration::from_secs(2);
    let out = home.path().join("workload");
    let workload = WorkloadCert::start(ca.clone(), request, &out).unwrap();
    let status = workload.status();
    let first = workload.resolver().fingerprint();
    let first_expiry = status.not_after();
    let server = serve(
        palisade_tls::server_config_with(workload.resolver(), &ClientAuth::None, &[b"http/1.1".to_vec()])
            .unwrap(),
    )
    .await;
    let client = client_config(ca.trust_anchors(), None);

    // The key file becomes a directory: writing the renewed key (a rename over it) fails.
    let key = out.join("key.pem");
    std::fs::remove_file(&key).unwrap();
    std::fs::create_dir(&key).unwrap();
    std::fs::write(key.join("keep"), b"x").unwrap();

    wait_for(|| status.renewal_failures() >= 1, "a failed renewal").await;
    assert_eq!(status.renewals(), 0);
    assert!(status.last_error().unwrap().contains("key.pem"), "{:?}", status.last_error());
    if !status.is_expired() {
        let stream = connect(server.addr, client.clone(), "localhost").await.unwrap();
        assert_eq!(sha256_fingerprint(&server_leaf(&stream)), first, "the old certificate keeps serving");
    }
    wait_for(|| status.is_expired(), "the certificate to expire").await;
    let failures_at_expiry = status.renewal_failures();
    // Verifiers compare whole seconds and accept notAfter itself: a second later it is past.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let refused = connect(server.addr, client.clone(), "localhost").await;
    assert!(refused.is_err(), "a client refuses the expired certificate");
    // Backoff: after expiry the attempts space out (2 s, then 4 s, ...), not a busy loop.
    assert!(status.renewal_failures() <= failures_at_expiry + 1, "{}", status.renewal_failures());
    assert!(status.next_attempt() > std::time::SystemTime::now(), "a retry is scheduled");

    std::fs::remove_dir_all(&key).unwrap();
    for _ in 0..100 {
        if status.renewals() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status.renewals(), 1, "the retry after the cause went away renewed");
    assert_eq!(status.consecutive_failures(), 0);
    assert_eq!(status.last_error(), None);
    assert!(status.not_after() > first_expiry);
    let stream = connect(server.addr, client, "localhost").await.unwrap();
    let renewed = sha256_fingerprint(&server_leaf(&stream));
    assert_ne!(renewed, first);
    assert_eq!(renewed, workload.resolver().fingerprint());
}

#[tokio::test]
async fn a_fresh_certificate_is_reused_on_restart() {
    let home = tempfile::tempdir().unwrap();
    let ca = Arc::new(Ca::init(home.path(), CaOptions::default()).unwrap());
    let out = home.path().join("workload");
    let first = WorkloadCert::start(ca.clone(), WorkloadRequest::new("a", "b"), &out).unwrap();
    let fingerprint = first.files().sha256_fingerprint.clone();
    drop(first);
    let again = WorkloadCert::start(ca.clone(), WorkloadRequest::new("a", "b"), &out).unwrap();
    assert_eq!(again.files().sha256_fingerprint, fingerprint, "before half-life: reused");
    drop(again);
    // Another identity in the same directory: a new certificate.
    let other = WorkloadCert::start(ca.clone(), WorkloadRequest::new("a", "c"), &out).unwrap();
    assert_ne!(other.files().sha256_fingerprint, fingerprint);
    // A certificate from another CA: a new certificate.
    let other_home = tempfile::tempdir().unwrap();
    let other_ca = Arc::new(Ca::init(other_home.path(), CaOptions::default()).unwrap());
    let fp = other.files().sha256_fingerprint.clone();
    drop(other);
    let foreign = WorkloadCert::start(other_ca, WorkloadRequest::new("a", "c"), &out).unwrap();
    assert_ne!(foreign.files().sha256_fingerprint, fp);
}
