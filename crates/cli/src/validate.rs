//! `palisade validate FILE...`: the checks `build` and `serve` make of manifests, the
//! platform configuration and policy files, without building or serving.

use std::path::Path;

use palisade_bundle::manifest::{MANIFEST_FILE, Manifest};

use crate::cli::{FileKind, ValidateArgs};
use crate::failure::Failure;

/// Checks each file; stops at the first invalid one, naming it.
pub fn run(args: &ValidateArgs) -> Result<(), Failure> {
    for given in &args.files {
        let file = if given.is_dir() { given.join(MANIFEST_FILE) } else { given.clone() };
        let kind = match args.kind {
            Some(kind) => kind,
            None => detect(&file)?,
        };
        let what = check(&file, kind)?;
        println!("{}: valid {what}", file.display());
    }
    Ok(())
}

/// Tells the kinds apart by the document's top-level keys.
fn detect(file: &Path) -> Result<FileKind, Failure> {
    let text = read(file)?;
    let top_level = |key: &str| {
        text.lines().any(|line| line.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with(':')))
    };
    Ok(if top_level("apiVersion") || top_level("kind") {
        FileKind::Policy
    } else if ["model", "graph", "pipeline", "traffic"].into_iter().any(top_level)
        || file.file_name().is_some_and(|n| n == MANIFEST_FILE)
    {
        FileKind::Manifest
    } else {
        FileKind::Platform
    })
}

fn read(file: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(file).map_err(|e| Failure::usage(format!("cannot read {}: {e}", file.display())))
}

fn check(file: &Path, kind: FileKind) -> Result<String, Failure> {
    match kind {
        FileKind::Manifest => {
            let manifest = Manifest::load(file)
                .map_err(|e| Failure::usage(e).hint("every field is described in docs/manifest.md"))?;
            Ok(format!(
                "manifest of {}:{} (namespace {})",
                manifest.name, manifest.version, manifest.namespace
            ))
        }
        FileKind::Platform => {
            let text = read(file)?;
            palisade_server::Platform::parse(file, &text)
                .map_err(|e| Failure::usage(e).hint("every field is described in docs/config.md"))?;
            Ok("platform configuration".to_owned())
        }
        FileKind::Policy => {
            let docs = palisade_server::platform::load_policy_file(file, false).map_err(|e| {
                Failure::usage(e).hint("the resources are described in docs/security.md and docs/mtls.md")
            })?;
            let mut parts: Vec<String> = Vec::new();
            for (count, kind) in [
                (docs.authorization_policies.len(), "AuthorizationPolicy"),
                (docs.request_authentications.len(), "RequestAuthentication"),
                (docs.peer_authentications.len(), "PeerAuthentication"),
            ] {
                if count > 0 {
                    parts.push(format!("{count} {kind}"));
                }
            }
            if parts.is_empty() {
                return Err(Failure::usage(format!("{}: holds no resource", file.display())));
            }
            Ok(parts.join(", "))
        }
    }
}
