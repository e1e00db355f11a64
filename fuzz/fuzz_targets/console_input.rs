//! What reaches the console from outside: a browser's `Cookie` header (anyone's bytes) and
//! an identity provider's discovery document. Either is read or refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_console::{cookie, oidc};

fuzz_target!(|data: &[u8]| {
    let mut headers = axum::http::HeaderMap::new();
    if let Ok(value) = axum::http::HeaderValue::from_bytes(data) {
        headers.append(axum::http::header::COOKIE, value.clone());
        let _ = cookie::value(&headers, cookie::SESSION);
        headers.append(axum::http::header::COOKIE, value);
        let _ = cookie::value(&headers, cookie::SIGN_IN);
    }
    let _ = oidc::parse_discovery(data, "https://idp.example");
});
