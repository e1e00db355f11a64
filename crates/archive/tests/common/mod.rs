//! Helpers for the archive tests: a real S3-compatible server (moto in server mode) on
//! loopback, a forwarding proxy the tests can cut, and audit logs to archive.
#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use palisade_archive::{Archive, ArchiveTarget, Credentials};
use palisade_audit::{AuditConfig, AuditLog, AuditRecord, Timestamp};

pub use palisade_archive::testing::{Moto, create_bucket, free_port, moto};

/// A target on the server at `port`, with test credentials in a file.
pub fn target(port: u16, bucket: &str, prefix: &str, creds_dir: &Path) -> ArchiveTarget {
    let creds = creds_dir.join("s3-credentials");
    std::fs::write(&creds, "[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
        .unwrap();
    ArchiveTarget {
        bucket: bucket.into(),
        prefix: prefix.into(),
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: "us-east-1".into(),
        credentials: Credentials::File(creds),
        allow_http: true,
        request_timeout: Duration::from_secs(5),
    }
}

pub fn open(target: &ArchiveTarget) -> Archive {
    Archive::open(target).unwrap()
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A log directory inside a temporary home (its key goes to HOME/keys).
pub struct LogDir {
    pub home: tempfile::TempDir,
    pub dir: PathBuf,
}

pub fn log_dir() -> LogDir {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("audit");
    std::fs::create_dir(&dir).unwrap();
    LogDir { home, dir }
}

/// Segments of ~30 records, checkpoints every 10.
pub fn config(replica: &str) -> AuditConfig {
    AuditConfig {
        replica_id: replica.into(),
        segment_max_bytes: 16 * 1024,
        checkpoint_every: 10,
        ..AuditConfig::default()
    }
}

pub fn record(i: usize) -> AuditRecord {
    let mut r = AuditRecord::request();
    r.request_id = Some(format!("req-{i}"));
    r.received = Some(Timestamp::from_unix_millis(1_795_687_200_000 + i as i64 * 1000));
    r.completed = Some(Timestamp::from_unix_millis(1_795_687_200_000 + i as i64 * 1000 + 12));
    r.method = Some("POST".into());
    r.path = Some(format!("/v2/models/iris/infer?n={i}"));
    r.status = Some(200);
    r
}

/// Appends records `from..to` (opening and closing the log) and seals what rotated.
pub fn write_and_seal(dir: &Path, replica: &str, from: usize, to: usize) {
    runtime().block_on(async {
        let log = AuditLog::open(dir, config(replica)).unwrap();
        for i in from..to {
            log.append(record(i)).await.unwrap();
        }
        log.close().await.unwrap();
    });
    // An archiver's retention may hold the sealing lock for a moment: seal once it is free.
    let options = palisade_audit::SealOptions { frame_records: 16, ..Default::default() };
    while palisade_audit::seal_segments(dir, &options)
        .unwrap()
        .waiting
        .is_some_and(|why| why.contains("another sealing pass"))
    {
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn sealed(dir: &Path) -> Vec<String> {
    palisade_audit::list_segments(dir)
        .unwrap()
        .into_iter()
        .filter(|s| s.sealed)
        .map(|s| s.file_name)
        .collect()
}

/// A TCP forwarder on a fixed port in front of the S3 server, which a test can stop (the
/// port then refuses connections and open ones are cut) and start again on the same port.
pub struct Proxy {
    pub port: u16,
    upstream: u16,
    running: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        let mut proxy =
            Proxy { port: free_port(), upstream, running: Arc::new(AtomicBool::new(false)), thread: None };
        proxy.resume();
        proxy
    }

    pub fn resume(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        self.running.store(true, Ordering::SeqCst);
        let (running, upstream) = (self.running.clone(), self.upstream);
        self.thread = Some(std::thread::spawn(move || {
            let mut open: Vec<TcpStream> = Vec::new();
            while running.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                        open.push(client.try_clone().unwrap());
                        open.push(server.try_clone().unwrap());
                        pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                        pipe(server, client);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for s in open {
                let _ = s.shutdown(Shutdown::Both);
            }
        }));
    }

    pub fn stop(&mut self) {
        self.running.store(false, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
}
