//! Append throughput with group commit: 1, 16 and 64 concurrent appenders in strict mode
//! (each append waits for its fsync), and relaxed mode (enqueue, then wait for the writer).
//!
//! `cargo bench -p palisade-audit --bench append`. Besides criterion's time per record
//! (and records/s), each case prints how many records shared an fsync.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use palisade_audit::{
    AuditConfig, AuditLog, AuditRecord, Authn, AuthnOutcome, Authz, Decision, Level, Mode, ModelInfo,
    Protocol, ShipOptions, Shipper, sha256_hex,
};

fn record(i: u64) -> AuditRecord {
    let mut r = AuditRecord::request();
    r.request_id = Some(format!("bench-{i}"));
    r.trace_id = Some(format!("{i:032x}"));
    r.completed = r.received;
    r.source_ip = Some([10, 0, 0, 7].into());
    r.request_principal = Some("https://idp.example/alice".into());
    r.email = Some("alice@example.com".into());
    r.groups = vec!["data-science".into()];
    r.model = Some(ModelInfo {
        namespace: "fraud".into(),
        name: "iris".into(),
        version: Some("v3".into()),
        digest: Some(format!("sha256:{}", "ab".repeat(32))),
    });
    r.protocol = Some(Protocol::V2Rest);
    r.method = Some("POST".into());
    r.path = Some("/v2/models/iris/infer".into());
    r.authn = Some(Authn { outcome: AuthnOutcome::Authenticated, reason: None });
    r.authz = Some(Authz {
        decision: Decision::Allow,
        policy: Some("fraud/allow-ds".into()),
        rule: Some("0".into()),
        audit_marks: vec![],
        dry_run: vec![],
    });
    r.status = Some(200);
    r.latency_ms = Some(1.25);
    r.request_bytes = Some(143);
    r.response_bytes = Some(96);
    r.request_sha256 = Some(sha256_hex(b"in"));
    r.response_sha256 = Some(sha256_hex(b"out"));
    r.level = Level::Metadata;
    r
}

fn report(name: &str, log: &AuditLog) {
    let s = log.stats();
    let per_fsync = s.records_written as f64 / s.fsyncs.max(1) as f64;
    let fsyncs_per_batch = s.fsyncs as f64 / s.batches.max(1) as f64;
    let mean_fsync = s.fsync_time / u32::try_from(s.fsyncs.max(1)).unwrap_or(u32::MAX);
    eprintln!(
        "{name}: {} records, {} batches, {} fsyncs: {per_fsync:.1} records/fsync, {fsyncs_per_batch:.2} fsyncs/batch, mean fsync {mean_fsync:?}, dropped {}, shipped {} (dropped {})",
        s.records_written, s.batches, s.fsyncs, s.dropped, s.ship.shipped, s.ship.dropped
    );
}

fn bench_append(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut group = c.benchmark_group("audit_append");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));

    // The same, with a copy of every durable line shipped to a stream (`audit.ship.stdout`;
    // here a sink, so that only the shipping itself is measured).
    let shipped = [(1u64, false), (16, false), (64, false), (1, true), (16, true)];
    for (appenders, ship) in shipped {
        // The log in HOME/audit, so that its key goes to HOME/keys inside the temporary home.
        let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let ship = ship.then(|| Shipper::start(std::io::sink(), ShipOptions::default()).unwrap());
        let shipping = ship.is_some();
        let config = AuditConfig { ship, ..AuditConfig::default() };
        let log = AuditLog::open(home.path().join("audit"), config).unwrap();
        let name = format!("strict_{appenders}_appenders{}", if shipping { "_shipping" } else { "" });
        group.bench_function(&name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let started = Instant::now();
                    let tasks: Vec<_> = (0..appenders)
                        .map(|t| {
                            let log = log.clone();
                            let share = iters / appenders + u64::from(t < iters % appenders);
                            tokio::spawn(async move {
                                for i in 0..share {
                                    log.append(record(i)).await.unwrap();
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await.unwrap();
                    }
                    started.elapsed()
                })
            });
        });
        report(&name, &log);
        runtime.block_on(log.close()).unwrap();
    }

    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let config = AuditConfig { mode: Mode::Relaxed, queue_capacity: 1 << 20, ..AuditConfig::default() };
    let log = Arc::new(AuditLog::open(home.path().join("audit"), config).unwrap());
    group.bench_function("relaxed_1_appender", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let before = log.stats();
                let started = Instant::now();
                for i in 0..iters {
                    log.append(record(i)).await.unwrap();
                }
                let target = before.records_written + before.dropped + iters;
                while {
                    let s = log.stats();
                    s.records_written + s.dropped < target
                } {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                started.elapsed()
            })
        });
    });
    report("relaxed_1_appender", &log);
    runtime.block_on(log.close()).unwrap();
    group.finish();
}

criterion_group!(benches, bench_append);
criterion_main!(benches);
