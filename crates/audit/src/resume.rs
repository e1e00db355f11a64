//! What a writer finds when it opens a log directory, and whether it can vouch for it.
//!
//! The writer signs the chain head, so before it appends it must know that the head it
//! resumes from descends from this log's signed checkpoints: the genesis checkpoint (signed
//! with the key it holds) starts the chain, the last checkpoint verifies and matches the
//! chain, the records after it link to it, and there are no more of them than a crash can
//! leave (one checkpoint window, by count and by time). Anything else is refused, naming
//! the problem: signing it would lend the key to whatever someone wrote in the directory.
//!
//! Reading is bounded: the genesis line, the last checkpoint line, and the segments from the
//! one holding the last checkpointed record.

use std::path::{Path, PathBuf};

use crate::AuditError;
use crate::chain::Hash;
use crate::checkpoint::{
    self, CHECKPOINT_FILE, CHECKPOINT_SCHEMA, Checkpoint, CheckpointKind, CheckpointProblem,
    CheckpointWindow, LEGACY_CHECKPOINT_SCHEMA,
};
use crate::key::{LEGACY_PRIVATE_KEY_FILE, SigningKey};
use crate::segment::{self, Segment};
use crate::verify;
use crate::walk::{self, CheckpointLines, Start, Walk};

/// What the directory holds.
pub(crate) struct Found {
    /// The signing key: loaded, or created for a new log; for an existing log, the one its
    /// genesis names.
    pub(crate) key: SigningKey,
    /// `None`: no records and no checkpoints, a new log whose genesis checkpoint is still
    /// to be written.
    pub(crate) existing: Option<Existing>,
}

/// An existing log whose chain head the writer can vouch for.
pub(crate) struct Existing {
    /// The log's id.
    pub(crate) log_id: String,
    /// The seq the next record gets.
    pub(crate) next_seq: u64,
    /// The chain head (the genesis link when there are no records).
    pub(crate) head: Hash,
    /// The segment holding the last record.
    pub(crate) last_record_segment: Option<String>,
    /// Whether that segment is the last one (else the last one is empty).
    pub(crate) last_record_in_last_segment: bool,
    /// The seq the last checkpoint signed (`None`: only the genesis).
    pub(crate) checkpointed_seq: Option<u64>,
    /// The window the last checkpoint states.
    pub(crate) window: CheckpointWindow,
    /// Records after the last checkpoint (left by an unclean stop), to be signed in a
    /// recovery checkpoint.
    pub(crate) unsigned: u64,
}

/// Examines the log in `dir` (its torn tails already repaired).
pub(crate) fn examine(dir: &Path, segments: &[Segment], key_path: &Path) -> Result<Found, AuditError> {
    let untrusted = |problem: String| AuditError::Untrusted { dir: dir.to_owned(), problem };
    let mut lines = CheckpointLines::new(dir);
    let Some(genesis_line) = lines.next_line()?.map(|(_, line)| line.to_vec()) else {
        return new_log(dir, segments, key_path);
    };
    if checkpoint::schema_of(&genesis_line).as_deref() == Some(LEGACY_CHECKPOINT_SCHEMA) {
        return Err(AuditError::Legacy { dir: dir.to_owned() });
    }
    let key = match SigningKey::load(key_path)? {
        Some(key) => key,
        None => {
            return Err(AuditError::Key(format!(
                "{}: missing, but the log in {} was created with key {} (its genesis checkpoint): restore that key and its .pub from your backup, or move the log directory aside to start a new chain",
                key_path.display(),
                dir.display(),
                claimed_key_id(&genesis_line)
            )));
        }
    };
    let public = key.public();
    let genesis = checkpoint::verify_line(&genesis_line, &public)
        .map_err(|p| rejected(dir, key.path(), &public.key_id(), p, "the genesis checkpoint (line 1)"))?;
    if genesis.kind != CheckpointKind::Genesis {
        return Err(untrusted(format!(
            "the first line of {CHECKPOINT_FILE} is not a genesis checkpoint: the start of the file was removed"
        )));
    }
    let last_line = segment::last_line(&dir.join(CHECKPOINT_FILE))?.unwrap_or_default();
    let last = if last_line == genesis_line {
        genesis.clone()
    } else {
        let last = checkpoint::verify_line(&last_line, &public)
            .map_err(|p| rejected(dir, key.path(), &public.key_id(), p, "the last checkpoint"))?;
        if last.schema != CHECKPOINT_SCHEMA
            || last.kind == CheckpointKind::Genesis
            || last.log_id != genesis.log_id
        {
            return Err(untrusted(format!(
                "the last line of {CHECKPOINT_FILE} is not a checkpoint of this log: checkpoints were replaced"
            )));
        }
        last
    };
    let window =
        last.window().or(genesis.window()).ok_or_else(|| untrusted("no checkpoint window".into()))?;
    let walked = walk_from(dir, segments, &last, checkpoint::genesis_link(&genesis_line))?;
    let unsigned = walked.after;
    if let Err(why) = verify::judge_tail(window, unsigned, walked.span) {
        return Err(untrusted(format!(
            "{why}: checkpoints were removed, or records were added without the key"
        )));
    }
    let existing = Existing {
        log_id: genesis.log_id,
        next_seq: walked.next_seq,
        head: walked.head,
        last_record_in_last_segment: walked.segment_index.is_some_and(|i| i + 1 == segments.len()),
        last_record_segment: walked.segment_index.and_then(|i| segments.get(i)).map(|s| s.name.clone()),
        checkpointed_seq: last.seq,
        window,
        unsigned,
    };
    Ok(Found { key, existing: Some(existing) })
}

/// A directory without checkpoints: new if it holds no records either.
fn new_log(dir: &Path, segments: &[Segment], key_path: &Path) -> Result<Found, AuditError> {
    if let Some(first) = walk::first_record(segments)?
        && walk::starts_like_legacy(&first)
    {
        return Err(AuditError::Legacy { dir: dir.to_owned() });
    }
    let holds_records = segments.iter().any(|s| std::fs::metadata(&s.path).is_ok_and(|m| m.len() > 0));
    if holds_records {
        return Err(AuditError::Untrusted { dir: dir.to_owned(), problem: verify::NO_GENESIS.to_owned() });
    }
    if dir.join(LEGACY_PRIVATE_KEY_FILE).exists() {
        tracing::warn!(
            file = %dir.join(LEGACY_PRIVATE_KEY_FILE).display(),
            "ignoring a signing key left in the audit log directory by an older version (it signed nothing here); delete it"
        );
    }
    Ok(Found { key: SigningKey::load_or_create(key_path)?, existing: None })
}

/// The key id a checkpoint line claims, for messages (unverified).
fn claimed_key_id(line: &[u8]) -> String {
    serde_json::from_slice::<Checkpoint>(line).map(|c| c.key_id).unwrap_or_else(|_| "(unreadable)".to_owned())
}

fn rejected(dir: &Path, key_path: &Path, key_id: &str, problem: CheckpointProblem, what: &str) -> AuditError {
    let untrusted = |problem: String| AuditError::Untrusted { dir: dir.to_owned(), problem };
    match problem {
        CheckpointProblem::Invalid(why) => {
            untrusted(format!("{what} in {CHECKPOINT_FILE} is not valid: {why}"))
        }
        CheckpointProblem::OtherKey(id) => AuditError::Key(format!(
            "{}: this is key {key_id}, but {what} of the log in {} names key {id}: restore the log's key and its .pub, or move the log directory aside to start a new chain",
            key_path.display(),
            dir.display()
        )),
        CheckpointProblem::BadSignature => untrusted(format!(
            "the signature of {what} in {CHECKPOINT_FILE} does not verify: it was forged or altered"
        )),
    }
}

/// The chain from the last checkpoint to the head.
struct Walked {
    next_seq: u64,
    head: Hash,
    /// Index of the segment holding the last record.
    segment_index: Option<usize>,
    /// Records after the checkpoint.
    after: u64,
    /// Earliest and latest time among them.
    span: Option<(crate::Timestamp, crate::Timestamp)>,
}

/// Walks from the record `last` signed (or from seq 0 for the genesis) to the end, checking
/// every link and that the signed record has the signed hash.
fn walk_from(dir: &Path, segments: &[Segment], last: &Checkpoint, link: Hash) -> Result<Walked, AuditError> {
    let untrusted = |problem: String| AuditError::Untrusted { dir: dir.to_owned(), problem };
    let (from, start) = match (&last.seq, &last.segment) {
        (Some(seq), Some(name)) => match segments.iter().position(|s| &s.name == name) {
            Some(index) => (index, Start::Trusted),
            None => {
                return Err(untrusted(format!(
                    "the last checkpoint signs seq {seq} in {name}, which is missing: records were removed"
                )));
            }
        },
        _ => {
            if let Some(first) = segments.first()
                && first.first_seq != 0
            {
                return Err(untrusted(format!(
                    "{} is the first segment: records from seq 0 are missing",
                    first.name
                )));
            }
            (0, Start::Link(link))
        }
    };
    let mut walked = Walked { next_seq: 0, head: link, segment_index: None, after: 0, span: None };
    let mut signed_seen = last.seq.is_none();
    let mut walk = Walk::new(segments, from, start);
    while let Some(next) = walk.next_record()? {
        let record = next.map_err(|p| untrusted(format!("{p}")))?;
        walked.next_seq = record.seq + 1;
        walked.head = record.hash;
        walked.segment_index = Some(record.segment);
        match last.seq {
            Some(seq) if record.seq < seq => {}
            Some(seq) if record.seq == seq => {
                if last.hash.as_deref() != Some(crate::chain::to_hex(&record.hash).as_str()) {
                    return Err(untrusted(format!(
                        "the chain's hash at seq {seq} differs from the last checkpoint's: records were altered and re-chained"
                    )));
                }
                signed_seen = true;
            }
            _ => {
                walked.after += 1;
                if let Some(t) = record.time {
                    walked.span = Some(walked.span.map_or((t, t), |(a, b)| (a.min(t), b.max(t))));
                }
            }
        }
    }
    if !signed_seen {
        let seq = last.seq.unwrap_or_default();
        return Err(untrusted(format!(
            "the last checkpoint covers seq {seq} but the log ends before it (next seq {}): records were removed",
            walked.next_seq
        )));
    }
    Ok(walked)
}

/// Refuses a signing key inside the log directory: whoever can rewrite the log could sign.
pub(crate) fn key_outside(dir: &Path, key_path: &Path) -> Result<(), AuditError> {
    let resolve = |p: &Path| -> PathBuf {
        std::fs::canonicalize(p).unwrap_or_else(|_| std::path::absolute(p).unwrap_or_else(|_| p.to_owned()))
    };
    let log = resolve(dir);
    let key_dir = resolve(key_path.parent().unwrap_or(Path::new(".")));
    if key_dir.starts_with(&log) {
        return Err(AuditError::InsecureKey {
            path: key_path.to_owned(),
            what: "the signing key is inside the log directory, so whoever can rewrite the log could sign it"
                .into(),
            fix: format!(
                "keep the key outside {} (by default it is keys/audit-signing.pk8 beside the log directory)",
                dir.display()
            ),
        });
    }
    Ok(())
}
