//! `palisade image build`: a bundle as a container image (crates/image).

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use palisade_bundle::Store;
use palisade_image::{Credentials, ImageRef, ImageSpec, Progress};
use serde_json::json;

use crate::cli::OutputFormat;
use crate::failure::Failure;

/// Where the CA roots come from unless `--ca-roots` says otherwise (Debian's bundle).
const HOST_CA_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// `palisade image ...`
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build an OCI image of a stored model (FROM scratch: a static palisade, the bundle, CA
    /// roots, a non-root user; entrypoint `palisade serve`), without a daemon. Prints the
    /// manifest digest; the same bundle and binary give the same digest (SOURCE_DATE_EPOCH
    /// sets every timestamp, default 0).
    Build(ImageBuildArgs),
    /// Push an image layout written by `image build` to REGISTRY/REPOSITORY[:TAG] over the OCI
    /// distribution API (HTTPS; plain HTTP for a loopback registry); credentials from
    /// PALISADE_REGISTRY_USERNAME and PALISADE_REGISTRY_PASSWORD. Prints the digest.
    Push(ImagePushArgs),
}

/// `palisade image push`
#[derive(Debug, Args)]
pub struct ImagePushArgs {
    /// The OCI image layout directory.
    #[arg(value_name = "DIR")]
    pub layout: PathBuf,
    /// Where to: REGISTRY/REPOSITORY[:TAG] [default tag: the image's version].
    #[arg(value_name = "REF")]
    pub target: String,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `palisade image build`
#[derive(Debug, Args)]
pub struct ImageBuildArgs {
    /// The stored model: NAME, NAME:VERSION or NAME:latest.
    #[arg(value_name = "NAME[:VERSION]")]
    pub model: String,
    /// The OCI image layout directory to write (replaced if it holds an earlier layout).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The tar of the layout, for `docker load -i` and `skopeo copy oci-archive:` [default: DIR.tar].
    #[arg(long, value_name = "FILE")]
    pub tar: Option<PathBuf>,
    /// The statically linked palisade binary to put in the image (scripts/build-static.sh
    /// builds one) [default: this palisade, if it is static].
    #[arg(long, value_name = "FILE")]
    pub binary: Option<PathBuf>,
    /// CA roots (PEM) the server trusts for outgoing TLS (identity providers, upstreams).
    #[arg(long, value_name = "FILE", default_value = HOST_CA_ROOTS)]
    pub ca_roots: PathBuf,
    /// The name `docker load` gives the image, NAME:TAG [default: MODEL:VERSION].
    #[arg(long, value_name = "NAME:TAG")]
    pub tag: Option<String>,
    /// Also push it to REGISTRY/REPOSITORY[:TAG] (HTTPS; plain HTTP for a loopback registry);
    /// credentials from PALISADE_REGISTRY_USERNAME and PALISADE_REGISTRY_PASSWORD.
    #[arg(long, value_name = "REF")]
    pub push: Option<String>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Runs `palisade image ...`.
pub fn run(home: &Path, command: ImageCommand) -> Result<(), Failure> {
    match command {
        ImageCommand::Build(args) => build(home, &args),
        ImageCommand::Push(args) => push(&args),
    }
}

fn push(args: &ImagePushArgs) -> Result<(), Failure> {
    let layout = palisade_image::read_layout(&args.layout).map_err(failure)?;
    let version =
        layout.parsed.annotations.get("org.opencontainers.image.version").map_or("latest", String::as_str);
    let target =
        ImageRef::parse(&args.target, &palisade_image::reference::version_tag(version)).map_err(failure)?;
    let mut progress = Bar::new();
    let pushed =
        palisade_image::push(&layout, &target, credentials().as_ref(), &mut progress).map_err(failure)?;
    progress.clear();
    let pushed = json!({
        "reference": pushed.reference.to_string(),
        "digest": pushed.digest,
        "uploaded": pushed.uploaded,
        "skipped": pushed.skipped,
    });
    match args.output {
        OutputFormat::Json => crate::output::json(&pushed),
        OutputFormat::Text => {
            println!("{}", layout.manifest.digest);
            eprintln!(
                "palisade: pushed {} ({} blobs uploaded, {} already there)",
                pushed["reference"].as_str().unwrap_or_default(),
                pushed["uploaded"],
                pushed["skipped"]
            );
            Ok(())
        }
    }
}

fn build(home: &Path, args: &ImageBuildArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let (name, version) = crate::models::parse_reference(&args.model)?;
    let store = Store::open(home)?;
    let record = store.resolve(&name, &version)?;
    let version_tag = palisade_image::reference::version_tag(record.version.as_str());
    let tag = match &args.tag {
        Some(tag) => tag.clone(),
        None => format!("{}:{version_tag}", record.name),
    };
    let push = args
        .push
        .as_deref()
        .map(|text| ImageRef::parse(text, &version_tag))
        .transpose()
        .map_err(Failure::usage)?;
    let epoch = source_date_epoch()?;
    let binary = match &args.binary {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .map_err(|e| Failure::other(format!("cannot find this palisade binary: {e}")))?,
    };
    let tar = args.tar.clone().unwrap_or_else(|| default_tar(&args.out));
    let spec = ImageSpec {
        record: record.clone(),
        binary,
        ca_roots: args.ca_roots.clone(),
        epoch,
        tag: tag.clone(),
    };
    let mut progress = Bar::new();
    let built = palisade_image::build(&store, &spec, &args.out, &tar, &mut progress).map_err(failure)?;
    let pushed = match &push {
        Some(target) => {
            let layout = palisade_image::read_layout(&built.layout).map_err(failure)?;
            let credentials = credentials();
            Some(
                palisade_image::push(&layout, target, credentials.as_ref(), &mut progress)
                    .map_err(failure)?,
            )
        }
        None => None,
    };
    progress.clear();
    let seconds = started.elapsed().as_secs_f64();
    match args.output {
        OutputFormat::Json => crate::output::json(&json!({
            "digest": built.manifest.digest,
            "name": record.name,
            "version": record.version,
            "bundle_digest": record.digest,
            "tag": tag,
            "layout": built.layout,
            "tar": built.tar,
            "size": built.size(),
            "tar_size": built.tar_size,
            "config": built.config.digest,
            "layers": built.layers.iter().map(|l| json!({"digest": l.digest, "size": l.size})).collect::<Vec<_>>(),
            "pushed": pushed.as_ref().map(|p| json!({
                "reference": p.reference.to_string(),
                "digest": p.digest,
                "uploaded": p.uploaded,
                "skipped": p.skipped,
            })),
            "seconds": (seconds * 1000.0).round() / 1000.0,
        }))?,
        OutputFormat::Text => {
            // The digest alone on stdout, for `$(palisade image build ...)`; the rest is for people.
            println!("{}", built.manifest.digest);
            eprintln!(
                "palisade: image {tag} of bundle {} ({} layers, {}) in {seconds:.1} s",
                record.digest.short(),
                built.layers.len(),
                mib(built.size()),
            );
            eprintln!("palisade: OCI layout {}", built.layout.display());
            eprintln!("palisade: tar {} (docker load -i, skopeo copy oci-archive:)", built.tar.display());
            if let Some(pushed) = &pushed {
                eprintln!(
                    "palisade: pushed {} ({} blobs uploaded, {} already there): {}/{}@{}",
                    pushed.reference,
                    pushed.uploaded,
                    pushed.skipped,
                    pushed.reference.registry,
                    pushed.reference.repository,
                    pushed.digest
                );
            }
        }
    }
    Ok(())
}

/// `DIR.tar` beside the layout directory.
fn default_tar(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "image".into());
    name.push(".tar");
    out.with_file_name(name)
}

/// `SOURCE_DATE_EPOCH` (reproducible-builds.org), else 0.
fn source_date_epoch() -> Result<u64, Failure> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(text) if !text.is_empty() => text.trim().parse().map_err(|_| {
            Failure::usage(format!("SOURCE_DATE_EPOCH=`{text}` is not a number of seconds since 1970"))
        }),
        _ => Ok(0),
    }
}

fn credentials() -> Option<Credentials> {
    let username = std::env::var("PALISADE_REGISTRY_USERNAME").ok().filter(|u| !u.is_empty())?;
    let password = std::env::var("PALISADE_REGISTRY_PASSWORD").unwrap_or_default();
    Some(Credentials::new(username, password))
}

fn failure(err: palisade_image::ImageError) -> Failure {
    use palisade_image::ImageError as E;
    match err {
        E::Bundle(err) => Failure::from(err),
        E::Changed { .. } => {
            Failure::data(err).hint("something changed the store while the image was built; build it again")
        }
        E::Binary { .. } => Failure::usage(err),
        E::Engine { .. } => Failure::usage(err)
            .hint("serve it with `palisade serve` where onnxruntime is installed, or as an upstream model (docs/upstream.md)"),
        E::CaRoots { .. } => Failure::usage(err).hint("pass a PEM bundle of CA certificates with --ca-roots"),
        E::OutputExists { .. } => Failure::usage(err).hint("remove it, or choose another --out"),
        E::Reference { .. } => Failure::usage(err),
        E::Registry { .. } => Failure::other(err),
        _ => Failure::other(err),
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A one-line progress bar on stderr, drawn only when stderr is a terminal.
struct Bar {
    on: bool,
    step: String,
    total: u64,
    done: u64,
    drawn: Option<Instant>,
}

impl Bar {
    fn new() -> Self {
        Bar { on: std::io::stderr().is_terminal(), step: String::new(), total: 0, done: 0, drawn: None }
    }

    fn draw(&mut self, force: bool) {
        if !self.on || (!force && self.drawn.is_some_and(|t| t.elapsed() < Duration::from_millis(100))) {
            return;
        }
        self.drawn = Some(Instant::now());
        let line = if let Some(filled) = (self.done.min(self.total) * 30).checked_div(self.total) {
            let filled = filled as usize;
            format!(
                "{:<24} [{}{}] {} / {}",
                self.step,
                "#".repeat(filled),
                " ".repeat(30 - filled),
                mib(self.done),
                mib(self.total)
            )
        } else {
            self.step.clone()
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
    }

    fn clear(&mut self) {
        if self.on && self.drawn.is_some() {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
    }
}

impl Progress for Bar {
    fn step(&mut self, name: &str, bytes: u64) {
        name.clone_into(&mut self.step);
        self.total = bytes;
        self.done = 0;
        self.draw(true);
    }

    fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        self.draw(false);
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn the_image_default_arguments_are_valid_serve_arguments() {
        let mut argv = vec!["palisade".to_owned(), "serve".to_owned()];
        argv.extend(palisade_image::default_args());
        let parsed = Cli::try_parse_from(&argv);
        assert!(matches!(parsed, Ok(Cli { command: Command::Serve(_), .. })), "{parsed:?}");
        assert_eq!(palisade_image::entrypoint()[1], "serve");
    }

    #[test]
    fn the_tar_goes_beside_the_layout() {
        assert_eq!(default_tar(Path::new("out/iris")), PathBuf::from("out/iris.tar"));
        assert_eq!(default_tar(Path::new("iris/")), PathBuf::from("iris.tar"));
    }
}
