//! The OCI image layout directory, and the tar of it that Docker also loads.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::layer::HashingWriter;
use crate::oci::{Descriptor, DockerManifestEntry, Index, MEDIA_INDEX, MEDIA_MANIFEST, Manifest};
use crate::{ImageError, ImageSpec};

/// The `oci-layout` file's content.
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
/// Largest JSON document (index, manifest, config) read back from a layout.
const MAX_DOCUMENT_BYTES: u64 = 4 << 20;

/// `blobs/sha256/` of a layout being written.
#[derive(Debug)]
pub(crate) struct Blobs {
    dir: PathBuf,
}

impl Blobs {
    /// A new temporary file among the blobs, renamed to its digest by [`Blobs::commit`].
    pub fn temp_file(&self) -> Result<(PathBuf, File), ImageError> {
        let file = tempfile::Builder::new()
            .prefix(".blob-")
            .tempfile_in(&self.dir)
            .map_err(ImageError::io(&self.dir, "create a file in"))?;
        let (file, path) = file.keep().map_err(|e| ImageError::Io {
            path: self.dir.clone(),
            action: "create a file in",
            source: e.error,
        })?;
        Ok((path, file))
    }

    /// Syncs and renames a finished temporary file to `blobs/sha256/<hex>`.
    pub fn commit(
        &self,
        tmp: PathBuf,
        file: File,
        media_type: &str,
        digest: String,
        size: u64,
    ) -> Result<Descriptor, ImageError> {
        file.sync_all().map_err(ImageError::io(&tmp, "sync"))?;
        let descriptor =
            Descriptor { media_type: media_type.to_owned(), digest, size, annotations: BTreeMap::new() };
        let path = self.dir.join(descriptor.hex());
        fs::rename(&tmp, &path).map_err(ImageError::io(&path, "create"))?;
        Ok(descriptor)
    }

    /// Writes `value` as compact JSON into a blob.
    pub fn put_json<T: Serialize>(&self, media_type: &str, value: &T) -> Result<Descriptor, ImageError> {
        let bytes = serde_json::to_vec(value).map_err(|e| ImageError::Io {
            path: self.dir.clone(),
            action: "encode a document for",
            source: io::Error::other(e),
        })?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        let (tmp, mut file) = self.temp_file()?;
        file.write_all(&bytes).map_err(ImageError::io(&tmp, "write"))?;
        self.commit(tmp, file, media_type, digest, bytes.len() as u64)
    }
}

/// A layout written beside its final place, moved there when complete.
#[derive(Debug)]
pub(crate) struct Staging {
    dir: Option<tempfile::TempDir>,
    out: PathBuf,
    blobs: Blobs,
}

impl Staging {
    /// Checks that `out` may be (re)placed, and creates the staging directory beside it.
    pub fn create(out: &Path) -> Result<Staging, ImageError> {
        replaceable(out)?;
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(ImageError::io(&parent, "create"))?;
        let dir = tempfile::Builder::new()
            .prefix(".palisade-image-")
            .tempdir_in(&parent)
            .map_err(ImageError::io(&parent, "create a directory in"))?;
        let blobs = dir.path().join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(ImageError::io(&blobs, "create"))?;
        Ok(Staging { out: out.to_owned(), blobs: Blobs { dir: blobs }, dir: Some(dir) })
    }

    pub fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    /// Writes `oci-layout`, `index.json` and `manifest.json`, and moves the layout to `out`.
    pub fn finish(
        mut self,
        spec: &ImageSpec,
        manifest: &Descriptor,
        config: &Descriptor,
        layers: &[Descriptor],
    ) -> Result<PathBuf, ImageError> {
        let Some(dir) = self.dir.take() else {
            return Err(ImageError::Layout { path: self.out.clone(), problem: "written twice".to_owned() });
        };
        let root = dir.path();
        let tag = spec.tag.rsplit_once(':').map_or(spec.tag.as_str(), |(_, tag)| tag);
        let mut entry = manifest.clone();
        entry.annotations.insert("org.opencontainers.image.ref.name".to_owned(), tag.to_owned());
        entry.annotations.insert("io.containerd.image.name".to_owned(), spec.tag.clone());
        let index = Index { schema_version: 2, media_type: MEDIA_INDEX.to_owned(), manifests: vec![entry] };
        let docker = vec![DockerManifestEntry {
            config: format!("blobs/sha256/{}", config.hex()),
            repo_tags: vec![spec.tag.clone()],
            layers: layers.iter().map(|l| format!("blobs/sha256/{}", l.hex())).collect(),
        }];
        write_file(&root.join("oci-layout"), OCI_LAYOUT)?;
        write_file(&root.join("index.json"), &json(&index)?)?;
        write_file(&root.join("manifest.json"), &json(&docker)?)?;
        replaceable(&self.out)?;
        if self.out.exists() {
            fs::remove_dir_all(&self.out).map_err(ImageError::io(&self.out, "replace"))?;
        }
        let kept = dir.keep();
        fs::rename(&kept, &self.out).map_err(|e| {
            let _ = fs::remove_dir_all(&kept);
            ImageError::Io { path: self.out.clone(), action: "create", source: e }
        })?;
        Ok(self.out.clone())
    }
}

/// `out` is absent, an empty directory, or a layout this crate wrote (it has `oci-layout`).
fn replaceable(out: &Path) -> Result<(), ImageError> {
    match fs::read_dir(out) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => Err(ImageError::OutputExists { path: out.to_owned() }),
        Ok(mut entries) => {
            if entries.next().is_none()
                || out.join("oci-layout").is_file() && out.join("index.json").is_file()
            {
                Ok(())
            } else {
                Err(ImageError::OutputExists { path: out.to_owned() })
            }
        }
    }
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, ImageError> {
    serde_json::to_vec(value).map_err(|e| ImageError::Io {
        path: PathBuf::from("index.json"),
        action: "encode",
        source: io::Error::other(e),
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    fs::write(path, bytes).map_err(ImageError::io(path, "write"))
}

/// Writes the layout directory as an uncompressed tar at `tar` (sorted, mtime `epoch`,
/// root-owned), through a temporary file; returns its size.
pub(crate) fn write_tar(layout: &Path, tar: &Path, epoch: u64) -> Result<u64, ImageError> {
    let mut entries = BTreeMap::new();
    collect(layout, "", &mut entries)?;
    let parent = match tar.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".palisade-image-")
        .suffix(".tar")
        .tempfile_in(&parent)
        .map_err(ImageError::io(&parent, "create a file in"))?;
    let mut builder = tar::Builder::new(HashingWriter::new(BufWriter::with_capacity(1 << 20, tmp.as_file())));
    for (name, source) in &entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(epoch);
        header.set_uid(0);
        header.set_gid(0);
        match source {
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, format!("{name}/"), io::empty())
            }
            Some(path) => {
                let file = File::open(path).map_err(ImageError::io(path, "open"))?;
                let size = file.metadata().map_err(ImageError::io(path, "read"))?.len();
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(size);
                builder.append_data(&mut header, name, file)
            }
        }
        .map_err(ImageError::io(tar, "write"))?;
    }
    let counted = builder.into_inner().map_err(ImageError::io(tar, "write"))?;
    let (_, size) = counted.digest();
    counted.into_inner().into_inner().map_err(|e| ImageError::io(tar, "write")(e.into_error()))?;
    tmp.as_file().sync_all().map_err(ImageError::io(tar, "sync"))?;
    tmp.persist(tar).map_err(|e| ImageError::Io {
        path: tar.to_owned(),
        action: "create",
        source: e.error,
    })?;
    Ok(size)
}

/// Every file and directory under `dir`, by path relative to the layout (`None`: a directory).
fn collect(dir: &Path, prefix: &str, out: &mut BTreeMap<String, Option<PathBuf>>) -> Result<(), ImageError> {
    for entry in fs::read_dir(dir).map_err(ImageError::io(dir, "list"))? {
        let entry = entry.map_err(ImageError::io(dir, "list"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let relative = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        let kind = entry.file_type().map_err(ImageError::io(&path, "read"))?;
        if kind.is_dir() {
            out.insert(relative.clone(), None);
            collect(&path, &relative, out)?;
        } else if kind.is_file() {
            out.insert(relative, Some(path));
        } else {
            return Err(ImageError::Layout {
                path: path.clone(),
                problem: "not a file or directory".to_owned(),
            });
        }
    }
    Ok(())
}

/// An image read back from a layout directory, for pushing.
#[derive(Debug)]
pub struct LayoutImage {
    /// The layout directory.
    pub dir: PathBuf,
    /// The manifest's descriptor.
    pub manifest: Descriptor,
    /// The manifest's bytes, exactly as stored (their SHA-256 is its digest).
    pub manifest_bytes: Vec<u8>,
    /// The parsed manifest.
    pub parsed: Manifest,
}

impl LayoutImage {
    /// Path of a blob.
    pub fn blob_path(&self, descriptor: &Descriptor) -> PathBuf {
        self.dir.join("blobs").join("sha256").join(descriptor.hex())
    }
}

/// Reads the one image of a layout directory and checks its manifest against its digest.
pub fn read_layout(dir: &Path) -> Result<LayoutImage, ImageError> {
    let bad = |problem: String| ImageError::Layout { path: dir.to_owned(), problem };
    let index_bytes = read_capped(&dir.join("index.json"))?;
    let index: Index = serde_json::from_slice(&index_bytes).map_err(|e| bad(format!("index.json: {e}")))?;
    let [manifest] = index.manifests.as_slice() else {
        return Err(bad(format!("index.json lists {} images, not one", index.manifests.len())));
    };
    if manifest.media_type != MEDIA_MANIFEST {
        return Err(bad(format!("index.json lists a {}, not an image manifest", manifest.media_type)));
    }
    let hex_digest = manifest.hex();
    if hex_digest.len() != 64 || !hex_digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(format!("index.json names the manifest `{}`", manifest.digest)));
    }
    let manifest_bytes = read_capped(&dir.join("blobs").join("sha256").join(hex_digest))?;
    if hex::encode(Sha256::digest(&manifest_bytes)) != hex_digest {
        return Err(bad(format!("the manifest blob does not hash to {}", manifest.digest)));
    }
    let parsed: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| bad(format!("manifest: {e}")))?;
    for blob in std::iter::once(&parsed.config).chain(&parsed.layers) {
        let hex_digest = blob.hex();
        if hex_digest.len() != 64 || !hex_digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(format!("the manifest names the blob `{}`", blob.digest)));
        }
    }
    Ok(LayoutImage { dir: dir.to_owned(), manifest: manifest.clone(), manifest_bytes, parsed })
}

fn read_capped(path: &Path) -> Result<Vec<u8>, ImageError> {
    use std::io::Read as _;
    let file = File::open(path).map_err(ImageError::io(path, "open"))?;
    let mut bytes = Vec::new();
    file.take(MAX_DOCUMENT_BYTES + 1).read_to_end(&mut bytes).map_err(ImageError::io(path, "read"))?;
    if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(ImageError::Layout {
            path: path.to_owned(),
            problem: format!("larger than {MAX_DOCUMENT_BYTES} bytes"),
        });
    }
    Ok(bytes)
}
