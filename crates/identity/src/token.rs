//! Parsing a compact JWS token without trusting it: size cap, strict base64url, strict JSON,
//! and the header rules of RFC 8725. Nothing here checks the signature; [`crate::keys`] does.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::strict_json;

/// Largest token accepted; longer tokens are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Why a token was refused. The text is safe to return to the caller: it never contains
/// the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    /// Not three base64url parts separated by dots.
    #[error("token is not a compact JWS (header.payload.signature)")]
    Malformed,
    /// A part is not valid base64url without padding.
    #[error("token {0} is not valid base64url")]
    Encoding(&'static str),
    /// The header or payload is not a JSON object, or repeats a key.
    #[error("token {part} is not valid JSON: {reason}")]
    Json {
        /// `header` or `payload`.
        part: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The algorithm is missing, `none`, symmetric or unknown.
    #[error("token algorithm `{0}` is not allowed (RS256/384/512, PS256/384/512, ES256/384, EdDSA only)")]
    Algorithm(String),
    /// The header asks for something Palisade refuses on principle.
    #[error("token header parameter `{0}` is not allowed")]
    ForbiddenHeader(&'static str),
    /// The header marks extensions as critical that Palisade does not understand.
    #[error("token header lists critical extensions Palisade does not support")]
    Critical,
    /// A header field has the wrong type.
    #[error("token header `{0}` must be a string")]
    HeaderType(&'static str),
    /// A registered claim has the wrong type.
    #[error("claim `{claim}` must be {expected}")]
    ClaimType {
        /// The claim.
        claim: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// A required claim is absent.
    #[error("claim `{0}` is required")]
    MissingClaim(&'static str),
}

/// The algorithms Palisade accepts: asymmetric only.
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The protected header, after the RFC 8725 checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The signing algorithm (never `none` or HMAC).
    pub alg: Algorithm,
    /// The key id: only ever used to look a key up in the issuer's key set.
    pub kid: Option<String>,
    /// The media type (`JWT`, `at+jwt`), informative.
    pub typ: Option<String>,
}

/// The registered claims, typed, and every claim as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// `iss`
    pub iss: String,
    /// `sub`
    pub sub: Option<String>,
    /// `aud` (a string or a list of strings in the token)
    pub aud: Vec<String>,
    /// `exp`, seconds since the epoch
    pub exp: f64,
    /// `nbf`
    pub nbf: Option<f64>,
    /// `iat`
    pub iat: Option<f64>,
    /// `jti`
    pub jti: Option<String>,
    /// `azp`
    pub azp: Option<String>,
    /// All claims, including the ones above.
    pub all: Map<String, Value>,
}

/// A token split and decoded, signature not yet checked.
#[derive(Debug, Clone)]
pub struct UnverifiedToken<'a> {
    /// The checked header.
    pub header: Header,
    /// The typed claims.
    pub claims: Claims,
    /// `base64url(header) "." base64url(payload)`: what the signature covers.
    pub signing_input: &'a str,
    /// The base64url signature.
    pub signature: &'a str,
}

/// Parses a compact JWS. Checks size, structure, encoding, JSON, header and claim types.
pub fn parse(token: &str) -> Result<UnverifiedToken<'_>, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    if header_b64.is_empty() || payload_b64.is_empty() || signature.is_empty() {
        return Err(TokenError::Malformed);
    }
    let header_bytes = URL_SAFE_NO_PAD.decode(header_b64).map_err(|_| TokenError::Encoding("header"))?;
    let payload_bytes = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| TokenError::Encoding("payload"))?;
    if URL_SAFE_NO_PAD.decode(signature).is_err() {
        return Err(TokenError::Encoding("signature"));
    }
    let header = strict_json::parse_object(&header_bytes)
        .map_err(|reason| TokenError::Json { part: "header", reason })?;
    let payload = strict_json::parse_object(&payload_bytes)
        .map_err(|reason| TokenError::Json { part: "payload", reason })?;
    let header = check_header(&header)?;
    let claims = type_claims(payload)?;
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
    Ok(UnverifiedToken { header, claims, signing_input, signature })
}

fn check_header(header: &Map<String, Value>) -> Result<Header, TokenError> {
    // Keys named by the token itself would let the attacker choose the verification key.
    for (name, forbidden) in [("jku", "jku"), ("x5u", "x5u"), ("jwk", "jwk"), ("x5c", "x5c")] {
        if header.contains_key(name) {
            return Err(TokenError::ForbiddenHeader(forbidden));
        }
    }
    // RFC 7515 4.1.11: a recipient must reject critical extensions it does not understand,
    // and Palisade understands none.
    if header.contains_key("crit") {
        return Err(TokenError::Critical);
    }
    if header.get("b64").is_some() {
        return Err(TokenError::ForbiddenHeader("b64"));
    }
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => {
            parse_algorithm(alg).ok_or_else(|| TokenError::Algorithm(alg.chars().take(16).collect()))?
        }
        Some(_) => return Err(TokenError::HeaderType("alg")),
        None => return Err(TokenError::Algorithm(String::new())),
    };
    let string = |name: &'static str| match header.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TokenError::HeaderType(name)),
    };
    Ok(Header { alg, kid: string("kid")?, typ: string("typ")? })
}

fn type_claims(all: Map<String, Value>) -> Result<Claims, TokenError> {
    let string = |claim: &'static str| match all.get(claim) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(TokenError::ClaimType { claim, expected: "a string" }),
    };
    // NumericDate (RFC 7519 2): a JSON number. Strings such as "1700000000" are refused.
    let number = |claim: &'static str| match all.get(claim) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .filter(|v| v.is_finite())
            .map(Some)
            .ok_or(TokenError::ClaimType { claim, expected: "a number" }),
        Some(_) => Err(TokenError::ClaimType { claim, expected: "a number (seconds since the epoch)" }),
    };
    let iss = string("iss")?.ok_or(TokenError::MissingClaim("iss"))?;
    let exp = number("exp")?.ok_or(TokenError::MissingClaim("exp"))?;
    let aud = match all.get("aud") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or(TokenError::ClaimType { claim: "aud", expected: "a string or a list of strings" })?,
        Some(_) => {
            return Err(TokenError::ClaimType { claim: "aud", expected: "a string or a list of strings" });
        }
    };
    Ok(Claims {
        iss,
        sub: string("sub")?,
        aud,
        exp,
        nbf: number("nbf")?,
        iat: number("iat")?,
        jti: string("jti")?,
        azp: string("azp")?,
        all,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn b64(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json.as_bytes())
    }

    pub(crate) fn token(header: &str, payload: &str) -> String {
        format!("{}.{}.{}", b64(header), b64(payload), b64("signature"))
    }

    const HEADER: &str = r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#;
    const PAYLOAD: &str =
        r#"{"iss":"https://idp","sub":"alice","aud":"ml","exp":2000000000,"iat":1999999000}"#;

    #[test]
    fn parses_a_well_formed_token() {
        let t = token(HEADER, PAYLOAD);
        let parsed = parse(&t).unwrap();
        assert_eq!(parsed.header.alg, Algorithm::RS256);
        assert_eq!(parsed.header.kid.as_deref(), Some("k1"));
        assert_eq!(parsed.claims.iss, "https://idp");
        assert_eq!(parsed.claims.aud, vec!["ml"]);
        assert_eq!(parsed.claims.exp, 2_000_000_000.0);
        assert!(t.starts_with(parsed.signing_input));
    }

    #[test]
    fn refuses_none_and_symmetric_algorithms() {
        for alg in ["none", "None", "HS256", "HS384", "HS512", "RS1", ""] {
            let t = token(&format!(r#"{{"alg":"{alg}"}}"#), PAYLOAD);
            assert!(matches!(parse(&t), Err(TokenError::Algorithm(_))), "{alg}");
        }
        assert!(matches!(parse(&token(r#"{"typ":"JWT"}"#, PAYLOAD)), Err(TokenError::Algorithm(_))));
        assert!(matches!(parse(&token(r#"{"alg":256}"#, PAYLOAD)), Err(TokenError::HeaderType("alg"))));
    }

    #[test]
    fn refuses_keys_named_by_the_token() {
        for (param, value) in [
            ("jku", r#""https://evil/jwks""#),
            ("x5u", r#""https://evil/cert""#),
            ("jwk", r#"{"kty":"RSA","n":"x","e":"AQAB"}"#),
            ("x5c", r#"["MIIB"]"#),
        ] {
            let t = token(&format!(r#"{{"alg":"RS256","{param}":{value}}}"#), PAYLOAD);
            assert!(matches!(parse(&t), Err(TokenError::ForbiddenHeader(_))), "{param}");
        }
    }

    #[test]
    fn refuses_critical_extensions() {
        let t = token(r#"{"alg":"RS256","crit":["exp"],"exp":1}"#, PAYLOAD);
        assert_eq!(parse(&t).unwrap_err(), TokenError::Critical);
        let t = token(r#"{"alg":"RS256","b64":false}"#, PAYLOAD);
        assert!(parse(&t).is_err());
    }

    #[test]
    fn refuses_oversized_tokens_before_parsing() {
        let huge = format!("{}.{}.{}", "a".repeat(MAX_TOKEN_BYTES), "b", "c");
        assert_eq!(parse(&huge).unwrap_err(), TokenError::TooLarge);
    }

    #[test]
    fn refuses_malformed_structure_and_encoding() {
        assert_eq!(parse("abc").unwrap_err(), TokenError::Malformed);
        assert_eq!(parse("a.b").unwrap_err(), TokenError::Malformed);
        assert_eq!(parse("a.b.c.d").unwrap_err(), TokenError::Malformed);
        assert_eq!(parse(&format!("{}.{}.", b64(HEADER), b64(PAYLOAD))).unwrap_err(), TokenError::Malformed);
        let padded = format!("{}=.{}.{}", b64(HEADER), b64(PAYLOAD), b64("s"));
        assert_eq!(parse(&padded).unwrap_err(), TokenError::Encoding("header"));
        let std_alphabet = format!("{}.{}.a+/b", b64(HEADER), b64(PAYLOAD));
        assert_eq!(parse(&std_alphabet).unwrap_err(), TokenError::Encoding("signature"));
    }

    #[test]
    fn refuses_non_utf8_and_duplicate_keys() {
        let bad_utf8 = format!("{}.{}.{}", URL_SAFE_NO_PAD.encode(b"\xff\xfe"), b64(PAYLOAD), b64("s"));
        assert!(matches!(parse(&bad_utf8), Err(TokenError::Json { part: "header", .. })));
        let dup_header = token(r#"{"alg":"RS256","alg":"none"}"#, PAYLOAD);
        assert!(matches!(parse(&dup_header), Err(TokenError::Json { part: "header", .. })));
        let dup_claim = token(HEADER, r#"{"iss":"a","exp":2000000000,"sub":"alice","sub":"admin"}"#);
        assert!(matches!(parse(&dup_claim), Err(TokenError::Json { part: "payload", .. })));
    }

    #[test]
    fn refuses_wrongly_typed_claims() {
        let cases = [
            (r#"{"iss":"a","exp":"2000000000"}"#, "exp"),
            (r#"{"iss":"a","exp":2000000000,"nbf":"1"}"#, "nbf"),
            (r#"{"iss":"a","exp":2000000000,"iat":true}"#, "iat"),
            (r#"{"iss":1,"exp":2000000000}"#, "iss"),
            (r#"{"iss":"a","exp":2000000000,"sub":5}"#, "sub"),
            (r#"{"iss":"a","exp":2000000000,"aud":[1]}"#, "aud"),
            (r#"{"iss":"a","exp":2000000000,"aud":{"a":1}}"#, "aud"),
        ];
        for (payload, claim) in cases {
            let err = parse(&token(HEADER, payload)).unwrap_err();
            assert!(matches!(err, TokenError::ClaimType { claim: c, .. } if c == claim), "{payload}: {err}");
        }
        assert_eq!(parse(&token(HEADER, r#"{"iss":"a"}"#)).unwrap_err(), TokenError::MissingClaim("exp"));
        assert_eq!(
            parse(&token(HEADER, r#"{"exp":2000000000}"#)).unwrap_err(),
            TokenError::MissingClaim("iss")
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(input in ".{0,300}") {
            let _ = parse(&input);
        }

        #[test]
        fn never_panics_on_token_shaped_input(h in "[A-Za-z0-9_-]{0,80}", p in "[A-Za-z0-9_-]{0,80}", s in "[A-Za-z0-9_-]{0,40}") {
            let _ = parse(&format!("{h}.{p}.{s}"));
        }
    }
}
