//! One archiving pass: the new lines of `checkpoints.jsonl`, then every sealed segment not
//! yet archived, each uploaded, read back and compared (size and SHA-256) before it counts.
//!
//! Idempotent and resumable: an object is written only where there is none (a PUT is
//! atomic: after a crash the object is absent or whole); where one exists it is read and
//! compared with the local bytes, accepted when equal and never overwritten when not. What
//! has been checked is recorded in `archive-state.jsonl` in the log directory (one line per
//! object, fsynced), so a pass after a crash redoes at most the object it was on.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::target::checkpoints_key;
use crate::{Archive, ArchiveError};

/// The most bytes one archived object (a sealed segment, a checkpoint chunk) may take when
/// it is read back: far more than a sealed segment of the largest `segmentMaxBytes`.
pub const MAX_OBJECT_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// The archive state file, in the log directory.
pub const STATE_FILE: &str = "archive-state.jsonl";
/// The checkpoint file's name in a log directory.
const CHECKPOINTS: &str = "checkpoints.jsonl";

/// One line of the state file: an object checked against its local bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StateLine {
    /// The archive (`s3://bucket/prefix`): a line about another archive does not count.
    archive: String,
    /// The object's key.
    object: String,
    bytes: u64,
    sha256: String,
    /// For checkpoint chunks: where in `checkpoints.jsonl` the archived bytes end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checkpoints_to: Option<u64>,
}

/// What the archive holds of one log, as far as this replica has checked.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Objects checked: key -> (bytes, sha256).
    objects: HashMap<String, (u64, String)>,
    checkpoints_to: u64,
}

impl State {
    fn load(dir: &Path, archive: &str) -> Result<State, ArchiveError> {
        let path = dir.join(STATE_FILE);
        let mut state = State::default();
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(state),
            Err(e) => return Err(ArchiveError::io(&path, "cannot read", e)),
        };
        for line in BufReader::new(file).lines() {
            let line = line.map_err(|e| ArchiveError::io(&path, "cannot read", e))?;
            // A torn last line (a crash while appending) is not a check that happened.
            let Ok(entry) = serde_json::from_str::<StateLine>(&line) else { continue };
            if entry.archive != archive {
                continue;
            }
            if let Some(to) = entry.checkpoints_to {
                state.checkpoints_to = state.checkpoints_to.max(to);
            }
            state.objects.insert(entry.object, (entry.bytes, entry.sha256));
        }
        Ok(state)
    }

    fn record(&mut self, dir: &Path, line: StateLine) -> Result<(), ArchiveError> {
        let path = dir.join(STATE_FILE);
        let mut text = serde_json::to_vec(&line).map_err(|e| ArchiveError::Config(e.to_string()))?;
        text.push(b'\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| ArchiveError::io(&path, "cannot open", e))?;
        file.write_all(&text)
            .and_then(|()| file.sync_data())
            .map_err(|e| ArchiveError::io(&path, "cannot write", e))?;
        if let Some(to) = line.checkpoints_to {
            self.checkpoints_to = self.checkpoints_to.max(to);
        }
        self.objects.insert(line.object, (line.bytes, line.sha256));
        Ok(())
    }
}

/// One object uploaded (or found already there and equal) in a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    /// `s3://bucket/key`.
    pub object: String,
    /// Its size.
    pub bytes: u64,
    /// Whether this pass wrote it (`false`: it was there already, with the same bytes).
    pub uploaded: bool,
}

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Sealed segments archived and checked, oldest first.
    pub segments: Vec<Archived>,
    /// Chunks of `checkpoints.jsonl` archived and checked.
    pub checkpoints: Vec<Archived>,
    /// Sealed segments still not archived after the pass (the backlog), their bytes, and
    /// the seconds since the oldest of them was sealed.
    pub backlog_segments: u64,
    /// Their bytes.
    pub backlog_bytes: u64,
    /// Seconds since the oldest of them was sealed (its file's modification time).
    pub oldest_unarchived_secs: u64,
    /// Why nothing was archived, when the log has nothing to archive yet.
    pub idle: Option<String>,
}

/// SHA-256 (hex) of bytes.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A log's identity: replica id and log id, from its genesis checkpoint.
pub(crate) fn identity(dir: &Path) -> Result<Option<(String, String)>, ArchiveError> {
    Ok(palisade_audit::read_genesis(dir)?.map(|g| (g.replica_id, g.log_id)))
}

impl Archive {
    /// Writes `bytes` at `key` unless an object is there; then reads the object back and
    /// compares. `Ok(true)`: written by this call; `Ok(false)`: it was there with these bytes.
    pub(crate) async fn put_checked(&self, key: &Key, bytes: &Bytes) -> Result<bool, ArchiveError> {
        let existing = match self.store.head(key).await {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(source) => {
                return Err(ArchiveError::Store { action: "cannot look up", object: self.name(key), source });
            }
        };
        if !existing {
            self.store.put(key, PutPayload::from_bytes(bytes.clone())).await.map_err(|source| {
                ArchiveError::Store { action: "cannot upload", object: self.name(key), source }
            })?;
        }
        self.check(key, bytes.len() as u64, &sha256_hex(bytes)).await.map_err(|what| ArchiveError::Differs {
            object: self.name(key),
            what: if existing {
                format!("was already there with other bytes ({what}); it is never overwritten: one of the copies was altered, or another log writes there")
            } else {
                format!("does not read back as written ({what})")
            },
        })?;
        Ok(!existing)
    }

    /// Reads the object at `key` and compares its size and SHA-256; `Err` says how it
    /// differs. A store error is also an `Err` (the copy is not confirmed).
    pub(crate) async fn check(&self, key: &Key, bytes: u64, sha256: &str) -> Result<(), String> {
        let meta = self.store.head(key).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => "the object is missing".to_owned(),
            other => format!("cannot look it up: {other}"),
        })?;
        if meta.size != bytes {
            return Err(format!("{} bytes, the local copy has {bytes}", meta.size));
        }
        let got = self.get(key).await.map_err(|e| e.to_string())?;
        let digest = sha256_hex(&got);
        if got.len() as u64 != bytes || digest != sha256 {
            return Err(format!("SHA-256 {digest}, the local copy's is {sha256}"));
        }
        Ok(())
    }

    /// The object's bytes, refused (before reading them) when it is larger than `max`: an
    /// archive is read as untrusted input, and its sizes are budgets.
    pub(crate) async fn get_at_most(&self, key: &Key, max: u64) -> Result<Bytes, ArchiveError> {
        let meta = self.store.head(key).await.map_err(|source| ArchiveError::Store {
            action: "cannot look up",
            object: self.name(key),
            source,
        })?;
        if meta.size > max {
            return Err(ArchiveError::Differs {
                object: self.name(key),
                what: format!(
                    "is {} bytes, more than the {max} bytes an archived audit file may take",
                    meta.size
                ),
            });
        }
        self.get(key).await
    }

    /// The object's bytes.
    pub(crate) async fn get(&self, key: &Key) -> Result<Bytes, ArchiveError> {
        let read = async { self.store.get(key).await?.bytes().await };
        read.await.map_err(|source| ArchiveError::Store {
            action: "cannot read",
            object: self.name(key),
            source,
        })
    }
}

/// Runs one pass over the log in `dir`: new checkpoint lines first (so that the newest
/// signed head leaves the machine soonest), then the sealed segments not yet archived,
/// oldest first. Stops at the first failure; what was checked before it stays recorded.
pub async fn archive_pass(dir: &Path, archive: &Archive) -> Result<PassReport, ArchiveError> {
    let mut report = PassReport::default();
    let Some((replica, log_id)) = identity(dir)? else {
        report.idle = Some("the log has no genesis checkpoint yet".into());
        return Ok(report);
    };
    let root = archive.log_root(&replica, &log_id);
    let url = archive.url();
    let mut state = State::load(dir, &url)?;

    // checkpoints.jsonl from where the archive's copy ends, complete lines only.
    let cp_path = dir.join(CHECKPOINTS);
    let new = complete_lines_from(&cp_path, state.checkpoints_to)?;
    if !new.is_empty() {
        let key = checkpoints_key(&root, state.checkpoints_to);
        let bytes = Bytes::from(new);
        let accepted = match archive.put_checked(&key, &bytes).await {
            Ok(uploaded) => Some((bytes, uploaded)),
            // A pass that crashed after its upload left a shorter chunk at this key: it is
            // accepted when it is exactly the start of these bytes.
            Err(ArchiveError::Differs { .. }) => {
                let there = archive.get_at_most(&key, bytes.len() as u64).await?;
                if !there.is_empty() && bytes.starts_with(&there) && there.ends_with(b"\n") {
                    Some((there, false))
                } else {
                    return Err(ArchiveError::Differs {
                        object: archive.name(&key),
                        what: format!(
                            "holds other bytes than {} from byte {}; it is never overwritten",
                            cp_path.display(),
                            state.checkpoints_to
                        ),
                    });
                }
            }
            Err(e) => return Err(e),
        };
        if let Some((bytes, uploaded)) = accepted {
            let to = state.checkpoints_to + bytes.len() as u64;
            state.record(
                dir,
                StateLine {
                    archive: url.clone(),
                    object: key.to_string(),
                    bytes: bytes.len() as u64,
                    sha256: sha256_hex(&bytes),
                    checkpoints_to: Some(to),
                },
            )?;
            report.checkpoints.push(Archived {
                object: archive.name(&key),
                bytes: bytes.len() as u64,
                uploaded,
            });
        }
    }

    let segments = palisade_audit::list_segments(dir)?;
    let mut pending = Vec::new();
    for seg in segments.iter().filter(|s| s.sealed) {
        let key = root.clone().join(seg.file_name.as_str());
        if !state.objects.contains_key(key.as_ref()) {
            pending.push((seg, key));
        }
    }
    let mut failure = None;
    for (i, (seg, key)) in pending.iter().enumerate() {
        let result = async {
            let bytes = Bytes::from(
                std::fs::read(&seg.path).map_err(|e| ArchiveError::io(&seg.path, "cannot read", e))?,
            );
            let uploaded = archive.put_checked(key, &bytes).await?;
            state.record(
                dir,
                StateLine {
                    archive: url.clone(),
                    object: key.to_string(),
                    bytes: bytes.len() as u64,
                    sha256: sha256_hex(&bytes),
                    checkpoints_to: None,
                },
            )?;
            Ok::<_, ArchiveError>(Archived { object: archive.name(key), bytes: bytes.len() as u64, uploaded })
        }
        .await;
        match result {
            Ok(done) => report.segments.push(done),
            Err(e) => {
                failure = Some((i, e));
                break;
            }
        }
    }
    let left = failure.as_ref().map_or(0, |(i, _)| pending.len() - i);
    let now = std::time::SystemTime::now();
    for (seg, _) in &pending[pending.len() - left..] {
        let Ok(meta) = std::fs::metadata(&seg.path) else { continue };
        report.backlog_segments += 1;
        report.backlog_bytes += meta.len();
        let age = meta.modified().ok().and_then(|m| now.duration_since(m).ok()).map_or(0, |d| d.as_secs());
        report.oldest_unarchived_secs = report.oldest_unarchived_secs.max(age);
    }
    match failure {
        Some((_, e)) => Err(e),
        None => Ok(report),
    }
}

/// The sealed segments of `dir` not yet archived to `archive` (as the state file says):
/// count, bytes, seconds since the oldest was sealed.
pub fn backlog(dir: &Path, archive: &Archive) -> Result<(u64, u64, u64), ArchiveError> {
    let Some((replica, log_id)) = identity(dir)? else { return Ok((0, 0, 0)) };
    let root = archive.log_root(&replica, &log_id);
    let state = State::load(dir, &archive.url())?;
    let now = std::time::SystemTime::now();
    let (mut n, mut bytes, mut oldest) = (0, 0, 0);
    for seg in palisade_audit::list_segments(dir)?.iter().filter(|s| s.sealed) {
        if state.objects.contains_key(root.clone().join(seg.file_name.as_str()).as_ref()) {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&seg.path) else { continue };
        n += 1;
        bytes += meta.len();
        let age = meta.modified().ok().and_then(|m| now.duration_since(m).ok()).map_or(0, |d| d.as_secs());
        oldest = oldest.max(age);
    }
    Ok((n, bytes, oldest))
}

/// The bytes of `path` from `offset` up to its last newline (empty when none, or when the
/// file is missing).
fn complete_lines_from(path: &Path, offset: u64) -> Result<Vec<u8>, ArchiveError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ArchiveError::io(path, "cannot open", e)),
    };
    let len = file.metadata().map_err(|e| ArchiveError::io(path, "cannot stat", e))?.len();
    if len < offset {
        return Err(ArchiveError::Differs {
            object: PathBuf::from(path).display().to_string(),
            what: format!(
                "is {len} bytes long, but {offset} bytes of it were archived: checkpoints were removed locally (verify with --archive)"
            ),
        });
    }
    let mut buf = Vec::new();
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_to_end(&mut buf))
        .map_err(|e| ArchiveError::io(path, "cannot read", e))?;
    let keep = buf.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    buf.truncate(keep);
    Ok(buf)
}

/// Checks, for retention, that the archive holds the sealed segment `file_name` of the log
/// in `dir` with exactly the local file's size and SHA-256 (read back now, whatever the
/// state file says).
pub async fn confirm_archived(
    dir: &Path,
    archive: &Archive,
    path: &Path,
    file_name: &str,
) -> Result<(), String> {
    let (replica, log_id) = identity(dir)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "the log has no genesis checkpoint".to_owned())?;
    let key = archive.log_root(&replica, &log_id).join(file_name);
    let local = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    archive
        .check(&key, local.len() as u64, &sha256_hex(&local))
        .await
        .map_err(|what| format!("the archive's copy {} is not confirmed: {what}", archive.name(&key)))
}
