//! `palisade audit verify DIR` over a directory of replicas' trails: every chain checked on
//! its own, with its own key, reported per replica, with one verdict for all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use palisade_audit::{KeySource, Trail, VerifyOptions, VerifyReport};
use serde_json::json;

use super::{key_source, report_json};
use crate::cli::{AuditVerifyArgs, OutputFormat};
use crate::failure::Failure;

/// The keys given with `--public-key` for a directory of trails.
#[derive(Default)]
struct Keys {
    /// `REPLICA=KEY`, by replica id or directory name.
    named: BTreeMap<String, KeySource>,
    /// A directory of `<replica>.pub` files.
    dir: Option<PathBuf>,
}

impl Keys {
    fn parse(values: &[String], trails: &[Trail]) -> Result<Keys, Failure> {
        let mut keys = Keys::default();
        for value in values {
            if let Some((name, key)) = value.split_once('=')
                && !name.is_empty()
                && !Path::new(value).exists()
                && !key.is_empty()
                && !name.contains('/')
            {
                if !trails.iter().any(|t| t.replica_id.as_deref() == Some(name) || t.entry == name) {
                    let known: Vec<&str> = trails.iter().map(Trail::label).collect();
                    return Err(Failure::usage(format!(
                        "--public-key {name}=...: no replica {name} here (replicas: {})",
                        known.join(", ")
                    )));
                }
                keys.named.insert(name.to_owned(), key_source(Some(key))?);
            } else if Path::new(value).is_dir() {
                if keys.dir.replace(PathBuf::from(value)).is_some() {
                    return Err(Failure::usage("--public-key: more than one key directory"));
                }
            } else if trails.len() == 1 {
                let trail = &trails[0];
                keys.named.insert(trail.entry.clone(), key_source(Some(value))?);
            } else {
                return Err(Failure::usage(format!(
                    "--public-key {value}: this directory holds {} replicas' trails, each with its own key",
                    trails.len()
                ))
                .hint("pin each replica's key as REPLICA=FILE|BASE64 (repeat --public-key), or pass a directory of REPLICA.pub files"));
            }
        }
        Ok(keys)
    }

    /// The key a trail is verified with, or why there is none.
    fn for_trail(&self, trail: &Trail) -> Result<KeySource, String> {
        let names = [trail.replica_id.as_deref(), Some(trail.entry.as_str())];
        for name in names.into_iter().flatten() {
            if let Some(key) = self.named.get(name) {
                return Ok(key.clone());
            }
        }
        if let Some(dir) = &self.dir {
            for name in names.into_iter().flatten() {
                let file = dir.join(format!("{name}.pub"));
                if file.is_file() {
                    return Ok(KeySource::File(file));
                }
            }
            return Err(format!(
                "no key for replica {} in {} (looked for {}.pub and {}.pub)",
                trail.label(),
                dir.display(),
                trail.label(),
                trail.entry
            ));
        }
        if !trail.has_keys_beside() {
            return Err(format!(
                "{} is the log itself, with no keys/ directory beside it: pin its key with --public-key {}=FILE|BASE64",
                trail.dir.display(),
                trail.label()
            ));
        }
        Ok(KeySource::Default)
    }
}

/// A replica's outcome.
struct Outcome<'t> {
    trail: &'t Trail,
    result: Result<VerifyReport, String>,
}

/// `audit verify` over replicas' trails.
pub(super) fn verify(
    dir: &Path,
    trails: &[Trail],
    skipped: &[String],
    args: &AuditVerifyArgs,
) -> Result<(), Failure> {
    if args.from.is_some() {
        return Err(Failure::usage(format!(
            "--from: {} holds the trails of {} replicas, and a seq names a record of one chain",
            dir.display(),
            trails.len()
        ))
        .hint("verify one replica's trail from a seq: palisade audit verify DIR/REPLICA/trail --from SEQ"));
    }
    let keys = Keys::parse(&args.public_key, trails)?;
    let outcomes: Vec<Outcome<'_>> = trails
        .iter()
        .map(|trail| {
            let result = keys.for_trail(trail).and_then(|key| {
                palisade_audit::verify(&trail.dir, &VerifyOptions { from_seq: None, key })
                    .map_err(|e| e.to_string())
            });
            Outcome { trail, result }
        })
        .collect();
    let modified: Vec<(&Trail, &VerifyReport)> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().ok().filter(|r| !r.ok).map(|r| (o.trail, r)))
        .collect();
    let unverified: Vec<(&Trail, &String)> =
        outcomes.iter().filter_map(|o| o.result.as_ref().err().map(|e| (o.trail, e))).collect();
    let ok = modified.is_empty() && unverified.is_empty();
    match args.output {
        OutputFormat::Json => {
            let replicas: Vec<serde_json::Value> = outcomes
                .iter()
                .map(|o| {
                    let mut value = match &o.result {
                        Ok(report) => report_json(report),
                        Err(error) => json!({"ok": false, "error": error}),
                    };
                    if let Some(fields) = value.as_object_mut() {
                        fields.insert("replica_id".into(), json!(o.trail.replica_id));
                        fields.insert("path".into(), json!(o.trail.dir.display().to_string()));
                    }
                    value
                })
                .collect();
            crate::output::json(&json!({
                "ok": ok,
                "directory": dir.display().to_string(),
                "replicas": replicas,
                "skipped": skipped,
            }))?;
        }
        OutputFormat::Text => print!("{}", text(&outcomes, skipped)),
    }
    if let Some((trail, report)) = modified.first() {
        let problem = report.first_problem.as_ref().map(ToString::to_string).unwrap_or_default();
        let what = if report.legacy { "is a legacy log" } else { "was modified" };
        let mut message = format!(
            "the audit trail of replica {} ({}) {what}: {problem}",
            trail.label(),
            trail.dir.display()
        );
        let others: Vec<&str> = modified
            .iter()
            .skip(1)
            .map(|(t, _)| t.label())
            .chain(unverified.iter().map(|(t, _)| t.label()))
            .collect();
        if !others.is_empty() {
            message.push_str(&format!(" (also failed: {})", others.join(", ")));
        }
        return Err(Failure::data(message).hint("see docs/audit.md for what each finding means"));
    }
    if let Some((trail, error)) = unverified.first() {
        return Err(Failure::other(format!(
            "cannot verify the audit trail of replica {} ({}): {error}",
            trail.label(),
            trail.dir.display()
        ))
        .hint("pass each replica's public key: --public-key REPLICA=FILE|BASE64, or a directory of REPLICA.pub files"));
    }
    Ok(())
}

/// The text report: each replica's report, indented under its name, then the verdict.
fn text(outcomes: &[Outcome<'_>], skipped: &[String]) -> String {
    let mut out = String::new();
    for o in outcomes {
        let head = format!("replica {} ({})", o.trail.label(), o.trail.name);
        match &o.result {
            Ok(report) => {
                let body = report.to_string();
                let mut lines = body.lines();
                out.push_str(&format!("{head}: {}\n", lines.next().unwrap_or_default()));
                for line in lines {
                    out.push_str(&format!("  {line}\n"));
                }
            }
            Err(error) => out.push_str(&format!("{head}: CANNOT VERIFY: {error}\n")),
        }
    }
    if !skipped.is_empty() {
        out.push_str(&format!("skipped (no audit trail in them): {}\n", skipped.join(", ")));
    }
    let failed: Vec<&str> =
        outcomes.iter().filter(|o| !o.result.as_ref().is_ok_and(|r| r.ok)).map(|o| o.trail.label()).collect();
    let records: u64 = outcomes.iter().filter_map(|o| o.result.as_ref().ok()).map(|r| r.records).sum();
    if failed.is_empty() {
        out.push_str(&format!("OK: {} replicas, {records} records, every chain intact\n", outcomes.len()));
    } else {
        out.push_str(&format!(
            "FAILED: {} of {} replicas ({})\n",
            failed.len(),
            outcomes.len(),
            failed.join(", ")
        ));
    }
    out
}
