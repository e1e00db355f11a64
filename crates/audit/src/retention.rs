//! Retention: which sealed segments a policy (`maxAge`, `maxBytes`) would remove, and the
//! rule that nothing is removed that is not archived.
//!
//! An audit trail is not a cache. A sealed segment may leave the local disk only once an
//! archive holds a copy that was checked (size and SHA-256). Without an archive
//! ([`apply_retention`]) retention never deletes: it finds the segments the policy makes
//! due, refuses, and says why (a log line and the blocked counts in [`RetentionReport`],
//! which the server exports as metrics). With one ([`apply_retention_archived`]) each due
//! segment, oldest first, is deleted only once the archive's check of its copy passes; the
//! first that does not pass stops retention, and the report says why.
//!
//! Retention never removes the newest sealed segment: its signed seal checkpoint is where
//! the local chain continues (the sealer and `verify --from` start there).

use std::path::Path;
use std::time::Duration;

use crate::sealed::{self, TrailerError};
use crate::segment::{self, Segment};
use crate::{AuditError, Timestamp};

/// How long and how much of the trail to keep locally.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// A sealed segment whose newest record is older than this is due for removal.
    pub max_age: Option<Duration>,
    /// While the trail's segment files take more than this many bytes, the oldest sealed
    /// segments are due for removal.
    pub max_bytes: Option<u64>,
}

/// What retention found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Sealed segments the policy makes due, oldest first (a prefix of the trail: the
    /// chain left locally is always a suffix).
    pub due: Vec<String>,
    /// Their bytes.
    pub due_bytes: u64,
    /// Segments removed (only ever archived and checked ones).
    pub deleted: Vec<String>,
    /// Their bytes.
    pub deleted_bytes: u64,
    /// Why due segments were kept, when they were.
    pub refused: Option<String>,
}

/// The reason retention gives when no archive is configured.
pub const NO_ARCHIVE: &str = "no archive is configured, and an audit trail is not a cache: a sealed segment is deleted only after an archive holds a checked copy (size and SHA-256), so nothing was deleted. Configure an archive, or raise or remove audit.retention";

/// Applies `policy` to the trail in `dir` at time `now`, without an archive: nothing is
/// deleted; the report lists what is due and why it stays.
pub fn apply_retention(
    dir: &Path,
    policy: &RetentionPolicy,
    now: Timestamp,
) -> Result<RetentionReport, AuditError> {
    let (mut report, _) = due(dir, policy, now)?;
    if !report.due.is_empty() {
        report.refused = Some(NO_ARCHIVE.to_owned());
    }
    Ok(report)
}

/// A sealed segment retention wants to delete, for the archive to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionCandidate {
    /// The sealed file's name (`segment-<seq>.jsonl.zst`).
    pub file_name: String,
    /// Its path.
    pub path: std::path::PathBuf,
}

/// Applies `policy` to the trail in `dir` at time `now`, deleting each due segment (oldest
/// first) once `archived` confirms that the archive holds a checked copy of it (`Ok`), and
/// stopping at the first it does not confirm (`Err(why)`, kept in
/// [`RetentionReport::refused`]). Holds the sealer's lock meanwhile, so that no sealing
/// pass reads a segment being removed; when a pass holds it, nothing is deleted this time.
pub fn apply_retention_archived(
    dir: &Path,
    policy: &RetentionPolicy,
    now: Timestamp,
    archived: &mut dyn FnMut(&RetentionCandidate) -> Result<(), String>,
) -> Result<RetentionReport, AuditError> {
    let lock_path = dir.join(crate::SEAL_LOCK_FILE);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| AuditError::io(&lock_path, "cannot open", e))?;
    let (mut report, segments) = due(dir, policy, now)?;
    if report.due.is_empty() {
        return Ok(report);
    }
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            report.refused = Some("a sealing pass holds the log; retention waits for the next pass".into());
            return Ok(report);
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(AuditError::io(&lock_path, "cannot lock", e)),
    }
    for seg in segments {
        let candidate = RetentionCandidate { file_name: seg.file_name(), path: seg.path.clone() };
        if let Err(why) = archived(&candidate) {
            report.refused = Some(format!("{} was kept: {why}", candidate.file_name));
            break;
        }
        let len = std::fs::metadata(&seg.path).map_or(0, |m| m.len());
        std::fs::remove_file(&seg.path).map_err(|e| AuditError::io(&seg.path, "cannot remove", e))?;
        report.deleted_bytes += len;
        crate::key::sync_dir(dir)?;
        report.deleted.push(candidate.file_name);
    }
    Ok(report)
}

/// The segments `policy` makes due at `now` (a report without a decision, and the
/// segments themselves).
fn due(
    dir: &Path,
    policy: &RetentionPolicy,
    now: Timestamp,
) -> Result<(RetentionReport, Vec<Segment>), AuditError> {
    let (segments, _) = segment::list(dir)?;
    let mut sizes = Vec::with_capacity(segments.len());
    for seg in &segments {
        let len =
            std::fs::metadata(&seg.path).map_err(|e| AuditError::io(&seg.path, "cannot stat", e))?.len();
        sizes.push(len);
    }
    let total: u64 = sizes.iter().sum();
    let mut report = RetentionReport::default();
    let mut chosen = Vec::new();
    let mut remaining = total;
    // Never the last segment (the writer's), only a prefix of sealed segments, and never
    // the newest sealed one (the local chain continues from its seal checkpoint).
    let sealed_prefix =
        segments.iter().take(segments.len().saturating_sub(1)).take_while(|s| s.sealed).count();
    for (seg, &len) in segments.iter().zip(&sizes).take(sealed_prefix.saturating_sub(1)) {
        let too_big = policy.max_bytes.is_some_and(|max| remaining > max);
        let too_old = match policy.max_age {
            Some(max_age) => newest_record(seg)?.is_some_and(|t| crate::verify::spread(t, now) > max_age),
            None => false,
        };
        if !(too_big || too_old) {
            break;
        }
        report.due.push(seg.file_name());
        report.due_bytes += len;
        remaining -= len;
        chosen.push(seg.clone());
    }
    Ok((report, chosen))
}

/// The newest record time in a sealed segment, from its index (`None` when unreadable or
/// without times: such a segment is never judged too old).
fn newest_record(seg: &Segment) -> Result<Option<Timestamp>, AuditError> {
    let mut file = std::fs::File::open(&seg.path).map_err(|e| AuditError::io(&seg.path, "cannot open", e))?;
    match sealed::read_trailer(&seg.path, &mut file) {
        Ok(trailer) => Ok(trailer.index.frames.iter().filter_map(|f| f.to).max()),
        Err(TrailerError::Io(e)) => Err(e),
        Err(TrailerError::Damaged(_)) => Ok(None),
    }
}
