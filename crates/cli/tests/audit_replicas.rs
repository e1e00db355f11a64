//! `palisade audit verify|query|tail DIR` over a directory of replicas' trails, laid out as
//! copies of the replicas' volumes (`DIR/<pod>/trail`, `DIR/<pod>/keys`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use palisade_audit::{AuditConfig, AuditLog, AuditRecord, PublicKey, Timestamp};

const BASE: i64 = 1_795_687_200_000;

fn run(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_palisade")).arg("--home").arg(home.path()).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A replica's trail as its volume holds it: `ROOT/POD/trail` and `ROOT/POD/keys`, with
/// records received at BASE + `times` milliseconds.
fn replica(root: &Path, pod: &str, replica_id: &str, times: &[i64]) -> PathBuf {
    let trail = root.join(pod).join("trail");
    let config = AuditConfig {
        replica_id: replica_id.to_owned(),
        signing_key: Some(root.join(pod).join("keys").join("audit-signing.pk8")),
        ..AuditConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let log = AuditLog::open(&trail, config).unwrap();
        for (i, t) in times.iter().enumerate() {
            let mut record = AuditRecord::request();
            record.request_id = Some(format!("{replica_id}-{i}"));
            record.status = Some(200);
            record.received = Some(Timestamp::from_unix_millis(BASE + t));
            log.append(record).await.unwrap();
        }
        log.close().await.unwrap();
    });
    trail
}

fn two_replicas() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    replica(root.path(), "iris-1", "palisade-iris-1", &[10, 30, 50]);
    replica(root.path(), "iris-0", "palisade-iris-0", &[20, 30, 40]);
    root
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn verify_checks_every_replica_and_reports_each() {
    let root = two_replicas();
    let out = run(&["audit", "verify", path(root.path())]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("replica palisade-iris-0 (iris-0/trail): OK"), "{stdout}");
    assert!(stdout.contains("replica palisade-iris-1 (iris-1/trail): OK"), "{stdout}");
    assert!(stdout.contains("OK: 2 replicas, 6 records, every chain intact"), "{stdout}");

    // --dir is the same as the positional directory; JSON has one report per replica.
    let out = run(&["audit", "verify", "--dir", path(root.path()), "--output", "json"]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["ok"], true);
    let replicas = json["replicas"].as_array().unwrap();
    let ids: Vec<&str> = replicas.iter().map(|r| r["replica_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["palisade-iris-0", "palisade-iris-1"]);
    assert!(replicas.iter().all(|r| r["ok"] == true && r["records"] == 3));
    assert_ne!(replicas[0]["key_id"], replicas[1]["key_id"], "each replica has its own key");
}

#[test]
fn a_tampered_replica_fails_the_whole_verification_and_is_named() {
    let root = two_replicas();
    let segment = root.path().join("iris-1/trail/segment-00000000000000000000.jsonl");
    let original = fs::read_to_string(&segment).unwrap();
    fs::write(&segment, original.replacen("\"status\":200", "\"status\":201", 1)).unwrap();
    let out = run(&["audit", "verify", path(root.path())]);
    assert_eq!(out.status.code(), Some(65));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(stdout.contains("replica palisade-iris-0 (iris-0/trail): OK"), "{stdout}");
    assert!(stdout.contains("replica palisade-iris-1 (iris-1/trail): FAILED: segment-00000000000000000000.jsonl:1: seq 0: hash mismatch"), "{stdout}");
    assert!(stdout.contains("FAILED: 1 of 2 replicas (palisade-iris-1)"), "{stdout}");
    assert!(
        stderr.contains("the audit trail of replica palisade-iris-1")
            && stderr.contains("was modified")
            && stderr.contains("hash mismatch"),
        "{stderr}"
    );

    // A truncated replica (its last record cut off, after a checkpoint covered it) fails too.
    fs::write(&segment, &original).unwrap();
    let kept: Vec<&str> = original.lines().take(2).collect();
    fs::write(&segment, format!("{}\n", kept.join("\n"))).unwrap();
    let out = run(&["audit", "verify", path(root.path()), "--output", "json"]);
    assert_eq!(out.status.code(), Some(65));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["ok"], false);
    assert_eq!(json["replicas"][0]["ok"], true);
    assert_eq!(json["replicas"][1]["ok"], false);
    let what = json["replicas"][1]["first_problem"]["what"].as_str().unwrap();
    assert!(what.contains("records were removed from the end"), "{what}");
}

#[test]
fn keys_are_pinned_per_replica() {
    let root = two_replicas();
    let key =
        |pod: &str| PublicKey::from_file(&root.path().join(pod).join("keys/audit-signing.pub")).unwrap();
    let (k0, k1) = (key("iris-0"), key("iris-1"));
    let pinned = run(&[
        "audit",
        "verify",
        path(root.path()),
        "--public-key",
        &format!("palisade-iris-0={k0}"),
        "--public-key",
        &format!("iris-1={k1}"),
    ]);
    assert!(pinned.status.success(), "{}", text(&pinned.stderr));
    assert_eq!(text(&pinned.stdout).matches("(pinned by the caller)").count(), 2);

    // A directory of pinned keys named after the replicas.
    let inventory = tempfile::tempdir().unwrap();
    fs::write(inventory.path().join("palisade-iris-0.pub"), format!("{k0}\n")).unwrap();
    fs::write(inventory.path().join("palisade-iris-1.pub"), format!("{k0}\n")).unwrap();
    let out = run(&["audit", "verify", path(root.path()), "--public-key", path(inventory.path())]);
    assert_eq!(out.status.code(), Some(65), "replica 1 checked with replica 0's key");
    assert!(
        text(&out.stderr).contains("replica palisade-iris-1")
            && text(&out.stderr).contains("not the expected key")
    );

    // One unqualified key for several replicas is ambiguous; an unknown replica is a typo.
    let out = run(&["audit", "verify", path(root.path()), "--public-key", &k0.to_string()]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("REPLICA=FILE|BASE64"), "{}", text(&out.stderr));
    let out = run(&["audit", "verify", path(root.path()), "--public-key", &format!("iris-9={k0}")]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("no replica iris-9 here"), "{}", text(&out.stderr));

    // A replica without keys beside its trail cannot be verified by default, and is named.
    fs::remove_dir_all(root.path().join("iris-0/keys")).unwrap();
    let out = run(&["audit", "verify", path(root.path())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot verify the audit trail of replica palisade-iris-0"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn query_merges_replicas_by_time_with_the_replica_visible() {
    let root = two_replicas();
    let out = run(&["audit", "query", path(root.path()), "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let records: Vec<serde_json::Value> =
        text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let order: Vec<(String, u64)> = records
        .iter()
        .map(|r| (r["replica_id"].as_str().unwrap().to_owned(), r["seq"].as_u64().unwrap()))
        .collect();
    let expected: Vec<(String, u64)> = [
        ("palisade-iris-1", 0),
        ("palisade-iris-0", 0),
        ("palisade-iris-0", 1),
        ("palisade-iris-1", 1),
        ("palisade-iris-0", 2),
        ("palisade-iris-1", 2),
    ]
    .into_iter()
    .map(|(r, s)| (r.to_owned(), s))
    .collect();
    assert_eq!(order, expected);

    let out = run(&["audit", "query", path(root.path()), "--limit", "2"]);
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].contains(" palisade-iris-1 #0 200 ") && lines[1].contains(" palisade-iris-0 #0 200 "),
        "{lines:?}"
    );

    // One replica's trail reads as before: chain order, no replica column.
    let one = run(&["audit", "query", path(&root.path().join("iris-0/trail"))]);
    assert!(text(&one.stdout).lines().all(|l| !l.contains("palisade-iris-0 #")), "{}", text(&one.stdout));
}

#[test]
fn the_same_trail_twice_is_refused_naming_both_paths() {
    let root = two_replicas();
    let copy = root.path().join("iris-0-again/trail");
    fs::create_dir_all(&copy).unwrap();
    for entry in fs::read_dir(root.path().join("iris-0/trail")).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    for command in ["verify", "query"] {
        let out = run(&["audit", command, path(root.path())]);
        assert_eq!(out.status.code(), Some(64), "{command}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("ambiguous audit trails") && stderr.contains("iris-0-again/trail"),
            "{stderr}"
        );
        assert!(stderr.contains("hint: remove one of the two copies"), "{stderr}");
    }
}

#[test]
fn tail_and_from_name_the_replica_to_pick() {
    let root = two_replicas();
    let out = run(&["audit", "tail", path(root.path())]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("tail follows one trail"), "{}", text(&out.stderr));
    let out = run(&["audit", "tail", path(&root.path().join("iris-0/trail"))]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).lines().count(), 3);
    let out = run(&["audit", "verify", path(root.path()), "--from", "1"]);
    assert_eq!(out.status.code(), Some(64));
}
