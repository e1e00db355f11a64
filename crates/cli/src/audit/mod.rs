//! `palisade audit verify|query|tail`: the auditor's view of the trail. Read-only, so they
//! work while a server is writing. `verify` and `query` also read a directory of replicas'
//! trails (see [`replicas`]).

pub mod archive;
mod replicas;

use std::io::Write;
use std::path::{Path, PathBuf};

use palisade_audit::{
    AuditRecord, Filter, KeySource, PublicKey, TailOptions, Trails, VerifyOptions, VerifyReport,
};
use serde_json::json;

use crate::cli::{
    AuditImportArgs, AuditQueryArgs, AuditSealArgs, AuditTailArgs, AuditVerifyArgs, OutputFormat,
};
use crate::failure::Failure;

/// The directory named by `DIR` or `--dir`, else `HOME/audit`.
pub(crate) fn dir(
    home: &Path,
    positional: &Option<PathBuf>,
    flag: &Option<PathBuf>,
) -> Result<PathBuf, Failure> {
    let dir = positional.clone().or_else(|| flag.clone()).unwrap_or_else(|| home.join("audit"));
    if !dir.is_dir() {
        return Err(Failure::usage(format!("no audit log at {}", dir.display()))
            .hint("the server writes it under HOME/audit; pass --home, or the directory (a trail, or a directory of replicas' trails)"));
    }
    Ok(dir)
}

/// One trail, or a directory of replicas' trails.
pub(crate) fn trails(dir: &Path) -> Result<Trails, Failure> {
    palisade_audit::find_trails(dir).map_err(|e| match e {
        palisade_audit::AuditError::AmbiguousTrails { what, fix } => {
            Failure::usage(format!("ambiguous audit trails: {what}")).hint(fix)
        }
        other => Failure::other(format!("cannot read {}: {other}", dir.display())),
    })
}

/// The key `--public-key` names: a file if one exists there, else base64 text.
pub(crate) fn key_source(arg: Option<&str>) -> Result<KeySource, Failure> {
    let Some(arg) = arg else { return Ok(KeySource::Default) };
    let path = Path::new(arg);
    if path.is_file() {
        return Ok(KeySource::File(path.to_owned()));
    }
    match PublicKey::from_base64(arg) {
        Ok(key) => Ok(KeySource::Pinned(key)),
        Err(e) => Err(Failure::usage(format!(
            "--public-key {arg}: neither a readable file nor a base64 Ed25519 public key ({e})"
        ))
        .hint("pass the file audit-signing.pub (or a copy of it) or its contents")),
    }
}

/// `audit verify`
pub fn verify(home: &Path, args: &AuditVerifyArgs) -> Result<(), Failure> {
    if args.archive.archive.is_some() {
        return archive::verify(home, args);
    }
    let dir = dir(home, &args.trail, &args.dir)?;
    let (trails, skipped) = match trails(&dir)? {
        Trails::One(dir) => return verify_one(&dir, args),
        Trails::Replicas { trails, skipped } => (trails, skipped),
    };
    replicas::verify(&dir, &trails, &skipped, args)
}

/// `audit verify` of one trail.
fn verify_one(dir: &Path, args: &AuditVerifyArgs) -> Result<(), Failure> {
    let key = match args.public_key.as_slice() {
        [] => KeySource::Default,
        [one] => key_source(Some(one))?,
        _ => {
            return Err(Failure::usage(format!("{} holds one trail: pass one --public-key", dir.display()))
                .hint("several keys are for a directory of replicas' trails (REPLICA=KEY)"));
        }
    };
    let report = palisade_audit::verify(dir, &VerifyOptions { from_seq: args.from, key }).map_err(|e| {
        let failure = Failure::other(format!("cannot verify the audit log: {e}"));
        match e {
            palisade_audit::AuditError::Key(_) => failure.hint(
                "the public key is beside the signing key (HOME/keys/audit-signing.pub by default); pass it with --public-key FILE|BASE64",
            ),
            _ => failure,
        }
    })?;
    match args.output {
        OutputFormat::Json => crate::output::json(&report_json(&report))?,
        OutputFormat::Text => print!("{report}"),
    }
    if report.ok {
        return Ok(());
    }
    let problem = report.first_problem.map(|p| p.to_string()).unwrap_or_default();
    if report.legacy {
        return Err(Failure::data(format!("the audit trail is a legacy log: {problem}"))
            .hint("archive it (move the directory aside); see docs/audit.md, \"Logs from before genesis checkpoints\""));
    }
    Err(Failure::data(format!("the audit trail was modified: {problem}"))
        .hint("see docs/audit.md for what each finding means"))
}

/// A verification report as JSON (`verify --output json`).
pub(crate) fn report_json(report: &VerifyReport) -> serde_json::Value {
    let problem = report.first_problem.as_ref().map(|p| {
        json!({"seq": p.seq, "segment": p.segment, "line": p.line, "what": p.what, "text": p.to_string()})
    });
    let window = report.window.map(|w| {
        json!({"records": w.records, "interval_ms": u64::try_from(w.interval.as_millis()).unwrap_or(u64::MAX)})
    });
    json!({
        "ok": report.ok,
        "legacy": report.legacy,
        "log_id": report.log_id,
        "created": report.created.map(|t| t.to_string()),
        "key_id": report.key_id,
        "key_source": report.key_source,
        "window": window,
        "records": report.records,
        "segments": report.segments,
        "sealed_segments": report.sealed_segments,
        "checkpoints": report.checkpoints,
        "checkpoints_matched": report.checkpoints_matched,
        "recoveries": report.recoveries,
        "first_seq": report.first_seq,
        "last_seq": report.last_seq,
        "head": report.head,
        "unsigned_records": report.unsigned_records,
        "incomplete_tail": report.incomplete_tail,
        "first_problem": problem,
    })
}

/// Prints a record: as stored (JSON), or as one line of text, with its replica when the
/// records come from several.
fn print_record(
    record: &AuditRecord,
    format: OutputFormat,
    with_replica: bool,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let result = match format {
        OutputFormat::Json => serde_json::to_writer(&mut *out, record)
            .map_err(std::io::Error::other)
            .and_then(|()| writeln!(out)),
        OutputFormat::Text => {
            let time = record.received.or(record.completed).map(|t| t.to_string()).unwrap_or_default();
            let principal = record
                .request_principal
                .clone()
                .or_else(|| record.peer_identity.clone())
                .or_else(|| record.config.as_ref().map(|c| c.who.clone()))
                .unwrap_or_else(|| "-".to_owned());
            // The email or the service account beside the issuer's principal: tokens of one
            // issuer can share a subject, people should still be told apart.
            let who = match record.email.as_ref().or(record.service_account.as_ref()) {
                Some(person) if !principal.ends_with(&format!("/{person}")) => {
                    format!("{principal} ({person})")
                }
                _ => principal,
            };
            let model = record
                .model
                .as_ref()
                .map_or_else(|| "-".to_owned(), |m| format!("{}/{}", m.namespace, m.name));
            let decision = record.authz.as_ref().map_or_else(|| "-".to_owned(), |a| a.decision.to_string());
            let what = match &record.config {
                Some(change) => format!("config {}", change.what),
                None => format!(
                    "{} {}",
                    record.method.as_deref().unwrap_or("-"),
                    record.path.as_deref().unwrap_or("-")
                ),
            };
            let replica = if with_replica { format!("{} ", record.replica_id) } else { String::new() };
            writeln!(
                out,
                "{time} {replica}#{} {} {what} {model} {decision} who={who} request_id={}",
                record.seq,
                record.status.map_or_else(|| "-".to_owned(), |s| s.to_string()),
                record.request_id.as_deref().unwrap_or("-"),
            )
        }
    };
    result.map_err(|e| Failure::other(format!("cannot write: {e}")))
}

/// `audit query`
pub fn query(home: &Path, args: &AuditQueryArgs) -> Result<(), Failure> {
    let dir = match args.archive.archive {
        Some(_) => PathBuf::new(),
        None => dir(home, &args.trail, &args.dir)?,
    };
    let parse_time = |t: &Option<String>, flag: &str| -> Result<_, Failure> {
        t.as_deref().map(|t| t.parse().map_err(|e| Failure::usage(format!("--{flag}: {e}")))).transpose()
    };
    let filter = Filter {
        from: parse_time(&args.from, "from")?,
        to: parse_time(&args.to, "to")?,
        principal: args.principal.clone(),
        model: args.model.clone(),
        decision: args.decision.as_deref().map(str::parse).transpose().map_err(Failure::usage)?,
        status: args.status.as_deref().map(str::parse).transpose().map_err(Failure::usage)?,
        request_id: args.request_id.clone(),
        kind: None,
        limit: args.limit,
    };
    let cannot_read =
        |e: palisade_audit::AuditError| Failure::other(format!("cannot read the audit log: {e}"));
    // With --archive: each log laid out (archived segments in range, then its local tail)
    // in a work directory, read as a directory of replicas' trails.
    let fetched = match args.archive.archive.is_some() {
        true => Some(archive::fetch_for_query(home, args, filter.from, filter.to)?),
        false => None,
    };
    let (records, merged): (Box<dyn Iterator<Item = _>>, bool) = match &fetched {
        Some(fetched) => {
            (Box::new(palisade_audit::query_replicas(&fetched.trails, filter).map_err(cannot_read)?), true)
        }
        None => match trails(&dir)? {
            Trails::One(dir) => (Box::new(palisade_audit::query(&dir, filter).map_err(cannot_read)?), false),
            Trails::Replicas { trails, .. } => {
                let merged = palisade_audit::query_replicas(&trails, filter).map_err(|e| {
                    match e {
                palisade_audit::AuditError::Corrupt { .. } => Failure::data(format!(
                    "cannot read a record: {e}"
                ))
                .hint(
                    "run `palisade audit verify` on the directory to see which replica's trail was modified",
                ),
                other => cannot_read(other),
            }
                })?;
                (Box::new(merged), true)
            }
        },
    };
    let (mut out, format) = sink(args.export.as_deref(), args.output)?;
    for record in records {
        let record = record.map_err(|e| Failure::data(format!("cannot read a record: {e}")))?;
        print_record(&record, format, merged, &mut out)?;
    }
    out.flush().map_err(|e| Failure::other(format!("cannot write: {e}")))
}

/// Where records go: stdout in the chosen format, or JSON lines appended to `export`.
fn sink(export: Option<&Path>, output: OutputFormat) -> Result<(Box<dyn Write>, OutputFormat), Failure> {
    match export {
        None => Ok((Box::new(std::io::LineWriter::new(std::io::stdout())), output)),
        Some(file) => {
            let opened = std::fs::OpenOptions::new().create(true).append(true).open(file).map_err(|e| {
                Failure::usage(format!("--export {}: {e}", file.display()))
                    .hint("give a writable file path; records are appended as JSON lines")
            })?;
            Ok((Box::new(std::io::BufWriter::new(opened)), OutputFormat::Json))
        }
    }
}

/// `audit tail [-f]`
pub fn tail(home: &Path, args: &AuditTailArgs) -> Result<(), Failure> {
    let dir = dir(home, &args.trail, &args.dir)?;
    if let Trails::Replicas { trails, .. } = trails(&dir)? {
        let example = trails.first().map_or_else(|| dir.join("REPLICA"), |t| t.dir.clone());
        return Err(Failure::usage(format!(
            "{} holds the trails of {} replicas; tail follows one trail",
            dir.display(),
            trails.len()
        ))
        .hint(format!(
            "tail one replica (palisade audit tail {}), or read all of them merged by time with `palisade audit query {}`",
            example.display(),
            dir.display()
        )));
    }
    let tail = palisade_audit::Tail::open(
        &dir,
        TailOptions { last: args.lines, follow: args.follow, ..TailOptions::default() },
    )
    .map_err(|e| Failure::other(format!("cannot read the audit log: {e}")))?;
    let (mut out, format) = sink(args.export.as_deref(), args.output)?;
    for record in tail {
        let record = record.map_err(|e| Failure::data(format!("cannot read a record: {e}")))?;
        print_record(&record, format, false, &mut out)?;
        out.flush().map_err(|e| Failure::other(format!("cannot write: {e}")))?;
    }
    Ok(())
}

/// `audit import`
pub fn import(args: &AuditImportArgs) -> Result<(), Failure> {
    let mut inputs: Vec<(String, Box<dyn std::io::BufRead>)> = Vec::new();
    for file in &args.files {
        if file.as_os_str() == "-" {
            inputs.push(("<stdin>".to_owned(), Box::new(std::io::BufReader::new(std::io::stdin()))));
            continue;
        }
        let opened = std::fs::File::open(file).map_err(|e| {
            Failure::usage(format!("{}: {e}", file.display())).hint("give files of shipped lines")
        })?;
        inputs.push((file.display().to_string(), Box::new(std::io::BufReader::new(opened))));
    }
    let report = palisade_audit::import_shipped(inputs, &args.out).map_err(|e| match e {
        palisade_audit::AuditError::Corrupt { .. } => Failure::data(format!("cannot import: {e}")),
        palisade_audit::AuditError::AmbiguousTrails { what, fix } => {
            Failure::usage(format!("cannot import: {what}")).hint(fix)
        }
        other => Failure::other(format!("cannot import: {other}")),
    })?;
    match args.output {
        OutputFormat::Json => {
            let trails: Vec<serde_json::Value> = report
                .trails
                .iter()
                .map(|t| {
                    json!({
                        "replica_id": t.replica_id,
                        "log_id": t.log_id,
                        "path": t.dir.display().to_string(),
                        "records": t.records,
                        "checkpoints": t.checkpoints,
                        "duplicates": t.duplicates,
                    })
                })
                .collect();
            crate::output::json(&json!({"trails": trails, "ignored_lines": report.ignored}))?;
        }
        OutputFormat::Text => {
            for t in &report.trails {
                println!(
                    "replica {}: {} records, {} checkpoints{} -> {}",
                    t.replica_id,
                    t.records,
                    t.checkpoints,
                    if t.duplicates > 0 {
                        format!(" ({} duplicate lines dropped)", t.duplicates)
                    } else {
                        String::new()
                    },
                    t.dir.display()
                );
            }
            if report.ignored > 0 {
                println!("ignored {} lines that are not audit lines", report.ignored);
            }
            println!(
                "verify them with each replica's pinned key: palisade audit verify {} --public-key KEYDIR",
                args.out.display()
            );
        }
    }
    Ok(())
}

/// `audit seal`
pub fn seal(home: &Path, args: &AuditSealArgs) -> Result<(), Failure> {
    let dir = dir(home, &None, &args.dir)?;
    let options = palisade_audit::SealOptions {
        signing_key: args.signing_key.clone(),
        frame_records: args.frame_records as usize,
        level: args.level,
        ..palisade_audit::SealOptions::default()
    };
    let report = palisade_audit::seal_segments(&dir, &options).map_err(|e| match e {
        palisade_audit::AuditError::Untrusted { .. } => Failure::data(format!("cannot seal: {e}")),
        palisade_audit::AuditError::Key(_) | palisade_audit::AuditError::InsecureKey { .. } => {
            Failure::usage(format!("cannot seal: {e}"))
                .hint("sealing signs with the log's signing key: pass it with --signing-key FILE")
        }
        other => Failure::other(format!("cannot seal: {other}")),
    })?;
    match args.output {
        OutputFormat::Json => {
            let sealed: Vec<serde_json::Value> = report
                .sealed
                .iter()
                .map(|s| {
                    json!({"segment": s.segment, "records": s.records, "plain_bytes": s.plain_bytes,
                           "sealed_bytes": s.sealed_bytes, "frames": s.frames})
                })
                .collect();
            crate::output::json(&json!({
                "sealed": sealed,
                "leftovers_removed": report.leftovers_removed,
                "waiting": report.waiting,
            }))?;
        }
        OutputFormat::Text => {
            for s in &report.sealed {
                println!(
                    "sealed {}: {} records, {} -> {} bytes ({:.0} B/record), {} frames",
                    s.segment,
                    s.records,
                    s.plain_bytes,
                    s.sealed_bytes,
                    s.sealed_bytes as f64 / s.records.max(1) as f64,
                    s.frames
                );
            }
            if report.sealed.is_empty() {
                println!("nothing to seal");
            }
            if let Some(why) = &report.waiting {
                println!("stopped: {why}");
            }
        }
    }
    Ok(())
}
