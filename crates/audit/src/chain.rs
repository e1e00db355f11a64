//! The hash chain: how a record is sealed into its line, and how a line is checked.
//!
//! A record's *body* is its compact JSON (serde_json, fields in struct order, no
//! whitespace, absent values omitted) without the `hash` field. Its hash is
//! `SHA-256(prev || body)` where `prev` is the 32 raw bytes of the previous record's hash
//! (the genesis value for seq 0). The line written is the body with `,"hash":"<hex>"`
//! inserted before the closing brace, which is exactly the record's JSON with `hash` as
//! its last field. Record 0 links to the log's genesis checkpoint
//! ([`genesis_link`](crate::checkpoint::genesis_link)); logs written before genesis
//! checkpoints link it to [`legacy_genesis`] instead. Verification never re-serializes: it strips that fixed-length suffix
//! from the stored line, restores the brace and hashes the bytes as stored.

use sha2::{Digest, Sha256};

use crate::AuditError;
use crate::record::AuditRecord;

/// A SHA-256 chain value.
pub(crate) type Hash = [u8; 32];

/// What precedes the hash's hex digits at the end of a line.
const HASH_PREFIX: &[u8] = b",\"hash\":\"";
/// What follows them.
const HASH_SUFFIX: &[u8] = b"\"}";
/// Length of the sealed suffix: prefix, 64 hex digits, suffix.
const SEALED_SUFFIX_LEN: usize = HASH_PREFIX.len() + 64 + HASH_SUFFIX.len();

/// The value the first record of a log written before genesis checkpoints links to:
/// `SHA-256("palisade.audit/v1 genesis\n" || replica_id)`. Anyone can compute it, which is
/// why such a chain's start proves nothing.
pub(crate) fn legacy_genesis(replica_id: &str) -> Hash {
    let mut h = Sha256::new();
    h.update(b"palisade.audit/v1 genesis\n");
    h.update(replica_id.as_bytes());
    h.finalize().into()
}

pub(crate) use palisade_core::hex::to_hex;

/// `SHA-256(prev || body_without_brace || "}")`.
fn chain_hash(prev: &Hash, body_without_brace: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(body_without_brace);
    h.update(b"}");
    h.finalize().into()
}

/// Assigns `seq` and `prev_hash`, computes `hash`, and returns the line to write
/// (newline included). The record is serialized once; those bytes are hashed and written.
pub(crate) fn seal(record: &mut AuditRecord, seq: u64, prev: &Hash) -> Result<(Vec<u8>, Hash), AuditError> {
    record.seq = seq;
    record.prev_hash = to_hex(prev);
    record.hash.clear();
    // A metadata record is about 1.3 KB: one allocation instead of growing from empty.
    let mut line = Vec::with_capacity(2048);
    serde_json::to_writer(&mut line, &*record).map_err(|e| AuditError::Serialize(e.to_string()))?;
    if line.pop() != Some(b'}') {
        return Err(AuditError::Serialize("record did not serialize to a JSON object".into()));
    }
    let hash = chain_hash(prev, &line);
    record.hash = to_hex(&hash);
    line.reserve(SEALED_SUFFIX_LEN + 1);
    line.extend_from_slice(HASH_PREFIX);
    line.extend_from_slice(record.hash.as_bytes());
    line.extend_from_slice(HASH_SUFFIX);
    line.push(b'\n');
    Ok((line, hash))
}

/// A stored line split into what the hash covers and the hash it claims.
pub(crate) struct Sealed<'a> {
    body_without_brace: &'a [u8],
    claimed: Hash,
}

impl<'a> Sealed<'a> {
    /// Splits a line (without its newline). `None` when the line does not end with a
    /// well-formed `,"hash":"<64 lowercase hex>"}`.
    pub(crate) fn split(line: &'a [u8]) -> Option<Self> {
        let cut = line.len().checked_sub(SEALED_SUFFIX_LEN)?;
        let (body_without_brace, tail) = line.split_at(cut);
        let digits = tail.strip_prefix(HASH_PREFIX)?.strip_suffix(HASH_SUFFIX)?;
        if !digits.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)) {
            return None;
        }
        let mut claimed = [0u8; 32];
        hex::decode_to_slice(digits, &mut claimed).ok()?;
        Some(Self { body_without_brace, claimed })
    }

    /// The hash the line claims.
    pub(crate) fn claimed(&self) -> Hash {
        self.claimed
    }

    /// The hash the line's bytes actually have when chained from `prev`.
    pub(crate) fn compute(&self, prev: &Hash) -> Hash {
        chain_hash(prev, self.body_without_brace)
    }
}

/// The fields of a record the chain depends on. Verification parses only these (the whole
/// line must still be valid JSON), so a record with optional fields added later in `v1`
/// still verifies.
#[derive(serde::Deserialize)]
pub(crate) struct ChainFields {
    pub(crate) schema: String,
    pub(crate) seq: u64,
    pub(crate) replica_id: String,
    pub(crate) prev_hash: String,
    pub(crate) hash: String,
    #[serde(default)]
    pub(crate) received: Option<crate::Timestamp>,
    #[serde(default)]
    pub(crate) completed: Option<crate::Timestamp>,
    #[serde(default)]
    pub(crate) request_id: Option<String>,
}

impl ChainFields {
    /// The record's time for judging a checkpoint window: `completed`, else `received`.
    pub(crate) fn time(&self) -> Option<crate::Timestamp> {
        self.completed.or(self.received)
    }
}

/// Parses a 64-digit lowercase hex hash.
pub(crate) fn parse_hash(text: &str) -> Option<Hash> {
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_line_is_the_records_json_and_verifies() {
        let mut record = AuditRecord { replica_id: "r".into(), status: Some(503), ..AuditRecord::default() };
        let prev = legacy_genesis("r");
        let (line, hash) = seal(&mut record, 7, &prev).unwrap();
        let mut json = serde_json::to_vec(&record).unwrap();
        json.push(b'\n');
        assert_eq!(line, json, "the written line is the record's JSON with hash last");
        let sealed = Sealed::split(&line[..line.len() - 1]).unwrap();
        assert_eq!(sealed.claimed(), hash);
        assert_eq!(sealed.compute(&prev), hash);
        assert_ne!(sealed.compute(&legacy_genesis("other")), hash);
        assert_eq!(parse_hash(&record.hash), Some(hash));
        let parsed: AuditRecord = serde_json::from_slice(&line).unwrap();
        assert_eq!(parsed, record);
    }

    #[test]
    fn split_rejects_malformed_suffixes() {
        assert!(Sealed::split(b"").is_none());
        assert!(Sealed::split(b"{\"a\":1}").is_none());
        let upper = format!("{{\"a\":1,\"hash\":\"{}\"}}", "A".repeat(64));
        assert!(Sealed::split(upper.as_bytes()).is_none());
        let good = format!("{{\"a\":1,\"hash\":\"{}\"}}", "a".repeat(64));
        assert!(Sealed::split(good.as_bytes()).is_some());
        assert!(parse_hash(&"g".repeat(64)).is_none());
    }
}
