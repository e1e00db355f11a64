//! Helpers: a real axum app behind a `TlsListener` on 127.0.0.1, and a tokio-rustls client
//! speaking hand-written HTTP/1.1.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing;
use palisade_tls::{
    Ca, CaOptions, ListenerOptions, ListenerStats, MtlsMode, TlsConfigHandle, TlsConnInfo, TlsListener,
    TrustAnchors, WorkloadRequest, admit,
};
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub stats: Arc<ListenerStats>,
    pub config: TlsConfigHandle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The mode of the pretend model behind a path: `/strict/...`, `/permissive/...`,
/// `/disable/...`; anything else is PERMISSIVE.
fn mode_of(path: &str) -> MtlsMode {
    if path.starts_with("/strict") {
        MtlsMode::Strict
    } else if path.starts_with("/disable") {
        MtlsMode::Disable
    } else {
        MtlsMode::Permissive
    }
}

/// The per-request half of mTLS enforcement, as the server's layer will do it.
async fn enforce(ConnectInfo(conn): ConnectInfo<TlsConnInfo>, mut req: Request, next: Next) -> Response {
    match admit(mode_of(req.uri().path()), conn.peer.as_ref()) {
        Ok(peer) => {
            let peer = peer.cloned();
            req.extensions_mut().insert(Peer(peer));
            next.run(req).await
        }
        Err(refusal) => (StatusCode::FORBIDDEN, refusal.to_string()).into_response(),
    }
}

#[derive(Clone)]
struct Peer(Option<palisade_tls::PeerIdentity>);

async fn whoami(ConnectInfo(conn): ConnectInfo<TlsConnInfo>, req: Request) -> String {
    let peer = req.extensions().get::<Peer>().and_then(|p| p.0.as_ref()).map(|p| p.spiffe_id.clone());
    format!(
        "peer={} sni={} alpn={} local_port={} remote_ip={} chain={}",
        peer.unwrap_or_else(|| "none".to_owned()),
        conn.sni.unwrap_or_else(|| "none".to_owned()),
        conn.alpn.map(|a| String::from_utf8_lossy(&a).into_owned()).unwrap_or_else(|| "none".to_owned()),
        conn.local.port(),
        conn.remote.ip(),
        conn.peer_certificates.map_or(0, |c| c.len()),
    )
}

pub fn app() -> Router {
    Router::new()
        .route("/", routing::get(|| async { "ok" }))
        .route("/whoami", routing::get(whoami))
        .route("/strict/whoami", routing::get(whoami))
        .route("/permissive/whoami", routing::get(whoami))
        .route("/disable/whoami", routing::get(whoami))
        .layer(middleware::from_fn(enforce))
}

pub async fn serve(config: Arc<ServerConfig>) -> Server {
    serve_with(config, ListenerOptions::default()).await
}

pub async fn serve_with(config: Arc<ServerConfig>, options: ListenerOptions) -> Server {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener = TlsListener::new(tcp, config, options).unwrap();
    let addr = listener.local_addr();
    let stats = listener.stats();
    let config = listener.config_handle();
    let task = tokio::spawn(async move {
        axum::serve(listener, app().into_make_service_with_connect_info::<TlsConnInfo>()).await.unwrap();
    });
    Server { addr, stats, config, task }
}

/// A client config trusting `roots`, with an optional client certificate (chain + key PEM
/// files), speaking HTTP/1.1.
pub fn client_config(roots: &TrustAnchors, identity: Option<(&Path, &Path)>) -> Arc<ClientConfig> {
    let identity = identity.map(|(cert, key)| {
        palisade_tls::ReloadingCert::load(&palisade_tls::CertSource::files(cert, key)).unwrap()
    });
    let mut config = (*palisade_tls::client_config(roots, identity).unwrap()).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Every connection is a full handshake, so each one sees the certificate served now.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

pub async fn connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), TlsConnector::from(config).connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("handshake timed out"))?
}

/// One HTTP/1.1 request on a kept-alive connection: (status, body).
pub async fn get_on(stream: &mut TlsStream<TcpStream>, path: &str) -> std::io::Result<(u16, String)> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .map_err(|_| std::io::Error::other("response timed out"))??;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok()).flatten()
        })
        .unwrap_or(0);
    while buf.len() < header_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "body cut short"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok((status, String::from_utf8_lossy(&buf[header_end..header_end + length]).into_owned()))
}

/// Connects and makes one request.
pub async fn get(addr: SocketAddr, config: Arc<ClientConfig>, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = connect(addr, config, "localhost").await?;
    get_on(&mut stream, path).await
}

/// The server's leaf certificate as seen by the client.
pub fn server_leaf(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned()
}

/// Asserts that the server refused the connection in the handshake: the client either
/// failed to connect or (TLS 1.3, where the client finishes first) got no response, and the
/// listener counted a failed handshake.
pub async fn assert_refused(server: &Server, result: std::io::Result<(u16, String)>) {
    assert!(result.is_err(), "expected a refused handshake, got {result:?}");
    wait_for(|| server.stats.failures() > 0, "a failed handshake to be counted").await;
}

pub async fn wait_for(mut condition: impl FnMut() -> bool, what: &str) {
    for _ in 0..200 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A CA plus a server certificate for localhost/127.0.0.1 and a valid client certificate,
/// all written to a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: Ca,
    pub server_cert: std::path::PathBuf,
    pub server_key: std::path::PathBuf,
    pub client_cert: std::path::PathBuf,
    pub client_key: std::path::PathBuf,
    pub ca_pem: std::path::PathBuf,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::init(&dir.path().join("home"), CaOptions::default()).unwrap();
        let mut server = WorkloadRequest::new("palisade-system", "palisade");
        server.dns_names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let server_files = ca.issue_workload(&server).unwrap().write_to(&dir.path().join("server")).unwrap();
        let client_files = ca
            .issue_workload(&WorkloadRequest::new("fraud", "scorer"))
            .unwrap()
            .write_to(&dir.path().join("client"))
            .unwrap();
        Pki {
            ca_pem: dir.path().join("client/ca.pem"),
            server_cert: server_files.cert,
            server_key: server_files.key,
            client_cert: client_files.cert,
            client_key: client_files.key,
            ca,
            dir,
        }
    }

    pub fn server_source(&self) -> palisade_tls::CertSource {
        palisade_tls::CertSource::files(&self.server_cert, &self.server_key)
    }

    /// A client certificate signed by this CA with arbitrary parameters (expired, foreign
    /// SAN, ...), written as `<name>.pem` / `<name>-key.pem`.
    pub fn custom_client(
        &self,
        name: &str,
        edit: impl FnOnce(&mut CertificateParams),
    ) -> (std::path::PathBuf, std::path::PathBuf) {
        let ca_dir = self.ca.dir();
        let issuer_key =
            KeyPair::from_pem(&std::fs::read_to_string(ca_dir.join("issuer-key.pem")).unwrap()).unwrap();
        let issuer = Issuer::from_ca_cert_pem(
            &std::fs::read_to_string(ca_dir.join("issuer.pem")).unwrap(),
            issuer_key,
        )
        .unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.subject_alt_names =
            vec![SanType::URI("spiffe://cluster.local/ns/fraud/sa/scorer".try_into().unwrap())];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(60)).into();
        params.not_after = (now + Duration::from_secs(3600)).into();
        edit(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let cert_path = self.dir.path().join(format!("{name}.pem"));
        let key_path = self.dir.path().join(format!("{name}-key.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}
