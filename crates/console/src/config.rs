//! The platform config's `console:` section (documented in docs/config.md and
//! docs/console.md).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// `console:`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsoleConfig {
    /// Serve the console at `/console` (default true). `false`: no `/console` route exists.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How long a session lasts after sign-in (default 1h; 1m to 24h). A session of a pasted
    /// token ends with the token, if sooner.
    #[serde(default = "hour", deserialize_with = "duration")]
    pub session_ttl: Duration,
    /// The most sessions held at once (default 10000; 1 to 1000000). Past it, the session
    /// that would expire first is ended.
    #[serde(default = "max_sessions")]
    pub max_sessions: usize,
    /// Sign-in with the organisation's identity provider; without it, only a token of
    /// Palisade's built-in issuer can be pasted.
    #[serde(default)]
    pub oidc: Option<OidcConfig>,
    /// Auditors: their audit page shows every model's requests (others see their own
    /// models' only). Written like owners (`group:NAME`, an email).
    #[serde(default)]
    pub auditors: Vec<palisade_core::Owner>,
}

/// `console.oidc:`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OidcConfig {
    /// The issuer (`iss`); its discovery document is read from
    /// `{issuer}/.well-known/openid-configuration`. HTTPS, or plain HTTP on loopback.
    pub issuer: String,
    /// The console's client id at the identity provider (the ID token's `aud`).
    pub client_id: String,
    /// A file holding the client secret (sent with HTTP Basic to the token endpoint);
    /// absent: a public client, protected by PKCE alone.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Where the identity provider sends the browser back: the server's public URL
    /// followed by `/console/callback`, registered with the identity provider.
    pub redirect_uri: String,
    /// Scopes asked for (default `openid email profile`); must include `openid`.
    #[serde(default = "scopes")]
    pub scopes: Vec<String>,
    /// Time allowed for each call to the identity provider (default 5s).
    #[serde(default = "five_seconds", deserialize_with = "duration")]
    pub timeout: Duration,
}

fn yes() -> bool {
    true
}
fn hour() -> Duration {
    Duration::from_secs(3600)
}
fn five_seconds() -> Duration {
    Duration::from_secs(5)
}
fn max_sessions() -> usize {
    10_000
}
fn scopes() -> Vec<String> {
    ["openid", "email", "profile"].into_iter().map(str::to_owned).collect()
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    palisade_core::parse_duration(&text).map_err(serde::de::Error::custom)
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: true,
            session_ttl: hour(),
            max_sessions: max_sessions(),
            oidc: None,
            auditors: Vec::new(),
        }
    }
}

impl ConsoleConfig {
    /// Checks what the types cannot: `Err((field, message))` names the field and the fix.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |field: &str, message: String| Err((format!("console.{field}"), message));
        if !(60..=24 * 3600).contains(&self.session_ttl.as_secs()) {
            return err("sessionTtl", "must be between 1m and 24h".to_owned());
        }
        if !(1..=1_000_000).contains(&self.max_sessions) {
            return err("maxSessions", format!("{} is out of range: use 1 to 1000000", self.max_sessions));
        }
        let Some(oidc) = &self.oidc else { return Ok(()) };
        if let Err(message) = palisade_identity::rules::check_key_url(&oidc.issuer, false) {
            return err("oidc.issuer", message);
        }
        if oidc.client_id.is_empty() {
            return err(
                "oidc.clientId",
                "must not be empty: the console's client id at the identity provider".to_owned(),
            );
        }
        match url::Url::parse(&oidc.redirect_uri) {
            Ok(url) if matches!(url.scheme(), "https" | "http") && url.path() == "/console/callback" => {}
            _ => {
                return err(
                    "oidc.redirectUri",
                    format!(
                        "`{}` is not the server's public URL followed by `/console/callback` (such as https://palisade.example.com/console/callback)",
                        oidc.redirect_uri
                    ),
                );
            }
        }
        if !oidc.scopes.iter().any(|s| s == "openid") {
            return err("oidc.scopes", "must include `openid`".to_owned());
        }
        if oidc.scopes.iter().any(|s| s.is_empty() || s.contains(char::is_whitespace)) {
            return err("oidc.scopes", "each scope is one word".to_owned());
        }
        if oidc.timeout.is_zero() || oidc.timeout > Duration::from_secs(60) {
            return err("oidc.timeout", "must be between 1ms and 60s".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oidc(issuer: &str, redirect: &str) -> ConsoleConfig {
        ConsoleConfig {
            oidc: Some(OidcConfig {
                issuer: issuer.to_owned(),
                client_id: "palisade-console".to_owned(),
                client_secret_file: None,
                redirect_uri: redirect.to_owned(),
                scopes: scopes(),
                timeout: five_seconds(),
            }),
            ..ConsoleConfig::default()
        }
    }

    #[test]
    fn bad_fields_are_named() {
        assert!(ConsoleConfig::default().validate().is_ok());
        assert!(oidc("https://idp.example", "https://p.example/console/callback").validate().is_ok());
        assert!(oidc("http://127.0.0.1:9000", "http://127.0.0.1:8080/console/callback").validate().is_ok());
        let field = |c: ConsoleConfig| c.validate().unwrap_err().0;
        assert_eq!(
            field(oidc("http://idp.example", "https://p.example/console/callback")),
            "console.oidc.issuer"
        );
        assert_eq!(
            field(oidc("https://idp.example", "https://p.example/callback")),
            "console.oidc.redirectUri"
        );
        assert_eq!(field(oidc("https://idp.example", "not a url")), "console.oidc.redirectUri");
        let mut c = oidc("https://idp.example", "https://p.example/console/callback");
        if let Some(o) = c.oidc.as_mut() {
            o.scopes = vec!["email".to_owned()];
        }
        assert_eq!(field(c), "console.oidc.scopes");
        let c = ConsoleConfig { max_sessions: 0, ..ConsoleConfig::default() };
        assert_eq!(field(c), "console.maxSessions");
        let c = ConsoleConfig { session_ttl: Duration::from_secs(1), ..ConsoleConfig::default() };
        assert_eq!(field(c), "console.sessionTtl");
    }
}
