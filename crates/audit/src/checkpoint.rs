//! Signed checkpoints: the chain head at a point in time, signed with the replica key.
//!
//! `checkpoints.jsonl` holds one checkpoint per line. The signature covers
//! `"palisade.audit/v1 checkpoint\n" || body`, where the body is the checkpoint's compact
//! JSON without the `signature` field (the line minus its fixed-length
//! `,"signature":"<88 base64>"` suffix, with the closing brace restored).

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::key::{PublicKey, ReplicaKey, base64};

/// File name of the checkpoint file, inside the log directory.
pub const CHECKPOINT_FILE: &str = "checkpoints.jsonl";
/// Schema tag of checkpoints.
pub const CHECKPOINT_SCHEMA: &str = "palisade.audit.checkpoint/v1";

/// Domain separation for checkpoint signatures.
const SIGNING_CONTEXT: &[u8] = b"palisade.audit/v1 checkpoint\n";
const SIGNATURE_PREFIX: &[u8] = b",\"signature\":\"";
const SIGNATURE_SUFFIX: &[u8] = b"\"}";
/// Base64 of a 64-byte Ed25519 signature.
const SIGNATURE_B64_LEN: usize = 88;

/// A signed statement that the chain's record `seq` has hash `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Schema tag, [`CHECKPOINT_SCHEMA`].
    pub schema: String,
    /// The seq of the chain head at checkpoint time.
    pub seq: u64,
    /// That record's hash (lowercase hex).
    pub hash: String,
    /// The segment file that holds that record.
    pub segment: String,
    /// When the checkpoint was written.
    pub time: Timestamp,
    /// The replica whose chain this is.
    pub replica_id: String,
    /// Id of the signing key ([`PublicKey::key_id`]).
    pub key_id: String,
    /// Ed25519 signature, standard base64.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub signature: String,
}

impl Checkpoint {
    /// Signs the checkpoint and returns its line (newline included).
    pub(crate) fn seal(&mut self, key: &ReplicaKey) -> Result<Vec<u8>, serde_json::Error> {
        self.signature.clear();
        let mut line = serde_json::to_vec(&*self)?;
        line.pop();
        let signature = key.sign(&signed_message(&line));
        self.signature = base64::encode(&signature);
        line.extend_from_slice(SIGNATURE_PREFIX);
        line.extend_from_slice(self.signature.as_bytes());
        line.extend_from_slice(SIGNATURE_SUFFIX);
        line.push(b'\n');
        Ok(line)
    }
}

fn signed_message(body_without_brace: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNING_CONTEXT.len() + body_without_brace.len() + 1);
    message.extend_from_slice(SIGNING_CONTEXT);
    message.extend_from_slice(body_without_brace);
    message.push(b'}');
    message
}

/// Why a checkpoint line is not acceptable.
#[derive(Debug)]
pub(crate) enum CheckpointProblem {
    /// Not JSON, or not a checkpoint.
    Invalid(String),
    /// Signed with a different key.
    OtherKey(String),
    /// The signature does not verify.
    BadSignature,
}

/// Parses a checkpoint line (without newline) and checks its signature with `key`.
pub(crate) fn verify_line(line: &[u8], key: &PublicKey) -> Result<Checkpoint, CheckpointProblem> {
    let checkpoint: Checkpoint =
        serde_json::from_slice(line).map_err(|e| CheckpointProblem::Invalid(format!("invalid JSON: {e}")))?;
    if checkpoint.schema != CHECKPOINT_SCHEMA {
        return Err(CheckpointProblem::Invalid(format!("unknown schema {:?}", checkpoint.schema)));
    }
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
    if key.verifies(&signed_message(body), &signature) {
        Ok(checkpoint)
    } else {
        Err(CheckpointProblem::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_checkpoint_verifies_and_edits_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let key = ReplicaKey::load_or_create(dir.path()).unwrap();
        let mut cp = Checkpoint {
            schema: CHECKPOINT_SCHEMA.into(),
            seq: 41,
            hash: "ab".repeat(32),
            segment: "segment-00000000000000000000.jsonl".into(),
            time: Timestamp::from_unix_millis(1),
            replica_id: "r".into(),
            key_id: key.public().key_id(),
            signature: String::new(),
        };
        let line = cp.seal(&key).unwrap();
        let body = &line[..line.len() - 1];
        assert_eq!(serde_json::to_vec(&cp).unwrap(), body);
        assert_eq!(verify_line(body, &key.public()).unwrap(), cp);
        let edited = String::from_utf8(body.to_vec()).unwrap().replace("\"seq\":41", "\"seq\":42");
        assert!(matches!(
            verify_line(edited.as_bytes(), &key.public()),
            Err(CheckpointProblem::BadSignature)
        ));
        let other = ReplicaKey::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        assert!(matches!(verify_line(body, &other.public()), Err(CheckpointProblem::OtherKey(_))));
    }
}
