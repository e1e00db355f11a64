//! The local bundle store under `$PALISADE_HOME`.
//!
//! ```text
//! $PALISADE_HOME/
//!   bundles/<sha256-hex>/          one immutable directory per bundle, named by its digest
//!     palisade.yaml                the manifest, as written
//!     <model.path>                 the model file (none for an upstream model)
//!     <external data>              files the ONNX model stores tensors in (`model.onnx.data`),
//!                                  next to the model file
//!     <model.upstream.tls.ca>      an upstream model's trust anchors, when named
//!     signature.json               the resolved inputs/outputs (written by `palisade build`)
//!     engine.json                  the engine `palisade build` chose for an ONNX model
//!     bundle.json                  the index: every other file with its size and SHA-256
//!   models/<name>/versions/<version>.json   version -> digest
//!   models/<name>/tags/latest.json          the most recently built version
//!   tmp/                           staging area; a crash leaves debris here, never a half bundle
//! ```
//!
//! Everything under the home is private: directories are created 0700 and files 0600
//! (staging, bundles, references), so a model copied from a 0600 file stays unreadable to
//! other users. Every file a manifest names is opened inside the model directory through a
//! capability on that directory (`cap_std::fs::Dir`): a path or a symbolic link that leads
//! out of it is refused naming the path, and the file hashed is the file opened.
//!
//! A bundle's digest is the SHA-256 of a canonical listing of its files (path, size and SHA-256
//! of each, sorted by path), so it changes when any byte, name or file changes. Loading a bundle
//! recomputes every file's digest and refuses the bundle on any difference, naming the file.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use palisade_core::{ModelName, ModelSignature, Namespace, Version};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::manifest::{BundlePath, MANIFEST_FILE, Manifest};
use crate::{BundleDigest, BundleError};

/// The index file inside a bundle.
pub const INDEX_FILE: &str = "bundle.json";
/// The resolved signature file inside a bundle.
pub const SIGNATURE_FILE: &str = "signature.json";
/// The file recording the engine chosen at build time (`{"engine": "tract"}`).
pub const ENGINE_FILE: &str = "engine.json";

/// The engine `palisade build` chose for an ONNX model, after its self-test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuiltEngine {
    /// tract.
    Tract,
    /// onnxruntime.
    Onnxruntime,
}

impl BuiltEngine {
    /// The engine's name.
    pub fn as_str(self) -> &'static str {
        match self {
            BuiltEngine::Tract => "tract",
            BuiltEngine::Onnxruntime => "onnxruntime",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EngineRecord {
    engine: BuiltEngine,
}
const INDEX_SCHEMA: &str = "palisade.bundle/v1";
/// The tag naming a model's latest version (`NAME:latest`).
pub const LATEST_TAG: &str = "latest";
const MAX_INDEX_BYTES: u64 = 4 * 1024 * 1024;
const MAX_FILES: usize = 10_000;
/// Largest model file read to find its external data files (protobuf's own limit is 2 GiB).
const MAX_MODEL_SCAN_BYTES: u64 = 2 << 30;
/// Staging directories older than this are debris from a crashed build.
const STALE_STAGING: Duration = Duration::from_secs(3600);

/// The bundle store in one Palisade home directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// One file listed in a bundle's index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Path relative to the bundle root.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, lower-case hex.
    pub sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Index {
    schema: String,
    digest: BundleDigest,
    files: Vec<FileEntry>,
}

/// What a version reference records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionRef {
    digest: BundleDigest,
    namespace: Namespace,
    /// Seconds since the Unix epoch.
    created: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TagRef {
    version: Version,
}

/// A stored model version, as listed (not yet verified).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleRecord {
    /// The model's name.
    pub name: ModelName,
    /// The version.
    pub version: Version,
    /// The namespace.
    pub namespace: Namespace,
    /// The bundle's content address.
    pub digest: BundleDigest,
    /// When it was built, in seconds since the Unix epoch.
    pub created: u64,
    /// Whether the `latest` tag points here.
    pub latest: bool,
}

/// A bundle whose every file was checked against its digest.
#[derive(Debug, Clone)]
pub struct VerifiedBundle {
    /// Where the bundle lives.
    pub dir: PathBuf,
    /// Its content address.
    pub digest: BundleDigest,
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The resolved signature recorded at build time, if any.
    pub signature: Option<ModelSignature>,
    /// The engine chosen at build time, if recorded (bundles built before engines were
    /// recorded have none).
    pub engine: Option<BuiltEngine>,
    /// What `palisade build` computed for the manifest's `explainer:` (present exactly
    /// when the manifest has one).
    pub explainer: Option<crate::explainer::ExplainerRecord>,
    /// What `palisade build` computed for the manifest's `monitoring:` (present exactly
    /// when the manifest has one).
    pub monitoring: Option<crate::monitoring::MonitoringRecord>,
    /// Every file, as indexed.
    pub files: Vec<FileEntry>,
    /// The index file (`bundle.json`) exactly as read and checked against the digest, so a
    /// copy of the bundle (an image layer) holds the bytes that were verified.
    pub index_bytes: Vec<u8>,
}

impl VerifiedBundle {
    /// Path of the file that defines the model: the model file, or for an upstream model
    /// (which has none) the manifest. Files the manifest names sit in the same bundle.
    pub fn model_path(&self) -> PathBuf {
        defining_file(&self.manifest, &self.dir)
    }
}

/// Reads the engine recorded in the bundle whose model file is `model_path` (as
/// [`VerifiedBundle::model_path`] gives it), for loaders that are handed the model file
/// only. `None` when the bundle records none, or the file is not in a bundle.
pub fn recorded_engine(manifest: &Manifest, model_path: &Path) -> Option<BuiltEngine> {
    let depth = manifest.model.as_ref()?.path()?.as_str().split('/').count();
    let root = model_path.ancestors().nth(depth)?;
    let bytes = read_capped(&root.join(ENGINE_FILE), MAX_INDEX_BYTES).ok()?;
    serde_json::from_slice::<EngineRecord>(&bytes).ok().map(|r| r.engine)
}

fn defining_file(manifest: &Manifest, dir: &Path) -> PathBuf {
    match manifest.model.as_ref().and_then(|m| m.path()) {
        Some(path) => path.under(dir),
        None => dir.join(MANIFEST_FILE),
    }
}

/// A bundle being built: files copied into a private staging directory and hashed.
///
/// Dropped without [`Store::commit`], it leaves nothing behind.
#[derive(Debug)]
pub struct StagedBundle {
    dir: tempfile::TempDir,
    manifest: Manifest,
    files: Vec<FileEntry>,
    background: Option<Vec<u8>>,
    /// The `monitoring:` reference files read at staging, by field.
    references: Vec<(&'static str, Vec<u8>)>,
}

impl StagedBundle {
    /// The manifest being built.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Path of the staged copy of the file that defines the model (validate this copy, not
    /// the source): the model file, or for an upstream model the manifest.
    pub fn model_path(&self) -> PathBuf {
        defining_file(&self.manifest, self.dir.path())
    }

    /// The bytes of the manifest's `explainer.background` file, read (inside the model
    /// directory, at most [`crate::explainer::MAX_BACKGROUND_BYTES`]) when staging. The
    /// file is not part of the bundle: [`StagedBundle::set_explainer`] stores what the
    /// explainer needs of it.
    pub fn background(&self) -> Option<&[u8]> {
        self.background.as_deref()
    }

    /// The staging directory (files the manifest names are under it, as in the bundle).
    pub fn dir_path(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// The bytes of the reference file a `monitoring:` field names (its field, as
    /// `monitoring.drift.reference`), read inside the model directory when staging; not
    /// part of the bundle.
    pub fn reference(&self, field: &str) -> Option<&[u8]> {
        self.references.iter().find(|(f, _)| *f == field).map(|(_, bytes)| bytes.as_slice())
    }

    /// Records what monitoring needs as [`crate::monitoring::MONITORING_FILE`], covered by
    /// the digest.
    pub fn set_monitoring(
        &mut self,
        record: &crate::monitoring::MonitoringRecord,
    ) -> Result<(), BundleError> {
        let mut bytes = serde_json::to_vec(record).map_err(BundleError::Encode)?;
        bytes.push(b'\n');
        self.add_file(crate::monitoring::MONITORING_FILE, &bytes)
    }

    /// Records what the explainer needs as [`crate::explainer::EXPLAINER_FILE`], covered
    /// by the digest.
    pub fn set_explainer(&mut self, record: &crate::explainer::ExplainerRecord) -> Result<(), BundleError> {
        let mut bytes = serde_json::to_vec(record).map_err(BundleError::Encode)?;
        bytes.push(b'\n');
        self.add_file(crate::explainer::EXPLAINER_FILE, &bytes)
    }

    /// Records the resolved signature as `signature.json`, covered by the digest.
    pub fn set_signature(&mut self, signature: &ModelSignature) -> Result<(), BundleError> {
        let mut bytes = serde_json::to_vec_pretty(signature).map_err(BundleError::Encode)?;
        bytes.push(b'\n');
        self.add_file(SIGNATURE_FILE, &bytes)
    }

    /// Copies an opened source file to `path` in staging (mode 0600, directories 0700),
    /// hashing it.
    fn copy_in(
        &mut self,
        path: &BundlePath,
        input: &mut impl Read,
        source: &Path,
    ) -> Result<(u64, String), BundleError> {
        let destination = path.under(self.dir.path());
        if let Some(parent) = destination.parent() {
            palisade_private_files::create_dir_all(parent)?;
        }
        copy_hashed(input, source, &destination)
    }

    /// Records the engine chosen after the build-time self-test as `engine.json`, covered
    /// by the digest.
    pub fn set_engine(&mut self, engine: BuiltEngine) -> Result<(), BundleError> {
        let mut bytes = serde_json::to_vec(&EngineRecord { engine }).map_err(BundleError::Encode)?;
        bytes.push(b'\n');
        self.add_file(ENGINE_FILE, &bytes)
    }

    fn add_file(&mut self, name: &str, bytes: &[u8]) -> Result<(), BundleError> {
        let path = self.dir.path().join(name);
        write_synced(&path, bytes)?;
        self.files.retain(|f| f.path != name);
        self.files.push(FileEntry {
            path: name.to_owned(),
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(bytes)),
        });
        Ok(())
    }
}

impl Store {
    /// Opens (creating if needed, mode 0700) the store in a Palisade home directory.
    pub fn open(home: &Path) -> Result<Store, BundleError> {
        let store = Store { root: home.to_owned() };
        for dir in [store.bundles_dir(), store.models_dir(), store.tmp_dir()] {
            palisade_private_files::create_dir_all(&dir).map_err(BundleError::from)?;
        }
        store.clean_stale_staging();
        Ok(store)
    }

    /// Warnings about store directories other users may enter (a home made before modes
    /// were set, or by hand), each with the `chmod` that fixes it.
    pub fn warnings(&self) -> Vec<String> {
        [self.root.clone(), self.bundles_dir(), self.models_dir(), self.tmp_dir()]
            .iter()
            .filter_map(|dir| palisade_private_files::shared_dir_warning(dir))
            .collect()
    }

    /// The home directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn bundles_dir(&self) -> PathBuf {
        self.root.join("bundles")
    }

    fn models_dir(&self) -> PathBuf {
        self.root.join("models")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn bundle_dir(&self, digest: &BundleDigest) -> PathBuf {
        self.bundles_dir().join(digest.hex())
    }

    fn version_ref_path(&self, name: &ModelName, version: &Version) -> PathBuf {
        self.models_dir().join(name.as_str()).join("versions").join(format!("{version}.json"))
    }

    fn tag_path(&self, name: &ModelName) -> PathBuf {
        self.models_dir().join(name.as_str()).join("tags").join(format!("{LATEST_TAG}.json"))
    }

    fn clean_stale_staging(&self) {
        let Ok(entries) = fs::read_dir(self.tmp_dir()) else { return };
        for entry in entries.flatten() {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_STAGING);
            if stale {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }

    /// Copies a model directory's manifest and the files it names into staging, hashing as
    /// it goes. Every file is opened inside `src` (see the module documentation).
    pub fn stage(&self, src: &Path) -> Result<StagedBundle, BundleError> {
        let manifest_path = src.join(MANIFEST_FILE);
        let root =
            cap_std::fs::Dir::open_ambient_dir(src, cap_std::ambient_authority()).map_err(|source| {
                BundleError::Io { path: src.to_owned(), action: "open the model directory", source }
            })?;
        let mut manifest_file =
            open_inside(&root, src, MANIFEST_FILE).map_err(|problem| BundleError::ModelFile {
                manifest: manifest_path.clone(),
                field: "palisade.yaml",
                path: manifest_path.clone(),
                problem,
            })?;
        let manifest_bytes =
            read_capped_from(&mut manifest_file, &manifest_path, crate::manifest::MAX_MANIFEST_BYTES as u64)?;
        let manifest = Manifest::parse(&manifest_path, &manifest_bytes)?;
        // Every file is opened (and so checked) before anything is staged.
        let mut opened = Vec::new();
        for (field, path) in manifest.model.iter().flat_map(|m| m.files()) {
            let file = open_inside(&root, src, path.as_str()).map_err(|problem| BundleError::ModelFile {
                manifest: manifest_path.clone(),
                field,
                path: path.under(src),
                problem: format!("{problem}; `{field}` is relative to palisade.yaml"),
            })?;
            opened.push((path.clone(), file));
        }
        if let Some(path) = manifest.monitoring.as_ref().and_then(|m| m.forest_model()) {
            let field = "monitoring.outliers.model";
            let file = open_inside(&root, src, path.as_str()).map_err(|problem| BundleError::ModelFile {
                manifest: manifest_path.clone(),
                field,
                path: path.under(src),
                problem: format!("{problem}; `{field}` is relative to palisade.yaml"),
            })?;
            opened.push((path.clone(), file));
        }
        let mut references = Vec::new();
        for (field, reference) in manifest.monitoring.iter().flat_map(|m| m.references()) {
            let path = reference.under(src);
            let mut file =
                open_inside(&root, src, reference.as_str()).map_err(|problem| BundleError::ModelFile {
                    manifest: manifest_path.clone(),
                    field,
                    path: path.clone(),
                    problem: format!("{problem}; `{field}` is relative to palisade.yaml"),
                })?;
            let cap = crate::explainer::MAX_BACKGROUND_BYTES;
            let bytes = read_capped_from(&mut file, &path, cap).map_err(|_| BundleError::ModelFile {
                manifest: manifest_path.clone(),
                field,
                path: path.clone(),
                problem: format!(
                    "cannot be read, or is larger than {cap} bytes; subsample the reference rows"
                ),
            })?;
            references.push((field, bytes));
        }
        let background = match &manifest.explainer {
            None => None,
            Some(explainer) => {
                let field = "explainer.background";
                let path = explainer.background.under(src);
                let mut file = open_inside(&root, src, explainer.background.as_str()).map_err(|problem| {
                    BundleError::ModelFile {
                        manifest: manifest_path.clone(),
                        field,
                        path: path.clone(),
                        problem: format!("{problem}; `{field}` is relative to palisade.yaml"),
                    }
                })?;
                let cap = crate::explainer::MAX_BACKGROUND_BYTES;
                let bytes = read_capped_from(&mut file, &path, cap).map_err(|_| BundleError::ModelFile {
                    manifest: manifest_path.clone(),
                    field,
                    path: path.clone(),
                    problem: format!(
                        "cannot be read, or is larger than {cap} bytes; a background needs a few hundred rows"
                    ),
                })?;
                Some(bytes)
            }
        };
        let dir = tempfile::Builder::new()
            .prefix("build-")
            .permissions(private_dir_permissions())
            .tempdir_in(self.tmp_dir())
            .map_err(|source| BundleError::Io {
                path: self.tmp_dir(),
                action: "create a staging directory",
                source,
            })?;
        let mut staged = StagedBundle { dir, manifest, files: Vec::new(), background, references };
        staged.add_file(MANIFEST_FILE, &manifest_bytes)?;
        for (path, mut file) in opened {
            let (size, sha256) = staged.copy_in(&path, &mut file, &path.under(src))?;
            staged.files.push(FileEntry { path: path.as_str().to_owned(), size, sha256 });
        }
        if let Some(model) = staged.manifest.model.as_ref().and_then(|m| m.path()).cloned() {
            stage_external_data(&mut staged, &root, src, &manifest_path, &model)?;
        }
        Ok(staged)
    }

    /// Moves a staged bundle into the store and points `name:version` and `name:latest` at it.
    ///
    /// Building the same content again is a no-op; building different content under an
    /// existing version is refused, because versions are immutable.
    pub fn commit(&self, mut staged: StagedBundle) -> Result<BundleRecord, BundleError> {
        let name = staged.manifest.name.clone();
        let version = staged.manifest.version.clone();
        let namespace = staged.manifest.namespace.clone();
        self.check_name_free(&name, &namespace)?;

        staged.files.sort_by(|a, b| a.path.cmp(&b.path));
        let digest = canonical_digest(&staged.files);
        if let Some(existing) = self.read_version_ref(&name, &version)?
            && existing.digest != digest
        {
            return Err(BundleError::VersionExists { name, version, digest: existing.digest });
        }

        let index =
            Index { schema: INDEX_SCHEMA.to_owned(), digest: digest.clone(), files: staged.files.clone() };
        let mut index_bytes = serde_json::to_vec_pretty(&index).map_err(BundleError::Encode)?;
        index_bytes.push(b'\n');
        write_synced(&staged.dir.path().join(INDEX_FILE), &index_bytes)?;
        sync_dir(staged.dir.path())?;

        let target = self.bundle_dir(&digest);
        if target.exists() {
            // Same content already stored (another version or a rebuild): keep the stored copy,
            // provided it is intact.
            self.verify_dir(&target, &digest)?;
        } else {
            let staging = staged.dir.keep();
            if let Err(source) = fs::rename(&staging, &target) {
                let _ = fs::remove_dir_all(&staging);
                if !target.exists() {
                    return Err(BundleError::Io {
                        path: target,
                        action: "move the bundle into the store",
                        source,
                    });
                }
            }
            sync_dir(&self.bundles_dir())?;
        }

        let created = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let reference = VersionRef { digest: digest.clone(), namespace: namespace.clone(), created };
        let created = match self.read_version_ref(&name, &version)? {
            Some(existing) => existing.created,
            None => {
                self.write_json(&self.version_ref_path(&name, &version), &reference)?;
                created
            }
        };
        self.write_json(&self.tag_path(&name), &TagRef { version: version.clone() })?;
        Ok(BundleRecord { name, version, namespace, digest, created, latest: true })
    }

    fn check_name_free(&self, name: &ModelName, namespace: &Namespace) -> Result<(), BundleError> {
        for record in self.versions(name)? {
            if &record.namespace != namespace {
                return Err(BundleError::NameTaken {
                    name: name.clone(),
                    namespace: record.namespace,
                    wanted: namespace.clone(),
                });
            }
        }
        Ok(())
    }

    fn read_version_ref(
        &self,
        name: &ModelName,
        version: &Version,
    ) -> Result<Option<VersionRef>, BundleError> {
        read_json_opt(&self.version_ref_path(name, version))
    }

    fn read_latest(&self, name: &ModelName) -> Result<Option<Version>, BundleError> {
        Ok(read_json_opt::<TagRef>(&self.tag_path(name))?.map(|t| t.version))
    }

    fn write_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<(), BundleError> {
        let dir = path.parent().unwrap_or(&self.root);
        palisade_private_files::create_dir_all(dir)?;
        let bytes = pretty_json(value)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|source| BundleError::Io {
            path: dir.to_owned(),
            action: "create a temporary file",
            source,
        })?;
        tmp.write_all(&bytes).and_then(|()| tmp.as_file().sync_all()).map_err(|source| BundleError::Io {
            path: path.to_owned(),
            action: "write",
            source,
        })?;
        tmp.persist(path).map_err(|e| BundleError::Io {
            path: path.to_owned(),
            action: "replace",
            source: e.error,
        })?;
        sync_dir(dir)
    }

    /// The reference files that make `record` the only version of its model, and its
    /// `latest`, in another home (a container image's): each a path relative to the home
    /// and its bytes, in the format the store reads. `created` replaces the build time, so
    /// that a copy made from the same bundle is the same bytes wherever it was built.
    pub fn reference_files(
        record: &BundleRecord,
        created: u64,
    ) -> Result<Vec<(String, Vec<u8>)>, BundleError> {
        let version =
            VersionRef { digest: record.digest.clone(), namespace: record.namespace.clone(), created };
        let tag = TagRef { version: record.version.clone() };
        Ok(vec![
            (format!("models/{}/versions/{}.json", record.name, record.version), pretty_json(&version)?),
            (format!("models/{}/tags/{LATEST_TAG}.json", record.name), pretty_json(&tag)?),
        ])
    }

    /// Every version of one model, oldest first.
    pub fn versions(&self, name: &ModelName) -> Result<Vec<BundleRecord>, BundleError> {
        let dir = self.models_dir().join(name.as_str()).join("versions");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(BundleError::Io { path: dir, action: "list", source }),
        };
        let latest = self.read_latest(name)?;
        let mut records = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|source| BundleError::Io { path: dir.clone(), action: "list", source })?;
            let file_name = entry.file_name();
            let Some(stem) = file_name.to_str().and_then(|n| n.strip_suffix(".json")) else { continue };
            let Ok(version) = Version::new(stem) else { continue };
            if let Some(reference) = self.read_version_ref(name, &version)? {
                records.push(BundleRecord {
                    name: name.clone(),
                    latest: latest.as_ref() == Some(&version),
                    version,
                    namespace: reference.namespace,
                    digest: reference.digest,
                    created: reference.created,
                });
            }
        }
        records.sort_by(|a, b| (a.created, &a.version).cmp(&(b.created, &b.version)));
        Ok(records)
    }

    /// Every stored model version, by name then age.
    pub fn list(&self) -> Result<Vec<BundleRecord>, BundleError> {
        let dir = self.models_dir();
        let entries = fs::read_dir(&dir).map_err(|source| BundleError::Io {
            path: dir.clone(),
            action: "list",
            source,
        })?;
        let mut names = BTreeSet::new();
        for entry in entries {
            let entry =
                entry.map_err(|source| BundleError::Io { path: dir.clone(), action: "list", source })?;
            if let Some(name) = entry.file_name().to_str().and_then(|n| ModelName::new(n).ok()) {
                names.insert(name);
            }
        }
        let mut all = Vec::new();
        for name in names {
            all.extend(self.versions(&name)?);
        }
        Ok(all)
    }

    /// Finds `name:version` or `name:latest`.
    pub fn resolve(&self, name: &ModelName, version: &str) -> Result<BundleRecord, BundleError> {
        let version = if version == LATEST_TAG {
            self.read_latest(name)?
                .ok_or_else(|| BundleError::NotFound { reference: format!("{name}:latest") })?
        } else {
            Version::new(version)
                .map_err(|_| BundleError::NotFound { reference: format!("{name}:{version}") })?
        };
        self.versions(name)?
            .into_iter()
            .find(|r| r.version == version)
            .ok_or_else(|| BundleError::NotFound { reference: format!("{name}:{version}") })
    }

    /// Loads a stored bundle, verifying every file against its digest.
    pub fn load(&self, record: &BundleRecord) -> Result<VerifiedBundle, BundleError> {
        let dir = self.bundle_dir(&record.digest);
        let bundle = self.verify_dir(&dir, &record.digest)?;
        if bundle.manifest.name != record.name || bundle.manifest.version != record.version {
            return Err(BundleError::Tampered {
                bundle: dir,
                file: MANIFEST_FILE.to_owned(),
                problem: format!(
                    "it describes {}:{}, but the store lists it as {}:{}",
                    bundle.manifest.name, bundle.manifest.version, record.name, record.version
                ),
            });
        }
        Ok(bundle)
    }

    fn verify_dir(&self, dir: &Path, digest: &BundleDigest) -> Result<VerifiedBundle, BundleError> {
        let tampered = |file: &str, problem: String| BundleError::Tampered {
            bundle: dir.to_owned(),
            file: file.to_owned(),
            problem,
        };
        let index_bytes = read_capped(&dir.join(INDEX_FILE), MAX_INDEX_BYTES)?;
        let index: Index = serde_json::from_slice(&index_bytes)
            .map_err(|e| tampered(INDEX_FILE, format!("it is not a valid bundle index ({e})")))?;
        if index.schema != INDEX_SCHEMA {
            return Err(tampered(INDEX_FILE, format!("unknown schema `{}`", index.schema)));
        }
        if index.files.len() > MAX_FILES {
            return Err(tampered(INDEX_FILE, format!("it lists more than {MAX_FILES} files")));
        }
        let mut listed = BTreeSet::new();
        for entry in &index.files {
            let path = BundlePath::new(&entry.path).map_err(|e| tampered(INDEX_FILE, e))?;
            if entry.path == INDEX_FILE || !listed.insert(path.as_str().to_owned()) {
                return Err(tampered(INDEX_FILE, format!("it lists `{}` twice or lists itself", entry.path)));
            }
        }
        let mut sorted = index.files.clone();
        sorted.sort_by(|a, b| a.path.cmp(&b.path));
        let recomputed = canonical_digest(&sorted);
        if &recomputed != digest || &index.digest != digest {
            return Err(tampered(
                INDEX_FILE,
                format!("the file list hashes to {recomputed}, not to the bundle's address {digest}"),
            ));
        }
        let present = walk_files(dir)?;
        for path in &present {
            if path != INDEX_FILE && !listed.contains(path) {
                return Err(tampered(path, "it is not part of the bundle (a file was added)".to_owned()));
            }
        }
        for entry in &sorted {
            if !present.contains(&entry.path) {
                return Err(tampered(&entry.path, "it is missing".to_owned()));
            }
            let path = BundlePath::new(&entry.path).map_err(|e| tampered(INDEX_FILE, e))?.under(dir);
            let (size, sha256) = hash_file(&path)?;
            if size != entry.size || sha256 != entry.sha256 {
                return Err(tampered(
                    &entry.path,
                    format!(
                        "its content changed: expected sha256 {} ({} bytes), found {} ({} bytes)",
                        entry.sha256, entry.size, sha256, size
                    ),
                ));
            }
        }
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest = Manifest::parse(&manifest_path, &read_capped(&manifest_path, MAX_INDEX_BYTES)?)?;
        for (field, path) in manifest.model.iter().flat_map(|m| m.files()) {
            if !listed.contains(path.as_str()) {
                return Err(tampered(
                    path.as_str(),
                    format!("the file the manifest names in `{field}` is not in the bundle"),
                ));
            }
        }
        let signature = if listed.contains(SIGNATURE_FILE) {
            let bytes = read_capped(&dir.join(SIGNATURE_FILE), MAX_INDEX_BYTES)?;
            Some(
                serde_json::from_slice(&bytes)
                    .map_err(|e| tampered(SIGNATURE_FILE, format!("it is not a valid signature ({e})")))?,
            )
        } else {
            None
        };
        let engine = if listed.contains(ENGINE_FILE) {
            let bytes = read_capped(&dir.join(ENGINE_FILE), MAX_INDEX_BYTES)?;
            let record: EngineRecord = serde_json::from_slice(&bytes)
                .map_err(|e| tampered(ENGINE_FILE, format!("it is not a valid engine record ({e})")))?;
            Some(record.engine)
        } else {
            None
        };
        let explainer = record_for_section(
            dir,
            &listed,
            manifest.explainer.is_some(),
            crate::explainer::EXPLAINER_FILE,
            "explainer",
            crate::explainer::MAX_EXPLAINER_BYTES,
        )?;
        if let Some(path) = manifest.monitoring.as_ref().and_then(|m| m.forest_model())
            && !listed.contains(path.as_str())
        {
            return Err(tampered(
                path.as_str(),
                "the file the manifest names in `monitoring.outliers.model` is not in the bundle".to_owned(),
            ));
        }
        let monitoring = record_for_section(
            dir,
            &listed,
            manifest.monitoring.is_some(),
            crate::monitoring::MONITORING_FILE,
            "monitoring",
            crate::monitoring::MAX_MONITORING_BYTES,
        )?;
        Ok(VerifiedBundle {
            monitoring,
            dir: dir.to_owned(),
            digest: digest.clone(),
            manifest,
            signature,
            engine,
            explainer,
            files: sorted,
            index_bytes,
        })
    }

    /// Removes `name:version`; the bundle directory goes when no version refers to it.
    /// If `latest` pointed there, it moves to the newest remaining version.
    pub fn delete(&self, name: &ModelName, version: &str) -> Result<BundleRecord, BundleError> {
        let record = self.resolve(name, version)?;
        let path = self.version_ref_path(name, &record.version);
        fs::remove_file(&path).map_err(|source| BundleError::Io { path, action: "delete", source })?;
        let remaining = self.versions(name)?;
        match remaining.last() {
            Some(newest) if record.latest => {
                self.write_json(&self.tag_path(name), &TagRef { version: newest.version.clone() })?;
            }
            Some(_) => {}
            None => {
                let model_dir = self.models_dir().join(name.as_str());
                let _ = fs::remove_dir_all(&model_dir);
            }
        }
        let still_used = self.list()?.iter().any(|r| r.digest == record.digest);
        if !still_used {
            let dir = self.bundle_dir(&record.digest);
            // Rename first so a crash never leaves a partly deleted bundle under its address.
            let doomed = self.tmp_dir().join(format!("delete-{}", record.digest.hex()));
            if fs::rename(&dir, &doomed).is_ok() {
                let _ = fs::remove_dir_all(&doomed);
            }
        }
        Ok(record)
    }
}

/// Copies the external data files an ONNX model names (PyTorch's `model.onnx.data`) into
/// staging, hashed like every file. A location must be a plain relative path inside the
/// model's directory (no `..`, no absolute path, no hidden file) and name a regular file
/// opened inside the model directory, like every file a manifest names.
fn stage_external_data(
    staged: &mut StagedBundle,
    root: &cap_std::fs::Dir,
    src: &Path,
    manifest: &Path,
    model: &BundlePath,
) -> Result<(), BundleError> {
    let staged_model = model.under(staged.dir.path());
    let bytes = read_capped(&staged_model, MAX_MODEL_SCAN_BYTES)?;
    let problem = |problem: String| BundleError::ModelFile {
        manifest: manifest.to_owned(),
        field: "model.path",
        path: model.under(src),
        problem,
    };
    // A file that is not ONNX is the runtime's to diagnose; it names no data files.
    let Ok(locations) = crate::onnx_data::external_data_locations(&bytes) else { return Ok(()) };
    let model_dir = model.as_str().rsplit_once('/').map(|(dir, _)| dir);
    for location in locations {
        let joined = match model_dir {
            Some(dir) => format!("{dir}/{location}"),
            None => location.clone(),
        };
        let path = BundlePath::new(&joined).map_err(|e| {
            problem(format!(
                "stores tensors in `{location}`, which Palisade refuses: {e}; external data must sit in the model's directory"
            ))
        })?;
        if staged.files.iter().any(|f| f.path == path.as_str()) {
            continue;
        }
        if crate::manifest::RESERVED_FILES.contains(&path.as_str()) {
            return Err(problem(format!("stores tensors in `{location}`, a name Palisade reserves")));
        }
        let mut file = open_inside(root, src, path.as_str()).map_err(|e| {
            problem(format!(
                "stores tensors in `{location}`, which {e}; keep the external data file next to the model, or export with `external_data=False`"
            ))
        })?;
        let (size, sha256) = staged.copy_in(&path, &mut file, &path.under(src))?;
        staged.files.push(FileEntry { path: path.as_str().to_owned(), size, sha256 });
    }
    Ok(())
}

/// Permissions of a private directory (0700).
fn private_dir_permissions() -> fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    fs::Permissions::from_mode(palisade_private_files::DIR_MODE)
}

/// Opens `relative` inside the directory `root` (opened from `src`): symbolic links are
/// followed only while they stay inside, and the file must be a regular file. The error
/// says why, naming the file.
fn open_inside(root: &cap_std::fs::Dir, src: &Path, relative: &str) -> Result<cap_std::fs::File, String> {
    let file = root.open(relative).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => format!("cannot be read ({e})"),
        _ => format!(
            "cannot be opened inside {} ({e}): it, or a symbolic link on the way to it, leads out of the model directory; copy the file into the directory",
            src.display()
        ),
    })?;
    let meta = file.metadata().map_err(|e| format!("cannot be read ({e})"))?;
    if !meta.is_file() {
        return Err("is not a regular file".to_owned());
    }
    Ok(file)
}

impl From<palisade_private_files::PrivateFileError> for BundleError {
    fn from(err: palisade_private_files::PrivateFileError) -> Self {
        match err {
            palisade_private_files::PrivateFileError::Io { path, action, source } => {
                BundleError::Io { path, action, source }
            }
            other => BundleError::Io {
                path: PathBuf::new(),
                action: "keep a file private",
                source: io::Error::other(other.to_string()),
            },
        }
    }
}

/// The SHA-256 of the canonical listing of a bundle's files (sorted by path).
fn canonical_digest(sorted: &[FileEntry]) -> BundleDigest {
    let mut hasher = Sha256::new();
    hasher.update(b"palisade-bundle-v1\n");
    for entry in sorted {
        hasher.update(entry.path.as_bytes());
        hasher.update(b"\0");
        hasher.update(entry.size.to_string().as_bytes());
        hasher.update(b"\0");
        hasher.update(entry.sha256.as_bytes());
        hasher.update(b"\n");
    }
    BundleDigest::from_bytes(hasher.finalize().into())
}

/// Relative paths of every regular file under `dir`; anything else (symlinks, devices) is refused.
fn walk_files(dir: &Path) -> Result<BTreeSet<String>, BundleError> {
    let mut found = BTreeSet::new();
    let mut stack = vec![(dir.to_owned(), String::new())];
    while let Some((path, prefix)) = stack.pop() {
        let entries = fs::read_dir(&path).map_err(|source| BundleError::Io {
            path: path.clone(),
            action: "list the bundle",
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| BundleError::Io {
                path: path.clone(),
                action: "list the bundle",
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            let kind = entry.file_type().map_err(|source| BundleError::Io {
                path: entry.path(),
                action: "inspect",
                source,
            })?;
            if kind.is_dir() {
                stack.push((entry.path(), rel));
            } else if kind.is_file() {
                found.insert(rel);
            } else {
                return Err(BundleError::Tampered {
                    bundle: dir.to_owned(),
                    file: rel,
                    problem: "it is not a regular file (symlinks are not allowed in bundles)".to_owned(),
                });
            }
            if found.len() > MAX_FILES {
                return Err(BundleError::Tampered {
                    bundle: dir.to_owned(),
                    file: String::new(),
                    problem: format!("it holds more than {MAX_FILES} files"),
                });
            }
        }
    }
    Ok(found)
}

/// What `palisade build` computed for a manifest section (`explainer:`, `monitoring:`),
/// stored as `file` in the bundle: present exactly when the manifest declares `section`.
fn record_for_section<T: serde::de::DeserializeOwned>(
    dir: &Path,
    listed: &std::collections::BTreeSet<String>,
    declared: bool,
    file: &str,
    section: &str,
    cap: u64,
) -> Result<Option<T>, BundleError> {
    let tampered =
        |problem: String| BundleError::Tampered { bundle: dir.to_owned(), file: file.to_owned(), problem };
    match (declared, listed.contains(file)) {
        (false, false) => Ok(None),
        (true, true) => {
            let bytes = read_capped(&dir.join(file), cap)?;
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| tampered(format!("it is not a valid {section} record ({e})")))
        }
        (true, false) => {
            Err(tampered(format!("the manifest declares `{section}:` but the bundle has no {section} file")))
        }
        (false, true) => Err(tampered(format!("the manifest declares no `{section}:`"))),
    }
}

fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, BundleError> {
    let mut file = File::open(path).map_err(|source| BundleError::Io {
        path: path.to_owned(),
        action: "open",
        source,
    })?;
    read_capped_from(&mut file, path, cap)
}

fn read_capped_from(file: &mut impl Read, path: &Path, cap: u64) -> Result<Vec<u8>, BundleError> {
    let mut bytes = Vec::new();
    file.by_ref().take(cap + 1).read_to_end(&mut bytes).map_err(|source| BundleError::Io {
        path: path.to_owned(),
        action: "read",
        source,
    })?;
    if bytes.len() as u64 > cap {
        return Err(BundleError::TooLarge { path: path.to_owned(), limit: cap });
    }
    Ok(bytes)
}

fn hash_file(path: &Path) -> Result<(u64, String), BundleError> {
    let mut file = File::open(path).map_err(|source| BundleError::Io {
        path: path.to_owned(),
        action: "open",
        source,
    })?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|source| BundleError::Io {
            path: path.to_owned(),
            action: "read",
            source,
        })?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hex::encode(hasher.finalize())))
}

fn copy_hashed(input: &mut impl Read, src: &Path, dst: &Path) -> Result<(u64, String), BundleError> {
    let mut output = palisade_private_files::create_new(dst)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(|source| BundleError::Io {
            path: src.to_owned(),
            action: "read",
            source,
        })?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
        output.write_all(&buf[..n]).map_err(|source| BundleError::Io {
            path: dst.to_owned(),
            action: "write",
            source,
        })?;
    }
    output.sync_all().map_err(|source| BundleError::Io { path: dst.to_owned(), action: "sync", source })?;
    Ok((size, hex::encode(hasher.finalize())))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), BundleError> {
    let mut file = palisade_private_files::options()
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|source| BundleError::Io { path: path.to_owned(), action: "create", source })?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|source| BundleError::Io {
        path: path.to_owned(),
        action: "write",
        source,
    })
}

fn sync_dir(dir: &Path) -> Result<(), BundleError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|source| BundleError::Io {
        path: dir.to_owned(),
        action: "sync",
        source,
    })
}

fn read_json_opt<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, BundleError> {
    match read_capped(path, 64 * 1024) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| BundleError::CorruptRef { path: path.to_owned(), problem: e.to_string() }),
        Err(BundleError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(other) => Err(other),
    }
}

/// Pretty JSON with a final newline, as the store writes its reference files.
fn pretty_json<T: Serialize>(value: &T) -> Result<Vec<u8>, BundleError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(BundleError::Encode)?;
    bytes.push(b'\n');
    Ok(bytes)
}
