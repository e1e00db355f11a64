//! `verify_record`: the chain at one record, with `verify`'s checks over the smallest range
//! that proves it (the record's hash, its link, the signed checkpoint covering it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::*;
use palisade_audit::{AuditConfig, AuditLog, KeySource, PublicKey, RecordVerification, verify_record};

/// 60 records in several segments, a checkpoint every 10 records and one on close.
fn intact_log() -> LogDir {
    let dir = log_dir();
    write_log(dir.path(), AuditConfig { segment_max_bytes: 8 * 1024, ..small("replica-r") }, 60);
    dir
}

fn at(dir: &Path, seq: u64) -> RecordVerification {
    verify_record(dir, seq, &KeySource::Default).unwrap()
}

#[test]
fn a_record_of_an_intact_log_is_verified_up_to_its_checkpoint_only() {
    let dir = intact_log();
    for seq in [0, 1, 25, 30, 59] {
        let found = at(dir.path(), seq);
        assert!(found.verified(), "seq {seq}: {found:?}");
        let checkpoint = found.checkpoint.unwrap();
        assert!(checkpoint.seq >= seq && checkpoint.seq < seq + 11, "seq {seq}: {checkpoint:?}");
        // The walk stops at the covering checkpoint; it starts no later than the record before.
        assert_eq!(found.report.last_seq, Some(checkpoint.seq), "seq {seq}");
        assert!(found.report.first_seq.unwrap() <= seq.saturating_sub(1), "seq {seq}");
        assert!(found.report.records < 60 || seq == 59, "seq {seq} walked the whole log");
    }
}

#[test]
fn an_edited_record_fails_and_its_neighbours_outside_the_range_still_verify() {
    let dir = intact_log();
    let (path, i) = locate(dir.path(), 25);
    let mut all = lines(&path);
    all[i] = all[i].replace(r#""status":200"#, r#""status":201"#);
    write_lines(&path, &all);
    let edited = at(dir.path(), 25);
    assert!(!edited.verified() && !edited.chained, "{edited:?}");
    let problem = edited.report.first_problem.unwrap();
    assert_eq!(problem.seq, Some(25), "{problem}");
    assert!(problem.what.contains("hash mismatch"), "{problem}");
    // A record whose covering checkpoint comes before the edit never reads it.
    let before = at(dir.path(), 5);
    assert!(before.verified(), "{before:?}");
    // One whose range includes the edit (it follows it in its segment) fails too.
    let after = at(dir.path(), 26);
    assert!(!after.verified(), "{after:?}");
}

#[test]
fn a_rechained_record_links_but_no_signed_checkpoint_covers_it() {
    let dir = intact_log();
    rechain_from(dir.path(), 25, |record| record["status"] = 201.into());
    let forged = at(dir.path(), 25);
    assert!(forged.chained, "the forger recomputed the chain: {forged:?}");
    assert!(forged.checkpoint.is_none() && !forged.verified(), "{forged:?}");
    let problem = forged.report.first_problem.unwrap();
    assert!(problem.what.contains("signed checkpoint"), "{problem}");
}

#[test]
fn another_key_verifies_nothing() {
    let dir = intact_log();
    let forger = log_dir();
    write_log(forger.path(), small("replica-f"), 3);
    let other = PublicKey::from_file(&forger.public_key()).unwrap();
    let found = verify_record(dir.path(), 25, &KeySource::Pinned(other)).unwrap();
    assert!(!found.verified() && found.checkpoint.is_none(), "{found:?}");
    assert!(found.report.first_problem.is_some());
}

#[test]
fn a_seq_past_the_end_is_not_chained() {
    let dir = intact_log();
    let missing = at(dir.path(), 60);
    assert!(!missing.chained && !missing.verified(), "{missing:?}");
}

#[test]
fn a_record_not_yet_signed_is_chained_until_the_next_checkpoint_covers_it() {
    let dir = log_dir();
    let config = AuditConfig { checkpoint_every: 1000, ..small("replica-u") };
    runtime().block_on(async {
        let log = AuditLog::open(dir.path(), config).unwrap();
        for i in 0..3 {
            log.append(request(i)).await.unwrap();
        }
        let open = verify_record(dir.path(), 2, &KeySource::Default).unwrap();
        assert!(open.chained && open.report.ok && open.checkpoint.is_none(), "{open:?}");
        assert!(!open.verified());
        log.close().await.unwrap();
    });
    let closed = at(dir.path(), 2);
    assert!(closed.verified(), "{closed:?}");
}
