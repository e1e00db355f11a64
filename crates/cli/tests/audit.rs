//! `palisade audit verify` and `palisade serve` against logs someone tampered with: the
//! attack of issue 11's finding 6 (re-chained records, checkpoints deleted), keys given
//! to verify, and logs from before genesis checkpoints.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use palisade_audit::{AuditConfig, AuditLog, AuditRecord, CHECKPOINT_FILE, PublicKey, Timestamp, sha256_hex};

fn run(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade")).arg("--home").arg(home).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A home whose audit log holds `n` records, written as the server writes them.
fn home_with_records(n: usize) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let log = AuditLog::open(home.join("audit"), AuditConfig::default()).unwrap();
        for i in 0..n {
            let mut record = AuditRecord::request();
            record.request_id = Some(format!("req-{i}"));
            record.status = Some(200);
            record.completed = Some(Timestamp::from_unix_millis(1_795_687_200_000 + i as i64));
            log.append(record).await.unwrap();
        }
        log.close().await.unwrap();
    });
    (tmp, home)
}

fn segment(home: &Path) -> PathBuf {
    home.join("audit").join("segment-00000000000000000000.jsonl")
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

/// Re-chains the segment from `from` on, with `edit` applied to that record's line, using
/// only the published algorithm (no key): what someone with write access to the log
/// directory can do. `genesis` replaces record 0's link when `from` is 0.
fn rechain(home: &Path, from: usize, genesis: Option<&str>, edit: impl Fn(String) -> String) {
    let path = segment(home);
    let mut prev: Option<String> = genesis.map(str::to_owned);
    let mut out = String::new();
    for (seq, line) in fs::read_to_string(&path).unwrap().lines().enumerate() {
        let line = line.to_owned();
        let (body, hash) = line.split_at(line.len() - ",\"hash\":\"\"}".len() - 64);
        let hash = &hash[",\"hash\":\"".len()..hash.len() - 2];
        if seq < from {
            prev = Some(hash.to_owned());
            out.push_str(&line);
            out.push('\n');
            continue;
        }
        let mut body = if seq == from { edit(body.to_owned()) } else { body.to_owned() };
        let at = body.find("\"prev_hash\":\"").unwrap() + "\"prev_hash\":\"".len();
        let link = prev.clone().unwrap();
        body.replace_range(at..at + 64, &link);
        let mut hashed = unhex(&link);
        hashed.extend_from_slice(body.as_bytes());
        hashed.push(b'}');
        let new = sha256_hex(&hashed);
        out.push_str(&format!("{body},\"hash\":\"{new}\"}}\n"));
        prev = Some(new);
    }
    fs::write(&path, out).unwrap();
}

#[test]
fn finding_6_a_rechained_log_without_checkpoints_fails_verify_and_serve_refuses_it() {
    let (_tmp, home) = home_with_records(12);
    let verify = run(&home, &["audit", "verify"]);
    assert!(verify.status.success(), "{}{}", text(&verify.stdout), text(&verify.stderr));

    rechain(&home, 5, None, |line| line.replacen("\"status\":200", "\"status\":500", 1));
    fs::remove_file(home.join("audit").join(CHECKPOINT_FILE)).unwrap();

    let verify = run(&home, &["audit", "verify"]);
    assert_eq!(verify.status.code(), Some(65), "{}", text(&verify.stdout));
    let err = text(&verify.stderr);
    assert!(err.contains("the audit trail was modified") && err.contains("no genesis checkpoint"), "{err}");

    // The next start of the server does not sign the forged head: it refuses to start.
    let serve = run(&home, &["serve", "--listen", "127.0.0.1:0"]);
    assert!(!serve.status.success());
    let err = text(&serve.stderr);
    assert!(err.contains("cannot open the audit log") && err.contains("will not sign"), "{err}");
    assert!(err.contains("palisade audit verify") && err.contains("move the directory aside"), "{err}");
    assert!(!home.join("audit").join(CHECKPOINT_FILE).exists(), "nothing was signed");
}

#[test]
fn verify_names_the_key_it_used_and_takes_a_pinned_one() {
    let (_tmp, home) = home_with_records(3);
    let public_file = home.join("keys").join("audit-signing.pub");
    let key = PublicKey::from_file(&public_file).unwrap();
    assert!(!home.join("audit").join("replica-key.pub").exists(), "no key in the log directory");

    let out = run(&home, &["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("key: {} ({})", key.key_id(), public_file.display())));

    let pinned = run(&home, &["audit", "verify", "--public-key", &key.to_string()]);
    assert!(text(&pinned.stdout).contains(&format!("key: {} (pinned by the caller)", key.key_id())));
    let copy = home.join("pinned.pub");
    fs::copy(&public_file, &copy).unwrap();
    let from_file =
        run(&home, &["audit", "verify", "--public-key", copy.to_str().unwrap(), "--output", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&from_file.stdout).unwrap();
    assert_eq!((json["ok"].as_bool(), json["key_source"].as_str()), (Some(true), copy.to_str()));
    assert_eq!(json["window"]["records"], 1000);

    let wrong =
        run(&home, &["audit", "verify", "--public-key", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="]);
    assert_eq!(wrong.status.code(), Some(65));
    assert!(text(&wrong.stderr).contains("not the expected key"), "{}", text(&wrong.stderr));
    let garbage = run(&home, &["audit", "verify", "--public-key", "no-such-file"]);
    assert_eq!(garbage.status.code(), Some(64));
    assert!(
        text(&garbage.stderr).contains("neither a readable file nor a base64"),
        "{}",
        text(&garbage.stderr)
    );

    // Without the key directory, verify says where it looked and what to pass.
    fs::rename(home.join("keys"), home.join("keys.away")).unwrap();
    let missing = run(&home, &["audit", "verify"]);
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("--public-key"), "{}", text(&missing.stderr));
}

#[test]
fn a_legacy_log_is_readable_verify_names_it_and_serve_refuses_to_extend_it() {
    // A log as Palisade wrote it before genesis checkpoints: record 0 links to the
    // replica's genesis value (here with no checkpoints kept).
    let (_tmp, home) = home_with_records(4);
    let replica = {
        let first = fs::read_to_string(segment(&home)).unwrap();
        let record: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
        record["replica_id"].as_str().unwrap().to_owned()
    };
    let legacy_genesis = sha256_hex(format!("palisade.audit/v1 genesis\n{replica}").as_bytes());
    rechain(&home, 0, Some(&legacy_genesis), |line| line);
    fs::remove_file(home.join("audit").join(CHECKPOINT_FILE)).unwrap();
    fs::remove_dir_all(home.join("keys")).unwrap();

    let query = run(&home, &["audit", "query", "--output", "json"]);
    assert!(query.status.success());
    assert_eq!(text(&query.stdout).lines().count(), 4);
    let verify = run(&home, &["audit", "verify"]);
    assert_eq!(verify.status.code(), Some(65));
    let err = text(&verify.stderr);
    assert!(
        err.contains("the audit trail is a legacy log") && err.contains("move the directory aside"),
        "{err}"
    );

    let serve = run(&home, &["serve", "--listen", "127.0.0.1:0"]);
    assert!(!serve.status.success());
    let err = text(&serve.stderr);
    assert!(err.contains("written before genesis checkpoints") && err.contains(".legacy"), "{err}");
}

/// `palisade audit seal` seals rotated segments; `verify` and `query` read them as before; a
/// flipped byte in a sealed segment fails `verify` (exit 65) naming the sealed file and frame.
#[test]
fn audit_seal_then_verify_and_query_read_sealed_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let config =
            AuditConfig { segment_max_bytes: 8 * 1024, checkpoint_every: 10, ..AuditConfig::default() };
        let log = AuditLog::open(home.join("audit"), config).unwrap();
        for i in 0..100 {
            let mut record = AuditRecord::request();
            record.request_id = Some(format!("req-{i}"));
            record.status = Some(200);
            record.received = Some(Timestamp::from_unix_millis(1_795_687_200_000 + i as i64));
            log.append(record).await.unwrap();
        }
        log.close().await.unwrap();
    });
    let out = run(&home, &["audit", "seal", "--frame-records", "8"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    assert!(printed.contains("sealed segment-00000000000000000000.jsonl:"), "{printed}");
    assert!(printed.contains("B/record"), "{printed}");
    let again = run(&home, &["audit", "seal"]);
    assert!(text(&again.stdout).contains("nothing to seal"), "{}", text(&again.stdout));

    let out = run(&home, &["audit", "verify", "--output", "json"]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["records"], 100);
    assert!(report["sealed_segments"].as_u64().unwrap() >= 2, "{report}");

    let out = run(&home, &["audit", "query", "--request-id", "req-3", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 1, "{}", text(&out.stdout));

    let sealed = home.join("audit").join("segment-00000000000000000000.jsonl.zst");
    let mut bytes = fs::read(&sealed).unwrap();
    bytes[40] ^= 0x10;
    fs::write(&sealed, bytes).unwrap();
    let out = run(&home, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(65), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains("segment-00000000000000000000.jsonl.zst") && err.contains("frame 0"), "{err}");
}

/// `palisade audit seal` killed with SIGKILL at arbitrary moments: after every kill the trail
/// verifies with every record, and a later pass finishes the job.
#[test]
fn sigkill_during_sealing_never_loses_a_record() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let n = 6000;
    runtime.block_on(async {
        let config = AuditConfig {
            mode: palisade_audit::Mode::Relaxed,
            queue_capacity: 1 << 16,
            segment_max_bytes: 64 * 1024,
            ..AuditConfig::default()
        };
        let log = AuditLog::open(home.join("audit"), config).unwrap();
        for i in 0..n {
            let mut record = AuditRecord::request();
            record.request_id = Some(format!("req-{i}"));
            record.status = Some(200);
            record.request_sha256 = Some(sha256_hex(format!("{i}").as_bytes()));
            log.append(record).await.unwrap();
        }
        log.close().await.unwrap();
        assert_eq!(log.stats().records_written, n);
    });
    let dir = home.join("audit");
    let count = |suffix: &str| {
        fs::read_dir(&dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(suffix))
            .count()
    };
    let segments = count(".jsonl") - 1;
    assert!(segments >= 40, "{segments} segments");
    let mut killed_mid_way = 0;
    for delay_ms in [5u64, 15, 30, 45, 60, 90, 120] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
            .arg("--home")
            .arg(&home)
            .args(["audit", "seal", "--frame-records", "16"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let status = child.wait().unwrap();
        killed_mid_way += usize::from(!status.success());
        let out = run(&home, &["audit", "verify", "--output", "json"]);
        assert!(out.status.success(), "after a kill at {delay_ms} ms: {}", text(&out.stdout));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["records"], n, "after a kill at {delay_ms} ms");
    }
    assert!(killed_mid_way > 0, "no pass was killed before it finished: the test proves nothing");
    let out = run(&home, &["audit", "seal"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(count(".jsonl"), 2, "one active segment and checkpoints.jsonl stay plain");
    assert_eq!(count(".zst"), segments - 1);
    assert_eq!(count(".tmp"), 0);
    let out = run(&home, &["audit", "verify", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    let out = run(&home, &["audit", "query", "--output", "json"]);
    assert_eq!(text(&out.stdout).lines().count() as u64, n);
}
