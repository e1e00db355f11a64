//! The background archiver: one pass every `every` on its own thread (with its own small
//! async runtime), beside the writer and the sealer, then retention against the archive.
//! Nothing here is on the request path, and the writer never waits for it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use palisade_audit::{RetentionPolicy, Timestamp};

use crate::{Archive, ArchiveError, ArchiveTarget, archive_pass, confirm_archived};

/// Counters and gauges of a background [`Archiver`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiverStats {
    /// Sealed segments archived and checked.
    pub segments: u64,
    /// Their bytes.
    pub segment_bytes: u64,
    /// Bytes of `checkpoints.jsonl` archived and checked.
    pub checkpoint_bytes: u64,
    /// Passes that failed (the store unreachable, an object that differs, ...).
    pub errors: u64,
    /// Sealed segments not yet archived after the last pass.
    pub backlog_segments: u64,
    /// Their bytes.
    pub backlog_bytes: u64,
    /// Seconds since the oldest of them was sealed (0 when none).
    pub oldest_unarchived_secs: u64,
    /// Sealed segments retention deleted (each after the archive's copy was confirmed).
    pub retention_deleted: u64,
    /// Sealed segments retention makes due but kept after the last pass.
    pub retention_blocked_segments: u64,
    /// Their bytes.
    pub retention_blocked_bytes: u64,
}

#[derive(Default)]
struct Shared {
    segments: AtomicU64,
    segment_bytes: AtomicU64,
    checkpoint_bytes: AtomicU64,
    errors: AtomicU64,
    backlog_segments: AtomicU64,
    backlog_bytes: AtomicU64,
    oldest_unarchived_secs: AtomicU64,
    retention_deleted: AtomicU64,
    retention_blocked_segments: AtomicU64,
    retention_blocked_bytes: AtomicU64,
}

/// Archives a log in the background. Stops when dropped (after the pass it is in).
pub struct Archiver {
    shared: Arc<Shared>,
    _thread: palisade_audit::Periodic,
}

impl std::fmt::Debug for Archiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archiver").field("stats", &self.stats()).finish()
    }
}

impl Archiver {
    /// Starts archiving the log in `dir` to `target` every `every`, applying `retention`
    /// after each pass. Fails at once when the target cannot be used.
    pub fn spawn(
        dir: PathBuf,
        target: ArchiveTarget,
        retention: Option<RetentionPolicy>,
        every: Duration,
    ) -> Result<Archiver, ArchiveError> {
        Archive::open(&target)?;
        let shared = Arc::new(Shared::default());
        let state = Arc::clone(&shared);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ArchiveError::Config(format!("cannot start the archiver's runtime: {e}")))?;
        let mut last_error = None;
        let thread = palisade_audit::Periodic::spawn("palisade-audit-archive", every, move || {
            pass(&dir, &target, retention.as_ref(), &state, &runtime, &mut last_error)
        })
        .map_err(|e| ArchiveError::Config(format!("cannot start the archiver thread: {e}")))?;
        Ok(Archiver { shared, _thread: thread })
    }

    /// Counters for metrics.
    pub fn stats(&self) -> ArchiverStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let s = &self.shared;
        ArchiverStats {
            segments: get(&s.segments),
            segment_bytes: get(&s.segment_bytes),
            checkpoint_bytes: get(&s.checkpoint_bytes),
            errors: get(&s.errors),
            backlog_segments: get(&s.backlog_segments),
            backlog_bytes: get(&s.backlog_bytes),
            oldest_unarchived_secs: get(&s.oldest_unarchived_secs),
            retention_deleted: get(&s.retention_deleted),
            retention_blocked_segments: get(&s.retention_blocked_segments),
            retention_blocked_bytes: get(&s.retention_blocked_bytes),
        }
    }
}

/// One pass: archives what is sealed, publishes the backlog, applies retention.
fn pass(
    dir: &Path,
    target: &ArchiveTarget,
    retention: Option<&RetentionPolicy>,
    shared: &Shared,
    runtime: &tokio::runtime::Runtime,
    last_error: &mut Option<String>,
) {
    // Opened at every pass: a rotated credentials file is read again.
    let outcome = Archive::open(target).map(|archive| {
        let report = runtime.block_on(archive_pass(dir, &archive));
        (archive, report)
    });
    let archive = match outcome {
        Ok((archive, Ok(report))) => {
            for s in &report.segments {
                shared.segments.fetch_add(1, Ordering::Relaxed);
                shared.segment_bytes.fetch_add(s.bytes, Ordering::Relaxed);
                tracing::info!(object = %s.object, bytes = s.bytes, uploaded = s.uploaded, "archived an audit segment");
            }
            for c in &report.checkpoints {
                shared.checkpoint_bytes.fetch_add(c.bytes, Ordering::Relaxed);
            }
            *last_error = None;
            Some(archive)
        }
        Ok((archive, Err(e))) => {
            failed(shared, last_error, &e);
            Some(archive)
        }
        Err(e) => {
            failed(shared, last_error, &e);
            None
        }
    };
    if let Some(archive) = &archive {
        if let Ok((n, bytes, oldest)) = crate::backlog(dir, archive) {
            shared.backlog_segments.store(n, Ordering::Relaxed);
            shared.backlog_bytes.store(bytes, Ordering::Relaxed);
            shared.oldest_unarchived_secs.store(oldest, Ordering::Relaxed);
        }
        if let Some(policy) = retention {
            retain(dir, archive, policy, shared, runtime);
        }
    }
}

fn failed(shared: &Shared, last_error: &mut Option<String>, e: &ArchiveError) {
    shared.errors.fetch_add(1, Ordering::Relaxed);
    let text = e.to_string();
    if last_error.as_deref() != Some(text.as_str()) {
        tracing::error!(error = %text, "audit archiving failed; the local trail is kept, the next pass retries");
    }
    *last_error = Some(text);
}

/// Applies retention, deleting only segments whose archived copy is confirmed now.
pub fn retain_once(
    dir: &Path,
    archive: &Archive,
    policy: &RetentionPolicy,
    runtime: &tokio::runtime::Runtime,
) -> Result<palisade_audit::RetentionReport, ArchiveError> {
    let report = palisade_audit::apply_retention_archived(dir, policy, Timestamp::now(), &mut |candidate| {
        runtime.block_on(confirm_archived(dir, archive, &candidate.path, &candidate.file_name))
    })?;
    Ok(report)
}

fn retain(
    dir: &Path,
    archive: &Archive,
    policy: &RetentionPolicy,
    shared: &Shared,
    runtime: &tokio::runtime::Runtime,
) {
    match retain_once(dir, archive, policy, runtime) {
        Ok(report) => {
            shared.retention_deleted.fetch_add(report.deleted.len() as u64, Ordering::Relaxed);
            for name in &report.deleted {
                tracing::info!(segment = %name, "audit retention deleted a sealed segment (its archived copy is confirmed)");
            }
            let kept = report.due.len().saturating_sub(report.deleted.len()) as u64;
            let before = shared.retention_blocked_segments.swap(kept, Ordering::Relaxed);
            shared
                .retention_blocked_bytes
                .store(report.due_bytes.saturating_sub(report.deleted_bytes), Ordering::Relaxed);
            if let Some(why) = report.refused.filter(|_| kept != before) {
                tracing::warn!(segments = kept, "audit retention keeps segments it would delete: {why}");
            }
        }
        Err(e) => {
            shared.errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "audit retention could not examine the trail");
        }
    }
}
