//! The crate's one error type.

use std::path::PathBuf;

use palisade_core::yaml::LocatedError;

/// Everything that can go wrong while loading certificates, building TLS configurations,
/// running the built-in CA or reading `PeerAuthentication` resources.
///
/// Messages name the file involved and never contain key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read, written or created.
    #[error("{}: {action}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done (`cannot read`, `cannot write`, ...).
        action: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file holds no usable item of the expected kind, or is malformed.
    #[error("{}: {message}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong (`no CERTIFICATE section`, ...).
        message: String,
    },
    /// A certificate or key is well-formed PEM but unusable (wrong key for the certificate,
    /// not a CA, expired, outside the trust domain, ...).
    #[error("{}: {message}", path.display())]
    Certificate {
        /// The file the certificate or key came from (empty when it came from memory).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A name (trust domain, namespace, service account, DNS name) that cannot go into a
    /// certificate or a SPIFFE id.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        /// Which kind of name.
        what: &'static str,
        /// The value as given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// A certificate's SPIFFE id is missing or malformed.
    #[error("no workload identity: {0}")]
    Identity(String),
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused a configuration (protocol versions, verifier, key).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built (e.g. no usable trust anchor).
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// `ca init` on a home that already has a CA, or `open` on one that has none.
    #[error("{}: {message}", path.display())]
    Ca {
        /// The CA directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A configuration document (`PeerAuthentication`, `ca.yaml`) that did not parse.
    #[error(transparent)]
    Config(#[from] Box<LocatedError>),
    /// An mTLS mode that cannot be served with what is configured (e.g. STRICT without
    /// any client CA).
    #[error("mTLS: {0}")]
    Mtls(String),
}

impl TlsError {
    pub(crate) fn io(path: impl Into<PathBuf>, action: &'static str, source: std::io::Error) -> TlsError {
        TlsError::Io { path: path.into(), action, source }
    }

    pub(crate) fn cert(path: impl Into<PathBuf>, message: impl Into<String>) -> TlsError {
        TlsError::Certificate { path: path.into(), message: message.into() }
    }

    pub(crate) fn name(what: &'static str, value: &str, reason: impl Into<String>) -> TlsError {
        TlsError::InvalidName { what, value: value.to_owned(), reason: reason.into() }
    }
}

impl From<LocatedError> for TlsError {
    fn from(error: LocatedError) -> TlsError {
        TlsError::Config(Box::new(error))
    }
}
