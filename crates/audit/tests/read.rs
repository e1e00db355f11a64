//! Reading the trail: query filters, tail (and follow), export, verify during appends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use palisade_audit::{
    AuditConfig, AuditLog, AuditRecord, ConfigChange, Decision, Filter, RecordKind, StatusFilter, Tail,
    TailOptions, Timestamp, VerifyOptions, query, tail, verify, write_jsonl,
};

const BASE: i64 = 1_795_687_200_000;

fn log_with_50_requests_and_a_config_change() -> LogDir {
    let dir = log_dir();
    runtime().block_on(async {
        let log = AuditLog::open(dir.path(), small("r")).unwrap();
        for i in 0..50 {
            log.append(request(i)).await.unwrap();
        }
        let mut change = AuditRecord::config_change(ConfigChange {
            who: "alice@example.com".into(),
            what: "policy fraud/allow-ds".into(),
            before_digest: None,
            after_digest: Some("sha256:00".into()),
        });
        change.completed = Some(Timestamp::from_unix_millis(BASE + 100_000));
        log.append(change).await.unwrap();
        log.close().await.unwrap();
    });
    dir
}

fn seqs(dir: &std::path::Path, filter: Filter) -> Vec<u64> {
    query(dir, filter).unwrap().map(|r| r.unwrap().seq).collect()
}

#[test]
fn query_filters() {
    let dir = log_with_50_requests_and_a_config_change();
    let d = dir.path();
    let count = |filter: Filter| seqs(d, filter).len();
    assert_eq!(count(Filter::default()), 51);

    let from = Some(Timestamp::from_unix_millis(BASE + 10_000));
    let to = Some(Timestamp::from_unix_millis(BASE + 20_000));
    assert_eq!(seqs(d, Filter { from, to, ..Filter::default() }), (10..20).collect::<Vec<_>>());
    assert_eq!(count(Filter { from: "2026-11-26T10:00:45Z".parse().ok(), ..Filter::default() }), 5 + 1);

    let principal = |p: &str| Filter { principal: Some(p.into()), ..Filter::default() };
    assert_eq!(count(principal("https://idp.example/user1")), 17);
    assert_eq!(count(principal("user1@example.com")), 17);
    assert_eq!(seqs(d, principal("alice@example.com")), [50]);

    let model = |m: &str| Filter { model: Some(m.into()), ..Filter::default() };
    for m in ["iris", "fraud/iris", "fraud/iris:v1"] {
        assert_eq!(count(model(m)), 25, "{m}");
    }
    assert_eq!(count(model("fraud/iris:v2")), 0);
    assert_eq!(count(model("other/iris")), 0);

    let decision = Filter { decision: Some(Decision::Deny), ..Filter::default() };
    assert_eq!(seqs(d, decision.clone()), [4, 9, 14, 19, 24, 29, 34, 39, 44, 49]);
    let status = |s: &str| Filter { status: Some(s.parse::<StatusFilter>().unwrap()), ..Filter::default() };
    assert_eq!(count(status("403")), 10);
    assert_eq!(count(status("4xx")), 10);
    assert_eq!(count(status("2xx")), 40);
    assert_eq!(count(status("5xx")), 0);

    assert_eq!(seqs(d, Filter { request_id: Some("req-7".into()), ..Filter::default() }), [7]);
    assert_eq!(seqs(d, Filter { kind: Some(RecordKind::Config), ..Filter::default() }), [50]);
    assert_eq!(seqs(d, Filter { limit: Some(5), ..Filter::default() }), [0, 1, 2, 3, 4]);
    assert_eq!(seqs(d, Filter { model: Some("iris".into()), ..decision }), [4, 14, 24, 34, 44]);
}

#[test]
fn export_is_the_stored_lines_byte_for_byte() {
    let dir = log_with_50_requests_and_a_config_change();
    let mut exported = Vec::new();
    let n = write_jsonl(query(dir.path(), Filter::default()).unwrap().map(Result::unwrap), &mut exported)
        .unwrap();
    assert_eq!(n, 51);
    let stored: Vec<u8> = segments(dir.path()).iter().flat_map(|p| std::fs::read(p).unwrap()).collect();
    assert_eq!(String::from_utf8(exported).unwrap(), String::from_utf8(stored).unwrap());
}

#[test]
fn tail_yields_the_last_records_then_follows_across_rotations() {
    let dir = log_dir();
    write_log(dir.path(), small("r"), 30);
    assert!(segments(dir.path()).len() > 3);

    let last: Vec<u64> = tail(dir.path(), false).unwrap().map(|r| r.unwrap().seq).collect();
    assert_eq!(last, (20..30).collect::<Vec<_>>());
    let all = Tail::open(dir.path(), TailOptions { last: usize::MAX, ..TailOptions::default() }).unwrap();
    assert_eq!(all.map(|r| r.unwrap().seq).collect::<Vec<_>>(), (0..30).collect::<Vec<_>>());
    let none = Tail::open(dir.path(), TailOptions { last: 0, ..TailOptions::default() }).unwrap();
    assert_eq!(none.count(), 0);

    let options = TailOptions { last: 2, follow: true, poll_interval: Duration::from_millis(10) };
    let mut follower = Tail::open(dir.path(), options).unwrap();
    let writer = std::thread::spawn({
        let dir = dir.path().to_path_buf();
        move || write_log(&dir, small("r"), 25)
    });
    let mut seen = Vec::new();
    while seen.len() < 27 {
        match follower.next_timeout(Duration::from_secs(5)) {
            Some(record) => seen.push(record.unwrap().seq),
            None => panic!("tail stalled after {seen:?}"),
        }
    }
    writer.join().unwrap();
    assert_eq!(seen, (28..55).collect::<Vec<_>>());
    assert!(follower.next_timeout(Duration::from_millis(50)).is_none());
}

#[test]
fn verify_and_query_while_a_writer_appends() {
    let dir = log_dir();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = std::thread::spawn({
        let (dir, stop) = (dir.path().to_path_buf(), Arc::clone(&stop));
        move || {
            runtime().block_on(async {
                let log =
                    AuditLog::open(&dir, AuditConfig { segment_max_bytes: 16 * 1024, ..small("r") }).unwrap();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let batch: Vec<_> = (0..8).map(|k| tokio::spawn(log.append(request(i + k)))).collect();
                    for t in batch {
                        t.await.unwrap().unwrap();
                    }
                    i += 8;
                }
                log.close().await.unwrap();
                i
            })
        }
    });
    let mut checked = 0;
    let deadline = std::time::Instant::now() + Duration::from_millis(700);
    while std::time::Instant::now() < deadline {
        let report = verify(dir.path(), &VerifyOptions::default()).unwrap();
        assert!(report.ok, "{report}");
        let n = query(dir.path(), Filter::default()).unwrap().inspect(|r| assert!(r.is_ok())).count();
        assert!(n as u64 >= report.records);
        checked += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    let report = verify(dir.path(), &VerifyOptions::default()).unwrap();
    assert!(report.ok && report.records == written as u64 && report.unsigned_records == 0, "{report}");
    assert!(checked > 1 && written > 0);
}
