//! Authentication: find the request's token, verify it against the trusted issuers, and
//! produce the caller's identity, or say precisely why not.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use serde_json::{Map, Value};

use crate::cache::{TokenCache, token_digest};
use crate::jwks::{Fetch, IssuerKeys, KeyPolicy};
use crate::keys::SignatureError;
use crate::rules::{JwtRule, KeySource, RequestAuthentication};
use crate::signing::algorithm_name;
use crate::token::{self, TokenError};

/// Platform authentication settings.
#[derive(Debug, Clone)]
pub struct AuthnSettings {
    /// Requests without a token are refused (401). `false` is Istio's behaviour: they pass
    /// as anonymous and authorization decides.
    pub require_token: bool,
    /// Longest accepted token lifetime (`exp` minus `iat`, `nbf` or now); default 24 h.
    pub max_lifetime: Duration,
    /// Tolerated clock difference for `exp`, `nbf` and `iat`; default 60 s.
    pub clock_skew: Duration,
    /// Verified tokens remembered (default 10 000; 0 disables the cache).
    pub cache_capacity: usize,
    /// Key refresh policy.
    pub keys: KeyPolicy,
}

impl Default for AuthnSettings {
    fn default() -> Self {
        AuthnSettings {
            require_token: true,
            max_lifetime: Duration::from_secs(24 * 3600),
            clock_skew: Duration::from_secs(60),
            cache_capacity: 10_000,
            keys: KeyPolicy::default(),
        }
    }
}

/// Where a rule applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every model (rules from the platform config, the root namespace, or a gateway
    /// namespace such as Istio's `api`).
    Global,
    /// Models of one namespace, optionally only those whose labels match.
    Namespace {
        /// The namespace.
        namespace: String,
        /// `matchLabels`, when present.
        selector: Option<BTreeMap<String, String>>,
    },
}

impl Scope {
    /// Whether a rule with this scope may verify a request's token.
    pub fn applies(&self, scoping: &Scoping<'_>) -> bool {
        match (self, scoping) {
            (Scope::Global, _) => true,
            (Scope::Namespace { .. }, Scoping::NoModel) => false,
            (Scope::Namespace { .. }, Scoping::AnyModel) => true,
            (Scope::Namespace { namespace, selector }, Scoping::Model(target)) => {
                namespace == target.namespace
                    && selector
                        .as_ref()
                        .is_none_or(|s| s.iter().all(|(k, v)| target.labels.get(k) == Some(v)))
            }
        }
    }
}

/// The model a request is for, which decides the applicable namespace-scoped rules.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The model's namespace.
    pub namespace: &'a str,
    /// The model's labels.
    pub labels: &'a BTreeMap<String, String>,
}

/// Which rules may verify a request's token: global rules always; namespace-scoped rules
/// only where the request is for a model of their namespace.
#[derive(Debug, Clone, Copy)]
pub enum Scoping<'a> {
    /// The request addresses this model.
    Model(Target<'a>),
    /// The request addresses a model not known yet (a gRPC message names it, read after
    /// authentication) or not served (404 after authentication): any rule may verify, and
    /// [`Authenticated::applies_to`] checks the rule once the model is known.
    AnyModel,
    /// The request addresses no model (server metadata, the management API): global rules.
    NoModel,
}

/// A token whose signature and times were checked.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// `iss`
    pub issuer: String,
    /// `sub`
    pub subject: Option<String>,
    /// `aud`
    pub audiences: Vec<String>,
    /// `azp`
    pub presenter: Option<String>,
    /// `jti`
    pub jti: Option<String>,
    /// The key id that verified it.
    pub kid: Option<String>,
    /// The algorithm (`RS256`, ...).
    pub alg: &'static str,
    /// `exp`, seconds since the epoch.
    pub expires_at: f64,
    /// Until when (seconds) the verification may be reused: `exp` plus the clock skew.
    pub valid_until: f64,
    /// Every claim (shared with the authorization request, never copied per request).
    pub claims: Arc<Map<String, Value>>,
}

impl VerifiedToken {
    /// Istio's request principal: `iss/sub`.
    pub fn principal(&self) -> String {
        format!("{}/{}", self.issuer, self.subject.as_deref().unwrap_or(""))
    }
}

/// A successful authentication.
#[derive(Debug, Clone)]
pub enum Authenticated {
    /// No token, and the platform allows that.
    Anonymous,
    /// A verified token.
    Token {
        /// The token's verified content.
        token: Arc<VerifiedToken>,
        /// The rule that accepted it (for header stripping and outputs).
        rule: Arc<JwtRule>,
        /// Where that rule applies.
        scope: Arc<Scope>,
        /// Where the token was found.
        location: TokenLocation,
    },
}

impl Authenticated {
    /// Whether the rule that accepted the token applies to `target` (always true for an
    /// anonymous caller, whom authorization judges). A request authenticated under
    /// [`Scoping::AnyModel`] checks this once its model is known.
    pub fn applies_to(&self, target: Target<'_>) -> bool {
        match self {
            Authenticated::Anonymous => true,
            Authenticated::Token { scope, .. } => scope.applies(&Scoping::Model(target)),
        }
    }

    /// The verified token, if the caller presented one.
    pub fn token(&self) -> Option<&Arc<VerifiedToken>> {
        match self {
            Authenticated::Token { token, .. } => Some(token),
            Authenticated::Anonymous => None,
        }
    }
}

/// Where a token was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenLocation {
    /// A header, with the prefix before the token.
    Header {
        /// Lower-case header name.
        name: String,
        /// The prefix.
        prefix: String,
    },
    /// A query parameter.
    Param(String),
    /// A cookie.
    Cookie(String),
}

/// Why a token was not good enough. The message is safe for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidToken {
    /// Malformed or refused by the parser.
    #[error("{0}")]
    Malformed(#[from] TokenError),
    /// No trusted issuer has this `iss`.
    #[error("the token's issuer is not trusted")]
    UntrustedIssuer,
    /// The token was found where its issuer's rule does not look.
    #[error("the token was sent in a place its issuer's rule does not allow")]
    LocationNotAllowed,
    /// The token names a key its issuer does not publish.
    #[error("the token's key is not among the issuer's keys")]
    UnknownKey,
    /// The algorithm does not match the key.
    #[error("the token's algorithm does not match the issuer's key")]
    AlgorithmMismatch,
    /// The signature does not verify.
    #[error("invalid signature")]
    BadSignature,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iat` is in the future.
    #[error("the token was issued in the future")]
    IssuedInFuture,
    /// Longer-lived than the platform allows.
    #[error("the token's lifetime exceeds the maximum of {0} s")]
    LifetimeTooLong(u64),
    /// Issued to a service account that was revoked since.
    #[error("the token's service account is revoked")]
    Revoked,
}

/// Whether a token of Palisade's own issuer still stands, judged at every request (cached
/// verifications included): a revoked service account's tokens stop at once, not at
/// expiry.
pub trait AccountState: Send + Sync {
    /// `false` refuses the token (401, `revoked`).
    fn active(&self, token: &VerifiedToken) -> bool;
}

/// Why a request is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthnError {
    /// No token, and one is required (401).
    #[error("a token is required")]
    MissingToken,
    /// More than one token in the request (401).
    #[error("the request carries more than one token")]
    MultipleTokens,
    /// The token is invalid (401).
    #[error("{0}")]
    Invalid(InvalidToken),
    /// The token's audience is not accepted (403, as Istio/Envoy answer).
    #[error("the token's audience is not allowed")]
    AudienceMismatch,
    /// The issuer's keys never loaded, so nothing can be verified (401, fail closed).
    #[error("the token's issuer keys are unavailable")]
    KeysUnavailable,
}

impl AuthnError {
    /// A bounded label for metrics and audit (`missing`, `expired`, `signature`, ...).
    pub fn reason(&self) -> &'static str {
        match self {
            AuthnError::MissingToken => "missing",
            AuthnError::MultipleTokens => "multiple",
            AuthnError::AudienceMismatch => "audience",
            AuthnError::KeysUnavailable => "keys_unavailable",
            AuthnError::Invalid(reason) => match reason {
                InvalidToken::Malformed(_) => "malformed",
                InvalidToken::UntrustedIssuer => "issuer",
                InvalidToken::LocationNotAllowed => "location",
                InvalidToken::UnknownKey => "unknown_kid",
                InvalidToken::AlgorithmMismatch => "algorithm",
                InvalidToken::BadSignature => "signature",
                InvalidToken::Expired => "expired",
                InvalidToken::NotYetValid => "not_yet_valid",
                InvalidToken::IssuedInFuture => "issued_in_future",
                InvalidToken::LifetimeTooLong(_) => "lifetime",
                InvalidToken::Revoked => "revoked",
            },
        }
    }

    /// The HTTP status: 403 for an audience mismatch, 401 otherwise.
    pub fn status(&self) -> u16 {
        if matches!(self, AuthnError::AudienceMismatch) { 403 } else { 401 }
    }
}

struct TrustedIssuer {
    rule: Arc<JwtRule>,
    scope: Arc<Scope>,
    keys: Arc<IssuerKeys>,
}

/// Verifies requests against the trusted issuers. Cheap to share (`Arc`).
pub struct Authenticator {
    issuers: Vec<TrustedIssuer>,
    locations: Vec<TokenLocation>,
    settings: AuthnSettings,
    cache: TokenCache,
    accounts: Option<Arc<dyn AccountState>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("issuers", &self.issuers.iter().map(|i| i.rule.issuer.as_str()).collect::<Vec<_>>())
            .field("settings", &self.settings)
            .finish()
    }
}

/// A rule with where it applies, to build an [`Authenticator`] from.
#[derive(Debug, Clone)]
pub struct ScopedRule {
    /// The rule.
    pub rule: JwtRule,
    /// Where it applies.
    pub scope: Scope,
}

impl ScopedRule {
    /// The rules of a `RequestAuthentication`: global when it lives in one of
    /// `global_namespaces` (the root namespace, gateway namespaces), else scoped to its
    /// namespace and selector.
    pub fn from_resource(resource: &RequestAuthentication, global_namespaces: &[String]) -> Vec<ScopedRule> {
        let scope = if global_namespaces.iter().any(|ns| ns == &resource.namespace) {
            Scope::Global
        } else {
            Scope::Namespace { namespace: resource.namespace.clone(), selector: resource.selector.clone() }
        };
        resource.rules.iter().map(|rule| ScopedRule { rule: rule.clone(), scope: scope.clone() }).collect()
    }
}

impl Authenticator {
    /// Builds an authenticator. `keys` supplies existing key holders by issuer so a reload
    /// keeps their cached keys; missing ones are created with `fetch`.
    pub fn new(
        rules: Vec<ScopedRule>,
        settings: AuthnSettings,
        fetch: Arc<dyn Fetch>,
        existing_keys: &[Arc<IssuerKeys>],
    ) -> Authenticator {
        let issuers: Vec<TrustedIssuer> = rules
            .into_iter()
            .map(|scoped| {
                let keys = existing_keys
                    .iter()
                    .find(|k| k.issuer() == scoped.rule.issuer && k.source() == &scoped.rule.keys)
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(IssuerKeys::new(
                            &scoped.rule.issuer,
                            scoped.rule.keys.clone(),
                            scoped.rule.timeout,
                            settings.keys,
                            fetch.clone(),
                        ))
                    });
                TrustedIssuer { rule: Arc::new(scoped.rule), scope: Arc::new(scoped.scope), keys }
            })
            .collect();
        let cache = TokenCache::new(settings.cache_capacity);
        let locations = all_locations(&issuers);
        Authenticator { issuers, locations, settings, cache, accounts: None }
    }

    /// The settings.
    pub fn settings(&self) -> &AuthnSettings {
        &self.settings
    }

    /// The key holders, one per rule (for refresh tasks and reloads).
    pub fn key_holders(&self) -> Vec<Arc<IssuerKeys>> {
        let mut holders: Vec<Arc<IssuerKeys>> = Vec::new();
        for issuer in &self.issuers {
            if !holders.iter().any(|h| Arc::ptr_eq(h, &issuer.keys)) {
                holders.push(issuer.keys.clone());
            }
        }
        holders
    }

    /// Forgets cached verifications made with keys that disappeared.
    pub fn forget_keys(&self, issuer: &str, removed: &[String]) {
        self.cache.purge(issuer, removed);
    }

    /// Consults `accounts` for every token verified by a rule whose keys are pushed (Palisade's
    /// own issuer), so that revoking a service account refuses its tokens at once.
    pub fn with_account_state(mut self, accounts: Arc<dyn AccountState>) -> Self {
        self.accounts = Some(accounts);
        self
    }

    /// The verified-token cache (for metrics).
    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    /// Authenticates a request: finds its one token and verifies it with a rule that
    /// applies under `scoping` and trusts its issuer. Several rules may name the same
    /// issuer (a namespace's own keys under the built-in issuer's name, say): each is tried
    /// in turn, and a cached verification counts only for the rule that made it.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        scoping: Scoping<'_>,
    ) -> Result<Authenticated, AuthnError> {
        let found = find_tokens(headers, query, &self.locations);
        let (location, raw) = match found.len() {
            0 if self.settings.require_token => return Err(AuthnError::MissingToken),
            0 => return Ok(Authenticated::Anonymous),
            1 => found.into_iter().next().ok_or(AuthnError::MissingToken)?,
            _ => return Err(AuthnError::MultipleTokens),
        };
        let now = unix_now();
        let digest = token_digest(&raw);
        let applicable = || self.issuers.iter().enumerate().filter(|(_, i)| i.scope.applies(&scoping));
        // A cached verification skips parsing and the signature; the checks that depend on
        // the request (location, audience) still run.
        for (index, issuer) in applicable() {
            // A verification counts only while the key that made it is still published.
            if let Some(verified) = self.cache.get(&digest, index, now)
                && verified
                    .kid
                    .as_deref()
                    .is_none_or(|kid| issuer.keys.current().is_some_and(|k| k.has_kid(kid)))
            {
                return self.accept(issuer, verified, location);
            }
        }
        let parsed = token::parse(&raw).map_err(|e| AuthnError::Invalid(e.into()))?;
        let mut first_error = None;
        for (index, issuer) in applicable().filter(|(_, i)| i.rule.issuer == parsed.claims.iss) {
            let attempt = if rule_allows(&issuer.rule, &location) {
                self.verify(issuer, &parsed, now).await
            } else {
                Err(AuthnError::Invalid(InvalidToken::LocationNotAllowed))
            };
            match attempt {
                Ok(verified) => {
                    let verified = Arc::new(verified);
                    self.cache.insert(digest, index, verified.clone(), now);
                    return self.accept(issuer, verified, location);
                }
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        Err(first_error.unwrap_or(AuthnError::Invalid(InvalidToken::UntrustedIssuer)))
    }

    /// The last checks of a verified token against the rule that verified it: where it was
    /// found and its audience.
    fn accept(
        &self,
        issuer: &TrustedIssuer,
        verified: Arc<VerifiedToken>,
        location: TokenLocation,
    ) -> Result<Authenticated, AuthnError> {
        if !rule_allows(&issuer.rule, &location) {
            return Err(AuthnError::Invalid(InvalidToken::LocationNotAllowed));
        }
        if !issuer.rule.audiences.is_empty()
            && !verified.audiences.iter().any(|a| issuer.rule.audiences.contains(a))
        {
            return Err(AuthnError::AudienceMismatch);
        }
        if let Some(accounts) = &self.accounts
            && matches!(issuer.rule.keys, KeySource::Pushed)
            && !accounts.active(&verified)
        {
            return Err(AuthnError::Invalid(InvalidToken::Revoked));
        }
        Ok(Authenticated::Token {
            token: verified,
            rule: issuer.rule.clone(),
            scope: issuer.scope.clone(),
            location,
        })
    }

    async fn verify(
        &self,
        issuer: &TrustedIssuer,
        parsed: &token::UnverifiedToken<'_>,
        now: f64,
    ) -> Result<VerifiedToken, AuthnError> {
        let keys = match issuer.keys.current() {
            Some(keys) => keys,
            None => issuer.keys.load_if_missing().await.ok_or(AuthnError::KeysUnavailable)?,
        };
        let signature = match keys.verify(parsed) {
            Err(SignatureError::UnknownKid) => {
                let kid = parsed.header.kid.clone().unwrap_or_default();
                let (fresh, change) = issuer.keys.refetch_for_unknown_kid(&kid).await;
                self.cache.purge(&issuer.rule.issuer, &change.removed);
                match fresh {
                    Some(fresh) => fresh.verify(parsed),
                    None => Err(SignatureError::UnknownKid),
                }
            }
            other => other,
        };
        signature.map_err(|e| {
            AuthnError::Invalid(match e {
                SignatureError::UnknownKid => InvalidToken::UnknownKey,
                SignatureError::AlgorithmMismatch => InvalidToken::AlgorithmMismatch,
                SignatureError::Invalid => InvalidToken::BadSignature,
            })
        })?;
        let claims = &parsed.claims;
        let skew = self.settings.clock_skew.as_secs_f64();
        if now >= claims.exp + skew {
            return Err(AuthnError::Invalid(InvalidToken::Expired));
        }
        if let Some(nbf) = claims.nbf
            && now + skew < nbf
        {
            return Err(AuthnError::Invalid(InvalidToken::NotYetValid));
        }
        if let Some(iat) = claims.iat
            && iat > now + skew
        {
            return Err(AuthnError::Invalid(InvalidToken::IssuedInFuture));
        }
        let start = claims.iat.or(claims.nbf).unwrap_or(now);
        let max = self.settings.max_lifetime.as_secs_f64();
        if claims.exp - start > max {
            return Err(AuthnError::Invalid(InvalidToken::LifetimeTooLong(
                self.settings.max_lifetime.as_secs(),
            )));
        }
        Ok(VerifiedToken {
            issuer: claims.iss.clone(),
            subject: claims.sub.clone(),
            audiences: claims.aud.clone(),
            presenter: claims.azp.clone(),
            jti: claims.jti.clone(),
            kid: parsed.header.kid.clone(),
            alg: algorithm_name(parsed.header.alg),
            expires_at: claims.exp,
            valid_until: claims.exp + skew,
            claims: Arc::new(claims.all.clone()),
        })
    }
}

/// Every token location any rule looks at.
fn all_locations(issuers: &[TrustedIssuer]) -> Vec<TokenLocation> {
    let mut all = Vec::new();
    for issuer in issuers {
        let (headers, params, cookies) = issuer.rule.locations();
        for h in headers {
            all.push(TokenLocation::Header { name: h.name, prefix: h.prefix });
        }
        all.extend(params.into_iter().map(TokenLocation::Param));
        all.extend(cookies.into_iter().map(TokenLocation::Cookie));
    }
    if all.is_empty() {
        all.push(TokenLocation::Header { name: "authorization".to_owned(), prefix: "Bearer ".to_owned() });
    }
    let mut unique = Vec::with_capacity(all.len());
    for location in all {
        if !unique.contains(&location) {
            unique.push(location);
        }
    }
    unique
}

fn rule_allows(rule: &JwtRule, location: &TokenLocation) -> bool {
    let defaults =
        rule.from_headers.is_empty() && rule.from_params.is_empty() && rule.from_cookies.is_empty();
    match location {
        TokenLocation::Header { name, prefix } if defaults => name == "authorization" && prefix == "Bearer ",
        TokenLocation::Param(name) if defaults => name == "access_token",
        TokenLocation::Cookie(_) if defaults => false,
        TokenLocation::Header { name, prefix } => {
            rule.from_headers.iter().any(|h| &h.name == name && &h.prefix == prefix)
        }
        TokenLocation::Param(name) => rule.from_params.contains(name),
        TokenLocation::Cookie(name) => rule.from_cookies.contains(name),
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Every token in the request, with where it was found. A header value counts only when it
/// starts with the location's prefix (so `Authorization: Basic ...` is not a bearer token).
pub fn find_tokens(
    headers: &HeaderMap,
    query: Option<&str>,
    locations: &[TokenLocation],
) -> Vec<(TokenLocation, String)> {
    let mut found = Vec::new();
    for location in locations {
        match location {
            TokenLocation::Header { name, prefix } => {
                for value in headers.get_all(name.as_str()) {
                    let Ok(text) = value.to_str() else { continue };
                    if let Some(token) = strip_prefix(text, prefix) {
                        let token = token.trim();
                        if !token.is_empty() {
                            found.push((location.clone(), token.to_owned()));
                        }
                    }
                }
            }
            TokenLocation::Param(name) => {
                for (key, value) in
                    query.into_iter().flat_map(|q| q.split('&')).filter_map(|kv| kv.split_once('='))
                {
                    if key == name && !value.is_empty() {
                        found.push((location.clone(), percent_decode(value)));
                    }
                }
            }
            TokenLocation::Cookie(name) => {
                for header in headers.get_all(http::header::COOKIE) {
                    let Ok(text) = header.to_str() else { continue };
                    for pair in text.split(';') {
                        if let Some((key, value)) = pair.trim().split_once('=')
                            && key == name
                            && !value.is_empty()
                        {
                            found.push((location.clone(), value.to_owned()));
                        }
                    }
                }
            }
        }
    }
    // The same token seen twice through overlapping locations is still one token.
    found.dedup_by(|a, b| a.1 == b.1 && a.0 == b.0);
    found
}

/// Header prefixes match exactly, except that the auth scheme (`Bearer `) is
/// case-insensitive as RFC 7235 says.
fn strip_prefix<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    if prefix.is_empty() {
        return Some(value);
    }
    let head = value.get(..prefix.len())?;
    if head == prefix || (prefix.eq_ignore_ascii_case("bearer ") && head.eq_ignore_ascii_case(prefix)) {
        value.get(prefix.len()..)
    } else {
        None
    }
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(value.get(i + 1..i + 3).unwrap_or(""), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
