//! Container images of Palisade bundles, written without a daemon.
//!
//! [`build`] turns one stored bundle and a static `palisade` binary into an OCI image
//! (`FROM scratch`), written as an OCI image layout directory (`oci-layout`, `index.json`,
//! `blobs/sha256/`) plus a tar of that directory which also carries Docker's
//! `manifest.json`, so `docker load`, podman, skopeo and umoci all read it. [`push`] sends
//! it to a registry over the OCI distribution API.
//!
//! The image has three layers, the first changing least often:
//!
//! ```text
//! base     /etc/passwd, /etc/group (user and group `palisade`, 65532), /etc/nsswitch.conf,
//!          /etc/ssl/certs/ca-certificates.crt, /tmp
//! binary   /usr/local/bin/palisade (statically linked: there is no libc in the image)
//! home     /home/palisade: the bundle, its version and `latest` references (0700/0600,
//!          owned by 65532, as the store keeps them)
//! ```
//!
//! Builds are reproducible: entries are sorted, every timestamp is the given epoch
//! (`SOURCE_DATE_EPOCH`), owners are numeric, gzip has no name or time, and JSON is
//! written with a fixed key order, so the same bundle and binary give the same manifest
//! digest on any machine.

mod elf;
mod layer;
mod layout;
pub mod oci;
pub mod push;
pub mod reference;
mod rootfs;

use std::path::{Path, PathBuf};

use palisade_bundle::store::BuiltEngine;
use palisade_bundle::{BundleError, BundleRecord, Store};

pub use elf::{Arch, check_static};
pub use layout::read_layout;
pub use oci::Descriptor;
pub use push::{Challenge, Credentials, PushOutcome, push};
pub use reference::ImageRef;

/// The user (and group) id the server runs as in the image: not root, and the id
/// distroless images use for `nonroot`.
pub const USER_ID: u32 = 65532;
/// The Palisade home inside the image.
pub const HOME: &str = "/home/palisade";
/// Where the binary is inside the image.
pub const BINARY: &str = "/usr/local/bin/palisade";
/// The CA roots inside the image.
pub const CA_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The model API port the image's default arguments listen on.
pub const API_PORT: u16 = 8080;
/// The admin port (metrics, probes) the image's default arguments listen on.
pub const ADMIN_PORT: u16 = 9090;

/// The image's entrypoint: `palisade serve`; arguments come from [`default_args`] unless
/// the runtime passes its own (Kubernetes `args`, `docker run IMAGE ARGS`).
pub fn entrypoint() -> Vec<String> {
    vec![BINARY.to_owned(), "serve".to_owned()]
}

/// The image's default arguments to `palisade serve`: the model port on every address with
/// TLS (a self-signed certificate made in the home on first start, until the deployment
/// passes `--tls-cert`/`--tls-key` or `--workload-identity`), the admin port on every
/// address so that the kubelet's probes and Prometheus reach it (plaintext: it serves no
/// model and no token), and JSON logs for the cluster's log collector.
pub fn default_args() -> Vec<String> {
    [
        "--listen".to_owned(),
        format!("0.0.0.0:{API_PORT}"),
        "--tls".to_owned(),
        "--admin-listen".to_owned(),
        format!("0.0.0.0:{ADMIN_PORT}"),
        "--dangerous-plaintext-admin".to_owned(),
        "--log-format".to_owned(),
        "json".to_owned(),
    ]
    .into()
}

/// What goes into an image.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// The stored model version to package (its bundle is verified on the way in).
    pub record: BundleRecord,
    /// The `palisade` binary to run; it must be statically linked.
    pub binary: PathBuf,
    /// The CA roots (a PEM bundle) the server trusts for outgoing TLS (JWKS, upstreams).
    pub ca_roots: PathBuf,
    /// Seconds since the Unix epoch written as every timestamp (`SOURCE_DATE_EPOCH`).
    pub epoch: u64,
    /// The name Docker gives the image on `docker load`, and the layout's reference name
    /// (`NAME:TAG`).
    pub tag: String,
}

/// Where the image went and what it is.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The image manifest's descriptor: its digest names the image.
    pub manifest: Descriptor,
    /// The config blob's descriptor.
    pub config: Descriptor,
    /// The layers, base first.
    pub layers: Vec<Descriptor>,
    /// The OCI layout directory.
    pub layout: PathBuf,
    /// The tar of the layout directory (with `manifest.json`).
    pub tar: PathBuf,
    /// The size of the tar in bytes.
    pub tar_size: u64,
}

impl BuiltImage {
    /// Bytes a registry stores for the image (manifest, config and compressed layers).
    pub fn size(&self) -> u64 {
        self.manifest.size + self.config.size + self.layers.iter().map(|l| l.size).sum::<u64>()
    }
}

/// Reports progress to a person; the CLI draws it on a terminal only.
pub trait Progress {
    /// A new step begins; `bytes` is how much it will read, when known.
    fn step(&mut self, name: &str, bytes: u64);
    /// `bytes` more were read in the current step.
    fn advance(&mut self, bytes: u64);
}

/// Progress that nobody watches.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {
    fn step(&mut self, _name: &str, _bytes: u64) {}
    fn advance(&mut self, _bytes: u64) {}
}

/// Everything that can go wrong building or pushing an image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The bundle could not be read or failed verification.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// A bundle file changed after it was verified and while it was copied.
    #[error("bundle file `{file}` changed while it was copied into the image: {problem}")]
    Changed {
        /// The file, relative to the bundle.
        file: String,
        /// What differs.
        problem: String,
    },
    /// The binary cannot run in a `FROM scratch` image.
    #[error("{}: {problem}", path.display())]
    Binary {
        /// The binary.
        path: PathBuf,
        /// Why it cannot be used.
        problem: String,
    },
    /// The bundle needs an engine the image cannot hold.
    #[error(
        "{model} was built to run on onnxruntime, a shared library that a FROM scratch image with a static binary cannot load; only models on the built-in tract engine can be packaged"
    )]
    Engine {
        /// `NAME:VERSION`.
        model: String,
    },
    /// The CA roots file is not a PEM bundle of certificates.
    #[error("{}: not a PEM file of CA certificates (at most 16 MiB)", path.display())]
    CaRoots {
        /// The file.
        path: PathBuf,
    },
    /// The output directory holds something that is not an image layout.
    #[error("{} exists and is not an image layout written by `palisade image build`", path.display())]
    OutputExists {
        /// The directory.
        path: PathBuf,
    },
    /// An image layout that cannot be read back.
    #[error("{}: not a single-image OCI layout: {problem}", path.display())]
    Layout {
        /// The layout directory.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// An image reference (`REGISTRY/REPOSITORY:TAG`) that does not parse.
    #[error("invalid image reference `{reference}`: {problem}")]
    Reference {
        /// The text given.
        reference: String,
        /// Why it is refused.
        problem: String,
    },
    /// The registry refused or failed a request.
    #[error("registry {registry}: {problem}")]
    Registry {
        /// The registry's host.
        registry: String,
        /// What happened, with the status and the registry's own error when it sent one.
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
}

impl ImageError {
    fn io(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> ImageError {
        let path = path.to_owned();
        move |source| ImageError::Io { path, action, source }
    }
}

/// The bundles a graph or traffic bundle serves through, and theirs (each verified): an
/// image of a composite bundle carries them, as the server loads them from its home.
/// Versions named without a version are the store's latest, as `palisade build` resolved
/// them.
fn components(
    store: &Store,
    record: &BundleRecord,
    bundle: &palisade_bundle::VerifiedBundle,
) -> Result<Vec<(BundleRecord, palisade_bundle::VerifiedBundle)>, ImageError> {
    let mut seen = std::collections::BTreeSet::from([(record.name.clone(), record.version.clone())]);
    let mut pending = palisade_graph::uses_of(&bundle.manifest);
    let mut found = Vec::new();
    while let Some(target) = pending.pop() {
        let version = target.version.as_ref().map_or(palisade_bundle::store::LATEST_TAG, |v| v.as_str());
        let component = store.resolve(&target.name, version)?;
        if !seen.insert((component.name.clone(), component.version.clone())) {
            continue;
        }
        let loaded = store.load(&component)?;
        pending.extend(palisade_graph::uses_of(&loaded.manifest));
        found.push((component, loaded));
    }
    found.sort_by(|a, b| (&a.0.name, &a.0.version).cmp(&(&b.0.name, &b.0.version)));
    Ok(found)
}

/// Builds the image of `spec.record` from `store` into the layout directory `out` and the
/// tar `tar`. `out` is replaced when it holds an earlier layout; anything else there is
/// refused. The bundle is verified against its digest, and every file is hashed again as
/// it is copied.
pub fn build(
    store: &Store,
    spec: &ImageSpec,
    out: &Path,
    tar: &Path,
    progress: &mut dyn Progress,
) -> Result<BuiltImage, ImageError> {
    progress.step("verifying the bundle", 0);
    let bundle = store.load(&spec.record)?;
    let components = components(store, &spec.record, &bundle)?;
    for (record, bundle) in
        std::iter::once((&spec.record, &bundle)).chain(components.iter().map(|(r, b)| (r, b)))
    {
        if bundle.engine == Some(BuiltEngine::Onnxruntime) {
            return Err(ImageError::Engine { model: format!("{}:{}", record.name, record.version) });
        }
    }
    let arch = check_static(&spec.binary)?;
    let staging = layout::Staging::create(out)?;
    let layers = rootfs::layers(&spec.record, &bundle, &components, spec)?;
    let mut descriptors = Vec::with_capacity(layers.len());
    let mut diff_ids = Vec::with_capacity(layers.len());
    for layer in layers {
        progress.step(&format!("layer {}", layer.name()), layer.content_bytes());
        let written = layer.write(staging.blobs(), spec.epoch, progress)?;
        diff_ids.push(written.diff_id);
        descriptors.push(written.descriptor);
    }
    progress.step("config and manifest", 0);
    let config = oci::image_config(spec, &bundle, arch, diff_ids);
    let config = staging.blobs().put_json(oci::MEDIA_CONFIG, &config)?;
    let manifest = oci::image_manifest(spec, &bundle, config.clone(), descriptors.clone());
    let manifest = staging.blobs().put_json(oci::MEDIA_MANIFEST, &manifest)?;
    let layout = staging.finish(spec, &manifest, &config, &descriptors)?;
    progress.step("tar", 0);
    let tar_size = layout::write_tar(&layout, tar, spec.epoch)?;
    Ok(BuiltImage { manifest, config, layers: descriptors, layout, tar: tar.to_owned(), tar_size })
}
