//! A log directory's files as other crates (the archiver) see them: its segments, its
//! identity (from the genesis checkpoint) and a sealed segment's trailer.

use std::path::{Path, PathBuf};

use crate::checkpoint::{CHECKPOINT_FILE, Checkpoint, CheckpointKind};
use crate::sealed::{self, Trailer, TrailerError};
use crate::walk::CheckpointLines;
use crate::{AuditError, segment};

/// One segment file of a log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    /// The seq of its first record (from its name).
    pub first_seq: u64,
    /// The name of the file (`segment-<seq>.jsonl`, or `.jsonl.zst` when sealed).
    pub file_name: String,
    /// Its path.
    pub path: PathBuf,
    /// Sealed (read-only from now on) or plain.
    pub sealed: bool,
}

/// The log's segments in seq order (for a segment both plain and sealed, the plain file,
/// as readers list it: its sealing is not finished).
pub fn list_segments(dir: &Path) -> Result<Vec<SegmentFile>, AuditError> {
    let (segments, _) = segment::list(dir)?;
    Ok(segments
        .into_iter()
        .map(|s| SegmentFile {
            first_seq: s.first_seq,
            file_name: s.file_name(),
            sealed: s.sealed,
            path: s.path,
        })
        .collect())
}

/// The log's genesis checkpoint as written (its signature NOT checked: `verify` does
/// that), or `None` when the log has none (new, legacy, or without checkpoints).
pub fn read_genesis(dir: &Path) -> Result<Option<Checkpoint>, AuditError> {
    let mut lines = CheckpointLines::new(dir);
    let Some((_, first)) = lines.next_line()? else { return Ok(None) };
    match serde_json::from_slice::<Checkpoint>(first) {
        Ok(cp) if cp.kind == CheckpointKind::Genesis => Ok(Some(cp)),
        Ok(_) | Err(_) => Err(AuditError::corrupt(
            dir.join(CHECKPOINT_FILE),
            Some(1),
            "the first line is not a genesis checkpoint",
        )),
    }
}

/// Reads and checks the trailer (frame index and seal checkpoint, not yet verified) of
/// the sealed segment file at `path`; a damaged trailer is an [`AuditError::Corrupt`]
/// naming the file.
pub fn read_sealed_trailer(path: &Path) -> Result<Trailer, AuditError> {
    let mut file = std::fs::File::open(path).map_err(|e| AuditError::io(path, "cannot open", e))?;
    match sealed::read_trailer(path, &mut file) {
        Ok(trailer) => Ok(trailer),
        Err(TrailerError::Io(e)) => Err(e),
        Err(TrailerError::Damaged(what)) => Err(AuditError::corrupt(path, None, what)),
    }
}

/// Bytes of a sealed segment's footer: its last bytes, which locate the trailer.
pub const SEALED_FOOTER_LEN: u64 = sealed::FOOTER_LEN;

/// Where a sealed segment's trailer starts, from its footer (its last
/// [`SEALED_FOOTER_LEN`] bytes), checked against the file's length and the trailer's
/// budget; `None` when the footer is damaged. For readers that fetch byte ranges (the
/// archive): read `[offset, len - SEALED_FOOTER_LEN)` and pass it to
/// [`parse_trailer`](crate::parse_trailer).
pub fn sealed_trailer_offset(footer: &[u8], len: u64) -> Option<u64> {
    let offset = sealed::footer_offset(footer)?;
    let end = len.checked_sub(SEALED_FOOTER_LEN)?;
    (offset <= end && end - offset <= sealed::TRAILER_BUDGET).then_some(offset)
}
