//! The writer: round trips, rotation, resume, torn tails, strict and relaxed failure modes,
//! concurrency and group commit, checkpoints.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use palisade_audit::{
    Appended, AuditConfig, AuditError, AuditLog, AuditRecord, CHECKPOINT_FILE, ConfigChange, FaultInjection,
    Filter, Level, Mode, Payloads, RecordKind, VerifyOptions, query, verify,
};

fn verify_ok(dir: &std::path::Path) -> palisade_audit::VerifyReport {
    let report = verify(dir, &VerifyOptions::default()).unwrap();
    assert!(report.ok, "{report}");
    report
}

#[test]
fn append_verify_round_trip_across_segment_rotation() {
    let dir = log_dir();
    let acks = write_log(dir.path(), small("replica-a"), 120);
    assert_eq!(acks.iter().map(|a| a.0).collect::<Vec<_>>(), (0..120).collect::<Vec<_>>());

    let report = verify_ok(dir.path());
    assert_eq!(report.records, 120);
    assert!(report.segments >= 3, "{report}");
    assert_eq!(report.segments, segments(dir.path()).len());
    assert!(report.checkpoints >= 12, "{report}");
    assert_eq!(report.checkpoints, report.checkpoints_matched);
    assert_eq!(report.unsigned_records, 0, "close writes a final checkpoint");
    assert_eq!(report.head.as_deref(), Some(acks[119].1.as_str()));
    assert!(!report.incomplete_tail);

    // Every segment is named for its first record and stays near the size limit.
    for path in segments(dir.path()) {
        let first: AuditRecord = serde_json::from_str(&lines(&path)[0]).unwrap();
        assert_eq!(name(&path), format!("segment-{:020}.jsonl", first.seq));
        assert!(fs::metadata(&path).unwrap().len() <= 4 * 1024);
    }
    // The stored records are what was appended, with the writer's fields filled in.
    let records: Vec<AuditRecord> =
        query(dir.path(), Filter::default()).unwrap().map(Result::unwrap).collect();
    for (i, r) in records.iter().enumerate() {
        let mut expected = request(i);
        expected.event_id = r.event_id;
        expected.replica_id = "replica-a".into();
        expected.seq = i as u64;
        expected.prev_hash = r.prev_hash.clone();
        expected.hash = acks[i].1.clone();
        assert_eq!(*r, expected);
    }
    // Each line of the segment files is the record's JSON with `hash` last.
    let first = lines(&segments(dir.path())[0]).remove(0);
    assert!(
        first.starts_with(r#"{"schema":"palisade.audit/v1","seq":0,"kind":"request","event_id":""#),
        "{first}"
    );
    assert!(first.ends_with(&format!(r#","hash":"{}"}}"#, acks[0].1)), "{first}");
}

#[test]
fn reopen_resumes_the_chain() {
    let dir = log_dir();
    let first = write_log(dir.path(), small("r"), 15);
    let second = write_log(dir.path(), small("r"), 15);
    assert_eq!(second.iter().map(|a| a.0).collect::<Vec<_>>(), (15..30).collect::<Vec<_>>());
    let records: Vec<AuditRecord> =
        query(dir.path(), Filter::default()).unwrap().map(Result::unwrap).collect();
    assert_eq!(records[15].prev_hash, first[14].1, "the reopened log links to the last record");
    let report = verify_ok(dir.path());
    assert_eq!(report.records, 30);
    // Reopening without appending writes no duplicate checkpoint.
    let before = lines(&dir.path().join(CHECKPOINT_FILE)).len();
    write_log(dir.path(), small("r"), 0);
    assert_eq!(lines(&dir.path().join(CHECKPOINT_FILE)).len(), before);
}

#[test]
fn torn_tail_is_reported_then_repaired_on_open() {
    let dir = log_dir();
    write_log(dir.path(), AuditConfig::default(), 5);
    let segment = segments(dir.path()).pop().unwrap();
    let whole = lines(&segment)[4].clone();
    // Half a record, as a SIGKILL in the middle of a write leaves it.
    OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap()
        .write_all(&whole.as_bytes()[..whole.len() / 2])
        .unwrap();

    let report = verify_ok(dir.path());
    assert!(report.incomplete_tail);
    assert_eq!(report.records, 5);

    runtime().block_on(async {
        let log = AuditLog::open(dir.path(), AuditConfig::default()).unwrap();
        assert_eq!(log.stats().torn_tails_repaired, 1);
        let Appended::Durable { seq, .. } = log.append(request(5)).await.unwrap() else { panic!() };
        assert_eq!(seq, 5);
        log.close().await.unwrap();
    });
    let report = verify_ok(dir.path());
    assert!(!report.incomplete_tail);
    assert_eq!(report.records, 6);
}

#[test]
fn strict_mode_fails_closed_and_recovers() {
    let dir = log_dir();
    let faults = FaultInjection::new();
    let config = AuditConfig { fault_injection: Some(faults.clone()), ..small("r") };
    runtime().block_on(async {
        let log = AuditLog::open(dir.path(), config).unwrap();
        for i in 0..3 {
            log.append(request(i)).await.unwrap();
        }
        assert!(log.health().writable);

        // Disk full: every append fails with a reason, and keeps failing.
        faults.fail_writes(true);
        let tasks: Vec<_> = (0..8).map(|i| tokio::spawn(log.append(request(100 + i)))).collect();
        for task in tasks {
            match task.await.unwrap() {
                Err(AuditError::Unavailable(reason)) => assert!(reason.contains("no space left"), "{reason}"),
                other => panic!("expected Unavailable, got {other:?}"),
            }
        }
        let health = log.health();
        assert!(!health.writable);
        assert!(health.last_error.as_deref().unwrap().contains("no space left"), "{health:?}");
        assert!(matches!(log.append(request(200)).await, Err(AuditError::Unavailable(_))));

        // The write succeeds but the fsync fails: the bytes must not stay behind.
        faults.fail_writes(false);
        faults.fail_syncs(true);
        let err = log.append(request(300)).await.unwrap_err();
        assert!(err.to_string().contains("fsync"), "{err}");

        // The disk recovers: the next append is durable, right after the last good record.
        faults.fail_syncs(false);
        let Appended::Durable { seq, .. } = log.append(request(3)).await.unwrap() else { panic!() };
        assert_eq!(seq, 3);
        let health = log.health();
        assert!(health.writable && health.last_error.is_none(), "{health:?}");
        assert!(log.stats().write_errors >= 3);
        log.close().await.unwrap();
    });
    let report = verify_ok(dir.path());
    assert_eq!(report.records, 4);
    let ids: Vec<String> =
        query(dir.path(), Filter::default()).unwrap().map(|r| r.unwrap().request_id.unwrap()).collect();
    assert_eq!(ids, ["req-0", "req-1", "req-2", "req-3"], "no failed record reached the log");
}

#[test]
fn relaxed_mode_drops_and_counts() {
    let dir = log_dir();
    let faults = FaultInjection::new();
    faults.delay_syncs(Duration::from_millis(30));
    let config = AuditConfig {
        mode: Mode::Relaxed,
        queue_capacity: 4,
        fault_injection: Some(faults.clone()),
        ..small("r")
    };
    runtime().block_on(async {
        let log = AuditLog::open(dir.path(), config).unwrap();
        let mut queued = 0;
        let mut dropped = 0;
        for i in 0..100 {
            match log.append(request(i)).await.unwrap() {
                Appended::Queued => queued += 1,
                Appended::Dropped => dropped += 1,
                Appended::Durable { .. } => panic!("relaxed appends do not wait"),
            }
        }
        assert!(dropped > 0, "a 4-record queue behind a slow disk must overflow");
        assert_eq!(log.stats().dropped, dropped);
        // Failed writes drop what was queued, and count it too.
        faults.delay_syncs(Duration::ZERO);
        assert!(wait_until(Duration::from_secs(5), || log.stats().records_written == queued));
        faults.fail_writes(true);
        for i in 0..3 {
            assert_eq!(log.append(request(1000 + i)).await.unwrap(), Appended::Queued);
        }
        assert!(wait_until(Duration::from_secs(5), || log.stats().dropped == dropped + 3));
        assert!(!log.health().writable);
        faults.fail_writes(false);
        log.close().await.unwrap();
        let stats = log.stats();
        assert_eq!(stats.records_written, queued);
        assert_eq!(stats.records_written + stats.dropped, 103);
    });
    verify_ok(dir.path());
}

#[test]
fn concurrent_appends_land_exactly_once_in_seq_order_with_group_commit() {
    let dir = log_dir();
    let fsyncs_seen = Arc::new(AtomicU64::new(0));
    let observer = Arc::clone(&fsyncs_seen);
    let config = AuditConfig {
        fsync_observer: Some(Arc::new(move |_took| {
            observer.fetch_add(1, Ordering::Relaxed);
        })),
        segment_max_bytes: 512 * 1024,
        ..small("r")
    };
    const TASKS: usize = 64;
    const EACH: usize = 30;
    let acks = runtime().block_on(async {
        let log = AuditLog::open(dir.path(), config).unwrap();
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut acks = Vec::new();
                    for i in 0..EACH {
                        let id = t * EACH + i;
                        let Appended::Durable { seq, .. } = log.append(request(id)).await.unwrap() else {
                            panic!()
                        };
                        acks.push((seq, format!("req-{id}")));
                    }
                    acks
                })
            })
            .collect();
        let mut acks = BTreeMap::new();
        for task in tasks {
            for (seq, id) in task.await.unwrap() {
                assert!(acks.insert(seq, id).is_none(), "seq {seq} acknowledged twice");
            }
        }
        let stats = log.stats();
        assert_eq!(stats.records_written, (TASKS * EACH) as u64);
        assert!(stats.batches < stats.records_written / 4, "group commit batches: {stats:?}");
        assert!(stats.fsyncs < stats.records_written / 4, "{stats:?}");
        assert_eq!(fsyncs_seen.load(Ordering::Relaxed), stats.fsyncs);
        log.close().await.unwrap();
        acks
    });
    assert_eq!(acks.keys().copied().collect::<Vec<_>>(), (0..(TASKS * EACH) as u64).collect::<Vec<_>>());
    let mut seen = HashSet::new();
    for record in query(dir.path(), Filter::default()).unwrap() {
        let record = record.unwrap();
        let id = record.request_id.unwrap();
        assert_eq!(acks[&record.seq], id, "the acknowledged seq holds that request");
        assert!(seen.insert(id), "a request landed twice");
    }
    assert_eq!(seen.len(), TASKS * EACH);
    assert_eq!(verify_ok(dir.path()).records, (TASKS * EACH) as u64);
}

#[test]
fn commit_delay_holds_an_fsync_only_for_announced_records() {
    let dir = log_dir();
    // A long delay, so that the test sees the difference whatever the machine's speed.
    let config = AuditConfig { commit_delay: Duration::from_secs(2), ..small("r") };
    runtime().block_on(async {
        let log = AuditLog::open(dir.path(), config).unwrap();

        // Nothing announced: a lone record is committed at once, not after the delay.
        let started = std::time::Instant::now();
        log.append(request(0)).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(1), "a lone record waited {:?}", started.elapsed());
        let before = log.stats().fsyncs;

        // A second request is in progress: the first record's fsync waits for it, and one
        // fsync covers both.
        let coming = log.announce();
        let first = tokio::spawn({
            let log = log.clone();
            async move { log.append(request(1)).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!first.is_finished(), "the commit is held while a record is announced");
        log.append_announced(request(2), Some(coming)).await.unwrap();
        first.await.unwrap().unwrap();
        assert_eq!(log.stats().fsyncs - before, 1, "{:?}", log.stats());

        // An announcement that never turns into a record holds a commit for the delay only.
        let _never = log.announce();
        let started = std::time::Instant::now();
        log.append(request(3)).await.unwrap();
        let waited = started.elapsed();
        assert!(waited >= Duration::from_secs(2) && waited < Duration::from_secs(10), "{waited:?}");
        log.close().await.unwrap();
    });
    assert_eq!(verify_ok(dir.path()).records, 4);
}

#[test]
fn checkpoints_by_count_by_time_and_on_close() {
    let dir = log_dir();
    let config = AuditConfig {
        checkpoint_every: 1000,
        checkpoint_interval: Duration::from_millis(100),
        ..AuditConfig::default()
    };
    runtime().block_on(async {
        let log = AuditLog::open(dir.path(), config).unwrap();
        log.append(request(0)).await.unwrap();
        // No close: the interval alone brings a checkpoint.
        assert!(wait_until(Duration::from_secs(3), || log.stats().checkpoints == 1));
        let report = verify_ok(dir.path());
        assert_eq!((report.checkpoints_matched, report.unsigned_records), (1, 0));
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(log.stats().checkpoints, 1, "no checkpoint without new records");
        log.close().await.unwrap();
    });
    let dir = log_dir();
    write_log(dir.path(), AuditConfig { checkpoint_every: 7, ..AuditConfig::default() }, 30);
    let checkpoints: Vec<serde_json::Value> =
        lines(&dir.path().join(CHECKPOINT_FILE)).iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kinds: Vec<&str> = checkpoints.iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["genesis", "head", "head", "head", "head", "close"]);
    let seqs: Vec<u64> = checkpoints[1..].iter().map(|c| c["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [6, 13, 20, 27, 29], "every 7 records, then on close");
}

#[test]
fn one_writer_per_directory_and_closed_logs_refuse_appends() {
    let dir = log_dir();
    runtime().block_on(async {
        let log = AuditLog::open(dir.path(), AuditConfig::default()).unwrap();
        let second = AuditLog::open(dir.path(), AuditConfig::default()).unwrap_err();
        assert!(matches!(second, AuditError::Locked { .. }), "{second}");
        log.append(request(0)).await.unwrap();
        log.close().await.unwrap();
        log.close().await.unwrap();
        assert!(matches!(log.append(request(1)).await, Err(AuditError::Closed)));
        assert!(log.health().closed);
        // The lock is released by the time close returns.
        let again = AuditLog::open(dir.path(), AuditConfig::default()).unwrap();
        again.close().await.unwrap();
    });
}

#[test]
fn config_records_and_payload_levels() {
    let dir = log_dir();
    runtime().block_on(async {
        let log = AuditLog::open(dir.path(), AuditConfig::default()).unwrap();
        let change = ConfigChange {
            who: "alice@example.com".into(),
            what: "policy fraud/allow-ds".into(),
            before_digest: Some(format!("sha256:{}", "1".repeat(64))),
            after_digest: Some(format!("sha256:{}", "2".repeat(64))),
        };
        log.append(AuditRecord::config_change(change.clone())).await.unwrap();
        let mut r = request(1);
        r.level = Level::Request;
        r.payloads = Some(Payloads {
            request: Some(serde_json::json!({"inputs": [{"data": "[redacted]"}]})),
            response: Some(serde_json::json!({"outputs": []})),
        });
        log.append(r).await.unwrap();
        log.close().await.unwrap();
        let records: Vec<AuditRecord> =
            query(dir.path(), Filter::default()).unwrap().map(Result::unwrap).collect();
        assert_eq!(records[0].kind, RecordKind::Config);
        assert_eq!(records[0].config.as_ref(), Some(&change));
        assert!(records[0].completed.is_some());
        let payloads = records[1].payloads.as_ref().unwrap();
        assert!(payloads.request.is_some() && payloads.response.is_none(), "level Request keeps no response");
    });
    verify_ok(dir.path());
}

#[test]
fn segments_rotate_by_age() {
    let dir = log_dir();
    let config = AuditConfig { segment_max_age: Duration::from_millis(50), ..AuditConfig::default() };
    runtime().block_on(async {
        let log = AuditLog::open(dir.path(), config).unwrap();
        log.append(request(0)).await.unwrap();
        log.append(request(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        log.append(request(2)).await.unwrap();
        log.close().await.unwrap();
    });
    let names: Vec<String> = segments(dir.path()).iter().map(|p| name(p)).collect();
    assert_eq!(names, [format!("segment-{:020}.jsonl", 0), format!("segment-{:020}.jsonl", 2)]);
    verify_ok(dir.path());
}

#[test]
fn open_refuses_a_log_whose_last_record_was_altered() {
    let dir = log_dir();
    write_log(dir.path(), AuditConfig::default(), 3);
    let path = segments(dir.path()).pop().unwrap();
    let mut all = lines(&path);
    all[2] = all[2].replace("req-2", "req-X");
    write_lines(&path, &all);
    let err = AuditLog::open(dir.path(), AuditConfig::default()).unwrap_err();
    assert!(
        matches!(err, AuditError::Untrusted { .. }) && err.to_string().contains("hash mismatch"),
        "{err}"
    );
}
