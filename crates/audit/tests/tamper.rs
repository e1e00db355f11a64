//! Each kind of tampering `verify` must detect, one test each, naming the first bad record.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;

use common::*;
use palisade_audit::{
    AuditConfig, AuditError, AuditLog, CHECKPOINT_FILE, KeySource, Problem, PublicKey, VerifyOptions,
    VerifyReport, verify,
};

/// 60 records in several segments, a checkpoint every 10 records and one on close.
fn intact_log() -> LogDir {
    let dir = log_dir();
    write_log(dir.path(), AuditConfig { segment_max_bytes: 8 * 1024, ..small("replica-t") }, 60);
    let report = verify(dir.path(), &VerifyOptions::default()).unwrap();
    assert!(report.ok && report.segments >= 3, "{report}");
    dir
}

fn check(dir: &Path) -> VerifyReport {
    verify(dir, &VerifyOptions::default()).unwrap()
}

fn problem(dir: &Path) -> Problem {
    let report = check(dir);
    assert!(!report.ok, "tampering went unnoticed: {report}");
    report.first_problem.unwrap()
}

#[test]
fn an_edited_byte_is_a_hash_mismatch() {
    let dir = intact_log();
    let (path, i) = locate(dir.path(), 25);
    let mut all = lines(&path);
    assert!(all[i].contains(r#""status":200"#));
    all[i] = all[i].replace(r#""status":200"#, r#""status":201"#);
    write_lines(&path, &all);
    let p = problem(dir.path());
    assert_eq!(
        (p.seq, p.segment.as_deref(), p.line),
        (Some(25), Some(name(&path).as_str()), Some(i as u64 + 1))
    );
    assert!(p.what.contains("hash mismatch"), "{p}");
}

#[test]
fn a_deleted_record_breaks_the_seq_sequence() {
    let dir = intact_log();
    let (path, i) = locate(dir.path(), 25);
    let mut all = lines(&path);
    all.remove(i);
    write_lines(&path, &all);
    let p = problem(dir.path());
    assert_eq!((p.seq, p.line), (Some(26), Some(i as u64 + 1)), "{p}");
    assert!(p.what.contains("seq 25 was expected"), "{p}");
}

#[test]
fn an_inserted_record_is_found_even_when_the_chain_is_recomputed() {
    // Naive insertion: a copy of a record.
    let dir = intact_log();
    let (path, i) = locate(dir.path(), 25);
    let mut all = lines(&path);
    all.insert(i + 1, all[i].clone());
    write_lines(&path, &all);
    let p = problem(dir.path());
    assert_eq!((p.seq, p.line), (Some(25), Some(i as u64 + 2)), "{p}");

    // A careful forger inserts a record and re-chains everything after it (renumbering
    // seqs, recomputing prev_hash and hash) in a single-segment log: the chain is
    // consistent again, but the signed checkpoints no longer match.
    let dir = log_dir();
    write_log(dir.path(), AuditConfig { checkpoint_every: 10, ..AuditConfig::default() }, 30);
    let path = segments(dir.path()).pop().unwrap();
    let original = lines(&path);
    let mut stored: Vec<serde_json::Value> =
        original.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(stored.len(), 30, "one segment");
    let mut forged = stored[14].clone();
    forged["request_id"] = "forged".into();
    forged["status"] = 200.into();
    stored.insert(15, forged);
    let mut out: Vec<String> = Vec::new();
    let mut prev = stored[14]["hash"].as_str().unwrap().to_owned();
    for (seq, record) in stored.iter().enumerate() {
        if seq < 15 {
            out.push(original[seq].clone());
            continue;
        }
        let (line, hash) = reseal(record.clone(), seq as u64, &prev);
        out.push(line);
        prev = hash;
    }
    for (seq, line) in out.iter().enumerate() {
        assert_eq!(serde_json::from_str::<serde_json::Value>(line).unwrap()["seq"], seq as u64);
    }
    write_lines(&path, &out);
    let p = problem(dir.path());
    assert_eq!(p.seq, Some(19), "the first checkpoint after the insertion: {p}");
    assert!(p.what.contains("signed checkpoint") && p.what.contains("re-chained"), "{p}");
}

#[test]
fn swapped_records_are_out_of_order() {
    let dir = intact_log();
    let (path, i) = locate(dir.path(), 30);
    let mut all = lines(&path);
    all.swap(i, i + 1);
    write_lines(&path, &all);
    let p = problem(dir.path());
    assert_eq!((p.seq, p.line), (Some(31), Some(i as u64 + 1)), "{p}");
    assert!(p.what.contains("deleted, inserted or reordered"), "{p}");
}

#[test]
fn a_deleted_middle_segment_is_a_gap() {
    let dir = intact_log();
    let all = segments(dir.path());
    fs::remove_file(&all[1]).unwrap();
    let p = problem(dir.path());
    assert_eq!(p.segment.as_deref(), Some(name(&all[2]).as_str()));
    assert!(p.what.contains("missing"), "{p}");
}

#[test]
fn a_truncated_middle_segment_is_a_gap() {
    let dir = intact_log();
    let all = segments(dir.path());
    let mut first = lines(&all[0]);
    let cut = first.pop().unwrap();
    write_lines(&all[0], &first);
    let p = problem(dir.path());
    assert_eq!(p.segment.as_deref(), Some(name(&all[1]).as_str()), "{p}");
    // Cutting mid-line is also caught.
    first.push(cut[..cut.len() / 2].to_owned());
    fs::write(&all[0], first.join("\n")).unwrap();
    let p = problem(dir.path());
    assert_eq!(p.segment.as_deref(), Some(name(&all[0]).as_str()), "{p}");
    assert!(p.what.contains("truncated"), "{p}");
}

#[test]
fn a_truncated_tail_after_the_last_checkpoint_is_detected() {
    let dir = intact_log();
    let last = segments(dir.path()).pop().unwrap();
    let mut all = lines(&last);
    all.truncate(all.len() - 3);
    write_lines(&last, &all);
    let p = problem(dir.path());
    assert_eq!(p.seq, Some(59), "{p}");
    assert!(p.what.contains("covers seq 59 but the log ends at seq 56"), "{p}");

    // The writer refuses to continue a chain whose signed tail is gone.
    let err = palisade_audit::AuditLog::open(dir.path(), small("replica-t")).unwrap_err();
    assert!(err.to_string().contains("records were removed"), "{err}");

    // The whole last segment removed: same finding.
    let dir = intact_log();
    fs::remove_file(segments(dir.path()).pop().unwrap()).unwrap();
    let p = problem(dir.path());
    assert!(p.what.contains("removed from the end"), "{p}");
}

#[test]
fn a_forged_checkpoint_fails_its_signature() {
    let dir = intact_log();
    let path = dir.path().join(CHECKPOINT_FILE);
    let mut all = lines(&path);
    let original = all[2].clone();
    let mut v: serde_json::Value = serde_json::from_str(&original).unwrap();
    v["hash"] = "00".repeat(32).into();
    all[2] = serde_json::to_string(&v).unwrap();
    write_lines(&path, &all);
    let p = problem(dir.path());
    assert_eq!((p.segment.as_deref(), p.line), (Some(CHECKPOINT_FILE), Some(3)), "{p}");
    assert!(p.what.contains("signature does not verify"), "{p}");

    // A checkpoint claiming a later head, signature copied from another line.
    all[2] = original;
    let mut extra: serde_json::Value = serde_json::from_str(all.last().unwrap()).unwrap();
    extra["seq"] = 1000.into();
    all.push(serde_json::to_string(&extra).unwrap());
    write_lines(&path, &all);
    let p = problem(dir.path());
    assert_eq!(p.line, Some(all.len() as u64), "{p}");
}

#[test]
fn a_fresh_chain_needs_the_key_and_a_pinned_key_resists_home_access() {
    // Someone who can write the log directory (not the key directory) replaces the log with
    // one of their own, signed with their own key: its genesis names another key.
    let dir = intact_log();
    let pinned = PublicKey::from_file(&dir.public_key()).unwrap();
    let forger = log_dir();
    write_log(forger.path(), small("replica-t"), 60);
    for entry in fs::read_dir(dir.path()).unwrap() {
        fs::remove_file(entry.unwrap().path()).unwrap();
    }
    for entry in fs::read_dir(forger.path()).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let p = problem(dir.path());
    assert_eq!((p.segment.as_deref(), p.line), (Some(CHECKPOINT_FILE), Some(1)), "{p}");
    assert!(
        p.what.contains("genesis checkpoint names key") && p.what.contains("not the expected key"),
        "{p}"
    );
    let err = AuditLog::open(dir.path(), small("replica-t")).unwrap_err();
    assert!(
        matches!(err, AuditError::Key(_)) && err.to_string().contains("move the log directory aside"),
        "{err}"
    );

    // With write access to the home (the key directory too) they can replace the public key
    // as well: only a key pinned out of band still tells.
    fs::copy(forger.key(), dir.key()).unwrap();
    fs::copy(forger.public_key(), dir.public_key()).unwrap();
    assert!(check(dir.path()).ok, "with the key directory replaced the forgery is consistent");
    let options = VerifyOptions { key: KeySource::Pinned(pinned), ..VerifyOptions::default() };
    let p = verify(dir.path(), &options).unwrap().first_problem.unwrap();
    assert_eq!(p.segment.as_deref(), Some(CHECKPOINT_FILE));
    assert!(p.what.contains("not the expected key") && p.what.contains("pinned"), "{p}");
}

#[test]
fn checkpoints_removed_after_the_genesis_leave_too_many_unsigned_records() {
    // Keep the genesis, drop every other checkpoint: 60 records follow it, the window is 10.
    let dir = intact_log();
    let path = dir.path().join(CHECKPOINT_FILE);
    let genesis = lines(&path).remove(0);
    write_lines(&path, &[genesis]);
    let p = problem(dir.path());
    assert_eq!(p.seq, Some(10), "the eleventh unsigned record: {p}");
    assert!(
        p.what.contains("more than 10 records follow the last checkpoint (the genesis checkpoint)"),
        "{p}"
    );
    let err = AuditLog::open(dir.path(), small("replica-t")).unwrap_err();
    assert!(matches!(err, AuditError::Untrusted { .. }), "{err}");
    assert!(err.to_string().contains("60 records follow the last checkpoint"), "{err}");
    assert!(err.to_string().contains("move the directory aside"), "{err}");
    assert_eq!(lines(&path).len(), 1, "nothing was signed");
}

#[test]
fn checkpoints_removed_from_the_middle_are_a_gap() {
    let dir = intact_log();
    let path = dir.path().join(CHECKPOINT_FILE);
    let mut all = lines(&path);
    let cp = |line: &String| serde_json::from_str::<serde_json::Value>(line).unwrap()["seq"].as_u64();
    assert_eq!(cp(&all[2]), Some(19));
    all.drain(2..4);
    write_lines(&path, &all);
    let p = problem(dir.path());
    assert!(
        p.what.contains("more than 10 records follow the last checkpoint (checkpoints.jsonl:2, seq 9)"),
        "{p}"
    );
    assert_eq!(p.seq, Some(20), "{p}");
}

#[test]
fn unsigned_records_spread_over_more_than_the_interval_are_found() {
    // Records an hour apart, the newest checkpoint gone: by count they fit one window, but a
    // running writer would have signed each within 10 s.
    let dir = log_dir();
    runtime().block_on(async {
        let log = AuditLog::open(dir.path(), AuditConfig { checkpoint_every: 1000, ..small("r") }).unwrap();
        for i in 0..5 {
            let mut record = request(i);
            record.completed =
                Some(palisade_audit::Timestamp::from_unix_millis(1_795_687_200_000 + i as i64 * 3_600_000));
            log.append(record).await.unwrap();
        }
        log.close().await.unwrap();
    });
    let path = dir.path().join(CHECKPOINT_FILE);
    let mut all = lines(&path);
    all.pop();
    write_lines(&path, &all);
    let p = problem(dir.path());
    assert_eq!(p.seq, Some(4), "{p}");
    assert!(p.what.contains("the 5 records after the last checkpoint (the genesis checkpoint) span"), "{p}");
    assert!(p.what.contains("checkpoint interval (10 s) plus 60 s"), "{p}");
    let err = AuditLog::open(dir.path(), small("r")).unwrap_err();
    assert!(err.to_string().contains("more than the checkpoint interval"), "{err}");
}

#[test]
fn the_unsigned_window_is_the_documented_limit() {
    // What one window buys an attacker: the records after the last checkpoint that is kept
    // can be rewritten (here: the last checkpoint removed, the 10 records after the
    // previous one edited and re-chained). It verifies; docs/audit.md says so, and says to
    // ship checkpoints off the machine.
    let dir = intact_log();
    let path = dir.path().join(CHECKPOINT_FILE);
    let mut all = lines(&path);
    all.pop();
    write_lines(&path, &all);
    rechain_from(dir.path(), 55, |record| record["status"] = 500.into());
    let report = check(dir.path());
    assert!(report.ok && report.unsigned_records == 10, "{report}");
}

#[test]
fn a_line_that_is_not_json_is_named() {
    let dir = intact_log();
    let (path, i) = locate(dir.path(), 40);
    let mut all = lines(&path);
    all[i] = "{\"schema\":\"palisade.audit/v1\",\"seq\":40".to_owned();
    write_lines(&path, &all);
    let p = problem(dir.path());
    assert_eq!((p.seq, p.line), (Some(40), Some(i as u64 + 1)), "{p}");
    assert!(p.what.contains("not a valid record"), "{p}");
}

#[test]
fn missing_first_segment_and_verifying_from_a_seq() {
    let dir = intact_log();
    let all = segments(dir.path());
    let report =
        verify(dir.path(), &VerifyOptions { from_seq: Some(45), ..VerifyOptions::default() }).unwrap();
    assert!(report.ok, "{report}");
    assert!(report.first_seq.unwrap() <= 45 && report.last_seq == Some(59), "{report}");

    fs::remove_file(&all[0]).unwrap();
    let p = problem(dir.path());
    assert!(p.what.contains("instead of 0"), "{p}");
    let second_start: u64 = name(&all[1])[8..28].parse().unwrap();
    let report =
        verify(dir.path(), &VerifyOptions { from_seq: Some(second_start), ..VerifyOptions::default() })
            .unwrap();
    assert!(report.ok, "a retained suffix verifies from its first seq: {report}");
}

#[test]
fn an_incomplete_final_line_is_not_a_failure() {
    let dir = intact_log();
    let last = segments(dir.path()).pop().unwrap();
    let mut text = fs::read_to_string(&last).unwrap();
    text.push_str("{\"schema\":\"palisade.au");
    fs::write(&last, text).unwrap();
    let report = check(dir.path());
    assert!(report.ok && report.incomplete_tail, "{report}");
    assert!(report.to_string().contains("incomplete final record (never acknowledged)"));
}

/// Finding 6 of issue 11: someone who can write the log directory edits a record, re-chains
/// every record after it and deletes `checkpoints.jsonl`. `verify` passed it, and the next
/// writer signed the forged head. Now `verify` fails, and the writer refuses to sign.
#[test]
fn finding_6_rechained_log_with_deleted_checkpoints_is_refused() {
    let dir = log_dir();
    write_log(dir.path(), small("replica-t"), 60);
    rechain_from(dir.path(), 25, |record| record["status"] = 500.into());
    fs::remove_file(dir.path().join(CHECKPOINT_FILE)).unwrap();

    let report = check(dir.path());
    assert!(!report.ok, "a re-chained log without checkpoints passed: {report}");
    let p = report.first_problem.unwrap();
    assert_eq!(p.segment.as_deref(), Some(CHECKPOINT_FILE), "{p}");
    assert!(p.what.contains("no genesis checkpoint") && p.what.contains("checkpoints were deleted"), "{p}");

    let err = AuditLog::open(dir.path(), small("replica-t")).unwrap_err();
    assert!(matches!(err, AuditError::Untrusted { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("no genesis checkpoint"), "{text}");
    assert!(text.contains("palisade audit verify") && text.contains("move the directory aside"), "{text}");
    assert!(!dir.path().join(CHECKPOINT_FILE).exists(), "the forged head was signed");

    // Deleting only the checkpoints that cover the edit (keeping the genesis) fails too.
    let dir = intact_log();
    rechain_from(dir.path(), 25, |record| record["status"] = 500.into());
    let path = dir.path().join(CHECKPOINT_FILE);
    let kept: Vec<String> = lines(&path)
        .into_iter()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"].as_u64().is_none_or(|s| s < 25)
        })
        .collect();
    write_lines(&path, &kept);
    assert!(problem(dir.path()).what.contains("more than 10 records follow the last checkpoint"));
    assert!(AuditLog::open(dir.path(), small("replica-t")).is_err());
}

#[test]
fn legacy_logs_are_readable_and_named_by_verify_and_never_extended() {
    let dir = log_dir();
    write_log(dir.path(), small("replica-t"), 25);
    make_legacy(&dir, 10);
    let records = palisade_audit::query(dir.path(), palisade_audit::Filter::default()).unwrap().count();
    assert_eq!(records, 25, "query reads a legacy log");
    assert_eq!(palisade_audit::tail(dir.path(), false).unwrap().count(), 10, "so does tail");

    let report = check(dir.path());
    assert!(!report.ok && report.legacy, "{report}");
    assert_eq!((report.records, report.checkpoints_matched), (25, 3), "{report}");
    let p = report.first_problem.as_ref().unwrap();
    assert!(p.what.starts_with("legacy log: written before genesis checkpoints"), "{p}");
    assert!(p.what.contains("move the directory aside"), "{p}");
    assert!(report.key_source.as_deref().unwrap().contains("inside the log directory"), "{report}");

    // A problem in a legacy log is named as in any other log.
    let (path, _) = locate(dir.path(), 12);
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, text.replacen("\"status\":200", "\"status\":201", 1)).unwrap();
    let report = check(dir.path());
    assert!(report.legacy && report.first_problem.unwrap().what.contains("hash mismatch"));
    fs::write(&path, text).unwrap();

    // The writer refuses to extend it, and says what to do; moved aside, a new chain starts.
    let err = AuditLog::open(dir.path(), small("replica-t")).unwrap_err();
    assert!(matches!(err, AuditError::Legacy { .. }), "{err}");
    assert!(err.to_string().contains(&format!("mv {0} {0}.legacy", dir.path().display())), "{err}");
    let archive = dir.home().join("audit.legacy");
    fs::rename(dir.path(), &archive).unwrap();
    write_log(dir.path(), small("replica-t"), 3);
    assert!(check(dir.path()).ok);
    assert!(check(&archive).legacy);

    // Without checkpoints at all, a legacy chain is still recognised by its first link.
    fs::remove_file(archive.join(CHECKPOINT_FILE)).unwrap();
    assert!(check(&archive).legacy);
    assert!(matches!(AuditLog::open(&archive, small("replica-t")), Err(AuditError::Legacy { .. })));
}
