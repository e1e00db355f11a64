//! `palisade serve --workload-identity`: the real binary serves its own workload certificate
//! from the built-in CA and renews it at half-life, checked with real TLS handshakes (rustls
//! and curl) against the running process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};

const SPIFFE_ID: &str = "spiffe://cluster.local/ns/palisade-system/sa/palisade";

fn palisade() -> Command {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
}

fn run(home: &Path, args: &[&str]) -> Output {
    palisade().arg("--home").arg(home).args(args).output().unwrap()
}

/// The running server; killed when the test ends, pass or fail.
struct Server {
    child: Child,
    port: u16,
    admin: String,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn admin_get(&self, path: &str) -> (u16, String) {
        let mut response = ureq::get(&format!("{}{path}", self.admin))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .unwrap();
        (response.status().as_u16(), response.body_mut().read_to_string().unwrap())
    }

    /// A metric's value on the admin port (0 when absent).
    fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.admin_get("/metrics");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (key, value) = l.rsplit_once(' ')?;
                (key == name).then(|| value.parse().unwrap())
            })
            .unwrap_or(0.0)
    }
}

/// Starts `palisade serve` with a workload identity and the admin port, logging to a file.
fn serve_workload(home: &Path, ttl: &str) -> Server {
    serve_with(home, &["--workload-cert-ttl", ttl])
}

/// Starts `palisade serve --workload-identity palisade-system/palisade` with `extra` flags.
fn serve_with(home: &Path, extra: &[&str]) -> Server {
    let log = home.with_extension("log");
    let mut child = palisade()
        .arg("--home")
        .arg(home)
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--workload-identity", "palisade-system/palisade"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut admin = None;
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(rest) = line.strip_prefix("palisade: admin listening on ") {
            admin = Some(rest.split_whitespace().next().unwrap().to_owned());
        }
        if let Some(rest) = line.strip_prefix("palisade: listening on https://") {
            let addr = rest.split_whitespace().next().unwrap();
            let port = addr.rsplit_once(':').unwrap().1.parse().unwrap();
            std::thread::spawn(move || for _ in lines {});
            return Server { child, port, admin: admin.expect("the admin address is printed first"), log };
        }
        seen.push(line);
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the server did not start: {seen:?}\n{}", std::fs::read_to_string(&log).unwrap_or_default());
}

/// A rustls client that trusts only the home's CA, speaks HTTP/1.1, and does a full
/// handshake every time (no resumption), so each connection shows the certificate served now.
fn client(home: &Path) -> Arc<rustls::ClientConfig> {
    let anchors = palisade_tls::TrustAnchors::from_pem_file(&home.join("ca/ca.pem")).unwrap();
    let mut config = (*palisade_tls::client_config(&anchors, None).unwrap()).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

fn connect(config: &Arc<rustls::ClientConfig>, port: u16) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let conn = ClientConnection::new(config.clone(), ServerName::try_from("localhost").unwrap())
        .map_err(std::io::Error::other)?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// One HTTP/1.1 request on a kept-alive connection: the status.
fn get(stream: &mut Tls, path: &str) -> std::io::Result<u16> {
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n")?;
    stream.flush()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok()).flatten()
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "body cut short"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap())
}

/// What a client saw of the server's leaf certificate.
#[derive(Debug, Clone, PartialEq)]
struct Leaf {
    serial: String,
    not_before: SystemTime,
    not_after: SystemTime,
    uris: Vec<String>,
    dns: Vec<String>,
}

fn leaf(stream: &Tls) -> Leaf {
    let der = stream.conn.peer_certificates().unwrap()[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let time = |t: x509_parser::time::ASN1Time| UNIX_EPOCH + Duration::from_secs(t.timestamp() as u64);
    let (mut uris, mut dns) = (Vec::new(), Vec::new());
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::URI(uri) => uris.push(uri.to_string()),
                x509_parser::extensions::GeneralName::DNSName(name) => dns.push(name.to_string()),
                _ => {}
            }
        }
    }
    Leaf {
        serial: cert.tbs_certificate.raw_serial_as_string(),
        not_before: time(cert.validity().not_before),
        not_after: time(cert.validity().not_after),
        uris,
        dns,
    }
}

fn init_ca(home: &Path) {
    let out = run(home, &["ca", "init", "--trust-domain", "cluster.local"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The acceptance test of the feature: a short-lived workload certificate is renewed at
/// half-life by the running binary; new handshakes see a new serial and a later notAfter with
/// the same SPIFFE id, while a connection opened before the renewal keeps working.
#[test]
fn serve_renews_its_workload_certificate_at_half_life_without_dropping_connections() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    init_ca(&home);
    let server = serve_workload(&home, "4s");
    let config = client(&home);

    let mut kept = connect(&config, server.port).unwrap();
    let first = leaf(&kept);
    assert_eq!(get(&mut kept, "/v2/health/live").unwrap(), 200);
    assert_eq!(first.uris, [SPIFFE_ID], "the SPIFFE id is the only URI SAN");
    assert!(first.dns.contains(&"localhost".to_owned()), "{:?}", first.dns);
    assert_eq!(first.not_after.duration_since(first.not_before).unwrap(), Duration::from_secs(4));
    let half_life = first.not_before + Duration::from_secs(2);

    // Reconnect until a new certificate is served.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (renewed, seen_at) = loop {
        let stream = connect(&config, server.port).unwrap();
        let now = SystemTime::now();
        let current = leaf(&stream);
        if current.serial != first.serial {
            break (current, now);
        }
        assert!(Instant::now() < deadline, "no renewal within 10 s; log:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(seen_at >= half_life, "renewed before half-life: seen {seen_at:?}, half-life {half_life:?}");
    assert!(
        seen_at < first.not_after,
        "renewed before expiry: seen {seen_at:?}, notAfter {:?}",
        first.not_after
    );
    assert!(renewed.not_after > first.not_after, "{renewed:?} vs {first:?}");
    assert_eq!(renewed.uris, [SPIFFE_ID]);
    assert_eq!(renewed.dns, first.dns);

    // The connection opened before the renewal still works, on its original certificate.
    assert_eq!(get(&mut kept, "/v2/health/live").unwrap(), 200, "the kept-alive connection survives");
    assert_eq!(leaf(&kept).serial, first.serial);

    // A real third-party client trusting only the CA accepts the renewed certificate for
    // localhost.
    let curl = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(home.join("ca/ca.pem"))
        .arg(format!("https://localhost:{}/v2/health/live", server.port))
        .output()
        .expect("curl is installed");
    assert!(curl.status.success(), "{}", String::from_utf8_lossy(&curl.stderr));

    // Metrics and readiness on the admin port.
    assert!(server.metric("palisade_workload_certificate_renewals_total") >= 1.0);
    assert_eq!(server.metric("palisade_workload_certificate_renewal_failures_total"), 0.0);
    let expiry = server.metric("palisade_tls_certificate_expiry_seconds");
    assert!((0.0..=4.0).contains(&expiry), "{expiry}");
    assert!(server.metric("palisade_tls_certificate_reloads_total") >= 1.0);
    assert_eq!(server.admin_get("/readyz").0, 200);

    // The renewal is logged with the new serial, and no key material is.
    let log = server.log();
    let line =
        log.lines().find(|l| l.contains("renewed the workload certificate") && l.contains(&renewed.serial));
    assert!(line.is_some(), "renewal of {} not logged:\n{log}", renewed.serial);
    assert!(!log.contains("PRIVATE KEY"), "{log}");
    let key = std::fs::read_to_string(home.join("tls/workload/palisade-system/palisade/key.pem")).unwrap();
    let key_body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    // The private scalar sits after the fixed PKCS#8 header.
    assert!(!log.contains(&key_body[40..80]), "key material in the log");
}

/// When renewal keeps failing the old certificate serves until it expires; then readiness
/// fails (naming the cause) while retries continue with backoff, and once the cause is gone
/// the server renews and becomes ready again by itself.
#[test]
fn a_failing_renewal_fails_readiness_at_expiry_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    init_ca(&home);
    let server = serve_workload(&home, "4s");
    // The key file becomes a directory: writing a renewed key (a rename over it) fails.
    let key = home.join("tls/workload/palisade-system/palisade/key.pem");
    std::fs::remove_file(&key).unwrap();
    std::fs::create_dir(&key).unwrap();
    std::fs::write(key.join("keep"), b"x").unwrap();
    let config = client(&home);
    let first = leaf(&connect(&config, server.port).unwrap());
    assert!(SystemTime::now() < first.not_before + Duration::from_secs(2), "sabotaged before half-life");

    let wait = |what: &str, mut done: Box<dyn FnMut() -> bool + '_>| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}; log:\n{}", server.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait(
        "a failed renewal",
        Box::new(|| server.metric("palisade_workload_certificate_renewal_failures_total") >= 1.0),
    );
    if SystemTime::now() + Duration::from_millis(500) < first.not_after {
        let current = leaf(&connect(&config, server.port).unwrap());
        assert_eq!(current.serial, first.serial, "the old certificate keeps serving while renewal fails");
        assert_eq!(server.admin_get("/readyz").0, 200, "ready until the certificate expires");
    }
    wait("readiness to fail", Box::new(|| server.admin_get("/readyz").0 == 503));
    let (_, reason) = server.admin_get("/readyz");
    assert!(reason.contains("expired") && reason.contains("renewal is failing"), "{reason}");
    assert!(reason.contains("key.pem"), "the cause is named: {reason}");
    assert!(server.metric("palisade_tls_certificate_expiry_seconds") <= 0.0);
    let log = server.log();
    assert!(log.contains("workload certificate renewal FAILED"), "{log}");

    std::fs::remove_dir_all(&key).unwrap();
    wait("readiness to come back", Box::new(|| server.admin_get("/readyz").0 == 200));
    let renewed = leaf(&connect(&config, server.port).unwrap());
    assert_ne!(renewed.serial, first.serial);
    assert!(renewed.not_after > SystemTime::now());
    assert_eq!(renewed.uris, [SPIFFE_ID]);
    assert!(server.metric("palisade_workload_certificate_renewals_total") >= 1.0);
    let failures = server.metric("palisade_workload_certificate_renewal_failures_total");
    // 4 s certificate: attempts at 2 s and 3 s, at expiry (4 s), then every 4 s, 8 s...:
    // a handful, not a busy loop.
    assert!((2.0..=6.0).contains(&failures), "{failures} failed attempts");
}

/// Flags are checked before anything is served, and errors name the flag and the fix.
#[test]
fn workload_identity_flags_are_validated() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let serve = |extra: &[&str]| {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        run(&home, &args)
    };
    let stderr = |out: &Output| String::from_utf8_lossy(&out.stderr).into_owned();

    let out = serve(&["--workload-identity", "palisade-system/palisade"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("--workload-identity needs the built-in CA"), "{}", stderr(&out));
    assert!(stderr(&out).contains("palisade ca init --home"), "{}", stderr(&out));

    init_ca(&home);
    for (args, expected) in [
        (vec!["--workload-identity", "palisade"], "expected NAMESPACE/SERVICE_ACCOUNT"),
        (vec!["--workload-identity", "Bad_NS/sa"], "invalid namespace"),
        (vec!["--workload-identity", "ns/sa", "--workload-cert-ttl", "soon"], "--workload-cert-ttl"),
        (vec!["--workload-identity", "ns/sa", "--workload-cert-ttl", "1s"], "too short"),
        (vec!["--workload-identity", "ns/sa", "--workload-cert-ttl", "100000h"], "outlive the issuing CA"),
        (vec!["--workload-identity", "ns/sa", "--tls"], "cannot be used with"),
        (vec!["--workload-cert-ttl", "4s"], "--workload-identity"),
    ] {
        let out = serve(&args);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(expected), "{args:?}: {}", stderr(&out));
    }
}

/// The CA rotation of docs/mtls.md, step by step, with curl as the caller: the new root is
/// added to the trust bundle (`--client-ca`) before the issuer is switched, so callers with
/// certificates from either CA keep working through the overlap; once the old root leaves
/// the bundle, only new certificates are accepted.
#[test]
fn ca_rotation_with_a_trust_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let next = tmp.path().join("next");
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    init_ca(&home);
    init_ca(&next);
    let foreign = tmp.path().join("foreign");
    init_ca(&foreign);
    let issue = |ca_home: &Path, out: &str| {
        let out_dir = tmp.path().join(out);
        let result = run(
            ca_home,
            &[
                "cert",
                "issue",
                "--namespace",
                "billing",
                "--service-account",
                "batch",
                "--out",
                &path(&out_dir),
            ],
        );
        assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
        out_dir
    };
    let (client_old, client_new, client_foreign) =
        (issue(&home, "client-old"), issue(&next, "client-new"), issue(&foreign, "client-foreign"));
    let old_root = std::fs::read_to_string(home.join("ca/ca.pem")).unwrap();
    let new_root = std::fs::read_to_string(next.join("ca/ca.pem")).unwrap();
    let bundle = tmp.path().join("trust-bundle.pem");
    std::fs::write(&bundle, format!("{old_root}{new_root}")).unwrap();
    let old_ca = tmp.path().join("old-ca.pem");
    std::fs::write(&old_ca, &old_root).unwrap();
    let new_ca = tmp.path().join("new-ca.pem");
    std::fs::write(&new_ca, &new_root).unwrap();

    // curl as a caller: trusting `cacert`, presenting `client`'s certificate.
    let call = |server: &Server, cacert: &Path, client: Option<&Path>| -> bool {
        let mut curl = Command::new("curl");
        curl.args(["-sS", "--max-time", "10", "--cacert", &path(cacert)]);
        if let Some(dir) = client {
            curl.args(["--cert", &path(&dir.join("cert.pem")), "--key", &path(&dir.join("key.pem"))]);
        }
        let out = curl.arg(format!("https://localhost:{}/v2/health/live", server.port)).output().unwrap();
        out.status.success()
    };

    // Step 2: the bundle is distributed; the old CA still issues.
    {
        let server = serve_with(&home, &["--client-ca", &path(&bundle)]);
        assert!(call(&server, &old_ca, Some(&client_old)));
        assert!(call(&server, &old_ca, Some(&client_new)), "the new CA's callers are trusted already");
        assert!(call(&server, &bundle, Some(&client_old)), "callers may trust the bundle");
        assert!(!call(&server, &old_ca, Some(&client_foreign)), "a CA outside the bundle is refused");
    }
    // Step 3: switch the issuer (the new CA directory moves into the home) and restart.
    std::fs::rename(home.join("ca"), tmp.path().join("retired-ca")).unwrap();
    std::fs::rename(next.join("ca"), home.join("ca")).unwrap();
    {
        let server = serve_with(&home, &["--client-ca", &path(&bundle)]);
        assert!(!call(&server, &old_ca, None), "the server's certificate now comes from the new CA");
        assert!(call(&server, &new_ca, None));
        assert!(call(&server, &bundle, Some(&client_old)), "old callers keep working during the overlap");
        assert!(call(&server, &bundle, Some(&client_new)));
    }
    // Step 4: after the overlap the old root leaves the bundle (here: the default, the CA's own).
    {
        let server = serve_with(&home, &[]);
        assert!(!call(&server, &new_ca, Some(&client_old)), "certificates of the retired CA are refused");
        assert!(call(&server, &new_ca, Some(&client_new)));
    }
}

/// mTLS STRICT through an inference graph, with curl as the caller over real handshakes: a
/// graph request comes on one connection, the caller's, and a STRICT component (or a STRICT
/// graph) refuses it when that connection presented no client certificate; a graph of
/// PERMISSIVE models serves it (docs/graphs.md, "Security, hop by hop").
#[test]
fn graphs_over_mtls_with_and_without_a_client_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    init_ca(&home);
    let onnx = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/iris_lr_nozipmap.onnx");
    let build = |name: &str, body: &str, model: bool| {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        if model {
            std::fs::copy(&onnx, dir.join("model.onnx")).unwrap();
        }
        let manifest = format!("name: {name}\nversion: \"1\"\nowners: [alice@example.com]\n{body}");
        std::fs::write(dir.join("palisade.yaml"), manifest).unwrap();
        let out = run(&home, &["build", &path(&dir)]);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let onnx_model = "model: {path: model.onnx, format: onnx}\n";
    build("iris-open", onnx_model, true);
    build("iris-strict", &format!("labels: {{tier: strict}}\n{onnx_model}"), true);
    build("open-graph", "traffic: [{model: iris-open, weight: 1}]\n", false);
    build("via-caller", "traffic: [{model: iris-strict, weight: 1}]\n", false);
    build("strict-graph", "labels: {tier: strict}\ntraffic: [{model: iris-open, weight: 1}]\n", false);
    let policies = tmp.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("strict.yaml"),
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: strict-tier, namespace: default}\nspec:\n  selector:\n    matchLabels: {tier: strict}\n  mtls: {mode: STRICT}\n",
    )
    .unwrap();
    let client = tmp.path().join("client");
    let out = run(
        &home,
        &["cert", "issue", "--namespace", "billing", "--service-account", "batch", "--out", &path(&client)],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&home, &["token", "issue", "--email", "alice@example.com"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let server = serve_with(&home, &["--policy-dir", &path(&policies)]);

    // curl trusting the built-in CA, with or without the client certificate: the status and
    // the body.
    let infer = |graph: &str, with_cert: bool| -> (String, String) {
        let body = tmp.path().join(format!("{graph}-{with_cert}.json"));
        let mut curl = Command::new("curl");
        curl.args(["-sS", "--max-time", "20", "-o", &path(&body), "-w", "%{http_code}"]);
        curl.args(["--cacert", &path(&home.join("ca/ca.pem"))]);
        if with_cert {
            curl.args(["--cert", &path(&client.join("cert.pem")), "--key", &path(&client.join("key.pem"))]);
        }
        curl.args(["-H", &format!("Authorization: Bearer {token}"), "-H", "Content-Type: application/json"]);
        curl.args([
            "-d",
            r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#,
        ]);
        let out =
            curl.arg(format!("https://localhost:{}/v2/models/{graph}/infer", server.port)).output().unwrap();
        assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
        (String::from_utf8(out.stdout).unwrap(), std::fs::read_to_string(&body).unwrap_or_default())
    };
    for graph in ["open-graph", "via-caller", "strict-graph"] {
        let (status, body) = infer(graph, true);
        assert_eq!(status, "200", "{graph} with a client certificate: {body}\n{}", server.log());
        assert!(body.contains(r#""routing":{"traffic":"#), "{graph}: {body}");
        let (status, body) = infer(graph, false);
        if graph == "open-graph" {
            assert_eq!(status, "200", "PERMISSIVE models serve TLS without a client certificate: {body}");
        } else {
            assert_eq!(status, "403", "{graph} without a client certificate: {body}");
            assert!(body.contains("mutual TLS is required"), "{graph}: {body}");
        }
    }
}
