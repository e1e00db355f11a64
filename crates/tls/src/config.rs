//! rustls configurations: the crypto provider, trust anchors, client-certificate
//! verification (mTLS with SPIFFE identities), and the server and client configs.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, CipherSuite, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    RootCertStore, ServerConfig, SignatureScheme, SupportedProtocolVersion,
};
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::reload::{CertSource, DEFAULT_RELOAD_INTERVAL, ReloadingCert};
use crate::{PeerIdentity, TlsError, TrustDomain};

/// The protocol versions Palisade speaks: TLS 1.3 and 1.2. A client offering only TLS 1.1 or
/// older gets a fatal alert (rustls sends `handshake_failure`) and no ServerHello.
pub static PROTOCOL_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The cipher suites Palisade allows: AEAD only, with forward secrecy (ECDHE) for TLS 1.2.
/// (aws-lc-rs offers exactly these today; the list pins it should a default ever grow.)
pub static CIPHER_SUITES: &[CipherSuite] = &[
    CipherSuite::TLS13_AES_256_GCM_SHA384,
    CipherSuite::TLS13_AES_128_GCM_SHA256,
    CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// The ALPN protocols a server offers by default: HTTP/2, then HTTP/1.1.
pub const DEFAULT_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Palisade's crypto provider: aws-lc-rs restricted to [`CIPHER_SUITES`]. Every config this
/// crate builds uses it explicitly, so they work whatever provider is installed process-wide.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            let mut provider = rustls::crypto::aws_lc_rs::default_provider();
            provider.cipher_suites.retain(|s| CIPHER_SUITES.contains(&s.suite()));
            Arc::new(provider)
        })
        .clone()
}

/// Installs Palisade's provider as the process-wide rustls default, for libraries (reqwest,
/// kube) that build their own configs with `ClientConfig::builder()`. Call it first thing in
/// `main`: when both ring and aws-lc-rs are compiled in, rustls cannot choose one and those
/// builders panic. Idempotent. Returns whether the process default is now Palisade's
/// provider (false when another one had been installed first; it stays).
pub fn install_default_provider() -> bool {
    if CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: the check below reports the winner.
        let _ = (*provider()).clone().install_default();
    }
    CryptoProvider::get_default().is_some_and(|installed| {
        let ours = provider();
        installed.cipher_suites.len() == ours.cipher_suites.len()
            && installed.cipher_suites.iter().zip(&ours.cipher_suites).all(|(a, b)| a.suite() == b.suite())
            && installed.kx_groups.len() == ours.kx_groups.len()
    })
}

/// A set of trust anchors (CA certificates).
#[derive(Debug, Clone)]
pub struct TrustAnchors {
    certs: Vec<CertificateDer<'static>>,
    store: Arc<RootCertStore>,
}

impl TrustAnchors {
    /// Anchors from DER certificates. Each must be usable as a trust anchor.
    pub fn from_certificates(certs: Vec<CertificateDer<'static>>) -> Result<TrustAnchors, TlsError> {
        TrustAnchors::build(certs, Path::new("<memory>"))
    }

    /// Anchors from a PEM bundle file (`--client-ca FILE`, `ca.pem`).
    pub fn from_pem_file(path: &Path) -> Result<TrustAnchors, TlsError> {
        TrustAnchors::build(crate::pem::read_certificates(path)?, path)
    }

    /// Anchors from PEM text.
    pub fn from_pem(pem: &[u8]) -> Result<TrustAnchors, TlsError> {
        let path = Path::new("<memory>");
        TrustAnchors::build(crate::pem::parse_certificates(pem, path)?, path)
    }

    fn build(certs: Vec<CertificateDer<'static>>, path: &Path) -> Result<TrustAnchors, TlsError> {
        if certs.is_empty() {
            return Err(TlsError::cert(path, "no trust anchor"));
        }
        let mut store = RootCertStore::empty();
        for (i, cert) in certs.iter().enumerate() {
            store.add(cert.clone()).map_err(|e| {
                TlsError::cert(path, format!("certificate #{} cannot be a trust anchor: {e}", i + 1))
            })?;
        }
        Ok(TrustAnchors { certs, store: Arc::new(store) })
    }

    /// The anchors.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }

    /// The anchors as PEM.
    pub fn to_pem(&self) -> String {
        crate::pem::certificates_to_pem(&self.certs)
    }

    /// The anchors as a rustls root store.
    pub fn root_store(&self) -> Arc<RootCertStore> {
        self.store.clone()
    }
}

/// What a listener accepts as a client certificate: one issued under `anchors`, valid now,
/// with the client-auth usage, and carrying a workload SPIFFE id
/// (`spiffe://<td>/ns/<ns>/sa/<sa>`, the only URI SAN) of one of `trust_domains`.
///
/// Anything else that is presented fails the handshake, in every mode: an untrusted CA, an
/// expired certificate, a certificate without a SPIFFE id or from a foreign trust domain.
#[derive(Debug, Clone)]
pub struct ClientRoots {
    /// The CAs that issue client certificates.
    pub anchors: TrustAnchors,
    /// The trust domains whose identities are accepted (at least one).
    pub trust_domains: Vec<TrustDomain>,
}

impl ClientRoots {
    /// Client certificates under `anchors`, from `trust_domain`.
    pub fn new(anchors: TrustAnchors, trust_domain: TrustDomain) -> ClientRoots {
        ClientRoots { anchors, trust_domains: vec![trust_domain] }
    }

    /// From a `--client-ca FILE` PEM bundle.
    pub fn from_pem_file(path: &Path, trust_domain: TrustDomain) -> Result<ClientRoots, TlsError> {
        Ok(ClientRoots::new(TrustAnchors::from_pem_file(path)?, trust_domain))
    }
}

/// Whether a listener asks for client certificates (the TLS half of the mTLS modes; see
/// [`crate::peer_authentication`] for how modes map onto it).
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// No certificate is requested (DISABLE).
    None,
    /// A certificate is requested; a client may send none, but one it sends must verify
    /// (PERMISSIVE, and listeners that serve models of several modes).
    Optional(ClientRoots),
    /// A verified certificate is required to complete the handshake (STRICT).
    Required(ClientRoots),
}

impl ClientAuth {
    /// The client-certificate verifier for this setting.
    pub fn verifier(&self) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
        let (roots, mandatory) = match self {
            ClientAuth::None => return Ok(WebPkiClientVerifier::no_client_auth()),
            ClientAuth::Optional(roots) => (roots, false),
            ClientAuth::Required(roots) => (roots, true),
        };
        if roots.trust_domains.is_empty() {
            return Err(TlsError::Mtls("client authentication needs at least one trust domain".to_owned()));
        }
        let builder = WebPkiClientVerifier::builder_with_provider(roots.anchors.root_store(), provider());
        let inner = if mandatory { builder.build()? } else { builder.allow_unauthenticated().build()? };
        Ok(Arc::new(SpiffeClientVerifier { inner, trust_domains: roots.trust_domains.clone() }))
    }
}

/// WebPKI client verification plus the SPIFFE rule: the leaf's only URI SAN is a workload
/// id of an accepted trust domain.
#[derive(Debug)]
struct SpiffeClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    trust_domains: Vec<TrustDomain>,
}

/// Why a chain that WebPKI accepted is still refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SpiffeRejection(String);

impl ClientCertVerifier for SpiffeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        let reject = |reason: String| {
            tracing::info!(%reason, "client certificate refused");
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(SpiffeRejection(
                reason,
            )))))
        };
        let identity = PeerIdentity::from_certificate(end_entity).map_err(|e| reject(e.to_string()))?;
        if !self.trust_domains.iter().any(|td| td.as_str() == identity.trust_domain) {
            return Err(reject(format!("{} is not of an accepted trust domain", identity.spiffe_id)));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A TLS server: where its certificate comes from and whom it asks for client certificates.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The server certificate and key (hot-reloaded).
    pub cert_source: CertSource,
    /// Client certificates.
    pub client_auth: ClientAuth,
    /// ALPN protocols, most preferred first ([`DEFAULT_ALPN`]).
    pub alpn: Vec<Vec<u8>>,
    /// How often the certificate files are looked at ([`DEFAULT_RELOAD_INTERVAL`]).
    pub reload_interval: Duration,
}

impl ServerTls {
    /// A server with the default ALPN list and reload interval.
    pub fn new(cert_source: CertSource, client_auth: ClientAuth) -> ServerTls {
        ServerTls {
            cert_source,
            client_auth,
            alpn: DEFAULT_ALPN.iter().map(|p| p.to_vec()).collect(),
            reload_interval: DEFAULT_RELOAD_INTERVAL,
        }
    }

    /// Loads the certificate and builds the config, returning the certificate resolver too
    /// (for its reload counters and fingerprint).
    pub fn build(&self) -> Result<(Arc<ServerConfig>, Arc<ReloadingCert>), TlsError> {
        let certs = ReloadingCert::with_interval(&self.cert_source, self.reload_interval)?;
        let config = server_config_with(certs.clone(), &self.client_auth, &self.alpn)?;
        Ok((config, certs))
    }
}

/// A server config: TLS 1.3/1.2, [`CIPHER_SUITES`], the certificate from `tls.cert_source`
/// (hot-reloaded), client certificates per `tls.client_auth`, ALPN `h2` and `http/1.1`.
///
/// With client authentication (Optional or Required) session resumption is off, so every
/// connection's client certificate is verified now, not when the session began. Without it,
/// resumption stays on; a resumed session keeps the server certificate it started with.
pub fn server_config(tls: ServerTls) -> Result<Arc<ServerConfig>, TlsError> {
    tls.build().map(|(config, _)| config)
}

/// A server config over an existing certificate resolver (shared between listeners, or kept
/// for its counters).
pub fn server_config_with(
    certs: Arc<ReloadingCert>,
    client_auth: &ClientAuth,
    alpn: &[Vec<u8>],
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .with_client_cert_verifier(client_auth.verifier()?)
        .with_cert_resolver(certs);
    config.alpn_protocols = alpn.to_vec();
    config.ignore_client_order = true;
    if !matches!(client_auth, ClientAuth::None) {
        // A resumed session skips certificate verification: a client certificate that has
        // since expired, or a chain verified under roots since replaced, would keep being
        // accepted. With client authentication every connection does a full handshake.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    }
    Ok(Arc::new(config))
}

/// A client config for mTLS to upstream servers: server certificates verified against
/// `roots` (name checked against the DNS name or IP address dialled), and, when given, the
/// client's own certificate presented from a hot-reloaded pair (Palisade's workload
/// certificate, renewed at half-life). No ALPN is set: the HTTP client that uses the config
/// sets what it speaks.
pub fn client_config(
    roots: &TrustAnchors,
    identity: Option<Arc<ReloadingCert>>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)?
        .with_root_certificates(roots.root_store());
    let config = match identity {
        Some(identity) => builder.with_client_cert_resolver(identity),
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
