//! Reading the trail: `query` (filtered, streaming), `tail` (optionally following) and
//! `write_jsonl` (export).

use std::borrow::Borrow;
use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::record::{AuditRecord, Decision, RecordKind};
use crate::sealed::{FrameEntry, IdFilter};
use crate::segment::{self, Segment};
use crate::walk::{Line, Lines};
use crate::{AuditError, Timestamp};

/// An HTTP status to match: exact (`404`) or a class (`4xx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusFilter {
    /// This status exactly.
    Exact(u16),
    /// Any status `class * 100 ..= class * 100 + 99`.
    Class(u8),
}

impl StatusFilter {
    /// Whether `status` matches.
    pub fn matches(self, status: u16) -> bool {
        match self {
            StatusFilter::Exact(s) => status == s,
            StatusFilter::Class(c) => status / 100 == u16::from(c),
        }
    }
}

impl FromStr for StatusFilter {
    type Err = AuditError;

    fn from_str(text: &str) -> Result<Self, AuditError> {
        let bad =
            || AuditError::InvalidFilter(format!("status {text:?}: expected a code (404) or a class (4xx)"));
        let bytes = text.as_bytes();
        match bytes {
            [c @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] => Ok(StatusFilter::Class(c - b'0')),
            [b'1'..=b'9', b'0'..=b'9', b'0'..=b'9'] => {
                text.parse().map(StatusFilter::Exact).map_err(|_| bad())
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for StatusFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusFilter::Exact(s) => write!(f, "{s}"),
            StatusFilter::Class(c) => write!(f, "{c}xx"),
        }
    }
}

/// Which records [`query`] returns. Every set criterion must match; unset ones match all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Records whose time (`received`, else `completed`) is at or after this.
    pub from: Option<Timestamp>,
    /// Records whose time is before this.
    pub to: Option<Timestamp>,
    /// Any identity field equals this: `request_principal`, `peer_identity`, `email`,
    /// `client_id`, `service_account`, or a config change's `who`.
    pub principal: Option<String>,
    /// The model, as `name`, `namespace/name` or `namespace/name:version`.
    pub model: Option<String>,
    /// The authorization decision.
    pub decision: Option<Decision>,
    /// The HTTP status.
    pub status: Option<StatusFilter>,
    /// The request id (`x-request-id`).
    pub request_id: Option<String>,
    /// The record kind.
    pub kind: Option<RecordKind>,
    /// At most this many records.
    pub limit: Option<usize>,
}

impl Filter {
    /// Whether `record` matches every criterion (`limit` aside).
    pub fn matches(&self, record: &AuditRecord) -> bool {
        let time = record.time();
        if self.from.is_some_and(|from| time.is_none_or(|t| t < from)) {
            return false;
        }
        if self.to.is_some_and(|to| time.is_none_or(|t| t >= to)) {
            return false;
        }
        if let Some(p) = &self.principal {
            let p = Some(p.as_str());
            let ids = [
                record.request_principal.as_deref(),
                record.peer_identity.as_deref(),
                record.email.as_deref(),
                record.client_id.as_deref(),
                record.service_account.as_deref(),
                record.config.as_ref().map(|c| c.who.as_str()),
            ];
            if !ids.contains(&p) {
                return false;
            }
        }
        if let Some(wanted) = &self.model {
            let Some(m) = &record.model else { return false };
            let qualified = format!("{}/{}", m.namespace, m.name);
            let matched = *wanted == m.name
                || *wanted == qualified
                || m.version.as_ref().is_some_and(|v| *wanted == format!("{qualified}:{v}"));
            if !matched {
                return false;
            }
        }
        if let Some(decision) = self.decision
            && record.authz.as_ref().map(|a| a.decision) != Some(decision)
        {
            return false;
        }
        if let Some(status) = self.status
            && !record.status.is_some_and(|s| status.matches(s))
        {
            return false;
        }
        if let Some(id) = &self.request_id
            && record.request_id.as_ref() != Some(id)
        {
            return false;
        }
        if self.kind.is_some_and(|k| k != record.kind) {
            return false;
        }
        true
    }
}

/// Streams the records of the log in `dir` that match `filter`, in seq order, one segment
/// at a time (never the whole log in memory). Unterminated final lines are skipped; a line
/// that is not a record yields an `Err` item and reading goes on. Segments created after
/// the call are not read.
pub fn query(dir: &Path, filter: Filter) -> Result<Query, AuditError> {
    let (segments, _) = segment::list(dir)?;
    Ok(Query { segments: segments.into(), current: None, filter, yielded: 0, frames_decoded: 0 })
}

/// The iterator returned by [`query`].
pub struct Query {
    segments: VecDeque<Segment>,
    current: Option<(PathBuf, Lines)>,
    filter: Filter,
    yielded: usize,
    frames_decoded: u64,
}

impl Query {
    /// zstd frames of sealed segments decoded so far, in segments finished reading: a
    /// query by request id or time range decodes only the frames whose index entry may
    /// hold a match.
    pub fn frames_decoded(&self) -> u64 {
        self.frames_decoded + self.current.as_ref().map_or(0, |(_, lines)| lines.frames_decoded())
    }
}

/// Whether a sealed segment's frame may hold a record `filter` matches (by its indexed
/// time range and request-id filter).
pub(crate) fn frame_may_match(filter: &Filter, frame: &FrameEntry) -> bool {
    if let Some(id) = &filter.request_id
        && !IdFilter::may_hold(&frame.request_ids, id)
    {
        return false;
    }
    if filter.from.is_none() && filter.to.is_none() {
        return true;
    }
    let (Some(first), Some(last)) = (frame.from, frame.to) else { return false };
    !(filter.from.is_some_and(|from| last < from) || filter.to.is_some_and(|to| first >= to))
}

impl fmt::Debug for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Query").field("filter", &self.filter).field("yielded", &self.yielded).finish()
    }
}

impl Iterator for Query {
    type Item = Result<AuditRecord, AuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.filter.limit.is_some_and(|limit| self.yielded >= limit) {
                return None;
            }
            let (path, lines) = match &mut self.current {
                Some(current) => current,
                None => {
                    let seg = self.segments.pop_front()?;
                    let filter = &self.filter;
                    let select = |frame: &FrameEntry| frame_may_match(filter, frame);
                    match Lines::open_segment(&seg, Some(&select)) {
                        Ok(lines) => self.current.insert((seg.path, lines)),
                        Err(e) => return Some(Err(e)),
                    }
                }
            };
            let (number, line) = match lines.next_line(path) {
                Ok(Line::Complete(number, line)) => (number, line),
                Ok(Line::End | Line::Unterminated) => {
                    self.frames_decoded += lines.frames_decoded();
                    self.current = None;
                    continue;
                }
                Ok(Line::Damaged { frame, what }) => {
                    let path = path.clone();
                    self.current = None;
                    let frame = frame.map(|k| format!("frame {k}: ")).unwrap_or_default();
                    return Some(Err(AuditError::corrupt(
                        path,
                        None,
                        format!("sealed segment damaged: {frame}{what}"),
                    )));
                }
                Err(e) => {
                    self.current = None;
                    return Some(Err(e));
                }
            };
            match serde_json::from_slice::<AuditRecord>(line) {
                Ok(record) if self.filter.matches(&record) => {
                    self.yielded += 1;
                    return Some(Ok(record));
                }
                Ok(_) => {}
                Err(e) => {
                    return Some(Err(AuditError::corrupt(
                        path.as_path(),
                        Some(number),
                        format!("not a valid record: {e}"),
                    )));
                }
            }
        }
    }
}

/// How [`Tail`] starts and whether it follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailOptions {
    /// How many existing records to yield first (`usize::MAX`: all of them).
    pub last: usize,
    /// Keep waiting for new records at the end of the log.
    pub follow: bool,
    /// How often to look for new data while following.
    pub poll_interval: Duration,
}

impl Default for TailOptions {
    fn default() -> Self {
        Self { last: 10, follow: false, poll_interval: Duration::from_millis(200) }
    }
}

/// The last 10 records of the log in `dir`, then (when `follow`) every record appended
/// after them, as they become durable. See [`Tail::open`] for other starting points.
pub fn tail(dir: &Path, follow: bool) -> Result<Tail, AuditError> {
    Tail::open(dir, TailOptions { follow, ..TailOptions::default() })
}

/// Yields records from a position in the log onwards; when following, waits for more
/// (polling) and moves on to new segments as the writer rotates.
pub struct Tail {
    dir: PathBuf,
    options: TailOptions,
    /// The segment being read, and a reader positioned in it.
    current: Option<(Segment, BufReader<File>)>,
    /// Bytes read past the last complete line (a line being written).
    partial: Vec<u8>,
    /// Offset in the current segment up to which bytes were read.
    offset: u64,
}

impl fmt::Debug for Tail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tail").field("dir", &self.dir).field("options", &self.options).finish()
    }
}

impl Tail {
    /// Positions a tail `options.last` records before the end of the log in `dir`.
    pub fn open(dir: &Path, options: TailOptions) -> Result<Self, AuditError> {
        let segments = plain_segments(dir)?;
        let mut tail =
            Self { dir: dir.to_path_buf(), options, current: None, partial: Vec::new(), offset: 0 };
        let mut wanted = options.last;
        for (index, seg) in segments.iter().enumerate().rev() {
            let (starts, complete_end) = last_line_starts(&seg.path, wanted)?;
            if wanted == 0 {
                tail.start_at(seg.clone(), complete_end)?;
                return Ok(tail);
            }
            if starts.len() >= wanted || index == 0 {
                tail.start_at(seg.clone(), starts.front().copied().unwrap_or(0))?;
                return Ok(tail);
            }
            wanted -= starts.len();
        }
        Ok(tail)
    }

    fn start_at(&mut self, seg: Segment, offset: u64) -> Result<(), AuditError> {
        let mut file = File::open(&seg.path).map_err(|e| AuditError::io(&seg.path, "cannot open", e))?;
        file.seek(SeekFrom::Start(offset)).map_err(|e| AuditError::io(&seg.path, "cannot seek", e))?;
        self.current = Some((seg, BufReader::new(file)));
        self.partial.clear();
        self.offset = offset;
        Ok(())
    }

    /// The next record, waiting at most `timeout` for one when following; `None` when
    /// there is none (yet).
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<AuditRecord, AuditError>> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.poll() {
                Ok(Some(record)) => return Some(Ok(record)),
                Ok(None) if !self.options.follow => return None,
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            std::thread::sleep(self.options.poll_interval.min(deadline - now));
        }
    }

    /// One attempt to read the next complete record, moving to the next segment when the
    /// current one is finished.
    fn poll(&mut self) -> Result<Option<AuditRecord>, AuditError> {
        loop {
            let Some((seg, reader)) = &mut self.current else {
                let segments = plain_segments(&self.dir)?;
                match segments.into_iter().next() {
                    Some(first) => {
                        self.start_at(first, 0)?;
                        continue;
                    }
                    None => return Ok(None),
                }
            };
            let n = reader
                .read_until(b'\n', &mut self.partial)
                .map_err(|e| AuditError::io(&seg.path, "cannot read", e))?;
            self.offset += n as u64;
            if self.partial.ends_with(b"\n") {
                let line = std::mem::take(&mut self.partial);
                let record = serde_json::from_slice(&line[..line.len() - 1])
                    .map_err(|e| AuditError::corrupt(&seg.path, None, format!("not a valid record: {e}")));
                return record.map(Some);
            }
            // At the end of the file. A writer that restarted after a crash cuts a torn
            // line: start that line again.
            let len =
                std::fs::metadata(&seg.path).map_err(|e| AuditError::io(&seg.path, "cannot stat", e))?.len();
            if len < self.offset {
                let restart = self.offset - self.partial.len() as u64;
                let seg = seg.clone();
                self.start_at(seg, restart.min(len))?;
                continue;
            }
            // The writer fsyncs a segment before creating the next, so once a later
            // segment exists this one is complete.
            let segments = plain_segments(&self.dir)?;
            let first_seq = seg.first_seq;
            let Some(next) = segments.into_iter().find(|s| s.first_seq > first_seq) else { return Ok(None) };
            let n = reader
                .read_until(b'\n', &mut self.partial)
                .map_err(|e| AuditError::io(&seg.path, "cannot read", e))?;
            if n > 0 {
                self.offset += n as u64;
                continue;
            }
            self.start_at(next, 0)?;
        }
    }
}

impl Iterator for Tail {
    type Item = Result<AuditRecord, AuditError>;

    /// The next record; when following, blocks until one is appended.
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.next_timeout(Duration::from_secs(3600)) {
                return Some(item);
            }
            if !self.options.follow {
                return None;
            }
        }
    }
}

/// The plain segments of a log: `tail` reads those (the newest records are never sealed).
fn plain_segments(dir: &Path) -> Result<Vec<Segment>, AuditError> {
    let (segments, _) = segment::list(dir)?;
    Ok(segments.into_iter().filter(|s| !s.sealed).collect())
}

/// Byte offsets of the starts of the last `count` complete lines of a file, and the offset
/// just past its last complete line.
fn last_line_starts(path: &Path, count: usize) -> Result<(VecDeque<u64>, u64), AuditError> {
    let mut starts = VecDeque::new();
    let mut reader = BufReader::with_capacity(
        256 * 1024,
        File::open(path).map_err(|e| AuditError::io(path, "cannot open", e))?,
    );
    let mut offset = 0u64;
    let mut line_start = 0u64;
    loop {
        let buf = reader.fill_buf().map_err(|e| AuditError::io(path, "cannot read", e))?;
        if buf.is_empty() {
            return Ok((starts, line_start));
        }
        let len = buf.len();
        for (i, _) in buf.iter().enumerate().filter(|(_, b)| **b == b'\n') {
            if count > 0 {
                if starts.len() == count {
                    starts.pop_front();
                }
                starts.push_back(line_start);
            }
            line_start = offset + i as u64 + 1;
        }
        offset += len as u64;
        reader.consume(len);
    }
}

/// Writes records as JSON lines (one compact object per line, the stored format: a record
/// read from the log is written byte for byte as stored, `hash` included, so an export
/// can still be checked). Returns how many were written.
pub fn write_jsonl<R, I, W>(records: I, mut out: W) -> Result<u64, AuditError>
where
    R: Borrow<AuditRecord>,
    I: IntoIterator<Item = R>,
    W: Write,
{
    let stdout = || PathBuf::from("<output>");
    let mut written = 0;
    for record in records {
        serde_json::to_writer(&mut out, record.borrow())
            .map_err(|e| AuditError::io(stdout(), "cannot write", std::io::Error::other(e)))?;
        out.write_all(b"\n").map_err(|e| AuditError::io(stdout(), "cannot write", e))?;
        written += 1;
    }
    out.flush().map_err(|e| AuditError::io(stdout(), "cannot write", e))?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_filters_parse() {
        assert_eq!("404".parse::<StatusFilter>().unwrap(), StatusFilter::Exact(404));
        assert_eq!("5xx".parse::<StatusFilter>().unwrap(), StatusFilter::Class(5));
        assert!(StatusFilter::Class(4).matches(403) && !StatusFilter::Class(4).matches(500));
        for bad in ["", "4x", "6xx", "0", "99", "1000", "abc", "-1"] {
            assert!(bad.parse::<StatusFilter>().is_err(), "{bad}");
        }
    }

    #[test]
    fn last_line_starts_counts_complete_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "a\nbb\nccc\npartial").unwrap();
        assert_eq!(last_line_starts(&path, 2).unwrap(), ([2, 5].into(), 9));
        assert_eq!(last_line_starts(&path, 10).unwrap(), ([0, 2, 5].into(), 9));
        assert_eq!(last_line_starts(&path, 0).unwrap(), (VecDeque::new(), 9));
    }
}
