//! Palisade bundles: the `palisade.yaml` manifest and the content-addressed local store.
//!
//! A bundle is an immutable directory holding a model, its manifest and build-time
//! artifacts, addressed by the SHA-256 of all its files. See [`store`] for the layout and
//! [`manifest`] for the manifest format.

pub mod explainer;
pub mod graph;
pub mod manifest;
pub mod monitoring;
mod onnx_data;
pub mod rate;
pub mod store;

use std::fmt;
use std::path::PathBuf;

use palisade_core::{ModelName, Namespace, Version};
use serde::{Deserialize, Serialize};

pub use manifest::{Manifest, ManifestError};
pub use store::{BundleRecord, StagedBundle, Store, VerifiedBundle};

/// A bundle's content address: `sha256:` and 64 lower-case hex digits.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BundleDigest([u8; 32]);

impl BundleDigest {
    /// Wraps a raw SHA-256.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        BundleDigest(bytes)
    }

    /// Parses `sha256:<hex>`.
    pub fn parse(text: &str) -> Option<Self> {
        let hex_digits = text.strip_prefix("sha256:")?;
        if hex_digits.len() != 64 || hex_digits.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_digits, &mut bytes).ok()?;
        Some(BundleDigest(bytes))
    }

    /// The 64 hex digits, without the `sha256:` prefix.
    pub fn hex(&self) -> String {
        palisade_core::hex::to_hex(&self.0)
    }

    /// The first 12 hex digits, for tables.
    pub fn short(&self) -> String {
        self.hex()[..12].to_owned()
    }
}

impl fmt::Display for BundleDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::with_capacity(7 + 64);
        text.push_str("sha256:");
        palisade_core::hex::push_hex(&mut text, &self.0);
        f.write_str(&text)
    }
}

impl fmt::Debug for BundleDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BundleDigest({self})")
    }
}

impl Serialize for BundleDigest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BundleDigest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        BundleDigest::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("`{text}` is not a sha256:<64 hex digits> digest"))
        })
    }
}

/// Why a manifest or bundle could not be read, built or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The manifest is invalid; the error names the file, line and field.
    #[error("{0}")]
    Manifest(ManifestError),
    /// A file named by the manifest (the model file, an upstream's CA) is unusable.
    #[error("{}: field `{field}`: {} {problem}", manifest.display(), path.display())]
    ModelFile {
        /// The manifest that names it.
        manifest: PathBuf,
        /// The field that names it (`model.path`, `model.upstream.tls.ca`).
        field: &'static str,
        /// The model file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A stored bundle no longer matches its digest.
    #[error("bundle {} was modified and is refused: file `{file}`: {problem}", bundle.display())]
    Tampered {
        /// The bundle directory.
        bundle: PathBuf,
        /// The offending file, relative to the bundle.
        file: String,
        /// What differs.
        problem: String,
    },
    /// A version can be built only once.
    #[error(
        "{name}:{version} already exists with different content ({digest}); versions are immutable: bump `version` in palisade.yaml, or delete the old one with `palisade models delete {name}:{version}`"
    )]
    VersionExists {
        /// Model name.
        name: ModelName,
        /// The existing version.
        version: Version,
        /// Its digest.
        digest: BundleDigest,
    },
    /// A model name is unique across namespaces in one home.
    #[error(
        "model `{name}` already exists in namespace `{namespace}`, so it cannot be built in `{wanted}`: model names are unique per Palisade home"
    )]
    NameTaken {
        /// Model name.
        name: ModelName,
        /// Where it lives.
        namespace: Namespace,
        /// Where the new build wanted it.
        wanted: Namespace,
    },
    /// No such model or version.
    #[error("no model `{reference}` in the store (see `palisade models list`)")]
    NotFound {
        /// What was asked for.
        reference: String,
    },
    /// A file is larger than allowed.
    #[error("{} is larger than {limit} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// A store reference file is unreadable.
    #[error("store reference {} is corrupt: {problem}", path.display())]
    CorruptRef {
        /// The reference file.
        path: PathBuf,
        /// The parse error.
        problem: String,
    },
    /// A file system operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// Serializing an index failed (a bug).
    #[error("cannot encode bundle metadata: {0}")]
    Encode(serde_json::Error),
}
