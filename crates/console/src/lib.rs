//! Palisade's web console (`/console` on the data port): the pieces that need no server.
//!
//! - [`assets`]: every page, script and style sheet, embedded in the binary, and the
//!   security headers each console response carries (a strict Content-Security-Policy).
//! - [`session`]: the server-side session store (bounded, expiring), its cookie and the
//!   CSRF token of every session.
//! - [`oidc`]: sign-in with the organisation's identity provider (OpenID Connect
//!   authorization code flow with PKCE, `state` and `nonce`), the ID token verified by
//!   [`palisade_identity::Authenticator`], the same verifier as every API token.
//! - [`config`]: the platform config's `console:` section.
//!
//! The server (`palisade-server`, `control::console`) routes requests here and answers
//! the console's JSON with the same owner checks as the management API.

pub mod assets;
pub mod config;
pub mod cookie;
pub mod oidc;
pub mod session;

pub use config::{ConsoleConfig, OidcConfig};
pub use oidc::{Begin, SignIn};
pub use session::{Session, Sessions};

/// Why a console operation failed. Messages are safe to show the person signing in.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsoleError {
    /// The `console:` configuration cannot be used.
    #[error("{0}")]
    Config(String),
    /// No identity provider is configured for sign-in.
    #[error("sign-in with an identity provider is not configured (console.oidc in the platform config)")]
    NotConfigured,
    /// The identity provider could not be reached or answered something unusable.
    #[error("the identity provider: {0}")]
    Provider(String),
    /// The sign-in came back wrong: unknown or expired `state`, another browser, a bad
    /// ID token, a wrong `nonce`.
    #[error("sign-in refused: {0}")]
    Refused(String),
    /// No randomness could be drawn.
    #[error("no randomness available")]
    Random,
}

/// `n` random bytes, base64url without padding.
pub(crate) fn random_token(n: usize) -> Result<String, ConsoleError> {
    use base64::Engine;
    let mut bytes = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| ConsoleError::Random)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// SHA-256 of a secret, the key it is stored under (the secret itself is never kept).
pub(crate) fn digest(secret: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(secret.as_bytes()).into()
}
