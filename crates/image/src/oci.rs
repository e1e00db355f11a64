//! The OCI documents of an image: config, manifest, index, and Docker's `manifest.json`.
//!
//! Field order is the struct order and maps are `BTreeMap`s, so the JSON (and so every
//! digest) depends only on the values.

use std::collections::BTreeMap;

use palisade_bundle::VerifiedBundle;
use serde::{Deserialize, Serialize};

use crate::{ADMIN_PORT, API_PORT, Arch, CA_ROOTS, HOME, ImageSpec, USER_ID};

/// Media type of an image manifest.
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an image index.
pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of an image config.
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of a gzipped layer.
pub const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The label (and manifest annotation) carrying the bundle's digest.
pub const LABEL_BUNDLE_DIGEST: &str = "dev.palisade.bundle.digest";

/// A content descriptor: what a blob is, its digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The blob's media type.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Annotations, when any.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// The 64 hex digits of the digest.
    pub fn hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap_or(&self.digest)
    }
}

/// An image manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`MEDIA_MANIFEST`].
    pub media_type: String,
    /// The config blob.
    pub config: Descriptor,
    /// The layers, base first.
    pub layers: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index (the layout's `index.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// [`MEDIA_INDEX`].
    pub media_type: String,
    /// The images.
    pub manifests: Vec<Descriptor>,
}

/// The image config (runtime settings, root filesystem, history).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageConfig {
    /// Creation time, RFC 3339 (the build's epoch).
    pub created: String,
    /// CPU architecture.
    pub architecture: String,
    /// Always `linux`.
    pub os: String,
    /// How to run it.
    pub config: RunConfig,
    /// The layers' uncompressed digests.
    pub rootfs: RootFs,
    /// One entry per layer.
    pub history: Vec<History>,
}

/// The runtime part of the image config (Docker's capitalised field names).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// `uid:gid`.
    pub user: String,
    /// `PORT/tcp` keys with empty objects.
    pub exposed_ports: BTreeMap<String, BTreeMap<String, String>>,
    /// `NAME=value` pairs.
    pub env: Vec<String>,
    /// The program and its first arguments.
    pub entrypoint: Vec<String>,
    /// Default arguments, replaced by the runtime's.
    pub cmd: Vec<String>,
    /// The working directory.
    pub working_dir: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The signal that asks the server to drain and stop.
    pub stop_signal: String,
}

/// `rootfs` of the image config.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `sha256:<hex>` of each uncompressed layer.
    pub diff_ids: Vec<String>,
}

/// One history entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct History {
    /// RFC 3339.
    pub created: String,
    /// What made the layer.
    pub created_by: String,
}

/// One entry of Docker's `manifest.json` (what `docker load` reads).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerManifestEntry {
    /// `blobs/sha256/<hex>` of the config.
    pub config: String,
    /// `NAME:TAG`.
    pub repo_tags: Vec<String>,
    /// `blobs/sha256/<hex>` of each layer.
    pub layers: Vec<String>,
}

/// Seconds since the epoch as RFC 3339 UTC (`1970-01-01T00:00:00Z`).
pub fn rfc3339(epoch: u64) -> String {
    let days = epoch / 86_400;
    let secs = epoch % 86_400;
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// The labels: `org.opencontainers.image.*` and Palisade's own.
fn labels(spec: &ImageSpec, bundle: &VerifiedBundle) -> BTreeMap<String, String> {
    let manifest = &bundle.manifest;
    let mut labels = BTreeMap::new();
    let mut put = |key: &str, value: String| {
        labels.insert(key.to_owned(), value);
    };
    put("org.opencontainers.image.title", manifest.name.to_string());
    put("org.opencontainers.image.version", manifest.version.to_string());
    put("org.opencontainers.image.created", rfc3339(spec.epoch));
    put("org.opencontainers.image.ref.name", spec.tag.clone());
    put(
        "org.opencontainers.image.description",
        format!("Palisade serving model {}:{} (secure model API)", manifest.name, manifest.version),
    );
    put("org.opencontainers.image.base.name", "scratch".to_owned());
    put(LABEL_BUNDLE_DIGEST, bundle.digest.to_string());
    put("dev.palisade.model.name", manifest.name.to_string());
    put("dev.palisade.model.version", manifest.version.to_string());
    put("dev.palisade.model.namespace", manifest.namespace.to_string());
    labels
}

/// The image config for `spec`.
pub(crate) fn image_config(
    spec: &ImageSpec,
    bundle: &VerifiedBundle,
    arch: Arch,
    diff_ids: Vec<String>,
) -> ImageConfig {
    let created = rfc3339(spec.epoch);
    let exposed_ports =
        [API_PORT, ADMIN_PORT].iter().map(|p| (format!("{p}/tcp"), BTreeMap::new())).collect();
    let history = ["base: passwd, group, CA roots", "binary: palisade (static)", "home: the bundle"]
        .iter()
        .map(|what| History {
            created: created.clone(),
            created_by: format!("palisade image build ({what})"),
        })
        .collect();
    ImageConfig {
        created,
        architecture: arch.as_str().to_owned(),
        os: "linux".to_owned(),
        config: RunConfig {
            user: format!("{USER_ID}:{USER_ID}"),
            exposed_ports,
            env: vec![format!("PALISADE_HOME={HOME}"), format!("SSL_CERT_FILE={CA_ROOTS}")],
            entrypoint: crate::entrypoint(),
            cmd: crate::default_args(),
            working_dir: HOME.to_owned(),
            labels: labels(spec, bundle),
            stop_signal: "SIGTERM".to_owned(),
        },
        rootfs: RootFs { kind: "layers".to_owned(), diff_ids },
        history,
    }
}

/// The image manifest: the config, the layers, and the labels as annotations.
pub(crate) fn image_manifest(
    spec: &ImageSpec,
    bundle: &VerifiedBundle,
    config: Descriptor,
    layers: Vec<Descriptor>,
) -> Manifest {
    Manifest {
        schema_version: 2,
        media_type: MEDIA_MANIFEST.to_owned(),
        config,
        layers,
        annotations: labels(spec, bundle),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
    }
}
