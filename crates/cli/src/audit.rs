//! `palisade audit verify|query|tail`: the auditor's view of the trail. Read-only, so they
//! work while a server is writing.

use std::io::Write;
use std::path::{Path, PathBuf};

use palisade_audit::{AuditRecord, Filter, KeySource, PublicKey, TailOptions, VerifyOptions};
use serde_json::json;

use crate::cli::{AuditQueryArgs, AuditTailArgs, AuditVerifyArgs, OutputFormat};
use crate::failure::Failure;

fn dir(home: &Path, flag: &Option<PathBuf>) -> Result<PathBuf, Failure> {
    let dir = flag.clone().unwrap_or_else(|| home.join("audit"));
    if !dir.is_dir() {
        return Err(Failure::usage(format!("no audit log at {}", dir.display()))
            .hint("the server writes it under HOME/audit; pass --home or --dir"));
    }
    Ok(dir)
}

/// The key `--public-key` names: a file if one exists there, else base64 text.
fn key_source(arg: Option<&str>) -> Result<KeySource, Failure> {
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
    let dir = dir(home, &args.dir)?;
    let key = key_source(args.public_key.as_deref())?;
    let report = palisade_audit::verify(&dir, &VerifyOptions { from_seq: args.from, key }).map_err(|e| {
        let failure = Failure::other(format!("cannot verify the audit log: {e}"));
        match e {
            palisade_audit::AuditError::Key(_) => failure.hint(
                "the public key is beside the signing key (HOME/keys/audit-signing.pub by default); pass it with --public-key FILE|BASE64",
            ),
            _ => failure,
        }
    })?;
    match args.output {
        OutputFormat::Json => {
            let problem = report.first_problem.as_ref().map(|p| {
                json!({"seq": p.seq, "segment": p.segment, "line": p.line, "what": p.what, "text": p.to_string()})
            });
            let window = report.window.map(|w| {
                json!({"records": w.records, "interval_ms": u64::try_from(w.interval.as_millis()).unwrap_or(u64::MAX)})
            });
            crate::output::json(&json!({
                "ok": report.ok,
                "legacy": report.legacy,
                "log_id": report.log_id,
                "created": report.created.map(|t| t.to_string()),
                "key_id": report.key_id,
                "key_source": report.key_source,
                "window": window,
                "records": report.records,
                "segments": report.segments,
                "checkpoints": report.checkpoints,
                "checkpoints_matched": report.checkpoints_matched,
                "recoveries": report.recoveries,
                "first_seq": report.first_seq,
                "last_seq": report.last_seq,
                "head": report.head,
                "unsigned_records": report.unsigned_records,
                "incomplete_tail": report.incomplete_tail,
                "first_problem": problem,
            }))?;
        }
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

fn print_record(record: &AuditRecord, format: OutputFormat, out: &mut impl Write) -> Result<(), Failure> {
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
            writeln!(
                out,
                "{time} #{} {} {what} {model} {decision} who={who} request_id={}",
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
    let dir = dir(home, &args.dir)?;
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
    let records = palisade_audit::query(&dir, filter)
        .map_err(|e| Failure::other(format!("cannot read the audit log: {e}")))?;
    let (mut out, format) = sink(args.export.as_deref(), args.output)?;
    for record in records {
        let record = record.map_err(|e| Failure::data(format!("cannot read a record: {e}")))?;
        print_record(&record, format, &mut out)?;
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
    let dir = dir(home, &args.dir)?;
    let tail = palisade_audit::Tail::open(
        &dir,
        TailOptions { last: args.lines, follow: args.follow, ..TailOptions::default() },
    )
    .map_err(|e| Failure::other(format!("cannot read the audit log: {e}")))?;
    let (mut out, format) = sink(args.export.as_deref(), args.output)?;
    for record in tail {
        let record = record.map_err(|e| Failure::data(format!("cannot read a record: {e}")))?;
        print_record(&record, format, &mut out)?;
        out.flush().map_err(|e| Failure::other(format!("cannot write: {e}")))?;
    }
    Ok(())
}
