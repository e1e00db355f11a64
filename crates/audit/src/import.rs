//! Rebuilding replicas' trails from shipped lines (what a log collector stored from the
//! replicas' stdout), so that [`verify`](crate::verify) can check the collector's copy.
//!
//! Shipped lines are the stored bytes, records and checkpoints of every replica interleaved.
//! [`import_shipped`] groups them by chain (a genesis checkpoint starts one; records and
//! checkpoints belong to the latest chain of their replica seen so far), orders each chain by
//! seq, drops exact duplicates (collectors deliver at least once), and writes each chain as a
//! trail: `checkpoints.jsonl`, and segments cut where the checkpoints say segments began.
//! Nothing is repaired: a line missing from the copy stays missing, and `verify` names the
//! gap.

use std::collections::BTreeMap;
use std::fs;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use crate::checkpoint::CHECKPOINT_FILE;
use crate::segment::segment_name;
use crate::{AuditError, CHECKPOINT_SCHEMA, LEGACY_CHECKPOINT_SCHEMA, SCHEMA};

/// One chain rebuilt by [`import_shipped`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedTrail {
    /// The replica.
    pub replica_id: String,
    /// The log id its genesis checkpoint states (`None`: its genesis was not in the input).
    pub log_id: Option<String>,
    /// The trail written (`OUT/<replica>/trail`).
    pub dir: PathBuf,
    /// Records written.
    pub records: u64,
    /// Checkpoints written (the genesis included).
    pub checkpoints: u64,
    /// Exact duplicates dropped.
    pub duplicates: u64,
}

/// What [`import_shipped`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// The trails written, by replica id.
    pub trails: Vec<ImportedTrail>,
    /// Input lines that are not audit lines (ignored).
    pub ignored: u64,
}

#[derive(serde::Deserialize)]
struct Head {
    schema: String,
    #[serde(default)]
    seq: Option<u64>,
    replica_id: String,
    #[serde(default)]
    log_id: Option<String>,
    #[serde(default)]
    segment: Option<String>,
}

/// A chain being gathered.
#[derive(Default)]
struct Chain {
    replica_id: String,
    log_id: Option<String>,
    genesis: Option<Vec<u8>>,
    records: BTreeMap<u64, Vec<u8>>,
    checkpoints: BTreeMap<u64, Vec<u8>>,
    /// Seqs at which checkpoints say a segment began.
    starts: Vec<u64>,
    duplicates: u64,
}

/// Where a line was read, for messages.
struct At<'a> {
    source: &'a str,
    line: u64,
}

impl At<'_> {
    fn corrupt(&self, what: impl Into<String>) -> AuditError {
        AuditError::corrupt(self.source, Some(self.line), what)
    }
}

impl Chain {
    fn insert(
        map: &mut BTreeMap<u64, Vec<u8>>,
        seq: u64,
        line: &[u8],
        duplicates: &mut u64,
        at: &At<'_>,
    ) -> Result<(), AuditError> {
        match map.get(&seq) {
            Some(existing) if existing.as_slice() == line => {
                *duplicates += 1;
                Ok(())
            }
            Some(_) => Err(at.corrupt(format!(
                "two different lines claim seq {seq} of one chain: the copy was altered, or mixes two chains of one replica"
            ))),
            None => {
                map.insert(seq, line.to_vec());
                Ok(())
            }
        }
    }
}

/// Reads shipped lines from `inputs` (each `(name, reader)`, in order) and writes each
/// chain as a trail under `out` (`out/<replica>/trail`; `out/<replica>@<log id>/trail` when a
/// replica has several chains in the input). Fails on a line that claims an audit schema but
/// does not parse, two different lines for one seq of a chain, or a trail directory that
/// already exists.
pub fn import_shipped<R: BufRead>(inputs: Vec<(String, R)>, out: &Path) -> Result<ImportReport, AuditError> {
    let mut chains: Vec<Chain> = Vec::new();
    // The chain each replica's lines go to: the latest genesis seen for it.
    let mut current: BTreeMap<String, usize> = BTreeMap::new();
    let mut ignored = 0;
    for (source, mut reader) in inputs {
        let mut buf = Vec::new();
        let mut number = 0;
        loop {
            buf.clear();
            let n =
                reader.read_until(b'\n', &mut buf).map_err(|e| AuditError::io(&source, "cannot read", e))?;
            if n == 0 {
                break;
            }
            number += 1;
            let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let at = At { source: &source, line: number };
            let is_record = line.starts_with(format!("{{\"schema\":\"{SCHEMA}\"").as_bytes());
            let is_checkpoint = line.starts_with(format!("{{\"schema\":\"{CHECKPOINT_SCHEMA}\"").as_bytes())
                || line.starts_with(format!("{{\"schema\":\"{LEGACY_CHECKPOINT_SCHEMA}\"").as_bytes());
            if !is_record && !is_checkpoint {
                ignored += 1;
                continue;
            }
            let head: Head = serde_json::from_slice(line)
                .map_err(|e| at.corrupt(format!("not a valid audit line: {e}")))?;
            let genesis = is_checkpoint && head.seq.is_none() && head.schema == CHECKPOINT_SCHEMA;
            let index = match current.get(&head.replica_id) {
                Some(&index) if !genesis => index,
                _ => {
                    chains.push(Chain { replica_id: head.replica_id.clone(), ..Chain::default() });
                    current.insert(head.replica_id.clone(), chains.len() - 1);
                    chains.len() - 1
                }
            };
            let chain = &mut chains[index];
            if genesis {
                chain.log_id = head.log_id.clone();
                chain.genesis = Some(line.to_vec());
                continue;
            }
            if chain.log_id.is_none() {
                chain.log_id = head.log_id.clone().filter(|id| !id.is_empty());
            }
            let seq = head.seq.ok_or_else(|| at.corrupt("an audit line without seq"))?;
            if is_record {
                Chain::insert(&mut chain.records, seq, line, &mut chain.duplicates, &at)?;
            } else {
                if let Some(start) = head.segment.as_deref().and_then(segment_start) {
                    chain.starts.push(start);
                }
                Chain::insert(&mut chain.checkpoints, seq, line, &mut chain.duplicates, &at)?;
            }
        }
    }
    let mut per_replica: BTreeMap<&str, usize> = BTreeMap::new();
    for chain in &chains {
        *per_replica.entry(chain.replica_id.as_str()).or_default() += 1;
    }
    let mut trails = Vec::new();
    for chain in &chains {
        let name = match (per_replica.get(chain.replica_id.as_str()), &chain.log_id) {
            (Some(1), _) | (_, None) => chain.replica_id.clone(),
            (_, Some(log_id)) => format!("{}@{log_id}", chain.replica_id),
        };
        trails.push(write_chain(chain, &out.join(safe_name(&name)?).join("trail"))?);
    }
    trails.sort_by(|a, b| a.replica_id.cmp(&b.replica_id).then(a.dir.cmp(&b.dir)));
    Ok(ImportReport { trails, ignored })
}

/// A replica id as a directory name: refused when it could name another place.
fn safe_name(name: &str) -> Result<&str, AuditError> {
    let bad = name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']);
    if bad {
        return Err(AuditError::InvalidFilter(format!("replica id {name:?} cannot name a directory")));
    }
    Ok(name)
}

/// The first seq a segment's name states.
fn segment_start(name: &str) -> Option<u64> {
    name.strip_prefix("segment-")?.strip_suffix(".jsonl")?.parse().ok()
}

fn write_chain(chain: &Chain, dir: &Path) -> Result<ImportedTrail, AuditError> {
    if dir.exists() {
        return Err(AuditError::AmbiguousTrails {
            what: format!("{} already exists", dir.display()),
            fix: "import into a new directory".into(),
        });
    }
    fs::create_dir_all(dir).map_err(|e| AuditError::io(dir, "cannot create", e))?;
    let mut checkpoints = Vec::new();
    let mut count = 0;
    for line in chain.genesis.iter().chain(chain.checkpoints.values()) {
        checkpoints.extend_from_slice(line);
        checkpoints.push(b'\n');
        count += 1;
    }
    let path = dir.join(CHECKPOINT_FILE);
    fs::write(&path, &checkpoints).map_err(|e| AuditError::io(&path, "cannot write", e))?;
    let mut starts = chain.starts.clone();
    starts.extend(chain.records.keys().next().copied());
    starts.sort_unstable();
    starts.dedup();
    let mut segment: Option<(PathBuf, Vec<u8>)> = None;
    let flush = |segment: &mut Option<(PathBuf, Vec<u8>)>| -> Result<(), AuditError> {
        if let Some((path, bytes)) = segment.take() {
            fs::write(&path, bytes).map_err(|e| AuditError::io(&path, "cannot write", e))?;
        }
        Ok(())
    };
    for (seq, line) in &chain.records {
        if segment.is_none() || starts.binary_search(seq).is_ok() {
            flush(&mut segment)?;
            segment = Some((dir.join(segment_name(*seq)), Vec::new()));
        }
        if let Some((_, bytes)) = &mut segment {
            bytes.extend_from_slice(line);
            bytes.push(b'\n');
        }
    }
    flush(&mut segment)?;
    Ok(ImportedTrail {
        replica_id: chain.replica_id.clone(),
        log_id: chain.log_id.clone(),
        dir: dir.to_path_buf(),
        records: chain.records.len() as u64,
        checkpoints: count,
        duplicates: chain.duplicates,
    })
}
