//! Palisade's audit log: one tamper-evident, durable record per data-plane request.
//!
//! ```text
//! AuditLog::open(dir, AuditConfig)            (writer thread, resumes the chain, repairs a torn tail)
//! AuditLog::append(record).await -> Appended  (strict: resolves once the record is fsynced)
//! AuditLog::health() / stats()                (503 reason, readiness, metrics)
//! AuditLog::close().await                     (final signed checkpoint)
//! verify(dir, &VerifyOptions) -> VerifyReport (chain, seq continuity, checkpoint signatures)
//! query(dir, Filter) -> Query                 (streaming, filtered)
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
//! - `checkpoints.jsonl`: every 1000 records or 10 s, and on close, the chain head signed
//!   with the replica's Ed25519 key;
//! - `replica-key.pk8` (PKCS#8, mode 0600, created on first open) and `replica-key.pub`
//!   (raw public key, base64) for auditors;
//! - `.lock`: held by the one writer.
//!
//! # Guarantees
//!
//! - **Tamper evidence.** Each record carries `prev_hash`, the hash of its predecessor,
//!   and `hash = SHA-256(prev_hash || the record's JSON without hash)`. [`verify`]
//!   recomputes all of them, so an edited byte, a deleted, inserted or reordered record, a
//!   missing segment, or a tail cut after the last checkpoint is found and named. Whoever
//!   can rewrite the files can re-chain them; the signed checkpoints are what they cannot
//!   recompute without the replica key.
//! - **Durability.** In strict mode (the default) `append` resolves only after the
//!   record's bytes are fsynced, so a response released after it always has its record,
//!   even after a crash. Records are committed in groups: everything queued while the
//!   previous fsync ran shares the next one.
//! - **Fail closed.** When records cannot be made durable (disk full, I/O error), strict
//!   appends fail with [`AuditError::Unavailable`] until a write succeeds again; the chain
//!   is rolled back so that nothing unacknowledged stays on disk.
//!
//! What is not covered: an attacker with the replica key, and one who removes the newest
//! checkpoints together with the records after the previous one (ship checkpoints off the
//! machine to close that gap).

mod chain;
mod checkpoint;
mod error;
mod key;
mod read;
mod record;
mod redact;
mod segment;
mod time;
mod verify;
mod writer;

pub use checkpoint::{CHECKPOINT_FILE, CHECKPOINT_SCHEMA, Checkpoint};
pub use error::AuditError;
pub use key::{PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, PublicKey};
pub use read::{Filter, Query, StatusFilter, Tail, TailOptions, query, tail, write_jsonl};
pub use record::{
    AuditRecord, Authn, AuthnOutcome, Authz, ConfigChange, Decision, JwtInfo, Level, ModelInfo, Payloads,
    Protocol, RecordKind, SCHEMA, sha256_hex,
};
pub use redact::{REDACTED, Redactor, redact};
pub use time::Timestamp;
pub use verify::{Problem, VerifyOptions, VerifyReport, verify};
pub use writer::{
    Announced, Appended, AuditConfig, AuditLog, AuditStats, FaultInjection, FsyncObserver, Health, LOCK_FILE,
    Mode,
};

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
