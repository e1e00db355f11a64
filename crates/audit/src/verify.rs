//! `verify`: recompute the chain, check seq continuity, every checkpoint, the chain's start
//! at the genesis checkpoint, and that no more records follow the last checkpoint than a
//! crash can leave.

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::chain::{Hash, to_hex};
use crate::checkpoint::{
    self, CHECKPOINT_FILE, CHECKPOINT_SCHEMA, Checkpoint, CheckpointKind, CheckpointProblem,
    CheckpointWindow, LEGACY_CHECKPOINT_SCHEMA,
};
use crate::key::{LEGACY_PUBLIC_KEY_FILE, PublicKey, default_signing_key, public_key_path};
use crate::segment::{self, Segment};
use crate::walk::{CheckpointLines, Start, Walk, first_record, problem, starts_like_legacy};
use crate::{AuditError, Timestamp};

/// Which public key checkpoints are verified with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KeySource {
    /// The public key beside the log's default signing key: `keys/audit-signing.pub` in
    /// the directory that holds the log directory (`$PALISADE_HOME/keys/` for
    /// `$PALISADE_HOME/audit`), never a file inside the log directory. For a log written
    /// before genesis checkpoints, the `replica-key.pub` inside it (the report says what
    /// that is worth).
    #[default]
    Default,
    /// The public key in this file (base64 text, as the writer writes it).
    File(PathBuf),
    /// This key, obtained out of band: the strongest choice.
    Pinned(PublicKey),
}

/// What to verify, and with which key.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Start at the segment that holds this seq (its first record's `prev_hash` is then
    /// trusted). `None`: from seq 0, which must link to the genesis checkpoint.
    pub from_seq: Option<u64>,
    /// The key checkpoints must be signed with.
    pub key: KeySource,
}

/// The first thing found wrong, naming the place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The seq concerned (the record's, or the one expected there).
    pub seq: Option<u64>,
    /// The file (a segment, or `checkpoints.jsonl`).
    pub segment: Option<String>,
    /// The 1-based line in that file.
    pub line: Option<u64>,
    /// What is wrong.
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.segment, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}: ")?,
            (Some(file), None) => write!(f, "{file}: ")?,
            _ => {}
        }
        if let Some(seq) = self.seq {
            write!(f, "seq {seq}: ")?;
        }
        f.write_str(&self.what)
    }
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    /// True when no problem was found.
    pub ok: bool,
    /// The log was written before genesis checkpoints (a `v1` log): never `ok`, see
    /// `first_problem` for what the check found.
    pub legacy: bool,
    /// The log's id, from its genesis checkpoint.
    pub log_id: Option<String>,
    /// When the log was created, from its genesis checkpoint.
    pub created: Option<Timestamp>,
    /// Id of the public key the checkpoints were verified with.
    pub key_id: Option<String>,
    /// Where that key came from (`pinned by the caller`, or a file).
    pub key_source: Option<String>,
    /// The writer's checkpoint window in force after the last checkpoint checked.
    pub window: Option<CheckpointWindow>,
    /// Records whose hash and link were checked.
    pub records: u64,
    /// Segment files read.
    pub segments: usize,
    /// Of those, sealed segments whose frames, index and signed seal checkpoint checked.
    pub sealed_segments: usize,
    /// Checkpoints (other than the genesis) whose signature verified.
    pub checkpoints: usize,
    /// Of those, the ones matched against a record of the verified range.
    pub checkpoints_matched: usize,
    /// Of those, recovery checkpoints: each marks an unclean stop after which the next
    /// writer signed the records its predecessor had left unsigned.
    pub recoveries: usize,
    /// First seq checked.
    pub first_seq: Option<u64>,
    /// Last seq checked.
    pub last_seq: Option<u64>,
    /// Hash of the last record checked (the chain head).
    pub head: Option<String>,
    /// Time of the last valid checkpoint.
    pub last_checkpoint: Option<Timestamp>,
    /// Records after the last checkpoint: intact as far as the chain shows, not yet
    /// covered by a signature, and within one checkpoint window (a running writer, or a
    /// crash). 0 after a clean close.
    pub unsigned_records: u64,
    /// The last segment ends with an unterminated line: a write interrupted by a crash,
    /// never acknowledged. Reported, not a failure; the writer truncates it on open.
    pub incomplete_tail: bool,
    /// The first problem, when `ok` is false.
    pub first_problem: Option<Problem>,
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.first_problem {
            Some(problem) => writeln!(f, "FAILED: {problem}")?,
            None => writeln!(f, "OK")?,
        }
        if let (Some(id), Some(created)) = (&self.log_id, self.created) {
            writeln!(f, "log: {id}, created {created}")?;
        }
        if let (Some(id), Some(source)) = (&self.key_id, &self.key_source) {
            writeln!(f, "key: {id} ({source})")?;
        }
        let range = match (self.first_seq, self.last_seq) {
            (Some(a), Some(b)) => format!(" (seq {a}..={b})"),
            _ => String::new(),
        };
        writeln!(f, "records checked: {}{range}", self.records)?;
        writeln!(f, "segments: {} ({} sealed)", self.segments, self.sealed_segments)?;
        writeln!(
            f,
            "checkpoints: {} valid, {} matched against the chain",
            self.checkpoints, self.checkpoints_matched
        )?;
        if let Some(head) = &self.head {
            writeln!(f, "chain head: {head}")?;
        }
        if let Some(time) = self.last_checkpoint {
            writeln!(f, "last checkpoint: {time}")?;
        }
        if let Some(window) = self.window {
            writeln!(f, "checkpoint window: {} records or {}", window.records, seconds(window.interval))?;
        }
        if self.unsigned_records > 0 {
            writeln!(
                f,
                "records after the last checkpoint (not yet signed, within one window): {}",
                self.unsigned_records
            )?;
        }
        if self.recoveries > 0 {
            writeln!(f, "unclean stops recovered (recovery checkpoints): {}", self.recoveries)?;
        }
        if self.incomplete_tail {
            writeln!(f, "incomplete final record (never acknowledged)")?;
        }
        Ok(())
    }
}

fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 { format!("{} s", d.as_secs()) } else { format!("{:.3} s", d.as_secs_f64()) }
}

/// The problem of a log with records and no genesis checkpoint.
pub(crate) const NO_GENESIS: &str = "the log holds records but checkpoints.jsonl is missing or empty, so it has no genesis checkpoint: checkpoints were deleted, and nothing vouches for the records";

/// The problem reported for every log written before genesis checkpoints.
fn legacy_problem(report: &VerifyReport) -> String {
    format!(
        "legacy log: written before genesis checkpoints, with its signing key inside the log directory, so whoever could \
         write the directory could have re-chained and re-signed it, and a cut tail cannot be told from a crash. \
         As far as it goes, the chain ({} records) and {} checkpoints are consistent. Keep it as an archive; Palisade will \
         not extend it: move the directory aside so that the next start begins a new chain (see docs/audit.md)",
        report.records, report.checkpoints
    )
}

/// The format of the log being verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Current,
    Legacy,
}

/// Verifies the log in `dir`: that its first checkpoint is a genesis checkpoint signed by
/// the key and that record 0 links to it; every record's hash and link to its predecessor;
/// seq continuity within and across segments; every checkpoint's signature; that each
/// checkpoint's (seq, hash, segment) is on the chain and not beyond its end; and that no
/// more records follow a checkpoint than the writer's window allows (by count, and by the
/// records' time span for the records after the last one). Stops at the first problem and
/// names it. Reads only complete lines, and re-reads checkpoints a running writer added, so
/// it can run while a writer appends.
///
/// An `Err` means the log could not be examined at all (unreadable directory, or signed
/// checkpoints but no public key); a damaged log is an `Ok` report with `ok == false`.
pub fn verify(dir: &Path, options: &VerifyOptions) -> Result<VerifyReport, AuditError> {
    if let Err(e) = std::fs::metadata(dir) {
        return Err(AuditError::io(dir, "cannot read", e));
    }
    let mut report = VerifyReport { ok: true, ..VerifyReport::default() };
    // Checkpoints first: whatever they cover was durable before the segments are listed.
    let mut file = CheckpointLines::new(dir);
    let first = file.next_line()?.map(|(number, line)| (number, line.to_vec()));
    let Some((number, line)) = first else {
        let (segments, odd) = segment::list(dir)?;
        if let Some(name) = odd.first() {
            return Ok(fail(report, misnamed(name)));
        }
        return match first_record(&segments)? {
            Some(first) if starts_like_legacy(&first) => {
                report.legacy = true;
                let found = Run::new(dir, options, Format::Legacy, file, &mut report).check(&segments)?;
                Ok(conclude(report, found))
            }
            None if segments.iter().all(|s| std::fs::metadata(&s.path).is_ok_and(|m| m.len() == 0)) => {
                Ok(report)
            }
            _ => Ok(fail(report, problem(None, CHECKPOINT_FILE, None, NO_GENESIS))),
        };
    };
    let format = format_of(&line);
    report.legacy = format == Format::Legacy;
    let mut run = Run::new(dir, options, format, file, &mut report);
    let found = walk(&mut run, dir, number, &line)?;
    Ok(conclude(report, found))
}

/// The signed checkpoint that covers a record: the first at or after it whose hash matched
/// the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoveringCheckpoint {
    /// The seq it names.
    pub seq: u64,
    /// Its 1-based line in `checkpoints.jsonl`.
    pub line: u64,
    /// When it was signed.
    pub time: Timestamp,
}

/// Where one record stands in its chain: the outcome of [`verify_record`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordVerification {
    /// The seq asked about.
    pub seq: u64,
    /// The record's hash recomputed matches, and its `prev_hash` is the hash of the record
    /// before it (for seq 0, the genesis checkpoint's link). False when the record was not
    /// reached, failed, or its predecessor is no longer in the log (retention).
    pub chained: bool,
    /// The signed checkpoint covering it; `None` while it is among the records after the
    /// last checkpoint (a running writer signs them within one window).
    pub checkpoint: Option<CoveringCheckpoint>,
    /// The range checked on the way (from the segment holding the record before it, to the
    /// covering checkpoint or the end of the log) and the first problem found there.
    pub report: VerifyReport,
}

impl RecordVerification {
    /// Chained, covered by a signed checkpoint, and nothing wrong on the way.
    pub fn verified(&self) -> bool {
        self.report.ok && self.chained && self.checkpoint.is_some()
    }
}

/// The checkpoint file's format, from its first line.
fn format_of(first_line: &[u8]) -> Format {
    match checkpoint::schema_of(first_line).as_deref() {
        Some(LEGACY_CHECKPOINT_SCHEMA) => Format::Legacy,
        _ => Format::Current,
    }
}

/// The walk from the genesis checkpoint (`number`, `line`) over every segment, stopping at
/// the first problem (a misnamed file in the directory is one).
fn walk(run: &mut Run<'_>, dir: &Path, number: u64, line: &[u8]) -> Result<Option<Problem>, AuditError> {
    if let Some(problem) = run.first_checkpoint(number, line)? {
        return Ok(Some(problem));
    }
    let (segments, odd) = segment::list(dir)?;
    match odd.first() {
        Some(name) => Ok(Some(misnamed(name))),
        None => run.check(&segments),
    }
}

/// Verifies the chain at one record, with [`verify`]'s own checks over the smallest range
/// that proves it: the record's hash recomputed, its link to the record before it, and the
/// signed checkpoint at or after it that matches the chain (the walk stops there). The
/// genesis and every checkpoint read are verified with `key` as [`verify`] does. A seq past
/// the end of the log is reported as not chained, with no problem.
pub fn verify_record(dir: &Path, seq: u64, key: &KeySource) -> Result<RecordVerification, AuditError> {
    if let Err(e) = std::fs::metadata(dir) {
        return Err(AuditError::io(dir, "cannot read", e));
    }
    let options = VerifyOptions { from_seq: seq.checked_sub(1), key: key.clone() };
    let mut report = VerifyReport { ok: true, ..VerifyReport::default() };
    let mut file = CheckpointLines::new(dir);
    let first = file.next_line()?.map(|(number, line)| (number, line.to_vec()));
    let Some((number, line)) = first else {
        let report = fail(report, problem(None, CHECKPOINT_FILE, None, NO_GENESIS));
        return Ok(RecordVerification { seq, chained: false, checkpoint: None, report });
    };
    let format = format_of(&line);
    report.legacy = format == Format::Legacy;
    let mut run = Run::new(dir, &options, format, file, &mut report);
    run.target = Some(Target { seq, before: false, chained: false, covered: None });
    let found = walk(&mut run, dir, number, &line)?;
    let target = run.target.take();
    let report = conclude(report, found);
    let (chained, checkpoint) = target.map_or((false, None), |t| (t.chained, t.covered));
    Ok(RecordVerification { seq, chained, checkpoint, report })
}

/// The record [`verify_record`] is about, and what the walk found of it.
#[derive(Debug, Clone, Copy)]
struct Target {
    seq: u64,
    /// The record before it passed.
    before: bool,
    chained: bool,
    covered: Option<CoveringCheckpoint>,
}

fn misnamed(name: &str) -> Problem {
    problem(None, name, None, "file name is not segment-<20-digit seq>.jsonl (or .jsonl.zst when sealed)")
}

/// The report with the problem found, if any; a legacy log always fails.
fn conclude(report: VerifyReport, found: Option<Problem>) -> VerifyReport {
    match found {
        Some(problem) => fail(report, problem),
        None if report.legacy => {
            let what = legacy_problem(&report);
            fail(report, Problem { seq: None, segment: None, line: None, what })
        }
        None => report,
    }
}

fn fail(mut report: VerifyReport, problem: Problem) -> VerifyReport {
    report.ok = false;
    report.first_problem = Some(problem);
    report
}

/// The key checkpoints are verified with, and where it came from.
fn resolve_key(dir: &Path, source: &KeySource, format: Format) -> Result<(PublicKey, String), AuditError> {
    match source {
        KeySource::Pinned(key) => Ok((*key, "pinned by the caller".to_owned())),
        KeySource::File(path) => Ok((PublicKey::from_file(path)?, path.display().to_string())),
        KeySource::Default => {
            let (path, note) = match format {
                Format::Legacy => (
                    dir.join(LEGACY_PUBLIC_KEY_FILE),
                    " (inside the log directory: it proves nothing against whoever could write there)",
                ),
                Format::Current => (public_key_path(&default_signing_key(dir)?), ""),
            };
            match PublicKey::from_file(&path) {
                Ok(key) => Ok((key, format!("{}{note}", path.display()))),
                Err(AuditError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    Err(AuditError::Key(format!(
                        "{}: no public key there, and the checkpoints of {} must be checked with one: pass the log's public key with --public-key FILE|BASE64",
                        path.display(),
                        dir.display()
                    )))
                }
                Err(e) => Err(e),
            }
        }
    }
}

/// A record after the last matched checkpoint.
#[derive(Debug, Clone, Copy)]
struct Unsigned {
    seq: u64,
    hash: Hash,
    segment: usize,
    line: u64,
    time: Option<Timestamp>,
}

/// The state of one verification.
struct Run<'r> {
    dir: &'r Path,
    options: &'r VerifyOptions,
    format: Format,
    file: CheckpointLines,
    key: Option<PublicKey>,
    report: &'r mut VerifyReport,
    /// What record 0 links to.
    start: Start,
    log_id: Option<String>,
    /// Valid checkpoints (line number, checkpoint), genesis excluded, in file order.
    checkpoints: Vec<(u64, Checkpoint)>,
    /// How many were read before the segments were listed.
    read_before_scan: usize,
    /// The next checkpoint to match.
    next: usize,
    /// The window in force after the last checkpoint passed (matched or skipped).
    window: Option<CheckpointWindow>,
    /// Where the last matched checkpoint is (`checkpoints.jsonl:<line>`), for messages.
    anchor: String,
    /// The records after the last matched checkpoint (with no window, only the newest).
    unsigned: VecDeque<Unsigned>,
    /// How many records follow the last matched checkpoint.
    since_anchor: u64,
    /// With [`verify_record`]: the record asked about; the walk stops at its checkpoint.
    target: Option<Target>,
    /// The walk stopped at the target's checkpoint, before the end of the log.
    stopped: bool,
}

impl<'r> Run<'r> {
    fn new(
        dir: &'r Path,
        options: &'r VerifyOptions,
        format: Format,
        file: CheckpointLines,
        report: &'r mut VerifyReport,
    ) -> Self {
        Self {
            dir,
            options,
            format,
            file,
            key: None,
            report,
            start: match format {
                Format::Current => Start::Trusted,
                Format::Legacy => Start::Legacy,
            },
            log_id: None,
            checkpoints: Vec::new(),
            read_before_scan: 0,
            next: 0,
            window: None,
            anchor: "the genesis checkpoint".to_owned(),
            unsigned: VecDeque::new(),
            since_anchor: 0,
            target: None,
            stopped: false,
        }
    }

    fn key(&mut self) -> Result<PublicKey, AuditError> {
        if let Some(key) = self.key {
            return Ok(key);
        }
        let (key, source) = resolve_key(self.dir, &self.options.key, self.format)?;
        self.report.key_id = Some(key.key_id());
        self.report.key_source = Some(source);
        Ok(*self.key.insert(key))
    }

    /// Checks the first line (the genesis checkpoint of a current log) and reads the rest.
    fn first_checkpoint(&mut self, number: u64, line: &[u8]) -> Result<Option<Problem>, AuditError> {
        let key = self.key()?;
        if self.format == Format::Legacy {
            if let Some(problem) = self.accept(number, line)? {
                return Ok(Some(problem));
            }
        } else {
            let at = Some(number);
            let genesis = match checkpoint::verify_line(line, &key) {
                Ok(genesis) => genesis,
                Err(e) => return Ok(Some(self.rejected(number, e, "genesis checkpoint"))),
            };
            if genesis.kind != CheckpointKind::Genesis {
                return Ok(Some(problem(
                    genesis.seq,
                    CHECKPOINT_FILE,
                    at,
                    "the first checkpoint is not a genesis checkpoint: the start of checkpoints.jsonl was removed",
                )));
            }
            self.start = Start::Link(checkpoint::genesis_link(line));
            self.window = genesis.window();
            self.report.window = self.window;
            self.report.log_id = Some(genesis.log_id.clone());
            self.report.created = Some(genesis.time);
            self.log_id = Some(genesis.log_id);
        }
        if let Some(problem) = self.read_new_checkpoints()? {
            return Ok(Some(problem));
        }
        self.read_before_scan = self.checkpoints.len();
        Ok(None)
    }

    fn rejected(&self, number: u64, problem: CheckpointProblem, what: &str) -> Problem {
        let at = Some(number);
        let expected = self.report.key_id.clone().unwrap_or_default();
        let source = self.report.key_source.clone().unwrap_or_default();
        match problem {
            CheckpointProblem::Invalid(why) => problem_at(at, format!("not a valid {what}: {why}")),
            CheckpointProblem::OtherKey(id) => problem_at(
                at,
                format!(
                    "{what} names key {id}, not the expected key {expected} ({source}): forged, or verified with the wrong public key"
                ),
            ),
            CheckpointProblem::BadSignature => {
                problem_at(at, format!("{what} signature does not verify: forged or altered"))
            }
        }
    }

    /// Reads the checkpoint lines not read yet.
    fn read_new_checkpoints(&mut self) -> Result<Option<Problem>, AuditError> {
        while let Some((number, line)) = self.file.next_line()? {
            let line = line.to_vec();
            if let Some(problem) = self.accept(number, &line)? {
                return Ok(Some(problem));
            }
        }
        Ok(None)
    }

    /// Verifies a (non-genesis) checkpoint line and appends it to the list.
    fn accept(&mut self, number: u64, line: &[u8]) -> Result<Option<Problem>, AuditError> {
        let key = self.key()?;
        let at = Some(number);
        let checkpoint = match checkpoint::verify_line(line, &key) {
            Ok(checkpoint) => checkpoint,
            Err(e) => return Ok(Some(self.rejected(number, e, "checkpoint"))),
        };
        let expected_schema = match self.format {
            Format::Current => CHECKPOINT_SCHEMA,
            Format::Legacy => LEGACY_CHECKPOINT_SCHEMA,
        };
        if checkpoint.schema != expected_schema {
            return Ok(Some(problem_at(
                at,
                format!("a {} checkpoint in a log of {expected_schema} checkpoints", checkpoint.schema),
            )));
        }
        if checkpoint.kind == CheckpointKind::Genesis {
            return Ok(Some(problem_at(
                at,
                "a second genesis checkpoint: checkpoints of another log were mixed in",
            )));
        }
        if checkpoint.kind == CheckpointKind::Seal {
            return Ok(Some(problem_at(
                at,
                "a seal checkpoint belongs at the end of its sealed segment, not in checkpoints.jsonl: copied there",
            )));
        }
        if let Some(log_id) = &self.log_id
            && &checkpoint.log_id != log_id
        {
            return Ok(Some(problem_at(
                at,
                format!(
                    "checkpoint of log {}, not of this log ({log_id}): copied from another log",
                    checkpoint.log_id
                ),
            )));
        }
        let seq = checkpoint.seq.unwrap_or_default();
        if let Some((_, previous)) = self.checkpoints.last() {
            let before = previous.seq.unwrap_or_default();
            if seq <= before {
                return Ok(Some(problem(
                    Some(seq),
                    CHECKPOINT_FILE,
                    at,
                    format!("checkpoint seq {seq} does not follow seq {before}: reordered"),
                )));
            }
        }
        self.report.last_checkpoint = Some(checkpoint.time);
        self.report.checkpoints += 1;
        if checkpoint.kind == CheckpointKind::Recovery {
            self.report.recoveries += 1;
        }
        self.checkpoints.push((number, checkpoint));
        Ok(None)
    }

    /// Walks the chain, matching checkpoints and judging the records after each.
    fn check(&mut self, segments: &[Segment]) -> Result<Option<Problem>, AuditError> {
        let from_seq = self.options.from_seq;
        let start = match from_seq {
            Some(from) => segments.iter().rposition(|s| s.first_seq <= from).unwrap_or(0),
            None => 0,
        };
        let Some(first) = segments.get(start) else {
            if let Some((line, cp)) = self.checkpoints.last() {
                let seq = cp.seq.unwrap_or_default();
                return Ok(Some(problem(
                    Some(seq),
                    CHECKPOINT_FILE,
                    Some(*line),
                    format!("checkpoint covers seq {seq} but there are no segments: the log was deleted"),
                )));
            }
            return Ok(None);
        };
        if from_seq.is_none() && first.first_seq != 0 {
            return Ok(Some(problem(
                Some(0),
                &first.name,
                None,
                format!(
                    "the log starts at seq {} instead of 0: earlier segments are missing (use --from to verify a retained suffix)",
                    first.first_seq
                ),
            )));
        }
        let walk_start = if from_seq.is_some() { Start::Trusted } else { self.start };
        let mut walk = Walk::new(segments, start, walk_start);
        if self.format == Format::Current {
            walk.seal_key = self.key.map(|key| (key, self.log_id.clone()));
        }
        let found = self.walk(&mut walk);
        self.report.segments = walk.segments_read;
        self.report.sealed_segments = walk.sealed_read;
        self.report.incomplete_tail = walk.incomplete_tail;
        if let Some(problem) = found? {
            return Ok(Some(problem));
        }
        if self.stopped {
            return Ok(None);
        }
        if let Some(problem) = self.beyond_the_end(segments) {
            return Ok(Some(problem));
        }
        if let Some(problem) = self.judge_time(&walk)? {
            return Ok(Some(problem));
        }
        self.report.unsigned_records = self.since_anchor;
        Ok(None)
    }

    fn walk(&mut self, walk: &mut Walk<'_>) -> Result<Option<Problem>, AuditError> {
        while let Some(next) = walk.next_record()? {
            let record = match next {
                Ok(record) => record,
                Err(problem) => return Ok(Some(problem)),
            };
            // Checkpoints before the verified range (with --from) only set the window.
            while let Some((_, cp)) = self.checkpoints.get(self.next)
                && cp.seq.unwrap_or_default() < record.seq
            {
                self.window = cp.window().or(self.window);
                self.next += 1;
            }
            if let Some(target) = &mut self.target {
                if record.seq.checked_add(1) == Some(target.seq) {
                    target.before = true;
                } else if record.seq == target.seq {
                    // Seq 0 links to the genesis checkpoint, which only a current log has.
                    target.chained =
                        if target.seq == 0 { walk_links_genesis(self.start) } else { target.before };
                }
            }
            self.report.records += 1;
            self.report.first_seq.get_or_insert(record.seq);
            self.report.last_seq = Some(record.seq);
            self.report.head = Some(to_hex(&record.hash));
            self.unsigned.push_back(Unsigned {
                seq: record.seq,
                hash: record.hash,
                segment: record.segment,
                line: record.line,
                time: record.time,
            });
            self.since_anchor += 1;
            if let Some(problem) = self.match_checkpoints(walk) {
                return Ok(Some(problem));
            }
            if self.target.is_some_and(|t| t.covered.is_some()) {
                self.stopped = true;
                return Ok(None);
            }
            let Some(window) = self.window else {
                // No window (a legacy log): checkpoints were all read before the walk and are
                // matched as their record passes, so only the newest record needs keeping.
                while self.unsigned.len() > 1 {
                    self.unsigned.pop_front();
                }
                continue;
            };
            if self.unsigned.len() as u64 > window.records {
                // A running writer may have signed them since the checkpoints were read.
                if let Some(problem) = self.read_new_checkpoints()? {
                    return Ok(Some(problem));
                }
                if let Some(problem) = self.match_checkpoints(walk) {
                    return Ok(Some(problem));
                }
                if let Some(window) = self.window
                    && self.unsigned.len() as u64 > window.records
                {
                    return Ok(Some(self.too_many(walk, window)));
                }
            }
        }
        Ok(None)
    }

    /// Matches the checkpoints that name records held in `unsigned`.
    fn match_checkpoints(&mut self, walk: &Walk<'_>) -> Option<Problem> {
        loop {
            let (Some((cp_line, cp)), Some(first), Some(last)) =
                (self.checkpoints.get(self.next), self.unsigned.front(), self.unsigned.back())
            else {
                return None;
            };
            let seq = cp.seq.unwrap_or_default();
            if seq > last.seq {
                return None;
            }
            let Some(record) =
                seq.checked_sub(first.seq).and_then(|i| self.unsigned.get(i as usize)).copied()
            else {
                // Seqs increase and records are matched in order, so this cannot happen; were
                // it to, the checkpoint would go unchecked, so it is a finding, not a skip.
                return Some(problem(
                    Some(seq),
                    CHECKPOINT_FILE,
                    Some(*cp_line),
                    "checkpoint names a record before the ones left to match: reordered",
                ));
            };
            let segment = walk.segment_name(record.segment);
            let file = walk.file_name(record.segment);
            let at = |what: String| problem(Some(seq), &file, Some(record.line), what);
            let hash = to_hex(&record.hash);
            if cp.hash.as_deref() != Some(hash.as_str()) {
                return Some(at(format!(
                    "the signed checkpoint ({CHECKPOINT_FILE}:{cp_line}) has hash {} for this seq but the chain has {hash}: records up to here were altered and re-chained",
                    cp.hash.as_deref().unwrap_or_default()
                )));
            }
            if cp.segment.as_deref() != Some(segment) {
                return Some(at(format!(
                    "the signed checkpoint ({CHECKPOINT_FILE}:{cp_line}) places this seq in {}",
                    cp.segment.as_deref().unwrap_or_default()
                )));
            }
            self.report.checkpoints_matched += 1;
            if let Some(target) = &mut self.target
                && target.chained
                && target.covered.is_none()
                && seq >= target.seq
            {
                target.covered = Some(CoveringCheckpoint { seq, line: *cp_line, time: cp.time });
            }
            self.window = cp.window().or(self.window);
            self.report.window = self.window.or(self.report.window);
            self.anchor = format!("{CHECKPOINT_FILE}:{cp_line}, seq {seq}");
            let keep = (last.seq - seq) as usize;
            while self.unsigned.len() > keep {
                self.unsigned.pop_front();
            }
            self.since_anchor = keep as u64;
            self.next += 1;
        }
    }

    fn too_many(&self, walk: &Walk<'_>, window: CheckpointWindow) -> Problem {
        let first = self.unsigned.front().map_or(0, |u| u.seq);
        let (seq, segment, line) = match self.unsigned.back() {
            Some(u) => (u.seq, walk.file_name(u.segment), Some(u.line)),
            None => (first, CHECKPOINT_FILE.to_owned(), None),
        };
        problem(
            Some(seq),
            &segment,
            line,
            format!(
                "more than {} records follow the last checkpoint ({}), from seq {first}: the writer signs at least every {} \
                 records, so no crash leaves this many unsigned. Checkpoints were removed, or records were added without the key",
                window.records, self.anchor, window.records
            ),
        )
    }

    /// Checkpoints read before the scan that name records past the end of the log.
    fn beyond_the_end(&self, segments: &[Segment]) -> Option<Problem> {
        if self.next >= self.read_before_scan {
            return None;
        }
        let (cp_line, cp) = self.checkpoints.get(self.next)?;
        let seq = cp.seq.unwrap_or_default();
        let end = match self.report.last_seq {
            Some(last) => format!("the log ends at seq {last}"),
            None => "the log holds no records there".to_owned(),
        };
        let last_segment = segments.last().map_or(CHECKPOINT_FILE, |s| s.name.as_str());
        Some(problem(
            Some(seq),
            last_segment,
            None,
            format!(
                "the signed checkpoint ({CHECKPOINT_FILE}:{cp_line}) covers seq {seq} but {end}: records were removed from the end (truncated tail or deleted segment)"
            ),
        ))
    }

    /// The records after the last checkpoint must lie within one checkpoint interval.
    fn judge_time(&mut self, walk: &Walk<'_>) -> Result<Option<Problem>, AuditError> {
        let Some(window) = self.window else { return Ok(None) };
        if !exceeds(&self.unsigned, window) {
            return Ok(None);
        }
        if let Some(problem) = self.read_new_checkpoints()? {
            return Ok(Some(problem));
        }
        if let Some(problem) = self.match_checkpoints(walk) {
            return Ok(Some(problem));
        }
        let window = self.window.unwrap_or(window);
        if !exceeds(&self.unsigned, window) {
            return Ok(None);
        }
        let Some((earliest, latest)) = time_span(&self.unsigned) else { return Ok(None) };
        let last = self.unsigned.back().copied();
        let (seq, segment, line) = match last {
            Some(u) => (Some(u.seq), walk.file_name(u.segment), Some(u.line)),
            None => (None, CHECKPOINT_FILE.to_owned(), None),
        };
        Ok(Some(Problem {
            seq,
            segment: Some(segment),
            line,
            what: format!(
                "the {} records after the last checkpoint ({}) span {earliest} to {latest}, more than the writer's checkpoint \
                 interval ({}) plus {}: a running writer would have signed them, so checkpoints were removed",
                self.unsigned.len(),
                self.anchor,
                seconds(window.interval),
                seconds(checkpoint::WINDOW_TOLERANCE),
            ),
        }))
    }
}

/// Whether a walk from `start` checks record 0's link (to the genesis checkpoint).
fn walk_links_genesis(start: Start) -> bool {
    matches!(start, Start::Link(_))
}

fn problem_at(line: Option<u64>, what: impl Into<String>) -> Problem {
    problem(None, CHECKPOINT_FILE, line, what)
}

/// The earliest and latest time among `records`.
fn time_span<'a>(records: impl IntoIterator<Item = &'a Unsigned>) -> Option<(Timestamp, Timestamp)> {
    records.into_iter().filter_map(|u| u.time).fold(None, |span, t| match span {
        None => Some((t, t)),
        Some((a, b)) => Some((a.min(t), b.max(t))),
    })
}

/// Whether the records' times spread further than a window allows.
fn exceeds<'a>(records: impl IntoIterator<Item = &'a Unsigned>, window: CheckpointWindow) -> bool {
    time_span(records).is_some_and(|(a, b)| spread(a, b) > window.span_allowed())
}

/// The time from `a` to `b` (zero when `b` is earlier).
pub(crate) fn spread(a: Timestamp, b: Timestamp) -> Duration {
    Duration::from_millis(u64::try_from(b.unix_millis().saturating_sub(a.unix_millis())).unwrap_or(0))
}

/// Judges the records after the last checkpoint as the writer does at open: how many, and
/// how far apart in time. `Err` says what is wrong.
pub(crate) fn judge_tail(
    window: CheckpointWindow,
    count: u64,
    span: Option<(Timestamp, Timestamp)>,
) -> Result<(), String> {
    if count > window.records {
        return Err(format!(
            "{count} records follow the last checkpoint, but the writer signs at least every {} records, so a crash leaves at most that many unsigned",
            window.records
        ));
    }
    if let Some((earliest, latest)) = span
        && spread(earliest, latest) > window.span_allowed()
    {
        return Err(format!(
            "the {count} records after the last checkpoint span {earliest} to {latest}, more than the checkpoint interval ({}) plus {}: \
             a running writer would have signed them",
            seconds(window.interval),
            seconds(checkpoint::WINDOW_TOLERANCE)
        ));
    }
    Ok(())
}
