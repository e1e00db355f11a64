//! Archival against a real S3-compatible server (moto in server mode on loopback): archive
//! and retention keep the chain verifiable across places; an archived segment flipped,
//! removed or reordered is named; records removed locally with their checkpoints are found
//! against the archive; the store going away deletes nothing unarchived and the backlog
//! drains when it is back. Each test needs moto (`.venv/s3`); CI sets PALISADE_REQUIRE_S3,
//! so there a missing server fails instead of skipping.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use object_store::ObjectStoreExt;
use object_store::path::Path as Key;
use palisade_archive::{Archive, ArchivedLog, archive_pass, retain_once};
use palisade_audit::{RetentionPolicy, VerifyOptions};

/// Every sealed segment but the newest is due.
fn everything() -> RetentionPolicy {
    RetentionPolicy { max_age: Some(Duration::from_secs(60)), max_bytes: None }
}

/// The key of a log's object `name`.
fn key(archive: &Archive, id: &str, name: &str) -> Key {
    archive.log_root("r1", id).join(name)
}

fn get(archive: &Archive, key: &Key) -> Vec<u8> {
    runtime().block_on(async { archive.store().get(key).await.unwrap().bytes().await.unwrap().to_vec() })
}

fn put(archive: &Archive, key: &Key, bytes: &[u8]) {
    runtime().block_on(archive.store().put(key, bytes.to_vec().into())).unwrap();
}

fn delete(archive: &Archive, key: &Key) {
    runtime().block_on(archive.store().delete(key)).unwrap();
}

fn log_id(dir: &Path) -> String {
    palisade_audit::read_genesis(dir).unwrap().unwrap().log_id
}

fn across(
    archive: &Archive,
    dir: Option<&Path>,
    replica: &str,
    id: &str,
    options: &VerifyOptions,
) -> palisade_archive::AcrossReport {
    let work = tempfile::tempdir().unwrap();
    let log = ArchivedLog { replica_id: replica.into(), log_id: id.into() };
    runtime().block_on(archive.verify_across(&log, dir, options, work.path())).unwrap()
}

/// A log of 300 records archived, with retention applied: (moto, log, archive, target).
fn archived_and_retained() -> Option<(Moto, LogDir, Archive, String)> {
    let moto = moto()?;
    create_bucket(moto.port, "trails");
    let log = log_dir();
    write_and_seal(&log.dir, "r1", 0, 300);
    let target = target(moto.port, "trails", "prod", log.home.path());
    let archive = open(&target);
    let rt = runtime();
    let report = rt.block_on(archive_pass(&log.dir, &archive)).unwrap();
    assert!(report.segments.len() >= 5, "{report:?}");
    assert!(report.segments.iter().all(|s| s.uploaded));
    assert_eq!(report.checkpoints.len(), 1);
    assert_eq!(report.backlog_segments, 0);
    let retained = retain_once(&log.dir, &archive, &everything(), &rt).unwrap();
    assert_eq!(retained.deleted.len(), report.segments.len() - 1, "{retained:?}");
    let id = log_id(&log.dir);
    Some((moto, log, archive, id))
}

#[test]
fn archive_and_retention_keep_the_chain_verifiable_across_places() {
    let Some((_moto, log, archive, id)) = archived_and_retained() else { return };
    let report = across(&archive, Some(&log.dir), "r1", &id, &VerifyOptions::default());
    assert!(report.report.ok, "{}", report.report);
    assert_eq!(report.report.records, 300);
    assert_eq!(report.report.first_seq, Some(0));
    assert!(report.archived_segments >= 5);
    // Locally, the retained suffix verifies from where it starts.
    let from = palisade_audit::list_segments(&log.dir).unwrap()[0].first_seq;
    assert!(from > 0);
    let suffix =
        palisade_audit::verify(&log.dir, &VerifyOptions { from_seq: Some(from), ..Default::default() })
            .unwrap();
    assert!(suffix.ok, "{suffix}");

    // A second pass finds everything archived; more records: only the new ones go.
    let rt = runtime();
    let again = rt.block_on(archive_pass(&log.dir, &archive)).unwrap();
    assert!(again.segments.is_empty() && again.checkpoints.is_empty(), "{again:?}");
    write_and_seal(&log.dir, "r1", 300, 400);
    let more = rt.block_on(archive_pass(&log.dir, &archive)).unwrap();
    assert!(!more.segments.is_empty() && more.checkpoints.len() == 1, "{more:?}");
    let report = across(&archive, Some(&log.dir), "r1", &id, &VerifyOptions::default());
    assert!(report.report.ok, "{}", report.report);
    assert_eq!(report.report.records, 400);
    assert_eq!(
        rt.block_on(archive.logs()).unwrap(),
        vec![ArchivedLog { replica_id: "r1".into(), log_id: id.clone() }]
    );

    // A time range fetches only the archived segments whose index may hold it (records
    // are 1 s apart from 1_795_687_200 s): records 40..50, in one or two segments.
    let archived = ArchivedLog { replica_id: "r1".into(), log_id: id };
    let work = tempfile::tempdir().unwrap();
    let at = |i: i64| Some(palisade_audit::Timestamp::from_unix_millis(1_795_687_200_000 + i * 1000));
    let fetched =
        rt.block_on(archive.fetch_range(&archived, Some(&log.dir), at(40), at(50), work.path())).unwrap();
    assert!((1..=2).contains(&fetched), "{fetched} segments fetched");
    let filter = palisade_audit::Filter { from: at(40), to: at(50), ..Default::default() };
    let found: Vec<_> = palisade_audit::query(work.path(), filter).unwrap().map(Result::unwrap).collect();
    assert_eq!(found.len(), 10);
}

#[test]
fn a_flipped_removed_or_reordered_archived_segment_is_named() {
    let Some((_moto, log, archive, id)) = archived_and_retained() else { return };
    let first = key(&archive, &id, "segment-00000000000000000000.jsonl.zst");
    let original = get(&archive, &first);
    let verify = || across(&archive, Some(&log.dir), "r1", &id, &VerifyOptions::default()).report;

    // One byte flipped in a frame of the first archived segment (deleted locally).
    let mut flipped = original.clone();
    flipped[40] ^= 0x01;
    put(&archive, &first, &flipped);
    let report = verify();
    assert!(!report.ok);
    let problem = report.first_problem.unwrap();
    assert_eq!(problem.segment.as_deref(), Some(format!("s3://trails/{first}").as_str()), "{problem}");

    // Removed: the gap is named, with the seqs it held.
    delete(&archive, &first);
    let problem = verify().first_problem.unwrap().to_string();
    assert!(
        problem.contains("segment-00000000000000000000.jsonl.zst") && problem.contains("missing"),
        "{problem}"
    );

    // Reordered: the first segment's bytes stored under the second one's name.
    put(&archive, &first, &original);
    let listing =
        runtime().block_on(archive.store().list_with_delimiter(Some(&archive.log_root("r1", &id)))).unwrap();
    let mut keys: Vec<Key> = listing.objects.into_iter().map(|o| o.location).collect();
    keys.sort();
    let second = keys[1].clone();
    let second_bytes = get(&archive, &second);
    put(&archive, &second, &original);
    let problem = verify().first_problem.unwrap().to_string();
    assert!(problem.contains(second.filename().unwrap()), "{problem}");
    assert!(problem.contains("reordered"), "{problem}");
    put(&archive, &second, &second_bytes);
    let report = verify();
    assert!(report.ok, "restored: {report}");
}

#[test]
fn the_newest_records_removed_locally_with_their_checkpoints_are_found_against_the_archive() {
    let Some((_moto, log, archive, id)) = archived_and_retained() else { return };
    // Locally: the last segment and the checkpoints after its first record are cut, which
    // a local verify cannot tell from a shorter trail.
    let segments = palisade_audit::list_segments(&log.dir).unwrap();
    let last = segments.last().unwrap();
    std::fs::remove_file(&last.path).unwrap();
    let cps = std::fs::read_to_string(log.dir.join("checkpoints.jsonl")).unwrap();
    let keep: Vec<&str> = cps
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .is_none_or(|s| s < last.first_seq)
        })
        .collect();
    std::fs::write(log.dir.join("checkpoints.jsonl"), format!("{}\n", keep.join("\n"))).unwrap();
    let from = segments[0].first_seq;
    let local =
        palisade_audit::verify(&log.dir, &VerifyOptions { from_seq: Some(from), ..Default::default() })
            .unwrap();
    assert!(local.ok, "the local trail alone looks whole: {local}");

    let report = across(&archive, Some(&log.dir), "r1", &id, &VerifyOptions::default()).report;
    assert!(!report.ok);
    let problem = report.first_problem.unwrap().to_string();
    assert!(problem.contains("removed"), "{problem}");
}

#[test]
fn an_archive_holding_other_bytes_is_never_overwritten_and_retention_keeps_the_segment() {
    let Some(moto) = moto() else { return };
    create_bucket(moto.port, "trails");
    let log = log_dir();
    write_and_seal(&log.dir, "r1", 0, 200);
    let archive = open(&target(moto.port, "trails", "", log.home.path()));
    let id = log_id(&log.dir);
    let first = key(&archive, &id, "segment-00000000000000000000.jsonl.zst");
    put(&archive, &first, b"someone else's bytes");
    let rt = runtime();
    let err = rt.block_on(archive_pass(&log.dir, &archive)).unwrap_err();
    assert!(
        err.to_string().contains("never overwritten")
            && err.to_string().contains("segment-00000000000000000000"),
        "{err}"
    );
    assert_eq!(get(&archive, &first), b"someone else's bytes");
    let before = sealed(&log.dir);
    let retained = retain_once(&log.dir, &archive, &everything(), &rt).unwrap();
    assert!(retained.deleted.is_empty(), "{retained:?}");
    assert!(retained.refused.unwrap().contains("not confirmed"));
    assert_eq!(sealed(&log.dir), before);
}

#[test]
fn with_the_store_unreachable_nothing_unarchived_is_deleted_and_the_backlog_drains_when_it_is_back() {
    // moto keeps objects in memory, so a restarted moto would start empty: the store is
    // taken away by cutting a forwarding proxy in front of it (the archiver then sees
    // refused connections, as with a stopped server) and brought back on the same port.
    let Some(moto) = moto() else { return };
    create_bucket(moto.port, "trails");
    let mut proxy = Proxy::start(moto.port);
    let log = log_dir();
    write_and_seal(&log.dir, "r1", 0, 120);
    let target = target(proxy.port, "trails", "p", log.home.path());
    let archiver = palisade_archive::Archiver::spawn(
        log.dir.clone(),
        target.clone(),
        Some(everything()),
        Duration::from_millis(100),
    )
    .unwrap();
    assert!(wait(|| archiver.stats().segments > 0 && archiver.stats().backlog_segments == 0));
    let archived_first = archiver.stats().segments;

    proxy.stop();
    write_and_seal(&log.dir, "r1", 120, 300);
    let errors = archiver.stats().errors;
    assert!(wait(|| archiver.stats().errors > errors + 2), "{:?}", archiver.stats());
    let stats = archiver.stats();
    assert!(stats.backlog_segments > 0 && stats.backlog_bytes > 0, "{stats:?}");
    assert_eq!(stats.segments, archived_first, "nothing was archived while the store was away");
    // Every sealed segment written while the store was away is still here.
    let state = std::fs::read_to_string(log.dir.join(palisade_archive::STATE_FILE)).unwrap();
    let local = sealed(&log.dir);
    let unarchived: Vec<&String> = local.iter().filter(|n| !state.contains(n.as_str())).collect();
    assert_eq!(unarchived.len() as u64, stats.backlog_segments, "{unarchived:?}");

    proxy.resume();
    assert!(wait(|| archiver.stats().backlog_segments == 0), "{:?}", archiver.stats());
    drop(archiver);
    let archive = open(&target);
    let report = across(&archive, Some(&log.dir), "r1", &log_id(&log.dir), &VerifyOptions::default()).report;
    assert!(report.ok, "{report}");
    assert_eq!(report.records, 300);
}

fn wait(mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
