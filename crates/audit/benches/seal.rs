//! Sealing: bytes per record on disk (plain and sealed) and sealing throughput.
//!
//! `cargo bench -p palisade-audit --bench seal`. Two trails of 40,000 records each, with
//! every field a data-plane request fills in on the server (ids, trace, timestamps, caller,
//! JWT kid/alg/jti, model and digest, decision, status, latency, sizes, payload digests):
//!
//! - `harness`: as the load harness writes them (one caller, one token, the same iris
//!   payload, so the same payload digests);
//! - `distinct`: every request from its own token with its own payload (random jti and
//!   digests): the least compressible trail a real server writes.
//!
//! Prints bytes per record plain and sealed at zstd levels 3, 9 and 19; criterion measures
//! sealing one 8 MiB segment (plain bytes per second) at each level.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use palisade_audit::{
    AuditConfig, AuditLog, AuditRecord, Authn, AuthnOutcome, Authz, Decision, JwtInfo, Level, Mode,
    ModelInfo, Protocol, SealOptions, Timestamp, seal_segments, sha256_hex,
};
use uuid::Uuid;

const RECORDS: u64 = 40_000;

fn record(i: u64, distinct: bool) -> AuditRecord {
    let mut r = AuditRecord::request();
    r.request_id = Some(Uuid::now_v7().to_string());
    r.trace_id = Some(Uuid::new_v4().simple().to_string());
    let t = 1_796_000_000_000 + (i as i64) / 20;
    r.received = Some(Timestamp::from_unix_millis(t));
    r.completed = Some(Timestamp::from_unix_millis(t + 1 + (i % 3) as i64));
    r.source_ip = Some([127, 0, 0, 1].into());
    r.request_principal = Some("https://palisade.local/alice@example.com".into());
    r.email = Some("alice@example.com".into());
    let jti =
        if distinct { Uuid::new_v4().to_string() } else { "f081efdb-09ca-49ae-b68f-93ac940ea6c6".into() };
    r.jwt = Some(JwtInfo { kid: Some("9HNorp-js9l2SlHT".into()), alg: Some("ES256".into()), jti: Some(jti) });
    r.model = Some(ModelInfo {
        namespace: "default".into(),
        name: "iris".into(),
        version: Some("1.0.0".into()),
        digest: Some("sha256:285c1ab2e9e9a14af00f2dcd395d0bdfa54f95238ecc9aff827ea82c4b246a22".into()),
    });
    r.protocol = Some(Protocol::V2Rest);
    r.method = Some("POST".into());
    r.path = Some("/v2/models/iris/infer".into());
    r.authn = Some(Authn { outcome: AuthnOutcome::Authenticated, reason: None });
    r.authz = Some(Authz {
        decision: Decision::Allow,
        policy: Some("owner-default".into()),
        rule: Some("alice@example.com".into()),
        audit_marks: vec![],
        dry_run: vec![],
    });
    r.status = Some(200);
    r.latency_ms = Some(0.8 + (i % 997) as f64 / 1000.0 + 0.000_137);
    r.request_bytes = Some(82);
    r.response_bytes = Some(117);
    let payload = if distinct { Uuid::new_v4().to_string() } else { "iris".into() };
    r.request_sha256 = Some(sha256_hex(format!("in-{payload}").as_bytes()));
    r.response_sha256 = Some(sha256_hex(format!("out-{payload}").as_bytes()));
    r.level = Level::Metadata;
    r
}

/// A closed trail of [`RECORDS`] records in `home/audit`, 8 MiB segments.
fn trail(home: &Path, distinct: bool) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let config = AuditConfig {
            replica_id: "vm".into(),
            mode: Mode::Relaxed,
            queue_capacity: 1 << 20,
            segment_max_bytes: 8 * 1024 * 1024,
            ..AuditConfig::default()
        };
        let log = AuditLog::open(home.join("audit"), config).unwrap();
        for i in 0..RECORDS {
            log.append(record(i, distinct)).await.unwrap();
        }
        log.close().await.unwrap();
        assert_eq!(log.stats().records_written, RECORDS);
    });
}

fn copy_home(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for sub in ["audit", "keys"] {
        std::fs::create_dir(to.path().join(sub)).unwrap();
        for entry in std::fs::read_dir(from.join(sub)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.path().join(sub).join(entry.file_name())).unwrap();
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(to.path().join("keys"), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    to
}

fn dir_bytes(dir: &Path, suffix: &str) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

fn bench_seal(c: &mut Criterion) {
    let mut group = c.benchmark_group("audit_seal");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(10));
    for distinct in [false, true] {
        let kind = if distinct { "distinct" } else { "harness" };
        let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        trail(home.path(), distinct);
        let audit = home.path().join("audit");
        let plain_total = dir_bytes(&audit, ".jsonl") - dir_bytes(&audit, "checkpoints.jsonl");
        eprintln!("{kind}: plain {:.0} B/record ({plain_total} bytes)", plain_total as f64 / RECORDS as f64);
        for level in [3, 9, 19] {
            let copy = copy_home(home.path());
            let options = SealOptions { level, ..SealOptions::default() };
            let report = seal_segments(&copy.path().join("audit"), &options).unwrap();
            let (records, plain, sealed) = report
                .sealed
                .iter()
                .fold((0, 0, 0), |(r, p, s), x| (r + x.records, p + x.plain_bytes, s + x.sealed_bytes));
            eprintln!(
                "{kind}: level {level}: {} segments sealed, {records} records: plain {:.0} B/record, sealed {:.1} B/record (ratio {:.1})",
                report.sealed.len(),
                plain as f64 / records as f64,
                sealed as f64 / records as f64,
                plain as f64 / sealed as f64
            );
            let verified =
                palisade_audit::verify(&copy.path().join("audit"), &palisade_audit::VerifyOptions::default())
                    .unwrap();
            assert!(verified.ok, "{verified}");
        }
        if distinct {
            continue;
        }
        // Throughput: sealing the first segment of a fresh copy (the second segment exists,
        // so the first is sealable), in plain bytes per second.
        let first = std::fs::metadata(audit.join("segment-00000000000000000000.jsonl")).unwrap().len();
        group.throughput(Throughput::Bytes(first));
        for level in [3, 9, 19] {
            group.bench_function(format!("seal_8MiB_segment_level_{level}"), |b| {
                b.iter_batched(
                    || {
                        let copy = copy_home(home.path());
                        // Only the first two segments: one to seal, one after it.
                        let dir = copy.path().join("audit");
                        let mut names: Vec<String> = std::fs::read_dir(&dir)
                            .unwrap()
                            .map(|e| e.unwrap().file_name().into_string().unwrap())
                            .filter(|n| n.starts_with("segment-"))
                            .collect();
                        names.sort();
                        for name in names.iter().skip(2) {
                            std::fs::remove_file(dir.join(name)).unwrap();
                        }
                        copy
                    },
                    |copy| {
                        let options = SealOptions { level, ..SealOptions::default() };
                        let report = seal_segments(&copy.path().join("audit"), &options).unwrap();
                        assert_eq!(report.sealed.len(), 1, "{report:?}");
                        copy
                    },
                    BatchSize::PerIteration,
                );
            });
        }
    }
    group.finish();
}

/// Strict appends by 16 concurrent tasks to a log with 1 MiB segments (so segments rotate
/// every ~800 records), without and with the background sealer sealing each rotated segment
/// (every 100 ms) while the appends run.
fn bench_strict_with_sealing(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut group = c.benchmark_group("audit_append_sealing");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(10));
    for sealing in [false, true] {
        let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let dir = home.path().join("audit");
        let config = AuditConfig { segment_max_bytes: 1024 * 1024, ..AuditConfig::default() };
        let log = AuditLog::open(&dir, config).unwrap();
        let sealer = sealing.then(|| {
            palisade_audit::Sealer::spawn(dir.clone(), SealOptions::default(), Duration::from_millis(100))
                .unwrap()
        });
        let name = format!("strict_16_appenders{}", if sealing { "_sealing" } else { "" });
        group.bench_function(&name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let started = std::time::Instant::now();
                    let tasks: Vec<_> = (0..16u64)
                        .map(|t| {
                            let log = log.clone();
                            let share = iters / 16 + u64::from(t < iters % 16);
                            tokio::spawn(async move {
                                for i in 0..share {
                                    log.append(record(i, true)).await.unwrap();
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
        if let Some(sealer) = &sealer {
            let s = sealer.stats();
            eprintln!(
                "{name}: {} records written, {} segments sealed while appending ({} records), {} errors",
                log.stats().records_written,
                s.segments,
                s.records,
                s.errors
            );
        }
        drop(sealer);
        runtime.block_on(log.close()).unwrap();
    }
    group.finish();
}

criterion_group!(benches, bench_seal, bench_strict_with_sealing);
criterion_main!(benches);
