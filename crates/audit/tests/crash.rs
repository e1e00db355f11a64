//! Crash consistency: a child process appends under load and prints every acknowledged
//! seq; it is killed with SIGKILL at a random moment, several times over the same log.
//! Every acknowledged record must be in the log, and the log must verify.
//!
//! The child is this test binary itself, run with `--exact crash_child` and
//! `PALISADE_AUDIT_CRASH_DIR` set; without that variable `crash_child` does nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use palisade_audit::{Appended, AuditConfig, AuditLog, Filter, VerifyOptions, query, verify};

const DIR_VAR: &str = "PALISADE_AUDIT_CRASH_DIR";
const ROUND_VAR: &str = "PALISADE_AUDIT_CRASH_ROUND";

/// The child: 16 concurrent appenders, forever; one `ACK <seq> <request id>` line per
/// durable record, printed only after `append` resolved.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(DIR_VAR) else { return };
    let round = std::env::var(ROUND_VAR).unwrap_or_default();
    runtime().block_on(async move {
        let config =
            AuditConfig { segment_max_bytes: 32 * 1024, checkpoint_every: 50, ..AuditConfig::default() };
        let log = AuditLog::open(&dir, config).unwrap();
        println!("OPEN torn_tails_repaired={}", log.stats().torn_tails_repaired);
        let tasks: Vec<_> = (0..16)
            .map(|t| {
                let log = log.clone();
                let round = round.clone();
                tokio::spawn(async move {
                    for i in 0.. {
                        let id = format!("r{round}-t{t}-{i}");
                        let mut record = request(i);
                        record.request_id = Some(id.clone());
                        match log.append(record).await {
                            Ok(Appended::Durable { seq, .. }) => println!("ACK {seq} {id}"),
                            other => panic!("append failed: {other:?}"),
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_record() {
    let dir = log_dir();
    let exe = std::env::current_exe().unwrap();
    let mut acknowledged = BTreeMap::new();
    for round in 0..5 {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(DIR_VAR, dir.path())
            .env(ROUND_VAR, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (first_ack, started) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("ACK ") {
                    let (seq, id) = rest.split_once(' ').unwrap();
                    acks.push((seq.parse::<u64>().unwrap(), id.to_owned()));
                    if acks.len() == 1 {
                        let _ = first_ack.send(());
                    }
                }
            }
            acks
        });
        // Kill at a different moment each round, once appends are flowing.
        let flowing = started.recv_timeout(Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(150 + 37 * round));
        child.kill().unwrap();
        child.wait().unwrap();
        let acks = reader.join().unwrap();
        assert!(flowing.is_ok(), "round {round}: the child acknowledged nothing");
        for (seq, id) in acks {
            assert!(acknowledged.insert(seq, id).is_none(), "seq {seq} acknowledged twice");
        }

        // The log as the crash left it (maybe with a torn last line) verifies.
        let report = verify(dir.path(), &VerifyOptions::default()).unwrap();
        assert!(report.ok, "round {round}: {report}");
        let stored: BTreeMap<u64, String> = query(dir.path(), Filter::default())
            .unwrap()
            .map(|r| r.unwrap())
            .map(|r| (r.seq, r.request_id.unwrap()))
            .collect();
        for (seq, id) in &acknowledged {
            assert_eq!(stored.get(seq), Some(id), "round {round}: acknowledged seq {seq} is missing");
        }
    }
    // Reopening repairs whatever the last kill tore, and the chain goes on.
    write_log(dir.path(), AuditConfig::default(), 1);
    let report = verify(dir.path(), &VerifyOptions::default()).unwrap();
    assert!(report.ok && !report.incomplete_tail && report.unsigned_records == 0, "{report}");
    assert!(report.records > acknowledged.len() as u64, "{report}");
}
