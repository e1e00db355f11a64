//! Palisade TLS end to end: real TLS handshakes over 127.0.0.1 between tokio-rustls (or curl
//! and openssl) clients and an axum app served through `TlsListener`. No mocked TLS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ca;
mod common;
mod mtls;
mod peer_authentication;
mod reload;
mod renewal;
mod selfsigned;
mod third_party;

mod provider {
    /// The process-wide provider: installing is idempotent, and builders that rely on the
    /// default (as reqwest's do) work afterwards.
    #[test]
    fn install_default_provider_is_idempotent() {
        assert!(palisade_tls::install_default_provider());
        assert!(palisade_tls::install_default_provider());
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        assert!(
            config
                .crypto_provider()
                .cipher_suites
                .iter()
                .all(|s| palisade_tls::CIPHER_SUITES.contains(&s.suite()))
        );
    }
}
