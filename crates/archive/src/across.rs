//! Verifying across places: a log's archived segments and checkpoints, and its local tail,
//! checked as one chain.
//!
//! The archived objects are first checked as a sequence (each segment where the previous
//! one ends, under its own name, the checkpoint chunks contiguous), then laid out with the
//! local segments the archive does not hold yet in a work directory, with the longer of the
//! two copies of `checkpoints.jsonl` (one must start with the other), and
//! [`palisade_audit::verify`] checks the whole chain. A missing, altered or reordered
//! archived segment is named by its object.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use object_store::path::Path as Key;
use palisade_audit::{KeySource, Problem, VerifyOptions, VerifyReport};

use crate::upload::sha256_hex;
use crate::{Archive, ArchiveError};

/// One log found in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedLog {
    /// The replica id (the first level under the prefix).
    pub replica_id: String,
    /// The log id (the second level).
    pub log_id: String,
}

/// What verifying one log across places found.
#[derive(Debug, Clone)]
pub struct AcrossReport {
    /// The log.
    pub log: ArchivedLog,
    /// Archived segments read.
    pub archived_segments: usize,
    /// Local segments added after them (not archived yet).
    pub local_segments: usize,
    /// Without a local trail: archived checkpoints past the last archived record, which
    /// name records the archive does not hold (never sealed), so were not checked.
    pub unarchived_checkpoints: usize,
    /// The chain check over both (its `first_problem` names archived files by object).
    pub report: VerifyReport,
}

impl Archive {
    /// The logs under the prefix: replica ids, then log ids.
    pub async fn logs(&self) -> Result<Vec<ArchivedLog>, ArchiveError> {
        let mut logs = Vec::new();
        let list = |key: Key| async move {
            self.store.list_with_delimiter(Some(&key)).await.map_err(|source| ArchiveError::Store {
                action: "cannot list",
                object: self.name(&key),
                source,
            })
        };
        for replica in list(self.root.clone()).await?.common_prefixes {
            let Some(replica_id) = replica.filename().map(str::to_owned) else { continue };
            for log in list(replica.clone()).await?.common_prefixes {
                if let Some(log_id) = log.filename() {
                    logs.push(ArchivedLog { replica_id: replica_id.clone(), log_id: log_id.to_owned() });
                }
            }
        }
        logs.sort_by(|a, b| (&a.replica_id, &a.log_id).cmp(&(&b.replica_id, &b.log_id)));
        Ok(logs)
    }

    /// Verifies the archived log `log` together with the local trail in `local` (when
    /// there is one), using `work` (an empty directory) for the archived files.
    /// `options.key` must name the key when it cannot be found beside `local`.
    pub async fn verify_across(
        &self,
        log: &ArchivedLog,
        local: Option<&Path>,
        options: &VerifyOptions,
        work: &Path,
    ) -> Result<AcrossReport, ArchiveError> {
        let root = self.log_root(&log.replica_id, &log.log_id);
        let mut across = AcrossReport {
            log: log.clone(),
            archived_segments: 0,
            local_segments: 0,
            unarchived_checkpoints: 0,
            report: VerifyReport::default(),
        };
        let listing = self.store.list_with_delimiter(Some(&root)).await.map_err(|source| {
            ArchiveError::Store { action: "cannot list", object: self.name(&root), source }
        })?;
        let cp_root = root.clone().join("checkpoints");
        let cp_listing = self.store.list_with_delimiter(Some(&cp_root)).await.map_err(|source| {
            ArchiveError::Store { action: "cannot list", object: self.name(&cp_root), source }
        })?;

        // Checkpoint chunks: contiguous from byte 0.
        let mut chunks: Vec<(u64, Key)> = Vec::new();
        for meta in cp_listing.objects {
            let name = meta.location.filename().unwrap_or_default();
            match name.strip_suffix(".jsonl").and_then(|d| d.parse::<u64>().ok()) {
                Some(offset) => chunks.push((offset, meta.location.clone())),
                None => {
                    return Ok(failed(
                        across,
                        self.name(&meta.location),
                        None,
                        "is not a checkpoints/<offset>.jsonl object: it does not belong here",
                    ));
                }
            }
        }
        chunks.sort();
        // Written to a file as they come: a year of checkpoints is gigabytes.
        let archived_path = work.join("checkpoints.archived");
        let mut archived_file = std::fs::File::create(&archived_path)
            .map_err(|e| ArchiveError::io(&archived_path, "cannot create", e))?;
        let mut archived_len = 0u64;
        for (offset, key) in &chunks {
            if *offset != archived_len {
                let what = format!(
                    "starts at byte {offset} of checkpoints.jsonl, but the archived checkpoints before it end at byte {archived_len}: a checkpoint chunk is missing"
                );
                return Ok(failed(across, self.name(key), None, &what));
            }
            let bytes = self.get_at_most(key, crate::upload::MAX_OBJECT_BYTES).await?;
            archived_file
                .write_all(&bytes)
                .map_err(|e| ArchiveError::io(&archived_path, "cannot write", e))?;
            archived_len += bytes.len() as u64;
        }
        drop(archived_file);

        // Segments: each where the previous one ends, under its own name.
        let mut segments: Vec<(u64, Key, String)> = Vec::new();
        for meta in listing.objects {
            let name = meta.location.filename().unwrap_or_default().to_owned();
            let seq = name
                .strip_prefix("segment-")
                .and_then(|n| n.strip_suffix(".jsonl.zst"))
                .filter(|d| d.len() == 20)
                .and_then(|d| d.parse::<u64>().ok());
            match seq {
                Some(seq) => segments.push((seq, meta.location.clone(), name)),
                None => {
                    return Ok(failed(
                        across,
                        self.name(&meta.location),
                        None,
                        "is not a sealed segment's name (segment-<20-digit seq>.jsonl.zst): it does not belong here",
                    ));
                }
            }
        }
        segments.sort();
        let mut next_seq = 0u64;
        let mut archived_names = Vec::new();
        for (seq, key, name) in &segments {
            let object = self.name(key);
            if *seq != next_seq {
                let what = if *seq > next_seq {
                    format!(
                        "follows records up to seq {}: the archived segment(s) holding seq {next_seq}..{} are missing (segment-{next_seq:020}.jsonl.zst)",
                        next_seq.saturating_sub(1),
                        seq - 1
                    )
                } else {
                    format!(
                        "starts at seq {seq}, inside the previous archived segment: segments were reordered or renamed"
                    )
                };
                return Ok(failed(across, object, Some(next_seq), &what));
            }
            let bytes = self.get_at_most(key, crate::upload::MAX_OBJECT_BYTES).await?;
            let path = work.join(name);
            std::fs::write(&path, &bytes).map_err(|e| ArchiveError::io(&path, "cannot write", e))?;
            let trailer = match palisade_audit::read_sealed_trailer(&path) {
                Ok(trailer) => trailer,
                Err(e) => {
                    return Ok(failed(across, object, Some(*seq), &format!("sealed segment damaged: {e}")));
                }
            };
            let logical = name.trim_end_matches(".zst");
            if trailer.index.segment != logical || trailer.index.first_seq != *seq {
                let what = format!(
                    "holds {} (from seq {}), not the segment its name says: segments were reordered or renamed",
                    trailer.index.segment, trailer.index.first_seq
                );
                return Ok(failed(across, object, Some(*seq), &what));
            }
            if let Some(dir) = local {
                let local_copy = dir.join(name);
                if let Ok(mine) = std::fs::read(&local_copy)
                    && sha256_hex(&mine) != sha256_hex(&bytes)
                {
                    let what = format!(
                        "differs from the local {} (SHA-256 {} here, {} locally): one of the copies was altered",
                        local_copy.display(),
                        sha256_hex(&bytes),
                        sha256_hex(&mine)
                    );
                    return Ok(failed(across, object, Some(*seq), &what));
                }
            }
            next_seq = seq + trailer.index.records;
            archived_names.push((name.clone(), object));
        }
        across.archived_segments = archived_names.len();

        // The local tail: segments from where the archive ends.
        let cp_path = work.join("checkpoints.jsonl");
        let mut cut = None;
        if let Some(dir) = local {
            for seg in palisade_audit::list_segments(dir)? {
                if seg.first_seq < next_seq {
                    continue;
                }
                let link = work.join(&seg.file_name);
                std::os::unix::fs::symlink(&seg.path, &link)
                    .map_err(|e| ArchiveError::io(&link, "cannot link", e))?;
                across.local_segments += 1;
            }
            // One copy must start with the other; the longer one is checked.
            let mine = dir.join("checkpoints.jsonl");
            match common_prefix(&mine, &archived_path)? {
                Prefix::FirstLonger => {
                    std::fs::copy(&mine, &cp_path).map_err(|e| ArchiveError::io(&mine, "cannot copy", e))?;
                }
                Prefix::SecondLonger { first_len } => {
                    cut = Some(format!(
                        "the archive holds {archived_len} bytes of checkpoints, the local checkpoints.jsonl only {first_len}: checkpoints were removed locally"
                    ));
                    std::fs::rename(&archived_path, &cp_path)
                        .map_err(|e| ArchiveError::io(&archived_path, "cannot rename", e))?;
                }
                Prefix::Differ { line } => {
                    let what = format!(
                        "differs from the archived checkpoints at line {line}: checkpoints were altered"
                    );
                    return Ok(failed(across, mine.display().to_string(), None, &what));
                }
            }
        } else {
            // No local tail: checkpoints past the last archived record name records that
            // were never sealed (the replica's last active segment); they cannot be checked.
            let read = std::fs::File::open(&archived_path)
                .map_err(|e| ArchiveError::io(&archived_path, "cannot open", e))?;
            let mut out = std::io::BufWriter::new(
                std::fs::File::create(&cp_path)
                    .map_err(|e| ArchiveError::io(&cp_path, "cannot create", e))?,
            );
            let mut reader = std::io::BufReader::new(read);
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = reader
                    .read_until(b'\n', &mut line)
                    .map_err(|e| ArchiveError::io(&archived_path, "cannot read", e))?;
                if n == 0 {
                    break;
                }
                let seq =
                    serde_json::from_slice::<serde_json::Value>(&line).ok().and_then(|v| v["seq"].as_u64());
                if seq.is_none_or(|s| s < next_seq) {
                    out.write_all(&line).map_err(|e| ArchiveError::io(&cp_path, "cannot write", e))?;
                } else {
                    across.unarchived_checkpoints += 1;
                }
            }
            out.flush().map_err(|e| ArchiveError::io(&cp_path, "cannot write", e))?;
        }
        let _ = std::fs::remove_file(&archived_path);

        let mut options = options.clone();
        if options.key == KeySource::Default {
            let Some(dir) = local else {
                return Err(ArchiveError::Config(format!(
                    "replica {}: no local trail, so no key beside it: pin the log's public key (--public-key)",
                    log.replica_id
                )));
            };
            let key = palisade_audit::public_key_path(&palisade_audit::default_signing_key(dir)?);
            options.key = KeySource::File(key);
        }
        let mut report = palisade_audit::verify(work, &options)?;
        if let Some(problem) = &mut report.first_problem
            && let Some(file) = &problem.segment
            && let Some((_, object)) = archived_names.iter().find(|(name, _)| name == file)
        {
            problem.segment = Some(object.clone());
        }
        across.report = report;
        if let Some(what) = cut.filter(|_| across.report.ok) {
            let object = self.name(&cp_root);
            return Ok(failed(across, object, None, &what));
        }
        Ok(across)
    }
}

impl Archive {
    /// Lays out in `work` (an empty directory) the segments of `log` that may hold records
    /// from `from` (inclusive) to `to` (exclusive): the archived ones whose frame index
    /// says so (only their trailers are read to decide, by ranged requests), then the
    /// local segments of `local` the archive does not hold. `palisade_audit::query` on
    /// `work` then reads them. Returns how many archived segments were fetched.
    pub async fn fetch_range(
        &self,
        log: &ArchivedLog,
        local: Option<&Path>,
        from: Option<palisade_audit::Timestamp>,
        to: Option<palisade_audit::Timestamp>,
        work: &Path,
    ) -> Result<usize, ArchiveError> {
        use object_store::ObjectStoreExt;
        let root = self.log_root(&log.replica_id, &log.log_id);
        let listing = self.store.list_with_delimiter(Some(&root)).await.map_err(|source| {
            ArchiveError::Store { action: "cannot list", object: self.name(&root), source }
        })?;
        let mut objects: Vec<_> = listing
            .objects
            .into_iter()
            .filter(|o| {
                o.location.filename().is_some_and(|n| n.starts_with("segment-") && n.ends_with(".jsonl.zst"))
            })
            .collect();
        objects.sort_by(|a, b| a.location.cmp(&b.location));
        let (mut fetched, mut next_seq) = (0, 0u64);
        for meta in objects {
            let key = &meta.location;
            let range = |r: std::ops::Range<u64>| async move {
                self.store.get_range(key, r).await.map_err(|source| ArchiveError::Store {
                    action: "cannot read",
                    object: self.name(key),
                    source,
                })
            };
            let damaged = |what: String| ArchiveError::Differs { object: self.name(key), what };
            let size = meta.size;
            let footer_at = size
                .checked_sub(palisade_audit::SEALED_FOOTER_LEN)
                .ok_or_else(|| damaged("is too short to be a sealed segment".into()))?;
            let footer = range(footer_at..size).await?;
            let offset = palisade_audit::sealed_trailer_offset(&footer, size).ok_or_else(|| {
                damaged("has a damaged footer: run `palisade audit verify --archive`".into())
            })?;
            let tail = range(offset..footer_at).await?;
            let trailer = palisade_audit::parse_trailer(&tail, offset).map_err(|what| {
                damaged(format!("has a damaged trailer ({what}): run `palisade audit verify --archive`"))
            })?;
            next_seq = next_seq.max(trailer.index.first_seq + trailer.index.records);
            let earliest = trailer.index.frames.iter().filter_map(|f| f.from).min();
            let latest = trailer.index.frames.iter().filter_map(|f| f.to).max();
            let before = matches!((latest, from), (Some(l), Some(f)) if l < f);
            let after = matches!((earliest, to), (Some(e), Some(t)) if e >= t);
            if before || after {
                continue;
            }
            let name = key.filename().unwrap_or_default();
            let path = work.join(name);
            let bytes = self.get_at_most(key, crate::upload::MAX_OBJECT_BYTES).await?;
            std::fs::write(&path, &bytes).map_err(|e| ArchiveError::io(&path, "cannot write", e))?;
            fetched += 1;
        }
        if let Some(dir) = local {
            for seg in palisade_audit::list_segments(dir)? {
                if seg.first_seq < next_seq {
                    continue;
                }
                let link = work.join(&seg.file_name);
                std::os::unix::fs::symlink(&seg.path, &link)
                    .map_err(|e| ArchiveError::io(&link, "cannot link", e))?;
            }
        }
        Ok(fetched)
    }
}

/// How two files compare: one is a prefix of the other, or where they first differ.
enum Prefix {
    /// The second file is a prefix of the first (or equal).
    FirstLonger,
    /// The first is a strict prefix of the second.
    SecondLonger { first_len: u64 },
    /// They differ at this 1-based line of the first.
    Differ { line: u64 },
}

/// Compares two files block by block, never holding more than two blocks.
fn common_prefix(first: &Path, second: &Path) -> Result<Prefix, ArchiveError> {
    let open = |p: &Path| std::fs::File::open(p).map_err(|e| ArchiveError::io(p, "cannot open", e));
    let (mut a, mut b) = (std::io::BufReader::new(open(first)?), std::io::BufReader::new(open(second)?));
    let (mut line, mut read) = (1u64, 0u64);
    loop {
        let (x, y) = (
            a.fill_buf().map_err(|e| ArchiveError::io(first, "cannot read", e))?,
            b.fill_buf().map_err(|e| ArchiveError::io(second, "cannot read", e))?,
        );
        if y.is_empty() {
            return Ok(Prefix::FirstLonger);
        }
        if x.is_empty() {
            return Ok(Prefix::SecondLonger { first_len: read });
        }
        let n = x.len().min(y.len());
        if let Some(at) = x[..n].iter().zip(&y[..n]).position(|(p, q)| p != q) {
            line += x[..at].iter().filter(|&&c| c == b'\n').count() as u64;
            return Ok(Prefix::Differ { line });
        }
        line += x[..n].iter().filter(|&&c| c == b'\n').count() as u64;
        read += n as u64;
        a.consume(n);
        b.consume(n);
    }
}

fn failed(mut across: AcrossReport, object: String, seq: Option<u64>, what: &str) -> AcrossReport {
    across.report.ok = false;
    across.report.first_problem =
        Some(Problem { seq, segment: Some(object), line: None, what: what.to_owned() });
    across
}

/// A fresh work directory under `base` (the system's temporary directory by default).
pub fn work_dir(base: Option<&Path>) -> Result<PathBuf, ArchiveError> {
    let base = base.map_or_else(std::env::temp_dir, Path::to_path_buf);
    let dir = base.join(format!("palisade-archive-verify-{}-{}", std::process::id(), unique()));
    std::fs::create_dir_all(&dir).map_err(|e| ArchiveError::io(&dir, "cannot create", e))?;
    Ok(dir)
}

fn unique() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}
