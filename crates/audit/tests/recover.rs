//! Unclean stops: the records a crash leaves unsigned (at most one checkpoint window) are
//! signed by the next writer in a recovery checkpoint; the writer never lets more pile up.
//!
//! A crash is simulated by copying the log and key files while the writer runs (what a
//! process killed at that moment leaves behind) and opening the copy; `crash.rs` does the
//! same with real SIGKILLs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::time::Duration;

use common::*;
use palisade_audit::{AuditConfig, AuditLog, CHECKPOINT_FILE, VerifyOptions, verify};
use serde_json::Value;

/// Checkpoints only by count, and never within a test by time.
fn config(every: u64) -> AuditConfig {
    AuditConfig { checkpoint_every: every, checkpoint_interval: Duration::from_secs(3600), ..small("r") }
}

fn checkpoints(dir: &std::path::Path) -> Vec<Value> {
    lines(&dir.join(CHECKPOINT_FILE)).iter().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn seqs(checkpoints: &[Value]) -> Vec<u64> {
    checkpoints.iter().filter_map(|c| c["seq"].as_u64()).collect()
}

#[test]
fn a_crash_tail_within_one_window_is_signed_in_a_recovery_checkpoint() {
    let dir = log_dir();
    write_log(dir.path(), config(1000), 3);
    let crashed = runtime().block_on(async {
        let log = AuditLog::open(dir.path(), config(1000)).unwrap();
        for i in 3..8 {
            log.append(request(i)).await.unwrap();
        }
        // Killed here: five durable records after the close checkpoint of seq 2.
        let crashed = snapshot(&dir);
        log.close().await.unwrap();
        crashed
    });
    // And a write torn by the kill.
    let last = segments(crashed.path()).pop().unwrap();
    OpenOptions::new().append(true).open(&last).unwrap().write_all(b"{\"schema\":\"palisade.au").unwrap();

    let report = verify(crashed.path(), &VerifyOptions::default()).unwrap();
    assert!(report.ok && report.unsigned_records == 5 && report.incomplete_tail, "{report}");

    runtime().block_on(async {
        let log = AuditLog::open(crashed.path(), config(1000)).unwrap();
        let stats = log.stats();
        assert_eq!((stats.checkpoints, stats.torn_tails_repaired), (1, 1), "{stats:?}");
        log.append(request(8)).await.unwrap();
        log.close().await.unwrap();
    });
    let cps = checkpoints(crashed.path());
    let kinds: Vec<&str> = cps.iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["genesis", "close", "recovery", "close"]);
    assert_eq!(seqs(&cps), [2, 7, 8]);
    assert_eq!(cps[2]["recovered_from"], 3, "the recovery checkpoint says which records it vouches for");
    let report = verify(crashed.path(), &VerifyOptions::default()).unwrap();
    assert!(report.ok && report.unsigned_records == 0 && report.recoveries == 1, "{report}");
    assert!(report.to_string().contains("unclean stops recovered (recovery checkpoints): 1"), "{report}");
}

#[test]
fn a_crash_before_the_first_checkpoint_is_recovered_from_the_genesis() {
    let dir = log_dir();
    let crashed = runtime().block_on(async {
        let log = AuditLog::open(dir.path(), config(1000)).unwrap();
        for i in 0..4 {
            log.append(request(i)).await.unwrap();
        }
        let crashed = snapshot(&dir);
        log.close().await.unwrap();
        crashed
    });
    assert_eq!(checkpoints(crashed.path()).len(), 1, "only the genesis");
    write_log(crashed.path(), config(1000), 0);
    let cps = checkpoints(crashed.path());
    assert_eq!(
        (cps[1]["kind"].as_str(), cps[1]["recovered_from"].as_u64(), cps[1]["seq"].as_u64()),
        (Some("recovery"), Some(0), Some(3))
    );
    assert!(verify(crashed.path(), &VerifyOptions::default()).unwrap().ok);
}

#[test]
fn a_batch_larger_than_the_window_is_signed_in_steps() {
    let dir = log_dir();
    runtime().block_on(async {
        let log = AuditLog::open(dir.path(), config(3)).unwrap();
        let tasks: Vec<_> = (0..200).map(|i| tokio::spawn(log.append(request(i)))).collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        // Whatever the batches were, no more than 3 records ever waited for a signature.
        let crashed = snapshot(&dir);
        let report = verify(crashed.path(), &VerifyOptions::default()).unwrap();
        assert!(report.ok && report.unsigned_records <= 3, "{report}");
        log.close().await.unwrap();
    });
    let seqs = seqs(&checkpoints(dir.path()));
    let mut previous: i64 = -1;
    for seq in &seqs {
        assert!(*seq as i64 - previous <= 3, "checkpoint gap {previous} -> {seq} in {seqs:?}");
        previous = *seq as i64;
    }
    assert_eq!(previous, 199);
}

#[test]
fn a_larger_window_applies_only_after_the_first_checkpoint_that_states_it() {
    // The log's last checkpoint promises a checkpoint every 5 records; a writer configured
    // for 1000 keeps that promise until its own first checkpoint states the new window.
    let dir = log_dir();
    write_log(dir.path(), config(5), 2);
    let crashed = runtime().block_on(async {
        let log = AuditLog::open(dir.path(), config(1000)).unwrap();
        for i in 2..9 {
            log.append(request(i)).await.unwrap();
        }
        let crashed = snapshot(&dir);
        log.close().await.unwrap();
        crashed
    });
    let cps = checkpoints(crashed.path());
    assert_eq!(seqs(&cps), [1, 6], "signed after 5 records under the old window");
    assert_eq!((cps[1]["every_records"].as_u64(), cps[2]["every_records"].as_u64()), (Some(5), Some(1000)));
    // The crash copy opens: 2 records after a checkpoint that allows 1000.
    write_log(crashed.path(), config(1000), 0);
    assert!(verify(crashed.path(), &VerifyOptions::default()).unwrap().ok);
}

#[test]
fn reopening_a_cleanly_closed_log_writes_no_checkpoint() {
    let dir = log_dir();
    write_log(dir.path(), config(1000), 4);
    let before = fs::read(dir.path().join(CHECKPOINT_FILE)).unwrap();
    write_log(dir.path(), config(1000), 0);
    assert_eq!(fs::read(dir.path().join(CHECKPOINT_FILE)).unwrap(), before);
}
