//! `palisade` binaries as a gateway in front of another `palisade` binary over mutual TLS:
//! `build` of upstream manifests, `serve --workload-identity` (the certificate it serves with
//! is its client identity too) and `serve --workload-cert/--workload-key`.

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

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
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
    // The upstreams of these tests listen on 127.0.0.1, which the platform must allow by name.
    let mut config = Vec::new();
    if !extra.contains(&"--config") {
        let file = home.with_extension("allow-loopback.yaml");
        std::fs::write(&file, "upstream:\n  allowedHosts: [\"127.0.0.1\"]\n").unwrap();
        config = vec!["--config".to_owned(), file.to_str().unwrap().to_owned()];
    }
    let mut child = palisade()
        .arg("--home")
        .arg(home)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(&config)
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
            let base = rest.split_whitespace().next().unwrap().to_owned();
            std::thread::spawn(move || for _ in lines {});
            return Server { child, base };
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the server did not print its address");
}

const SIGNATURE: &str = "  inputs: [{name: X, datatype: FP32, shape: [-1, 4]}]\n  outputs:\n    - {name: output_label, datatype: INT64, shape: [-1]}\n    - {name: output_probability, datatype: FP32, shape: [-1, 3]}\n";

/// A model directory for an upstream model; `ca` is copied next to the manifest.
fn upstream_dir(tmp: &Path, name: &str, upstream: &str, ca: Option<&Path>) -> PathBuf {
    let dir = tmp.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    if let Some(ca) = ca {
        std::fs::copy(ca, dir.join("upstream-ca.pem")).unwrap();
    }
    std::fs::write(
        dir.join("palisade.yaml"),
        format!(
            "name: iris-gw\nversion: \"1\"\nowners: [alice@example.com]\nmodel:\n  format: upstream\n  upstream:\n    model: iris\n{upstream}{SIGNATURE}"
        ),
    )
    .unwrap();
    dir
}

#[test]
fn build_checks_upstream_manifests_and_serve_names_missing_tls_material() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");

    let dir = upstream_dir(tmp.path(), "no-outputs", "    url: http://127.0.0.1:9\n", None);
    let manifest = std::fs::read_to_string(dir.join("palisade.yaml")).unwrap();
    let cut = manifest.find("  outputs:").unwrap();
    std::fs::write(dir.join("palisade.yaml"), &manifest[..cut]).unwrap();
    let out = run(&home, &["build", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    let err = stderr(&out);
    assert!(err.contains("palisade.yaml:") && err.contains("must declare `model.outputs`"), "{err}");

    let dir = upstream_dir(
        tmp.path(),
        "missing-ca",
        "    url: https://127.0.0.1:9\n    tls: {ca: upstream-ca.pem}\n",
        None,
    );
    let out = run(&home, &["build", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("field `model.upstream.tls.ca`"), "{}", stderr(&out));

    // Mutual TLS builds (nothing is contacted), but serving it needs a workload certificate.
    let ca_home = tmp.path().join("ca-home");
    ok(run(&ca_home, &["ca", "init"]));
    let mutual = "    url: https://127.0.0.1:9\n    tls: {ca: upstream-ca.pem, mutual: true}\n";
    let dir = upstream_dir(tmp.path(), "mutual", mutual, Some(&ca_home.join("ca/ca.pem")));
    let out = ok(run(&home, &["build", dir.to_str().unwrap()]));
    assert!(out.contains("built iris-gw:1"), "{out}");
    let shown = ok(run(&home, &["models", "show", "iris-gw"]));
    assert!(shown.contains("upstream:   https://127.0.0.1:9 model iris (mutual TLS)"), "{shown}");
    assert!(shown.contains("upstream-ca.pem"), "the CA is a bundle file: {shown}");
    // Without the platform allowing 127.0.0.1 by name, the upstream is refused at load.
    let out =
        palisade().arg("--home").arg(&home).args(["serve", "--listen", "127.0.0.1:0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = stderr(&out);
    assert!(err.contains("field `model.upstream.url`") && err.contains("upstream.allowedHosts"), "{err}");
    let config = tmp.path().join("allow.yaml");
    std::fs::write(&config, "upstream:\n  allowedHosts: [\"127.0.0.1\"]\n").unwrap();
    let out = palisade()
        .arg("--home")
        .arg(&home)
        .args(["serve", "--listen", "127.0.0.1:0", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = stderr(&out);
    assert!(err.contains("field `model.upstream.tls.mutual`") && err.contains("--workload-cert"), "{err}");
}

/// The admin port names models and policies in /metrics and has no TLS: a non-loopback
/// address needs an explicit flag, like plaintext on the data port.
#[test]
fn admin_listen_off_loopback_needs_an_explicit_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    for admin in ["0.0.0.0:0", "[::]:0", "192.0.2.1:9090"] {
        let out = palisade()
            .arg("--home")
            .arg(&home)
            .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", admin])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{admin}");
        let err = stderr(&out);
        assert!(
            err.contains("not a loopback address") && err.contains("--dangerous-plaintext-admin"),
            "{err}"
        );
    }
}

/// The upstream: a `palisade serve` with its own CA, a server certificate for 127.0.0.1,
/// STRICT mutual TLS with client certificates from `client_ca`, no token required, and iris
/// open to the gateway's identity only.
fn start_upstream(tmp: &Path, client_ca: &Path) -> (Server, PathBuf) {
    let home = tmp.join("upstream-home");
    ok(run(&home, &["build", repo().join("examples/iris").to_str().unwrap()]));
    ok(run(&home, &["ca", "init"]));
    let certs = tmp.join("upstream-certs");
    ok(run(
        &home,
        &[
            "cert",
            "issue",
            "--namespace",
            "ml",
            "--service-account",
            "upstream",
            "--dns",
            "127.0.0.1",
            "--out",
            certs.to_str().unwrap(),
        ],
    ));
    let policies = tmp.join("upstream-policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("mtls.yaml"),
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: palisade-system}\nspec:\n  mtls: {mode: STRICT}\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: gateway, namespace: default}\nspec:\n  action: ALLOW\n  rules:\n    - from: [{source: {principals: [\"cluster.local/ns/palisade-system/sa/palisade\"]}}]\n",
    )
    .unwrap();
    let config = tmp.join("upstream-platform.yaml");
    std::fs::write(&config, "authentication:\n  requireToken: false\n").unwrap();
    let server = serve(
        &home,
        &[
            "--tls-cert",
            certs.join("cert.pem").to_str().unwrap(),
            "--tls-key",
            certs.join("key.pem").to_str().unwrap(),
            "--client-ca",
            client_ca.to_str().unwrap(),
            "--policy-dir",
            policies.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    (server, certs.join("ca.pem"))
}

/// Calls the gateway with curl (a real client) as the model's owner; `cacert` for https.
fn predict(gateway: &Server, home: &Path, cacert: Option<&Path>) -> (u16, Value) {
    let token = ok(run(home, &["token", "issue", "--email", "alice@example.com"])).trim().to_owned();
    let body = r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[6.3,3.3,6.0,2.5]}]}"#;
    let mut curl = Command::new("curl");
    curl.args(["-sS", "--max-time", "30", "-w", "\n%{http_code}"]);
    if let Some(ca) = cacert {
        curl.arg("--cacert").arg(ca);
    }
    let auth = format!("Authorization: Bearer {token}");
    let url = format!("{}/v2/models/iris-gw/infer", gateway.base);
    let out = curl.args(["-H", &auth, "-H", "Accept: application/json", "-d", body, &url]).output().unwrap();
    let text = ok(out);
    let (json, status) = text.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap(), serde_json::from_str(json).unwrap())
}

#[test]
fn gateway_binaries_reach_a_strict_upstream_with_their_workload_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    // The gateway's home has its own built-in CA; the upstream trusts it for client certificates.
    let gateway_home = tmp.path().join("gateway-home");
    ok(run(&gateway_home, &["ca", "init"]));
    let (upstream, upstream_ca) = start_upstream(tmp.path(), &gateway_home.join("ca/ca.pem"));
    let url = format!(
        "    url: {}\n    timeout: 10s\n    tls: {{ca: upstream-ca.pem, mutual: true}}\n",
        upstream.base
    );
    let dir = upstream_dir(tmp.path(), "gateway-model", &url, Some(&upstream_ca));
    ok(run(&gateway_home, &["build", dir.to_str().unwrap()]));

    // 1. --workload-identity: the certificate the gateway serves with, issued by its home's
    // CA and renewed at half-life, is also what it presents to the upstream.
    let gateway = serve(&gateway_home, &["--workload-identity", "palisade-system/palisade"]);
    assert!(gateway.base.starts_with("https://"), "{}", gateway.base);
    let (status, reply) = predict(&gateway, &gateway_home, Some(&gateway_home.join("ca/ca.pem")));
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["outputs"][0]["data"], serde_json::json!([2]), "virginica");
    drop(gateway);

    // 2. --workload-cert/--workload-key: the files given (here from the same CA, with
    // another identity, which the upstream's policy does not allow).
    let other = tmp.path().join("other-identity");
    ok(run(
        &gateway_home,
        &[
            "cert",
            "issue",
            "--namespace",
            "default",
            "--service-account",
            "intruder",
            "--out",
            other.to_str().unwrap(),
        ],
    ));
    let gateway = serve(
        &gateway_home,
        &[
            "--workload-cert",
            other.join("cert.pem").to_str().unwrap(),
            "--workload-key",
            other.join("key.pem").to_str().unwrap(),
        ],
    );
    let (status, reply) = predict(&gateway, &gateway_home, None);
    assert_eq!(
        status, 502,
        "the upstream refuses that identity (403), which the caller sees as 502: {reply}"
    );
    assert_eq!(
        reply["error"].as_str().unwrap(),
        "the upstream model server failed (HTTP 403); the server log has details under this request id"
    );
    drop(gateway);

    // 3. The files of the allowed identity: predictions flow again.
    let allowed = tmp.path().join("gateway-identity");
    ok(run(
        &gateway_home,
        &[
            "cert",
            "issue",
            "--namespace",
            "palisade-system",
            "--service-account",
            "palisade",
            "--out",
            allowed.to_str().unwrap(),
        ],
    ));
    let gateway = serve(
        &gateway_home,
        &[
            "--workload-cert",
            allowed.join("cert.pem").to_str().unwrap(),
            "--workload-key",
            allowed.join("key.pem").to_str().unwrap(),
        ],
    );
    let (status, reply) = predict(&gateway, &gateway_home, None);
    assert_eq!(status, 200, "{reply}");
}
