//! Mutual TLS on the listener: STRICT, PERMISSIVE, DISABLE; untrusted, expired and
//! foreign-SAN certificates; protocol versions; concurrent handshakes; connection info.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use palisade_tls::{Ca, CaOptions, ClientAuth, ListenerOptions, ServerTls, WorkloadRequest};
use rcgen::SanType;
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

async fn strict(pki: &Pki) -> Server {
    serve(
        palisade_tls::server_config(ServerTls::new(
            pki.server_source(),
            ClientAuth::Required(pki.ca.client_roots()),
        ))
        .unwrap(),
    )
    .await
}

async fn permissive(pki: &Pki) -> Server {
    serve(
        palisade_tls::server_config(ServerTls::new(
            pki.server_source(),
            ClientAuth::Optional(pki.ca.client_roots()),
        ))
        .unwrap(),
    )
    .await
}

fn with_cert(pki: &Pki, cert: &std::path::Path, key: &std::path::Path) -> Arc<ClientConfig> {
    client_config(pki.ca.trust_anchors(), Some((cert, key)))
}

#[tokio::test]
async fn strict_accepts_a_valid_workload_and_fills_the_peer_identity() {
    let pki = Pki::new();
    let server = strict(&pki).await;
    let (status, body) =
        get(server.addr, with_cert(&pki, &pki.client_cert, &pki.client_key), "/strict/whoami").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        body.starts_with("peer=spiffe://cluster.local/ns/fraud/sa/scorer sni=localhost alpn=http/1.1"),
        "{body}"
    );
    assert!(
        body.contains(&format!("local_port={}", server.addr.port())) && body.contains("remote_ip=127.0.0.1"),
        "{body}"
    );
    assert_eq!(server.stats.failures(), 0);
}

#[tokio::test]
async fn strict_refuses_a_client_without_certificate_at_the_handshake() {
    let pki = Pki::new();
    let server = strict(&pki).await;
    let result = get(server.addr, client_config(pki.ca.trust_anchors(), None), "/").await;
    assert_refused(&server, result).await;
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_is_refused_in_every_mode() {
    let pki = Pki::new();
    let rogue_home = tempfile::tempdir().unwrap();
    // Same trust domain, same identity, different CA.
    let rogue = Ca::init(rogue_home.path(), CaOptions::default()).unwrap();
    let files = rogue
        .issue_workload(&WorkloadRequest::new("fraud", "scorer"))
        .unwrap()
        .write_to(rogue_home.path())
        .unwrap();
    for server in [strict(&pki).await, permissive(&pki).await] {
        let result = get(server.addr, with_cert(&pki, &files.cert, &files.key), "/permissive/whoami").await;
        assert_refused(&server, result).await;
    }
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let pki = Pki::new();
    let (cert, key) = pki.custom_client("expired", |p| {
        let now = SystemTime::now();
        p.not_before = (now - Duration::from_secs(7200)).into();
        p.not_after = (now - Duration::from_secs(3600)).into();
    });
    for server in [strict(&pki).await, permissive(&pki).await] {
        let result = get(server.addr, with_cert(&pki, &cert, &key), "/permissive/whoami").await;
        assert_refused(&server, result).await;
    }
    // Not yet valid, likewise.
    let (cert, key) = pki.custom_client("future", |p| {
        let now = SystemTime::now();
        p.not_before = (now + Duration::from_secs(3600)).into();
        p.not_after = (now + Duration::from_secs(7200)).into();
    });
    let server = strict(&pki).await;
    assert_refused(&server, get(server.addr, with_cert(&pki, &cert, &key), "/").await).await;
}

#[tokio::test]
async fn a_wrong_san_is_refused() {
    let pki = Pki::new();
    let cases: Vec<(&str, Vec<SanType>)> = vec![
        (
            "foreign-domain",
            vec![SanType::URI("spiffe://evil.example/ns/fraud/sa/scorer".try_into().unwrap())],
        ),
        ("not-spiffe", vec![SanType::URI("https://fraud.example/scorer".try_into().unwrap())]),
        ("no-workload-path", vec![SanType::URI("spiffe://cluster.local/scorer".try_into().unwrap())]),
        ("dns-only", vec![SanType::DnsName("scorer.fraud.svc".try_into().unwrap())]),
        (
            "two-uris",
            vec![
                SanType::URI("spiffe://cluster.local/ns/fraud/sa/scorer".try_into().unwrap()),
                SanType::URI("spiffe://cluster.local/ns/admin/sa/root".try_into().unwrap()),
            ],
        ),
    ];
    for (name, sans) in cases {
        let (cert, key) = pki.custom_client(name, |p| p.subject_alt_names = sans);
        for server in [strict(&pki).await, permissive(&pki).await] {
            let result = get(server.addr, with_cert(&pki, &cert, &key), "/permissive/whoami").await;
            assert!(result.is_err(), "{name}: {result:?}");
            assert_refused(&server, result).await;
        }
    }
    // A certificate without the client-auth usage cannot authenticate a client either.
    let (cert, key) = pki.custom_client("server-only", |p| {
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    });
    let server = strict(&pki).await;
    assert_refused(&server, get(server.addr, with_cert(&pki, &cert, &key), "/").await).await;
}

#[tokio::test]
async fn permissive_accepts_without_certificate_and_identifies_with_one() {
    let pki = Pki::new();
    let server = permissive(&pki).await;
    let (status, body) =
        get(server.addr, client_config(pki.ca.trust_anchors(), None), "/permissive/whoami").await.unwrap();
    assert_eq!(status, 200);
    assert!(body.starts_with("peer=none") && body.contains("chain=0"), "{body}");
    let (status, body) =
        get(server.addr, with_cert(&pki, &pki.client_cert, &pki.client_key), "/permissive/whoami")
            .await
            .unwrap();
    assert_eq!(status, 200);
    assert!(
        body.starts_with("peer=spiffe://cluster.local/ns/fraud/sa/scorer") && body.contains("chain=1"),
        "{body}"
    );
}

#[tokio::test]
async fn a_mixed_listener_enforces_strict_per_request() {
    // One listener, a STRICT model and a PERMISSIVE model: the handshake is optional, the
    // request path enforces each model's mode.
    let pki = Pki::new();
    let modes = [palisade_tls::MtlsMode::Strict, palisade_tls::MtlsMode::Permissive];
    let client_auth = palisade_tls::listener_client_auth(
        modes,
        palisade_tls::MtlsMode::Permissive,
        Some(pki.ca.client_roots()),
    )
    .unwrap();
    assert!(matches!(client_auth, ClientAuth::Optional(_)));
    let server =
        serve(palisade_tls::server_config(ServerTls::new(pki.server_source(), client_auth)).unwrap()).await;

    let anonymous = client_config(pki.ca.trust_anchors(), None);
    assert_eq!(get(server.addr, anonymous.clone(), "/permissive/whoami").await.unwrap().0, 200);
    let (status, body) = get(server.addr, anonymous, "/strict/whoami").await.unwrap();
    assert_eq!(status, 403);
    assert!(body.contains("mutual TLS is required"), "{body}");

    let workload = with_cert(&pki, &pki.client_cert, &pki.client_key);
    let (status, body) = get(server.addr, workload.clone(), "/strict/whoami").await.unwrap();
    assert_eq!(status, 200);
    assert!(body.starts_with("peer=spiffe://cluster.local/ns/fraud/sa/scorer"), "{body}");
    // A DISABLE model ignores the identity the connection has.
    let (_, body) = get(server.addr, workload, "/disable/whoami").await.unwrap();
    assert!(body.starts_with("peer=none"), "{body}");
}

#[tokio::test]
async fn disable_does_not_ask_for_certificates() {
    let pki = Pki::new();
    let server =
        serve(palisade_tls::server_config(ServerTls::new(pki.server_source(), ClientAuth::None)).unwrap())
            .await;
    let mut stream =
        connect(server.addr, with_cert(&pki, &pki.client_cert, &pki.client_key), "localhost").await.unwrap();
    let (status, body) = get_on(&mut stream, "/whoami").await.unwrap();
    assert_eq!(status, 200);
    assert!(body.starts_with("peer=none") && body.contains("chain=0"), "{body}");
}

/// A ClientHello offering only `version` (0x0301 TLS 1.0, 0x0302 TLS 1.1, 0x0300 SSL 3),
/// with no supported_versions extension, as an old client sends it.
fn legacy_client_hello(version: u16) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    let suites: [u16; 4] = [0xc013, 0xc014, 0x002f, 0x0035]; // ECDHE-RSA-AES-CBC, RSA-AES-CBC
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null
    // Extensions: supported_groups (secp256r1), ec_point_formats (uncompressed).
    let extensions: Vec<u8> =
        [&[0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17][..], &[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00][..]]
            .concat();
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend_from_slice(&extensions);
    let mut handshake = vec![1u8]; // client_hello
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[tokio::test]
async fn tls_1_1_and_older_are_refused() {
    let pki = Pki::new();
    let server = permissive(&pki).await;
    for version in [0x0300u16, 0x0301, 0x0302] {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(&legacy_client_hello(version)).await.unwrap();
        let mut response = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut response)).await.unwrap();
        // A fatal alert record (21) and nothing else: no ServerHello. rustls answers
        // handshake_failure (40); protocol_version (70) would do as well.
        assert_eq!(response.len(), 7, "{version:#06x}: {response:?}");
        assert_eq!(response[0], 21, "{version:#06x}: expected an alert, got {response:?}");
        assert!(matches!(&response[5..7], [2, 70] | [2, 40]), "{version:#06x}: {response:?}");
    }
    assert_eq!(server.stats.handshakes(), 0);
    assert_eq!(server.stats.failures(), 3);

    // TLS 1.2 and 1.3 both work; the server prefers h2 when offered.
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let mut config = ClientConfig::builder_with_provider(palisade_tls::provider())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(pki.ca.trust_anchors().root_store())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let stream = connect(server.addr, Arc::new(config), "localhost").await.unwrap();
        let conn = stream.get_ref().1;
        assert_eq!(conn.protocol_version(), Some(version.version));
        assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
    }
}

#[tokio::test]
async fn a_stalled_handshake_does_not_block_others_and_times_out() {
    let pki = Pki::new();
    let config = palisade_tls::server_config(ServerTls::new(
        pki.server_source(),
        ClientAuth::Optional(pki.ca.client_roots()),
    ))
    .unwrap();
    let options = ListenerOptions { handshake_timeout: Duration::from_secs(2), ..ListenerOptions::default() };
    let server = serve_with(config, options).await;
    // Two clients that connect and never finish a ClientHello.
    let _silent1 = TcpStream::connect(server.addr).await.unwrap();
    let mut silent2 = TcpStream::connect(server.addr).await.unwrap();
    silent2.write_all(&[0x16, 0x03, 0x01]).await.unwrap(); // half a record header
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Meanwhile a real client is served, long before the stalled ones time out.
    let started = std::time::Instant::now();
    let (status, _) = get(server.addr, client_config(pki.ca.trust_anchors(), None), "/").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(server.stats.timeouts(), 0, "served while the others still stall ({:?})", started.elapsed());
    wait_for(|| server.stats.timeouts() == 2, "both stalled handshakes to time out").await;
    // Garbage instead of TLS is a failed handshake, logged, and the loop goes on.
    let mut garbage = TcpStream::connect(server.addr).await.unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    wait_for(|| server.stats.failures() == 1, "the plaintext request to fail the handshake").await;
    assert_eq!(get(server.addr, client_config(pki.ca.trust_anchors(), None), "/").await.unwrap().0, 200);
}

#[tokio::test]
async fn the_config_can_be_replaced_for_new_connections() {
    let pki = Pki::new();
    let server = permissive(&pki).await;
    let anonymous = client_config(pki.ca.trust_anchors(), None);
    let mut open = connect(server.addr, anonymous.clone(), "localhost").await.unwrap();
    assert_eq!(get_on(&mut open, "/").await.unwrap().0, 200);
    // The port's models all became STRICT.
    server.config.replace(
        palisade_tls::server_config(ServerTls::new(
            pki.server_source(),
            ClientAuth::Required(pki.ca.client_roots()),
        ))
        .unwrap(),
    );
    assert_refused(&server, get(server.addr, anonymous, "/").await).await;
    assert_eq!(get_on(&mut open, "/").await.unwrap().0, 200, "established connections keep their config");
}
