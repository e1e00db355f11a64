//! `palisade image build` as users run it, read by the tools users have: skopeo and umoci
//! (Debian packages), a real registry (Debian's `docker-registry`, on loopback), and the
//! unpacked root filesystem serving a prediction.
//!
//! All but the last test use a stand-in binary (an ELF header the static check accepts):
//! they read the image, never run it. The last one needs a real static palisade, which
//! takes a separate release build (`scripts/build-static.sh`), so it is ignored unless
//! `scripts/test-image.sh` runs it with `PALISADE_STATIC_BINARY` set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::*;

fn palisade() -> Command {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: Output, what: &str) -> Output {
    assert!(out.status.success(), "{what}: {}\n{}", stderr(&out), stdout(&out));
    out
}

/// A tool from scripts/install-test-deps.sh, or a failure that says where it comes from.
fn tool(name: &str) -> Command {
    let found = Command::new("sh").arg("-c").arg(format!("command -v {name}")).output().unwrap();
    assert!(
        found.status.success(),
        "`{name}` is not installed: run scripts/install-test-deps.sh (Debian package)"
    );
    Command::new(name)
}

/// An ELF64 x86-64 header with one PT_LOAD and no interpreter: static to the builder.
fn fake_static_binary(path: &Path) {
    let mut bytes = vec![0u8; 64];
    bytes[..4].copy_from_slice(b"\x7fELF");
    bytes[4] = 2;
    bytes[5] = 1;
    bytes[18..20].copy_from_slice(&62u16.to_le_bytes());
    bytes[32..40].copy_from_slice(&64u64.to_le_bytes());
    bytes[54..56].copy_from_slice(&56u16.to_le_bytes());
    bytes[56..58].copy_from_slice(&1u16.to_le_bytes());
    let mut ph = vec![0u8; 56];
    ph[0] = 1;
    bytes.extend(ph);
    std::fs::write(path, bytes).unwrap();
}

/// A home with the iris example built, and a stand-in binary.
fn home_with_iris(tmp: &Path) -> (PathBuf, PathBuf) {
    let home = tmp.join("home");
    let example = repo().join("examples/iris");
    ok(palisade().arg("--home").arg(&home).arg("build").arg(&example).output().unwrap(), "palisade build");
    let binary = tmp.join("palisade-static");
    fake_static_binary(&binary);
    (home, binary)
}

fn image_build(home: &Path, binary: &Path, out: &Path, extra: &[&str]) -> Output {
    palisade()
        .arg("--home")
        .arg(home)
        .args(["image", "build", "iris:1.0.0", "--out"])
        .arg(out)
        .arg("--binary")
        .arg(binary)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn build_prints_the_digest_and_a_rebuild_gives_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, binary) = home_with_iris(tmp.path());
    let out = ok(image_build(&home, &binary, &tmp.path().join("one"), &[]), "image build");
    let digest = stdout(&out).trim().to_owned();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "stdout is the digest alone: {digest:?}");
    assert!(stderr(&out).contains("iris:1.0.0"), "{}", stderr(&out));
    assert!(tmp.path().join("one/index.json").is_file());
    assert!(tmp.path().join("one.tar").is_file());

    let out = ok(
        image_build(&home, &binary, &tmp.path().join("two"), &["--output", "json"]),
        "image build --output json",
    );
    let built: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(built["digest"], digest.as_str(), "the same bundle and binary give the same digest");
    assert_eq!(built["tag"], "iris:1.0.0");
    assert_eq!(built["layers"].as_array().unwrap().len(), 3);
    assert!(built["size"].as_u64().unwrap() > 1000);
    assert_eq!(built["pushed"], Value::Null);

    let out = palisade()
        .env("SOURCE_DATE_EPOCH", "1767225600")
        .arg("--home")
        .arg(&home)
        .args(["image", "build", "iris", "--out"])
        .arg(tmp.path().join("three"))
        .arg("--binary")
        .arg(&binary)
        .output()
        .unwrap();
    let out = ok(out, "image build with SOURCE_DATE_EPOCH");
    assert_ne!(stdout(&out).trim(), digest, "SOURCE_DATE_EPOCH is every timestamp");

    let out = palisade()
        .arg("--home")
        .arg(&home)
        .args(["image", "build", "iris", "--out"])
        .arg(tmp.path().join("five"))
        .args(["--binary", "/bin/sh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("dynamically linked"), "{}", stderr(&out));
    let out = palisade()
        .arg("--home")
        .arg(&home)
        .args(["image", "build", "nosuch", "--out", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("no model `nosuch"), "{}", stderr(&out));
}

#[test]
fn skopeo_and_umoci_read_the_image() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, binary) = home_with_iris(tmp.path());
    let layout = tmp.path().join("iris-image");
    let digest = stdout(&ok(image_build(&home, &binary, &layout, &[]), "image build")).trim().to_owned();

    let out = ok(
        tool("skopeo").arg("inspect").arg(format!("oci:{}", layout.display())).output().unwrap(),
        "skopeo inspect",
    );
    let inspected: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspected["Digest"], digest.as_str());
    assert_eq!(inspected["Architecture"], "amd64");
    assert_eq!(inspected["Labels"]["org.opencontainers.image.title"], "iris");
    assert!(inspected["Labels"]["dev.palisade.bundle.digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 3);
    let out = ok(
        tool("skopeo")
            .args(["inspect", "--config"])
            .arg(format!("oci:{}:1.0.0", layout.display()))
            .output()
            .unwrap(),
        "skopeo inspect --config by reference name",
    );
    let config: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(config["config"]["User"], "65532:65532");
    // The tar is an OCI archive too.
    ok(
        tool("skopeo")
            .arg("inspect")
            .arg(format!("oci-archive:{}", tmp.path().join("iris-image.tar").display()))
            .output()
            .unwrap(),
        "skopeo inspect oci-archive:",
    );

    let bundle = tmp.path().join("unpacked");
    unpack(&layout, &bundle);
    let rootfs = bundle.join("rootfs");
    assert!(std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap().contains(":65532:65532:"));
    assert!(rootfs.join("usr/local/bin/palisade").is_file());
    assert!(rootfs.join("home/palisade/models/iris/tags/latest.json").is_file());
    let runtime: Value = serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(runtime["process"]["user"]["uid"], 65532);
    let args: Vec<&str> =
        runtime["process"]["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(&args[..2], ["/usr/local/bin/palisade", "serve"]);
    assert!(args.contains(&"0.0.0.0:8080"), "{args:?}");
}

/// A bcrypt (cost 4) of `palisade-test-password` for user `robot`, made with
/// `python3 -c "import crypt; print(crypt.crypt('palisade-test-password', crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))"`.
const HTPASSWD: &str = "robot:$2b$04$3UPIjHmQ/kANOMqQt3u7Tu1nvIISMS31de48z5FniL4ss6oY/u4la\n";

struct Registry {
    child: Child,
    addr: String,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's `docker-registry` on 127.0.0.1, with htpasswd (HTTP basic) authentication.
fn registry(dir: &Path) -> Registry {
    // The registry takes its address from its config, so a free port is picked here.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    std::fs::write(dir.join("htpasswd"), HTPASSWD).unwrap();
    let config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n  secret: palisade-test\nauth:\n  htpasswd:\n    realm: palisade-test\n    path: {}\n",
        dir.join("data").display(),
        dir.join("htpasswd").display()
    );
    std::fs::write(dir.join("config.yml"), config).unwrap();
    let child = tool("docker-registry")
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let registry = Registry { child, addr };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&registry.addr).is_err() {
        assert!(Instant::now() < deadline, "the registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    registry
}

#[test]
fn push_to_a_registry_on_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, binary) = home_with_iris(tmp.path());
    let registry_dir = tmp.path().join("registry");
    std::fs::create_dir_all(&registry_dir).unwrap();
    let registry = registry(&registry_dir);
    let target = format!("{}/models/iris:1.0.0", registry.addr);

    let out = image_build(&home, &binary, &tmp.path().join("out"), &["--push", &target]);
    assert_eq!(out.status.code(), Some(1), "no credentials: {}", stderr(&out));
    assert!(stderr(&out).contains("PALISADE_REGISTRY_USERNAME"), "{}", stderr(&out));

    let push = |out: &str| {
        palisade()
            .env("PALISADE_REGISTRY_USERNAME", "robot")
            .env("PALISADE_REGISTRY_PASSWORD", "palisade-test-password")
            .arg("--home")
            .arg(&home)
            .args(["image", "build", "iris:1.0.0", "--out"])
            .arg(tmp.path().join(out))
            .arg("--binary")
            .arg(&binary)
            .args(["--push", &target, "--output", "json"])
            .output()
            .unwrap()
    };
    let built: Value = serde_json::from_slice(&ok(push("out"), "image build --push").stdout).unwrap();
    let digest = built["digest"].as_str().unwrap();
    assert_eq!(built["pushed"]["digest"], digest);
    assert_eq!(built["pushed"]["uploaded"], 4, "three layers and the config");

    let out = ok(
        tool("skopeo")
            .args(["inspect", "--tls-verify=false", "--creds", "robot:palisade-test-password"])
            .arg(format!("docker://{target}"))
            .output()
            .unwrap(),
        "skopeo inspect docker://",
    );
    let inspected: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspected["Digest"], digest, "the registry serves the manifest that was built");

    let again: Value = serde_json::from_slice(&ok(push("again"), "second push").stdout).unwrap();
    assert_eq!(again["digest"], digest);
    assert_eq!(again["pushed"]["uploaded"], 0);
    assert_eq!(again["pushed"]["skipped"], 4, "a rebuild uploads nothing");

    // `image push` sends a layout built earlier, under another tag.
    let out = ok(
        palisade()
            .env("PALISADE_REGISTRY_USERNAME", "robot")
            .env("PALISADE_REGISTRY_PASSWORD", "palisade-test-password")
            .args(["image", "push"])
            .arg(tmp.path().join("out"))
            .arg(format!("{}/models/iris:stable", registry.addr))
            .output()
            .unwrap(),
        "image push",
    );
    assert_eq!(stdout(&out).trim(), digest);
    assert!(stderr(&out).contains("0 blobs uploaded, 4 already there"), "{}", stderr(&out));

    let out = palisade()
        .env("PALISADE_REGISTRY_USERNAME", "robot")
        .env("PALISADE_REGISTRY_PASSWORD", "wrong")
        .arg("--home")
        .arg(&home)
        .args(["image", "build", "iris", "--out"])
        .arg(tmp.path().join("wrong"))
        .arg("--binary")
        .arg(&binary)
        .args(["--push", &target])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("wrong"), "the password is never printed: {}", stderr(&out));
}

/// A child process that is killed when the test ends, passed or not.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `umoci unpack` of the layout's `1.0.0` into `into` (rootless unless root).
fn unpack(layout: &Path, into: &Path) {
    let mut umoci = tool("umoci");
    umoci.arg("unpack");
    if !is_root() {
        umoci.arg("--rootless");
    }
    ok(
        umoci.arg("--image").arg(format!("{}:1.0.0", layout.display())).arg(into).output().unwrap(),
        "umoci unpack",
    );
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| stdout(&o).trim() == "0")
}

/// How the unpacked root filesystem is entered: `chroot` as root (as uid 65532, like the
/// image's config), else `unshare -rm` (a user namespace maps us to root in it) with the
/// devices bind-mounted, then `chroot`.
fn in_rootfs(rootfs: &Path, args: &[&str]) -> Command {
    let mut command = if is_root() {
        let mut c = Command::new("chroot");
        c.arg("--userspec=65532:65532").arg(rootfs);
        c
    } else {
        let mut c = Command::new("unshare");
        c.args([
            "-rm",
            "sh",
            "-c",
            r#"root=$1; shift; for d in null random urandom; do : > "$root/dev/$d"; mount --bind "/dev/$d" "$root/dev/$d"; done; exec chroot "$root" "$@""#,
            "sh",
        ])
        .arg(rootfs);
        c
    };
    // The image's environment only (PATH finds chroot and unshare on the host side).
    command
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("PALISADE_HOME", "/home/palisade")
        .env("HOME", "/home/palisade");
    command
}

/// `/dev/null`, `/dev/random` and `/dev/urandom`, which every container runtime provides and a bare
/// chroot lacks: a static glibc binary cannot find the `getrandom` symbol at run time, so
/// the getrandom crate polls `/dev/random` and reads `/dev/urandom` instead (docs/image.md).
fn provide_devices(rootfs: &Path) {
    std::fs::create_dir_all(rootfs.join("dev")).unwrap();
    if is_root() {
        for (name, minor) in [("null", "3"), ("random", "8"), ("urandom", "9")] {
            let path = rootfs.join("dev").join(name);
            if !path.exists() {
                ok(
                    Command::new("mknod")
                        .args(["-m", "0666"])
                        .arg(&path)
                        .args(["c", "1", minor])
                        .output()
                        .unwrap(),
                    "mknod",
                );
            }
        }
    }
}

#[test]
#[ignore = "needs a static palisade: scripts/test-image.sh builds one and runs this"]
fn the_unpacked_image_serves_a_prediction() {
    let binary = PathBuf::from(std::env::var("PALISADE_STATIC_BINARY").expect("set PALISADE_STATIC_BINARY"));
    let tmp = tempfile::tempdir().unwrap();
    let (home, _) = home_with_iris(tmp.path());
    let layout = tmp.path().join("image");
    let first = stdout(&ok(image_build(&home, &binary, &layout, &[]), "image build")).trim().to_owned();
    let again =
        stdout(&ok(image_build(&home, &binary, &tmp.path().join("again"), &[]), "rebuild")).trim().to_owned();
    assert_eq!(first, again, "a rebuild gives the same digest");

    let bundle = tmp.path().join("unpacked");
    unpack(&layout, &bundle);
    serves_a_prediction(tmp.path(), &bundle);
}

/// The same image with the debug build of `palisade` (dynamically linked) in place of
/// the static binary, and the shared libraries it needs copied into the root filesystem:
/// everything else of the image (users, home, modes, CA roots, the entrypoint, the
/// runtime config's user) is what `image build` wrote. The static build takes a release
/// build of its own (15-25 minutes here), which CI's budget does not fit; what this leaves
/// to `scripts/test-image.sh` is the static binary itself (glibc's static NSS and
/// `getrandom` fallbacks, docs/image.md).
#[test]
fn the_unpacked_image_serves_a_prediction_with_the_debug_build_inside() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, stand_in) = home_with_iris(tmp.path());
    let layout = tmp.path().join("image");
    ok(image_build(&home, &stand_in, &layout, &[]), "image build");
    let bundle = tmp.path().join("unpacked");
    unpack(&layout, &bundle);
    let rootfs = bundle.join("rootfs");
    let debug = PathBuf::from(env!("CARGO_BIN_EXE_palisade"));
    let inside = rootfs.join("usr/local/bin/palisade");
    std::fs::copy(&debug, &inside).unwrap();
    let libraries = stdout(&ok(Command::new("ldd").arg(&debug).output().unwrap(), "ldd"));
    for line in libraries.lines() {
        // `libm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x...)` or `/lib64/ld-linux-x86-64.so.2 (0x...)`
        let path = line.split("=>").last().unwrap().split_whitespace().next().unwrap_or_default();
        if path.starts_with('/') {
            let target = rootfs.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(path, &target).unwrap();
        }
    }
    serves_a_prediction(tmp.path(), &bundle);
}

/// Runs the unpacked image's entrypoint in its root filesystem (as uid 65532), issues a
/// token with the image's own binary, and checks: 401 without it, a prediction with it.
fn serves_a_prediction(tmp: &Path, bundle: &Path) {
    let rootfs = bundle.join("rootfs");
    provide_devices(&rootfs);
    let runtime: Value = serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    let entrypoint: Vec<String> = runtime["process"]["args"].as_array().unwrap()[..2]
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    // The image's command with the runtime's own arguments (as `docker run IMAGE ARGS`):
    // ephemeral loopback ports instead of 8080 and 9090.
    let mut args: Vec<&str> = entrypoint.iter().map(String::as_str).collect();
    args.extend(["--listen", "127.0.0.1:0", "--tls", "--admin-listen", "127.0.0.1:0"]);
    let log = tmp.join("serve.log");
    let mut server = KillOnDrop(
        in_rootfs(&rootfs, &args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let stdout_pipe = server.0.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout_pipe).lines();
    let mut base = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(rest) = line.strip_prefix("palisade: listening on ") {
            base = Some(rest.split_whitespace().next().unwrap().to_owned());
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let Some(base) = base else {
        drop(server);
        panic!(
            "the server in the image did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    };
    let token = stdout(&ok(
        in_rootfs(&rootfs, &["/usr/local/bin/palisade", "token", "issue", "--email", "alice@example.com"])
            .output()
            .unwrap(),
        "token issue inside the image",
    ))
    .trim()
    .to_owned();
    let cert = rootfs.join("home/palisade/tls/localhost.pem");
    let url = format!("{base}/v2/models/iris/infer");
    let body = r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#;
    let curl = |extra: &[&str]| {
        Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(&cert)
            .args(["-H", "content-type: application/json", "-d", body, "-w", "\n%{http_code}"])
            .args(extra)
            .arg(&url)
            .output()
            .unwrap()
    };
    let refused = stdout(&curl(&[]));
    assert!(refused.ends_with("401"), "no token, no prediction: {refused}");
    let answered = stdout(&curl(&["-H", &format!("authorization: Bearer {token}")]));
    drop(server);
    let (json, status) = answered.rsplit_once('\n').unwrap();
    assert_eq!(status, "200", "{answered}");
    let reply: Value = serde_json::from_str(json).unwrap();
    assert_eq!(reply["model_name"], "iris");
    assert_eq!(reply["outputs"][0]["data"], serde_json::json!([0]));
}

/// A copy of examples/iris named `name`, built into `home`.
fn build_iris_as(home: &Path, tmp: &Path, name: &str) {
    let dir = tmp.join(format!("src-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(repo().join("examples/iris")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
    }
    let manifest = std::fs::read_to_string(dir.join("palisade.yaml")).unwrap();
    std::fs::write(dir.join("palisade.yaml"), manifest.replacen("name: iris", &format!("name: {name}"), 1))
        .unwrap();
    ok(palisade().arg("--home").arg(home).arg("build").arg(&dir).output().unwrap(), "palisade build");
}

#[test]
fn a_graph_image_carries_the_models_it_serves_and_its_home_serves_it() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    for name in ["iris-a", "iris-b", "unrelated"] {
        build_iris_as(&home, tmp.path(), name);
    }
    let canary = tmp.path().join("src-canary");
    std::fs::create_dir_all(&canary).unwrap();
    std::fs::write(
        canary.join("palisade.yaml"),
        "name: canary\nversion: \"1.0.0\"\nowners: [alice@example.com]\n\
         traffic:\n  - {model: iris-a, weight: 90}\n  - {model: 'iris-b:1.0.0', weight: 10}\n",
    )
    .unwrap();
    ok(
        palisade().arg("--home").arg(&home).arg("build").arg(&canary).output().unwrap(),
        "palisade build canary",
    );
    let binary = tmp.path().join("palisade-static");
    fake_static_binary(&binary);
    let layout = tmp.path().join("canary-image");
    let out = palisade()
        .arg("--home")
        .arg(&home)
        .args(["image", "build", "canary:1.0.0", "--binary"])
        .arg(&binary)
        .arg("--out")
        .arg(&layout)
        .output()
        .unwrap();
    ok(out, "image build canary");

    let unpacked = tmp.path().join("unpacked");
    unpack(&layout, &unpacked);
    let image_home = unpacked.join("rootfs/home/palisade");
    // The split and the two models it names, each its name's latest; nothing else.
    let listed = ok(
        palisade()
            .arg("--home")
            .arg(&image_home)
            .args(["models", "list", "--output", "json"])
            .output()
            .unwrap(),
        "models list",
    );
    let text = stdout(&listed);
    let listed: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert!(listed.iter().all(|m| m["latest"] == true), "{text}");
    let mut names: Vec<String> = listed
        .iter()
        .map(|m| format!("{}:{}", m["name"].as_str().unwrap(), m["version"].as_str().unwrap()))
        .collect();
    names.sort();
    assert_eq!(names, ["canary:1.0.0", "iris-a:1.0.0", "iris-b:1.0.0"], "{text}");
    for name in ["canary", "iris-a", "iris-b"] {
        assert!(image_home.join(format!("models/{name}/tags/latest.json")).is_file(), "{name}");
    }
    // The server loads that home: the split compiles against the models beside it.
    let mut server = palisade()
        .arg("--home")
        .arg(&image_home)
        .args(["serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in lines {
        let line = line.unwrap();
        let listening = line.starts_with("palisade: listening on ");
        seen.push(line);
        if listening || Instant::now() > deadline {
            break;
        }
    }
    server.kill().unwrap();
    let output = server.wait_with_output().unwrap();
    assert!(
        seen.last().is_some_and(|l| l.starts_with("palisade: listening on ")),
        "{seen:?}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(seen.iter().any(|l| l.contains("canary:1.0.0")), "{seen:?}");
}
