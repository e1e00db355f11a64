//! Authentication end to end inside the crate: real keys and signatures, a fake key
//! endpoint that counts fetches. One test per hardening rule sends the attack and expects
//! refusal.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::authn::unix_now;
use crate::jwks::tests::FakeFetch;
use crate::rules::{FromHeader, JwtRule, KeySource};
use crate::{
    Authenticated, Authenticator, AuthnError, AuthnSettings, InvalidToken, KeyPolicy, Scope, ScopedRule,
    SigningKey,
};

const ISSUER: &str = "https://idp.test/realms/ml";

fn rule(keys: KeySource) -> JwtRule {
    JwtRule {
        issuer: ISSUER.to_owned(),
        audiences: vec!["ml".to_owned()],
        keys,
        from_headers: vec![FromHeader { name: "authorization".into(), prefix: "Bearer ".into() }],
        from_params: vec![],
        from_cookies: vec![],
        forward_original_token: false,
        output_payload_to_header: None,
        output_claim_to_headers: vec![],
        timeout: Duration::from_secs(1),
    }
}

fn jwks(keys: &[&SigningKey]) -> Vec<u8> {
    json!({"keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>()}).to_string().into_bytes()
}

struct Setup {
    authn: Authenticator,
    fetch: Arc<FakeFetch>,
}

fn setup_with(keys: &[&SigningKey], settings: AuthnSettings) -> Setup {
    let fetch = Arc::new(FakeFetch::default());
    *fetch.fallback.lock().unwrap() = Some(Ok(jwks(keys)));
    let rules =
        vec![ScopedRule { rule: rule(KeySource::Uri("https://idp.test/jwks".into())), scope: Scope::Global }];
    let authn = Authenticator::new(rules, settings, fetch.clone(), &[]);
    Setup { authn, fetch }
}

fn setup(keys: &[&SigningKey]) -> Setup {
    setup_with(keys, AuthnSettings::default())
}

fn claims() -> serde_json::Map<String, Value> {
    let now = unix_now() as u64;
    json!({"iss": ISSUER, "sub": "alice", "aud": "ml", "iat": now, "exp": now + 600, "email": "alice@example.com"})
        .as_object()
        .cloned()
        .unwrap()
}

/// Signs any header and payload with `key` (so attacks carry a valid signature).
fn forge(key: &SigningKey, header: Value, payload: &serde_json::Map<String, Value>) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(Value::Object(payload.clone()).to_string())
    );
    let signature = key.sign_bytes(input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
    headers
}

async fn check(setup: &Setup, token: &str) -> Result<Authenticated, AuthnError> {
    setup.authn.authenticate(&bearer(token), None, crate::Scoping::NoModel).await
}

fn invalid(result: Result<Authenticated, AuthnError>) -> InvalidToken {
    match result {
        Err(AuthnError::Invalid(reason)) => reason,
        other => panic!("expected an invalid token, got {other:?}"),
    }
}

#[tokio::test]
async fn accepts_each_asymmetric_algorithm() {
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA] {
        let key = SigningKey::generate(alg).unwrap();
        let s = setup(&[&key]);
        let token = key.sign(&claims(), "JWT").unwrap();
        match check(&s, &token).await {
            Ok(Authenticated::Token { token, .. }) => {
                assert_eq!(token.principal(), format!("{ISSUER}/alice"));
                assert_eq!(token.claims["email"], "alice@example.com");
            }
            other => panic!("{alg:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn refuses_alg_none() {
    let key = SigningKey::generate(Algorithm::RS256).unwrap();
    let s = setup(&[&key]);
    let unsigned = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(Value::Object(claims()).to_string()),
        URL_SAFE_NO_PAD.encode("x")
    );
    assert!(matches!(invalid(check(&s, &unsigned).await), InvalidToken::Malformed(_)));
}

/// The classic confusion: an HMAC signature made with the issuer's public key as secret.
#[tokio::test]
async fn refuses_hmac_signed_with_the_public_key() {
    let key = SigningKey::generate(Algorithm::RS256).unwrap();
    let s = setup(&[&key]);
    let public = key.public_jwk().to_string();
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "kid": key.kid()}).to_string()),
        URL_SAFE_NO_PAD.encode(Value::Object(claims()).to_string())
    );
    let mac = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, public.as_bytes()),
        input.as_bytes(),
    );
    let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
    assert!(matches!(invalid(check(&s, &forged).await), InvalidToken::Malformed(_)));
    // Even an inline key set that publishes an `oct` key never lets HMAC through.
    let oct = json!({"keys": [{"kty": "oct", "k": URL_SAFE_NO_PAD.encode(public.as_bytes()), "kid": key.kid()}, key.public_jwk()]});
    let rules = vec![ScopedRule { rule: rule(KeySource::Inline(oct.to_string())), scope: Scope::Global }];
    let authn = Authenticator::new(rules, AuthnSettings::default(), Arc::new(FakeFetch::default()), &[]);
    assert!(authn.authenticate(&bearer(&forged), None, crate::Scoping::NoModel).await.is_err());
}

#[tokio::test]
async fn refuses_keys_named_by_the_token() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let attacker = SigningKey::generate(Algorithm::ES256).unwrap();
    let s = setup(&[&key]);
    for (param, value) in [
        ("jku", json!("https://evil.example/jwks")),
        ("x5u", json!("https://evil.example/cert.pem")),
        ("jwk", attacker.public_jwk()),
        ("x5c", json!(["MIIBIjANBg"])),
    ] {
        let mut header = json!({"alg": "ES256", "kid": key.kid()});
        header[param] = value;
        let token = forge(&key, header, &claims());
        assert!(matches!(invalid(check(&s, &token).await), InvalidToken::Malformed(_)), "{param}");
    }
    // A token signed by the attacker's embedded key with no kid match never verifies.
    let token = forge(&attacker, json!({"alg": "ES256", "kid": key.kid()}), &claims());
    assert_eq!(invalid(check(&s, &token).await), InvalidToken::BadSignature);
}

#[tokio::test]
async fn refuses_unknown_critical_extensions() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let s = setup(&[&key]);
    let token = forge(
        &key,
        json!({"alg": "ES256", "kid": key.kid(), "crit": ["http://example.com/ext"], "http://example.com/ext": true}),
        &claims(),
    );
    assert!(matches!(invalid(check(&s, &token).await), InvalidToken::Malformed(_)));
}

/// The algorithm is pinned to the key: an EC key cannot verify an "RS256" token, and a key
/// whose JWK says RS256 cannot verify PS256.
#[tokio::test]
async fn algorithm_is_pinned_to_the_key() {
    let ec = SigningKey::generate(Algorithm::ES256).unwrap();
    let s = setup(&[&ec]);
    let token = forge(&ec, json!({"alg": "RS256", "kid": ec.kid()}), &claims());
    assert_eq!(invalid(check(&s, &token).await), InvalidToken::AlgorithmMismatch);
    let token = forge(&ec, json!({"alg": "ES384", "kid": ec.kid()}), &claims());
    assert_eq!(invalid(check(&s, &token).await), InvalidToken::AlgorithmMismatch);

    let rsa = SigningKey::generate(Algorithm::RS256).unwrap();
    let s = setup(&[&rsa]);
    let token = forge(&rsa, json!({"alg": "PS256", "kid": rsa.kid()}), &claims());
    assert_eq!(invalid(check(&s, &token).await), InvalidToken::AlgorithmMismatch);
}

/// `kid` is only a map key: path-like or injected kids find nothing and are refused.
#[tokio::test]
async fn kid_is_only_a_lookup_key() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let s = setup(&[&key]);
    for kid in ["../../../../etc/passwd", "' OR 1=1 --", "https://evil/jwks", ""] {
        let token = forge(&key, json!({"alg": "ES256", "kid": kid}), &claims());
        assert_eq!(invalid(check(&s, &token).await), InvalidToken::UnknownKey, "{kid}");
    }
}

#[tokio::test]
async fn refuses_tampered_payloads() {
    let key = SigningKey::generate(Algorithm::RS256).unwrap();
    let s = setup(&[&key]);
    let token = key.sign(&claims(), "JWT").unwrap();
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut payload = claims();
    payload.insert("email".into(), json!("admin@example.com"));
    parts[1] = URL_SAFE_NO_PAD.encode(Value::Object(payload).to_string());
    assert_eq!(invalid(check(&s, &parts.join(".")).await), InvalidToken::BadSignature);
}

#[tokio::test]
async fn exp_is_required_and_enforced_with_60s_skew() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let s = setup(&[&key]);
    let now = unix_now() as u64;
    let mut c = claims();
    c.remove("exp");
    assert!(matches!(invalid(check(&s, &key.sign(&c, "JWT").unwrap()).await), InvalidToken::Malformed(_)));

    let mut c = claims();
    c.insert("iat".into(), json!(now - 700));
    c.insert("exp".into(), json!(now - 30));
    assert!(check(&s, &key.sign(&c, "JWT").unwrap()).await.is_ok(), "within the skew");
    c.insert("exp".into(), json!(now - 61));
    assert_eq!(invalid(check(&s, &key.sign(&c, "JWT").unwrap()).await), InvalidToken::Expired);
}

#[tokio::test]
async fn nbf_and_iat_are_checked() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let s = setup(&[&key]);
    let now = unix_now() as u64;
    let mut c = claims();
    c.insert("nbf".into(), json!(now + 120));
    assert_eq!(invalid(check(&s, &key.sign(&c, "JWT").unwrap()).await), InvalidToken::NotYetValid);
    let mut c = claims();
    c.insert("iat".into(), json!(now + 120));
    c.insert("exp".into(), json!(now + 700));
    assert_eq!(invalid(check(&s, &key.sign(&c, "JWT").unwrap()).await), InvalidToken::IssuedInFuture);
    let mut c = claims();
    c.insert("nbf".into(), json!(now + 30));
    assert!(check(&s, &key.sign(&c, "JWT").unwrap()).await.is_ok(), "within the skew");
}

#[tokio::test]
async fn lifetime_is_capped() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let s = setup(&[&key]);
    let now = unix_now() as u64;
    let mut c = claims();
    c.insert("exp".into(), json!(now + 25 * 3600));
    assert_eq!(invalid(check(&s, &key.sign(&c, "JWT").unwrap()).await), InvalidToken::LifetimeTooLong(86400));
    c.remove("iat");
    assert_eq!(invalid(check(&s, &key.sign(&c, "JWT").unwrap()).await), InvalidToken::LifetimeTooLong(86400));
    let short = setup_with(
        &[&key],
        AuthnSettings { max_lifetime: Duration::from_secs(300), ..AuthnSettings::default() },
    );
    assert_eq!(
        invalid(check(&short, &key.sign(&claims(), "JWT").unwrap()).await),
        InvalidToken::LifetimeTooLong(300)
    );
}

#[tokio::test]
async fn numeric_claims_of_the_wrong_type_are_refused() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let s = setup(&[&key]);
    for (claim, value) in
        [("exp", json!("9999999999")), ("nbf", json!("0")), ("iat", json!([1])), ("exp", json!(null))]
    {
        let mut c = claims();
        c.insert(claim.into(), value);
        assert!(
            matches!(invalid(check(&s, &key.sign(&c, "JWT").unwrap()).await), InvalidToken::Malformed(_)),
            "{claim}"
        );
    }
}

#[tokio::test]
async fn oversized_tokens_are_refused_before_parsing() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let s = setup(&[&key]);
    let mut c = claims();
    c.insert("padding".into(), json!("x".repeat(9000)));
    let token = key.sign(&c, "JWT").unwrap();
    assert_eq!(invalid(check(&s, &token).await), InvalidToken::Malformed(crate::token::TokenError::TooLarge));
    assert_eq!(s.fetch.count.load(Ordering::SeqCst), 0, "no key fetch for a refused token");
}

#[tokio::test]
async fn non_utf8_and_duplicate_keys_are_refused() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let s = setup(&[&key]);
    let dup = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"ES256","kid":"{}"}}"#, key.kid())),
        URL_SAFE_NO_PAD.encode(format!(
            r#"{{"iss":"{ISSUER}","sub":"alice","sub":"admin","aud":"ml","exp":{}}}"#,
            unix_now() as u64 + 60
        ))
    );
    let signed = format!("{dup}.{}", URL_SAFE_NO_PAD.encode(key.sign_bytes(dup.as_bytes()).unwrap()));
    assert!(matches!(invalid(check(&s, &signed).await), InvalidToken::Malformed(_)));
    let bad =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(b"{\"alg\":\"ES256\xff\"}"), URL_SAFE_NO_PAD.encode(b"{}"));
    let signed = format!("{bad}.{}", URL_SAFE_NO_PAD.encode(key.sign_bytes(bad.as_bytes()).unwrap()));
    assert!(matches!(invalid(check(&s, &signed).await), InvalidToken::Malformed(_)));
}

#[tokio::test]
async fn audience_mismatch_is_403() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let s = setup(&[&key]);
    let mut c = claims();
    c.insert("aud".into(), json!(["other", "more"]));
    let err = check(&s, &key.sign(&c, "JWT").unwrap()).await.unwrap_err();
    assert_eq!(err, AuthnError::AudienceMismatch);
    assert_eq!(err.status(), 403);
    c.insert("aud".into(), json!(["other", "ml"]));
    assert!(check(&s, &key.sign(&c, "JWT").unwrap()).await.is_ok());
}

#[tokio::test]
async fn untrusted_issuer_is_refused() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let s = setup(&[&key]);
    let mut c = claims();
    c.insert("iss".into(), json!("https://evil.example"));
    assert_eq!(invalid(check(&s, &key.sign(&c, "JWT").unwrap()).await), InvalidToken::UntrustedIssuer);
}

#[tokio::test]
async fn missing_multiple_and_misplaced_tokens() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let s = setup(&[&key]);
    assert_eq!(
        s.authn.authenticate(&HeaderMap::new(), None, crate::Scoping::NoModel).await.unwrap_err(),
        AuthnError::MissingToken
    );
    let mut basic = HeaderMap::new();
    basic.insert("authorization", HeaderValue::from_static("Basic YTpi"));
    assert_eq!(
        s.authn.authenticate(&basic, None, crate::Scoping::NoModel).await.unwrap_err(),
        AuthnError::MissingToken
    );

    let token = key.sign(&claims(), "JWT").unwrap();
    let mut two = bearer(&token);
    two.append("authorization", HeaderValue::from_str(&format!("Bearer {token}x")).unwrap());
    assert_eq!(
        s.authn.authenticate(&two, None, crate::Scoping::NoModel).await.unwrap_err(),
        AuthnError::MultipleTokens
    );

    // The rule reads only the Authorization header, so a query token is not a token at all.
    let query = format!("access_token={token}");
    assert_eq!(
        s.authn.authenticate(&HeaderMap::new(), Some(&query), crate::Scoping::NoModel).await.unwrap_err(),
        AuthnError::MissingToken
    );

    let optional = setup_with(&[&key], AuthnSettings { require_token: false, ..AuthnSettings::default() });
    assert!(matches!(
        optional.authn.authenticate(&HeaderMap::new(), None, crate::Scoping::NoModel).await,
        Ok(Authenticated::Anonymous)
    ));
}

#[tokio::test]
async fn tokens_from_params_and_cookies_when_configured() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let mut r = rule(KeySource::Inline(String::from_utf8(jwks(&[&key])).unwrap()));
    r.from_headers = vec![];
    r.from_params = vec!["token".into()];
    r.from_cookies = vec!["session".into()];
    let authn = Authenticator::new(
        vec![ScopedRule { rule: r, scope: Scope::Global }],
        AuthnSettings::default(),
        Arc::new(FakeFetch::default()),
        &[],
    );
    let token = key.sign(&claims(), "JWT").unwrap();
    assert!(
        authn
            .authenticate(&HeaderMap::new(), Some(&format!("a=1&token={token}")), crate::Scoping::NoModel)
            .await
            .is_ok()
    );
    let mut cookies = HeaderMap::new();
    cookies.insert("cookie", HeaderValue::from_str(&format!("theme=dark; session={token}")).unwrap());
    assert!(authn.authenticate(&cookies, None, crate::Scoping::NoModel).await.is_ok());
    assert_eq!(
        authn
            .authenticate(&cookies, Some(&format!("token={token}")), crate::Scoping::NoModel)
            .await
            .unwrap_err(),
        AuthnError::MultipleTokens
    );
}

#[tokio::test]
async fn namespace_scoped_rules_apply_to_their_models_only() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let rules = vec![ScopedRule {
        rule: rule(KeySource::Inline(String::from_utf8(jwks(&[&key])).unwrap())),
        scope: Scope::Namespace { namespace: "risk".into(), selector: None },
    }];
    let authn = Authenticator::new(rules, AuthnSettings::default(), Arc::new(FakeFetch::default()), &[]);
    let token = key.sign(&claims(), "JWT").unwrap();
    let labels = Default::default();
    let risk = crate::Target { namespace: "risk", labels: &labels };
    let other = crate::Target { namespace: "other", labels: &labels };
    assert!(authn.authenticate(&bearer(&token), None, crate::Scoping::Model(risk)).await.is_ok());
    assert_eq!(
        invalid(authn.authenticate(&bearer(&token), None, crate::Scoping::Model(other)).await),
        InvalidToken::UntrustedIssuer
    );
}

/// Finding 4 of the first security review: a token verified under a namespace's own rule
/// (its own keys, but the issuer name of a global rule) was cached by digest alone, and the
/// cache then answered for the global rule in another namespace without a signature check.
/// The cache is keyed by the rule too, so the token is checked against the global rule's
/// keys there, and refused.
#[tokio::test]
async fn a_cached_token_never_crosses_into_another_rules_scope() {
    let team_key = SigningKey::generate(Algorithm::ES256).unwrap();
    let global_key = SigningKey::generate(Algorithm::ES256).unwrap();
    let inline = |key: &SigningKey| KeySource::Inline(String::from_utf8(jwks(&[key])).unwrap());
    let rules = vec![
        ScopedRule {
            rule: rule(inline(&team_key)),
            scope: Scope::Namespace { namespace: "team".into(), selector: None },
        },
        ScopedRule { rule: rule(inline(&global_key)), scope: Scope::Global },
    ];
    let authn = Authenticator::new(rules, AuthnSettings::default(), Arc::new(FakeFetch::default()), &[]);
    let labels = Default::default();
    let team = crate::Target { namespace: "team", labels: &labels };
    let other = crate::Target { namespace: "other", labels: &labels };
    let team_token = team_key.sign(&claims(), "JWT").unwrap();
    let global_token = global_key.sign(&claims(), "JWT").unwrap();

    // Verified (and cached) in its own namespace.
    assert!(authn.authenticate(&bearer(&team_token), None, crate::Scoping::Model(team)).await.is_ok());
    // The same bytes for a model elsewhere: only the global rule applies, and its keys
    // did not sign them. Twice, so a second lookup cannot hit a cache either.
    for _ in 0..2 {
        for scoping in [crate::Scoping::Model(other), crate::Scoping::NoModel] {
            let refused = invalid(authn.authenticate(&bearer(&team_token), None, scoping).await);
            assert!(matches!(refused, InvalidToken::UnknownKey | InvalidToken::BadSignature), "{refused:?}");
        }
    }
    // The global rule's tokens work everywhere, the team's namespace included.
    assert!(authn.authenticate(&bearer(&global_token), None, crate::Scoping::Model(other)).await.is_ok());
    assert!(authn.authenticate(&bearer(&global_token), None, crate::Scoping::Model(team)).await.is_ok());

    // Before the model is known (a gRPC message names it), either rule may verify; the
    // rule that did is checked against the model once it is known.
    let any = authn.authenticate(&bearer(&team_token), None, crate::Scoping::AnyModel).await.unwrap();
    assert!(any.applies_to(team));
    assert!(!any.applies_to(other), "a namespace's rule never applies outside its namespace");
    let any = authn.authenticate(&bearer(&global_token), None, crate::Scoping::AnyModel).await.unwrap();
    assert!(any.applies_to(team) && any.applies_to(other));
}

/// A flood of unknown kids causes at most one fetch per interval, and concurrent ones
/// share a single fetch.
#[tokio::test]
async fn unknown_kids_refetch_once_rate_limited_and_single_flight() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let s = setup(&[&key]);
    assert!(check(&s, &key.sign(&claims(), "JWT").unwrap()).await.is_ok());
    assert_eq!(s.fetch.count.load(Ordering::SeqCst), 1, "first load");
    *s.fetch.delay.lock().unwrap() = Duration::from_millis(100);

    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let s = s.clone();
        let token = forge(&key, json!({"alg": "ES256", "kid": format!("unknown-{i}")}), &claims());
        tasks.push(tokio::spawn(async move { check(&s, &token).await }));
    }
    for task in tasks {
        assert!(task.await.unwrap().is_err());
    }
    assert_eq!(s.fetch.count.load(Ordering::SeqCst), 2, "50 unknown kids cost one refetch");
    for i in 0..20 {
        let token = forge(&key, json!({"alg": "ES256", "kid": format!("later-{i}")}), &claims());
        assert!(check(&s, &token).await.is_err());
    }
    assert_eq!(s.fetch.count.load(Ordering::SeqCst), 2, "no more refetches within the interval");
}

/// A hung identity provider never holds a request past `KeyPolicy::request_wait`: the
/// fetch an unknown key id causes goes on in the background, and once it finishes the
/// new key works without another fetch. The same when keys never loaded.
#[tokio::test]
async fn a_hung_identity_provider_holds_no_request() {
    let old = SigningKey::generate(Algorithm::ES256).unwrap();
    let new = SigningKey::generate(Algorithm::ES256).unwrap();
    let mut settings = AuthnSettings::default();
    settings.keys.request_wait = Duration::from_millis(300);
    let s = setup_with(&[&old], settings);
    assert!(check(&s, &old.sign(&claims(), "JWT").unwrap()).await.is_ok());
    *s.fetch.fallback.lock().unwrap() = Some(Ok(jwks(&[&new, &old])));
    *s.fetch.delay.lock().unwrap() = Duration::from_millis(1500);

    let started = std::time::Instant::now();
    let token = new.sign(&claims(), "JWT").unwrap();
    assert_eq!(invalid(check(&s, &token).await), InvalidToken::UnknownKey);
    assert!(started.elapsed() < Duration::from_millis(1000), "waited {:?}", started.elapsed());
    // Known keys keep working while the fetch hangs.
    assert!(check(&s, &old.sign(&claims(), "JWT").unwrap()).await.is_ok());
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(check(&s, &token).await.is_ok(), "the background fetch brought the new key");
    assert_eq!(s.fetch.count.load(Ordering::SeqCst), 2, "one load, one refetch");

    // Keys that never loaded: fail closed, quickly.
    let mut settings = AuthnSettings::default();
    settings.keys.request_wait = Duration::from_millis(300);
    let hung = setup_with(&[&old], settings);
    *hung.fetch.delay.lock().unwrap() = Duration::from_secs(3);
    let started = std::time::Instant::now();
    assert_eq!(
        check(&hung, &old.sign(&claims(), "JWT").unwrap()).await.unwrap_err(),
        AuthnError::KeysUnavailable
    );
    assert!(started.elapsed() < Duration::from_millis(1000), "waited {:?}", started.elapsed());
}

/// A new key at the issuer is picked up through the unknown-kid refetch, without restart.
#[tokio::test]
async fn key_rotation_is_picked_up() {
    let old = SigningKey::generate(Algorithm::RS256).unwrap();
    let new = SigningKey::generate(Algorithm::RS256).unwrap();
    let s = setup(&[&old]);
    assert!(check(&s, &old.sign(&claims(), "JWT").unwrap()).await.is_ok());
    *s.fetch.fallback.lock().unwrap() = Some(Ok(jwks(&[&new, &old])));
    assert!(check(&s, &new.sign(&claims(), "JWT").unwrap()).await.is_ok());
}

/// When the identity provider is down, cached keys keep serving.
#[tokio::test]
async fn idp_outage_keeps_cached_keys() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let s = setup(&[&key]);
    assert!(check(&s, &key.sign(&claims(), "JWT").unwrap()).await.is_ok());
    *s.fetch.fallback.lock().unwrap() = Some(Err("connection refused".into()));
    for holder in s.authn.key_holders() {
        assert!(holder.refresh().await.is_err());
    }
    assert!(check(&s, &key.sign(&claims(), "JWT").unwrap()).await.is_ok(), "a new token still verifies");
}

/// A key set that never loaded fails closed, and retries are rate-limited.
#[tokio::test]
async fn never_loaded_keys_fail_closed() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let s = setup(&[&key]);
    *s.fetch.fallback.lock().unwrap() = Some(Err("connection refused".into()));
    for _ in 0..10 {
        let err = check(&s, &key.sign(&claims(), "JWT").unwrap()).await.unwrap_err();
        assert_eq!(err, AuthnError::KeysUnavailable);
        assert_eq!(err.status(), 401);
    }
    assert_eq!(s.fetch.count.load(Ordering::SeqCst), 1, "retries wait for the retry interval");
}

/// Cached verifications are dropped when their key disappears from the issuer.
#[tokio::test]
async fn removed_keys_drop_cached_tokens() {
    let old = SigningKey::generate(Algorithm::ES256).unwrap();
    let new = SigningKey::generate(Algorithm::ES256).unwrap();
    let s = setup(&[&old]);
    let token = old.sign(&claims(), "JWT").unwrap();
    assert!(check(&s, &token).await.is_ok());
    assert_eq!(s.authn.cache().len(), 1);
    *s.fetch.fallback.lock().unwrap() = Some(Ok(jwks(&[&new])));
    for holder in s.authn.key_holders() {
        let change = holder.refresh().await.unwrap();
        assert_eq!(change.removed, vec![old.kid().to_owned()]);
        s.authn.forget_keys(holder.issuer(), &change.removed);
    }
    assert!(s.authn.cache().is_empty());
    assert_eq!(invalid(check(&s, &token).await), InvalidToken::UnknownKey);
}

#[tokio::test]
async fn cache_serves_repeats_but_not_past_expiry() {
    let key = SigningKey::generate(Algorithm::ES256).unwrap();
    let s = setup(&[&key]);
    let token = key.sign(&claims(), "JWT").unwrap();
    for _ in 0..3 {
        assert!(check(&s, &token).await.is_ok());
    }
    assert_eq!(s.authn.cache().len(), 1);
    // The audience is checked on every request, cached or not.
    let mut c = claims();
    c.insert("aud".into(), json!("other"));
    let other = key.sign(&c, "JWT").unwrap();
    assert_eq!(check(&s, &other).await.unwrap_err(), AuthnError::AudienceMismatch);
    assert_eq!(check(&s, &other).await.unwrap_err(), AuthnError::AudienceMismatch);
}

#[test]
fn policies_default_to_the_documented_values() {
    let settings = AuthnSettings::default();
    assert!(settings.require_token);
    assert_eq!(settings.max_lifetime, Duration::from_secs(86400));
    assert_eq!(settings.clock_skew, Duration::from_secs(60));
    assert_eq!(KeyPolicy::default().refresh_interval, Duration::from_secs(1200));
    assert_eq!(KeyPolicy::default().unknown_kid_interval, Duration::from_secs(60));
}
