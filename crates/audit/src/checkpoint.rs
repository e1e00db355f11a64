//! Signed checkpoints: the genesis of a log, then its chain head at points in time, each
//! signed with the log's key.
//!
//! `checkpoints.jsonl` holds one checkpoint per line. Its first line is the *genesis*
//! checkpoint, written when the log is created: it states the log's id, the replica, the
//! key and the writer's checkpoint window, and the first record links to a hash of it
//! ([`genesis_link`]), so a chain can only start from a genesis signed with the key. Every
//! later line signs a chain head (`seq`, `hash`, `segment`).
//!
//! The signature covers `"palisade.audit/v2 checkpoint\n" || body`, where the body is the
//! checkpoint's compact JSON without the `signature` field (the line minus its
//! fixed-length `,"signature":"<88 base64>"` suffix, with the closing brace restored).
//! Logs written before genesis checkpoints hold `palisade.audit.checkpoint/v1` lines
//! (no genesis, no window, signed under the `v1` context); they are read, never written.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Timestamp;
use crate::chain::{Hash, parse_hash};
use crate::key::{PublicKey, SigningKey, base64};

/// File name of the checkpoint file, inside the log directory.
pub const CHECKPOINT_FILE: &str = "checkpoints.jsonl";
/// Schema tag of checkpoints.
pub const CHECKPOINT_SCHEMA: &str = "palisade.audit.checkpoint/v2";
/// Schema tag of the checkpoints of logs written before genesis checkpoints.
pub const LEGACY_CHECKPOINT_SCHEMA: &str = "palisade.audit.checkpoint/v1";
/// How much later than the checkpoint interval the records after the last checkpoint may
/// be spread (records wait in the writer's queue, clocks step): see
/// [`CheckpointWindow::span_allowed`].
pub const WINDOW_TOLERANCE: Duration = Duration::from_secs(60);

/// Domain separation for checkpoint signatures.
const SIGNING_CONTEXT: &[u8] = b"palisade.audit/v2 checkpoint\n";
/// Domain separation for the signatures of `v1` checkpoints.
const LEGACY_SIGNING_CONTEXT: &[u8] = b"palisade.audit/v1 checkpoint\n";
/// Domain separation for the link from the genesis checkpoint to the first record.
const GENESIS_CONTEXT: &[u8] = b"palisade.audit/v2 genesis\n";
const SIGNATURE_PREFIX: &[u8] = b",\"signature\":\"";
const SIGNATURE_SUFFIX: &[u8] = b"\"}";
/// Base64 of a 64-byte Ed25519 signature.
const SIGNATURE_B64_LEN: usize = 88;

/// What a checkpoint marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointKind {
    /// The start of a log: no records yet; the first record links to it.
    Genesis,
    /// The chain head, signed while the writer runs (every window).
    Head,
    /// The chain head, signed when the writer opened the log after an unclean stop: it
    /// covers records that were durable but not yet signed when the previous writer died.
    Recovery,
    /// The chain head, signed when the writer closed the log.
    Close,
    /// The last record of a sealed segment, signed when the segment was sealed. Stored at
    /// the end of the sealed file (see `crate::sealed`), not in `checkpoints.jsonl`.
    Seal,
}

/// How often a writer signs the chain head: once `records` records are not covered by a
/// checkpoint, and at the latest `interval` after the first of them was written. A crash
/// can leave at most one window of records unsigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CheckpointWindow {
    /// Most records after the last checkpoint.
    pub records: u64,
    /// Longest time between the first record after a checkpoint and the next checkpoint.
    pub interval: Duration,
}

impl CheckpointWindow {
    /// How far apart in time (`completed`, else `received`) the records after the last
    /// checkpoint may lie: the interval plus [`WINDOW_TOLERANCE`].
    pub fn span_allowed(&self) -> Duration {
        self.interval.saturating_add(WINDOW_TOLERANCE)
    }

    /// The smaller of two windows, field by field.
    pub(crate) fn min(self, other: Self) -> Self {
        Self { records: self.records.min(other.records), interval: self.interval.min(other.interval) }
    }
}

/// One line of `checkpoints.jsonl`: a signed statement about the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Schema tag, [`CHECKPOINT_SCHEMA`].
    pub schema: String,
    /// What the checkpoint marks.
    pub kind: CheckpointKind,
    /// The log's id (random, 32 hex digits), the same in every checkpoint of one log.
    /// Empty for `v1` checkpoints.
    pub log_id: String,
    /// The seq of the chain head; absent in the genesis checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// That record's hash (lowercase hex); absent in the genesis checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// The segment file that holds that record; absent in the genesis checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    /// Recovery checkpoints: the first seq of the records recovered after the unclean
    /// stop (the records up to `seq` from here had not been signed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered_from: Option<u64>,
    /// When the checkpoint was written.
    pub time: Timestamp,
    /// The replica whose chain this is.
    pub replica_id: String,
    /// Id of the signing key ([`PublicKey::key_id`]).
    pub key_id: String,
    /// The writer's window from this checkpoint on: a checkpoint once this many records
    /// are not covered... (0 for `v1` checkpoints: unknown).
    pub every_records: u64,
    /// ...or at the latest this many milliseconds after the first of them was written.
    pub every_ms: u64,
    /// Ed25519 signature, standard base64.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub signature: String,
}

impl Checkpoint {
    /// The window this checkpoint states; `None` for `v1` checkpoints.
    pub fn window(&self) -> Option<CheckpointWindow> {
        (self.every_records > 0).then(|| CheckpointWindow {
            records: self.every_records,
            interval: Duration::from_millis(self.every_ms),
        })
    }

    /// Signs the checkpoint and returns its line (newline included).
    pub(crate) fn seal(&mut self, key: &SigningKey) -> Result<Vec<u8>, serde_json::Error> {
        self.signature.clear();
        let mut line = serde_json::to_vec(&*self)?;
        line.pop();
        let signature = key.sign(&signed_message(SIGNING_CONTEXT, &line));
        self.signature = base64::encode(&signature);
        line.extend_from_slice(SIGNATURE_PREFIX);
        line.extend_from_slice(self.signature.as_bytes());
        line.extend_from_slice(SIGNATURE_SUFFIX);
        line.push(b'\n');
        Ok(line)
    }
}

/// The value the first record of a log links to: `SHA-256("palisade.audit/v2 genesis\n" ||
/// the genesis checkpoint's line)`, the line as stored, without its newline.
pub(crate) fn genesis_link(genesis_line: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(GENESIS_CONTEXT);
    h.update(genesis_line);
    h.finalize().into()
}

/// A fresh log id: 128 random bits in hex.
pub(crate) fn new_log_id() -> Result<String, aws_lc_rs::error::Unspecified> {
    use aws_lc_rs::rand::SecureRandom;
    let mut id = [0u8; 16];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut id)?;
    Ok(hex::encode(id))
}

fn signed_message(context: &[u8], body_without_brace: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(context.len() + body_without_brace.len() + 1);
    message.extend_from_slice(context);
    message.extend_from_slice(body_without_brace);
    message.push(b'}');
    message
}

/// Why a checkpoint line is not acceptable.
#[derive(Debug)]
pub(crate) enum CheckpointProblem {
    /// Not JSON, or not a well-formed checkpoint.
    Invalid(String),
    /// Signed with a different key.
    OtherKey(String),
    /// The signature does not verify.
    BadSignature,
}

impl std::fmt::Display for CheckpointProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckpointProblem::Invalid(why) => write!(f, "not a valid checkpoint: {why}"),
            CheckpointProblem::OtherKey(id) => write!(f, "signed with another key ({id})"),
            CheckpointProblem::BadSignature => {
                f.write_str("the signature does not verify: forged or altered")
            }
        }
    }
}

/// The schema tag of a checkpoint line, if it has one.
pub(crate) fn schema_of(line: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Tag {
        schema: String,
    }
    serde_json::from_slice::<Tag>(line).ok().map(|t| t.schema)
}

/// A `v1` checkpoint, as logs before genesis checkpoints wrote them.
#[derive(Deserialize)]
struct LegacyCheckpoint {
    seq: u64,
    hash: String,
    segment: String,
    time: Timestamp,
    replica_id: String,
    key_id: String,
    signature: String,
}

/// Parses a checkpoint line (without newline), checks that it is well formed and that its
/// signature verifies with `key`. `v1` lines come back as `head` checkpoints without a
/// window or log id.
pub(crate) fn verify_line(line: &[u8], key: &PublicKey) -> Result<Checkpoint, CheckpointProblem> {
    let schema = schema_of(line)
        .ok_or_else(|| CheckpointProblem::Invalid("not a checkpoint (invalid JSON or no schema)".into()))?;
    let (checkpoint, context) = match schema.as_str() {
        CHECKPOINT_SCHEMA => {
            let checkpoint: Checkpoint = serde_json::from_slice(line)
                .map_err(|e| CheckpointProblem::Invalid(format!("invalid checkpoint: {e}")))?;
            well_formed(&checkpoint).map_err(|what| CheckpointProblem::Invalid(what.to_owned()))?;
            (checkpoint, SIGNING_CONTEXT)
        }
        LEGACY_CHECKPOINT_SCHEMA => {
            let legacy: LegacyCheckpoint = serde_json::from_slice(line)
                .map_err(|e| CheckpointProblem::Invalid(format!("invalid checkpoint: {e}")))?;
            if parse_hash(&legacy.hash).is_none() {
                return Err(CheckpointProblem::Invalid("malformed hash".into()));
            }
            let checkpoint = Checkpoint {
                schema,
                kind: CheckpointKind::Head,
                log_id: String::new(),
                seq: Some(legacy.seq),
                hash: Some(legacy.hash),
                segment: Some(legacy.segment),
                recovered_from: None,
                time: legacy.time,
                replica_id: legacy.replica_id,
                key_id: legacy.key_id,
                every_records: 0,
                every_ms: 0,
                signature: legacy.signature,
            };
            (checkpoint, LEGACY_SIGNING_CONTEXT)
        }
        other => return Err(CheckpointProblem::Invalid(format!("unknown schema {other:?}"))),
    };
    if checkpoint.key_id != key.key_id() {
        return Err(CheckpointProblem::OtherKey(checkpoint.key_id));
    }
    let suffix_len = SIGNATURE_PREFIX.len() + SIGNATURE_B64_LEN + SIGNATURE_SUFFIX.len();
    let Some(cut) = line.len().checked_sub(suffix_len) else {
        return Err(CheckpointProblem::BadSignature);
    };
    let (body, tail) = line.split_at(cut);
    let Some(encoded) = tail.strip_prefix(SIGNATURE_PREFIX).and_then(|t| t.strip_suffix(SIGNATURE_SUFFIX))
    else {
        return Err(CheckpointProblem::BadSignature);
    };
    // The signature that was verified must be the one that was parsed.
    if encoded != checkpoint.signature.as_bytes() {
        return Err(CheckpointProblem::BadSignature);
    }
    let Some(signature) = std::str::from_utf8(encoded).ok().and_then(base64::decode) else {
        return Err(CheckpointProblem::BadSignature);
    };
    if key.verifies(&signed_message(context, body), &signature) {
        Ok(checkpoint)
    } else {
        Err(CheckpointProblem::BadSignature)
    }
}

/// The fields a `v2` checkpoint of its kind must (and must not) have.
fn well_formed(c: &Checkpoint) -> Result<(), &'static str> {
    if c.every_records == 0 {
        return Err("every_records must be at least 1");
    }
    if c.log_id.len() != 32 || !c.log_id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err("log_id must be 32 lowercase hex digits");
    }
    match c.kind {
        CheckpointKind::Genesis => {
            if c.seq.is_some() || c.hash.is_some() || c.segment.is_some() || c.recovered_from.is_some() {
                return Err("a genesis checkpoint names no record");
            }
        }
        kind => {
            let (Some(seq), Some(hash), Some(_)) = (c.seq, &c.hash, &c.segment) else {
                return Err("a head checkpoint needs seq, hash and segment");
            };
            if parse_hash(hash).is_none() {
                return Err("malformed hash");
            }
            match (kind, c.recovered_from) {
                (CheckpointKind::Recovery, Some(from)) if from <= seq => {}
                (CheckpointKind::Recovery, _) => {
                    return Err("a recovery checkpoint needs recovered_from <= seq");
                }
                (_, Some(_)) => return Err("only recovery checkpoints have recovered_from"),
                (_, None) => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{KEYS_DIR, SIGNING_KEY_FILE};

    fn key() -> (tempfile::TempDir, SigningKey) {
        let home = tempfile::tempdir().unwrap();
        let key = SigningKey::load_or_create(&home.path().join(KEYS_DIR).join(SIGNING_KEY_FILE)).unwrap();
        (home, key)
    }

    fn head(key: &SigningKey) -> Checkpoint {
        Checkpoint {
            schema: CHECKPOINT_SCHEMA.into(),
            kind: CheckpointKind::Head,
            log_id: "0123456789abcdef0123456789abcdef".into(),
            seq: Some(41),
            hash: Some("ab".repeat(32)),
            segment: Some("segment-00000000000000000000.jsonl".into()),
            recovered_from: None,
            time: Timestamp::from_unix_millis(1),
            replica_id: "r".into(),
            key_id: key.public().key_id(),
            every_records: 1000,
            every_ms: 10_000,
            signature: String::new(),
        }
    }

    #[test]
    fn sealed_checkpoint_verifies_and_edits_do_not() {
        let (_home, key) = key();
        let mut cp = head(&key);
        let line = cp.seal(&key).unwrap();
        let body = &line[..line.len() - 1];
        assert_eq!(serde_json::to_vec(&cp).unwrap(), body);
        assert_eq!(verify_line(body, &key.public()).unwrap(), cp);
        let edited = String::from_utf8(body.to_vec()).unwrap().replace("\"seq\":41", "\"seq\":42");
        assert!(matches!(
            verify_line(edited.as_bytes(), &key.public()),
            Err(CheckpointProblem::BadSignature)
        ));
        let (_other_home, other) = self::key();
        assert!(matches!(verify_line(body, &other.public()), Err(CheckpointProblem::OtherKey(_))));
        assert_eq!(cp.window().unwrap().span_allowed(), Duration::from_secs(70));
    }

    #[test]
    fn kinds_carry_exactly_their_fields() {
        let (_home, key) = key();
        let mut genesis =
            Checkpoint { kind: CheckpointKind::Genesis, seq: None, hash: None, segment: None, ..head(&key) };
        let line = genesis.seal(&key).unwrap();
        assert!(!String::from_utf8_lossy(&line).contains("\"seq\""));
        assert_eq!(
            verify_line(&line[..line.len() - 1], &key.public()).unwrap().kind,
            CheckpointKind::Genesis
        );
        assert_ne!(genesis_link(&line[..line.len() - 1]), genesis_link(b"{}"));

        let bad = [
            Checkpoint { kind: CheckpointKind::Genesis, ..head(&key) },
            Checkpoint { seq: None, ..head(&key) },
            Checkpoint { kind: CheckpointKind::Recovery, ..head(&key) },
            Checkpoint { kind: CheckpointKind::Recovery, recovered_from: Some(42), ..head(&key) },
            Checkpoint { recovered_from: Some(3), ..head(&key) },
            Checkpoint { every_records: 0, ..head(&key) },
            Checkpoint { log_id: "x".into(), ..head(&key) },
            Checkpoint { hash: Some("AB".repeat(32)), ..head(&key) },
        ];
        for mut cp in bad {
            let line = cp.seal(&key).unwrap();
            assert!(
                matches!(
                    verify_line(&line[..line.len() - 1], &key.public()),
                    Err(CheckpointProblem::Invalid(_))
                ),
                "{cp:?}"
            );
        }
        let mut recovery =
            Checkpoint { kind: CheckpointKind::Recovery, recovered_from: Some(40), ..head(&key) };
        let line = recovery.seal(&key).unwrap();
        assert!(verify_line(&line[..line.len() - 1], &key.public()).is_ok());
    }

    #[test]
    fn log_ids_are_random() {
        let a = new_log_id().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, new_log_id().unwrap());
    }
}
