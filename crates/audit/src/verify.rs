//! `verify`: recompute the chain, check seq continuity and every checkpoint.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::chain::{self, ChainFields, Hash, Sealed};
use crate::checkpoint::{self, CHECKPOINT_FILE, Checkpoint, CheckpointProblem};
use crate::key::{PUBLIC_KEY_FILE, PublicKey};
use crate::record::SCHEMA;
use crate::segment;
use crate::{AuditError, Timestamp};

/// What to verify, and with which key.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Start at the segment that holds this seq (its first record's `prev_hash` is then
    /// trusted). `None`: from seq 0, which must link to the genesis value.
    pub from_seq: Option<u64>,
    /// The key checkpoints must be signed with. `None`: read `replica-key.pub` from the
    /// log directory. Auditors should pin the key they obtained out of band.
    pub public_key: Option<PublicKey>,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// True when no problem was found.
    pub ok: bool,
    /// Records whose hash and link were checked.
    pub records: u64,
    /// Segment files read.
    pub segments: usize,
    /// Checkpoints whose signature verified.
    pub checkpoints: usize,
    /// Of those, the ones matched against a record of the verified range.
    pub checkpoints_matched: usize,
    /// First seq checked.
    pub first_seq: Option<u64>,
    /// Last seq checked.
    pub last_seq: Option<u64>,
    /// Hash of the last record checked (the chain head).
    pub head: Option<String>,
    /// Time of the last valid checkpoint.
    pub last_checkpoint: Option<Timestamp>,
    /// Records after the last checkpoint: intact as far as the chain shows, but not yet
    /// covered by a signature (0 after a clean close).
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
        let range = match (self.first_seq, self.last_seq) {
            (Some(a), Some(b)) => format!(" (seq {a}..={b})"),
            _ => String::new(),
        };
        writeln!(f, "records checked: {}{range}", self.records)?;
        writeln!(f, "segments: {}", self.segments)?;
        writeln!(
            f,
            "checkpoints: {} valid, {} matched against the chain",
            self.checkpoints, self.checkpoints_matched
        )?;
        if let Some(head) = &self.head {
            writeln!(f, "chain head: {head}")?;
        }
        if self.unsigned_records > 0 {
            writeln!(f, "records after the last checkpoint (not yet signed): {}", self.unsigned_records)?;
        }
        if self.incomplete_tail {
            writeln!(f, "incomplete final record (never acknowledged)")?;
        }
        Ok(())
    }
}

/// Reads complete lines of a file; reports an unterminated final piece.
pub(crate) struct Lines {
    reader: BufReader<File>,
    buf: Vec<u8>,
    /// 1-based number of the line last returned.
    number: u64,
}

/// One read from [`Lines`].
pub(crate) enum Line<'a> {
    /// A complete line (its 1-based number, its bytes without the newline).
    Complete(u64, &'a [u8]),
    /// Bytes at the end of the file with no newline after them.
    Unterminated,
    /// End of file.
    End,
}

impl Lines {
    pub(crate) fn open(path: &Path) -> Result<Self, AuditError> {
        let file = File::open(path).map_err(|e| AuditError::io(path, "cannot open", e))?;
        Ok(Self { reader: BufReader::with_capacity(256 * 1024, file), buf: Vec::new(), number: 0 })
    }

    pub(crate) fn next_line(&mut self, path: &Path) -> Result<Line<'_>, AuditError> {
        self.buf.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| AuditError::io(path, "cannot read", e))?;
        if n == 0 {
            return Ok(Line::End);
        }
        self.number += 1;
        match self.buf.strip_suffix(b"\n") {
            Some(line) => Ok(Line::Complete(self.number, line)),
            None => Ok(Line::Unterminated),
        }
    }
}

fn problem(seq: Option<u64>, file: &str, line: Option<u64>, what: impl Into<String>) -> Problem {
    Problem { seq, segment: Some(file.to_owned()), line, what: what.into() }
}

/// Verifies the log in `dir`: every record's hash and link to its predecessor, seq
/// continuity within and across segments, every checkpoint's signature, and that each
/// checkpoint's (seq, hash) is on the chain and not beyond its end. Stops at the first
/// problem and names it. Reads only complete lines, so it can run while a writer appends.
///
/// An `Err` means the log could not be examined at all (unreadable directory, or
/// checkpoints present but no public key); a damaged log is an `Ok` report with
/// `ok == false`.
pub fn verify(dir: &Path, options: &VerifyOptions) -> Result<VerifyReport, AuditError> {
    let mut report = VerifyReport {
        ok: true,
        records: 0,
        segments: 0,
        checkpoints: 0,
        checkpoints_matched: 0,
        first_seq: None,
        last_seq: None,
        head: None,
        last_checkpoint: None,
        unsigned_records: 0,
        incomplete_tail: false,
        first_problem: None,
    };
    if let Err(e) = std::fs::metadata(dir) {
        return Err(AuditError::io(dir, "cannot read", e));
    }
    // Checkpoints first: whatever they cover was durable before we list the segments.
    let checkpoints = match read_checkpoints(dir, options, &mut report)? {
        Ok(checkpoints) => checkpoints,
        Err(problem) => return Ok(fail(report, problem)),
    };
    Ok(match check_chain(dir, options, &checkpoints, &mut report)? {
        Some(problem) => fail(report, problem),
        None => report,
    })
}

fn fail(mut report: VerifyReport, problem: Problem) -> VerifyReport {
    report.ok = false;
    report.first_problem = Some(problem);
    report
}

/// Valid checkpoints with their line numbers, or the first bad one.
fn read_checkpoints(
    dir: &Path,
    options: &VerifyOptions,
    report: &mut VerifyReport,
) -> Result<Result<Vec<(u64, Checkpoint)>, Problem>, AuditError> {
    let path = dir.join(CHECKPOINT_FILE);
    if !path.exists() {
        return Ok(Ok(Vec::new()));
    }
    let mut key = options.public_key;
    let mut lines = Lines::open(&path)?;
    let mut checkpoints: Vec<(u64, Checkpoint)> = Vec::new();
    while let Line::Complete(number, line) = lines.next_line(&path)? {
        let key = match key {
            Some(key) => key,
            None => {
                let public = dir.join(PUBLIC_KEY_FILE);
                if !public.exists() {
                    return Err(AuditError::Key(format!(
                        "{} has checkpoints but {} is missing: pass the replica's public key",
                        path.display(),
                        public.display()
                    )));
                }
                *key.insert(PublicKey::from_file(&public)?)
            }
        };
        let at = Some(number);
        let checkpoint = match checkpoint::verify_line(line, &key) {
            Ok(checkpoint) => checkpoint,
            Err(CheckpointProblem::Invalid(what)) => {
                return Ok(Err(problem(
                    None,
                    CHECKPOINT_FILE,
                    at,
                    format!("not a valid checkpoint: {what}"),
                )));
            }
            Err(CheckpointProblem::OtherKey(id)) => {
                return Ok(Err(problem(
                    None,
                    CHECKPOINT_FILE,
                    at,
                    format!("checkpoint names key {id}, not the expected key {}: forged", key.key_id()),
                )));
            }
            Err(CheckpointProblem::BadSignature) => {
                return Ok(Err(problem(
                    None,
                    CHECKPOINT_FILE,
                    at,
                    "checkpoint signature does not verify: forged or altered",
                )));
            }
        };
        if let Some((_, previous)) = checkpoints.last()
            && checkpoint.seq <= previous.seq
        {
            return Ok(Err(problem(
                Some(checkpoint.seq),
                CHECKPOINT_FILE,
                at,
                format!("checkpoint seq {} does not follow seq {}: reordered", checkpoint.seq, previous.seq),
            )));
        }
        report.last_checkpoint = Some(checkpoint.time);
        checkpoints.push((number, checkpoint));
    }
    report.checkpoints = checkpoints.len();
    Ok(Ok(checkpoints))
}

fn check_chain(
    dir: &Path,
    options: &VerifyOptions,
    checkpoints: &[(u64, Checkpoint)],
    report: &mut VerifyReport,
) -> Result<Option<Problem>, AuditError> {
    let (segments, odd) = segment::list(dir)?;
    if let Some(name) = odd.first() {
        return Ok(Some(problem(None, name, None, "file name is not segment-<20-digit seq>.jsonl")));
    }
    let start = match options.from_seq {
        Some(from) => segments.iter().rposition(|s| s.first_seq <= from).unwrap_or(0),
        None => 0,
    };
    let Some(first) = segments.get(start) else {
        if let Some((line, cp)) = checkpoints.last() {
            return Ok(Some(problem(
                Some(cp.seq),
                CHECKPOINT_FILE,
                Some(*line),
                format!("checkpoint covers seq {} but there are no segments: the log was deleted", cp.seq),
            )));
        }
        return Ok(None);
    };
    if options.from_seq.is_none() && first.first_seq != 0 {
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

    let mut expected_seq = first.first_seq;
    let mut expected_prev: Option<Hash> = None;
    let mut next_checkpoint = 0;
    let mut last_matched: Option<u64> = None;
    for (index, seg) in segments.iter().enumerate().skip(start) {
        let is_last = index + 1 == segments.len();
        report.segments += 1;
        if seg.first_seq != expected_seq {
            let what = if seg.first_seq > expected_seq {
                format!(
                    "segment starts at seq {} but seq {expected_seq} was expected: records {expected_seq}..{} are missing (a segment was deleted or truncated)",
                    seg.first_seq,
                    seg.first_seq - 1
                )
            } else {
                format!(
                    "segment starts at seq {} but seq {expected_seq} was expected: it overlaps records already seen (a segment was inserted or renamed)",
                    seg.first_seq
                )
            };
            return Ok(Some(problem(Some(expected_seq), &seg.name, None, what)));
        }
        let mut lines = Lines::open(&seg.path)?;
        loop {
            let (number, line) = match lines.next_line(&seg.path)? {
                Line::End => break,
                Line::Unterminated if is_last => {
                    report.incomplete_tail = true;
                    break;
                }
                Line::Unterminated => {
                    return Ok(Some(problem(
                        Some(expected_seq),
                        &seg.name,
                        Some(lines.number),
                        "incomplete record at the end of a segment that is not the last: the segment was truncated",
                    )));
                }
                Line::Complete(number, line) => (number, line),
            };
            let at = Some(number);
            let bad = |seq: u64, what: String| Ok(Some(problem(Some(seq), &seg.name, at, what)));
            let record: ChainFields = match serde_json::from_slice(line) {
                Ok(record) => record,
                Err(e) => {
                    return bad(expected_seq, format!("not a valid record ({e}): the line was altered"));
                }
            };
            if record.schema != SCHEMA {
                return bad(record.seq, format!("unknown schema {:?}", record.schema));
            }
            if record.seq != expected_seq {
                return bad(
                    record.seq,
                    format!(
                        "seq {expected_seq} was expected here: a record was deleted, inserted or reordered"
                    ),
                );
            }
            let Some(sealed) = Sealed::split(line) else {
                return bad(record.seq, "the hash is not the line's last field, or is malformed".into());
            };
            let prev = match expected_prev {
                Some(prev) => {
                    if record.prev_hash != crate::chain::to_hex(&prev) {
                        return bad(
                            record.seq,
                            format!(
                                "prev_hash does not match the hash of seq {}: a record was deleted, inserted, altered or reordered",
                                expected_seq.wrapping_sub(1)
                            ),
                        );
                    }
                    prev
                }
                None if expected_seq == 0 => {
                    let genesis = chain::genesis(&record.replica_id);
                    if record.prev_hash != crate::chain::to_hex(&genesis) {
                        return bad(
                            0,
                            "prev_hash of the first record is not the replica's genesis value".into(),
                        );
                    }
                    genesis
                }
                None => match chain::parse_hash(&record.prev_hash) {
                    Some(prev) => prev,
                    None => return bad(record.seq, "malformed prev_hash".into()),
                },
            };
            let hash = sealed.compute(&prev);
            if hash != sealed.claimed() || record.hash != crate::chain::to_hex(&hash) {
                return bad(record.seq, "hash mismatch: the record's bytes were altered".into());
            }
            while checkpoints.get(next_checkpoint).is_some_and(|(_, cp)| cp.seq < record.seq) {
                next_checkpoint += 1;
            }
            if let Some((cp_line, cp)) = checkpoints.get(next_checkpoint)
                && cp.seq == record.seq
            {
                if cp.hash != record.hash {
                    return bad(
                        record.seq,
                        format!(
                            "the signed checkpoint ({CHECKPOINT_FILE}:{cp_line}) has hash {} for this seq but the chain has {}: records up to here were altered and re-chained",
                            cp.hash, record.hash
                        ),
                    );
                }
                if cp.segment != seg.name {
                    return bad(
                        record.seq,
                        format!(
                            "the signed checkpoint ({CHECKPOINT_FILE}:{cp_line}) places this seq in {}",
                            cp.segment
                        ),
                    );
                }
                report.checkpoints_matched += 1;
                last_matched = Some(record.seq);
                next_checkpoint += 1;
            }
            report.records += 1;
            report.first_seq.get_or_insert(record.seq);
            report.last_seq = Some(record.seq);
            expected_seq += 1;
            expected_prev = Some(hash);
        }
    }
    if let Some((cp_line, cp)) = checkpoints.get(next_checkpoint) {
        let end = match report.last_seq {
            Some(last) => format!("the log ends at seq {last}"),
            None => "the log holds no records there".to_owned(),
        };
        let last_segment = segments.last().map_or(CHECKPOINT_FILE, |s| s.name.as_str());
        return Ok(Some(problem(
            Some(cp.seq),
            last_segment,
            None,
            format!(
                "the signed checkpoint ({CHECKPOINT_FILE}:{cp_line}) covers seq {} but {end}: records were removed from the end (truncated tail or deleted segment)",
                cp.seq
            ),
        )));
    }
    report.head = expected_prev.map(|h| crate::chain::to_hex(&h));
    report.unsigned_records = match (report.last_seq, last_matched) {
        (Some(last), Some(signed)) => last - signed,
        (Some(_), None) => report.records,
        (None, _) => 0,
    };
    Ok(None)
}
