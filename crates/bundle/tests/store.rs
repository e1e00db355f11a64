//! The bundle store against a real file system.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use palisade_bundle::{BundleError, Store};
use palisade_core::{DataType, Dim, ModelName, ModelSignature, TensorSpec};

const MANIFEST: &str = "name: iris\nversion: \"1.0.0\"\nowners: [alice@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\n";

fn model_dir(root: &Path, manifest: &str, model: &[u8]) -> PathBuf {
    let dir = root.join(format!("src-{}", fs::read_dir(root).unwrap().count()));
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("palisade.yaml"), manifest).unwrap();
    fs::write(dir.join("model.onnx"), model).unwrap();
    dir
}

fn build(store: &Store, dir: &Path) -> Result<palisade_bundle::BundleRecord, BundleError> {
    let mut staged = store.stage(dir)?;
    staged.set_signature(&signature())?;
    store.commit(staged)
}

fn signature() -> ModelSignature {
    ModelSignature {
        inputs: vec![TensorSpec {
            name: "X".into(),
            datatype: DataType::Fp32,
            shape: vec![Dim::Dynamic, Dim::Fixed(4)],
            allow_nan: false,
            labels: None,
        }],
        outputs: vec![],
    }
}

fn iris() -> ModelName {
    ModelName::new("iris").unwrap()
}

#[test]
fn build_list_resolve_load() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    let record = build(&store, &model_dir(tmp.path(), MANIFEST, b"model-bytes")).unwrap();
    assert_eq!(record.version.as_str(), "1.0.0");
    assert!(record.digest.to_string().starts_with("sha256:"));

    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].latest);
    assert_eq!(store.resolve(&iris(), "latest").unwrap().digest, record.digest);
    assert_eq!(store.resolve(&iris(), "1.0.0").unwrap().digest, record.digest);

    let bundle = store.load(&record).unwrap();
    assert_eq!(fs::read(bundle.model_path()).unwrap(), b"model-bytes");
    assert_eq!(bundle.signature.unwrap(), signature());
    let paths: Vec<_> = bundle.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["model.onnx", "palisade.yaml", "signature.json"]);
}

#[test]
fn same_content_same_digest_and_rebuild_is_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    let a = build(&store, &model_dir(tmp.path(), MANIFEST, b"m")).unwrap();
    let b = build(&store, &model_dir(tmp.path(), MANIFEST, b"m")).unwrap();
    assert_eq!(a.digest, b.digest);
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
fn versions_are_immutable() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    build(&store, &model_dir(tmp.path(), MANIFEST, b"one")).unwrap();
    let err = build(&store, &model_dir(tmp.path(), MANIFEST, b"two")).unwrap_err();
    assert!(matches!(err, BundleError::VersionExists { .. }), "{err}");
    assert!(err.to_string().contains("bump `version`"), "{err}");
}

#[test]
fn latest_follows_builds_and_deletes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    let v1 = build(&store, &model_dir(tmp.path(), MANIFEST, b"one")).unwrap();
    let v2 = build(&store, &model_dir(tmp.path(), &MANIFEST.replace("1.0.0", "2.0.0"), b"two")).unwrap();
    assert_eq!(store.resolve(&iris(), "latest").unwrap().version, v2.version);
    let versions = store.versions(&iris()).unwrap();
    assert_eq!(versions.iter().filter(|r| r.latest).count(), 1);

    store.delete(&iris(), "latest").unwrap();
    assert_eq!(store.resolve(&iris(), "latest").unwrap().version, v1.version);
    assert!(!tmp.path().join("home/bundles").join(v2.digest.hex()).exists());
    assert!(matches!(store.resolve(&iris(), "2.0.0"), Err(BundleError::NotFound { .. })));

    store.delete(&iris(), "1.0.0").unwrap();
    assert!(store.list().unwrap().is_empty());
    assert!(matches!(store.resolve(&iris(), "latest"), Err(BundleError::NotFound { .. })));
}

#[test]
fn names_are_unique_across_namespaces() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    build(&store, &model_dir(tmp.path(), MANIFEST, b"one")).unwrap();
    let other = MANIFEST.replace("1.0.0", "2.0.0") + "namespace: risk\n";
    let err = build(&store, &model_dir(tmp.path(), &other, b"two")).unwrap_err();
    assert!(matches!(err, BundleError::NameTaken { .. }), "{err}");
}

#[test]
fn missing_model_file_names_field() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    let dir = model_dir(tmp.path(), &MANIFEST.replace("model.onnx", "missing.onnx"), b"m");
    let err = store.stage(&dir).unwrap_err().to_string();
    assert!(err.contains("palisade.yaml: field `model.path`"), "{err}");
    assert!(err.contains("missing.onnx"), "{err}");
}

/// Tampering of every kind is refused, and the error names the file.
#[test]
fn tampered_bundles_are_refused() {
    type Tamper = fn(&Path);
    let cases: [(&str, Tamper, &str); 5] = [
        (
            "flip one byte of the model",
            |d| {
                let p = d.join("model.onnx");
                let mut b = fs::read(&p).unwrap();
                b[3] ^= 1;
                fs::write(p, b).unwrap();
            },
            "model.onnx",
        ),
        (
            "append to the manifest",
            |d| {
                let p = d.join("palisade.yaml");
                let mut b = fs::read(&p).unwrap();
                b.extend_from_slice(b"# hi\n");
                fs::write(p, b).unwrap();
            },
            "palisade.yaml",
        ),
        ("delete the signature", |d| fs::remove_file(d.join("signature.json")).unwrap(), "signature.json"),
        ("add a file", |d| fs::write(d.join("extra.py"), b"import os").unwrap(), "extra.py"),
        (
            "replace the model with a symlink",
            |d| {
                fs::remove_file(d.join("model.onnx")).unwrap();
                std::os::unix::fs::symlink("/etc/hostname", d.join("model.onnx")).unwrap();
            },
            "model.onnx",
        ),
    ];
    for (what, tamper, file) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("home")).unwrap();
        let record = build(&store, &model_dir(tmp.path(), MANIFEST, b"model-bytes")).unwrap();
        let dir = tmp.path().join("home/bundles").join(record.digest.hex());
        tamper(&dir);
        let err = store.load(&record).unwrap_err();
        assert!(matches!(err, BundleError::Tampered { .. }), "{what}: {err}");
        assert!(err.to_string().contains(&format!("`{file}`")), "{what}: {err}");
    }
}

/// An edited index that no longer hashes to the bundle's address is refused.
#[test]
fn forged_index_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    let record = build(&store, &model_dir(tmp.path(), MANIFEST, b"model-bytes")).unwrap();
    let dir = tmp.path().join("home/bundles").join(record.digest.hex());
    fs::write(dir.join("model.onnx"), b"other-bytes").unwrap();
    let index = fs::read_to_string(dir.join("bundle.json")).unwrap();
    let old = palisade_bundle_sha(b"model-bytes");
    let new = palisade_bundle_sha(b"other-bytes");
    fs::write(dir.join("bundle.json"), index.replace(&old, &new)).unwrap();
    let err = store.load(&record).unwrap_err().to_string();
    assert!(err.contains("`bundle.json`"), "{err}");
}

fn palisade_bundle_sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A build that dies before commit leaves no bundle and no reference behind.
#[test]
fn abandoned_build_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let store = Store::open(&home).unwrap();
    let staged = store.stage(&model_dir(tmp.path(), MANIFEST, b"m")).unwrap();
    assert!(staged.model_path().exists());
    drop(staged);
    assert!(store.list().unwrap().is_empty());
    assert_eq!(fs::read_dir(home.join("bundles")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(home.join("tmp")).unwrap().count(), 0);
}

/// Debris of a killed build (a staging directory that was never renamed) is invisible to readers.
#[test]
fn crash_debris_is_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let store = Store::open(&home).unwrap();
    let staged = store.stage(&model_dir(tmp.path(), MANIFEST, b"m")).unwrap();
    std::mem::forget(staged);
    let reopened = Store::open(&home).unwrap();
    assert!(reopened.list().unwrap().is_empty());
    assert_eq!(fs::read_dir(home.join("bundles")).unwrap().count(), 0);
}

const UPSTREAM: &str = "name: iris\nversion: \"1.0.0\"\nowners: [alice@example.com]\nmodel:\n  format: upstream\n  upstream:\n    url: https://127.0.0.1:9000\n    tls: {ca: certs/upstream-ca.pem, mutual: true}\n  inputs: [{name: X, datatype: FP32, shape: [-1, 4]}]\n  outputs: [{name: predict, datatype: INT64, shape: [-1]}]\n";

/// An upstream model's bundle holds the manifest and the CA it names, both under the digest.
#[test]
fn upstream_bundle_carries_its_ca_under_the_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    let dir = tmp.path().join("src");
    fs::create_dir_all(dir.join("certs")).unwrap();
    fs::write(dir.join("palisade.yaml"), UPSTREAM).unwrap();

    // The CA must exist, and the error names the field.
    let err = store.stage(&dir).unwrap_err().to_string();
    assert!(err.contains("palisade.yaml: field `model.upstream.tls.ca`"), "{err}");
    assert!(err.contains("upstream-ca.pem"), "{err}");

    fs::write(dir.join("certs/upstream-ca.pem"), b"-----BEGIN CERTIFICATE-----\n").unwrap();
    let record = build(&store, &dir).unwrap();
    let bundle = store.load(&record).unwrap();
    let paths: Vec<_> = bundle.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["certs/upstream-ca.pem", "palisade.yaml", "signature.json"]);
    // No model file: the manifest defines the model.
    assert_eq!(bundle.model_path(), bundle.dir.join("palisade.yaml"));

    // Swapping the trust anchors in the stored bundle is tampering.
    let stored_ca = bundle.dir.join("certs/upstream-ca.pem");
    let mut perms = fs::metadata(&stored_ca).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    fs::set_permissions(&stored_ca, perms).unwrap();
    fs::write(&stored_ca, b"-----BEGIN CERTIFICATE-----\nattacker\n").unwrap();
    let err = store.load(&record).unwrap_err();
    assert!(
        matches!(err, BundleError::Tampered { ref file, .. } if file == "certs/upstream-ca.pem"),
        "{err}"
    );
}

/// A protobuf length-delimited field.
fn pb_field(field: u64, payload: &[u8]) -> Vec<u8> {
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let mut out = Vec::new();
    varint(field << 3 | 2, &mut out);
    varint(payload.len() as u64, &mut out);
    out.extend_from_slice(payload);
    out
}

/// An ONNX model (as protobuf bytes) whose one initializer is stored in `location`.
fn model_with_external_data(location: &str) -> Vec<u8> {
    let mut entry = pb_field(1, b"location");
    entry.extend(pb_field(2, location.as_bytes()));
    let mut tensor = pb_field(8, b"weight");
    tensor.extend(pb_field(13, &entry));
    tensor.extend([14 << 3, 1]);
    pb_field(7, &pb_field(5, &tensor))
}

#[test]
fn external_data_enters_the_bundle_and_is_verified() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    let dir = model_dir(tmp.path(), MANIFEST, &model_with_external_data("model.onnx.data"));
    fs::write(dir.join("model.onnx.data"), b"weights").unwrap();
    let record = build(&store, &dir).unwrap();
    let bundle = store.load(&record).unwrap();
    let paths: Vec<_> = bundle.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["model.onnx", "model.onnx.data", "palisade.yaml", "signature.json"]);
    assert_eq!(fs::read(bundle.dir.join("model.onnx.data")).unwrap(), b"weights");

    // The data file changes the digest, and tampering with it is refused.
    fs::write(dir.join("model.onnx.data"), b"weightz").unwrap();
    let other = build(&store, &dir);
    assert!(matches!(other, Err(BundleError::VersionExists { .. })), "{other:?}");
    fs::write(bundle.dir.join("model.onnx.data"), b"weightz").unwrap();
    let err = store.load(&record).unwrap_err();
    assert!(err.to_string().contains("`model.onnx.data`"), "{err}");
}

#[test]
fn external_data_in_a_subdirectory_of_a_nested_model() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    let manifest = MANIFEST.replace("path: model.onnx", "path: net/model.onnx");
    let dir = model_dir(tmp.path(), &manifest, b"unused");
    fs::create_dir_all(dir.join("net/weights")).unwrap();
    fs::write(dir.join("net/model.onnx"), model_with_external_data("weights/w.bin")).unwrap();
    fs::write(dir.join("net/weights/w.bin"), b"w").unwrap();
    let bundle = store.load(&build(&store, &dir).unwrap()).unwrap();
    assert!(bundle.files.iter().any(|f| f.path == "net/weights/w.bin"), "{:?}", bundle.files);
}

#[test]
fn external_data_outside_the_model_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    fs::write(tmp.path().join("secret"), b"s").unwrap();
    for location in ["../secret", "/etc/hostname", ".hidden", "a/../../secret", "missing.data"] {
        let dir = model_dir(tmp.path(), MANIFEST, &model_with_external_data(location));
        let err = store.stage(&dir).unwrap_err().to_string();
        assert!(err.contains("field `model.path`"), "{location}: {err}");
        assert!(err.contains(&format!("`{location}`")), "{location}: {err}");
    }
    // A symbolic link that leaves the model directory is refused; one that stays inside is
    // followed (the bundle holds a copy of the file either way).
    let dir = model_dir(tmp.path(), MANIFEST, &model_with_external_data("model.onnx.data"));
    std::os::unix::fs::symlink(tmp.path().join("secret"), dir.join("model.onnx.data")).unwrap();
    let err = store.stage(&dir).unwrap_err().to_string();
    assert!(err.contains("symbolic link"), "{err}");
    let dir = model_dir(tmp.path(), MANIFEST, &model_with_external_data("model.onnx.data"));
    std::os::unix::fs::symlink("model.onnx", dir.join("model.onnx.data")).unwrap();
    let staged = store.stage(&dir).unwrap();
    assert!(staged.model_path().exists());
    let dir = model_dir(tmp.path(), MANIFEST, &model_with_external_data("sub/w.bin"));
    std::os::unix::fs::symlink(tmp.path(), dir.join("sub")).unwrap();
    fs::write(tmp.path().join("w.bin"), b"w").unwrap();
    let err = store.stage(&dir).unwrap_err().to_string();
    assert!(err.contains("symbolic link"), "{err}");
}

/// Finding 4 of the second review: a symbolic link to a directory pulled outside files into
/// a bundle (`model.path: sub/model.onnx` with `sub -> /elsewhere`; an upstream's
/// `tls.ca: sub/combined.pem` stored a private key from outside). Every path a manifest
/// names now stays inside the model directory, whatever links lie on the way.
#[test]
fn finding_4_links_out_of_the_model_directory_are_refused_naming_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("home")).unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    fs::create_dir_all(&elsewhere).unwrap();
    fs::write(elsewhere.join("model.onnx"), b"outside model").unwrap();
    fs::write(elsewhere.join("combined.pem"), b"-----BEGIN PRIVATE KEY-----\n").unwrap();
    let manifests = [
        ("model.path", MANIFEST.replace("path: model.onnx", "path: sub/model.onnx"), "sub/model.onnx"),
        (
            "model.upstream.tls.ca",
            UPSTREAM.replace("certs/upstream-ca.pem", "sub/combined.pem").replace("1.0.0", "2.0.0"),
            "sub/combined.pem",
        ),
    ];
    for (field, manifest, named) in &manifests {
        // The directory link, an absolute link to the file, a relative link that climbs out,
        // and a link inside that points to a link out.
        let links: [(&str, PathBuf); 4] = [
            ("sub", elsewhere.clone()),
            (named, elsewhere.join(named.rsplit('/').next().unwrap())),
            (named, PathBuf::from(format!("../../elsewhere/{}", named.rsplit('/').next().unwrap()))),
            ("sub", PathBuf::from("inner")),
        ];
        for (link, target) in links {
            let dir = model_dir(tmp.path(), manifest, b"model-bytes");
            if link != "sub" {
                fs::create_dir_all(dir.join("sub")).unwrap();
            }
            if target == Path::new("inner") {
                std::os::unix::fs::symlink(&elsewhere, dir.join("inner")).unwrap();
            }
            std::os::unix::fs::symlink(&target, dir.join(link)).unwrap();
            let err = store.stage(&dir).unwrap_err().to_string();
            assert!(err.contains(&format!("field `{field}`")), "{field} via {target:?}: {err}");
            assert!(err.contains(named), "{field} via {target:?}: {err}");
            assert!(err.contains("leads out of the model directory"), "{field} via {target:?}: {err}");
        }
        // A link that stays inside is followed.
        let dir = model_dir(tmp.path(), manifest, b"model-bytes");
        fs::create_dir_all(dir.join("real")).unwrap();
        fs::write(dir.join("real").join(named.rsplit('/').next().unwrap()), b"inside").unwrap();
        std::os::unix::fs::symlink("real", dir.join("sub")).unwrap();
        let bundle = store.load(&build(&store, &dir).unwrap()).unwrap();
        assert_eq!(fs::read(bundle.dir.join(named)).unwrap(), b"inside", "{field}");
    }
    // The manifest itself is read inside the directory too.
    let dir = model_dir(tmp.path(), MANIFEST, b"model-bytes");
    fs::write(elsewhere.join("palisade.yaml"), MANIFEST).unwrap();
    fs::remove_file(dir.join("palisade.yaml")).unwrap();
    std::os::unix::fs::symlink(elsewhere.join("palisade.yaml"), dir.join("palisade.yaml")).unwrap();
    let err = store.stage(&dir).unwrap_err().to_string();
    assert!(err.contains("leads out of the model directory"), "{err}");
}

/// Finding 5 of the second review: the store made private files public. The home, the
/// store's directories and every bundle file are private now, whatever the source's modes.
#[test]
fn finding_5_the_store_keeps_models_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let store = Store::open(&home).unwrap();
    assert!(store.warnings().is_empty(), "{:?}", store.warnings());
    let manifest = MANIFEST.replace("path: model.onnx", "path: net/model.onnx");
    let dir = model_dir(tmp.path(), &manifest, b"unused");
    fs::create_dir_all(dir.join("net")).unwrap();
    fs::write(dir.join("net/model.onnx"), b"secret weights").unwrap();
    for source in [dir.join("net/model.onnx"), dir.join("palisade.yaml")] {
        fs::set_permissions(&source, fs::Permissions::from_mode(0o644)).unwrap();
    }
    let record = build(&store, &dir).unwrap();
    let bundle = store.load(&record).unwrap();
    for private_dir in [
        home.clone(),
        home.join("bundles"),
        home.join("models"),
        home.join("tmp"),
        bundle.dir.clone(),
        bundle.dir.join("net"),
        home.join("models/iris"),
        home.join("models/iris/versions"),
        home.join("models/iris/tags"),
    ] {
        assert_eq!(mode(&private_dir), 0o700, "{}", private_dir.display());
    }
    for file in &bundle.files {
        assert_eq!(mode(&bundle.dir.join(&file.path)), 0o600, "{}", file.path);
    }
    for reference in [
        home.join("models/iris/versions/1.0.0.json"),
        home.join("models/iris/tags/latest.json"),
        bundle.dir.join("bundle.json"),
    ] {
        assert_eq!(mode(&reference), 0o600, "{}", reference.display());
    }
    // A home made open by hand is named, with the fix.
    fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).unwrap();
    let warnings = store.warnings();
    assert!(warnings.iter().any(|w| w.contains(&format!("chmod 700 {}", home.display()))), "{warnings:?}");
}
