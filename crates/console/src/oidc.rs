//! Sign-in with the organisation's identity provider: the OpenID Connect authorization
//! code flow with PKCE (S256), `state` and `nonce`.
//!
//! 1. [`SignIn::begin`]: reads the issuer's discovery document (once, kept), draws a
//!    `state`, a `nonce`, a PKCE verifier and a browser binding, remembers them (at most
//!    [`MAX_PENDING`], and [`MAX_PENDING_PER_ADDRESS`] per client address, for
//!    [`PENDING_TTL`]) and answers where to send the browser.
//! 2. [`SignIn::complete`]: the identity provider's answer comes back with `code` and
//!    `state`; the pending sign-in is taken (once: a `state` cannot be replayed), the
//!    binding cookie must match (the browser that started is the one that finishes), the
//!    code is exchanged at the token endpoint with the verifier, and the ID token is
//!    verified by [`palisade_identity::Authenticator`] (signature with the issuer's keys
//!    found through discovery, `iss`, `aud` = the client id, `exp`, `nbf`, `iat`, the
//!    platform's lifetime cap), then its `nonce` is compared with ours.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use palisade_identity::jwks::Fetch;
use palisade_identity::{
    Authenticated, Authenticator, AuthnSettings, HttpFetch, JwtRule, KeySource, ScopedRule, Scoping, Secret,
};
use serde_json::Value;

use crate::config::OidcConfig;
use crate::{ConsoleError, digest, random_token};

/// Sign-ins started and not finished, at most; past it the oldest of the client address
/// holding the most is forgotten.
pub const MAX_PENDING: usize = 1000;
/// Sign-ins one client address (an IPv6 address by its /64) may have started and not
/// finished; past it that address's own oldest is forgotten, never another's.
pub const MAX_PENDING_PER_ADDRESS: usize = 16;
/// How long a started sign-in may take.
pub const PENDING_TTL: Duration = Duration::from_secs(600);
/// Largest token endpoint answer read.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// Where to send the browser to sign in, and the binding cookie to give it.
#[derive(Debug)]
pub struct Begin {
    /// The identity provider's authorization URL with our parameters.
    pub location: String,
    /// The value of the sign-in binding cookie ([`crate::cookie::SIGN_IN`]).
    pub binding: Secret,
}

/// The endpoints an identity provider's discovery document names.
#[derive(Debug)]
pub struct Endpoints {
    /// `authorization_endpoint`
    pub authorization: String,
    /// `token_endpoint`
    pub token: String,
}

struct Pending {
    nonce: Secret,
    verifier: Secret,
    binding: [u8; 32],
    started: Instant,
    /// The client address that started it, as per-address limits count it.
    client: Option<IpAddr>,
}

/// Makes room for one more sign-in of `client`: first its own oldest past its bound, then,
/// while the store is full, the oldest of the address holding the most (so a client that
/// floods the store only ever pushes out its own sign-ins, unless more than
/// `MAX_PENDING / MAX_PENDING_PER_ADDRESS` addresses flood together).
fn make_room(pending: &mut HashMap<String, Pending>, client: Option<IpAddr>) {
    let oldest_of = |pending: &HashMap<String, Pending>, who: Option<IpAddr>| {
        pending.iter().filter(|(_, p)| p.client == who).min_by_key(|(_, p)| p.started).map(|(k, _)| k.clone())
    };
    while pending.values().filter(|p| p.client == client).count() >= MAX_PENDING_PER_ADDRESS {
        let Some(oldest) = oldest_of(pending, client) else { break };
        pending.remove(&oldest);
    }
    while pending.len() >= MAX_PENDING {
        let mut counts: HashMap<Option<IpAddr>, usize> = HashMap::new();
        for p in pending.values() {
            *counts.entry(p.client).or_default() += 1;
        }
        let Some((&busiest, _)) = counts.iter().max_by_key(|(_, n)| **n) else { break };
        let Some(oldest) = oldest_of(pending, busiest) else { break };
        pending.remove(&oldest);
    }
}

/// The console's client of one identity provider (see the module docs).
pub struct SignIn {
    config: OidcConfig,
    secret: Option<Secret>,
    authenticator: Authenticator,
    fetch: HttpFetch,
    http: reqwest::Client,
    endpoints: tokio::sync::Mutex<Option<Arc<Endpoints>>>,
    pending: Mutex<HashMap<String, Pending>>,
}

impl std::fmt::Debug for SignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignIn").field("issuer", &self.config.issuer).finish_non_exhaustive()
    }
}

impl SignIn {
    /// A client for `config`; `settings` are the platform's (clock skew, lifetime cap).
    /// Reads the client secret file, if any.
    pub fn new(config: &OidcConfig, settings: AuthnSettings) -> Result<SignIn, ConsoleError> {
        let secret = match &config.client_secret_file {
            None => None,
            Some(file) => {
                let text = std::fs::read_to_string(file).map_err(|err| {
                    ConsoleError::Config(format!(
                        "console.oidc.clientSecretFile: cannot read {}: {err}",
                        file.display()
                    ))
                })?;
                let text = text.trim();
                if text.is_empty() {
                    return Err(ConsoleError::Config(format!(
                        "console.oidc.clientSecretFile: {} is empty; write the client secret into it",
                        file.display()
                    )));
                }
                Some(Secret::new(text))
            }
        };
        let rule = JwtRule {
            issuer: config.issuer.clone(),
            audiences: vec![config.client_id.clone()],
            keys: KeySource::Discovery,
            from_headers: Vec::new(),
            from_params: Vec::new(),
            from_cookies: Vec::new(),
            forward_original_token: false,
            output_payload_to_header: None,
            output_claim_to_headers: Vec::new(),
            timeout: config.timeout,
        };
        let fetch = HttpFetch::new().map_err(ConsoleError::Config)?;
        let settings = AuthnSettings { require_token: true, cache_capacity: 0, ..settings };
        let authenticator = Authenticator::new(
            vec![ScopedRule { rule, scope: palisade_identity::Scope::Global }],
            settings,
            Arc::new(fetch.clone()),
            &[],
        );
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("palisade/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConsoleError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(SignIn {
            config: config.clone(),
            secret,
            authenticator,
            fetch,
            http,
            endpoints: tokio::sync::Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// The issuer people sign in with.
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// The issuer's endpoints, read from discovery once (a failure is retried next time).
    async fn endpoints(&self) -> Result<Arc<Endpoints>, ConsoleError> {
        let mut slot = self.endpoints.lock().await;
        if let Some(endpoints) = slot.as_ref() {
            return Ok(endpoints.clone());
        }
        let url = format!("{}/.well-known/openid-configuration", self.config.issuer.trim_end_matches('/'));
        let body = self.fetch.get(&url, self.config.timeout).await.map_err(ConsoleError::Provider)?;
        let endpoints = Arc::new(parse_discovery(&body, &self.config.issuer)?);
        *slot = Some(endpoints.clone());
        Ok(endpoints)
    }

    /// Starts a sign-in for a browser at `client` (the connection's address; see the
    /// module docs).
    pub async fn begin(&self, client: Option<IpAddr>) -> Result<Begin, ConsoleError> {
        let endpoints = self.endpoints().await?;
        let state = random_token(32)?;
        let nonce = random_token(32)?;
        let verifier = random_token(32)?;
        let binding = random_token(32)?;
        let challenge = URL_SAFE_NO_PAD.encode(digest(&verifier));
        let mut location = url::Url::parse(&endpoints.authorization)
            .map_err(|_| ConsoleError::Provider("its authorization_endpoint is not a URL".to_owned()))?;
        location
            .query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", &self.config.redirect_uri)
            .append_pair("scope", &self.config.scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let now = Instant::now();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.retain(|_, p| now.duration_since(p.started) < PENDING_TTL);
        let client = client.map(palisade_identity::throttle::address_key);
        make_room(&mut pending, client);
        pending.insert(
            state,
            Pending {
                nonce: Secret::new(nonce),
                verifier: Secret::new(verifier),
                binding: digest(&binding),
                started: now,
                client,
            },
        );
        Ok(Begin { location: location.into(), binding: Secret::new(binding) })
    }

    /// Finishes a sign-in (see the module docs): the verified identity.
    pub async fn complete(
        &self,
        state: &str,
        code: &str,
        binding: Option<&str>,
    ) -> Result<Authenticated, ConsoleError> {
        let pending =
            self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(state).ok_or_else(|| {
                ConsoleError::Refused("unknown or already used `state`; sign in again".to_owned())
            })?;
        if pending.started.elapsed() >= PENDING_TTL {
            return Err(ConsoleError::Refused("the sign-in took too long; sign in again".to_owned()));
        }
        let same_browser = binding
            .is_some_and(|b| subtle::ConstantTimeEq::ct_eq(&digest(b)[..], &pending.binding[..]).into());
        if !same_browser {
            return Err(ConsoleError::Refused(
                "this browser did not start the sign-in (its sign-in cookie is missing or different)"
                    .to_owned(),
            ));
        }
        let endpoints = self.endpoints().await?;
        let id_token = self.exchange(&endpoints.token, code, pending.verifier.expose()).await?;
        let mut headers = HeaderMap::new();
        let value = HeaderValue::from_str(&format!("Bearer {}", id_token.expose()))
            .map_err(|_| ConsoleError::Refused("the ID token is not a JWT".to_owned()))?;
        headers.insert(AUTHORIZATION, value);
        let identity = self
            .authenticator
            .authenticate(&headers, None, Scoping::NoModel)
            .await
            .map_err(|err| ConsoleError::Refused(format!("the ID token: {err}")))?;
        let token = identity.token().ok_or_else(|| ConsoleError::Refused("no ID token".to_owned()))?;
        let nonce = token.claims.get("nonce").and_then(Value::as_str);
        if !nonce.is_some_and(|n| pending.nonce.ct_eq(n)) {
            return Err(ConsoleError::Refused(
                "the ID token's nonce is not the one this sign-in sent".to_owned(),
            ));
        }
        if token.audiences.len() > 1 && token.presenter.as_deref() != Some(self.config.client_id.as_str()) {
            return Err(ConsoleError::Refused("the ID token was issued to another party (azp)".to_owned()));
        }
        Ok(identity)
    }

    /// Exchanges the code at the token endpoint: the ID token.
    async fn exchange(&self, endpoint: &str, code: &str, verifier: &str) -> Result<Secret, ConsoleError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.config.redirect_uri.as_str()),
            ("code_verifier", verifier),
        ];
        if self.secret.is_none() {
            form.push(("client_id", self.config.client_id.as_str()));
        }
        let body = serde_urlencoded::to_string(&form)
            .map_err(|e| ConsoleError::Refused(format!("cannot encode the token request: {e}")))?;
        let mut request = self
            .http
            .post(endpoint)
            .timeout(self.config.timeout)
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::header::ACCEPT, "application/json")
            .body(body);
        if let Some(secret) = &self.secret {
            // RFC 6749 2.3.1: each part form-urlencoded before joining.
            let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let basic =
                STANDARD.encode(format!("{}:{}", encode(&self.config.client_id), encode(secret.expose())));
            request = request.header(AUTHORIZATION, format!("Basic {basic}"));
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| ConsoleError::Provider(format!("the token endpoint: {}", e.without_url())))?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ConsoleError::Provider(format!("the token endpoint: {}", e.without_url())))?
        {
            if bytes.len() + chunk.len() > MAX_TOKEN_RESPONSE_BYTES {
                return Err(ConsoleError::Provider("the token endpoint's answer is too large".to_owned()));
            }
            bytes.extend_from_slice(&chunk);
        }
        let json: Value = serde_json::from_slice(&bytes).map_err(|_| {
            ConsoleError::Provider(format!("the token endpoint answered HTTP {status}, not JSON"))
        })?;
        if !status.is_success() {
            let error = json.get("error").and_then(Value::as_str).unwrap_or("unknown");
            return Err(ConsoleError::Refused(format!("the token endpoint answered HTTP {status}: {error}")));
        }
        json.get("id_token").and_then(Value::as_str).map(Secret::new).ok_or_else(|| {
            ConsoleError::Provider(
                "the token endpoint gave no id_token (is `openid` in the scopes?)".to_owned(),
            )
        })
    }
}

/// The endpoints of a discovery document, which must name `issuer` exactly (OpenID
/// Connect Discovery 4.3) and offer S256 if it lists PKCE methods.
pub fn parse_discovery(body: &[u8], issuer: &str) -> Result<Endpoints, ConsoleError> {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|_| ConsoleError::Provider("its discovery document is not JSON".to_owned()))?;
    let field = |name: &str| {
        doc.get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| ConsoleError::Provider(format!("its discovery document has no `{name}`")))
    };
    if field("issuer")? != issuer {
        return Err(ConsoleError::Provider(format!(
            "its discovery document names the issuer `{}`, not `{issuer}` (console.oidc.issuer must be written exactly as the provider writes it)",
            field("issuer")?
        )));
    }
    if let Some(methods) = doc.get("code_challenge_methods_supported").and_then(Value::as_array)
        && !methods.iter().any(|m| m == "S256")
    {
        return Err(ConsoleError::Provider("it does not support PKCE with S256".to_owned()));
    }
    let mut endpoints = Vec::new();
    for name in ["authorization_endpoint", "token_endpoint"] {
        let url = field(name)?;
        palisade_identity::rules::check_key_url(url, false)
            .map_err(|why| ConsoleError::Provider(format!("its `{name}`: {why}")))?;
        endpoints.push(url.to_owned());
    }
    let token = endpoints.pop().unwrap_or_default();
    let authorization = endpoints.pop().unwrap_or_default();
    Ok(Endpoints { authorization, token })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_must_name_the_issuer_and_offer_s256() {
        let doc = |issuer: &str, methods: &str| {
            format!(
                r#"{{"issuer": "{issuer}", "authorization_endpoint": "https://idp.example/auth", "token_endpoint": "https://idp.example/token"{methods}}}"#
            )
        };
        let ok = parse_discovery(doc("https://idp.example", "").as_bytes(), "https://idp.example").unwrap();
        assert_eq!(ok.authorization, "https://idp.example/auth");
        assert_eq!(ok.token, "https://idp.example/token");
        let other = parse_discovery(doc("https://evil.example", "").as_bytes(), "https://idp.example");
        assert!(other.unwrap_err().to_string().contains("names the issuer"));
        let plain = parse_discovery(
            doc("https://idp.example", r#", "code_challenge_methods_supported": ["plain"]"#).as_bytes(),
            "https://idp.example",
        );
        assert!(plain.unwrap_err().to_string().contains("S256"));
        let insecure = br#"{"issuer": "https://idp.example", "authorization_endpoint": "http://idp.example/auth", "token_endpoint": "https://idp.example/token"}"#;
        assert!(parse_discovery(insecure, "https://idp.example").is_err());
    }

    fn sign_in() -> SignIn {
        let config = OidcConfig {
            issuer: "http://127.0.0.1:9".to_owned(),
            client_id: "console".to_owned(),
            client_secret_file: None,
            redirect_uri: "http://127.0.0.1:8080/console/callback".to_owned(),
            scopes: vec!["openid".to_owned()],
            timeout: Duration::from_secs(1),
        };
        let signin = SignIn::new(&config, AuthnSettings::default()).unwrap();
        let endpoints = Endpoints {
            authorization: "http://127.0.0.1:9/auth?x=1".to_owned(),
            token: "http://127.0.0.1:9/token".to_owned(),
        };
        *signin.endpoints.try_lock().unwrap() = Some(Arc::new(endpoints));
        signin
    }

    fn query(location: &str, name: &str) -> String {
        let url = url::Url::parse(location).unwrap();
        url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).unwrap()
    }

    #[tokio::test]
    async fn begin_sends_pkce_state_and_nonce() {
        let signin = sign_in();
        let begin = signin.begin(None).await.unwrap();
        assert_eq!(query(&begin.location, "x"), "1", "the endpoint's own query is kept");
        assert_eq!(query(&begin.location, "code_challenge_method"), "S256");
        assert_eq!(query(&begin.location, "response_type"), "code");
        let state = query(&begin.location, "state");
        let pending = signin.pending.lock().unwrap();
        let kept = pending.get(&state).unwrap();
        assert_eq!(
            query(&begin.location, "code_challenge"),
            URL_SAFE_NO_PAD.encode(digest(kept.verifier.expose()))
        );
        assert_eq!(query(&begin.location, "nonce"), kept.nonce.expose());
        assert!(!begin.location.contains(kept.verifier.expose()), "the verifier never leaves the server");
    }

    #[tokio::test]
    async fn a_state_is_used_once_and_only_by_the_browser_that_started() {
        let signin = sign_in();
        let begin = signin.begin(None).await.unwrap();
        let state = query(&begin.location, "state");
        let err = signin.complete(&state, "code", Some("another-browser")).await.unwrap_err();
        assert!(err.to_string().contains("did not start"), "{err}");
        let again = signin.complete(&state, "code", Some(begin.binding.expose())).await.unwrap_err();
        assert!(again.to_string().contains("already used"), "{again}");
        let unknown = signin.complete("made-up", "code", None).await.unwrap_err();
        assert!(unknown.to_string().contains("unknown"), "{unknown}");
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    /// How many sign-ins of `client` (as counted) are pending.
    fn held(signin: &SignIn, client: &str) -> usize {
        let key = ip(client).map(palisade_identity::throttle::address_key);
        signin.pending.lock().unwrap().values().filter(|p| p.client == key).count()
    }

    #[tokio::test]
    async fn pending_sign_ins_are_bounded() {
        let signin = sign_in();
        for i in 0..MAX_PENDING + 5 {
            let client = format!("10.{}.{}.1", i / 256, i % 256);
            signin.begin(ip(&client)).await.unwrap();
        }
        assert_eq!(signin.pending.lock().unwrap().len(), MAX_PENDING);
    }

    #[tokio::test]
    async fn one_address_cannot_push_out_another_addresses_sign_in() {
        let signin = sign_in();
        let begin = signin.begin(ip("192.0.2.1")).await.unwrap();
        let state = query(&begin.location, "state");
        // One client starts sign-ins without end: it only ever pushes out its own.
        for _ in 0..MAX_PENDING * 2 {
            signin.begin(ip("198.51.100.9")).await.unwrap();
        }
        assert_eq!(held(&signin, "198.51.100.9"), MAX_PENDING_PER_ADDRESS);
        assert!(signin.pending.lock().unwrap().contains_key(&state), "the other address's sign-in is kept");
        // An IPv6 client by its /64, and IPv4-mapped as its IPv4 address: no way around it.
        for i in 0..MAX_PENDING {
            signin.begin(ip(&format!("2001:db8::{i:x}"))).await.unwrap();
            signin.begin(ip("::ffff:198.51.100.9")).await.unwrap();
        }
        assert_eq!(held(&signin, "2001:db8::1"), MAX_PENDING_PER_ADDRESS);
        assert_eq!(held(&signin, "198.51.100.9"), MAX_PENDING_PER_ADDRESS);
        assert!(signin.pending.lock().unwrap().contains_key(&state));
        // The sign-in kept is the one that finishes: the binding check passes, and the
        // exchange is what fails (nobody listens at the provider's address here).
        let err = signin.complete(&state, "code", Some(begin.binding.expose())).await.unwrap_err();
        assert!(matches!(err, ConsoleError::Provider(_)), "{err}");
    }

    #[tokio::test]
    async fn a_full_store_forgets_the_busiest_addresses_sign_ins_first() {
        let signin = sign_in();
        let begin = signin.begin(ip("192.0.2.1")).await.unwrap();
        let state = query(&begin.location, "state");
        // Many addresses flood together, each within its own bound, until the store is full
        // and past it: the single sign-in of the quiet address stays.
        let flooders = MAX_PENDING / MAX_PENDING_PER_ADDRESS + 10;
        for _ in 0..MAX_PENDING_PER_ADDRESS {
            for f in 0..flooders {
                signin.begin(ip(&format!("10.0.{}.{}", f / 256, f % 256))).await.unwrap();
            }
        }
        assert_eq!(signin.pending.lock().unwrap().len(), MAX_PENDING);
        assert!(signin.pending.lock().unwrap().contains_key(&state));
    }
}
