//! Image layout, reproducibility and the tar, from a real store and a stand-in static
//! binary (a minimal ELF header: the image is never run here; `crates/cli/tests/image.rs`
//! runs a real one).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use palisade_bundle::{BundleRecord, Store};
use palisade_image::{ImageError, ImageSpec, Silent, build, oci};
use serde_json::Value;
use sha2::{Digest, Sha256};

const EPOCH: u64 = 1_700_000_000;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// An ELF64 x86-64 header with one PT_LOAD and no interpreter: "static" to the checker.
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

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    store: Store,
    record: BundleRecord,
    binary: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_owned();
    let store = Store::open(&root.join("home")).unwrap();
    let staged = store.stage(&repo().join("examples/iris")).unwrap();
    let record = store.commit(staged).unwrap();
    let binary = root.join("palisade");
    fake_static_binary(&binary);
    std::fs::write(root.join("roots.pem"), "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
        .unwrap();
    Fixture { _tmp: tmp, root, store, record, binary }
}

impl Fixture {
    fn spec(&self) -> ImageSpec {
        ImageSpec {
            record: self.record.clone(),
            binary: self.binary.clone(),
            ca_roots: self.root.join("roots.pem"),
            epoch: EPOCH,
            tag: "iris:1.0.0".to_owned(),
        }
    }

    fn build(&self, out: &str) -> Result<palisade_image::BuiltImage, ImageError> {
        let out = self.root.join(out);
        build(&self.store, &self.spec(), &out, &out.with_extension("tar"), &mut Silent)
    }
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    std::fs::read(layout.join("blobs/sha256").join(digest.strip_prefix("sha256:").unwrap())).unwrap()
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// One tar entry: (mode, uid, gid, mtime, content).
type TarEntry = (u32, u64, u64, u64, Vec<u8>);

/// A layer's uncompressed bytes and its entries by path.
fn layer_entries(gz: &[u8]) -> (Vec<u8>, BTreeMap<String, TarEntry>) {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gz).read_to_end(&mut raw).unwrap();
    let mut entries = BTreeMap::new();
    let mut order = Vec::new();
    let mut archive = tar::Archive::new(raw.as_slice());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().trim_end_matches('/').to_owned();
        let header = entry.header().clone();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        order.push(path.clone());
        entries.insert(
            path,
            (
                header.mode().unwrap(),
                header.uid().unwrap(),
                header.gid().unwrap(),
                header.mtime().unwrap(),
                content,
            ),
        );
    }
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "entries are sorted");
    (raw, entries)
}

#[test]
fn the_layout_is_a_complete_oci_image() {
    let f = fixture();
    let built = f.build("out").unwrap();
    let layout = &built.layout;
    assert_eq!(
        std::fs::read_to_string(layout.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    let index = json(&std::fs::read(layout.join("index.json")).unwrap());
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(index["manifests"][0]["digest"], built.manifest.digest.as_str());
    assert_eq!(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], "1.0.0");

    // Every blob hashes to its name.
    for entry in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        assert_eq!(sha256(&std::fs::read(entry.path()).unwrap()), format!("sha256:{name}"));
    }
    let manifest_bytes = blob(layout, &built.manifest.digest);
    assert_eq!(built.manifest.size, manifest_bytes.len() as u64);
    let manifest = json(&manifest_bytes);
    assert_eq!(manifest["mediaType"], oci::MEDIA_MANIFEST);
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 3);
    assert_eq!(
        manifest["annotations"][oci::LABEL_BUNDLE_DIGEST],
        f.record.digest.to_string().as_str(),
        "the bundle digest is an annotation"
    );

    let config = json(&blob(layout, manifest["config"]["digest"].as_str().unwrap()));
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    let run = &config["config"];
    assert_eq!(run["User"], "65532:65532");
    assert_eq!(run["Entrypoint"], serde_json::json!(["/usr/local/bin/palisade", "serve"]));
    assert_eq!(run["ExposedPorts"], serde_json::json!({"8080/tcp": {}, "9090/tcp": {}}));
    assert!(run["Env"].as_array().unwrap().contains(&Value::from("PALISADE_HOME=/home/palisade")));
    let labels = &run["Labels"];
    assert_eq!(labels["org.opencontainers.image.title"], "iris");
    assert_eq!(labels["org.opencontainers.image.version"], "1.0.0");
    assert_eq!(labels[oci::LABEL_BUNDLE_DIGEST], f.record.digest.to_string().as_str());

    // diff_ids are the uncompressed layers' digests; the layers hold what they should.
    let mut files = BTreeMap::new();
    for (i, layer) in manifest["layers"].as_array().unwrap().iter().enumerate() {
        assert_eq!(layer["mediaType"], oci::MEDIA_LAYER);
        let gz = blob(layout, layer["digest"].as_str().unwrap());
        let (raw, entries) = layer_entries(&gz);
        assert_eq!(config["rootfs"]["diff_ids"][i], sha256(&raw).as_str());
        for (path, (_, _, _, mtime, _)) in &entries {
            assert_eq!(*mtime, EPOCH, "{path}");
        }
        files.extend(entries);
    }
    let passwd = String::from_utf8(files["etc/passwd"].4.clone()).unwrap();
    assert!(passwd.contains("palisade:x:65532:65532:palisade:/home/palisade:"), "{passwd}");
    assert_eq!(files["usr/local/bin/palisade"].0, 0o755);
    assert_eq!(files["usr/local/bin/palisade"].4, std::fs::read(&f.binary).unwrap());
    assert_eq!(files["tmp"].0, 0o1777);
    let home = "home/palisade";
    assert_eq!((files[home].0, files[home].1, files[home].2), (0o700, 65532, 65532));
    let bundle = format!("{home}/bundles/{}", f.record.digest.hex());
    let model = &files[&format!("{bundle}/model.onnx")];
    assert_eq!((model.0, model.1), (0o600, 65532));
    assert_eq!(model.4, std::fs::read(repo().join("examples/iris/model.onnx")).unwrap());
    assert!(files.contains_key(&format!("{bundle}/bundle.json")));
    let version = json(&files[&format!("{home}/models/iris/versions/1.0.0.json")].4);
    assert_eq!(version["digest"], f.record.digest.to_string().as_str());
    assert_eq!(version["created"], EPOCH, "the build time is the image's epoch");
    assert_eq!(json(&files[&format!("{home}/models/iris/tags/latest.json")].4)["version"], "1.0.0");
    assert_eq!(
        built.size(),
        built.manifest.size + built.config.size + built.layers.iter().map(|l| l.size).sum::<u64>()
    );
}

#[test]
fn the_image_unpacks_into_a_home_the_store_serves() {
    let f = fixture();
    let built = f.build("out").unwrap();
    let manifest = json(&blob(&built.layout, &built.manifest.digest));
    let rootfs = f.root.join("rootfs");
    for layer in manifest["layers"].as_array().unwrap() {
        let gz = blob(&built.layout, layer["digest"].as_str().unwrap());
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gz.as_slice()));
        archive.set_preserve_ownerships(false);
        archive.unpack(&rootfs).unwrap();
    }
    let store = Store::open(&rootfs.join("home/palisade")).unwrap();
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].digest, f.record.digest);
    assert!(listed[0].latest);
    let bundle = store.load(&listed[0]).unwrap();
    assert_eq!(bundle.manifest.name.as_str(), "iris");
}

#[test]
fn builds_are_reproducible() {
    let f = fixture();
    let first = f.build("one").unwrap();
    let second = f.build("two").unwrap();
    assert_eq!(first.manifest.digest, second.manifest.digest);
    assert_eq!(
        std::fs::read(&first.tar).unwrap(),
        std::fs::read(&second.tar).unwrap(),
        "the tars are the same bytes"
    );

    // The same bundle built into another home, at another time, gives the same image.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let other = fixture();
    assert_eq!(other.record.digest, f.record.digest);
    assert_ne!(other.record.created, 0);
    let elsewhere = other.build("three").unwrap();
    assert_eq!(elsewhere.manifest.digest, first.manifest.digest);

    // A rebuild into the same directory replaces it.
    let again = f.build("one").unwrap();
    assert_eq!(again.manifest.digest, first.manifest.digest);

    let mut spec = f.spec();
    spec.epoch += 1;
    let out = f.root.join("later");
    let later = build(&f.store, &spec, &out, &out.with_extension("tar"), &mut Silent).unwrap();
    assert_ne!(later.manifest.digest, first.manifest.digest, "the epoch is part of the image");
}

#[test]
fn the_tar_is_the_layout_plus_what_docker_load_reads() {
    let f = fixture();
    let built = f.build("out").unwrap();
    let bytes = std::fs::read(&built.tar).unwrap();
    assert_eq!(bytes.len() as u64, built.tar_size);
    let mut archive = tar::Archive::new(bytes.as_slice());
    let mut names = Vec::new();
    let mut contents = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        assert_eq!(entry.header().mtime().unwrap(), EPOCH);
        assert_eq!(entry.header().uid().unwrap(), 0);
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        names.push(name.clone());
        contents.insert(name, content);
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    for name in ["oci-layout", "index.json", "manifest.json", "blobs/", "blobs/sha256/"] {
        assert!(contents.contains_key(name), "{name} in {names:?}");
    }
    for (name, content) in &contents {
        if !name.ends_with('/') {
            assert_eq!(content, &std::fs::read(built.layout.join(name)).unwrap(), "{name}");
        }
    }
    let docker = json(&contents["manifest.json"]);
    assert_eq!(docker[0]["RepoTags"], serde_json::json!(["iris:1.0.0"]));
    assert_eq!(docker[0]["Config"], format!("blobs/sha256/{}", built.config.hex()).as_str());
    let layers: Vec<String> = built.layers.iter().map(|l| format!("blobs/sha256/{}", l.hex())).collect();
    assert_eq!(docker[0]["Layers"], serde_json::json!(layers));
    for layer in &layers {
        assert!(contents.contains_key(layer));
    }
}

#[test]
fn a_tampered_bundle_never_becomes_an_image() {
    let f = fixture();
    let model = f.store.root().join("bundles").join(f.record.digest.hex()).join("model.onnx");
    let mut bytes = std::fs::read(&model).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&model, bytes).unwrap();
    let err = f.build("out").unwrap_err();
    assert!(matches!(err, ImageError::Bundle(_)), "{err:?}");
    assert!(err.to_string().contains("model.onnx"), "{err}");
    assert!(!f.root.join("out").exists());
}

#[test]
fn refusals_name_the_problem() {
    let f = fixture();
    let mut spec = f.spec();
    spec.binary = PathBuf::from("/bin/sh");
    let out = f.root.join("out");
    let err = build(&f.store, &spec, &out, &f.root.join("out.tar"), &mut Silent).unwrap_err().to_string();
    assert!(err.contains("dynamically linked") && err.contains("--binary"), "{err}");

    std::fs::create_dir_all(f.root.join("busy")).unwrap();
    std::fs::write(f.root.join("busy/notes.txt"), "mine").unwrap();
    let err = f.build("busy").unwrap_err();
    assert!(matches!(err, ImageError::OutputExists { .. }), "{err:?}");
    assert_eq!(std::fs::read_to_string(f.root.join("busy/notes.txt")).unwrap(), "mine");
    let leftovers: Vec<_> = std::fs::read_dir(&f.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".palisade-image-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_layout_reads_back_for_pushing() {
    let f = fixture();
    let built = f.build("out").unwrap();
    let image = palisade_image::read_layout(&built.layout).unwrap();
    assert_eq!(image.manifest.digest, built.manifest.digest);
    assert_eq!(image.parsed.layers, built.layers);
    std::fs::write(image.blob_path(&built.manifest), b"{}").unwrap();
    let err = palisade_image::read_layout(&built.layout).unwrap_err().to_string();
    assert!(err.contains("does not hash"), "{err}");
}

/// A registry that wants a bearer token from its token service, as Docker Hub, GHCR and
/// distribution's token auth do (the Debian registry in crates/cli/tests/image.rs covers
/// basic authentication).
mod bearer_registry {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::extract::{RawQuery, State};
    use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use sha2::{Digest, Sha256};

    #[derive(Default)]
    pub struct Seen {
        pub blobs: HashMap<String, Vec<u8>>,
        pub manifests: HashMap<String, Vec<u8>>,
        pub token_queries: Vec<String>,
    }

    #[derive(Clone)]
    struct Fake {
        base: String,
        seen: Arc<Mutex<Seen>>,
    }

    const TOKEN: &str = "fake-registry-token";

    async fn token(State(fake): State<Fake>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
        // robot:hunter2
        if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
            != Some("Basic cm9ib3Q6aHVudGVyMg==")
        {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        fake.seen.lock().unwrap().token_queries.push(query.unwrap_or_default());
        axum::Json(serde_json::json!({"token": TOKEN})).into_response()
    }

    async fn registry(
        State(fake): State<Fake>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
            != Some(&format!("Bearer {TOKEN}"))
        {
            let challenge = format!(
                r#"Bearer realm="{}/token",service="fake-registry",scope="repository:models/iris:pull""#,
                fake.base
            );
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, challenge)],
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            )
                .into_response();
        }
        let path = uri.path();
        let mut seen = fake.seen.lock().unwrap();
        if let Some(rest) = path.strip_prefix("/v2/models/iris/") {
            if method == Method::HEAD && rest.starts_with("blobs/sha256:") {
                let digest = rest.trim_start_matches("blobs/");
                let status =
                    if seen.blobs.contains_key(digest) { StatusCode::OK } else { StatusCode::NOT_FOUND };
                return status.into_response();
            }
            if method == Method::POST && rest == "blobs/uploads/" {
                return (
                    StatusCode::ACCEPTED,
                    [(header::LOCATION, "/v2/models/iris/blobs/uploads/session-1?state=x")],
                )
                    .into_response();
            }
            if method == Method::PUT && rest.starts_with("blobs/uploads/") {
                let query = uri.query().unwrap_or_default();
                assert!(query.starts_with("state=x&digest="), "{query}");
                let digest = query.trim_start_matches("state=x&digest=").replace("%3A", ":");
                let actual = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
                if actual != digest {
                    return StatusCode::BAD_REQUEST.into_response();
                }
                seen.blobs.insert(digest, body.to_vec());
                return StatusCode::CREATED.into_response();
            }
            if method == Method::PUT && rest.starts_with("manifests/") {
                assert_eq!(headers[header::CONTENT_TYPE], palisade_image::oci::MEDIA_MANIFEST);
                let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
                seen.manifests.insert(rest.trim_start_matches("manifests/").to_owned(), body.to_vec());
                return (StatusCode::CREATED, [("docker-content-digest", digest)]).into_response();
            }
        }
        StatusCode::NOT_FOUND.into_response()
    }

    /// Starts the fake on an ephemeral loopback port; returns `host:port` and what it saw.
    pub fn start() -> (String, Arc<Mutex<Seen>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let fake = Fake { base: format!("http://{addr}"), seen: seen.clone() };
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().route("/token", get(token)).fallback(registry).with_state(fake);
                axum::serve(listener, app).await.unwrap();
            });
        });
        (addr, seen)
    }
}

#[test]
fn push_follows_a_bearer_challenge_to_the_token_service() {
    let f = fixture();
    let built = f.build("out").unwrap();
    let layout = palisade_image::read_layout(&built.layout).unwrap();
    let (addr, seen) = bearer_registry::start();
    let target = palisade_image::ImageRef::parse(&format!("{addr}/models/iris:1.0.0"), "x").unwrap();

    let err = palisade_image::push(&layout, &target, None, &mut Silent).unwrap_err().to_string();
    assert!(err.contains("PALISADE_REGISTRY_USERNAME"), "{err}");

    let credentials = palisade_image::Credentials::new("robot", "hunter2");
    let pushed = palisade_image::push(&layout, &target, Some(&credentials), &mut Silent).unwrap();
    assert_eq!(pushed.digest, built.manifest.digest);
    assert_eq!((pushed.uploaded, pushed.skipped), (4, 0));
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.manifests["1.0.0"], layout.manifest_bytes);
        for blob in layout.parsed.layers.iter().chain([&layout.parsed.config]) {
            assert_eq!(seen.blobs[&blob.digest], std::fs::read(layout.blob_path(blob)).unwrap());
        }
        assert_eq!(seen.token_queries.len(), 1, "one token for the whole push: {:?}", seen.token_queries);
        assert_eq!(
            seen.token_queries[0],
            "service=fake-registry&scope=repository%3Amodels%2Firis%3Apull%2Cpush"
        );
    }
    let again = palisade_image::push(&layout, &target, Some(&credentials), &mut Silent).unwrap();
    assert_eq!((again.uploaded, again.skipped), (0, 4));
}
