//! Test support (feature `testing`, for this workspace's tests only): moto's S3 server in
//! server mode on a free loopback port, the real S3-compatible store the archive tests
//! run against.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `moto_server`: `PALISADE_MOTO_SERVER`, else the project's `.venv/s3` (installed by
/// scripts/install-test-deps.sh).
fn moto_binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("PALISADE_MOTO_SERVER") {
        return Some(PathBuf::from(path));
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/s3/bin/moto_server");
    path.exists().then_some(path)
}

/// A moto S3 server on 127.0.0.1 and a free port, killed when dropped.
pub struct Moto {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free on 127.0.0.1 when asked.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts moto, or `None` when it is not installed and `PALISADE_REQUIRE_S3` is not set
/// (CI sets it: there, a missing server fails the test instead of skipping it).
pub fn moto() -> Option<Moto> {
    let Some(binary) = moto_binary() else {
        assert!(
            std::env::var_os("PALISADE_REQUIRE_S3").is_none(),
            "moto_server is not installed (.venv/s3, see scripts/install-test-deps.sh) and PALISADE_REQUIRE_S3 is set"
        );
        eprintln!("SKIPPED: moto_server not installed (run scripts/install-test-deps.sh)");
        return None;
    };
    let port = free_port();
    let child = Command::new(&binary)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    let moto = Moto { child, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not listen on port {port} within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(moto)
}

/// Creates a bucket with a plain `PUT /bucket` (moto does not check signatures).
pub fn create_bucket(port: u16, bucket: &str) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "creating bucket {bucket}: {answer}");
}

/// [`moto`] with a bucket `bucket` created.
pub fn moto_with_bucket(bucket: &str) -> Option<Moto> {
    let moto = moto()?;
    create_bucket(moto.port, bucket);
    Some(moto)
}
