//! Token verification cost, per algorithm: uncached (parse, signature, claims) and cached
//! (the verified-token cache hit that repeated calls take).
//!
//! `cargo bench -p palisade-identity --bench verify`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use palisade_identity::authn::unix_now;
use palisade_identity::rules::FromHeader;
use palisade_identity::{
    Algorithm, Authenticator, AuthnSettings, HttpFetch, JwtRule, KeySource, Scope, ScopedRule, SigningKey,
};
use serde_json::json;

const ISSUER: &str = "https://idp.bench/realms/ml";

fn authenticator(key: &SigningKey, cache_capacity: usize) -> Authenticator {
    let rule = JwtRule {
        issuer: ISSUER.to_owned(),
        audiences: vec!["ml".to_owned()],
        keys: KeySource::Inline(json!({"keys": [key.public_jwk()]}).to_string()),
        from_headers: vec![FromHeader { name: "authorization".into(), prefix: "Bearer ".into() }],
        from_params: vec![],
        from_cookies: vec![],
        forward_original_token: false,
        output_payload_to_header: None,
        output_claim_to_headers: vec![],
        timeout: Duration::from_secs(1),
    };
    Authenticator::new(
        vec![ScopedRule { rule, scope: Scope::Global }],
        AuthnSettings { cache_capacity, ..AuthnSettings::default() },
        Arc::new(HttpFetch::new().unwrap()),
        &[],
    )
}

fn headers_for(key: &SigningKey) -> HeaderMap {
    let now = unix_now() as u64;
    // A realistic access token: the claims an IdP such as Keycloak puts in one.
    let claims = json!({
        "iss": ISSUER, "sub": "0f6c3c1e-5d1a-4c4f-9d7e-2b8f0a6e9c11", "aud": ["ml", "account"],
        "exp": now + 3600, "iat": now, "jti": "6a8b1c2d-3e4f-5a6b-7c8d-9e0f1a2b3c4d", "azp": "ml-portal",
        "scope": "openid email profile predict", "email": "person_a@company.com", "email_verified": true,
        "groups": ["fraud-analysts", "ml-users"], "preferred_username": "person_a",
    });
    let token = key.sign(claims.as_object().unwrap(), "JWT").unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
    headers
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let key = SigningKey::generate(alg).unwrap();
        let headers = headers_for(&key);
        let name = format!("{alg:?}");

        let uncached = authenticator(&key, 0);
        c.bench_function(&format!("verify/{name}/uncached"), |b| {
            b.iter(|| {
                runtime
                    .block_on(uncached.authenticate(&headers, None, palisade_identity::Scoping::NoModel))
                    .unwrap()
            })
        });

        let cached = authenticator(&key, 1000);
        runtime.block_on(cached.authenticate(&headers, None, palisade_identity::Scoping::NoModel)).unwrap();
        c.bench_function(&format!("verify/{name}/cached"), |b| {
            b.iter(|| {
                runtime
                    .block_on(cached.authenticate(&headers, None, palisade_identity::Scoping::NoModel))
                    .unwrap()
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
