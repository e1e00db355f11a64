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

/// A log directory inside a temporary Palisade home: the log is `HOME/audit`, so its
/// signing key goes to `HOME/keys/` (the default), never outside the test's directory.
pub struct LogDir {
    home: tempfile::TempDir,
    dir: PathBuf,
}

impl LogDir {
    /// The log directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The home that holds it.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The signing key's default location.
    pub fn key(&self) -> PathBuf {
        self.home.path().join(palisade_audit::KEYS_DIR).join(palisade_audit::SIGNING_KEY_FILE)
    }

    /// The public key's default location.
    pub fn public_key(&self) -> PathBuf {
        palisade_audit::public_key_path(&self.key())
    }
}

/// A fresh home with an (existing, empty) log directory in it.
pub fn log_dir() -> LogDir {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("audit");
    fs::create_dir(&dir).unwrap();
    LogDir { home, dir }
}

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
    rechain(dir, from_seq, None, edit);
}

/// [`rechain_from`], with the value record 0 links to when `from_seq` is 0.
pub fn rechain(dir: &Path, from_seq: u64, genesis: Option<String>, edit: impl Fn(&mut serde_json::Value)) {
    let mut prev: Option<String> = genesis;
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

/// `SHA-256("palisade.audit/v1 genesis\n" || replica_id)`, what record 0 of a log written
/// before genesis checkpoints links to.
pub fn legacy_genesis(replica_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"palisade.audit/v1 genesis\n");
    h.update(replica_id.as_bytes());
    hex::encode(h.finalize())
}

/// Turns a log into one as Palisade wrote it before genesis checkpoints (SCHEMA.md's `v1`
/// layout): record 0 links to the legacy genesis value, the key sits in the log directory
/// as `replica-key.pk8` / `replica-key.pub`, and `checkpoints.jsonl` holds `v1` lines (every
/// `every` records and at the end) signed with it. The home's `keys/` goes away.
pub fn make_legacy(log: &LogDir, every: u64) {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    let dir = log.path();
    let first: serde_json::Value = serde_json::from_str(&lines(&segments(dir)[0])[0]).unwrap();
    let replica = first["replica_id"].as_str().unwrap().to_owned();
    rechain(dir, 0, Some(legacy_genesis(&replica)), |_| {});

    let doc = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
    let public = pair.public_key().as_ref().to_vec();
    let public_b64 = palisade_audit::PublicKey::from_base64(&b64(&public)).unwrap();
    fs::write(dir.join(palisade_audit::LEGACY_PRIVATE_KEY_FILE), doc.as_ref()).unwrap();
    fs::write(dir.join(palisade_audit::LEGACY_PUBLIC_KEY_FILE), format!("{public_b64}\n")).unwrap();
    let key_id = public_b64.key_id();

    let mut checkpoints = Vec::new();
    let all: Vec<(String, serde_json::Value)> = segments(dir)
        .iter()
        .flat_map(|p| lines(p).into_iter().map(move |l| (name(p), serde_json::from_str(&l).unwrap())))
        .collect();
    for (i, (segment, record)) in all.iter().enumerate() {
        let seq = record["seq"].as_u64().unwrap();
        if (seq + 1) % every != 0 && i + 1 != all.len() {
            continue;
        }
        let body = format!(
            r#"{{"schema":"palisade.audit.checkpoint/v1","seq":{seq},"hash":"{}","segment":"{segment}","time":"2026-11-26T10:00:00.000Z","replica_id":"{replica}","key_id":"{key_id}""#,
            record["hash"].as_str().unwrap()
        );
        let mut message = b"palisade.audit/v1 checkpoint\n".to_vec();
        message.extend_from_slice(body.as_bytes());
        message.push(b'}');
        let signature = b64(pair.sign(&message).as_ref());
        checkpoints.push(format!(r#"{body},"signature":"{signature}"}}"#));
    }
    write_lines(&dir.join(palisade_audit::CHECKPOINT_FILE), &checkpoints);
    fs::remove_dir_all(log.home().join(palisade_audit::KEYS_DIR)).unwrap();
}

/// Standard base64 with padding.
pub fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char
            } else {
                '='
            });
        }
    }
    out
}

/// Copies the log and key directories of `from` into a new home: the files as they are at
/// this moment, which is what a process killed now leaves behind.
pub fn snapshot(from: &LogDir) -> LogDir {
    let copy = log_dir();
    let keys = copy.key().parent().unwrap().to_owned();
    fs::create_dir(&keys).unwrap();
    for (src, dst) in
        [(from.path().to_owned(), copy.path().to_owned()), (from.key().parent().unwrap().to_owned(), keys)]
    {
        for entry in fs::read_dir(&src).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name() != ".lock" {
                fs::copy(entry.path(), dst.join(entry.file_name())).unwrap();
            }
        }
    }
    copy
}

/// The segment file holding `seq`, and the record's 0-based line index in it.
pub fn locate(dir: &Path, seq: u64) -> (std::path::PathBuf, usize) {
    for path in segments(dir) {
        for (i, line) in lines(&path).iter().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if v["seq"].as_u64() == Some(seq) {
                return (path, i);
            }
        }
    }
    panic!("seq {seq} not found")
}
