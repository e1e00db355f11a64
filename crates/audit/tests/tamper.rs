//! Each kind of tampering `verify` must detect, one test each, naming the first bad record.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;

use common::*;
use palisade_audit::{
    AuditConfig, CHECKPOINT_FILE, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, Problem, PublicKey, VerifyOptions,
    VerifyReport, verify,
};

/// 60 records in several segments, a checkpoint every 10 records and one on close.
fn intact_log() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
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

/// The segment file holding `seq`, and the record's 0-based line index in it.
fn locate(dir: &Path, seq: u64) -> (std::path::PathBuf, usize) {
    for path in segments(dir) {
        for (i, line) in lines(&path).iter().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if v["seq"].as_u64() == Some(seq) {
                return (path, i);
            }
        }
    }
    panic!("seq {seq} not found")
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
    let dir = tempfile::tempdir().unwrap();
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
fn a_resigned_log_passes_only_without_a_pinned_key() {
    // An attacker edits a record, re-chains everything after it, deletes the checkpoints and
    // the replica key, and lets a writer sign the forged head with a fresh key. The files
    // are then self-consistent: only the public key pinned out of band catches it.
    let dir = intact_log();
    let pinned = PublicKey::from_file(&dir.path().join(PUBLIC_KEY_FILE)).unwrap();
    rechain_from(dir.path(), 25, |record| record["status"] = 500.into());
    assert!(!check(dir.path()).ok, "re-chained records still contradict the checkpoints");
    for file in [CHECKPOINT_FILE, PUBLIC_KEY_FILE, PRIVATE_KEY_FILE] {
        fs::remove_file(dir.path().join(file)).unwrap();
    }
    write_log(dir.path(), small("replica-t"), 0);

    assert!(check(dir.path()).ok, "without a pinned key the forgery is consistent");
    let options = VerifyOptions { public_key: Some(pinned), ..VerifyOptions::default() };
    let report = verify(dir.path(), &options).unwrap();
    let p = report.first_problem.unwrap();
    assert_eq!(p.segment.as_deref(), Some(CHECKPOINT_FILE));
    assert!(p.what.contains("not the expected key"), "{p}");
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
