//! Segment files: naming, listing, and repairing a torn final line.
//!
//! A segment is either *plain* (`segment-<seq>.jsonl`, JSON lines, the one the writer
//! appends to) or *sealed* (`segment-<seq>.jsonl.zst`, see [`crate::sealed`]). Both carry
//! the same logical name, `segment-<seq>.jsonl`, which is what checkpoints name.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::AuditError;

const PREFIX: &str = "segment-";
const SUFFIX: &str = ".jsonl";
/// What a sealed segment's file name adds to the plain name.
pub(crate) const SEALED_SUFFIX: &str = ".zst";
/// Digits in a segment's first-seq field (`u64::MAX` has 20).
const WIDTH: usize = 20;
/// How far back [`last_line`] reads at a time.
const BACKWARD_CHUNK: u64 = 64 * 1024;

/// The file name of the segment whose first record has seq `first_seq`.
pub(crate) fn segment_name(first_seq: u64) -> String {
    format!("{PREFIX}{first_seq:0WIDTH$}{SUFFIX}")
}

/// One segment file of a log directory.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    /// The seq its file name announces.
    pub(crate) first_seq: u64,
    /// Its logical name, `segment-<seq>.jsonl`, as checkpoints name it (sealed or not).
    pub(crate) name: String,
    /// Its path (the `.jsonl.zst` file when sealed).
    pub(crate) path: PathBuf,
    /// Sealed: zstd frames with an index and a signed checkpoint, read-only.
    pub(crate) sealed: bool,
}

impl Segment {
    /// The name of the file on disk (the logical name plus `.zst` when sealed).
    pub(crate) fn file_name(&self) -> String {
        if self.sealed { format!("{}{SEALED_SUFFIX}", self.name) } else { self.name.clone() }
    }
}

/// A directory's segments in seq order, and the names that look like segments but do not
/// parse (`segment-12.jsonl`, `segment-x.jsonl`, ...).
///
/// When a segment exists both plain and sealed (sealing was interrupted after the sealed
/// file was renamed into place), the plain file is listed: it is the writer's original,
/// and the sealer removes it only once the sealed copy is proven identical.
pub(crate) fn list(dir: &Path) -> Result<(Vec<Segment>, Vec<String>), AuditError> {
    let entries = fs::read_dir(dir).map_err(|e| AuditError::io(dir, "cannot list", e))?;
    let mut segments: Vec<Segment> = Vec::new();
    let mut odd = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| AuditError::io(dir, "cannot list", e))?;
        let Ok(file_name) = entry.file_name().into_string() else { continue };
        let (plain_name, sealed) = match file_name.strip_suffix(SEALED_SUFFIX) {
            Some(plain) => (plain, true),
            None => (file_name.as_str(), false),
        };
        let Some(digits) = plain_name.strip_prefix(PREFIX).and_then(|n| n.strip_suffix(SUFFIX)) else {
            continue;
        };
        match (digits.len() == WIDTH && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse::<u64>().ok())
            .flatten()
        {
            Some(first_seq) => {
                segments.push(Segment { first_seq, path: entry.path(), name: plain_name.to_owned(), sealed })
            }
            None => odd.push(file_name),
        }
    }
    // Plain before sealed for one seq, then keep the first of each seq.
    segments.sort_by_key(|s| (s.first_seq, s.sealed));
    segments.dedup_by_key(|s| s.first_seq);
    odd.sort();
    Ok((segments, odd))
}

/// Truncates a final line that has no newline (a write torn by a crash: never acknowledged).
/// Returns how many bytes were removed.
pub(crate) fn repair_torn_tail(path: &Path) -> Result<u64, AuditError> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| AuditError::io(path, "cannot open", e))?;
    let len = file.metadata().map_err(|e| AuditError::io(path, "cannot stat", e))?.len();
    let keep = match last_newline_end(&mut file, len).map_err(|e| AuditError::io(path, "cannot read", e))? {
        end if end == len => return Ok(0),
        end => end,
    };
    file.set_len(keep)
        .and_then(|()| file.sync_all())
        .map_err(|e| AuditError::io(path, "cannot truncate", e))?;
    Ok(len - keep)
}

/// The offset just past the last `\n` in the first `len` bytes of `file` (0 if none).
fn last_newline_end(file: &mut File, len: u64) -> io::Result<u64> {
    let mut end = len;
    let mut buf = Vec::new();
    while end > 0 {
        let start = end.saturating_sub(BACKWARD_CHUNK);
        buf.resize((end - start) as usize, 0);
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf)?;
        if let Some(pos) = buf.iter().rposition(|&b| b == b'\n') {
            return Ok(start + pos as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// The last complete line of a file whose content ends with a newline (without it), with
/// its 1-based line number unknown; `None` for an empty file.
pub(crate) fn last_line(path: &Path) -> Result<Option<Vec<u8>>, AuditError> {
    let mut file = File::open(path).map_err(|e| AuditError::io(path, "cannot open", e))?;
    let len = file.metadata().map_err(|e| AuditError::io(path, "cannot stat", e))?.len();
    let end = last_newline_end(&mut file, len).map_err(|e| AuditError::io(path, "cannot read", e))?;
    if end == 0 {
        return Ok(None);
    }
    let start = last_newline_end(&mut file, end - 1).map_err(|e| AuditError::io(path, "cannot read", e))?;
    let mut line = vec![0; (end - 1 - start) as usize];
    file.seek(SeekFrom::Start(start))
        .and_then(|_| file.read_exact(&mut line))
        .map_err(|e| AuditError::io(path, "cannot read", e))?;
    Ok(Some(line))
}

/// The complete lines of a file from the last to the first (without newlines), read in
/// chunks from the end; an unterminated final piece is skipped.
pub(crate) fn lines_backwards(
    path: &Path,
) -> Result<impl Iterator<Item = Result<Vec<u8>, AuditError>>, AuditError> {
    let mut file = match File::open(path) {
        Ok(file) => Some(file),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(AuditError::io(path, "cannot open", e)),
    };
    let mut end = match &mut file {
        Some(f) => {
            let len = f.metadata().map_err(|e| AuditError::io(path, "cannot stat", e))?.len();
            last_newline_end(f, len).map_err(|e| AuditError::io(path, "cannot read", e))?
        }
        None => 0,
    };
    let path = path.to_owned();
    Ok(std::iter::from_fn(move || {
        let f = file.as_mut()?;
        if end == 0 {
            return None;
        }
        // The line ends at `end - 1` (its newline); it starts after the previous newline.
        let start = match last_newline_end(f, end - 1) {
            Ok(start) => start,
            Err(e) => return Some(Err(AuditError::io(&path, "cannot read", e))),
        };
        let mut line = vec![0; (end - 1 - start) as usize];
        let read = f.seek(SeekFrom::Start(start)).and_then(|_| f.read_exact(&mut line));
        end = start;
        Some(read.map(|()| line).map_err(|e| AuditError::io(&path, "cannot read", e)))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_like_seqs() {
        assert_eq!(segment_name(0), "segment-00000000000000000000.jsonl");
        assert_eq!(segment_name(u64::MAX), "segment-18446744073709551615.jsonl");
        let dir = tempfile::tempdir().unwrap();
        for name in [segment_name(10), segment_name(2), "segment-3.jsonl".into(), "other.txt".into()] {
            fs::write(dir.path().join(name), b"").unwrap();
        }
        let (segments, odd) = list(dir.path()).unwrap();
        assert_eq!(segments.iter().map(|s| s.first_seq).collect::<Vec<_>>(), vec![2, 10]);
        assert_eq!(odd, vec!["segment-3.jsonl".to_owned()]);
    }

    #[test]
    fn lines_backwards_yields_complete_lines_last_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let long = "y".repeat(150_000);
        fs::write(&path, format!("a\n{long}\n\nb\npartial")).unwrap();
        let lines: Vec<Vec<u8>> = lines_backwards(&path).unwrap().map(Result::unwrap).collect();
        assert_eq!(lines, vec![b"b".to_vec(), Vec::new(), long.into_bytes(), b"a".to_vec()]);
        assert_eq!(lines_backwards(&dir.path().join("none")).unwrap().count(), 0);
    }

    #[test]
    fn torn_tail_is_cut_at_the_last_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let long = "x".repeat(200_000);
        fs::write(&path, format!("a\n{long}\nb\npartial")).unwrap();
        assert_eq!(last_line(&path).unwrap().unwrap(), b"b");
        assert_eq!(repair_torn_tail(&path).unwrap(), 7);
        assert_eq!(repair_torn_tail(&path).unwrap(), 0);
        assert_eq!(fs::read(&path).unwrap(), format!("a\n{long}\nb\n").as_bytes());
        fs::write(&path, format!("{long}\n{long}")).unwrap();
        assert_eq!(last_line(&path).unwrap().unwrap(), long.as_bytes());
        assert_eq!(repair_torn_tail(&path).unwrap(), 200_000);
        assert_eq!(last_line(&path).unwrap().unwrap(), long.as_bytes());
        fs::write(&path, "only partial").unwrap();
        assert_eq!(repair_torn_tail(&path).unwrap(), 12);
        assert_eq!(last_line(&path).unwrap(), None);
    }
}
