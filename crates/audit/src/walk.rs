//! Reading a log's files: complete lines of segments and of `checkpoints.jsonl`, and a
//! walk along the chain that checks each record's seq, link and hash.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::chain::{self, ChainFields, Hash, Sealed, to_hex};
use crate::checkpoint::CHECKPOINT_FILE;
use crate::record::SCHEMA;
use crate::segment::Segment;
use crate::verify::Problem;
use crate::{AuditError, Timestamp};

/// A [`Problem`] in `file`.
pub(crate) fn problem(seq: Option<u64>, file: &str, line: Option<u64>, what: impl Into<String>) -> Problem {
    Problem { seq, segment: Some(file.to_owned()), line, what: what.into() }
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

/// Reads the complete lines of `checkpoints.jsonl` and, later, the lines appended since
/// (a running writer keeps adding them).
pub(crate) struct CheckpointLines {
    path: PathBuf,
    reader: Option<BufReader<File>>,
    /// Bytes of complete lines consumed.
    offset: u64,
    /// 1-based number of the line last returned.
    number: u64,
    buf: Vec<u8>,
}

impl CheckpointLines {
    pub(crate) fn new(dir: &Path) -> Self {
        Self { path: dir.join(CHECKPOINT_FILE), reader: None, offset: 0, number: 0, buf: Vec::new() }
    }

    /// The next complete line (its number and bytes), `None` at the end for now.
    pub(crate) fn next_line(&mut self) -> Result<Option<(u64, &[u8])>, AuditError> {
        let path = &self.path;
        let reader = match &mut self.reader {
            Some(reader) => reader,
            None => {
                let mut file = match File::open(path) {
                    Ok(file) => file,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(AuditError::io(path, "cannot open", e)),
                };
                file.seek(SeekFrom::Start(self.offset))
                    .map_err(|e| AuditError::io(path, "cannot read", e))?;
                self.reader.insert(BufReader::new(file))
            }
        };
        self.buf.clear();
        let n =
            reader.read_until(b'\n', &mut self.buf).map_err(|e| AuditError::io(path, "cannot read", e))?;
        if n == 0 || self.buf.last() != Some(&b'\n') {
            // Reopen next time: an unterminated line may be completed by then.
            self.reader = None;
            return Ok(None);
        }
        self.offset += n as u64;
        self.number += 1;
        Ok(Some((self.number, &self.buf[..n - 1])))
    }
}

/// What the first record of a walk links to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Start {
    /// The genesis checkpoint's link: the walk starts at seq 0 of a current log.
    Link(Hash),
    /// The legacy genesis value of the record's replica: seq 0 of a log written before
    /// genesis checkpoints.
    Legacy,
    /// Whatever the first record says (a walk that starts after seq 0).
    Trusted,
}

/// A record whose seq, link and hash were checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Walked {
    pub(crate) seq: u64,
    pub(crate) hash: Hash,
    /// Index of its segment in the walk's list.
    pub(crate) segment: usize,
    /// Its 1-based line in that segment.
    pub(crate) line: u64,
    /// `completed`, else `received`.
    pub(crate) time: Option<Timestamp>,
}

/// Walks the chain through segments in order, checking each record's seq, link and hash
/// and each segment's name. Stops being useful after the first problem.
pub(crate) struct Walk<'a> {
    segments: &'a [Segment],
    index: usize,
    lines: Option<Lines>,
    expected_seq: u64,
    prev: Option<Hash>,
    start: Start,
    /// Segment files opened.
    pub(crate) segments_read: usize,
    /// The last segment ends with an unterminated line.
    pub(crate) incomplete_tail: bool,
}

impl<'a> Walk<'a> {
    /// A walk from the first record of `segments[from]`.
    pub(crate) fn new(segments: &'a [Segment], from: usize, start: Start) -> Self {
        let expected_seq = segments.get(from).map_or(0, |s| s.first_seq);
        Self {
            segments,
            index: from,
            lines: None,
            expected_seq,
            prev: None,
            start,
            segments_read: 0,
            incomplete_tail: false,
        }
    }

    /// The file name of the walk's segment `index`.
    pub(crate) fn segment_name(&self, index: usize) -> &'a str {
        self.segments.get(index).map_or("", |s| s.name.as_str())
    }

    /// The next checked record, `None` at the end, or the first problem.
    pub(crate) fn next_record(&mut self) -> Result<Option<Result<Walked, Problem>>, AuditError> {
        loop {
            let Some(seg) = self.segments.get(self.index) else { return Ok(None) };
            let is_last = self.index + 1 == self.segments.len();
            if self.lines.is_none() {
                if seg.first_seq != self.expected_seq {
                    return Ok(Some(Err(misplaced_segment(seg, self.expected_seq))));
                }
                self.lines = Some(Lines::open(&seg.path)?);
                self.segments_read += 1;
            }
            let Walk { lines: Some(lines), expected_seq, prev, start, index, .. } = self else {
                continue;
            };
            match lines.next_line(&seg.path)? {
                Line::End => {
                    self.lines = None;
                    self.index += 1;
                }
                Line::Unterminated if is_last => {
                    self.incomplete_tail = true;
                    self.lines = None;
                    self.index += 1;
                    return Ok(None);
                }
                Line::Unterminated => {
                    return Ok(Some(Err(problem(
                        Some(*expected_seq),
                        &seg.name,
                        Some(lines.number),
                        "incomplete record at the end of a segment that is not the last: the segment was truncated",
                    ))));
                }
                Line::Complete(number, line) => {
                    let (hash, time) =
                        match check_record(line, &seg.name, number, *expected_seq, prev.as_ref(), *start) {
                            Ok(checked) => checked,
                            Err(problem) => return Ok(Some(Err(problem))),
                        };
                    let walked = Walked { seq: *expected_seq, hash, segment: *index, line: number, time };
                    *expected_seq += 1;
                    *prev = Some(hash);
                    return Ok(Some(Ok(walked)));
                }
            }
        }
    }
}

fn misplaced_segment(seg: &Segment, expected_seq: u64) -> Problem {
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
    problem(Some(expected_seq), &seg.name, None, what)
}

/// Checks one stored line as the record `expected_seq`, linked to `prev` (or to `start`
/// when it is the first of the walk). Returns its hash and time.
fn check_record(
    line: &[u8],
    file: &str,
    number: u64,
    expected_seq: u64,
    prev: Option<&Hash>,
    start: Start,
) -> Result<(Hash, Option<Timestamp>), Problem> {
    let bad = |seq: u64, what: String| problem(Some(seq), file, Some(number), what);
    let record: ChainFields = serde_json::from_slice(line)
        .map_err(|e| bad(expected_seq, format!("not a valid record ({e}): the line was altered")))?;
    if record.schema != SCHEMA {
        return Err(bad(record.seq, format!("unknown schema {:?}", record.schema)));
    }
    if record.seq != expected_seq {
        return Err(bad(
            record.seq,
            format!("seq {expected_seq} was expected here: a record was deleted, inserted or reordered"),
        ));
    }
    let sealed = Sealed::split(line)
        .ok_or_else(|| bad(record.seq, "the hash is not the line's last field, or is malformed".into()))?;
    let prev = match (prev, start) {
        (Some(prev), _) => {
            if record.prev_hash != to_hex(prev) {
                return Err(bad(
                    record.seq,
                    format!(
                        "prev_hash does not match the hash of seq {}: a record was deleted, inserted, altered or reordered",
                        expected_seq.wrapping_sub(1)
                    ),
                ));
            }
            *prev
        }
        (None, Start::Link(link)) => {
            if record.prev_hash != to_hex(&link) {
                let what = if record.prev_hash == to_hex(&chain::legacy_genesis(&record.replica_id)) {
                    "the first record links to the pre-genesis value, not to this log's genesis checkpoint: a chain was started without the signing key"
                } else {
                    "the first record does not link to the genesis checkpoint: a chain was started without the signing key, or checkpoints.jsonl belongs to another log"
                };
                return Err(bad(record.seq, what.into()));
            }
            link
        }
        (None, Start::Legacy) => {
            let genesis = chain::legacy_genesis(&record.replica_id);
            if record.prev_hash != to_hex(&genesis) {
                return Err(bad(
                    record.seq,
                    "prev_hash of the first record is not the replica's genesis value".into(),
                ));
            }
            genesis
        }
        (None, Start::Trusted) => chain::parse_hash(&record.prev_hash)
            .ok_or_else(|| bad(record.seq, "malformed prev_hash".into()))?,
    };
    let hash = sealed.compute(&prev);
    if hash != sealed.claimed() || record.hash != to_hex(&hash) {
        return Err(bad(record.seq, "hash mismatch: the record's bytes were altered".into()));
    }
    Ok((hash, record.time()))
}

/// The first record of the first segment, if it has one.
pub(crate) fn first_record(segments: &[Segment]) -> Result<Option<ChainFields>, AuditError> {
    let Some(first) = segments.first() else { return Ok(None) };
    let mut lines = Lines::open(&first.path)?;
    match lines.next_line(&first.path)? {
        Line::Complete(_, line) => Ok(serde_json::from_slice(line).ok()),
        _ => Ok(None),
    }
}

/// Whether a log whose checkpoint file is empty holds a chain from before genesis
/// checkpoints (its first record links to the legacy genesis value).
pub(crate) fn starts_like_legacy(first: &ChainFields) -> bool {
    first.seq == 0 && first.prev_hash == to_hex(&chain::legacy_genesis(&first.replica_id))
}
