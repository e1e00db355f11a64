//! `palisade audit archive` (one archiving pass, then retention) and `palisade audit verify
//! --archive s3://BUCKET/PREFIX` (each replica's archived segments, checkpoints and local
//! tail as one chain).

use std::path::{Path, PathBuf};

use palisade_archive::{AcrossReport, Archive, ArchiveTarget, ArchivedLog, Credentials};
use palisade_audit::{KeySource, Trails, VerifyOptions};
use serde_json::json;

use super::{key_source, report_json};
use crate::cli::{ArchiveFlags, AuditArchiveArgs, AuditQueryArgs, AuditVerifyArgs, OutputFormat};
use crate::failure::Failure;

/// The archive the flags name.
fn target(flags: &ArchiveFlags) -> Result<Option<ArchiveTarget>, Failure> {
    let Some(url) = &flags.archive else { return Ok(None) };
    let base = ArchiveTarget::from_url(url).map_err(|e| Failure::usage(format!("--archive: {e}")))?;
    Ok(Some(ArchiveTarget {
        endpoint: flags.archive_endpoint.clone(),
        region: flags.archive_region.clone(),
        credentials: match &flags.archive_credentials {
            Some(file) => Credentials::File(file.clone()),
            None => Credentials::Environment,
        },
        allow_http: flags.archive_allow_http,
        ..base
    }))
}

fn open(target: &ArchiveTarget) -> Result<Archive, Failure> {
    Archive::open(target).map_err(|e| Failure::usage(e.to_string()))
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::other(format!("cannot start a runtime: {e}")))
}

/// `audit archive`
pub fn run(home: &Path, args: &AuditArchiveArgs) -> Result<(), Failure> {
    let dir = args.dir.clone().unwrap_or_else(|| home.join("audit"));
    if !dir.is_dir() {
        return Err(Failure::usage(format!("no audit log at {}", dir.display())));
    }
    let (target, retention) = match &args.config {
        Some(file) => {
            let platform =
                palisade_server::Platform::load(file).map_err(|e| Failure::usage(e.to_string()))?;
            let audit = platform.config.audit;
            let Some(archive) = audit.archive else {
                return Err(Failure::usage(format!("{}: no audit.archive there", file.display()))
                    .hint("see docs/config.md, audit.archive"));
            };
            (archive.target(), audit.retention.map(|r| r.policy()))
        }
        None => match target(&args.target)? {
            Some(target) => (target, None),
            None => {
                return Err(Failure::usage("no archive given").hint(
                    "pass --config FILE (its audit.archive and audit.retention) or --archive s3://BUCKET/PREFIX",
                ));
            }
        },
    };
    let archive = open(&target)?;
    let rt = runtime()?;
    let pass = rt
        .block_on(palisade_archive::archive_pass(&dir, &archive))
        .map_err(|e| Failure::other(format!("archiving stopped: {e}")).hint("run it again: it resumes"))?;
    let retained = match &retention {
        Some(policy) => Some(
            palisade_archive::retain_once(&dir, &archive, policy, &rt)
                .map_err(|e| Failure::other(format!("retention: {e}")))?,
        ),
        None => None,
    };
    match args.output {
        OutputFormat::Json => crate::output::json(&json!({
            "archive": archive.url(),
            "segments": pass.segments.iter().map(|s| json!({"object": s.object, "bytes": s.bytes, "uploaded": s.uploaded})).collect::<Vec<_>>(),
            "checkpoint_bytes": pass.checkpoints.iter().map(|c| c.bytes).sum::<u64>(),
            "backlog_segments": pass.backlog_segments,
            "deleted": retained.as_ref().map(|r| r.deleted.clone()).unwrap_or_default(),
            "retention_refused": retained.as_ref().and_then(|r| r.refused.clone()),
        }))?,
        OutputFormat::Text => {
            for s in &pass.segments {
                let how = if s.uploaded { "archived" } else { "already archived" };
                println!("{how} {} ({} bytes, read back identical)", s.object, s.bytes);
            }
            for c in &pass.checkpoints {
                println!("archived {} ({} bytes of checkpoints)", c.object, c.bytes);
            }
            if pass.segments.is_empty() && pass.checkpoints.is_empty() {
                println!("nothing new to archive to {}", archive.url());
            }
            if let Some(r) = &retained {
                for name in &r.deleted {
                    println!("deleted {name} (its archived copy is confirmed)");
                }
                if let Some(why) = &r.refused {
                    println!("retention kept segments: {why}");
                }
            }
        }
    }
    Ok(())
}

/// Keys given with `--public-key`: one for every log, or REPLICA=KEY.
fn key_for(values: &[String], replica: &str) -> Result<Option<KeySource>, Failure> {
    let mut single = None;
    for value in values {
        match value.split_once('=') {
            Some((name, key)) if !Path::new(value).exists() && !name.contains('/') && !key.is_empty() => {
                if name == replica {
                    return key_source(Some(key)).map(Some);
                }
            }
            _ => single = Some(key_source(Some(value))?),
        }
    }
    Ok(single)
}

/// The local trails under `root` (a trail or a directory of them), by (replica, log id);
/// none when there is no such directory.
fn local_trails(root: &Path) -> Result<Vec<(ArchivedLog, PathBuf)>, Failure> {
    let mut locals = Vec::new();
    if root.is_dir() {
        let dirs = match super::trails(root)? {
            Trails::One(dir) => vec![dir],
            Trails::Replicas { trails, .. } => trails.into_iter().map(|t| t.dir).collect(),
        };
        for dir in dirs {
            if let Some(genesis) =
                palisade_audit::read_genesis(&dir).map_err(|e| Failure::other(e.to_string()))?
            {
                locals.push((ArchivedLog { replica_id: genesis.replica_id, log_id: genesis.log_id }, dir));
            }
        }
    }
    Ok(locals)
}

/// The archive of `--archive`, the local trails under `--trail`/`--dir` (default the home's
/// `audit`), and every log in either, archived ones first.
struct Logs {
    archive: Archive,
    locals: Vec<(ArchivedLog, PathBuf)>,
    rt: tokio::runtime::Runtime,
    logs: Vec<ArchivedLog>,
}

fn logs(
    home: &Path,
    flags: &ArchiveFlags,
    trail: Option<&Path>,
    dir: Option<&Path>,
) -> Result<Logs, Failure> {
    let target = target(flags)?.ok_or_else(|| Failure::usage("--archive is missing"))?;
    let archive = open(&target)?;
    let root = trail.or(dir).map_or_else(|| home.join("audit"), Path::to_path_buf);
    let locals = local_trails(&root)?;
    let rt = runtime()?;
    let mut logs = rt.block_on(archive.logs()).map_err(|e| Failure::other(e.to_string()))?;
    for (log, _) in &locals {
        if !logs.contains(log) {
            logs.push(log.clone());
        }
    }
    Ok(Logs { archive, locals, rt, logs })
}

/// Work directories holding each log's records for `query --archive`; removed on drop.
pub(crate) struct Fetched {
    pub(crate) trails: Vec<palisade_audit::Trail>,
}

impl Drop for Fetched {
    fn drop(&mut self) {
        for trail in &self.trails {
            let _ = std::fs::remove_dir_all(&trail.dir);
        }
    }
}

/// `audit query --archive`: each log's archived segments that may hold records in
/// [`from`, `to`), then its local tail, laid out for `query_replicas`.
pub(crate) fn fetch_for_query(
    home: &Path,
    args: &AuditQueryArgs,
    from: Option<palisade_audit::Timestamp>,
    to: Option<palisade_audit::Timestamp>,
) -> Result<Fetched, Failure> {
    let Logs { archive, locals, rt, logs } =
        logs(home, &args.archive, args.trail.as_deref(), args.dir.as_deref())?;
    let mut fetched = Fetched { trails: Vec::new() };
    for log in logs {
        let local = locals.iter().find(|(l, _)| *l == log).map(|(_, dir)| dir.as_path());
        let work = palisade_archive::work_dir(None).map_err(|e| Failure::other(e.to_string()))?;
        fetched.trails.push(palisade_audit::Trail {
            dir: work.clone(),
            name: format!("{}/{}", log.replica_id, log.log_id),
            entry: log.replica_id.clone(),
            layout: palisade_audit::TrailLayout::Bare,
            replica_id: Some(log.replica_id.clone()),
            log_id: Some(log.log_id.clone()),
        });
        rt.block_on(archive.fetch_range(&log, local, from, to, &work))
            .map_err(|e| Failure::other(format!("cannot read the archive: {e}")))?;
    }
    Ok(fetched)
}

/// `audit verify --archive`
pub fn verify(home: &Path, args: &AuditVerifyArgs) -> Result<(), Failure> {
    let Logs { archive, locals, rt, logs } =
        logs(home, &args.archive, args.trail.as_deref(), args.dir.as_deref())?;
    if logs.is_empty() {
        return Err(Failure::data(format!("{} holds no trails, and there is no local one", archive.url())));
    }
    let mut outcomes: Vec<(ArchivedLog, Result<AcrossReport, String>)> = Vec::new();
    for log in logs {
        let local = locals.iter().find(|(l, _)| *l == log).map(|(_, dir)| dir.as_path());
        let key = match key_for(&args.public_key, &log.replica_id)? {
            Some(key) => key,
            None if local.is_some() => KeySource::Default,
            None => {
                let why = format!(
                    "no local trail, so no key beside it: pin it with --public-key {}=FILE|BASE64",
                    log.replica_id
                );
                outcomes.push((log, Err(why)));
                continue;
            }
        };
        let work = palisade_archive::work_dir(None).map_err(|e| Failure::other(e.to_string()))?;
        let options = VerifyOptions { from_seq: None, key };
        let result =
            rt.block_on(archive.verify_across(&log, local, &options, &work)).map_err(|e| e.to_string());
        let _ = std::fs::remove_dir_all(&work);
        outcomes.push((log, result));
    }
    let failed = outcomes.iter().filter(|(_, r)| !matches!(r, Ok(a) if a.report.ok)).count();
    match args.output {
        OutputFormat::Json => crate::output::json(&json!({
            "ok": failed == 0,
            "archive": archive.url(),
            "replicas": outcomes.iter().map(|(log, r)| match r {
                Ok(a) => json!({"replica": log.replica_id, "log_id": log.log_id, "archived_segments": a.archived_segments,
                                "local_segments": a.local_segments, "report": report_json(&a.report)}),
                Err(e) => json!({"replica": log.replica_id, "log_id": log.log_id, "error": e}),
            }).collect::<Vec<_>>(),
        }))?,
        OutputFormat::Text => {
            for (log, r) in &outcomes {
                match r {
                    Ok(a) => {
                        let verdict = if a.report.ok { "OK" } else { "FAILED" };
                        println!(
                            "replica {} (log {}): {verdict}: {} records, {} archived segments + {} local",
                            log.replica_id,
                            log.log_id,
                            a.report.records,
                            a.archived_segments,
                            a.local_segments
                        );
                        if let Some(p) = &a.report.first_problem {
                            println!("  {p}");
                        }
                        if a.unarchived_checkpoints > 0 {
                            println!(
                                "  no local trail: {} archived checkpoints name records never archived (the replica's last active segment)",
                                a.unarchived_checkpoints
                            );
                        }
                    }
                    Err(e) => println!("replica {} (log {}): NOT VERIFIED: {e}", log.replica_id, log.log_id),
                }
            }
        }
    }
    if failed == 0 {
        return Ok(());
    }
    let first = outcomes
        .iter()
        .find_map(|(log, r)| match r {
            Ok(a) if a.report.ok => None,
            Ok(a) => Some(format!(
                "replica {}: {}",
                log.replica_id,
                a.report.first_problem.as_ref().map(ToString::to_string).unwrap_or_default()
            )),
            Err(e) => Some(format!("replica {}: {e}", log.replica_id)),
        })
        .unwrap_or_default();
    Err(Failure::data(format!(
        "the audit trail across {} was modified or cannot be checked: {first}",
        archive.url()
    ))
    .hint("see docs/audit.md, \"Verifying a year of records\""))
}
