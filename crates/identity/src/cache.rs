//! Verified tokens, remembered so a repeated token skips signature verification.
//!
//! Keyed by the SHA-256 of the token (the token itself is never stored as a key) and the
//! rule that verified it: a token verified by one rule (a namespace's own keys) is never
//! taken as verified by another rule that names the same issuer. Bounded, each entry
//! expiring with its token, and dropped when the key that verified it disappears from its
//! issuer's key set. Audience, location and scope checks are not cached: they depend on the
//! request and run every time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::VerifiedToken;

const SHARDS: usize = 16;

/// The token's digest and the index of the rule that verified it.
type Key = ([u8; 32], usize);

/// A bounded cache of verified tokens.
pub struct TokenCache {
    shards: Vec<Mutex<HashMap<Key, Arc<VerifiedToken>>>>,
    per_shard: usize,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").field("capacity", &(self.per_shard * SHARDS)).finish()
    }
}

/// The cache key of a token.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl TokenCache {
    /// A cache holding about `capacity` tokens (0 disables caching).
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS),
        }
    }

    fn shard(&self, digest: &[u8; 32]) -> &Mutex<HashMap<Key, Arc<VerifiedToken>>> {
        &self.shards[usize::from(digest[0]) % SHARDS]
    }

    /// The token verified by rule `rule`, if cached and not past `valid_until` at `now`
    /// (seconds).
    pub fn get(&self, digest: &[u8; 32], rule: usize, now: f64) -> Option<Arc<VerifiedToken>> {
        let key = (*digest, rule);
        let mut shard = self.shard(digest).lock().ok()?;
        match shard.get(&key) {
            Some(token) if token.valid_until > now => Some(token.clone()),
            Some(_) => {
                shard.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Remembers a verified token. When the shard is full, expired entries go first, then
    /// an arbitrary half.
    pub fn insert(&self, digest: [u8; 32], rule: usize, token: Arc<VerifiedToken>, now: f64) {
        if self.per_shard == 0 {
            return;
        }
        let Ok(mut shard) = self.shard(&digest).lock() else { return };
        if shard.len() >= self.per_shard {
            shard.retain(|_, t| t.valid_until > now);
            if shard.len() >= self.per_shard {
                let drop: Vec<Key> = shard.keys().take(shard.len() / 2 + 1).copied().collect();
                for key in drop {
                    shard.remove(&key);
                }
            }
        }
        shard.insert((digest, rule), token);
    }

    /// Forgets every token of `issuer` verified by one of `kids`.
    pub fn purge(&self, issuer: &str, kids: &[String]) {
        if kids.is_empty() {
            return;
        }
        for shard in &self.shards {
            if let Ok(mut shard) = shard.lock() {
                shard
                    .retain(|_, t| !(t.issuer == issuer && t.kid.as_ref().is_some_and(|k| kids.contains(k))));
            }
        }
    }

    /// Forgets every token of `issuer`.
    pub fn purge_issuer(&self, issuer: &str) {
        for shard in &self.shards {
            if let Ok(mut shard) = shard.lock() {
                shard.retain(|_, t| t.issuer != issuer);
            }
        }
    }

    /// Number of cached tokens.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map_or(0, |s| s.len())).sum()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
