//! The `palisade` binary as users run it: exit codes, messages, and a real server on an
//! ephemeral port.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::*;

fn palisade() -> Command {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
}

fn run(home: &Path, args: &[&str]) -> Output {
    palisade().arg("--home").arg(home).args(args).output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Copies the shipped example into a scratch directory so tests can change it.
fn example_copy(tmp: &Path) -> PathBuf {
    let dir = tmp.join("iris");
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["palisade.yaml", "model.onnx"] {
        std::fs::copy(repo().join("examples/iris").join(file), dir.join(file)).unwrap();
    }
    dir
}

#[test]
fn help_everywhere() {
    for args in [
        vec!["--help"],
        vec!["build", "--help"],
        vec!["serve", "--help"],
        vec!["models", "--help"],
        vec!["models", "list", "--help"],
        vec!["models", "show", "--help"],
        vec!["models", "delete", "--help"],
    ] {
        let out = palisade().args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(stdout(&out).contains("Usage:"), "{args:?}");
    }
}

#[test]
fn usage_errors_exit_64() {
    let tmp = tempfile::tempdir().unwrap();
    let out = palisade().arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let out = run(tmp.path(), &["build", "/does/not/exist"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("hint:"), "{}", stderr(&out));
    let out = run(tmp.path(), &["models", "delete", "iris"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("iris:VERSION"), "{}", stderr(&out));
}

#[test]
fn bad_manifest_names_file_line_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = example_copy(tmp.path());
    let manifest = std::fs::read_to_string(dir.join("palisade.yaml")).unwrap();
    std::fs::write(dir.join("palisade.yaml"), manifest.replace("format: onnx", "format: pickle")).unwrap();
    let out = run(&tmp.path().join("home"), &["build", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    let err = stderr(&out);
    assert!(err.contains("palisade.yaml:12:11: field `model.format`: unknown variant `pickle`"), "{err}");
    assert!(err.contains("field `model.format`"), "{err}");
    assert!(err.contains("unknown variant `pickle`"), "{err}");
}

/// `palisade build` of graph bundles: the models named must be built, the tensors must fit,
/// and cycles are refused, each error naming the file and the field (exit 64).
#[test]
fn graph_bundles_build_only_when_their_models_exist_fit_and_make_no_cycle() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let write = |dir: &str, manifest: &str| {
        let dir = tmp.path().join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("palisade.yaml"), manifest).unwrap();
        dir
    };
    let graph = |name: &str, version: &str, body: &str| {
        format!("name: {name}\nversion: \"{version}\"\nowners: [alice@example.com]\n{body}")
    };
    let split = write("split", &graph("split", "1", "traffic: [{model: iris, weight: 1}]\n"));
    let out = run(&home, &["build", split.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    let err = stderr(&out);
    assert!(
        err.contains("split/palisade.yaml: field `traffic[0].model`: model `iris` is not in the store"),
        "{err}"
    );

    let iris = example_copy(tmp.path());
    assert!(run(&home, &["build", iris.to_str().unwrap()]).status.success());
    let out = run(&home, &["build", split.to_str().unwrap(), "--output", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let built: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(built["engine"], "graph");
    assert_eq!(built["inputs"][0]["name"], "X");
    let out = run(&home, &["models", "show", "split", "--output", "json"]);
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (shown["format"].as_str(), shown["engine"].as_str()),
        (Some("graph"), Some("graph")),
        "{shown}"
    );

    let misfit = write(
        "misfit",
        &graph("misfit", "1", "graph:\n  name: a\n  model: iris\n  children:\n  - {name: b, model: iris}\n"),
    );
    let out = run(&home, &["build", misfit.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr(&out).contains("field `graph.children[0].model`: node `b` (model `iris`) takes tensor"),
        "{}",
        stderr(&out)
    );

    let outer = write("outer", &graph("outer", "1", "graph:\n  name: a\n  model: split\n"));
    assert!(run(&home, &["build", outer.to_str().unwrap()]).status.success());
    let cycle = write("cycle", &graph("split", "2", "graph:\n  name: a\n  model: outer\n"));
    let out = run(&home, &["build", cycle.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("a cycle: split -> outer -> split"), "{}", stderr(&out));
}

#[test]
fn a_broken_model_never_becomes_a_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = example_copy(tmp.path());
    std::fs::write(dir.join("model.onnx"), b"this is not onnx").unwrap();
    let home = tmp.path().join("home");
    let out = run(&home, &["build", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("not a valid ONNX file"), "{}", stderr(&out));
    let out = run(&home, &["models", "list", "--output", "json"]);
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), serde_json::json!([]));
}

#[test]
fn build_list_show_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let example = repo().join("examples/iris");
    let out = run(&home, &["build", example.to_str().unwrap(), "--output", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let built: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(built["name"], "iris");
    let digest = built["digest"].as_str().unwrap().to_owned();

    let out = run(&home, &["models", "list", "--output", "json"]);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["version"], "1.0.0");
    assert_eq!(listed[0]["latest"], true);

    let out = run(&home, &["models", "show", "iris:1.0.0", "--output", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["digest"], digest.as_str());
    assert_eq!(shown["owners"], serde_json::json!(["alice@example.com"]));
    assert_eq!(shown["inputs"][0]["name"], "X");
    assert_eq!(shown["outputs"][1]["name"], "output_probability");
    let text = stdout(&run(&home, &["models", "show", "iris"]));
    assert!(text.contains("X FP32 [-1, 4]"), "{text}");
    assert!(text.contains("owners:     alice@example.com"), "{text}");

    let out = run(&home, &["models", "delete", "iris:latest"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&home, &["models", "show", "iris"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("no model `iris:latest`"), "{}", stderr(&out));
}

/// A bundle changed by one byte is refused by `show` and by `serve`, naming the file.
#[test]
fn tampered_bundle_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let out = run(&home, &["build", repo().join("examples/iris").to_str().unwrap(), "--output", "json"]);
    let built: Value = serde_json::from_slice(&out.stdout).unwrap();
    let hex = built["digest"].as_str().unwrap().trim_start_matches("sha256:").to_owned();
    let model = home.join("bundles").join(hex).join("model.onnx");
    let mut bytes = std::fs::read(&model).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&model, bytes).unwrap();

    for args in [vec!["models", "show", "iris"], vec!["serve", "--listen", "127.0.0.1:0"]] {
        let out = run(&home, &args);
        assert_eq!(out.status.code(), Some(65), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("was modified and is refused: file `model.onnx`"), "{err}");
        assert!(err.contains("hint:"), "{err}");
    }
}

/// Kills the server when the test ends, pass or fail.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(home: &Path, extra: &[&str]) -> Server {
    let mut child = palisade()
        .arg("--home")
        .arg(home)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(rest) = line.strip_prefix("palisade: listening on ") {
            let base = rest.split_whitespace().next().unwrap().to_owned();
            std::thread::spawn(move || for _ in lines {});
            return Server { child, base };
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the server did not print its address");
}

#[test]
fn serve_on_an_ephemeral_port_and_stop_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    assert!(run(&home, &["build", repo().join("examples/iris").to_str().unwrap()]).status.success());
    let mut server = serve(&home, &[]);
    let body = r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#;
    let url = format!("{}/v2/models/iris/infer", server.base);
    let refused = ureq::post(&url).config().http_status_as_error(false).build().send(body).unwrap();
    assert_eq!(refused.status(), 401, "no token, no prediction");
    let token = stdout(&run(&home, &["token", "issue", "--email", "alice@example.com"])).trim().to_owned();
    let mut response =
        ureq::post(&url).header("authorization", &format!("Bearer {token}")).send(body).unwrap();
    assert!(response.headers().contains_key("x-request-id"));
    let reply: Value = serde_json::from_reader(response.body_mut().as_reader()).unwrap();
    assert_eq!(reply["outputs"][0]["name"], "output_label");
    assert_eq!(reply["outputs"][0]["data"], serde_json::json!([0]));
    assert_eq!(reply["outputs"][1]["shape"], serde_json::json!([1, 3]));

    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn service_accounts_keys_and_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let out = run(&home, &["sa", "create", "billing-batch", "--namespace", "billing", "--output", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["subject"], "system:serviceaccount:billing:billing-batch");
    let secret = created["client_secret"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 40);
    let stored = std::fs::read_to_string(home.join("identity/service-accounts.json")).unwrap();
    assert!(!stored.contains(&secret), "only a hash is stored");

    let out = run(&home, &["sa", "create", "billing-batch", "--namespace", "billing"]);
    assert_eq!(out.status.code(), Some(64), "duplicate: {}", stderr(&out));
    let out = run(&home, &["sa", "create", "Bad_Name"]);
    assert_eq!(out.status.code(), Some(64));

    let listed: Value =
        serde_json::from_slice(&run(&home, &["sa", "list", "--output", "json"]).stdout).unwrap();
    assert_eq!(listed[0]["client_id"], created["client_id"]);
    assert!(
        !String::from_utf8_lossy(&run(&home, &["sa", "list", "--output", "json"]).stdout).contains(&secret)
    );

    let token = stdout(&run(&home, &["token", "issue", "--service-account", "billing/billing-batch"]))
        .trim()
        .to_owned();
    let claims = decode_claims(&token);
    assert_eq!(claims["sub"], "system:serviceaccount:billing:billing-batch");
    assert_eq!(claims["client_id"], created["client_id"]);

    let dev = stdout(&run(
        &home,
        &[
            "token",
            "issue",
            "--subject",
            "dev",
            "--email",
            "dev@example.com",
            "--group",
            "a",
            "--group",
            "b",
            "--ttl",
            "5m",
        ],
    ))
    .trim()
    .to_owned();
    let claims = decode_claims(&dev);
    assert_eq!(claims["email"], "dev@example.com");
    assert_eq!(claims["groups"], serde_json::json!(["a", "b"]));
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 300);

    let out = run(&home, &["keys", "rotate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = stdout(&run(&home, &["token", "issue"])).trim().to_owned();
    assert_ne!(decode_header(&after)["kid"], decode_header(&dev)["kid"]);

    assert!(run(&home, &["sa", "revoke", "billing-batch", "--namespace", "billing"]).status.success());
    let out = run(&home, &["token", "issue", "--service-account", "billing/billing-batch"]);
    assert_eq!(out.status.code(), Some(64));
    let out = run(&home, &["sa", "revoke", "billing-batch", "--namespace", "billing"]);
    assert_eq!(out.status.code(), Some(64));
}

fn decode_part(token: &str, index: usize) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn decode_claims(token: &str) -> Value {
    decode_part(token, 1)
}

fn decode_header(token: &str) -> Value {
    decode_part(token, 0)
}

#[test]
fn bad_platform_config_exits_64_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("platform.yaml");
    std::fs::write(&config, "authentication:\n  requireToken: maybe\n").unwrap();
    let out = run(
        &tmp.path().join("home"),
        &["serve", "--listen", "127.0.0.1:0", "--config", config.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(64));
    let err = stderr(&out);
    assert!(err.contains("platform.yaml:2:"), "{err}");
    assert!(err.contains("authentication.requireToken"), "{err}");
}

fn curl(args: &[&str]) -> Output {
    Command::new("curl").args(["-sS", "--max-time", "10"]).args(args).output().expect("curl is installed")
}

/// Mutual TLS with the built-in CA, checked with curl as a real third-party client: with
/// the CA and a client certificate a caller gets a prediction; without the client
/// certificate it is refused under STRICT.
#[test]
fn mutual_tls_with_curl() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    assert!(run(&home, &["build", repo().join("examples/iris").to_str().unwrap()]).status.success());
    let out = run(&home, &["ca", "init", "--trust-domain", "cluster.local"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let client = tmp.path().join("client");
    let server = tmp.path().join("server");
    let out = run(
        &home,
        &[
            "cert",
            "issue",
            "--namespace",
            "default",
            "--service-account",
            "billing",
            "--out",
            client.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("spiffe://cluster.local/ns/default/sa/billing"));
    let out = run(
        &home,
        &[
            "cert",
            "issue",
            "--namespace",
            "palisade",
            "--service-account",
            "server",
            "--dns",
            "127.0.0.1",
            "--dns",
            "localhost",
            "--out",
            server.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let policies = tmp.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("strict.yaml"),
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: palisade-system}\nspec:\n  mtls: {mode: STRICT}\n",
    )
    .unwrap();
    let server_proc = serve(
        &home,
        &[
            "--tls-cert",
            server.join("cert.pem").to_str().unwrap(),
            "--tls-key",
            server.join("key.pem").to_str().unwrap(),
            "--policy-dir",
            policies.to_str().unwrap(),
        ],
    );
    assert!(server_proc.base.starts_with("https://"), "{}", server_proc.base);
    let token = stdout(&run(&home, &["token", "issue", "--email", "alice@example.com"])).trim().to_owned();
    let url = format!("{}/v2/models/iris/infer", server_proc.base);
    let body = r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#;
    let auth = format!("Authorization: Bearer {token}");
    let ca = server.join("ca.pem");
    let with_cert = curl(&[
        "--cacert",
        ca.to_str().unwrap(),
        "--cert",
        client.join("cert.pem").to_str().unwrap(),
        "--key",
        client.join("key.pem").to_str().unwrap(),
        "-H",
        &auth,
        "-d",
        body,
        &url,
    ]);
    assert!(with_cert.status.success(), "{}", stderr(&with_cert));
    let reply: Value = serde_json::from_slice(&with_cert.stdout).unwrap();
    assert_eq!(reply["outputs"][0]["data"], serde_json::json!([0]));

    let without_cert = curl(&["--cacert", ca.to_str().unwrap(), "-H", &auth, "-d", body, &url]);
    assert!(
        !without_cert.status.success(),
        "STRICT refuses a client without a certificate: {}",
        stdout(&without_cert)
    );

    let untrusted = curl(&["-H", &auth, "-d", body, &url]);
    assert!(!untrusted.status.success(), "curl does not trust a server outside its CA bundle");
}

/// Plaintext on a non-loopback address needs --dangerous-plaintext; otherwise TLS with the
/// self-signed localhost certificate, whose fingerprint is printed.
#[test]
fn non_loopback_listeners_default_to_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let mut child = palisade()
        .arg("--home")
        .arg(&home)
        .args(["serve", "--listen", "0.0.0.0:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.contains("listening on");
        seen.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = seen.join("\n");
    assert!(text.contains("self-signed for localhost"), "{text}");
    assert!(text.contains("sha256"), "{text}");
    assert!(text.contains("listening on https://0.0.0.0:"), "{text}");
}

/// The crash test: SIGKILL the server under load, several times. Every response a client
/// received (with its x-request-id) has its record in the log, and the trail verifies.
#[test]
fn sigkill_under_load_loses_no_acknowledged_record() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    assert!(run(&home, &["build", repo().join("examples/iris").to_str().unwrap()]).status.success());
    let token = stdout(&run(&home, &["token", "issue", "--email", "alice@example.com", "--ttl", "1h"]))
        .trim()
        .to_owned();
    let body = r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#;
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    for round in 0..3 {
        let mut server = serve(&home, &[]);
        let url = format!("{}/v2/models/iris/infer", server.base);
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..8)
            .map(|_| {
                let (url, token, stop, acknowledged) =
                    (url.clone(), token.clone(), stop.clone(), acknowledged.clone());
                std::thread::spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .timeout_global(Some(Duration::from_secs(5)))
                        .build()
                        .into();
                    while !stop.load(Ordering::SeqCst) {
                        let Ok(response) =
                            agent.post(&url).header("authorization", &format!("Bearer {token}")).send(body)
                        else {
                            break;
                        };
                        if response.status() == 200
                            && let Some(id) =
                                response.headers().get("x-request-id").and_then(|v| v.to_str().ok())
                        {
                            acknowledged.lock().unwrap().push(id.to_owned());
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(400 + 150 * round));
        let pid = server.child.id().to_string();
        assert!(Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
        let _ = server.child.wait();
        stop.store(true, Ordering::SeqCst);
        for client in clients {
            client.join().unwrap();
        }
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() > 30, "the load reached the server: {}", acknowledged.len());

    let verify = run(&home, &["audit", "verify"]);
    assert!(verify.status.success(), "{}{}", stdout(&verify), stderr(&verify));
    let query = run(&home, &["audit", "query", "--output", "json", "--status", "200"]);
    assert!(query.status.success(), "{}", stderr(&query));
    let logged: std::collections::HashSet<String> = stdout(&query)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["request_id"].as_str().unwrap().to_owned())
        .collect();
    let missing: Vec<_> = acknowledged.iter().filter(|id| !logged.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged responses have no record: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

#[test]
fn audit_commands_name_the_first_bad_record() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    assert!(run(&home, &["build", repo().join("examples/iris").to_str().unwrap()]).status.success());
    let token = stdout(&run(&home, &["token", "issue", "--email", "alice@example.com"])).trim().to_owned();
    {
        let server = serve(&home, &[]);
        let url = format!("{}/v2/models/iris/infer", server.base);
        for _ in 0..5 {
            let _ = ureq::post(&url).header("authorization", &format!("Bearer {token}")).send(
                r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#,
            );
        }
        let refused = ureq::post(&url).config().http_status_as_error(false).build().send("{}").unwrap();
        assert_eq!(refused.status(), 401);
        // Verify and query work while the server runs.
        let verify = run(&home, &["audit", "verify", "--output", "json"]);
        assert!(verify.status.success(), "{}", stderr(&verify));
        let query = run(&home, &["audit", "query", "--output", "json", "--status", "4xx"]);
        assert_eq!(stdout(&query).lines().count(), 1);
    }
    let tail = run(&home, &["audit", "tail", "-n", "3"]);
    assert_eq!(stdout(&tail).lines().count(), 3, "{}", stdout(&tail));
    // SIEM export: JSON lines appended to a file, the same records `query` prints.
    let export = tmp.path().join("siem.jsonl");
    let all = stdout(&run(&home, &["audit", "query", "--output", "json"]));
    for _ in 0..2 {
        let out = run(&home, &["audit", "query", "--export", export.to_str().unwrap()]);
        assert!(out.status.success() && stdout(&out).is_empty(), "{}", stderr(&out));
    }
    assert_eq!(std::fs::read_to_string(&export).unwrap(), format!("{all}{all}"), "appended, not replaced");

    let segment = std::fs::read_dir(home.join("audit"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with("segment-"))
        .unwrap();
    let text = std::fs::read_to_string(&segment).unwrap();
    std::fs::write(&segment, text.replacen("\"status\":200", "\"status\":201", 1)).unwrap();
    let verify = run(&home, &["audit", "verify"]);
    assert_eq!(verify.status.code(), Some(65), "{}", stdout(&verify));
    let err = stderr(&verify);
    assert!(err.contains("segment-00000000000000000000.jsonl:1: seq 0"), "{err}");
}

/// `--dangerous-disable-security` is for measuring on loopback: refused elsewhere, and when
/// on, no token is asked, nothing is audited and the policy endpoints do not exist.
#[test]
fn disabled_security_is_loopback_only_and_loud() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    assert!(run(&home, &["build", repo().join("examples/iris").to_str().unwrap()]).status.success());
    let refused = run(&home, &["serve", "--listen", "0.0.0.0:0", "--dangerous-disable-security"]);
    assert_eq!(refused.status.code(), Some(64), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("--dangerous-disable-security"), "{}", stderr(&refused));

    let server = serve(&home, &["--dangerous-disable-security"]);
    let body = r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#;
    let mut response = ureq::post(&format!("{}/v2/models/iris/infer", server.base)).send(body).unwrap();
    let reply: Value = serde_json::from_reader(response.body_mut().as_reader()).unwrap();
    assert_eq!(reply["outputs"][0]["data"], serde_json::json!([0]));
    let manage = ureq::get(&format!("{}/manage/v1/policies", server.base))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    assert_eq!(manage.status(), 404, "no self-service without authentication");
    drop(server);
    let query = run(&home, &["audit", "query", "--output", "json"]);
    assert!(query.status.success(), "{}", stderr(&query));
    assert_eq!(stdout(&query).trim(), "", "nothing is audited with security off");
}
