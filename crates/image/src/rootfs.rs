//! What the image's root filesystem holds, layer by layer.

use std::path::Path;

use palisade_bundle::store::INDEX_FILE;
use palisade_bundle::{BundleRecord, Store, VerifiedBundle};

use crate::layer::{HostFile, Layer, Owner, ROOT};
use crate::{BINARY, CA_ROOTS, HOME, ImageError, ImageSpec, USER_ID};

/// The server's user: owns the home, nothing else.
const USER: Owner = Owner { uid: USER_ID, gid: USER_ID };

/// Base, binary and home layers for `spec`.
pub(crate) fn layers(
    record: &BundleRecord,
    bundle: &VerifiedBundle,
    components: &[(BundleRecord, VerifiedBundle)],
    spec: &ImageSpec,
) -> Result<Vec<Layer>, ImageError> {
    Ok(vec![base(spec)?, binary(spec)?, home(record, bundle, components, spec.epoch)?])
}

fn relative(path: &str) -> &str {
    path.trim_start_matches('/')
}

/// `/etc/passwd` and `/etc/group` with root and `palisade` (65532), glibc's name-service
/// switch (files and DNS, both built into a static glibc), the CA roots and `/tmp`.
fn base(spec: &ImageSpec) -> Result<Layer, ImageError> {
    let mut layer = Layer::new("base");
    let passwd = format!(
        "root:x:0:0:root:/root:/sbin/nologin\npalisade:x:{USER_ID}:{USER_ID}:palisade:{HOME}:/sbin/nologin\n"
    );
    let group = format!("root:x:0:\npalisade:x:{USER_ID}:\n");
    layer.bytes("etc/passwd", ROOT, 0o644, passwd.into_bytes());
    layer.bytes("etc/group", ROOT, 0o644, group.into_bytes());
    layer.bytes(
        "etc/nsswitch.conf",
        ROOT,
        0o644,
        b"passwd: files\ngroup: files\nhosts: files dns\n".to_vec(),
    );
    layer.bytes(relative(CA_ROOTS), ROOT, 0o644, ca_roots(&spec.ca_roots)?);
    layer.dir("tmp", ROOT, 0o1777);
    Ok(layer)
}

/// Largest CA bundle accepted (Debian's is about 200 KiB).
const MAX_CA_ROOTS_BYTES: u64 = 16 << 20;

/// The CA roots file, which must hold at least one PEM certificate.
fn ca_roots(path: &Path) -> Result<Vec<u8>, ImageError> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(ImageError::io(path, "open"))?;
    let mut bytes = Vec::new();
    file.take(MAX_CA_ROOTS_BYTES + 1).read_to_end(&mut bytes).map_err(ImageError::io(path, "read"))?;
    let pem = String::from_utf8_lossy(&bytes);
    if bytes.len() as u64 > MAX_CA_ROOTS_BYTES || !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(ImageError::CaRoots { path: path.to_owned() });
    }
    Ok(bytes)
}

/// The static `palisade` binary.
fn binary(spec: &ImageSpec) -> Result<Layer, ImageError> {
    let mut layer = Layer::new("binary");
    let size = std::fs::metadata(&spec.binary).map_err(ImageError::io(&spec.binary, "read"))?.len();
    let label = spec.binary.display().to_string();
    let file = HostFile { source: spec.binary.clone(), size, sha256: None, label };
    layer.file(relative(BINARY), ROOT, 0o755, file);
    Ok(layer)
}

/// The home as the store lays it out, with this bundle (the latest of its name) and the
/// bundles it serves through: private, owned by the user. A component is its name's latest
/// when it is the store's latest (graphs name those without a version), or else the only
/// version of its name in the image.
fn home(
    record: &BundleRecord,
    bundle: &VerifiedBundle,
    components: &[(BundleRecord, VerifiedBundle)],
    epoch: u64,
) -> Result<Layer, ImageError> {
    let mut layer = Layer::new("home");
    let home = relative(HOME);
    layer.dir("home", ROOT, 0o755);
    layer.dir(home, USER, 0o700);
    for dir in ["bundles", "models", "tmp"] {
        layer.dir(&format!("{home}/{dir}"), USER, 0o700);
    }
    let mut latest = std::collections::BTreeSet::from([record.name.clone()]);
    let mut entries = vec![(record, bundle, true)];
    for (component, loaded) in components.iter().filter(|(c, _)| c.latest) {
        entries.push((component, loaded, latest.insert(component.name.clone())));
    }
    for (component, loaded) in components.iter().filter(|(c, _)| !c.latest) {
        entries.push((component, loaded, latest.insert(component.name.clone())));
    }
    for (record, bundle, is_latest) in entries {
        let bundle_dir = format!("{home}/bundles/{}", bundle.digest.hex());
        layer.dir(&bundle_dir, USER, 0o700);
        layer.bytes(&format!("{bundle_dir}/{INDEX_FILE}"), USER, 0o600, bundle.index_bytes.clone());
        for file in &bundle.files {
            let host = HostFile {
                source: bundle.dir.join(&file.path),
                size: file.size,
                sha256: Some(file.sha256.clone()),
                label: file.path.clone(),
            };
            layer.file(&format!("{bundle_dir}/{}", file.path), USER, 0o600, host);
        }
        for (path, bytes) in Store::reference_files(record, epoch)? {
            if is_latest || !path.contains("/tags/") {
                layer.bytes(&format!("{home}/{path}"), USER, 0o600, bytes);
            }
        }
    }
    Ok(layer)
}
