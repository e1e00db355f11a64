//! Retention: which sealed segments a policy (`maxAge`, `maxBytes`) would remove, and the
//! rule that nothing is removed that is not archived.
//!
//! An audit trail is not a cache. A sealed segment may leave the local disk only once an
//! archive holds a copy that was checked (size and SHA-256). This version has no archive
//! target yet, so retention never deletes: it finds the segments the policy makes due,
//! refuses, and says why (a log line and the blocked counts in [`RetentionReport`], which
//! the server exports as metrics).

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
    /// Why due segments were kept, when they were.
    pub refused: Option<String>,
}

/// The reason retention gives when no archive is configured.
pub const NO_ARCHIVE: &str = "no archive is configured, and an audit trail is not a cache: a sealed segment is deleted only after an archive holds a checked copy (size and SHA-256), so nothing was deleted. Configure an archive, or raise or remove audit.retention";

/// Applies `policy` to the trail in `dir` at time `now`. Without an archive (the only
/// case in this version) nothing is deleted: the report lists what is due and why it
/// stays.
pub fn apply_retention(
    dir: &Path,
    policy: &RetentionPolicy,
    now: Timestamp,
) -> Result<RetentionReport, AuditError> {
    let (segments, _) = segment::list(dir)?;
    let mut sizes = Vec::with_capacity(segments.len());
    for seg in &segments {
        let len =
            std::fs::metadata(&seg.path).map_err(|e| AuditError::io(&seg.path, "cannot stat", e))?.len();
        sizes.push(len);
    }
    let total: u64 = sizes.iter().sum();
    let mut report = RetentionReport::default();
    let mut remaining = total;
    // Never the last segment (the writer's), and only a prefix of sealed segments.
    for (seg, &len) in segments.iter().zip(&sizes).take(segments.len().saturating_sub(1)) {
        if !seg.sealed {
            break;
        }
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
    }
    if !report.due.is_empty() {
        report.refused = Some(NO_ARCHIVE.to_owned());
    }
    Ok(report)
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
