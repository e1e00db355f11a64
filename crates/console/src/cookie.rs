//! The console's two cookies: the session (HttpOnly, SameSite=Strict, Secure under TLS)
//! and the short-lived sign-in binding that ties an identity provider's answer to the
//! browser that asked for it.

use http::header::{COOKIE, HeaderMap, HeaderValue};

/// The session cookie.
pub const SESSION: &str = "palisade_console";
/// The sign-in binding cookie (SameSite=Lax: it must come back on the identity provider's
/// cross-site redirect to `/console/callback`; it carries no authority by itself).
pub const SIGN_IN: &str = "palisade_console_signin";

/// The value of cookie `name` in the request; `None` when absent, or when it appears more
/// than once (which one would be the browser's is unknowable).
pub fn value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = None;
    for header in headers.get_all(COOKIE) {
        let Ok(text) = header.to_str() else { continue };
        for pair in text.split(';') {
            let Some((key, value)) = pair.trim().split_once('=') else { continue };
            if key == name {
                if found.is_some() {
                    return None;
                }
                found = Some(value);
            }
        }
    }
    found
}

/// How a cookie may travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// Only with requests from the console's own pages.
    Strict,
    /// Also on top-level navigations from other sites (the identity provider's redirect).
    Lax,
}

/// A `Set-Cookie` value: HttpOnly always, Secure when the connection is TLS; `max_age`
/// `0` deletes the cookie.
pub fn set(
    name: &str,
    value: &str,
    path: &str,
    same_site: SameSite,
    max_age: u64,
    tls: bool,
) -> Option<HeaderValue> {
    let same_site = match same_site {
        SameSite::Strict => "Strict",
        SameSite::Lax => "Lax",
    };
    let secure = if tls { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite={same_site}{secure}"
    ))
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_found_once_or_not_at_all() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_static("a=1; palisade_console=abc; b=2"));
        assert_eq!(value(&headers, SESSION), Some("abc"));
        assert_eq!(value(&headers, SIGN_IN), None);
        headers.append(COOKIE, HeaderValue::from_static("palisade_console=other"));
        assert_eq!(value(&headers, SESSION), None, "two session cookies: neither is trusted");
    }

    #[test]
    fn cookies_are_http_only_and_secure_under_tls() {
        let plain = set(SESSION, "v", "/console", SameSite::Strict, 60, false).unwrap();
        assert_eq!(plain, "palisade_console=v; Path=/console; Max-Age=60; HttpOnly; SameSite=Strict");
        let tls = set(SESSION, "v", "/console", SameSite::Strict, 60, true).unwrap();
        assert!(tls.to_str().unwrap().ends_with("; HttpOnly; SameSite=Strict; Secure"));
    }
}
