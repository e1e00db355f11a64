//! Sealed segments: sealing keeps `verify` green and the bytes exact, queries read only the
//! frames they need, damage is named (segment, frame, record), every on-disk state a crash
//! during sealing can leave verifies, and a segment edited on disk is never sealed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use palisade_audit::{
    AuditConfig, AuditError, AuditRecord, Filter, RetentionPolicy, RetentionReport, SealOptions, SealStep,
    Timestamp, VerifyOptions, VerifyReport, apply_retention, query, seal_segments, verify,
};

/// Segments of ~50 records, checkpoints every 10.
fn config() -> AuditConfig {
    AuditConfig {
        replica_id: "r".into(),
        segment_max_bytes: 64 * 1024,
        checkpoint_every: 10,
        ..AuditConfig::default()
    }
}

fn options() -> SealOptions {
    SealOptions { frame_records: 16, ..SealOptions::default() }
}

fn check(dir: &Path) -> VerifyReport {
    verify(dir, &VerifyOptions::default()).unwrap()
}

fn all(dir: &Path) -> Vec<AuditRecord> {
    query(dir, Filter::default()).unwrap().map(Result::unwrap).collect()
}

fn sealed_files(dir: &Path) -> Vec<PathBuf> {
    segments(dir).into_iter().filter(|p| name(p).ends_with(".jsonl.zst")).collect()
}

fn plain_files(dir: &Path) -> Vec<PathBuf> {
    segments(dir).into_iter().filter(|p| name(p).ends_with(".jsonl")).collect()
}

/// A closed log of `n` records, its verify report and every plain segment's bytes.
fn written(n: usize) -> (LogDir, VerifyReport, Vec<(String, Vec<u8>)>) {
    let log = log_dir();
    write_log(log.path(), config(), n);
    let report = check(log.path());
    assert!(report.ok, "{report}");
    let bytes = segments(log.path()).iter().map(|p| (name(p), fs::read(p).unwrap())).collect();
    (log, report, bytes)
}

#[test]
fn sealing_keeps_verify_green_the_bytes_exact_and_the_records_readable() {
    let (log, before, plain) = written(400);
    let records = all(log.path());
    let segment_count = plain.len();
    assert!(segment_count >= 5, "{segment_count} segments");

    let report = seal_segments(log.path(), &options()).unwrap();
    assert_eq!(report.sealed.len(), segment_count - 1, "every segment but the active one: {report:?}");
    assert_eq!(plain_files(log.path()).len(), 1, "the last segment stays plain JSON lines");
    for s in &report.sealed {
        assert!(s.sealed_bytes * 3 < s.plain_bytes, "{s:?}");
        assert_eq!(s.frames as u64, s.records.div_ceil(16));
    }

    let after = check(log.path());
    assert!(after.ok, "{after}");
    assert_eq!(after.records, before.records);
    assert_eq!(after.head, before.head);
    assert_eq!(after.checkpoints_matched, before.checkpoints_matched);
    assert_eq!(after.sealed_segments, segment_count - 1);
    assert_eq!(all(log.path()), records, "query reads sealed and plain segments alike");

    // Any zstd decoder gives back the plain segment byte for byte (the trailer is skipped).
    for (plain_name, bytes) in &plain[..segment_count - 1] {
        let sealed = fs::read(log.path().join(format!("{plain_name}.zst"))).unwrap();
        assert_eq!(&zstd::stream::decode_all(&sealed[..]).unwrap(), bytes, "{plain_name}");
    }

    // A second pass has nothing left to do; the writer resumes after sealed segments.
    assert_eq!(seal_segments(log.path(), &options()).unwrap().sealed.len(), 0);
    write_log(log.path(), config(), 200);
    let resumed = check(log.path());
    assert!(resumed.ok, "{resumed}");
    assert_eq!(resumed.records, 600);
    assert!(!seal_segments(log.path(), &options()).unwrap().sealed.is_empty());
    let resealed = check(log.path());
    assert!(resealed.ok, "{resealed}");
    assert_eq!(resealed.records, 600);
}

#[test]
fn a_query_by_request_id_or_time_decodes_only_the_frames_that_may_match() {
    let (log, _, _) = written(400);
    seal_segments(log.path(), &options()).unwrap();
    assert!(sealed_files(log.path()).len() >= 4);

    let by_id = Filter { request_id: Some("req-123".into()), ..Filter::default() };
    let mut found = query(log.path(), by_id).unwrap();
    let hits: Vec<AuditRecord> = found.by_ref().map(Result::unwrap).collect();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].seq, 123);
    assert_eq!(found.frames_decoded(), 1, "one 16-record frame of one sealed segment");

    // Records are one second apart: [100 s, 110 s) lies in at most two frames.
    let base = 1_795_687_200_000;
    let range = Filter {
        from: Some(Timestamp::from_unix_millis(base + 100_000)),
        to: Some(Timestamp::from_unix_millis(base + 110_000)),
        ..Filter::default()
    };
    let mut found = query(log.path(), range).unwrap();
    let seqs: Vec<u64> = found.by_ref().map(|r| r.unwrap().seq).collect();
    assert_eq!(seqs, (100..110).collect::<Vec<_>>());
    assert!((1..=2).contains(&found.frames_decoded()), "{}", found.frames_decoded());

    let mut everything = query(log.path(), Filter::default()).unwrap();
    assert_eq!(everything.by_ref().count(), 400);
    assert!(everything.frames_decoded() >= 20);
}

/// The first sealed segment's frame `k`: (offset, compressed length).
fn frame_at(path: &Path, k: usize) -> (usize, usize) {
    let trailer = trailer(path);
    let f = &trailer.index.frames[k];
    (f.offset as usize, f.bytes as usize)
}

fn trailer(path: &Path) -> palisade_audit::Trailer {
    let bytes = fs::read(path).unwrap();
    let n = bytes.len();
    let offset = u64::from_le_bytes(bytes[n - 16..n - 8].try_into().unwrap()) as usize;
    palisade_audit::parse_trailer(&bytes[offset..n - 24], offset as u64).unwrap()
}

fn flipped(at: impl Fn(&Path) -> usize) -> (LogDir, VerifyReport, String) {
    let (log, _, _) = written(200);
    seal_segments(log.path(), &options()).unwrap();
    let path = sealed_files(log.path())[1].clone();
    let mut bytes = fs::read(&path).unwrap();
    let i = at(&path);
    bytes[i] ^= 0x20;
    fs::write(&path, bytes).unwrap();
    let report = check(log.path());
    assert!(!report.ok, "flipping byte {i} of {} went unnoticed", name(&path));
    (log, report, name(&path))
}

#[test]
fn a_flipped_byte_in_a_frame_is_named_by_segment_and_frame() {
    let (_log, report, file) = flipped(|p| {
        let (offset, len) = frame_at(p, 2);
        offset + len / 2
    });
    let problem = report.first_problem.unwrap();
    assert_eq!(problem.segment.as_deref(), Some(file.as_str()));
    assert!(problem.what.contains("frame 2"), "{problem}");
}

#[test]
fn a_flipped_byte_in_the_index_or_the_seal_checkpoint_is_named() {
    let index = |p: &Path| {
        let bytes = fs::read(p).unwrap();
        let n = bytes.len();
        let offset = u64::from_le_bytes(bytes[n - 16..n - 8].try_into().unwrap()) as usize;
        // Inside the JSON: the "plain_sha256" value.
        let text = &bytes[offset..];
        offset + text.windows(15).position(|w| w == b"\"plain_sha256\":").unwrap() + 20
    };
    let (_log, report, file) = flipped(index);
    let problem = report.first_problem.unwrap();
    assert_eq!(problem.segment.as_deref(), Some(file.as_str()), "{problem}");

    let signature = |p: &Path| {
        let bytes = fs::read(p).unwrap();
        let at = bytes.windows(13).rposition(|w| w == b"\"signature\":\"").unwrap();
        at + 20
    };
    let (_log, report, file) = flipped(signature);
    let problem = report.first_problem.unwrap();
    assert_eq!(problem.segment.as_deref(), Some(file.as_str()));
    assert!(problem.what.contains("seal checkpoint"), "{problem}");

    let footer = |p: &Path| fs::metadata(p).unwrap().len() as usize - 3;
    let (_log, report, file) = flipped(footer);
    let problem = report.first_problem.unwrap();
    assert_eq!(problem.segment.as_deref(), Some(file.as_str()));
    assert!(problem.what.contains("footer"), "{problem}");
}

/// Replaces frame `k` of a sealed file with `edit` applied to its decoded lines, recompressed
/// validly, offsets in the index fixed: what a forger without the key can do.
fn recompress_frame(path: &Path, k: usize, edit: impl Fn(&str) -> String) {
    let bytes = fs::read(path).unwrap();
    let mut trailer = trailer(path);
    let n = bytes.len();
    let footer_at = n - 24;
    let checkpoint_start = {
        let offset = trailer.frames_end as usize;
        let len = u32::from_le_bytes(bytes[offset + 4..offset + 8].try_into().unwrap()) as usize;
        offset + 8 + len
    };
    let cp_frame = bytes[checkpoint_start..footer_at].to_vec();
    let mut frames = Vec::new();
    for (i, f) in trailer.index.frames.iter_mut().enumerate() {
        let raw = &bytes[f.offset as usize..(f.offset + f.bytes) as usize];
        let out = if i == k {
            let plain = String::from_utf8(zstd::stream::decode_all(raw).unwrap()).unwrap();
            let edited = edit(&plain);
            assert_eq!(edited.len(), plain.len(), "keep the length");
            zstd::bulk::compress(edited.as_bytes(), 3).unwrap()
        } else {
            raw.to_vec()
        };
        f.offset = frames.len() as u64;
        f.bytes = out.len() as u64;
        frames.extend(out);
    }
    let json = serde_json::to_vec(&trailer.index).unwrap();
    let mut file = frames.clone();
    file.extend(0x184D_2A50u32.to_le_bytes());
    file.extend((json.len() as u32).to_le_bytes());
    file.extend(&json);
    file.extend(&cp_frame);
    file.extend(0x184D_2A5Fu32.to_le_bytes());
    file.extend(16u32.to_le_bytes());
    file.extend((frames.len() as u64).to_le_bytes());
    file.extend(b"PALSEAL1");
    fs::write(path, file).unwrap();
}

#[test]
fn an_edited_record_in_a_validly_recompressed_frame_is_named_by_frame_and_record() {
    let (log, _, _) = written(200);
    seal_segments(log.path(), &options()).unwrap();
    let path = sealed_files(log.path())[0].clone();
    // The trailer check itself passes: the forgery is found by the chain.
    recompress_frame(&path, 1, |plain| plain.replacen("\"status\":200", "\"status\":201", 1));
    let report = check(log.path());
    let problem = report.first_problem.unwrap();
    assert_eq!(problem.segment.as_deref(), Some(name(&path).as_str()));
    assert!(problem.what.starts_with("frame 1: hash mismatch"), "{problem}");
    let seq = problem.seq.unwrap();
    assert!((16..32).contains(&seq), "seq {seq} is in frame 1");
    assert_eq!(problem.line, Some(seq + 1), "line {:?} of the segment", problem.line);

    // An unchanged recompression (a different zstd level) still verifies.
    let (log, _, _) = written(200);
    seal_segments(log.path(), &options()).unwrap();
    recompress_frame(&sealed_files(log.path())[0], 1, str::to_owned);
    let report = check(log.path());
    assert!(report.ok, "{report}");
}

#[test]
fn a_renamed_or_removed_sealed_segment_is_named() {
    let (log, _, _) = written(300);
    seal_segments(log.path(), &options()).unwrap();
    let sealed = sealed_files(log.path());
    fs::remove_file(&sealed[1]).unwrap();
    let problem = check(log.path()).first_problem.unwrap();
    assert!(problem.what.contains("are missing"), "{problem}");
    assert_eq!(problem.segment.as_deref(), Some(name(&sealed[2]).as_str()));

    // One sealed segment put in another's place.
    let (log, _, _) = written(300);
    seal_segments(log.path(), &options()).unwrap();
    let sealed = sealed_files(log.path());
    fs::copy(&sealed[2], &sealed[1]).unwrap();
    let problem = check(log.path()).first_problem.unwrap();
    assert_eq!(problem.segment.as_deref(), Some(name(&sealed[1]).as_str()), "{problem}");
}

#[test]
fn every_state_a_crash_during_sealing_leaves_verifies_and_the_next_pass_finishes() {
    for step in [SealStep::TempPartial, SealStep::TempWritten, SealStep::Renamed] {
        let (log, before, _) = written(300);
        let records = all(log.path());
        let crashed = SealOptions { crash_after: Some(step), ..options() };
        seal_segments(log.path(), &crashed).unwrap();
        let files: Vec<String> = fs::read_dir(log.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        match step {
            SealStep::TempPartial | SealStep::TempWritten => {
                assert!(files.iter().any(|f| f.ends_with(".zst.tmp")), "{step:?}: {files:?}")
            }
            SealStep::Renamed => {
                assert!(files.contains(&"segment-00000000000000000000.jsonl.zst".to_owned()), "{files:?}");
                assert!(files.contains(&"segment-00000000000000000000.jsonl".to_owned()), "{files:?}");
            }
        }
        let report = check(log.path());
        assert!(report.ok, "{step:?}: {report}");
        assert_eq!((report.records, report.head.clone()), (before.records, before.head.clone()), "{step:?}");
        assert_eq!(all(log.path()), records, "{step:?}");

        let next = seal_segments(log.path(), &options()).unwrap();
        let leftovers = usize::from(step == SealStep::Renamed);
        assert_eq!(next.leftovers_removed, leftovers, "{step:?}: {next:?}");
        assert_eq!(next.sealed.len() + leftovers, before.segments - 1, "{step:?}: {next:?}");
        let files: Vec<String> = fs::read_dir(log.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!files.iter().any(|f| f.ends_with(".tmp")), "{files:?}");
        assert_eq!(plain_files(log.path()).len(), 1, "{step:?}: {files:?}");
        let report = check(log.path());
        assert!(report.ok, "{step:?}: {report}");
        assert_eq!(report.sealed_segments, before.segments - 1);
        assert_eq!(all(log.path()), records, "{step:?}");
    }
}

#[test]
fn a_sealed_copy_that_differs_from_its_plain_original_is_replaced_not_trusted() {
    let (log, before, _) = written(300);
    seal_segments(log.path(), &SealOptions { crash_after: Some(SealStep::Renamed), ..options() }).unwrap();
    let sealed = sealed_files(log.path())[0].clone();
    let mut bytes = fs::read(&sealed).unwrap();
    let (offset, len) = frame_at(&sealed, 0);
    bytes[offset + len / 2] ^= 1;
    fs::write(&sealed, bytes).unwrap();
    // Readers list the plain original while both exist.
    assert!(check(log.path()).ok);
    let next = seal_segments(log.path(), &options()).unwrap();
    assert_eq!(next.leftovers_removed, 0);
    assert_eq!(next.sealed.len(), before.segments - 1, "sealed again from the plain original");
    let report = check(log.path());
    assert!(report.ok, "{report}");
}

#[test]
fn a_segment_edited_on_disk_is_never_sealed() {
    let (log, _, _) = written(300);
    let plain = plain_files(log.path());
    rechain_from(log.path(), 60, |r| r["status"] = 500.into());
    let first_edited = plain.iter().position(|p| lines(p).iter().any(|l| l.contains("\"seq\":60,"))).unwrap();
    let err = seal_segments(log.path(), &options()).unwrap_err();
    assert!(matches!(err, AuditError::Untrusted { .. }), "{err}");
    assert!(err.to_string().contains("refusing to seal"), "{err}");
    // Segments before the edit may be sealed by an earlier pass; the edited one and those
    // after it stay plain, so `verify` still finds the edit in the writer's own bytes.
    for p in &plain[first_edited..] {
        assert!(p.exists(), "{} was sealed", name(p));
    }
    assert!(!check(log.path()).ok);
}

#[test]
fn a_pass_without_the_signing_key_refuses_and_changes_nothing() {
    let (log, _, _) = written(200);
    fs::remove_file(log.key()).unwrap();
    let err = seal_segments(log.path(), &options()).unwrap_err();
    assert!(matches!(err, AuditError::Key(_)), "{err}");
    assert!(sealed_files(log.path()).is_empty());
}

#[test]
fn retention_without_an_archive_names_what_is_due_and_deletes_nothing() {
    let (log, before, _) = written(400);
    seal_segments(log.path(), &options()).unwrap();
    let files_before = segments(log.path());
    let sealed = sealed_files(log.path());
    // Records are from 2026-11-26 (test clock); "now" a day after the last one.
    let now = Timestamp::from_unix_millis(1_795_687_200_000 + 400_000 + 86_400_000);
    let hour = std::time::Duration::from_secs(3600);

    let by_age = RetentionPolicy { max_age: Some(hour), max_bytes: None };
    let report = apply_retention(log.path(), &by_age, now).unwrap();
    let older = &sealed[..sealed.len() - 1];
    assert!(!older.is_empty());
    assert_eq!(
        report.due,
        older.iter().map(|p| name(p)).collect::<Vec<_>>(),
        "every sealed segment is a day old; the newest sealed one anchors the local chain and stays"
    );
    assert_eq!(report.due_bytes, older.iter().map(|p| fs::metadata(p).unwrap().len()).sum::<u64>());
    assert!(report.deleted.is_empty());
    assert_eq!(report.refused.as_deref(), Some(palisade_audit::NO_ARCHIVE));
    assert!(report.refused.unwrap().contains("not a cache"));

    // Nothing is due when the records are young enough, or the trail small enough.
    let young = RetentionPolicy { max_age: Some(hour * 48), max_bytes: None };
    assert_eq!(apply_retention(log.path(), &young, now).unwrap(), RetentionReport::default());
    let roomy = RetentionPolicy { max_age: None, max_bytes: Some(u64::MAX) };
    assert_eq!(apply_retention(log.path(), &roomy, now).unwrap(), RetentionReport::default());

    // By size: the oldest sealed segments until the rest fits, never the active segment.
    let total: u64 = files_before.iter().map(|p| fs::metadata(p).unwrap().len()).sum();
    let first = fs::metadata(&sealed[0]).unwrap().len();
    let tight = RetentionPolicy { max_age: None, max_bytes: Some(total - first) };
    let report = apply_retention(log.path(), &tight, now).unwrap();
    assert_eq!(report.due, vec![name(&sealed[0])]);
    let tiniest = RetentionPolicy { max_age: None, max_bytes: Some(1) };
    assert_eq!(apply_retention(log.path(), &tiniest, now).unwrap().due.len(), sealed.len() - 1);

    assert_eq!(segments(log.path()), files_before, "no file was deleted");
    let after = check(log.path());
    assert!(after.ok, "{after}");
    assert_eq!(after.records, before.records);
}

#[test]
fn retention_with_an_archive_deletes_only_what_the_archive_confirms_oldest_first() {
    let (log, before, _) = written(400);
    seal_segments(log.path(), &options()).unwrap();
    let sealed = sealed_files(log.path());
    assert!(sealed.len() >= 3, "{} sealed segments", sealed.len());
    let now = Timestamp::from_unix_millis(1_795_687_200_000 + 400_000 + 86_400_000);
    let all_due = RetentionPolicy { max_age: Some(std::time::Duration::from_secs(3600)), max_bytes: None };

    // The archive confirms the first segment only: it goes, the second stops retention.
    let first_len = fs::metadata(&sealed[0]).unwrap().len();
    let mut asked = Vec::new();
    let report = palisade_audit::apply_retention_archived(log.path(), &all_due, now, &mut |c| {
        asked.push(c.file_name.clone());
        if c.file_name == name(&sealed[0]) { Ok(()) } else { Err("the archive's copy differs".into()) }
    })
    .unwrap();
    assert_eq!(asked, vec![name(&sealed[0]), name(&sealed[1])]);
    assert_eq!(report.deleted, vec![name(&sealed[0])]);
    assert_eq!(report.deleted_bytes, first_len);
    let refused = report.refused.unwrap();
    assert!(refused.contains(&name(&sealed[1])) && refused.contains("differs"), "{refused}");
    assert!(!sealed[0].exists() && sealed[1].exists());

    // Confirmed throughout: everything due goes, never the newest sealed segment.
    let report =
        palisade_audit::apply_retention_archived(log.path(), &all_due, now, &mut |_| Ok(())).unwrap();
    assert_eq!(report.deleted.len(), sealed.len() - 2);
    assert!(sealed[sealed.len() - 1].exists(), "the newest sealed segment stays");
    assert!(report.refused.is_none());

    // What stays verifies as a retained suffix, and the sealer carries on from it.
    let from = palisade_audit::list_segments(log.path()).unwrap()[0].first_seq;
    let suffix =
        verify(log.path(), &VerifyOptions { from_seq: Some(from), ..VerifyOptions::default() }).unwrap();
    assert!(suffix.ok, "{suffix}");
    assert_eq!(suffix.last_seq, before.last_seq);
    seal_segments(log.path(), &options()).unwrap();
}
