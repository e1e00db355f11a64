//! JWT rules: which issuers are trusted, for which audiences, where tokens are found, where
//! keys come from. Written as Istio's `RequestAuthentication` (`security.istio.io/v1` or
//! `v1beta1`), accepted unchanged, or as the same `jwtRules` list in Palisade's config.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Default time allowed to fetch an issuer's keys.
pub const DEFAULT_JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// Where keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Fetched from a URL (`jwksUri`).
    Uri(String),
    /// Given inline (`jwks`, a JSON string).
    Inline(String),
    /// Found through OIDC discovery at `{issuer}/.well-known/openid-configuration`.
    Discovery,
    /// Pushed by the process itself ([`crate::IssuerKeys::set`]): Palisade's own issuer.
    Pushed,
}

/// A header that may carry a token, and the prefix before it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FromHeader {
    /// Header name (case-insensitive).
    pub name: String,
    /// Prefix before the token, such as `Bearer ` (exact, case-sensitive as in Envoy).
    #[serde(default)]
    pub prefix: String,
}

/// Copies a claim into a request header for the model.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimToHeader {
    /// The header to set.
    pub header: String,
    /// The claim to copy (a top-level claim; strings, numbers and booleans).
    pub claim: String,
}

/// One trusted issuer, with Istio's `JWTRule` fields.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtRule {
    /// `iss` of accepted tokens.
    pub issuer: String,
    /// Accepted `aud` values; empty accepts any audience (Istio's behaviour).
    pub audiences: Vec<String>,
    /// Where the keys come from.
    pub keys: KeySource,
    /// Headers searched for tokens.
    pub from_headers: Vec<FromHeader>,
    /// Query parameters searched for tokens.
    pub from_params: Vec<String>,
    /// Cookies searched for tokens.
    pub from_cookies: Vec<String>,
    /// Keep the token in the request passed on (default: strip it).
    pub forward_original_token: bool,
    /// Header that receives the verified payload (base64url).
    pub output_payload_to_header: Option<String>,
    /// Claims copied into headers.
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    /// Key fetch timeout.
    pub timeout: Duration,
}

impl JwtRule {
    /// Token locations for this rule: the configured ones, or Istio's defaults
    /// (`Authorization: Bearer <token>` and the `access_token` query parameter).
    pub fn locations(&self) -> (Vec<FromHeader>, Vec<String>, Vec<String>) {
        if self.from_headers.is_empty() && self.from_params.is_empty() && self.from_cookies.is_empty() {
            (
                vec![FromHeader { name: "authorization".to_owned(), prefix: "Bearer ".to_owned() }],
                vec!["access_token".to_owned()],
                Vec::new(),
            )
        } else {
            (self.from_headers.clone(), self.from_params.clone(), self.from_cookies.clone())
        }
    }
}

/// The `jwtRules` entry as written, before validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawJwtRule {
    issuer: String,
    #[serde(default)]
    audiences: Vec<String>,
    #[serde(default)]
    jwks_uri: Option<String>,
    #[serde(default)]
    jwks: Option<String>,
    #[serde(default)]
    from_headers: Vec<FromHeader>,
    #[serde(default)]
    from_params: Vec<String>,
    #[serde(default)]
    from_cookies: Vec<String>,
    #[serde(default)]
    output_payload_to_header: Option<String>,
    #[serde(default)]
    forward_original_token: bool,
    #[serde(default)]
    output_claim_to_headers: Vec<ClaimToHeader>,
    #[serde(default, deserialize_with = "duration_opt")]
    timeout: Option<Duration>,
    #[serde(default)]
    space_delimited_claims: Vec<String>,
}

fn duration_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map(Some).map_err(serde::de::Error::custom)
}

/// Parses a Kubernetes/Istio duration such as `5s`, `1m30s`, `250ms` or `24h`.
pub use palisade_core::parse_duration;

/// Why a rule is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RuleError {
    /// The field at fault, as a path (`jwtRules[0].jwksUri`).
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl RawJwtRule {
    /// Validates a rule. `index` and `prefix` name it in errors.
    pub fn validate(self, prefix: &str, allow_insecure_jwks: bool) -> Result<JwtRule, RuleError> {
        let fail = |field: &str, message: String| RuleError { field: format!("{prefix}.{field}"), message };
        if self.issuer.trim().is_empty() {
            return Err(fail("issuer", "must not be empty".to_owned()));
        }
        let keys = match (self.jwks_uri, self.jwks) {
            (Some(_), Some(_)) => {
                return Err(fail("jwks", "set either jwksUri or jwks, not both".to_owned()));
            }
            (Some(uri), None) => {
                check_key_url(&uri, allow_insecure_jwks).map_err(|m| fail("jwksUri", m))?;
                KeySource::Uri(uri)
            }
            (None, Some(inline)) => {
                crate::keys::KeySet::parse(inline.as_bytes())
                    .map_err(|m| fail("jwks", format!("invalid JWKS: {m}")))?;
                KeySource::Inline(inline)
            }
            (None, None) => {
                check_key_url(&self.issuer, allow_insecure_jwks).map_err(|m| {
                    fail(
                        "issuer",
                        format!(
                            "{m}; without jwksUri or jwks, keys are found by OIDC discovery at the issuer URL"
                        ),
                    )
                })?;
                KeySource::Discovery
            }
        };
        for (i, header) in self.from_headers.iter().enumerate() {
            if header.name.trim().is_empty() || http_header_name_invalid(&header.name) {
                return Err(fail(
                    &format!("fromHeaders[{i}].name"),
                    format!("`{}` is not a header name", header.name),
                ));
            }
        }
        if let Some(header) = &self.output_payload_to_header
            && http_header_name_invalid(header)
        {
            return Err(fail("outputPayloadToHeader", format!("`{header}` is not a header name")));
        }
        for (i, item) in self.output_claim_to_headers.iter().enumerate() {
            if http_header_name_invalid(&item.header) {
                return Err(fail(
                    &format!("outputClaimToHeaders[{i}].header"),
                    format!("`{}` is not a header name", item.header),
                ));
            }
        }
        let _ = self.space_delimited_claims;
        Ok(JwtRule {
            issuer: self.issuer,
            audiences: self.audiences,
            keys,
            from_headers: self
                .from_headers
                .into_iter()
                .map(|h| FromHeader { name: h.name.to_ascii_lowercase(), prefix: h.prefix })
                .collect(),
            from_params: self.from_params,
            from_cookies: self.from_cookies,
            forward_original_token: self.forward_original_token,
            output_payload_to_header: self.output_payload_to_header.map(|h| h.to_ascii_lowercase()),
            output_claim_to_headers: self
                .output_claim_to_headers
                .into_iter()
                .map(|c| ClaimToHeader { header: c.header.to_ascii_lowercase(), claim: c.claim })
                .collect(),
            timeout: self.timeout.unwrap_or(DEFAULT_JWKS_TIMEOUT),
        })
    }
}

fn http_header_name_invalid(name: &str) -> bool {
    name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Keys must come over HTTPS, except from loopback (tests, sidecars) or when the platform
/// explicitly allows plain HTTP. The URL is parsed, not matched by prefix:
/// `http://localhost.evil.example/` and `http://localhost@evil.example/` are not loopback.
pub fn check_key_url(url: &str, allow_insecure: bool) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|_| format!("`{url}` is not an absolute http(s) URL"))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err(format!("`{url}` names no host")),
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure || loopback => Ok(()),
        "http" => Err(format!(
            "`{url}` uses plain HTTP: keys fetched without TLS can be replaced in transit; use https, or set authentication.allowInsecureJwksUri for a trusted network"
        )),
        _ => Err(format!("`{url}` is not an http(s) URL")),
    }
}

/// A `RequestAuthentication` resource, as Istio defines it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestAuthentication {
    /// `metadata.name`
    pub name: String,
    /// `metadata.namespace` (`default` when absent)
    pub namespace: String,
    /// `spec.selector.matchLabels`, matched against model labels.
    pub selector: Option<BTreeMap<String, String>>,
    /// `spec.jwtRules`
    pub rules: Vec<JwtRule>,
    /// The file it came from.
    pub file: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    metadata: RawMetadata,
    #[serde(default)]
    spec: RawSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMetadata {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default, flatten)]
    _rest: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSpec {
    #[serde(default)]
    selector: Option<RawSelector>,
    #[serde(default)]
    target_ref: Option<serde_yaml::Value>,
    #[serde(default)]
    target_refs: Option<serde_yaml::Value>,
    #[serde(default)]
    jwt_rules: Vec<RawJwtRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSelector {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
}

/// Parses one `RequestAuthentication` document. Errors name the file, line and field.
pub fn parse_request_authentication<'a>(
    file: &Path,
    source: impl Into<palisade_core::yaml::Source<'a>>,
    allow_insecure_jwks: bool,
) -> Result<RequestAuthentication, RuleError> {
    let raw: RawResource = palisade_core::yaml::from_str(file, source).map_err(|err| {
        let at = err.line.map(|l| format!(":{l}:{}", err.column.unwrap_or(1))).unwrap_or_default();
        RuleError { field: format!("{}{at}: {}", file.display(), err.field), message: err.message }
    })?;
    let located =
        |field: &str, message: String| RuleError { field: format!("{}: {field}", file.display()), message };
    if !matches!(raw.api_version.as_str(), "security.istio.io/v1" | "security.istio.io/v1beta1") {
        return Err(located(
            "apiVersion",
            format!("`{}` is not security.istio.io/v1 or v1beta1", raw.api_version),
        ));
    }
    if raw.kind != "RequestAuthentication" {
        return Err(located("kind", format!("expected RequestAuthentication, found `{}`", raw.kind)));
    }
    if raw.spec.target_ref.is_some() || raw.spec.target_refs.is_some() {
        return Err(located(
            "spec.targetRef",
            "targetRef(s) select Kubernetes Gateways, which Palisade does not have; use spec.selector.matchLabels with model labels".to_owned(),
        ));
    }
    let mut rules = Vec::with_capacity(raw.spec.jwt_rules.len());
    for (i, rule) in raw.spec.jwt_rules.into_iter().enumerate() {
        let rule = rule
            .validate(&format!("spec.jwtRules[{i}]"), allow_insecure_jwks)
            .map_err(|e| located(&e.field, e.message))?;
        if rules.iter().any(|r: &JwtRule| r.issuer == rule.issuer) {
            return Err(located(
                &format!("spec.jwtRules[{i}].issuer"),
                format!("issuer `{}` appears twice", rule.issuer),
            ));
        }
        rules.push(rule);
    }
    Ok(RequestAuthentication {
        name: raw.metadata.name,
        namespace: raw.metadata.namespace.unwrap_or_else(|| "default".to_owned()),
        selector: raw.spec.selector.map(|s| s.match_labels),
        rules,
        file: file.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed platform's resource, exactly as it was deployed with Istio.
    pub(crate) const SEED: &str = r#"kind: RequestAuthentication
apiVersion: security.istio.io/v1beta1
metadata:
  name: enforce-jwt-for-apis
  namespace: api
spec:
  jwtRules:
    - audiences:
        - ml
      fromHeaders:
        - name: Authorization
          prefix: "Bearer "
      issuer: "https://idp.local/auth/realms/ML"
      jwksUri: "https://idp.local/auth/realms/ML/.well-known/jwks.json"
"#;

    #[test]
    fn the_seed_resource_loads_unchanged() {
        let ra = parse_request_authentication(Path::new("seed.yaml"), SEED, false).unwrap();
        assert_eq!(ra.name, "enforce-jwt-for-apis");
        assert_eq!(ra.namespace, "api");
        let rule = &ra.rules[0];
        assert_eq!(rule.issuer, "https://idp.local/auth/realms/ML");
        assert_eq!(rule.audiences, vec!["ml"]);
        assert_eq!(
            rule.keys,
            KeySource::Uri("https://idp.local/auth/realms/ML/.well-known/jwks.json".into())
        );
        assert_eq!(
            rule.from_headers,
            vec![FromHeader { name: "authorization".into(), prefix: "Bearer ".into() }]
        );
        assert!(!rule.forward_original_token);
        assert_eq!(rule.timeout, DEFAULT_JWKS_TIMEOUT);
    }

    #[test]
    fn v1_with_every_field() {
        let text = r#"
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: all, namespace: risk, labels: {a: b}, annotations: {x: y}}
spec:
  selector: {matchLabels: {team: fraud}}
  jwtRules:
    - issuer: https://issuer.example
      audiences: [ml, other]
      jwksUri: https://issuer.example/keys
      fromHeaders: [{name: X-Token}]
      fromParams: [token]
      fromCookies: [session]
      forwardOriginalToken: true
      outputPayloadToHeader: X-Jwt-Payload
      outputClaimToHeaders: [{header: X-Email, claim: email}]
      timeout: 1m30s
"#;
        let ra = parse_request_authentication(Path::new("f.yaml"), text, false).unwrap();
        let rule = &ra.rules[0];
        assert_eq!(ra.selector.unwrap()["team"], "fraud");
        assert_eq!(rule.from_params, vec!["token"]);
        assert_eq!(rule.from_cookies, vec!["session"]);
        assert_eq!(rule.output_payload_to_header.as_deref(), Some("x-jwt-payload"));
        assert_eq!(rule.output_claim_to_headers[0].header, "x-email");
        assert_eq!(rule.timeout, Duration::from_secs(90));
        assert!(rule.forward_original_token);
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let typo = SEED.replace("jwksUri", "jwks_uri");
        let err = parse_request_authentication(Path::new("ra.yaml"), &typo, false).unwrap_err().to_string();
        assert!(err.contains("ra.yaml:14:7: spec.jwtRules[0].jwks_uri: unknown field `jwks_uri`"), "{err}");
        assert!(err.contains("unknown field `jwks_uri`"), "{err}");

        let http =
            SEED.replace("https://idp.local/auth/realms/ML/.well", "http://idp.local/auth/realms/ML/.well");
        let err = parse_request_authentication(Path::new("ra.yaml"), &http, false).unwrap_err().to_string();
        assert!(err.contains("spec.jwtRules[0].jwksUri"), "{err}");
        assert!(err.contains("plain HTTP"), "{err}");
        assert!(parse_request_authentication(Path::new("ra.yaml"), &http, true).is_ok());

        let wrong_kind = SEED.replace("kind: RequestAuthentication", "kind: AuthorizationPolicy");
        assert!(parse_request_authentication(Path::new("ra.yaml"), &wrong_kind, false).is_err());
        let bad_inline = SEED.replace(
            "jwksUri: \"https://idp.local/auth/realms/ML/.well-known/jwks.json\"",
            "jwks: '{\"keys\":[]}'",
        );
        let err =
            parse_request_authentication(Path::new("ra.yaml"), &bad_inline, false).unwrap_err().to_string();
        assert!(err.contains("invalid JWKS"), "{err}");
    }

    #[test]
    fn key_urls_are_parsed_not_prefix_matched() {
        for ok in [
            "https://idp.example/keys",
            "http://127.0.0.1:9/k",
            "http://127.3.4.5/k",
            "http://[::1]:8/k",
            "http://LOCALHOST/k",
        ] {
            assert!(check_key_url(ok, false).is_ok(), "{ok}");
        }
        for bad in [
            "http://localhost.evil.example/keys",
            "http://localhost@evil.example/keys",
            "http://127.0.0.1.evil.example/keys",
            "http://evil.example/keys",
            "ftp://idp.example/keys",
            "keys.json",
        ] {
            assert!(check_key_url(bad, false).is_err(), "{bad}");
        }
        assert!(check_key_url("http://idp.internal/keys", true).is_ok());
    }

    #[test]
    fn loopback_http_is_allowed_for_tests() {
        let local = SEED
            .replace("https://idp.local/auth/realms/ML/.well-known/jwks.json", "http://127.0.0.1:9999/jwks");
        assert!(parse_request_authentication(Path::new("ra.yaml"), &local, false).is_ok());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        for bad in ["", "5", "s", "5 parsecs", "-1s", "1d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_locations_follow_istio() {
        let ra = parse_request_authentication(
            Path::new("f"),
            &SEED.replace(
                "      fromHeaders:\n        - name: Authorization\n          prefix: \"Bearer \"\n",
                "",
            ),
            false,
        )
        .unwrap();
        let (headers, params, cookies) = ra.rules[0].locations();
        assert_eq!(headers[0].name, "authorization");
        assert_eq!(headers[0].prefix, "Bearer ");
        assert_eq!(params, vec!["access_token"]);
        assert!(cookies.is_empty());
    }
}
