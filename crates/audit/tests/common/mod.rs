//! Helpers shared by the integration tests.
#![allow(dead_code, missing_docs)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use palisade_audit::{
    Appended, AuditConfig, AuditLog, AuditRecord, Authn, AuthnOutcome, Authz, Decision, Level, ModelInfo,
    Protocol, Timestamp, sha256_hex,
};
use sha2::{Digest, Sha256};

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap()
}

/// A configuration with small segments and frequent checkpoints, so tests see several.
pub fn small(replica: &str) -> AuditConfig {
    AuditConfig {
        replica_id: replica.to_owned(),
        segment_max_bytes: 4 * 1024,
        checkpoint_every: 10,
        ..AuditConfig::default()
    }
}

/// A realistic data-plane record; `i` varies the who, what and outcome.
pub fn request(i: usize) -> AuditRecord {
    let mut r = AuditRecord::request();
    r.request_id = Some(format!("req-{i}"));
    r.trace_id = Some(format!("{i:032x}"));
    r.received = Some(Timestamp::from_unix_millis(1_795_687_200_000 + i as i64 * 1000));
    r.completed = Some(Timestamp::from_unix_millis(1_795_687_200_000 + i as i64 * 1000 + 12));
    r.source_ip = Some("10.0.0.7".parse().unwrap());
    r.request_principal = Some(format!("https://idp.example/user{}", i % 3));
    r.email = Some(format!("user{}@example.com", i % 3));
    r.groups = vec!["data-science".into()];
    r.model = Some(ModelInfo {
        namespace: "fraud".into(),
        name: if i.is_multiple_of(2) { "iris" } else { "scorer" }.into(),
        version: Some("v1".into()),
        digest: Some(format!("sha256:{}", "ab".repeat(32))),
    });
    r.protocol = Some(Protocol::V2Rest);
    r.method = Some("POST".into());
    r.path = Some("/v2/models/iris/infer".into());
    let denied = i % 5 == 4;
    r.authn = Some(Authn { outcome: AuthnOutcome::Authenticated, reason: None });
    r.authz = Some(Authz {
        decision: if denied { Decision::Deny } else { Decision::Allow },
        policy: Some("fraud/allow-ds".into()),
        rule: Some("0".into()),
        audit_marks: vec![],
        dry_run: vec![],
    });
    r.status = Some(if denied { 403 } else { 200 });
    r.latency_ms = Some(12.5 + i as f64 / 7.0);
    r.request_bytes = Some(120);
    r.response_bytes = Some(64);
    r.request_sha256 = Some(sha256_hex(format!("in-{i}").as_bytes()));
    r.response_sha256 = Some(sha256_hex(format!("out-{i}").as_bytes()));
    r.level = Level::Metadata;
    r
}

/// Writes `n` records (sequentially) and closes the log; returns the acknowledgements.
pub fn write_log(dir: &Path, config: AuditConfig, n: usize) -> Vec<(u64, String)> {
    runtime().block_on(async {
        let log = AuditLog::open(dir, config).unwrap();
        let mut acks = Vec::new();
        for i in 0..n {
            match log.append(request(i)).await.unwrap() {
                Appended::Durable { seq, hash } => acks.push((seq, hash)),
                other => panic!("strict append returned {other:?}"),
            }
        }
        log.close().await.unwrap();
        acks
    })
}

pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("segment-"))
        .collect();
    out.sort();
    out
}

pub fn name(path: &Path) -> String {
    path.file_name().unwrap().to_str().unwrap().to_owned()
}

pub fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect()
}

pub fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    if !lines.is_empty() {
        text.push('\n');
    }
    fs::write(path, text).unwrap();
}

/// Re-seals a record as an attacker without the key would: sets seq and prev_hash and
/// recomputes the hash with the documented algorithm. Returns the line and its hash.
pub fn reseal(mut record: serde_json::Value, seq: u64, prev_hex: &str) -> (String, String) {
    let obj = record.as_object_mut().unwrap();
    obj.insert("seq".into(), seq.into());
    obj.insert("prev_hash".into(), prev_hex.into());
    obj.insert("hash".into(), "".into());
    let parsed: AuditRecord = serde_json::from_value(record).unwrap();
    let mut body = serde_json::to_vec(&AuditRecord { hash: String::new(), ..parsed }).unwrap();
    let mut h = Sha256::new();
    h.update(hex::decode(prev_hex).unwrap());
    h.update(&body);
    let hash = hex::encode(h.finalize());
    body.pop();
    let line = format!("{},\"hash\":\"{hash}\"}}", String::from_utf8(body).unwrap());
    (line, hash)
}

pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    done()
}

/// Re-chains the log from `from_seq` on, after applying `edit` to that record, as a forger
/// without the key would. Segment files keep their names and record counts.
pub fn rechain_from(dir: &Path, from_seq: u64, edit: impl Fn(&mut serde_json::Value)) {
    let mut prev: Option<String> = None;
    for path in segments(dir) {
        let mut out = Vec::new();
        for line in lines(&path) {
            let mut record: serde_json::Value = serde_json::from_str(&line).unwrap();
            let seq = record["seq"].as_u64().unwrap();
            if seq < from_seq {
                prev = Some(record["hash"].as_str().unwrap().to_owned());
                out.push(line);
                continue;
            }
            if seq == from_seq {
                edit(&mut record);
            }
            let (resealed, hash) = reseal(record, seq, prev.as_deref().unwrap());
            out.push(resealed);
            prev = Some(hash);
        }
        write_lines(&path, &out);
    }
}
