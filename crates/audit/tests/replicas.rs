//! Replicas: a directory of replicas' trails (found, refused when ambiguous, merged by
//! time), and shipping each durable line to a stream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use palisade_audit::{
    AuditConfig, AuditLog, Filter, KeySource, ShipOptions, Shipper, Timestamp, TrailLayout, Trails,
    VerifyOptions, find_trails, query_replicas, verify,
};

const BASE: i64 = 1_795_687_200_000;

/// Writes a replica's trail in the layout of a Kubernetes volume (`ROOT/NAME/trail`,
/// `ROOT/NAME/keys`): records at `times` (milliseconds after BASE).
fn replica(root: &Path, name: &str, replica_id: &str, times: &[i64]) {
    let dir = root.join(name).join("trail");
    let config = AuditConfig {
        signing_key: Some(root.join(name).join("keys").join("audit-signing.pk8")),
        ..small(replica_id)
    };
    runtime().block_on(async {
        let log = AuditLog::open(&dir, config).unwrap();
        for (i, t) in times.iter().enumerate() {
            let mut r = request(i);
            r.request_id = Some(format!("{replica_id}-{i}"));
            r.received = Some(Timestamp::from_unix_millis(BASE + t));
            r.completed = Some(Timestamp::from_unix_millis(BASE + t + 5));
            log.append(r).await.unwrap();
        }
        log.close().await.unwrap();
    });
}

fn trails(root: &Path) -> Vec<palisade_audit::Trail> {
    match find_trails(root).unwrap() {
        Trails::Replicas { trails, .. } => trails,
        Trails::One(dir) => panic!("{} read as one log", dir.display()),
    }
}

#[test]
fn a_single_log_and_an_empty_directory_are_one_trail() {
    let log = log_dir();
    assert_eq!(find_trails(log.path()).unwrap(), Trails::One(log.path().to_owned()));
    write_log(log.path(), small("r"), 3);
    assert_eq!(find_trails(log.path()).unwrap(), Trails::One(log.path().to_owned()));
    // A home (audit/ beside keys/) and a replica's volume (trail/ beside keys/) are one trail.
    assert_eq!(find_trails(log.home()).unwrap(), Trails::One(log.path().to_owned()));
    let root = tempfile::tempdir().unwrap();
    replica(root.path(), "pod", "r0", &[1]);
    assert_eq!(find_trails(&root.path().join("pod")).unwrap(), Trails::One(root.path().join("pod/trail")));
}

#[test]
fn replicas_are_found_in_every_layout_ordered_by_replica_id_and_each_verifies_with_its_own_key() {
    let root = tempfile::tempdir().unwrap();
    replica(root.path(), "pod-b", "palisade-iris-1", &[10, 30]);
    replica(root.path(), "pod-a", "palisade-iris-0", &[20]);
    // A copy of a home: HOME/audit and HOME/keys.
    let home = root.path().join("laptop");
    fs::create_dir(&home).unwrap();
    write_log(&home.join("audit"), small("laptop"), 2);
    fs::create_dir(root.path().join("notes")).unwrap();
    let Trails::Replicas { trails, skipped } = find_trails(root.path()).unwrap() else { panic!("one log") };
    let found: Vec<_> = trails.iter().map(|t| (t.label().to_owned(), t.name.clone(), t.layout)).collect();
    assert_eq!(
        found,
        [
            ("laptop".to_owned(), "laptop/audit".to_owned(), TrailLayout::Home),
            ("palisade-iris-0".to_owned(), "pod-a/trail".to_owned(), TrailLayout::Volume),
            ("palisade-iris-1".to_owned(), "pod-b/trail".to_owned(), TrailLayout::Volume),
        ]
    );
    assert_eq!(skipped, ["notes"]);
    let key_ids: Vec<_> = trails
        .iter()
        .map(|t| {
            let report = verify(&t.dir, &VerifyOptions::default()).unwrap();
            assert!(report.ok, "{}: {:?}", t.name, report.first_problem);
            report.key_id.unwrap()
        })
        .collect();
    assert!(key_ids[0] != key_ids[1] && key_ids[1] != key_ids[2], "each replica has its own key");
    // Another replica's key does not verify a trail.
    let other =
        palisade_audit::PublicKey::from_file(&root.path().join("pod-a/keys/audit-signing.pub")).unwrap();
    let report =
        verify(&trails[2].dir, &VerifyOptions { key: KeySource::Pinned(other), ..VerifyOptions::default() })
            .unwrap();
    assert!(!report.ok);
}

#[test]
fn records_merge_by_time_then_replica_then_seq() {
    let root = tempfile::tempdir().unwrap();
    replica(root.path(), "b", "r1", &[10, 30, 30, 50]);
    replica(root.path(), "a", "r0", &[20, 30, 40]);
    replica(root.path(), "c", "r2", &[5, 60]);
    let trails = trails(root.path());
    let merged: Vec<(i64, String, u64)> = query_replicas(&trails, Filter::default())
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            (r.received.unwrap().unix_millis() - BASE, r.replica_id, r.seq)
        })
        .collect();
    let expected: Vec<(i64, String, u64)> = [
        (5, "r2", 0),
        (10, "r1", 0),
        (20, "r0", 0),
        (30, "r0", 1),
        (30, "r1", 1),
        (30, "r1", 2),
        (40, "r0", 2),
        (50, "r1", 3),
        (60, "r2", 1),
    ]
    .into_iter()
    .map(|(t, r, s)| (t, r.to_owned(), s))
    .collect();
    assert_eq!(merged, expected);

    // Filters apply to every replica; the limit keeps the earliest.
    let filter =
        Filter { from: Some(Timestamp::from_unix_millis(BASE + 30)), limit: Some(3), ..Filter::default() };
    let ids: Vec<String> =
        query_replicas(&trails, filter).unwrap().map(|r| r.unwrap().request_id.unwrap()).collect();
    assert_eq!(ids, ["r0-1", "r1-1", "r1-2"]);
}

#[test]
fn records_out_of_time_order_within_a_replica_are_still_merged_by_time() {
    // A slow request is received first and recorded last: seq order is not time order.
    let root = tempfile::tempdir().unwrap();
    replica(root.path(), "a", "r0", &[50, 10, 30]);
    replica(root.path(), "b", "r1", &[20, 40]);
    let times: Vec<i64> = query_replicas(&trails(root.path()), Filter::default())
        .unwrap()
        .map(|r| r.unwrap().received.unwrap().unix_millis() - BASE)
        .collect();
    assert_eq!(times, [10, 20, 30, 40, 50]);
}

#[test]
fn the_same_trail_twice_or_one_replica_id_twice_is_refused_naming_both() {
    let root = tempfile::tempdir().unwrap();
    replica(root.path(), "a", "r0", &[1]);
    // A second copy of the same volume.
    let copy = root.path().join("a-copy");
    fs::create_dir_all(copy.join("trail")).unwrap();
    for entry in fs::read_dir(root.path().join("a/trail")).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), copy.join("trail").join(entry.file_name())).unwrap();
    }
    let err = find_trails(root.path()).unwrap_err().to_string();
    assert!(err.contains("the same log") && err.contains("a/trail") && err.contains("a-copy/trail"), "{err}");
    assert!(err.contains("fix: remove one of the two copies"), "{err}");

    // Two different chains claiming one replica id.
    fs::remove_dir_all(&copy).unwrap();
    replica(root.path(), "b", "r0", &[2]);
    let err = find_trails(root.path()).unwrap_err().to_string();
    assert!(err.contains("both hold a trail of replica r0") && err.contains("b/trail"), "{err}");
    assert!(err.contains("audit.replicaId"), "{err}");
}

#[test]
fn a_replica_directory_with_two_trails_is_refused() {
    let root = tempfile::tempdir().unwrap();
    replica(root.path(), "a", "r0", &[1]);
    write_log(&root.path().join("a").join("audit"), small("r9"), 1);
    let err = find_trails(root.path()).unwrap_err().to_string();
    assert!(err.contains("holds more than one audit trail"), "{err}");
}

/// A stream that keeps what it is given.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<u8>>>);

impl Write for Collector {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Appends `n` records concurrently (so that group commits hold several) and closes.
fn write_concurrently(dir: &Path, config: AuditConfig, n: usize) {
    runtime().block_on(async {
        let log = AuditLog::open(dir, config).unwrap();
        let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(log.append(request(i)))).collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        log.close().await.unwrap();
    });
}

#[test]
fn shipped_lines_are_the_trails_lines_byte_for_byte_with_checkpoints_after_what_they_cover() {
    let log = log_dir();
    let out = Collector::default();
    let ship = Shipper::start(out.clone(), ShipOptions::default()).unwrap();
    write_concurrently(log.path(), AuditConfig { ship: Some(ship.clone()), ..small("r") }, 300);
    let shipped = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let (records, checkpoints): (Vec<&str>, Vec<&str>) =
        shipped.lines().partition(|l| l.starts_with(r#"{"schema":"palisade.audit/v1""#));
    let stored: Vec<String> = segments(log.path()).iter().flat_map(|p| lines(p)).collect();
    assert_eq!(records, stored, "every record, in chain order, as stored");
    assert_eq!(
        checkpoints,
        lines(&log.path().join(palisade_audit::CHECKPOINT_FILE)),
        "every checkpoint, genesis first"
    );
    // A checkpoint follows the record it names.
    let mut seen = std::collections::BTreeSet::new();
    for line in shipped.lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        match value["seq"].as_u64() {
            Some(seq) if line.contains("checkpoint/v2") => {
                assert!(seen.contains(&seq), "checkpoint before seq {seq}")
            }
            Some(seq) => {
                seen.insert(seq);
            }
            None => {}
        }
    }
    let stats = ship.stats();
    assert_eq!(
        (stats.shipped, stats.dropped, stats.errors),
        ((records.len() + checkpoints.len()) as u64, 0, 0)
    );
    assert!(verify(log.path(), &VerifyOptions::default()).unwrap().ok);
}

#[test]
fn shipping_records_only_leaves_checkpoints_out() {
    let log = log_dir();
    let out = Collector::default();
    let ship =
        Shipper::start(out.clone(), ShipOptions { checkpoints: false, ..ShipOptions::default() }).unwrap();
    write_log(log.path(), AuditConfig { ship: Some(ship), ..small("r") }, 25);
    let shipped = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let stored: Vec<String> = segments(log.path()).iter().flat_map(|p| lines(p)).collect();
    assert_eq!(shipped.lines().collect::<Vec<_>>(), stored);
}

/// A stream that fails every write, or blocks forever.
struct Broken {
    block: bool,
}

impl Write for Broken {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        if self.block {
            std::thread::sleep(Duration::from_secs(3600));
        }
        Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_broken_or_blocked_stream_costs_shipped_lines_never_records() {
    for block in [false, true] {
        let log = log_dir();
        let ship =
            Shipper::start(Broken { block }, ShipOptions { checkpoints: true, queue_bytes: 4096 }).unwrap();
        let started = std::time::Instant::now();
        let acks = runtime().block_on(async {
            let log =
                AuditLog::open(log.path(), AuditConfig { ship: Some(ship.clone()), ..small("r") }).unwrap();
            let mut acks = 0;
            for i in 0..200 {
                log.append(request(i)).await.unwrap();
                acks += 1;
            }
            let stats = log.stats();
            assert_eq!(stats.records_written, 200);
            assert!(stats.ship.dropped > 0, "block={block}: {:?}", stats.ship);
            log.close().await.unwrap();
            acks
        });
        assert_eq!(acks, 200);
        // Closing waits a bounded time for a blocked stream.
        assert!(started.elapsed() < Duration::from_secs(30), "block={block}: {:?}", started.elapsed());
        let report = verify(log.path(), &VerifyOptions::default()).unwrap();
        assert!(report.ok && report.records == 200, "block={block}: {report:?}");
        let stats = ship.stats();
        assert_eq!(stats.shipped, 0, "block={block}");
        if !block {
            assert!(stats.errors > 0);
        }
    }
}

/// Two replicas shipping into one stream, as a collector stores them: interleaved.
fn shipped_by_two_replicas() -> (tempfile::TempDir, Vec<u8>) {
    let root = tempfile::tempdir().unwrap();
    let out = Collector::default();
    for (i, replica) in ["r0", "r1"].iter().enumerate() {
        let ship = Shipper::start(out.clone(), ShipOptions::default()).unwrap();
        let dir = root.path().join(replica).join("trail");
        let config = AuditConfig {
            ship: Some(ship),
            signing_key: Some(root.path().join(replica).join("keys/audit-signing.pk8")),
            ..small(replica)
        };
        write_concurrently(&dir, config, 60 + i * 7);
    }
    let bytes = out.0.lock().unwrap().clone();
    (root, bytes)
}

fn pinned(root: &Path, replica: &str) -> KeySource {
    KeySource::File(root.join(replica).join("keys/audit-signing.pub"))
}

#[test]
fn shipped_lines_rebuild_trails_that_verify_and_read_as_the_originals() {
    let (root, shipped) = shipped_by_two_replicas();
    // A collector's file: other lines around, one line delivered twice.
    let mut file = b"not an audit line\n".to_vec();
    file.extend_from_slice(&shipped);
    let dup = shipped.split(|b| *b == b'\n').nth(5).unwrap().to_vec();
    file.extend_from_slice(&dup);
    file.push(b'\n');
    let out = tempfile::tempdir().unwrap();
    let report =
        palisade_audit::import_shipped(vec![("collector.log".to_owned(), &file[..])], out.path()).unwrap();
    assert_eq!(report.ignored, 1);
    let summary: Vec<_> =
        report.trails.iter().map(|t| (t.replica_id.as_str(), t.records, t.duplicates)).collect();
    assert_eq!(summary, [("r0", 60, 1), ("r1", 67, 0)]);
    for replica in ["r0", "r1"] {
        let rebuilt = out.path().join(replica).join("trail");
        let report = verify(
            &rebuilt,
            &VerifyOptions { key: pinned(root.path(), replica), ..VerifyOptions::default() },
        )
        .unwrap();
        assert!(report.ok && report.segments > 1, "{replica}: {report:?}");
        // The original lines, byte for byte, in order; segments are cut where checkpoints
        // say one began (a segment no checkpoint names joins the one before).
        let original = root.path().join(replica).join("trail");
        let concat =
            |dir: &Path| -> Vec<u8> { segments(dir).iter().flat_map(|p| fs::read(p).unwrap()).collect() };
        assert_eq!(concat(&rebuilt), concat(&original));
        let names = |dir: &Path| -> Vec<String> { segments(dir).iter().map(|p| name(p)).collect() };
        assert!(names(&rebuilt).iter().all(|n| names(&original).contains(n)));
        assert_eq!(
            fs::read(rebuilt.join(palisade_audit::CHECKPOINT_FILE)).unwrap(),
            fs::read(original.join(palisade_audit::CHECKPOINT_FILE)).unwrap()
        );
    }
    let merged = |dir: &Path| -> Vec<String> {
        query_replicas(&trails(dir), Filter::default()).unwrap().map(|r| r.unwrap().hash).collect()
    };
    assert_eq!(merged(out.path()), merged(root.path()));
}

#[test]
fn a_line_missing_or_changed_in_the_copy_fails_verification() {
    let (root, shipped) = shipped_by_two_replicas();
    let text = String::from_utf8(shipped).unwrap();
    let r1_record_seq = |seq: u64| format!(r#""seq":{seq},"kind":"request""#);
    // Lose one of r1's records (a line the stream did not take).
    let lost: String = text
        .lines()
        .filter(|l| !(l.contains(r#""replica_id":"r1""#) && l.contains(&r1_record_seq(30))))
        .map(|l| format!("{l}\n"))
        .collect();
    let out = tempfile::tempdir().unwrap();
    palisade_audit::import_shipped(vec![("c".to_owned(), lost.as_bytes())], out.path()).unwrap();
    let report = verify(
        &out.path().join("r1/trail"),
        &VerifyOptions { key: pinned(root.path(), "r1"), ..VerifyOptions::default() },
    )
    .unwrap();
    assert!(!report.ok);
    assert!(report.first_problem.unwrap().what.contains("seq 30 was expected"));
    let r0 = verify(
        &out.path().join("r0/trail"),
        &VerifyOptions { key: pinned(root.path(), "r0"), ..VerifyOptions::default() },
    )
    .unwrap();
    assert!(r0.ok);

    // Two different lines for one seq are refused at import, naming the line.
    let changed = format!(
        "{text}{}\n",
        text.lines().find(|l| l.contains(&r1_record_seq(3))).unwrap().replace("\"status\":", "\"status\":1")
    );
    let err = palisade_audit::import_shipped(
        vec![("c".to_owned(), changed.as_bytes())],
        tempfile::tempdir().unwrap().path(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("two different lines claim seq 3"), "{err}");
}

#[test]
fn sealed_segments_of_replicas_merge_as_before_sealing() {
    let root = tempfile::tempdir().unwrap();
    let times_b: Vec<i64> = (0..60).map(|i| i * 20).collect();
    let times_a: Vec<i64> = (0..50).map(|i| i * 23 + 7).collect();
    replica(root.path(), "b", "r1", &times_b);
    replica(root.path(), "a", "r0", &times_a);
    let trails = trails(root.path());
    let all = |filter: Filter| -> Vec<(String, u64)> {
        query_replicas(&trails, filter).unwrap().map(|r| r.map(|r| (r.replica_id, r.seq)).unwrap()).collect()
    };
    let filter = Filter { from: Some(Timestamp::from_unix_millis(BASE + 300)), ..Filter::default() };
    let (before, before_filtered) = (all(Filter::default()), all(filter.clone()));
    for name in ["a", "b"] {
        let options = palisade_audit::SealOptions {
            signing_key: Some(root.path().join(name).join("keys").join("audit-signing.pk8")),
            frame_records: 4,
            ..palisade_audit::SealOptions::default()
        };
        let report = palisade_audit::seal_segments(&root.path().join(name).join("trail"), &options).unwrap();
        assert!(report.sealed.len() >= 5, "{report:?}");
    }
    assert_eq!(all(Filter::default()), before);
    assert_eq!(all(filter), before_filtered);
    let one = Filter { request_id: Some("r1-41".into()), ..Filter::default() };
    assert_eq!(all(one), vec![("r1".to_owned(), 41)]);
}
