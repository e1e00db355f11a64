//! The ID token checks of a sign-in, against a small identity provider on loopback that
//! signs real tokens (`identity::SigningKey`) and answers discovery, its key set and the
//! token endpoint. (A fake: it lets each test hand out a wrong token on purpose, which the
//! real provider in tests/idp never does; tests/e2e/test_console.py signs in through that
//! one.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine;
use palisade_console::{OidcConfig, SignIn};
use palisade_identity::{Algorithm, AuthnSettings, SigningKey};
use serde_json::{Map, Value, json};
use sha2::Digest;

struct Provider {
    issuer: String,
    key: SigningKey,
    /// The ID token the token endpoint hands out next.
    id_token: Arc<Mutex<String>>,
    /// Every token request: its `Authorization` header and form body.
    token_requests: Arc<Mutex<Vec<(String, String)>>>,
}

fn serve(
    listener: TcpListener,
    issuer: String,
    jwks: Value,
    id_token: Arc<Mutex<String>>,
    seen: Arc<Mutex<Vec<(String, String)>>>,
) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            let (mut length, mut authorization) = (0, String::new());
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                if header.trim().is_empty() {
                    break;
                }
                let (name, value) = header.split_once(':').unwrap();
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap(),
                    "authorization" => authorization = value.trim().to_owned(),
                    _ => {}
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let answer = match path.as_str() {
                "/.well-known/openid-configuration" => json!({
                    "issuer": issuer,
                    "authorization_endpoint": format!("{issuer}/auth"),
                    "token_endpoint": format!("{issuer}/token"),
                    "jwks_uri": format!("{issuer}/jwks"),
                    "code_challenge_methods_supported": ["S256"],
                }),
                "/jwks" => jwks.clone(),
                "/token" => {
                    seen.lock().unwrap().push((authorization, String::from_utf8(body).unwrap()));
                    json!({"id_token": *id_token.lock().unwrap(), "token_type": "Bearer"})
                }
                _ => json!({"error": "not_found"}),
            };
            let text = answer.to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
}

fn provider() -> Provider {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let jwks = json!({"keys": [key.public_jwk()]});
    let id_token = Arc::new(Mutex::new(String::new()));
    let token_requests = Arc::new(Mutex::new(Vec::new()));
    serve(listener, issuer.clone(), jwks, id_token.clone(), token_requests.clone());
    Provider { issuer, key, id_token, token_requests }
}

fn sign_in(provider: &Provider, secret: &std::path::Path) -> SignIn {
    let config = OidcConfig {
        issuer: provider.issuer.clone(),
        client_id: "palisade-console".to_owned(),
        client_secret_file: Some(secret.to_owned()),
        redirect_uri: "http://127.0.0.1:8080/console/callback".to_owned(),
        scopes: vec!["openid".to_owned(), "email".to_owned()],
        timeout: Duration::from_secs(5),
    };
    SignIn::new(&config, AuthnSettings::default()).unwrap()
}

fn query(location: &str, name: &str) -> String {
    let url = url::Url::parse(location).unwrap();
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).unwrap()
}

fn now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
}

/// The claims of a good ID token for this sign-in.
fn claims(provider: &Provider, nonce: &str) -> Map<String, Value> {
    json!({
        "iss": provider.issuer,
        "sub": "alice",
        "aud": "palisade-console",
        "iat": now(),
        "exp": now() + 300,
        "nonce": nonce,
        "email": "alice@example.com",
    })
    .as_object()
    .cloned()
    .unwrap()
}

/// Starts a sign-in, has the provider hand out the token `make` builds from the good claims,
/// and finishes it.
async fn attempt(
    make: impl FnOnce(&Provider, Map<String, Value>) -> String,
) -> (Result<palisade_identity::Authenticated, palisade_console::ConsoleError>, Provider, String) {
    let provider = provider();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret with spaces&more\n").unwrap();
    let signin = sign_in(&provider, &secret);
    let begin = signin.begin(Some("127.0.0.1".parse().unwrap())).await.unwrap();
    let nonce = query(&begin.location, "nonce");
    let token = make(&provider, claims(&provider, &nonce));
    *provider.id_token.lock().unwrap() = token;
    let state = query(&begin.location, "state");
    let result = signin.complete(&state, "the-code", Some(begin.binding.expose())).await;
    (result, provider, query(&begin.location, "code_challenge"))
}

#[tokio::test]
async fn a_good_id_token_signs_in_with_pkce_and_the_client_secret() {
    let (result, provider, challenge) = attempt(|p, claims| p.key.sign(&claims, "JWT").unwrap()).await;
    let identity = result.unwrap();
    let token = identity.token().unwrap();
    assert_eq!(token.principal(), format!("{}/alice", provider.issuer));
    assert_eq!(token.claims["email"], "alice@example.com");
    let requests = provider.token_requests.lock().unwrap();
    let (authorization, form) = &requests[0];
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(form).unwrap();
    let field = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap();
    assert_eq!(field("grant_type"), "authorization_code");
    assert_eq!(field("code"), "the-code");
    let verifier = field("code_verifier");
    let expected =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    assert_eq!(expected, challenge, "the verifier sent is the one the challenge was made from");
    let basic = base64::engine::general_purpose::STANDARD
        .decode(authorization.strip_prefix("Basic ").unwrap())
        .unwrap();
    assert_eq!(String::from_utf8(basic).unwrap(), "palisade-console:s3cret+with+spaces%26more");
}

#[tokio::test]
async fn a_token_with_another_nonce_is_refused() {
    let (result, ..) = attempt(|p, mut claims| {
        claims.insert("nonce".into(), json!("someone-elses-nonce"));
        p.key.sign(&claims, "JWT").unwrap()
    })
    .await;
    assert!(result.unwrap_err().to_string().contains("nonce"));
    let (result, ..) = attempt(|p, mut claims| {
        claims.remove("nonce");
        p.key.sign(&claims, "JWT").unwrap()
    })
    .await;
    assert!(result.unwrap_err().to_string().contains("nonce"));
}

#[tokio::test]
async fn a_token_for_another_client_is_refused() {
    let (result, ..) = attempt(|p, mut claims| {
        claims.insert("aud".into(), json!("another-app"));
        p.key.sign(&claims, "JWT").unwrap()
    })
    .await;
    assert!(result.unwrap_err().to_string().contains("audience"));
    let (result, ..) = attempt(|p, mut claims| {
        claims.insert("aud".into(), json!(["palisade-console", "another-app"]));
        claims.insert("azp".into(), json!("another-app"));
        p.key.sign(&claims, "JWT").unwrap()
    })
    .await;
    assert!(result.unwrap_err().to_string().contains("azp"));
}

#[tokio::test]
async fn expired_forged_and_foreign_tokens_are_refused() {
    let (result, ..) = attempt(|p, mut claims| {
        claims.insert("iat".into(), json!(now() - 4000));
        claims.insert("exp".into(), json!(now() - 3600));
        p.key.sign(&claims, "JWT").unwrap()
    })
    .await;
    assert!(result.unwrap_err().to_string().contains("expired"));
    let (result, ..) = attempt(|_, claims| {
        let other = SigningKey::generate(Algorithm::ES256).unwrap();
        other.sign(&claims, "JWT").unwrap()
    })
    .await;
    assert!(result.unwrap_err().to_string().contains("ID token"));
    let (result, ..) = attempt(|p, mut claims| {
        claims.insert("iss".into(), json!("https://evil.example"));
        p.key.sign(&claims, "JWT").unwrap()
    })
    .await;
    assert!(result.unwrap_err().to_string().contains("issuer"));
    let (result, ..) = attempt(|p, claims| {
        let good = p.key.sign(&claims, "JWT").unwrap();
        let mut parts: Vec<&str> = good.split('.').collect();
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(json!({"alg": "none", "typ": "JWT"}).to_string());
        parts[0] = &forged;
        format!("{}.{}.", parts[0], parts[1])
    })
    .await;
    assert!(result.is_err());
}
