//! Palisade identity: who is calling.
//!
//! - [`token`]: parsing compact JWS tokens without trusting them (RFC 8725 hardening).
//! - [`keys`]: JSON Web Key Sets and signature checks, each key pinned to its algorithms.
//! - [`jwks`]: an issuer's keys over time (fetch, refresh, unknown-kid refetch, fail closed).
//! - [`rules`]: trusted issuers, as Istio `RequestAuthentication` or Palisade config.
//! - [`authn`]: finding and verifying the request's token, with a verified-token cache.
//! - [`issuer`]: Palisade's own issuer for service accounts.
//! - [`secret`]: secrets that redact themselves.
//! - [`throttle`]: failed client-credential attempts, throttled per client and address.

pub mod authn;
pub mod cache;
pub mod issuer;
pub mod jwks;
pub mod keys;
pub mod rules;
pub mod secret;
pub mod signing;
mod strict_json;
pub mod throttle;
pub mod token;

#[cfg(test)]
mod tests;

pub use authn::{
    AccountState, Authenticated, Authenticator, AuthnError, AuthnSettings, InvalidToken, Scope, ScopedRule,
    Scoping, Target, TokenLocation, VerifiedToken,
};
pub use issuer::{IssuerSettings, LocalIssuer, ServiceAccount, TokenRequest};
pub use jsonwebtoken::Algorithm;
pub use jwks::{Fetch, HttpFetch, IssuerKeys, KeyPolicy};
pub use rules::{JwtRule, KeySource, RequestAuthentication};
pub use secret::Secret;
pub use signing::SigningKey;
pub use throttle::CredentialThrottle;

/// Why an identity operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Configuration is invalid.
    #[error("{0}")]
    Config(String),
    /// A cryptographic operation failed.
    #[error("{0}")]
    Crypto(String),
    /// The on-disk issuer state could not be read or written.
    #[error("{0}")]
    Store(String),
    /// The thing already exists.
    #[error("{0}")]
    Conflict(String),
    /// No such thing.
    #[error("{0}")]
    NotFound(String),
}
