//! The console's pages, script and style sheet, embedded in the binary at build time
//! (nothing is fetched from anywhere at build or run time), and the headers every console
//! response carries.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// The console's app page (`/console/`, `/console/models/{m}`): the script draws the page.
pub const APP_PAGE: &str = include_str!("../assets/index.html");
/// The sign-in page (`/console/signin`).
pub const SIGN_IN_PAGE: &str = include_str!("../assets/signin.html");
/// The page the identity provider's redirect lands on once signed in: it moves on to
/// `/console/` from the console's own origin, so that the SameSite=Strict session cookie
/// is sent (a redirect chain that began on the identity provider's site would not send it).
pub const CONTINUE_PAGE: &str = include_str!("../assets/continue.html");

/// An embedded file under `/console/assets/`.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub bytes: &'static [u8],
}

const ASSETS: &[(&str, Asset)] = &[
    (
        "console.js",
        Asset {
            content_type: "text/javascript; charset=utf-8",
            bytes: include_bytes!("../assets/console.js"),
        },
    ),
    (
        "signin.js",
        Asset {
            content_type: "text/javascript; charset=utf-8",
            bytes: include_bytes!("../assets/signin.js"),
        },
    ),
    (
        "console.css",
        Asset { content_type: "text/css; charset=utf-8", bytes: include_bytes!("../assets/console.css") },
    ),
];

/// The embedded file of that name, if there is one.
pub fn asset(name: &str) -> Option<Asset> {
    ASSETS.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
}

/// The Content-Security-Policy of every console response: everything from the server
/// itself only, no inline script or style, no plugin, never framed, forms post here only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Sets the console's security headers: the CSP above, no sniffing, no framing, no
/// referrer (a callback URL carries a code), nothing cached, the page isolated from
/// other windows and its resources from other sites.
pub fn secure(headers: &mut HeaderMap) {
    let set = |headers: &mut HeaderMap, name: HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(headers, header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::CACHE_CONTROL, "no-store");
    set(headers, HeaderName::from_static("cross-origin-opener-policy"), "same-origin");
    set(headers, HeaderName::from_static("cross-origin-resource-policy"), "same-origin");
    set(headers, HeaderName::from_static("permissions-policy"), "camera=(), microphone=(), geolocation=()");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every page loads its script and style from `/console/assets/` and has no inline
    /// script, event handler or style; the CSP allows neither.
    #[test]
    fn pages_have_nothing_inline() {
        for page in [APP_PAGE, SIGN_IN_PAGE, CONTINUE_PAGE] {
            let lower = page.to_ascii_lowercase();
            for forbidden in [
                "<style",
                " style=",
                " onclick",
                " onload",
                " onsubmit",
                "javascript:",
                "http://",
                "https://",
            ] {
                assert!(!lower.contains(forbidden), "a console page contains `{forbidden}`");
            }
            for script in lower.split("<script").skip(1) {
                let tag = script.split('>').next().unwrap_or_default();
                assert!(tag.contains("src=\"/console/assets/"), "an inline script: <script{tag}>");
            }
            for link in lower.split(" href=\"").skip(1) {
                assert!(link.starts_with('/'), "a link off the server: {}", &link[..link.len().min(40)]);
            }
        }
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
        assert!(CONTENT_SECURITY_POLICY.contains("default-src 'self'"));
        assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
    }

    #[test]
    fn every_asset_a_page_names_is_embedded() {
        for page in [APP_PAGE, SIGN_IN_PAGE, CONTINUE_PAGE] {
            for rest in page.split("/console/assets/").skip(1) {
                let name = rest.split('"').next().unwrap_or_default();
                assert!(asset(name).is_some(), "{name} is named by a page but not embedded");
            }
        }
        assert!(asset("../Cargo.toml").is_none());
        assert!(asset("").is_none());
    }

    #[test]
    fn scripts_never_write_html() {
        for (name, asset) in ASSETS {
            // The SVG namespace is a name, never fetched.
            let text =
                std::str::from_utf8(asset.bytes).unwrap().replace("\"http://www.w3.org/2000/svg\"", "SVG_NS");
            for forbidden in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "http://",
                "https://",
            ] {
                assert!(!text.contains(forbidden), "{name} contains `{forbidden}`");
            }
        }
    }
}
