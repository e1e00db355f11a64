//! Reading a log's files: complete lines of segments and of `checkpoints.jsonl`, and a
//! walk along the chain that checks each record's seq, link and hash.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::chain::{self, ChainFields, Hash, Sealed, to_hex};
use crate::checkpoint::{self, CHECKPOINT_FILE, Checkpoint, CheckpointKind};
use crate::key::PublicKey;
use crate::record::SCHEMA;
use crate::sealed::{self, FrameEntry, IdFilter, Trailer, TrailerError};
use crate::segment::{SEALED_SUFFIX, Segment};
use crate::verify::Problem;
use crate::{AuditError, Timestamp};

/// A [`Problem`] in `file`.
pub(crate) fn problem(seq: Option<u64>, file: &str, line: Option<u64>, what: impl Into<String>) -> Problem {
    Problem { seq, segment: Some(file.to_owned()), line, what: what.into() }
}

/// Reads complete lines of a segment (plain, or decoded from a sealed file's frames);
/// reports an unterminated final piece.
pub(crate) struct Lines {
    source: Source,
    buf: Vec<u8>,
    /// 1-based number of the line last returned.
    number: u64,
}

enum Source {
    Plain(BufReader<File>),
    Sealed(Box<SealedLines>),
    /// A sealed file whose trailer is damaged: the first read reports it.
    Broken(Option<String>),
}

/// The lines of a sealed segment, decoded one frame at a time.
pub(crate) struct SealedLines {
    path: PathBuf,
    file: File,
    pub(crate) trailer: Trailer,
    /// Frames still to read, in order.
    wanted: VecDeque<usize>,
    /// Every frame is read, so the whole segment's SHA-256 is checked at the end.
    all: bool,
    /// The frame being read.
    frame: Option<usize>,
    data: Vec<u8>,
    pos: usize,
    lines_in_frame: u64,
    sha: Sha256,
    /// A problem was reported: nothing more is read.
    failed: bool,
    /// Frames decoded so far.
    decoded: u64,
}

/// One read from [`Lines`].
pub(crate) enum Line<'a> {
    /// A complete line (its 1-based number, its bytes without the newline).
    Complete(u64, &'a [u8]),
    /// Bytes at the end of the file with no newline after them.
    Unterminated,
    /// A sealed segment that cannot be read as sealed: in frame `frame` (when known), `what`.
    Damaged {
        /// The frame concerned.
        frame: Option<usize>,
        /// What is wrong.
        what: String,
    },
    /// End of file.
    End,
}

impl Lines {
    /// A plain file's lines.
    pub(crate) fn open(path: &Path) -> Result<Self, AuditError> {
        let file = File::open(path).map_err(|e| AuditError::io(path, "cannot open", e))?;
        Ok(Self::plain(file))
    }

    fn plain(file: File) -> Self {
        Self { source: Source::Plain(BufReader::with_capacity(256 * 1024, file)), buf: Vec::new(), number: 0 }
    }

    /// A segment's lines, sealed or plain; `frames` selects a sealed segment's frames
    /// (`None`: all of them, and the segment's digest is checked). A plain segment sealed
    /// since it was listed is read sealed.
    pub(crate) fn open_segment(
        seg: &Segment,
        frames: Option<&dyn Fn(&FrameEntry) -> bool>,
    ) -> Result<Self, AuditError> {
        let (path, sealed) = if seg.sealed {
            (seg.path.clone(), true)
        } else {
            match File::open(&seg.path) {
                Ok(file) => return Ok(Self::plain(file)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let mut name = seg.path.clone().into_os_string();
                    name.push(SEALED_SUFFIX);
                    let sealed_path = PathBuf::from(name);
                    if !sealed_path.exists() {
                        return Err(AuditError::io(&seg.path, "cannot open", e));
                    }
                    (sealed_path, true)
                }
                Err(e) => return Err(AuditError::io(&seg.path, "cannot open", e)),
            }
        };
        debug_assert!(sealed);
        let mut file = File::open(&path).map_err(|e| AuditError::io(&path, "cannot open", e))?;
        let trailer = match sealed::read_trailer(&path, &mut file) {
            Ok(trailer) => trailer,
            Err(TrailerError::Io(e)) => return Err(e),
            Err(TrailerError::Damaged(what)) => {
                return Ok(Self { source: Source::Broken(Some(what)), buf: Vec::new(), number: 0 });
            }
        };
        let wanted: VecDeque<usize> = match frames {
            None => (0..trailer.index.frames.len()).collect(),
            Some(select) => {
                (0..trailer.index.frames.len()).filter(|&i| select(&trailer.index.frames[i])).collect()
            }
        };
        let all = frames.is_none();
        let sealed = SealedLines {
            path,
            file,
            trailer,
            wanted,
            all,
            frame: None,
            data: Vec::new(),
            pos: 0,
            lines_in_frame: 0,
            sha: Sha256::new(),
            failed: false,
            decoded: 0,
        };
        Ok(Self { source: Source::Sealed(Box::new(sealed)), buf: Vec::new(), number: 0 })
    }

    /// The sealed segment's trailer and the frame being read, when the segment is sealed.
    pub(crate) fn sealed(&self) -> Option<(&Trailer, Option<usize>)> {
        match &self.source {
            Source::Sealed(s) => Some((&s.trailer, s.frame)),
            _ => None,
        }
    }

    /// Frames of a sealed segment decoded so far (0 for a plain one).
    pub(crate) fn frames_decoded(&self) -> u64 {
        match &self.source {
            Source::Sealed(s) => s.decoded,
            _ => 0,
        }
    }

    /// The 1-based number of the line last returned.
    pub(crate) fn number(&self) -> u64 {
        self.number
    }

    pub(crate) fn next_line(&mut self, path: &Path) -> Result<Line<'_>, AuditError> {
        let sealed = match &mut self.source {
            Source::Plain(reader) => {
                self.buf.clear();
                let n = reader
                    .read_until(b'\n', &mut self.buf)
                    .map_err(|e| AuditError::io(path, "cannot read", e))?;
                if n == 0 {
                    return Ok(Line::End);
                }
                self.number += 1;
                return match self.buf.strip_suffix(b"\n") {
                    Some(line) => Ok(Line::Complete(self.number, line)),
                    None => Ok(Line::Unterminated),
                };
            }
            Source::Broken(what) => {
                return Ok(match what.take() {
                    Some(what) => Line::Damaged { frame: None, what },
                    None => Line::End,
                });
            }
            Source::Sealed(sealed) => sealed,
        };
        if sealed.failed {
            return Ok(Line::End);
        }
        loop {
            if sealed.frame.is_some() && sealed.pos < sealed.data.len() {
                let rest = &sealed.data[sealed.pos..];
                let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                    let frame = sealed.frame;
                    sealed.failed = true;
                    return Ok(Line::Damaged { frame, what: "the frame ends inside a record".into() });
                };
                let start = sealed.pos;
                sealed.pos += end + 1;
                sealed.lines_in_frame += 1;
                self.number += 1;
                return Ok(Line::Complete(self.number, &sealed.data[start..start + end]));
            }
            if let Some(k) = sealed.frame {
                let expected = sealed.trailer.index.frames.get(k).map_or(0, |f| f.records);
                if sealed.lines_in_frame != expected {
                    let what = format!(
                        "holds {} records, the index says {expected}: the file was altered",
                        sealed.lines_in_frame
                    );
                    sealed.failed = true;
                    return Ok(Line::Damaged { frame: Some(k), what });
                }
            }
            let Some(k) = sealed.wanted.pop_front() else {
                sealed.frame = None;
                if sealed.all {
                    let digest = hex::encode(std::mem::take(&mut sealed.sha).finalize());
                    sealed.all = false;
                    if digest != sealed.trailer.index.plain_sha256 {
                        sealed.failed = true;
                        return Ok(Line::Damaged {
                            frame: None,
                            what:
                                "the decoded segment does not match the index's SHA-256: the file was altered"
                                    .into(),
                        });
                    }
                }
                return Ok(Line::End);
            };
            let entry = &sealed.trailer.index.frames[k];
            match sealed::decode_frame(&sealed.path, &mut sealed.file, entry) {
                Ok(data) => {
                    sealed.decoded += 1;
                    if sealed.all {
                        sealed.sha.update(&data);
                    }
                    self.number = entry.first_seq - sealed.trailer.index.first_seq;
                    sealed.data = data;
                    sealed.pos = 0;
                    sealed.lines_in_frame = 0;
                    sealed.frame = Some(k);
                }
                Err(TrailerError::Io(e)) => return Err(e),
                Err(TrailerError::Damaged(what)) => {
                    sealed.failed = true;
                    return Ok(Line::Damaged { frame: Some(k), what });
                }
            }
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
/// and each segment's name; for a sealed segment also its frames, its index (record
/// counts, time ranges, request-id filters) and its seal checkpoint. Stops being useful
/// after the first problem.
pub(crate) struct Walk<'a> {
    segments: &'a [Segment],
    index: usize,
    lines: Option<Lines>,
    expected_seq: u64,
    prev: Option<Hash>,
    start: Start,
    /// Segment files opened.
    pub(crate) segments_read: usize,
    /// Of those, sealed ones whose seal checkpoint matched.
    pub(crate) sealed_read: usize,
    /// The last segment ends with an unterminated line.
    pub(crate) incomplete_tail: bool,
    /// Verifies seal checkpoints' signatures with this key (and their log id, when known);
    /// `None`: their fields are matched against the chain but signatures are not checked.
    pub(crate) seal_key: Option<(PublicKey, Option<String>)>,
    /// Records read from the current segment.
    in_segment: u64,
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
            sealed_read: 0,
            incomplete_tail: false,
            seal_key: None,
            in_segment: 0,
        }
    }

    /// The logical name of the walk's segment `index` (what checkpoints name).
    pub(crate) fn segment_name(&self, index: usize) -> &'a str {
        self.segments.get(index).map_or("", |s| s.name.as_str())
    }

    /// The file name of the walk's segment `index`.
    pub(crate) fn file_name(&self, index: usize) -> String {
        self.segments.get(index).map_or_else(String::new, Segment::file_name)
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
                self.lines = Some(Lines::open_segment(seg, None)?);
                self.segments_read += 1;
                self.in_segment = 0;
            }
            let Walk { lines: Some(lines), expected_seq, prev, start, index, .. } = self else {
                continue;
            };
            let file = seg.file_name();
            match lines.next_line(&seg.path)? {
                Line::End => {
                    if let Some((trailer, _)) = lines.sealed() {
                        let trailer = trailer.clone();
                        if let Some(problem) = self.check_seal(seg, &trailer) {
                            return Ok(Some(Err(problem)));
                        }
                        self.sealed_read += 1;
                    }
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
                        &file,
                        Some(lines.number()),
                        "incomplete record at the end of a segment that is not the last: the segment was truncated",
                    ))));
                }
                Line::Damaged { frame, what } => {
                    let frame = frame.map(|k| format!("frame {k}: ")).unwrap_or_default();
                    return Ok(Some(Err(problem(
                        Some(*expected_seq),
                        &file,
                        None,
                        format!("sealed segment damaged: {frame}{what}"),
                    ))));
                }
                Line::Complete(number, line) => {
                    let (hash, fields) =
                        match check_record(line, &file, number, *expected_seq, prev.as_ref(), *start) {
                            Ok(checked) => checked,
                            Err(mut problem) => {
                                if let Some((_, Some(k))) = lines.sealed() {
                                    problem.what = format!("frame {k}: {}", problem.what);
                                }
                                return Ok(Some(Err(problem)));
                            }
                        };
                    if let Some((trailer, Some(k))) = lines.sealed()
                        && let Some(what) = index_mismatch(&trailer.index.frames[k], &fields)
                    {
                        return Ok(Some(Err(problem(
                            Some(*expected_seq),
                            &file,
                            Some(number),
                            format!("frame {k}: {what}: the index was altered"),
                        ))));
                    }
                    let walked = Walked {
                        seq: *expected_seq,
                        hash,
                        segment: *index,
                        line: number,
                        time: fields.time(),
                    };
                    *expected_seq += 1;
                    *prev = Some(hash);
                    self.in_segment += 1;
                    return Ok(Some(Ok(walked)));
                }
            }
        }
    }

    /// At the end of a sealed segment: its index names it, and its seal checkpoint signs
    /// its last record.
    fn check_seal(&self, seg: &Segment, trailer: &Trailer) -> Option<Problem> {
        let file = seg.file_name();
        let last_seq = self.expected_seq.checked_sub(1);
        let bad = |what: String| Some(problem(last_seq, &file, None, what));
        if trailer.index.segment != seg.name || trailer.index.first_seq != seg.first_seq {
            return bad(format!(
                "the sealed file's index describes {} (first seq {}): the file was renamed",
                trailer.index.segment, trailer.index.first_seq
            ));
        }
        if self.in_segment == 0 {
            return bad("a sealed segment without records".into());
        }
        let checkpoint = match &self.seal_key {
            Some((key, log_id)) => match checkpoint::verify_line(&trailer.checkpoint, key) {
                Ok(cp) => {
                    if let Some(log_id) = log_id
                        && &cp.log_id != log_id
                    {
                        return bad(format!(
                            "the seal checkpoint is of log {}, not of this log ({log_id})",
                            cp.log_id
                        ));
                    }
                    cp
                }
                Err(e) => return bad(format!("the seal checkpoint is not valid: {e}")),
            },
            None => match serde_json::from_slice::<Checkpoint>(&trailer.checkpoint) {
                Ok(cp) => cp,
                Err(e) => return bad(format!("the seal checkpoint is not valid: {e}")),
            },
        };
        let head = self.prev.map(|h| to_hex(&h));
        if checkpoint.kind != CheckpointKind::Seal
            || checkpoint.seq != last_seq
            || checkpoint.hash != head
            || checkpoint.segment.as_deref() != Some(seg.name.as_str())
        {
            return bad(format!(
                "the seal checkpoint signs {:?} seq {:?} in {:?}, but the segment ends at seq {:?}: the segment was altered or swapped",
                checkpoint.kind, checkpoint.seq, checkpoint.segment, last_seq
            ));
        }
        None
    }
}

/// What a frame's index entry says that its record contradicts.
fn index_mismatch(entry: &FrameEntry, fields: &ChainFields) -> Option<String> {
    if let Some(t) = fields.received.or(fields.completed)
        && (entry.from.is_none_or(|from| t < from) || entry.to.is_none_or(|to| t > to))
    {
        return Some(format!("seq {}'s time {t} is outside the frame's indexed range", fields.seq));
    }
    if let Some(id) = &fields.request_id
        && !IdFilter::may_hold(&entry.request_ids, id)
    {
        return Some(format!("seq {}'s request id is missing from the frame's filter", fields.seq));
    }
    None
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
    problem(Some(expected_seq), &seg.file_name(), None, what)
}

/// Checks one stored line as the record `expected_seq`, linked to `prev` (or to `start`
/// when it is the first of the walk). Returns its hash and time.
pub(crate) fn check_record(
    line: &[u8],
    file: &str,
    number: u64,
    expected_seq: u64,
    prev: Option<&Hash>,
    start: Start,
) -> Result<(Hash, ChainFields), Problem> {
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
    Ok((hash, record))
}

/// The first record of the first segment, if it has one.
pub(crate) fn first_record(segments: &[Segment]) -> Result<Option<ChainFields>, AuditError> {
    let Some(first) = segments.first() else { return Ok(None) };
    let mut lines = Lines::open_segment(first, None)?;
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
