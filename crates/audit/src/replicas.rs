//! A directory of replicas' trails: finding them, and reading them as one trail merged by
//! time.
//!
//! Each replica keeps its own chain, with its own key and checkpoints. Copied off the
//! replicas (each pod's volume into `DIR/<replica>/`), the trails sit side by side, in one
//! of three shapes per replica:
//!
//! - `DIR/<replica>/trail/` with `DIR/<replica>/keys/`: a copy of the volume Palisade's
//!   Kubernetes manifests give each replica;
//! - `DIR/<replica>/audit/` with `DIR/<replica>/keys/`: a copy of a Palisade home;
//! - `DIR/<replica>/` holding the log itself (its key is then elsewhere: pin it).
//!
//! [`find_trails`] tells a single log from such a directory, names each trail by its
//! replica id and log id (from its genesis checkpoint) and refuses a directory where two
//! trails claim the same replica or the same log. [`query_replicas`] streams the records of
//! all of them ordered by time, then replica id, then seq.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::checkpoint::CHECKPOINT_FILE;
use crate::read::Filter;
use crate::record::AuditRecord;
use crate::segment::{self, Segment};
use crate::walk::{Line, Lines, first_record};
use crate::{AuditError, KEYS_DIR};

/// Where a replica's log sits in its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrailLayout {
    /// `<replica>/trail/`, keys in `<replica>/keys/` (a Kubernetes volume).
    Volume,
    /// `<replica>/audit/`, keys in `<replica>/keys/` (a Palisade home).
    Home,
    /// `<replica>/` is the log; no key beside it.
    Bare,
}

/// One replica's trail in a directory of trails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trail {
    /// The log directory.
    pub dir: PathBuf,
    /// The log directory relative to the directory searched (`r0/trail`), for messages.
    pub name: String,
    /// The replica's directory name (`r0`).
    pub entry: String,
    /// Where the log sits in the replica's directory.
    pub layout: TrailLayout,
    /// The replica id its genesis checkpoint (else its first record) states; `None` when
    /// neither can be read (verification will say why).
    pub replica_id: Option<String>,
    /// The log id its genesis checkpoint states (`None` for logs from before genesis
    /// checkpoints, or when it cannot be read).
    pub log_id: Option<String>,
}

impl Trail {
    /// The replica id, or the directory name when the trail states none.
    pub fn label(&self) -> &str {
        self.replica_id.as_deref().unwrap_or(&self.entry)
    }

    /// Whether a `keys/` directory sits beside the log (where the writer keeps the key by
    /// default, so where verification looks for the public key by default).
    pub fn has_keys_beside(&self) -> bool {
        self.layout != TrailLayout::Bare
    }
}

/// What a directory holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trails {
    /// One log (the directory itself; possibly empty).
    One(PathBuf),
    /// Replicas' trails, ordered by replica id, and the subdirectories that hold none.
    Replicas {
        /// The trails.
        trails: Vec<Trail>,
        /// Names of subdirectories without a trail (ignored).
        skipped: Vec<String>,
    },
}

/// Whether `dir` holds a log's files (its checkpoints or any segment).
pub fn is_log_dir(dir: &Path) -> bool {
    if dir.join(CHECKPOINT_FILE).is_file() {
        return true;
    }
    segment::list(dir).is_ok_and(|(segments, odd)| !segments.is_empty() || !odd.is_empty())
}

/// Looks at `dir`: a log itself (or an empty directory), or one replica's home or volume
/// (`audit/` or `trail/` beside `keys/`), is [`Trails::One`]; a directory
/// whose subdirectories hold logs (`<replica>/`, `<replica>/audit/` or
/// `<replica>/trail/`) is [`Trails::Replicas`]. Fails with [`AuditError::AmbiguousTrails`]
/// when two trails state the same replica id or log id, or one subdirectory holds more
/// than one trail.
pub fn find_trails(dir: &Path) -> Result<Trails, AuditError> {
    if is_log_dir(dir) {
        return Ok(Trails::One(dir.to_path_buf()));
    }
    // One replica's home or volume: its trail beside its keys.
    if dir.join(KEYS_DIR).is_dir() {
        let logs: Vec<PathBuf> =
            ["audit", "trail"].iter().map(|name| dir.join(name)).filter(|p| is_log_dir(p)).collect();
        if let [log] = logs.as_slice() {
            return Ok(Trails::One(log.clone()));
        }
    }
    let entries = std::fs::read_dir(dir).map_err(|e| AuditError::io(dir, "cannot list", e))?;
    let mut trails = Vec::new();
    let mut skipped = Vec::new();
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| AuditError::io(dir, "cannot list", e))?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        names.push(name);
    }
    names.sort();
    for entry in names {
        let path = dir.join(&entry);
        let candidates = [
            (path.clone(), TrailLayout::Bare, entry.clone()),
            (path.join("trail"), TrailLayout::Volume, format!("{entry}/trail")),
            (path.join("audit"), TrailLayout::Home, format!("{entry}/audit")),
        ];
        let found: Vec<_> = candidates.into_iter().filter(|(p, _, _)| is_log_dir(p)).collect();
        match found.as_slice() {
            [] => skipped.push(entry),
            [(log, layout, name)] => {
                let (replica_id, log_id) = identify(log)?;
                trails.push(Trail {
                    dir: log.clone(),
                    name: name.clone(),
                    entry,
                    layout: *layout,
                    replica_id,
                    log_id,
                });
            }
            [first, second, ..] => {
                return Err(AuditError::AmbiguousTrails {
                    what: format!(
                        "{} holds more than one audit trail ({} and {})",
                        path.display(),
                        first.0.display(),
                        second.0.display()
                    ),
                    fix: format!(
                        "give each trail a directory of its own under {} (one per replica), or pass the one you mean",
                        dir.display()
                    ),
                });
            }
        }
    }
    if trails.is_empty() {
        return Ok(Trails::One(dir.to_path_buf()));
    }
    refuse_duplicates(dir, &trails)?;
    trails.sort_by(|a, b| {
        compare_ids(a.replica_id.as_deref(), b.replica_id.as_deref()).then(a.name.cmp(&b.name))
    });
    Ok(Trails::Replicas { trails, skipped })
}

/// Known ids first, in order; unknown ones last.
fn compare_ids(a: Option<&str>, b: Option<&str>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.cmp(b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

fn refuse_duplicates(dir: &Path, trails: &[Trail]) -> Result<(), AuditError> {
    let mut by_log: BTreeMap<&str, &Trail> = BTreeMap::new();
    let mut by_replica: BTreeMap<&str, &Trail> = BTreeMap::new();
    for trail in trails {
        if let Some(log_id) = trail.log_id.as_deref().filter(|id| !id.is_empty())
            && let Some(other) = by_log.insert(log_id, trail)
        {
            return Err(AuditError::AmbiguousTrails {
                what: format!(
                    "{} and {} are the same log (log id {log_id}, replica {}): the same trail was copied twice",
                    other.dir.display(),
                    trail.dir.display(),
                    trail.label()
                ),
                fix: format!(
                    "remove one of the two copies from {}: its records would otherwise be counted twice",
                    dir.display()
                ),
            });
        }
        if let Some(replica) = trail.replica_id.as_deref()
            && let Some(other) = by_replica.insert(replica, trail)
        {
            return Err(AuditError::AmbiguousTrails {
                what: format!(
                    "{} and {} both hold a trail of replica {replica} (logs {} and {}): two replicas were configured with the same \
                     audit.replicaId, or a replica's earlier chain was copied beside its current one",
                    other.dir.display(),
                    trail.dir.display(),
                    other.log_id.as_deref().unwrap_or("?"),
                    trail.log_id.as_deref().unwrap_or("?"),
                ),
                fix: format!(
                    "keep one trail per replica in {}: verify and query an earlier chain on its own (palisade audit verify {}), \
                     and give every replica its own audit.replicaId",
                    dir.display(),
                    trail.dir.display()
                ),
            });
        }
    }
    Ok(())
}

/// The replica id and log id a log states: its genesis checkpoint's, else (no checkpoints)
/// its first record's replica id.
fn identify(dir: &Path) -> Result<(Option<String>, Option<String>), AuditError> {
    #[derive(serde::Deserialize)]
    struct Stated {
        replica_id: String,
        #[serde(default)]
        log_id: String,
    }
    let path = dir.join(CHECKPOINT_FILE);
    if path.is_file() {
        let mut lines = Lines::open(&path)?;
        if let Line::Complete(_, line) = lines.next_line(&path)? {
            return Ok(match serde_json::from_slice::<Stated>(line) {
                Ok(stated) => (Some(stated.replica_id), Some(stated.log_id).filter(|id| !id.is_empty())),
                Err(_) => (None, None),
            });
        }
    }
    let (segments, _) = segment::list(dir)?;
    Ok((first_record(&segments)?.map(|r| r.replica_id), None))
}

/// Where a matching record is, and what it is ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    /// Unix milliseconds of `received`, else `completed` (`i64::MIN` when neither).
    time: i64,
    /// Index of its trail (trails are ordered by replica id).
    trail: u32,
    seq: u64,
    segment: u32,
    offset: u64,
}

impl Position {
    fn order(&self) -> (i64, u32, u64) {
        (self.time, self.trail, self.seq)
    }
}

/// Records of several trails matching a filter, ordered by time (`received`, else
/// `completed`), then replica id, then seq; `limit` keeps the earliest.
///
/// Reads in two passes: first the position and time of every matching record (32 bytes
/// each, never the records themselves), then, in order, each record from its file. Lines
/// that are not records fail the first pass, naming the file and line. Unterminated final
/// lines (a write in progress) are skipped; records appended after the first pass are not
/// read.
pub fn query_replicas(trails: &[Trail], filter: Filter) -> Result<MergedQuery, AuditError> {
    let mut positions = Vec::new();
    let mut segments = Vec::with_capacity(trails.len());
    for (index, trail) in trails.iter().enumerate() {
        let (list, _) = segment::list(&trail.dir)?;
        for (seg_index, seg) in list.iter().enumerate() {
            scan(seg, u32::try_from(index).unwrap_or(u32::MAX), seg_index, &filter, &mut positions)?;
        }
        segments.push(list);
    }
    positions.sort_unstable_by_key(Position::order);
    if let Some(limit) = filter.limit {
        positions.truncate(limit);
    }
    Ok(MergedQuery { segments, positions: positions.into_iter(), open: None, frame: None })
}

/// The first pass over one segment.
fn scan(
    seg: &Segment,
    trail: u32,
    seg_index: usize,
    filter: &Filter,
    out: &mut Vec<Position>,
) -> Result<(), AuditError> {
    if seg.sealed {
        return scan_sealed(seg, trail, seg_index, filter, out);
    }
    let file = File::open(&seg.path).map_err(|e| AuditError::io(&seg.path, "cannot open", e))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut line = Vec::new();
    let mut offset = 0u64;
    let mut number = 0u64;
    loop {
        line.clear();
        let n =
            reader.read_until(b'\n', &mut line).map_err(|e| AuditError::io(&seg.path, "cannot read", e))?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Ok(());
        }
        number += 1;
        keep_if_matching(seg, number, &line[..n - 1], filter, out, |seq| Position {
            time: 0,
            trail,
            seq,
            segment: u32::try_from(seg_index).unwrap_or(u32::MAX),
            offset,
        })?;
        offset += n as u64;
    }
}

/// The first pass over a sealed segment: only the frames whose index entry may match; a
/// position's `offset` is the record's seq.
fn scan_sealed(
    seg: &Segment,
    trail: u32,
    seg_index: usize,
    filter: &Filter,
    out: &mut Vec<Position>,
) -> Result<(), AuditError> {
    let select = |frame: &crate::sealed::FrameEntry| crate::read::frame_may_match(filter, frame);
    let mut lines = Lines::open_segment(seg, Some(&select))?;
    loop {
        let (number, line) = match lines.next_line(&seg.path)? {
            Line::Complete(number, line) => (number, line),
            Line::End | Line::Unterminated => return Ok(()),
            Line::Damaged { frame, what } => {
                let frame = frame.map(|k| format!("frame {k}: ")).unwrap_or_default();
                return Err(AuditError::corrupt(
                    &seg.path,
                    None,
                    format!("sealed segment damaged: {frame}{what}"),
                ));
            }
        };
        keep_if_matching(seg, number, line, filter, out, |seq| Position {
            time: 0,
            trail,
            seq,
            segment: u32::try_from(seg_index).unwrap_or(u32::MAX),
            offset: seq,
        })?;
    }
}

/// Parses line `number` of `seg` and, if the record matches `filter`, keeps its position
/// (made by `position` from its seq, with the record's time filled in).
fn keep_if_matching(
    seg: &Segment,
    number: u64,
    line: &[u8],
    filter: &Filter,
    out: &mut Vec<Position>,
    position: impl FnOnce(u64) -> Position,
) -> Result<(), AuditError> {
    let record: AuditRecord = serde_json::from_slice(line)
        .map_err(|e| AuditError::corrupt(&seg.path, Some(number), format!("not a valid record: {e}")))?;
    if filter.matches(&record) {
        out.try_reserve(1).map_err(|_| {
            AuditError::InvalidFilter("too many matching records to order in memory: narrow the query".into())
        })?;
        out.push(Position {
            time: record.time().map_or(i64::MIN, |t| t.unix_millis()),
            ..position(record.seq)
        });
    }
    Ok(())
}

/// A sealed frame's lines: (trail, segment, the frame's first seq), and the lines.
type DecodedFrame = ((u32, u32, u64), Vec<Vec<u8>>);

/// The iterator returned by [`query_replicas`].
pub struct MergedQuery {
    segments: Vec<Vec<Segment>>,
    positions: std::vec::IntoIter<Position>,
    /// The file read last: (trail, segment), a reader, and the reader's offset.
    open: Option<((u32, u32), BufReader<File>, u64)>,
    /// The sealed frame decoded last.
    frame: Option<DecodedFrame>,
}

impl fmt::Debug for MergedQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MergedQuery").field("remaining", &self.positions.len()).finish()
    }
}

impl MergedQuery {
    /// How many records are left to yield.
    pub fn remaining(&self) -> usize {
        self.positions.len()
    }

    fn read(&mut self, at: Position) -> Result<AuditRecord, AuditError> {
        let seg = self
            .segments
            .get(at.trail as usize)
            .and_then(|list| list.get(at.segment as usize))
            .ok_or_else(|| AuditError::InvalidFilter("a record's position is out of range".into()))?;
        if seg.sealed {
            return read_sealed(seg, at, &mut self.frame);
        }
        let key = (at.trail, at.segment);
        if !matches!(&self.open, Some((open, _, _)) if *open == key) {
            let file = File::open(&seg.path).map_err(|e| AuditError::io(&seg.path, "cannot open", e))?;
            self.open = Some((key, BufReader::with_capacity(64 * 1024, file), 0));
        }
        let Some((_, reader, offset)) = &mut self.open else {
            return Err(AuditError::InvalidFilter("a segment could not be kept open".into()));
        };
        if *offset != at.offset {
            reader
                .seek(SeekFrom::Start(at.offset))
                .map_err(|e| AuditError::io(&seg.path, "cannot seek", e))?;
            *offset = at.offset;
        }
        let mut line = Vec::new();
        let n =
            reader.read_until(b'\n', &mut line).map_err(|e| AuditError::io(&seg.path, "cannot read", e))?;
        *offset += n as u64;
        if line.last() != Some(&b'\n') {
            return Err(AuditError::corrupt(
                &seg.path,
                None,
                "a record read a moment ago is gone: the file was cut",
            ));
        }
        serde_json::from_slice(&line[..n - 1]).map_err(|e| {
            AuditError::corrupt(&seg.path, None, format!("a record changed while being read: {e}"))
        })
    }
}

/// Reads record `at.seq` of a sealed segment, decoding its frame unless it is the one
/// decoded last.
fn read_sealed(
    seg: &Segment,
    at: Position,
    cache: &mut Option<DecodedFrame>,
) -> Result<AuditRecord, AuditError> {
    let hit = cache.as_ref().and_then(|((trail, segment, first), lines)| {
        (*trail == at.trail && *segment == at.segment && at.seq >= *first)
            .then(|| lines.get((at.seq - first) as usize))
            .flatten()
    });
    if hit.is_none() {
        let holds = |f: &crate::sealed::FrameEntry| at.seq >= f.first_seq && at.seq - f.first_seq < f.records;
        let mut lines = Lines::open_segment(seg, Some(&holds))?;
        let mut decoded = Vec::new();
        let mut first = None;
        loop {
            match lines.next_line(&seg.path)? {
                Line::Complete(number, line) => {
                    first.get_or_insert(seg.first_seq + number - 1);
                    decoded.push(line.to_vec());
                }
                Line::End | Line::Unterminated => break,
                Line::Damaged { what, .. } => {
                    return Err(AuditError::corrupt(
                        &seg.path,
                        None,
                        format!("sealed segment damaged: {what}"),
                    ));
                }
            }
        }
        *cache = Some(((at.trail, at.segment, first.unwrap_or(seg.first_seq)), decoded));
    }
    let line = cache
        .as_ref()
        .and_then(|((_, _, first), lines)| at.seq.checked_sub(*first).and_then(|i| lines.get(i as usize)))
        .ok_or_else(|| AuditError::corrupt(&seg.path, None, "a record read a moment ago is gone"))?;
    serde_json::from_slice(line)
        .map_err(|e| AuditError::corrupt(&seg.path, None, format!("a record changed while being read: {e}")))
}

impl Iterator for MergedQuery {
    type Item = Result<AuditRecord, AuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        let at = self.positions.next()?;
        Some(self.read(at))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.positions.size_hint()
    }
}
