//! Palisade's audit log: one tamper-evident, durable record per data-plane request.
//!
//! ```text
//! AuditLog::open(dir, AuditConfig)            (writer thread; new log: genesis checkpoint; else resumes
//!                                              a chain it can vouch for, signs a crash tail)
//! AuditLog::append(record).await -> Appended  (strict: resolves once the record is fsynced)
//! AuditLog::health() / stats()                (503 reason, readiness, metrics)
//! AuditLog::close().await                     (final signed checkpoint)
//! verify(dir, &VerifyOptions) -> VerifyReport (genesis, chain, seq continuity, checkpoint
//!                                              signatures, unsigned records within one window)
//! verify_record(dir, seq, &key)               (the chain at one record: its hash, its link, the
//!                                              signed checkpoint covering it)
//! query(dir, Filter) -> Query                 (streaming, filtered)
//! find_trails(dir) -> Trails                  (one log, or a directory of replicas' trails)
//! query_replicas(&trails, Filter)             (several replicas' records, merged by time)
//! import_shipped(lines, out)                  (shipped lines back into trails, to verify them)
//! tail(dir, follow) -> Tail                   (last records, then new ones)
//! write_jsonl(records, out)                   (export for SIEMs)
//! redact(payload, fields)                     (payload levels)
//! ```
//!
//! # Files
//!
//! A log is one directory (`$PALISADE_HOME/audit/`), one hash chain per replica:
//!
//! - `segment-<first seq, 20 digits>.jsonl`: append-only, one record per line
//!   (schema `palisade.audit/v1`, see `SCHEMA.md`), rotated by size (64 MiB) or age (1 h);
//! - `checkpoints.jsonl`: first the *genesis* checkpoint, written when the log is created
//!   (log id, replica, key id, the writer's checkpoint window; record 0 links to it), then
//!   every 1000 records or 10 s, and on close, the chain head signed with the log's
//!   Ed25519 key;
//! - `.lock`: held by the one writer.
//!
//! Several replicas keep one log each. [`find_trails`] reads a directory of their logs (as
//! copied off their volumes), refusing two logs of one replica or two copies of one log, and
//! [`query_replicas`] merges their records by time. A [`Shipper`] set in
//! [`AuditConfig::ship`] gets a copy of every line once it is durable (for a log collector on
//! stdout), through a bounded queue the writer never waits on.
//!
//! The signing key is **not** in the log directory: by default it is
//! `$PALISADE_HOME/keys/audit-signing.pk8` (PKCS#8, mode 0600, directory 0700), with the
//! public key beside it (`audit-signing.pub`, raw key in base64) for auditors. The writer
//! refuses a key that is a symbolic link, open to group or others, or inside the log
//! directory.
//!
//! # Guarantees
//!
//! - **Tamper evidence.** Each record carries `prev_hash`, the hash of its predecessor,
//!   and `hash = SHA-256(prev_hash || the record's JSON without hash)`. [`verify`]
//!   recomputes all of them, so an edited byte, a deleted, inserted or reordered record, a
//!   missing segment, or a tail cut after the last checkpoint is found and named. Whoever
//!   can rewrite the files can re-chain them; the signed checkpoints are what they cannot
//!   recompute without the key, and the genesis checkpoint is what they cannot start a
//!   fresh chain from.
//! - **Bounded unsigned tail.** The writer signs before more than one window of records
//!   (by count) is unsigned and within the window's interval (by time); if it cannot, it
//!   refuses appends. So [`verify`] fails a log with more records after a checkpoint than
//!   that, or with none at all, and [`AuditLog::open`] refuses to sign such a head; a
//!   genuine crash tail (within one window) is signed in a recovery checkpoint.
//! - **Durability.** In strict mode (the default) `append` resolves only after the
//!   record's bytes are fsynced, so a response released after it always has its record,
//!   even after a crash. Records are committed in groups: everything queued while the
//!   previous fsync ran shares the next one.
//! - **Fail closed.** When records cannot be made durable (disk full, I/O error), strict
//!   appends fail with [`AuditError::Unavailable`] until a write succeeds again; the chain
//!   is rolled back so that nothing unacknowledged stays on disk.
//!
//! What is not covered: an attacker who can read the signing key; one who replaces the
//! whole directory (a new genesis needs the key, but an empty directory starts a new log);
//! and one who removes the newest checkpoints together with the records after an earlier
//! one, or rewrites the at most one window of records not yet signed (ship checkpoints
//! off the machine to close that gap: the `palisade-archive` crate copies them to object
//! storage every few seconds and verifies against that copy). Logs written before genesis checkpoints (key in the
//! log directory) are read and verified as *legacy*: `verify` reports them as such,
//! never as intact, and the writer does not extend them.

mod chain;
mod checkpoint;
mod config;
mod error;
mod import;
mod key;
mod layout;
mod priority;
mod read;
mod record;
mod redact;
mod replicas;
mod resume;
mod retention;
mod sealed;
mod sealer;
mod segment;
mod ship;
mod time;
mod verify;
mod walk;
mod writer;

pub use checkpoint::{
    CHECKPOINT_FILE, CHECKPOINT_SCHEMA, Checkpoint, CheckpointKind, CheckpointWindow,
    LEGACY_CHECKPOINT_SCHEMA, WINDOW_TOLERANCE,
};
pub use config::{AuditConfig, FaultInjection, FsyncObserver, Mode};
pub use error::AuditError;
pub use import::{ImportReport, ImportedTrail, import_shipped};
pub use key::{
    KEYS_DIR, LEGACY_PRIVATE_KEY_FILE, LEGACY_PUBLIC_KEY_FILE, PublicKey, SIGNING_KEY_FILE,
    SIGNING_PUBLIC_KEY_FILE, default_signing_key, public_key_path,
};
pub use layout::{
    SEALED_FOOTER_LEN, SegmentFile, list_segments, read_genesis, read_sealed_trailer, sealed_trailer_offset,
};
pub use priority::{BACKGROUND_NICE, Periodic, lower_this_threads_priority};
pub use read::{Filter, Query, StatusFilter, Tail, TailOptions, query, tail, write_jsonl};
pub use record::{
    AuditRecord, Authn, AuthnOutcome, Authz, ConfigChange, Decision, JwtInfo, Level, ModelInfo, Outliers,
    Payloads, Protocol, RateLimit, RecordKind, SCHEMA, sha256_hex,
};
pub use redact::{REDACTED, Redactor, redact};
pub use replicas::{MergedQuery, Trail, TrailLayout, Trails, find_trails, is_log_dir, query_replicas};
pub use retention::{
    NO_ARCHIVE, RetentionCandidate, RetentionPolicy, RetentionReport, apply_retention,
    apply_retention_archived,
};
pub use sealed::{FrameEntry, SEALED_SCHEMA, SealIndex, Trailer, parse_trailer};
pub use sealer::{
    SEAL_LOCK_FILE, SealOptions, SealReport, SealStep, SealedSegment, Sealer, SealerStats, seal_segments,
};
pub use ship::{ShipOptions, ShipStats, Shipper};
pub use time::Timestamp;
pub use verify::{
    CoveringCheckpoint, KeySource, Problem, RecordVerification, VerifyOptions, VerifyReport, verify,
    verify_record,
};
pub use writer::{Announced, Appended, AuditLog, AuditStats, Health, LOCK_FILE};

#[cfg(test)]
mod tests {
    #[test]
    fn handles_are_shareable_across_tasks() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<crate::AuditLog>();
        shareable::<crate::AuditError>();
        shareable::<crate::AuditConfig>();
    }
}
