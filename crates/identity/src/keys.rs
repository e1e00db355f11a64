//! JSON Web Key Sets: parsing an issuer's public keys and checking signatures with them.
//!
//! Every key is pinned to the algorithms its type allows (and to its `alg` when the JWK
//! names one): an RSA key never verifies an ES256 token, an EC P-256 key only ES256, and
//! symmetric (`oct`) keys are ignored, so a token signed with HMAC over the public key can
//! never verify.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::token::{UnverifiedToken, parse_algorithm};

/// Smallest RSA modulus accepted, in bits.
const MIN_RSA_BITS: usize = 2048;
/// Most keys taken from one key set.
const MAX_KEYS: usize = 100;

/// One public key, with the algorithms it may verify.
#[derive(Clone)]
pub struct VerificationKey {
    /// The key id, if the JWK has one.
    pub kid: Option<String>,
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish()
    }
}

impl VerificationKey {
    /// Whether this key may verify tokens signed with `alg`.
    pub fn allows(&self, alg: Algorithm) -> bool {
        self.algorithms.contains(&alg)
    }
}

/// An issuer's usable keys.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<VerificationKey>,
    /// JWKs that were skipped, with why (for logs).
    pub skipped: Vec<String>,
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// No key has the token's `kid`.
    #[error("no key with the token's kid")]
    UnknownKid,
    /// Keys exist but none may verify this algorithm.
    #[error("the token's algorithm does not match the issuer's key")]
    AlgorithmMismatch,
    /// The signature is wrong.
    #[error("invalid signature")]
    Invalid,
}

impl KeySet {
    /// Parses a JWKS document (`{"keys": [...]}`). Unusable keys are skipped, not fatal,
    /// because issuers publish keys for other purposes too; an empty result is an error.
    pub fn parse(json: &[u8]) -> Result<KeySet, String> {
        let doc: Value = serde_json::from_slice(json).map_err(|e| format!("not JSON: {e}"))?;
        let keys = doc.get("keys").and_then(Value::as_array).ok_or("no `keys` array")?;
        let mut set = KeySet::default();
        let mut kids = HashSet::new();
        for (index, jwk) in keys.iter().take(MAX_KEYS).enumerate() {
            match parse_jwk(jwk) {
                Ok(Some(key)) => {
                    if let Some(kid) = &key.kid
                        && !kids.insert(kid.clone())
                    {
                        set.skipped.push(format!("key {index}: duplicate kid"));
                        continue;
                    }
                    set.keys.push(key);
                }
                Ok(None) => set.skipped.push(format!("key {index}: not a signature-verification key")),
                Err(reason) => set.skipped.push(format!("key {index}: {reason}")),
            }
        }
        if set.keys.is_empty() {
            return Err(format!("no usable signing key ({})", set.skipped.join("; ")));
        }
        Ok(set)
    }

    /// The key ids present.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().filter_map(|k| k.kid.as_deref())
    }

    /// Whether a key with this id exists.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks a token's signature. With a `kid`, only that key is tried (the kid is a
    /// lookup key and nothing else); without one, every key allowing the algorithm.
    pub fn verify(&self, token: &UnverifiedToken<'_>) -> Result<(), SignatureError> {
        let alg = token.header.alg;
        let candidates: Vec<&VerificationKey> = match &token.header.kid {
            Some(kid) => {
                let keys: Vec<_> = self.keys.iter().filter(|k| k.kid.as_deref() == Some(kid)).collect();
                if keys.is_empty() {
                    return Err(SignatureError::UnknownKid);
                }
                keys
            }
            None => self.keys.iter().collect(),
        };
        let allowed: Vec<&VerificationKey> = candidates.into_iter().filter(|k| k.allows(alg)).collect();
        if allowed.is_empty() {
            return Err(SignatureError::AlgorithmMismatch);
        }
        for key in allowed {
            if let Ok(true) =
                jsonwebtoken::crypto::verify(token.signature, token.signing_input.as_bytes(), &key.key, alg)
            {
                return Ok(());
            }
        }
        Err(SignatureError::Invalid)
    }
}

fn parse_jwk(jwk: &Value) -> Result<Option<VerificationKey>, String> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    if let Some(use_) = field("use")
        && use_ != "sig"
    {
        return Ok(None);
    }
    if let Some(ops) = jwk.get("key_ops").and_then(Value::as_array)
        && !ops.iter().any(|op| op.as_str() == Some("verify"))
    {
        return Ok(None);
    }
    let kid = field("kid").map(str::to_owned);
    let declared = match field("alg") {
        None => None,
        Some(name) => match parse_algorithm(name) {
            Some(alg) => Some(alg),
            // An HMAC or unknown alg on the key: never usable.
            None => return Ok(None),
        },
    };
    let (family, key) = match field("kty") {
        Some("RSA") => {
            let n = field("n").ok_or("RSA key without `n`")?;
            let e = field("e").ok_or("RSA key without `e`")?;
            let modulus = URL_SAFE_NO_PAD.decode(n).map_err(|_| "RSA `n` is not base64url")?;
            let significant = modulus.iter().skip_while(|b| **b == 0).count();
            if significant * 8 < MIN_RSA_BITS {
                return Err(format!("RSA key shorter than {MIN_RSA_BITS} bits"));
            }
            let key = DecodingKey::from_rsa_components(n, e).map_err(|e| format!("bad RSA key: {e}"))?;
            let family = vec![
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ];
            (family, key)
        }
        Some("EC") => {
            let alg = match field("crv") {
                Some("P-256") => Algorithm::ES256,
                Some("P-384") => Algorithm::ES384,
                other => return Err(format!("unsupported EC curve {other:?}")),
            };
            let x = field("x").ok_or("EC key without `x`")?;
            let y = field("y").ok_or("EC key without `y`")?;
            let key = DecodingKey::from_ec_components(x, y).map_err(|e| format!("bad EC key: {e}"))?;
            (vec![alg], key)
        }
        Some("OKP") => {
            if field("crv") != Some("Ed25519") {
                return Err("unsupported OKP curve (Ed25519 only)".to_owned());
            }
            let x = field("x").ok_or("OKP key without `x`")?;
            let key = DecodingKey::from_ed_components(x).map_err(|e| format!("bad Ed25519 key: {e}"))?;
            (vec![Algorithm::EdDSA], key)
        }
        // Symmetric keys must never verify anything: a public key used as an HMAC secret is
        // the classic algorithm-confusion attack.
        Some("oct") => return Ok(None),
        other => return Err(format!("unsupported key type {other:?}")),
    };
    let algorithms = match declared {
        Some(alg) if family.contains(&alg) => vec![alg],
        Some(_) => return Err("the key's `alg` does not match its type".to_owned()),
        None => family,
    };
    Ok(Some(VerificationKey { kid, algorithms, key }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_symmetric_and_encryption_keys() {
        let jwks = br#"{"keys":[
            {"kty":"oct","k":"c2VjcmV0","kid":"h"},
            {"kty":"EC","crv":"P-256","use":"enc","kid":"e","x":"AA","y":"AA"},
            {"kty":"RSA","n":"AQAB","e":"AQAB","kid":"small"}
        ]}"#;
        let err = KeySet::parse(jwks).unwrap_err();
        assert!(err.contains("no usable signing key"), "{err}");
        assert!(err.contains("shorter than 2048"), "{err}");
    }

    #[test]
    fn refuses_garbage_documents() {
        for doc in [&b"[]"[..], b"{}", b"{\"keys\":5}", b"{\"keys\":[]}", b"not json"] {
            assert!(KeySet::parse(doc).is_err(), "{:?}", String::from_utf8_lossy(doc));
        }
    }
}
