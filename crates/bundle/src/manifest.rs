//! `palisade.yaml`: what a data scientist writes next to a model file.
//!
//! ```yaml
//! name: iris                 # Kubernetes DNS label; also the V2 model name
//! version: "1.0.0"           # quoted: YAML reads 1.0 as a number
//! namespace: default         # optional, default `default`
//! description: Iris species  # optional
//! labels: {team: ml}         # optional, Kubernetes label syntax
//! owners: [alice@example.com, group:fraud-analysts, serviceaccount:billing/batch]
//! model:
//!   path: model.onnx         # relative to this file
//!   format: onnx
//!   inputs:                  # optional: inferred from the ONNX graph when absent
//!     - {name: X, datatype: FP32, shape: [-1, 4]}
//!   outputs: [...]           # optional, same form
//! batching:                  # optional: adaptive batching (see docs/manifest.md)
//!   max_batch_size: 32       # rows per batch
//!   max_latency_us: 500      # longest wait for a batch to fill
//!   queue_size: 1024         # requests waiting before 429
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use palisade_core::{ModelName, ModelRef, Namespace, Owner, TensorSpec, Version};
use serde::{Deserialize, Deserializer, Serialize};

use crate::BundleError;

/// The manifest's file name inside a model directory and a bundle.
pub const MANIFEST_FILE: &str = "palisade.yaml";

/// Largest manifest accepted, checked before parsing.
pub const MAX_MANIFEST_BYTES: usize = 256 * 1024;

/// A parsed, valid `palisade.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The model's name (a DNS label); the Open Inference Protocol model name.
    pub name: ModelName,
    /// The model's version; the Open Inference Protocol model version.
    #[serde(deserialize_with = "quoted_version")]
    pub version: Version,
    /// The namespace whose policies apply to the model.
    #[serde(default)]
    pub namespace: Namespace,
    /// Free text shown in `models show` and the API docs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Kubernetes-style labels, matched by policy selectors.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// Who owns the model: by default the only callers allowed.
    pub owners: Owners,
    /// The model file and its interface.
    pub model: ModelSection,
    /// What the audit log keeps of this model's requests (the platform's minimum wins).
    #[serde(default, skip_serializing_if = "AuditSection::is_default")]
    pub audit: AuditSection,
    /// Adaptive batching of this model's requests; off when absent (unless the platform
    /// sets a default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batching: Option<BatchingSection>,
}

/// The `batching:` section: requests that arrive together run as one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchingSection {
    /// Most rows in one batch (1 to 65536); a larger request runs alone.
    pub max_batch_size: u32,
    /// Longest the oldest request of a batch waits for others, in microseconds (0 to
    /// 1000000; default 500).
    #[serde(default = "default_max_latency_us")]
    pub max_latency_us: u64,
    /// Requests that may wait for a batch before new ones get 429 (1 to 1000000; default
    /// 1024).
    #[serde(default = "default_queue_size")]
    pub queue_size: u32,
}

fn default_max_latency_us() -> u64 {
    500
}

fn default_queue_size() -> u32 {
    1024
}

impl BatchingSection {
    /// Checks the ranges; on error, the field (under `batching.`) and what is wrong.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(1..=65_536).contains(&self.max_batch_size) {
            return Err((
                "batching.max_batch_size",
                format!("{} is out of range: use 1 to 65536 rows", self.max_batch_size),
            ));
        }
        if self.max_latency_us > 1_000_000 {
            return Err((
                "batching.max_latency_us",
                format!(
                    "{} is out of range: use 0 to 1000000 microseconds (one second)",
                    self.max_latency_us
                ),
            ));
        }
        if !(1..=1_000_000).contains(&self.queue_size) {
            return Err((
                "batching.queue_size",
                format!("{} is out of range: use 1 to 1000000 requests", self.queue_size),
            ));
        }
        Ok(())
    }
}

/// The `audit:` section of the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// How much each record keeps (default `Metadata`: who, what, decision, outcome, payload
    /// sizes and digests; `Request`/`RequestResponse` add the redacted payloads).
    #[serde(default)]
    pub level: AuditLevel,
    /// Payload fields replaced by `[redacted]` at the payload levels, such as
    /// `inputs[*].data` (see docs/audit.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redact: Vec<String>,
}

impl AuditSection {
    fn is_default(&self) -> bool {
        self == &AuditSection::default()
    }
}

/// Audit levels, as in Kubernetes auditing, from least to most.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AuditLevel {
    /// No record (only effective when the platform's minimum allows it).
    None,
    /// Metadata only: the default.
    #[default]
    Metadata,
    /// Metadata and the redacted request payload.
    Request,
    /// Metadata and the redacted request and response payloads.
    RequestResponse,
}

/// The `model:` section of the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Path of the model file, relative to the manifest.
    pub path: BundlePath,
    /// The model's file format.
    pub format: ModelFormat,
    /// Declared inputs; inferred from the model when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<TensorSpec>>,
    /// Declared outputs; inferred from the model when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<TensorSpec>>,
}

/// A model file format Palisade can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    /// ONNX, run in-process.
    Onnx,
}

impl Manifest {
    /// Reads and parses `palisade.yaml` in a model directory.
    pub fn load_dir(dir: &Path) -> Result<Manifest, BundleError> {
        Manifest::load(&dir.join(MANIFEST_FILE))
    }

    /// Reads and parses a manifest file.
    pub fn load(path: &Path) -> Result<Manifest, BundleError> {
        let bytes = std::fs::read(path).map_err(|source| BundleError::Io {
            path: path.to_owned(),
            action: "read the manifest",
            source,
        })?;
        Manifest::parse(path, &bytes)
    }

    /// Parses manifest bytes; `file` names the source in errors.
    pub fn parse(file: &Path, bytes: &[u8]) -> Result<Manifest, BundleError> {
        let invalid = |field: &str, line: Option<usize>, column: Option<usize>, message: String| {
            BundleError::Manifest(ManifestError {
                file: file.to_owned(),
                line,
                column,
                field: field.to_owned(),
                message,
            })
        };
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(invalid(
                "",
                None,
                None,
                format!("the file is {} bytes; a manifest is at most {MAX_MANIFEST_BYTES}", bytes.len()),
            ));
        }
        let text = std::str::from_utf8(bytes).map_err(|e| {
            invalid(
                "",
                None,
                None,
                format!("the file is not UTF-8 (invalid byte at offset {})", e.valid_up_to()),
            )
        })?;
        if text.trim().is_empty() {
            return Err(invalid("", None, None, "the file is empty".to_owned()));
        }
        let manifest: Manifest = palisade_core::yaml::from_str(file, text).map_err(|mut err| {
            err.message = hint_for(&err.field, std::mem::take(&mut err.message));
            BundleError::Manifest(err)
        })?;
        if let Some(batching) = &manifest.batching
            && let Err((field, message)) = batching.validate()
        {
            return Err(invalid(field, None, None, message));
        }
        Ok(manifest)
    }

    /// The model version this manifest describes.
    pub fn model_ref(&self) -> ModelRef {
        ModelRef { namespace: self.namespace.clone(), name: self.name.clone(), version: self.version.clone() }
    }
}

/// Adds a fix to the messages users hit most.
fn hint_for(field: &str, message: String) -> String {
    if message.starts_with("missing field `owners`") {
        return format!(
            "{message}: every model needs owners (emails, group:NAME or serviceaccount:NS/NAME), for example `owners: [you@example.com]`"
        );
    }
    if message.starts_with("unknown field") {
        return format!("{message}; check the spelling (see docs/manifest.md)");
    }
    if field == "model.format" {
        return format!(
            "{message}; Palisade runs `onnx` models (export with skl2onnx, tf2onnx or torch.onnx)"
        );
    }
    message
}

fn quoted_version<'de, D: Deserializer<'de>>(d: D) -> Result<Version, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Version;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a version string such as \"1.0.0\"")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Version, E> {
            Version::new(v).map_err(E::custom)
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Version, E> {
            Err(E::custom(format!(
                "YAML read the version as the number {v}; quote it, e.g. version: \"{v}\""
            )))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Version, E> {
            Err(E::custom(format!(
                "YAML read the version as the number {v}; quote it, e.g. version: \"{v}\""
            )))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Version, E> {
            Err(E::custom(format!(
                "YAML read the version as the number {v}; quote it, e.g. version: \"{v}\""
            )))
        }
    }
    d.deserialize_any(Visitor)
}

/// A manifest that failed to parse: file, line, column, field and message.
pub use palisade_core::yaml::LocatedError as ManifestError;

/// A non-empty, duplicate-free owner list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Owners(Vec<Owner>);

impl Owners {
    /// Builds an owner list; it must not be empty.
    pub fn new(owners: Vec<Owner>) -> Option<Owners> {
        let mut unique: Vec<Owner> = Vec::with_capacity(owners.len());
        for owner in owners {
            if !unique.contains(&owner) {
                unique.push(owner);
            }
        }
        (!unique.is_empty()).then_some(Owners(unique))
    }

    /// The owners, in manifest order.
    pub fn as_slice(&self) -> &[Owner] {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Owners {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let owners = Vec::<Owner>::deserialize(d)?;
        Owners::new(owners).ok_or_else(|| {
            serde::de::Error::custom(
                "at least one owner is required (an email, group:NAME or serviceaccount:NS/NAME)",
            )
        })
    }
}

/// Kubernetes-style labels: keys `[prefix/]name`, values of at most 63 characters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Labels(BTreeMap<String, String>);

impl Labels {
    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The labels, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The value of a label.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The labels as a map.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

/// A label name segment or value: at most 63 of `[A-Za-z0-9._-]`, alphanumeric at the ends.
fn label_segment_ok(s: &str, allow_empty: bool) -> bool {
    if s.is_empty() {
        return allow_empty;
    }
    s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

fn label_key_ok(key: &str) -> bool {
    match key.rsplit_once('/') {
        Some((prefix, name)) => {
            !prefix.is_empty()
                && prefix.len() <= 253
                && prefix.split('.').all(|part| {
                    !part.is_empty()
                        && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                        && !part.starts_with('-')
                        && !part.ends_with('-')
                })
                && label_segment_ok(name, false)
        }
        None => label_segment_ok(key, false),
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, String>::deserialize(d)?;
        for (key, value) in &map {
            if !label_key_ok(key) {
                return Err(serde::de::Error::custom(format!(
                    "label key `{key}` is invalid: use [prefix/]name, name at most 63 characters of letters, digits, '-', '_' or '.'"
                )));
            }
            if !label_segment_ok(value, true) {
                return Err(serde::de::Error::custom(format!(
                    "label `{key}` has invalid value `{value}`: at most 63 characters of letters, digits, '-', '_' or '.'"
                )));
            }
        }
        Ok(Labels(map))
    }
}

/// A relative path inside a bundle: no `..`, no absolute paths, `/`-separated.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(into = "String")]
pub struct BundlePath(String);

/// Names Palisade writes itself into every bundle.
pub const RESERVED_FILES: [&str; 3] = [MANIFEST_FILE, crate::store::INDEX_FILE, crate::store::SIGNATURE_FILE];

impl BundlePath {
    /// Parses a bundle-relative path.
    pub fn new(path: &str) -> Result<BundlePath, String> {
        if path.is_empty() || path.len() > 1024 {
            return Err("the path must be 1-1024 characters".to_owned());
        }
        if path.starts_with('/') || path.contains('\\') || path.contains(':') {
            return Err(format!(
                "`{path}` must be a relative path using '/' (it is resolved next to palisade.yaml)"
            ));
        }
        for part in path.split('/') {
            if part.is_empty() || part == "." || part == ".." {
                return Err(format!("`{path}` must not contain empty, `.` or `..` segments"));
            }
            if part.starts_with('.') {
                return Err(format!("`{path}` must not contain hidden (dot) files or directories"));
            }
            if part.chars().any(char::is_control) {
                return Err(format!("`{path}` contains a control character"));
            }
        }
        Ok(BundlePath(path.to_owned()))
    }

    /// The path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path under a directory.
    pub fn under(&self, dir: &Path) -> PathBuf {
        self.0.split('/').fold(dir.to_owned(), |acc, part| acc.join(part))
    }
}

impl From<BundlePath> for String {
    fn from(path: BundlePath) -> String {
        path.0
    }
}

impl fmt::Display for BundlePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for BundlePath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let path = String::deserialize(d)?;
        let parsed = BundlePath::new(&path).map_err(serde::de::Error::custom)?;
        if RESERVED_FILES.contains(&parsed.as_str()) {
            return Err(serde::de::Error::custom(format!("`{path}` is a name Palisade reserves for itself")));
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "name: iris\nversion: \"1.0.0\"\nowners: [alice@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\n";

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        match Manifest::parse(Path::new("dir/palisade.yaml"), text.as_bytes()) {
            Ok(m) => Ok(m),
            Err(BundleError::Manifest(e)) => Err(e),
            Err(other) => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn minimal_manifest_is_accepted() {
        let m = parse(MINIMAL).unwrap();
        assert_eq!(m.name.as_str(), "iris");
        assert_eq!(m.version.as_str(), "1.0.0");
        assert_eq!(m.namespace.as_str(), "default");
        assert_eq!(m.owners.as_slice(), &[Owner::Email("alice@example.com".into())]);
        assert_eq!(m.model.path.as_str(), "model.onnx");
        assert_eq!(m.model.format, ModelFormat::Onnx);
        assert!(m.model.inputs.is_none());
    }

    #[test]
    fn full_manifest() {
        let text = r#"
name: fraud-scorer
version: "2024.06.01-rc1"
namespace: risk
description: Scores card transactions
labels: {team: fraud, app.kubernetes.io/part-of: payments}
owners: [person_a@company.com, group:fraud-analysts, serviceaccount:billing/billing-batch]
model:
  path: models/scorer.onnx
  format: onnx
  inputs:
    - {name: X, datatype: FP32, shape: [-1, 4], allow_nan: true}
  outputs:
    - {name: probabilities, datatype: FP32, shape: [-1, 3]}
"#;
        let m = parse(text).unwrap();
        assert_eq!(m.namespace.as_str(), "risk");
        assert_eq!(m.labels.get("app.kubernetes.io/part-of"), Some("payments"));
        assert_eq!(m.owners.as_slice().len(), 3);
        assert!(m.model.inputs.as_ref().unwrap()[0].allow_nan);
    }

    #[test]
    fn unknown_field_names_file_line_and_field() {
        let err = parse(&MINIMAL.replace("  format: onnx", "  format: onnx\n  fromat: onnx")).unwrap_err();
        assert_eq!(err.field, "model.fromat");
        assert_eq!(err.line, Some(7));
        let shown = err.to_string();
        assert!(shown.starts_with("dir/palisade.yaml:7:"), "{shown}");
        assert!(shown.contains("unknown field `fromat`"), "{shown}");
    }

    #[test]
    fn invalid_values_name_the_field() {
        let cases = [
            ("name: iris", "name: Iris_Model", "name", "not a valid model name"),
            ("version: \"1.0.0\"", "version: 1.0", "version", "quote it"),
            ("format: onnx", "format: pickle", "model.format", "unknown variant `pickle`"),
            ("path: model.onnx", "path: ../model.onnx", "model.path", "`..`"),
            ("path: model.onnx", "path: /etc/passwd", "model.path", "relative path"),
            ("path: model.onnx", "path: bundle.json", "model.path", "reserves"),
            ("[alice@example.com]", "[alice]", "owners[0]", "not a valid owner"),
            ("[alice@example.com]", "[]", "owners", "at least one owner"),
        ];
        for (from, to, field, needle) in cases {
            let err = parse(&MINIMAL.replace(from, to)).unwrap_err();
            assert_eq!(err.field, field, "{to}: {err}");
            assert!(err.line.is_some(), "{to}: {err}");
            assert!(err.message.contains(needle), "{to}: {err}");
            assert!(!err.message.starts_with(field), "the field is not repeated: {err}");
        }
    }

    #[test]
    fn missing_owners_explains_why() {
        let err = parse(&MINIMAL.replace("owners: [alice@example.com]\n", "")).unwrap_err();
        assert!(err.message.contains("missing field `owners`"), "{err}");
        assert!(err.message.contains("every model needs owners"), "{err}");
    }

    #[test]
    fn rejects_bad_labels() {
        for bad in ["{\"-x\": a}", "{x: \"a b\"}", "{\"a/b/c\": x}", "{\"Bad_Prefix/x\": y}"] {
            let err = parse(&format!("{MINIMAL}labels: {bad}\n")).unwrap_err();
            assert_eq!(err.field, "labels", "{bad}: {err}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in ["", "   ", "- a\n- b", "name: [", "\u{0}", "name: iris\nname: iris2", "*a"] {
            assert!(parse(text).is_err(), "{text:?}");
        }
        let err = Manifest::parse(Path::new("p.yaml"), &[0xff, 0xfe]).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"));
    }
}
