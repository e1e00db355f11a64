//! Signing keys: generating them, storing them, signing tokens and publishing their public
//! halves as JWKs.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, KeyPair as _};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::IdentityError;
use crate::secret::Secret;

/// A private key that signs tokens, with its id and algorithm.
pub struct SigningKey {
    kid: String,
    alg: Algorithm,
    pkcs8: Secret,
    inner: Inner,
}

enum Inner {
    Ecdsa(sig::EcdsaKeyPair),
    Rsa(aws_lc_rs::rsa::KeyPair),
    Ed25519(sig::Ed25519KeyPair),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

/// A signing key as stored on disk: the private key in PKCS#8, base64url.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredKey {
    /// Key id.
    pub kid: String,
    /// Algorithm name (`ES256`, `RS256`, `EdDSA`).
    pub alg: String,
    /// PKCS#8 DER, base64url.
    pub pkcs8: String,
    /// Creation time, seconds since the epoch.
    pub created: u64,
    /// When the key stopped signing, if it did (it stays published for an overlap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired: Option<u64>,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

fn crypto_error(what: &str) -> IdentityError {
    IdentityError::Crypto(what.to_owned())
}

impl SigningKey {
    /// Generates a key for `alg` (ES256, ES384, RS256 with 2048 bits, or EdDSA) with a
    /// random key id.
    pub fn generate(alg: Algorithm) -> Result<SigningKey, IdentityError> {
        let rng = SystemRandom::new();
        let pkcs8 = match alg {
            Algorithm::ES256 => {
                sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| crypto_error("cannot generate an ES256 key"))?
                    .as_ref()
                    .to_vec()
            }
            Algorithm::ES384 => {
                sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
                    .map_err(|_| crypto_error("cannot generate an ES384 key"))?
                    .as_ref()
                    .to_vec()
            }
            Algorithm::RS256 => {
                let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .map_err(|_| crypto_error("cannot generate an RSA key"))?;
                AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key)
                    .map_err(|_| crypto_error("cannot encode an RSA key"))?
                    .as_ref()
                    .to_vec()
            }
            Algorithm::EdDSA => sig::Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| crypto_error("cannot generate an Ed25519 key"))?
                .as_ref()
                .to_vec(),
            other => return Err(IdentityError::Config(format!("cannot issue tokens with {other:?}"))),
        };
        let mut kid = [0u8; 12];
        aws_lc_rs::rand::fill(&mut kid).map_err(|_| crypto_error("no randomness"))?;
        // The first base64url digit comes from the top six bits: with the top bit clear it is
        // never `-` or `_`, so a key id never reads as an option on a command line
        // (`palisade keys revoke KID`).
        kid[0] &= 0x7f;
        SigningKey::from_pkcs8(URL_SAFE_NO_PAD.encode(kid), alg, &pkcs8)
    }

    fn from_pkcs8(kid: String, alg: Algorithm, pkcs8: &[u8]) -> Result<SigningKey, IdentityError> {
        let inner = match alg {
            Algorithm::ES256 => Inner::Ecdsa(
                sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                    .map_err(|_| crypto_error("stored ES256 key is invalid"))?,
            ),
            Algorithm::ES384 => Inner::Ecdsa(
                sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8)
                    .map_err(|_| crypto_error("stored ES384 key is invalid"))?,
            ),
            Algorithm::RS256 => Inner::Rsa(
                aws_lc_rs::rsa::KeyPair::from_pkcs8(pkcs8)
                    .map_err(|_| crypto_error("stored RSA key is invalid"))?,
            ),
            Algorithm::EdDSA => Inner::Ed25519(
                sig::Ed25519KeyPair::from_pkcs8(pkcs8)
                    .map_err(|_| crypto_error("stored Ed25519 key is invalid"))?,
            ),
            other => return Err(IdentityError::Config(format!("cannot sign with {other:?}"))),
        };
        Ok(SigningKey { kid, alg, pkcs8: Secret::new(URL_SAFE_NO_PAD.encode(pkcs8)), inner })
    }

    /// Loads a stored key.
    pub fn from_stored(stored: &StoredKey) -> Result<SigningKey, IdentityError> {
        let alg = crate::token::parse_algorithm(&stored.alg).ok_or_else(|| {
            IdentityError::Config(format!("stored key {} has unknown alg {}", stored.kid, stored.alg))
        })?;
        let pkcs8 =
            URL_SAFE_NO_PAD.decode(&stored.pkcs8).map_err(|_| crypto_error("stored key is not base64url"))?;
        SigningKey::from_pkcs8(stored.kid.clone(), alg, &pkcs8)
    }

    /// The form to store on disk.
    pub fn to_stored(&self, created: u64) -> StoredKey {
        StoredKey {
            kid: self.kid.clone(),
            alg: algorithm_name(self.alg).to_owned(),
            pkcs8: self.pkcs8.expose().to_owned(),
            created,
            retired: None,
        }
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Signs a claim set into a compact JWS with header `{alg, kid, typ}`.
    pub fn sign(&self, claims: &Map<String, Value>, typ: &str) -> Result<String, IdentityError> {
        let header = json!({"alg": algorithm_name(self.alg), "kid": self.kid, "typ": typ});
        let header =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).map_err(|e| crypto_error(&e.to_string()))?);
        let payload =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).map_err(|e| crypto_error(&e.to_string()))?);
        let signing_input = format!("{header}.{payload}");
        let signature = self.sign_bytes(signing_input.as_bytes())?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    /// Signs raw bytes (tests use this to forge tokens with unusual headers).
    pub fn sign_bytes(&self, message: &[u8]) -> Result<Vec<u8>, IdentityError> {
        let rng = SystemRandom::new();
        match &self.inner {
            Inner::Ecdsa(key) => key
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| crypto_error("signing failed")),
            Inner::Ed25519(key) => Ok(key.sign(message).as_ref().to_vec()),
            Inner::Rsa(key) => {
                let mut out = vec![0u8; key.public_modulus_len()];
                key.sign(&sig::RSA_PKCS1_SHA256, &rng, message, &mut out)
                    .map_err(|_| crypto_error("signing failed"))?;
                Ok(out)
            }
        }
    }

    /// The public key as a JWK with `kid`, `alg` and `use: sig`.
    pub fn public_jwk(&self) -> Value {
        let alg = algorithm_name(self.alg);
        match &self.inner {
            Inner::Ecdsa(key) => {
                let point = key.public_key().as_ref();
                let half = (point.len() - 1) / 2;
                let crv = if self.alg == Algorithm::ES384 { "P-384" } else { "P-256" };
                json!({
                    "kty": "EC", "crv": crv, "use": "sig", "alg": alg, "kid": self.kid,
                    "x": URL_SAFE_NO_PAD.encode(&point[1..1 + half]),
                    "y": URL_SAFE_NO_PAD.encode(&point[1 + half..]),
                })
            }
            Inner::Ed25519(key) => json!({
                "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": alg, "kid": self.kid,
                "x": URL_SAFE_NO_PAD.encode(key.public_key().as_ref()),
            }),
            Inner::Rsa(key) => {
                let (n, e) = rsa_components(key.public_key().as_ref()).unwrap_or_default();
                json!({
                    "kty": "RSA", "use": "sig", "alg": alg, "kid": self.kid,
                    "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e),
                })
            }
        }
    }
}

/// The JOSE name of an algorithm.
pub fn algorithm_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        _ => "unknown",
    }
}

/// Splits a PKCS#1 `RSAPublicKey` (SEQUENCE { INTEGER n, INTEGER e }) into its integers,
/// without leading zero bytes.
fn rsa_components(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    fn read_len(input: &[u8]) -> Option<(usize, &[u8])> {
        let (&first, rest) = input.split_first()?;
        if first < 0x80 {
            return Some((usize::from(first), rest));
        }
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count].iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        Some((len, &rest[count..]))
    }
    fn read(tag: u8, input: &[u8]) -> Option<(&[u8], &[u8])> {
        let (&t, rest) = input.split_first()?;
        if t != tag {
            return None;
        }
        let (len, rest) = read_len(rest)?;
        (rest.len() >= len).then(|| rest.split_at(len))
    }
    let (seq, _) = read(0x30, der)?;
    let (n, rest) = read(0x02, seq)?;
    let (e, _) = read(0x02, rest)?;
    let strip = |v: &[u8]| v.iter().skip_while(|b| **b == 0).copied().collect::<Vec<u8>>();
    Some((strip(n), strip(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeySet;
    use crate::token;

    #[test]
    fn key_ids_never_start_like_an_option() {
        // Before, one key in 32 got an id starting with `-` or `_`.
        for _ in 0..256 {
            let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
            let first = key.kid().chars().next().unwrap();
            assert!(first.is_ascii_alphanumeric(), "{}", key.kid());
        }
    }

    fn claims() -> Map<String, Value> {
        json!({"iss": "https://palisade.test", "sub": "s", "exp": 4_000_000_000u64})
            .as_object()
            .cloned()
            .unwrap()
    }

    #[test]
    fn every_algorithm_signs_and_verifies_through_its_jwk() {
        for alg in [Algorithm::ES256, Algorithm::ES384, Algorithm::RS256, Algorithm::EdDSA] {
            let key = SigningKey::generate(alg).unwrap();
            let jwt = key.sign(&claims(), "JWT").unwrap();
            let jwks = json!({"keys": [key.public_jwk()]});
            let set = KeySet::parse(jwks.to_string().as_bytes()).unwrap();
            let parsed = token::parse(&jwt).unwrap();
            assert_eq!(parsed.header.kid.as_deref(), Some(key.kid()));
            set.verify(&parsed).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        }
    }

    #[test]
    fn stored_keys_round_trip_and_hide() {
        let key = SigningKey::generate(Algorithm::ES256).unwrap();
        let stored = key.to_stored(1);
        assert!(!format!("{stored:?}").contains(&stored.pkcs8));
        assert!(!format!("{key:?}").contains(&stored.pkcs8));
        let again = SigningKey::from_stored(&stored).unwrap();
        assert_eq!(again.public_jwk(), key.public_jwk());
    }
}
