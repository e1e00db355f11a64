//! Palisade's transport security: TLS at the edge, mutual TLS between components, and
//! workload identities.
//!
//! ```text
//! install_default_provider()                      first thing in main (ring + aws-lc-rs trap)
//! self_signed_localhost(dir) -> CertFiles         embedded default, generated once
//! Ca::init / init_intermediate / open             built-in CA under $HOME/ca/
//! Ca::issue_workload(req) -> IssuedCert           SPIFFE X.509-SVID, 24 h
//! WorkloadCert::start(ca, req, dir)               own certificate, renewed at half-life:
//!   .resolver() -> Arc<ReloadingCert>             shared current cert/key, server and client
//!   .client_config(roots)                         mTLS to upstreams with the same identity
//!   .status() -> WorkloadStatus                   renewals, failures, expiry (metrics, readiness)
//! ServerTls { cert_source, client_auth }          -> server_config() (hot-reloaded cert)
//! parse_peer_authentication / PeerAuthentications Istio mTLS modes, resolved per model+port
//! listener_client_auth(modes, ..) -> ClientAuth   what the handshake asks of clients
//! TlsListener (axum Listener) -> TlsConnInfo      peer identity, SNI, addresses per connection
//! admit(mode, peer)                               per-request STRICT enforcement
//! client_config(roots, identity)                  mTLS to upstream servers
//! ```
//!
//! Every config uses aws-lc-rs explicitly ([`provider`]), TLS 1.3 and 1.2 only, AEAD suites
//! only ([`CIPHER_SUITES`]). Certificates are generated with rcgen and read with
//! x509-parser; PEM is parsed by rustls-pki-types.
//!
//! See [`peer_authentication`] for the mTLS modes and where each is enforced, and [`ca`] for
//! the CA's files and certificate profiles.

pub mod ca;
mod config;
mod error;
mod identity;
mod listener;
pub mod peer_authentication;
mod pem;
mod reload;
mod selfsigned;
mod workload;

pub use ca::{Ca, CaKind, CaOptions, IntermediateOptions, IssuedCert, WorkloadRequest};
pub use config::{
    CIPHER_SUITES, ClientAuth, ClientRoots, DEFAULT_ALPN, PROTOCOL_VERSIONS, ServerTls, TrustAnchors,
    client_config, install_default_provider, provider, server_config, server_config_with,
};
pub use error::TlsError;
pub use identity::{MAX_SPIFFE_ID_BYTES, PeerIdentity, TrustDomain};
pub use listener::{
    ListenerOptions, ListenerStats, TlsConfigHandle, TlsConnInfo, TlsIo, TlsListener, accept_connection,
};
pub use peer_authentication::{
    EffectiveMtls, MtlsMode, MtlsRequired, PeerAuthSettings, PeerAuthentication, PeerAuthentications, admit,
    listener_client_auth, parse_peer_authentication,
};
pub use pem::{
    KeyPem, MAX_PEM_BYTES, certificates_to_pem, parse_certificates, parse_private_key, read_certificates,
    read_private_key, sha256_fingerprint,
};
pub use reload::{
    CertFiles, CertSource, DEFAULT_RELOAD_INTERVAL, ReloadOutcome, ReloadingCert, reload_failures_total,
};
pub use selfsigned::{
    LOCALHOST_CERT_FILE, LOCALHOST_KEY_FILE, LOCALHOST_LIFETIME, LOCALHOST_RENEW_BEFORE,
    self_signed_localhost,
};
pub use workload::{
    RENEWAL_RETRY_MAX, RENEWAL_RETRY_MIN, Validity, WorkloadCert, WorkloadStatus, next_renewal,
};
