//! Sealing rotated segments: each plain segment the writer has moved past becomes a
//! sealed one (see [`crate::sealed`]), crash-safely, and only once a signed checkpoint
//! vouches for its records.
//!
//! One pass ([`seal_segments`]), for each plain segment but the last, in seq order:
//!
//! 1. re-check its chain: every record's hash and link, from the previous segment's head
//!    (the genesis checkpoint's link for seq 0, or the previous sealed segment's signed
//!    seal checkpoint);
//! 2. find the first checkpoint in `checkpoints.jsonl` at or after its last record, check
//!    its signature and that the chain reaches its hash (walking on into later segments
//!    if needed). Without one yet, the segment waits for the next pass. So a segment edited
//!    on disk is never sealed (its seal checkpoint would vouch for the edit);
//! 3. compress its lines into frames, sign a `seal` checkpoint over its last record, write
//!    `<name>.zst.tmp`, fsync it, rename it to `<name>.zst`, fsync the directory, remove
//!    the plain file, fsync the directory.
//!
//! A crash at any step leaves a trail that verifies: a temporary file is ignored by
//! readers and removed by the next pass; a sealed file beside its plain original is
//! ignored by readers (the plain file is listed) until the next pass has checked that the
//! sealed copy decodes to exactly the plain bytes, and only then is the plain file removed.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::chain::{Hash, parse_hash, to_hex};
use crate::checkpoint::{
    self, CHECKPOINT_FILE, CHECKPOINT_SCHEMA, Checkpoint, CheckpointKind, LEGACY_CHECKPOINT_SCHEMA,
};
use crate::key::{PublicKey, SigningKey, default_signing_key, sync_dir};
use crate::sealed::{self, Builder};
use crate::segment::{self, SEALED_SUFFIX, Segment};
use crate::walk::{CheckpointLines, Line, Lines, Start, check_record};
use crate::{AuditError, Timestamp};

/// The lock a sealing pass holds, so that two sealers never work on one log at once.
pub const SEAL_LOCK_FILE: &str = ".seal.lock";
/// What a sealed file being written is called until it is complete.
const TEMP_SUFFIX: &str = ".tmp";

/// How segments are sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealOptions {
    /// The log's signing key (the same one the writer uses). `None`: the default, as for
    /// [`AuditConfig::signing_key`](crate::AuditConfig::signing_key).
    pub signing_key: Option<PathBuf>,
    /// Records per zstd frame (at least 1): what `query` decodes to find one record.
    /// Default 256.
    pub frame_records: usize,
    /// zstd compression level (1-22). Default 3: twice as fast as 9 for about 6 more bytes
    /// per record (BENCHMARKS.md).
    pub level: i32,
    /// Retention the background [`Sealer`] applies after each pass (see
    /// [`apply_retention`](crate::apply_retention)); [`seal_segments`] ignores it.
    pub retention: Option<crate::RetentionPolicy>,
    /// Test hook: stop the pass right after this step, as a crash there would.
    #[doc(hidden)]
    pub crash_after: Option<SealStep>,
}

impl Default for SealOptions {
    fn default() -> Self {
        Self { signing_key: None, frame_records: 256, level: 3, retention: None, crash_after: None }
    }
}

/// A step of sealing one segment, for crash tests.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealStep {
    /// Half of the temporary file written, not synced.
    TempPartial,
    /// The temporary file written and fsynced.
    TempWritten,
    /// Renamed into place; the plain file still there.
    Renamed,
}

/// One segment sealed by a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSegment {
    /// Its logical name.
    pub segment: String,
    /// Records it holds.
    pub records: u64,
    /// Bytes of the plain segment.
    pub plain_bytes: u64,
    /// Bytes of the sealed file.
    pub sealed_bytes: u64,
    /// zstd frames.
    pub frames: usize,
}

/// What a sealing pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealReport {
    /// Segments sealed, in order.
    pub sealed: Vec<SealedSegment>,
    /// Plain files removed because their sealed copy was complete and identical (a pass
    /// interrupted after its rename).
    pub leftovers_removed: usize,
    /// Why the pass stopped before the last segment, when it did (waiting for a
    /// checkpoint, another sealer running). Not an error.
    pub waiting: Option<String>,
}

/// Seals every plain segment of the log in `dir` that the writer has moved past and a
/// signed checkpoint covers. Runs beside a writer (it never touches the last segment).
///
/// Fails with [`AuditError::Untrusted`] when a segment's chain is broken or contradicts a
/// signed checkpoint (nothing is sealed from there on: run `palisade audit verify`), and
/// with [`AuditError::Key`] when the signing key is missing.
pub fn seal_segments(dir: &Path, options: &SealOptions) -> Result<SealReport, AuditError> {
    let mut report = SealReport::default();
    let lock_path = dir.join(SEAL_LOCK_FILE);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| AuditError::io(&lock_path, "cannot open", e))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            report.waiting = Some("another sealing pass holds the log".into());
            return Ok(report);
        }
        Err(fs::TryLockError::Error(e)) => return Err(AuditError::io(&lock_path, "cannot lock", e)),
    }
    remove_temporaries(dir)?;
    let (segments, _) = segment::list(dir)?;
    if segments.len() < 2 {
        return Ok(report);
    }
    let key_path = match &options.signing_key {
        Some(path) => path.clone(),
        None => default_signing_key(dir)?,
    };
    crate::resume::key_outside(dir, &key_path)?;
    let key = SigningKey::load(&key_path)?.ok_or_else(|| {
        AuditError::Key(format!("{}: no signing key there, and sealing signs with it", key_path.display()))
    })?;
    let log = LogCheckpoints::read(dir, &key.public())?;
    let mut sealer = Pass { dir, options, key: &key, log: &log, report: &mut report };
    // Sealed segments are a prefix of the trail; each was checked when it was sealed, so
    // the chain continues from the last one's signed head (or from the genesis).
    let first_plain = segments.iter().position(|s| !s.sealed).unwrap_or(segments.len());
    let mut prev = match first_plain.checked_sub(1) {
        Some(last_sealed) if first_plain < segments.len() => {
            sealer.sealed_head(&segments[last_sealed], &segments[first_plain])?
        }
        _ => log.genesis_link,
    };
    for (i, seg) in segments.iter().enumerate().take(segments.len() - 1).skip(first_plain) {
        if i == 0 && seg.first_seq != 0 {
            return Err(sealer.untrusted(format!(
                "{} is the first segment: records from seq 0 are missing",
                seg.file_name()
            )));
        }
        if seg.sealed {
            return Err(sealer.untrusted(format!(
                "{} is sealed but follows a plain segment: segments were moved",
                seg.file_name()
            )));
        }
        match sealer.seal_one(seg, &segments[i + 1..], prev)? {
            Some(head) => prev = head,
            None => break,
        }
        if options.crash_after.is_some() {
            break;
        }
    }
    Ok(report)
}

/// The log's genesis, and where to find its later checkpoints.
struct LogCheckpoints {
    path: PathBuf,
    genesis: Checkpoint,
    genesis_link: Hash,
}

impl LogCheckpoints {
    fn read(dir: &Path, key: &PublicKey) -> Result<Self, AuditError> {
        let untrusted = |problem: String| AuditError::Untrusted { dir: dir.to_owned(), problem };
        let mut lines = CheckpointLines::new(dir);
        let Some((_, first)) = lines.next_line()? else {
            return Err(untrusted(format!("{CHECKPOINT_FILE} is missing or empty: no genesis checkpoint")));
        };
        let first = first.to_vec();
        if checkpoint::schema_of(&first).as_deref() == Some(LEGACY_CHECKPOINT_SCHEMA) {
            return Err(AuditError::Legacy { dir: dir.to_owned() });
        }
        let genesis = checkpoint::verify_line(&first, key)
            .map_err(|p| untrusted(format!("the genesis checkpoint does not verify: {p}")))?;
        if genesis.kind != CheckpointKind::Genesis {
            return Err(untrusted("the first checkpoint is not a genesis checkpoint".into()));
        }
        Ok(Self { path: dir.join(CHECKPOINT_FILE), genesis_link: checkpoint::genesis_link(&first), genesis })
    }

    /// The first checkpoint line at or after `seq` (signature not yet checked). Reads
    /// `checkpoints.jsonl` backwards from its end, so the cost is the checkpoints written
    /// since that record, not the whole file (a year of checkpoints is about 1.5 GB).
    fn covering(&self, seq: u64) -> Result<Option<Vec<u8>>, AuditError> {
        #[derive(serde::Deserialize)]
        struct Seq {
            seq: Option<u64>,
        }
        let mut found = None;
        for line in segment::lines_backwards(&self.path)? {
            let line = line?;
            match serde_json::from_slice::<Seq>(&line).ok().and_then(|s| s.seq) {
                Some(s) if s >= seq => found = Some(line),
                Some(_) => break,
                // The genesis (no seq) ends the search; other lines without a seq are not
                // checkpoints, skipped here (verify judges them).
                None => {
                    if serde_json::from_slice::<Checkpoint>(&line)
                        .is_ok_and(|c| c.kind == CheckpointKind::Genesis)
                    {
                        break;
                    }
                }
            }
        }
        Ok(found)
    }
}

struct Pass<'a> {
    dir: &'a Path,
    options: &'a SealOptions,
    key: &'a SigningKey,
    log: &'a LogCheckpoints,
    report: &'a mut SealReport,
}

/// What walking a plain segment found.
struct Read {
    builder: Builder,
    last: Option<(u64, Hash)>,
    sha: Sha256,
}

impl Pass<'_> {
    fn untrusted(&self, problem: String) -> AuditError {
        AuditError::Untrusted { dir: self.dir.to_owned(), problem }
    }

    /// The head of an already sealed segment, from its seal checkpoint.
    fn sealed_head(&self, seg: &Segment, next: &Segment) -> Result<Hash, AuditError> {
        let mut file = File::open(&seg.path).map_err(|e| AuditError::io(&seg.path, "cannot open", e))?;
        let trailer = match sealed::read_trailer(&seg.path, &mut file) {
            Ok(trailer) => trailer,
            Err(sealed::TrailerError::Io(e)) => return Err(e),
            Err(sealed::TrailerError::Damaged(what)) => {
                return Err(self.untrusted(format!("{}: {what}", seg.file_name())));
            }
        };
        let cp = checkpoint::verify_line(&trailer.checkpoint, &self.key.public()).map_err(|p| {
            self.untrusted(format!("{}: the seal checkpoint does not verify: {p}", seg.file_name()))
        })?;
        match (cp.kind, cp.seq, cp.hash.as_deref().and_then(parse_hash)) {
            (CheckpointKind::Seal, Some(seq), Some(hash)) if seq + 1 == next.first_seq => Ok(hash),
            _ => Err(self.untrusted(format!(
                "{}: its seal checkpoint does not end where {} begins",
                seg.file_name(),
                next.file_name()
            ))),
        }
    }

    /// Walks a plain segment from `prev`, building its frames.
    fn read_plain(&self, seg: &Segment, prev: Hash) -> Result<Read, AuditError> {
        let mut builder = Builder::new(seg.first_seq, self.options.frame_records, self.options.level)?;
        let mut lines = Lines::open(&seg.path)?;
        let mut sha = Sha256::new();
        let mut last: Option<(u64, Hash)> = None;
        let mut expected = seg.first_seq;
        loop {
            match lines.next_line(&seg.path)? {
                Line::Complete(number, line) => {
                    let link = last.map_or(prev, |(_, h)| h);
                    let (hash, fields) =
                        check_record(line, &seg.name, number, expected, Some(&link), Start::Trusted)
                            .map_err(|p| self.untrusted(format!("refusing to seal: {p}")))?;
                    sha.update(line);
                    sha.update(b"\n");
                    builder.push(line, fields.received.or(fields.completed), fields.request_id.as_deref())?;
                    last = Some((expected, hash));
                    expected += 1;
                }
                Line::End => break,
                Line::Unterminated | Line::Damaged { .. } => {
                    return Err(self.untrusted(format!(
                        "refusing to seal {}: it ends with an incomplete record but is not the last segment",
                        seg.name
                    )));
                }
            }
        }
        Ok(Read { builder, last, sha })
    }

    /// Checks that a signed checkpoint at or after `last` is on the chain. `Ok(None)`
    /// when none covers it yet; else the covering checkpoint (for its window).
    fn vouched(&self, later: &[Segment], last: (u64, Hash)) -> Result<Option<Checkpoint>, AuditError> {
        let Some(line) = self.log.covering(last.0)? else { return Ok(None) };
        let cp = checkpoint::verify_line(&line, &self.key.public())
            .map_err(|p| self.untrusted(format!("a checkpoint in {CHECKPOINT_FILE} does not verify: {p}")))?;
        let target = cp.seq.unwrap_or_default();
        let (mut seq, mut hash) = last;
        // Walk on through the later segments until the checkpoint's record.
        let mut rest = later.iter();
        while seq < target {
            let Some(seg) = rest.next() else { return Ok(None) };
            if seg.sealed || seg.first_seq != seq + 1 {
                return Err(self.untrusted(format!("{} does not follow seq {seq}", seg.file_name())));
            }
            let mut lines = Lines::open(&seg.path)?;
            while seq < target {
                match lines.next_line(&seg.path)? {
                    Line::Complete(number, line) => {
                        let (h, _) =
                            check_record(line, &seg.name, number, seq + 1, Some(&hash), Start::Trusted)
                                .map_err(|p| self.untrusted(format!("refusing to seal: {p}")))?;
                        (seq, hash) = (seq + 1, h);
                    }
                    _ => break,
                }
            }
        }
        if seq != target || cp.hash.as_deref() != Some(to_hex(&hash).as_str()) {
            return Err(self.untrusted(format!(
                "refusing to seal: the signed checkpoint for seq {target} does not match the chain: records were altered"
            )));
        }
        Ok(Some(cp))
    }

    /// Seals `later[0]`'s predecessor `seg`; returns its head, or `None` when it must wait.
    fn seal_one(&mut self, seg: &Segment, later: &[Segment], prev: Hash) -> Result<Option<Hash>, AuditError> {
        // Cheap first: is the segment's last record covered by a checkpoint yet?
        let last_seq = segment::last_line(&seg.path)?
            .and_then(|line| serde_json::from_slice::<crate::chain::ChainFields>(&line).ok())
            .map(|f| f.seq);
        if let Some(seq) = last_seq
            && self.log.covering(seq)?.is_none()
        {
            self.report.waiting =
                Some(format!("{}: waiting for a checkpoint that covers seq {seq}", seg.name));
            return Ok(None);
        }
        let read = self.read_plain(seg, prev)?;
        let Some(last) = read.last else {
            self.report.waiting = Some(format!("{} is empty", seg.name));
            return Ok(None);
        };
        let sealed_path = sealed_path(&seg.path);
        if sealed_path.exists() && self.finish_leftover(seg, &sealed_path, &read, last)? {
            return Ok(Some(last.1));
        }
        let Some(covering) = self.vouched(later, last)? else {
            self.report.waiting =
                Some(format!("{}: waiting for a checkpoint that covers seq {}", seg.name, last.0));
            return Ok(None);
        };
        let mut seal = Checkpoint {
            schema: CHECKPOINT_SCHEMA.to_owned(),
            kind: CheckpointKind::Seal,
            log_id: self.log.genesis.log_id.clone(),
            seq: Some(last.0),
            hash: Some(to_hex(&last.1)),
            segment: Some(seg.name.clone()),
            recovered_from: None,
            time: Timestamp::now(),
            replica_id: self.log.genesis.replica_id.clone(),
            key_id: self.key.public().key_id(),
            every_records: covering.every_records,
            every_ms: covering.every_ms,
            signature: String::new(),
        };
        let mut line = seal.seal(self.key).map_err(|e| AuditError::Serialize(e.to_string()))?;
        line.pop();
        let (mut bytes, index) = read.builder.finish(&seg.name)?;
        let frames_end = bytes.len() as u64;
        bytes.extend(sealed::trailer_bytes(&index, &line, frames_end)?);
        let done = SealedSegment {
            segment: seg.name.clone(),
            records: index.records,
            plain_bytes: index.plain_bytes,
            sealed_bytes: bytes.len() as u64,
            frames: index.frames.len(),
        };
        if !self.write_sealed(seg, &sealed_path, &bytes)? {
            return Ok(None);
        }
        self.report.sealed.push(done);
        Ok(Some(last.1))
    }

    /// Writes the sealed file and replaces the plain one, step by step; `false` when the
    /// test hook stopped it.
    fn write_sealed(&self, seg: &Segment, sealed_path: &Path, bytes: &[u8]) -> Result<bool, AuditError> {
        let mut temp_name = sealed_path.as_os_str().to_owned();
        temp_name.push(TEMP_SUFFIX);
        let temp = PathBuf::from(temp_name);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| AuditError::io(&temp, "cannot create", e))?;
        if self.options.crash_after == Some(SealStep::TempPartial) {
            file.write_all(&bytes[..bytes.len() / 2])
                .map_err(|e| AuditError::io(&temp, "cannot write", e))?;
            return Ok(false);
        }
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| AuditError::io(&temp, "cannot write", e))?;
        drop(file);
        if self.options.crash_after == Some(SealStep::TempWritten) {
            return Ok(false);
        }
        fs::rename(&temp, sealed_path).map_err(|e| AuditError::io(&temp, "cannot rename", e))?;
        sync_dir(self.dir)?;
        if self.options.crash_after == Some(SealStep::Renamed) {
            return Ok(false);
        }
        fs::remove_file(&seg.path).map_err(|e| AuditError::io(&seg.path, "cannot remove", e))?;
        sync_dir(self.dir)?;
        Ok(true)
    }

    /// A sealed file beside its plain original (a pass stopped after the rename): removes
    /// the plain file when the sealed one is complete and identical (`true`); removes the
    /// sealed one otherwise, to seal again (`false`).
    fn finish_leftover(
        &mut self,
        seg: &Segment,
        sealed_path: &Path,
        read: &Read,
        last: (u64, Hash),
    ) -> Result<bool, AuditError> {
        let plain_sha = hex::encode(read.sha.clone().finalize());
        let sealed_seg = Segment { sealed: true, path: sealed_path.to_owned(), ..seg.clone() };
        let identical = self.sealed_matches(&sealed_seg, &plain_sha, last)?;
        if identical {
            fs::remove_file(&seg.path).map_err(|e| AuditError::io(&seg.path, "cannot remove", e))?;
            self.report.leftovers_removed += 1;
        } else {
            tracing::warn!(file = %sealed_path.display(), "removing a sealed segment that does not match its plain original; sealing again");
            fs::remove_file(sealed_path).map_err(|e| AuditError::io(sealed_path, "cannot remove", e))?;
        }
        sync_dir(self.dir)?;
        Ok(identical)
    }

    fn sealed_matches(
        &self,
        sealed_seg: &Segment,
        plain_sha: &str,
        last: (u64, Hash),
    ) -> Result<bool, AuditError> {
        let mut lines = Lines::open_segment(sealed_seg, None)?;
        let mut sha = Sha256::new();
        loop {
            match lines.next_line(&sealed_seg.path)? {
                Line::Complete(_, line) => {
                    sha.update(line);
                    sha.update(b"\n");
                }
                Line::End => break,
                _ => return Ok(false),
            }
        }
        let Some((trailer, _)) = lines.sealed() else { return Ok(false) };
        let signed = checkpoint::verify_line(&trailer.checkpoint, &self.key.public()).ok();
        Ok(hex::encode(sha.finalize()) == plain_sha
            && trailer.index.segment == sealed_seg.name
            && signed.is_some_and(|cp| {
                cp.seq == Some(last.0) && cp.hash.as_deref() == Some(to_hex(&last.1).as_str())
            }))
    }
}

/// The sealed file's path for a plain segment's path.
fn sealed_path(plain: &Path) -> PathBuf {
    let mut name = plain.as_os_str().to_owned();
    name.push(SEALED_SUFFIX);
    PathBuf::from(name)
}

/// Removes temporary files a crashed pass left.
fn remove_temporaries(dir: &Path) -> Result<(), AuditError> {
    let entries = fs::read_dir(dir).map_err(|e| AuditError::io(dir, "cannot list", e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("segment-") && name.ends_with(&format!("{SEALED_SUFFIX}{TEMP_SUFFIX}")) {
            let path = entry.path();
            fs::remove_file(&path).map_err(|e| AuditError::io(&path, "cannot remove", e))?;
            tracing::info!(file = %path.display(), "removed a sealed segment left unfinished by a crash");
        }
    }
    Ok(())
}

/// Counters of a background [`Sealer`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealerStats {
    /// Segments sealed.
    pub segments: u64,
    /// Records in them.
    pub records: u64,
    /// Their plain bytes.
    pub plain_bytes: u64,
    /// Their sealed bytes.
    pub sealed_bytes: u64,
    /// Passes that failed.
    pub errors: u64,
    /// Sealed segments `retention` makes due but keeps because they are not archived
    /// (as of the last pass).
    pub retention_blocked_segments: u64,
    /// Their bytes.
    pub retention_blocked_bytes: u64,
    /// Rotated segments still plain after the last pass (the backlog of sealing: it grows
    /// while sealing fails or waits).
    pub backlog_segments: u64,
    /// Their bytes.
    pub backlog_bytes: u64,
}

#[derive(Default)]
struct SealerShared {
    segments: AtomicU64,
    records: AtomicU64,
    plain_bytes: AtomicU64,
    sealed_bytes: AtomicU64,
    errors: AtomicU64,
    retention_blocked_segments: AtomicU64,
    retention_blocked_bytes: AtomicU64,
    backlog_segments: AtomicU64,
    backlog_bytes: AtomicU64,
}

/// Seals a log's rotated segments in the background: one pass every `every`, on its own
/// thread, beside the writer. Stops when dropped.
pub struct Sealer {
    shared: Arc<SealerShared>,
    _thread: crate::Periodic,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").field("stats", &self.stats()).finish()
    }
}

impl Sealer {
    /// Starts sealing the log in `dir`.
    pub fn spawn(dir: PathBuf, options: SealOptions, every: Duration) -> Result<Self, AuditError> {
        let shared = Arc::new(SealerShared::default());
        let state = Arc::clone(&shared);
        let mut last_error = None;
        let thread = crate::Periodic::spawn("palisade-audit-seal", every, move || {
            pass(&dir, &options, &state, &mut last_error)
        })
        .map_err(|e| AuditError::Unavailable(format!("cannot start the audit sealer thread: {e}")))?;
        Ok(Self { shared, _thread: thread })
    }

    /// Counters for metrics.
    pub fn stats(&self) -> SealerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let s = &self.shared;
        SealerStats {
            segments: get(&s.segments),
            records: get(&s.records),
            plain_bytes: get(&s.plain_bytes),
            sealed_bytes: get(&s.sealed_bytes),
            errors: get(&s.errors),
            retention_blocked_segments: get(&s.retention_blocked_segments),
            retention_blocked_bytes: get(&s.retention_blocked_bytes),
            backlog_segments: get(&s.backlog_segments),
            backlog_bytes: get(&s.backlog_bytes),
        }
    }
}

/// One pass: seals what has rotated, applies retention, publishes the backlog.
fn pass(dir: &Path, options: &SealOptions, shared: &SealerShared, last_error: &mut Option<String>) {
    match seal_segments(dir, options) {
        Ok(report) => {
            for s in &report.sealed {
                let add = |c: &AtomicU64, n: u64| c.fetch_add(n, Ordering::Relaxed);
                add(&shared.segments, 1);
                add(&shared.records, s.records);
                add(&shared.plain_bytes, s.plain_bytes);
                add(&shared.sealed_bytes, s.sealed_bytes);
                tracing::info!(
                    segment = %s.segment, records = s.records, plain_bytes = s.plain_bytes,
                    sealed_bytes = s.sealed_bytes, frames = s.frames, "sealed an audit segment"
                );
            }
            *last_error = None;
        }
        Err(e) => {
            shared.errors.fetch_add(1, Ordering::Relaxed);
            let text = e.to_string();
            if last_error.as_deref() != Some(text.as_str()) {
                tracing::error!(error = %text, "audit sealing failed; plain segments are kept");
            }
            *last_error = Some(text);
        }
    }
    if let Some(policy) = &options.retention {
        retain(dir, policy, shared);
    }
    if let Ok((segments, _)) = segment::list(dir) {
        let rotated = segments.len().saturating_sub(1);
        let plain: Vec<&Segment> = segments.iter().take(rotated).filter(|s| !s.sealed).collect();
        let bytes = plain.iter().filter_map(|s| fs::metadata(&s.path).ok()).map(|m| m.len()).sum();
        shared.backlog_segments.store(plain.len() as u64, Ordering::Relaxed);
        shared.backlog_bytes.store(bytes, Ordering::Relaxed);
    }
}

/// Applies retention after a pass: records what is blocked, and logs when that changes.
fn retain(dir: &Path, policy: &crate::RetentionPolicy, shared: &SealerShared) {
    match crate::apply_retention(dir, policy, Timestamp::now()) {
        Ok(report) => {
            let blocked = if report.refused.is_some() { report.due.len() as u64 } else { 0 };
            let before = shared.retention_blocked_segments.swap(blocked, Ordering::Relaxed);
            shared
                .retention_blocked_bytes
                .store(if blocked > 0 { report.due_bytes } else { 0 }, Ordering::Relaxed);
            if let Some(why) = report.refused.filter(|_| blocked != before) {
                tracing::warn!(
                    segments = blocked, bytes = report.due_bytes, oldest = %report.due.first().map_or("", String::as_str),
                    "audit retention keeps segments it would delete: {why}"
                );
            }
        }
        Err(e) => {
            shared.errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "audit retention could not examine the trail");
        }
    }
}
