//! The front door under a hostile client, against the real binary: connections that hold
//! the server without using it are closed in time, one address cannot take the server
//! offline, request bodies in flight have a memory budget, and a hung identity provider
//! holds no request. All traffic is on loopback (127.0.0.1, and 127.0.0.2 as a second
//! client address), bounded in count and time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

mod common;
use common::*;

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's peak resident memory so far (`VmHWM`), in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

/// A home with the iris logistic regression (cheap to run, so tests measure the front
/// door), and a token for its owner.
fn home_with_iris(tmp: &Path) -> (PathBuf, String) {
    let src = tmp.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::copy(repo().join("fixtures/models/iris_lr_nozipmap.onnx"), src.join("model.onnx")).unwrap();
    std::fs::write(
        src.join("palisade.yaml"),
        "name: iris\nversion: \"1.0.0\"\nowners: [alice@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\n",
    )
    .unwrap();
    let home = tmp.join("home");
    let built = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .arg("--home")
        .arg(&home)
        .arg("build")
        .arg(&src)
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let token = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .arg("--home")
        .arg(&home)
        .args(["token", "issue", "--email", "alice@example.com", "--ttl", "1h"])
        .output()
        .unwrap();
    (home, String::from_utf8(token.stdout).unwrap().trim().to_owned())
}

/// Starts `palisade serve` (under `prlimit` when `nofile` is given) and waits for its address.
fn serve(home: &Path, extra: &[&str], nofile: Option<u64>) -> Server {
    let mut command = match nofile {
        Some(n) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--nofile={n}:{n}")).arg("--").arg(env!("CARGO_BIN_EXE_palisade"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_palisade")),
    };
    let mut child = command
        .arg("--home")
        .arg(home)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(rest) = line.strip_prefix("palisade: listening on ") {
            let url = rest.split_whitespace().next().unwrap();
            let addr = url.split("://").nth(1).unwrap().parse().unwrap();
            std::thread::spawn(move || for _ in lines {});
            return Server { child, addr };
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the server did not print its address");
}

/// How long until the server closes a connection we keep reading from (EOF or reset), at
/// most `limit`. While waiting, `trickle` bytes are written every 300 ms, if any.
async fn closed_within(mut stream: TcpStream, trickle: Option<&[u8]>, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    while started.elapsed() < limit {
        if let Some(bytes) = trickle
            && stream.write_all(bytes).await.is_err()
        {
            return Some(started.elapsed());
        }
        match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    None
}

/// A connection from a given local address (127.0.0.2 is a second client on loopback).
async fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{from}:0").parse().unwrap())?;
    socket.connect(to).await
}

/// One HTTP/1.1 request on a fresh connection; the status, or `None`.
async fn request(addr: SocketAddr, from: &str, head: &str, body: &[u8]) -> Option<u16> {
    let mut stream = connect_from(from, addr).await.ok()?;
    stream.write_all(head.as_bytes()).await.ok()?;
    stream.write_all(body).await.ok()?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        if reply.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&reply);
    text.split_whitespace().nth(1)?.parse().ok()
}

const ROW: &str = r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#;

fn infer_head(token: &str, len: usize) -> String {
    format!(
        "POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    )
}

/// Silent, slowloris and silent-TLS connections are closed by the header-read timeout
/// (default 10 s: closed within 15 s), and an idle keep-alive connection by the idle
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_that_hold_the_server_without_using_it_are_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, token) = home_with_iris(tmp.path());
    let plain = serve(&home, &["--idle-timeout", "3"], None);
    // A second server needs its own home (the audit log has one writer).
    let tls_dir = tmp.path().join("tls");
    let (tls_home, _) = home_with_iris(&tls_dir);
    let tls = serve(&tls_home, &["--tls"], None);
    let limit = Duration::from_secs(15);

    let silent = closed_within(TcpStream::connect(plain.addr).await.unwrap(), None, limit);
    let mut slow = TcpStream::connect(plain.addr).await.unwrap();
    slow.write_all(b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let slowloris = closed_within(slow, Some(b"X-Trickle: a\r\n"), limit);
    let mut h2 = TcpStream::connect(plain.addr).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    let preface_only = closed_within(h2, None, limit);
    let silent_tls = closed_within(TcpStream::connect(tls.addr).await.unwrap(), None, limit);
    let (silent, slowloris, preface_only, silent_tls) =
        tokio::join!(silent, slowloris, preface_only, silent_tls);
    for (what, closed) in [
        ("silent", silent),
        ("slowloris", slowloris),
        ("HTTP/2 preface only", preface_only),
        ("silent TLS", silent_tls),
    ] {
        let after = closed.unwrap_or_else(|| panic!("{what}: still open after {limit:?}"));
        // Closed by a timer (the header-read timeout, or for a trickling HTTP/1 head the
        // idle timeout of 3 s here, whichever comes first), not refused at once.
        assert!(after >= Duration::from_secs(2), "{what}: closed after {after:?}, before any timeout");
    }

    // Idle after a complete request: closed after the idle timeout (3 s here), not before.
    let mut idle = TcpStream::connect(plain.addr).await.unwrap();
    idle.write_all(
        format!("{}{ROW}", infer_head(&token, ROW.len()).replace("Connection: close\r\n", "")).as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = [0u8; 4096];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let after =
        closed_within(idle, None, Duration::from_secs(10)).await.expect("the idle connection is closed");
    assert!(after >= Duration::from_secs(2) && after < Duration::from_secs(6), "idle closed after {after:?}");
}

/// With a descriptor limit of 4,096, one address holding 6,000 connections (silent,
/// trickling, and idle after a 401) leaves another address served: at least 39 of 40
/// fresh requests within 3 s each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_address_cannot_take_the_server_offline() {
    // The attacker's own sockets need descriptors too.
    let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
    assert!(hard >= 7000, "this test needs a hard descriptor limit of at least 7,000 (have {hard})");
    rlimit::Resource::NOFILE.set(hard, hard).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let (home, token) = home_with_iris(tmp.path());
    let server = serve(&home, &[], Some(4096));
    let mut held = Vec::new();
    for i in 0..6000 {
        let Ok(mut stream) = connect_from("127.0.0.2", server.addr).await else { continue };
        match i % 3 {
            0 => {}
            1 => {
                let _ = stream.write_all(b"GET /v2/models/iris HTTP/1.1\r\nHost: x\r\n").await;
            }
            _ => {
                let _ = stream.write_all(b"GET /v2/models/iris HTTP/1.1\r\nHost: x\r\n\r\n").await;
            }
        }
        held.push(stream);
    }
    let mut served = 0;
    for _ in 0..40 {
        let head = infer_head(&token, ROW.len());
        let started = Instant::now();
        let status = tokio::time::timeout(
            Duration::from_secs(3),
            request(server.addr, "127.0.0.1", &head, ROW.as_bytes()),
        )
        .await
        .ok()
        .flatten();
        if status == Some(200) && started.elapsed() < Duration::from_secs(3) {
            served += 1;
        }
    }
    assert!(served >= 39, "only {served} of 40 requests from another address were served");
    drop(held);
}

/// Request bodies in flight have a budget: many large valid requests at once are served or
/// refused with 503 (never another failure), and the server's peak memory grows by a
/// bounded multiple of the budget. (The review's figures, 48 bodies of 15 MiB under a
/// 256 MiB budget, scaled down 8 times for a debug build.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bodies_in_flight_stay_within_the_memory_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, token) = home_with_iris(tmp.path());
    let budget_mib = 32;
    let server = serve(
        &home,
        &[
            "--max-body-bytes",
            &(4 << 20).to_string(),
            "--max-inflight-bytes",
            &(budget_mib << 20).to_string(),
        ],
        None,
    );
    assert_eq!(
        request(server.addr, "127.0.0.1", &infer_head(&token, ROW.len()), ROW.as_bytes()).await,
        Some(200)
    );
    let before = server.peak_rss_kib();

    let rows = (15 << 20) / 8 / 16;
    let data = "5.1,3.5,1.4,0.2,".repeat(rows);
    let body = format!(
        r#"{{"inputs":[{{"name":"X","shape":[{rows},4],"datatype":"FP32","data":[{}]}}],"outputs":[{{"name":"label"}}]}}"#,
        data.trim_end_matches(',')
    );
    let body = std::sync::Arc::new(body);
    let tasks: Vec<_> = (0..48)
        .map(|_| {
            let (body, head) = (body.clone(), infer_head(&token, body.len()));
            let addr = server.addr;
            tokio::spawn(async move { request(addr, "127.0.0.1", &head, body.as_bytes()).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let served = statuses.iter().filter(|s| **s == Some(200)).count();
    assert!(served >= 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| matches!(s, Some(200 | 429 | 503))), "{statuses:?}");
    let grown_mib = (server.peak_rss_kib().saturating_sub(before)) / 1024;
    assert!(
        grown_mib <= 3 * budget_mib,
        "peak memory grew by {grown_mib} MiB under a {budget_mib} MiB budget"
    );
}

/// A token whose issuer's key server hangs gets 401 within 2 s, with a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_identity_provider_holds_no_request() {
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks = format!("http://{}/jwks", hang.local_addr().unwrap());
    let hanging = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = hang.accept().await {
            open.push(stream);
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let (home, _) = home_with_iris(tmp.path());
    let config = tmp.path().join("platform.yaml");
    std::fs::write(
        &config,
        format!("authentication:\n  jwtRules:\n    - issuer: https://idp.hung.example\n      jwksUri: {jwks}\n      timeout: 5s\n"),
    )
    .unwrap();
    let server = serve(&home, &["--config", config.to_str().unwrap()], None);
    let key = palisade_identity::SigningKey::generate(palisade_identity::Algorithm::ES256).unwrap();
    let now = palisade_identity::authn::unix_now() as u64;
    let claims =
        serde_json::json!({"iss": "https://idp.hung.example", "sub": "s", "iat": now, "exp": now + 300});
    let token = key.sign(claims.as_object().unwrap(), "JWT").unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        let status = request(server.addr, "127.0.0.1", &infer_head(&token, ROW.len()), ROW.as_bytes()).await;
        assert_eq!(status, Some(401));
        assert!(started.elapsed() < Duration::from_secs(2), "waited {:?}", started.elapsed());
    }
    hanging.abort();
}
