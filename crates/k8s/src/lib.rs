//! Palisade on Kubernetes.
//!
//! - [`resource`]: the `ModelDeployment` custom resource (`palisade.dev/v1alpha1`), its CRD
//!   generated from the Rust types, and the checks its schema cannot express;
//! - [`render`]: a `ModelDeployment` rendered into the workloads, Services, autoscalers,
//!   disruption budgets, network policies and ConfigMaps that run it (what
//!   `palisade k8s render` prints and the operator applies);
//! - [`operator`]: the kube-runtime controller (`palisade operator`);
//! - [`lease`]: leader election over a `coordination.k8s.io` Lease.

pub mod lease;
pub mod operator;
pub mod render;
pub mod resource;

pub use render::{Object, render, to_yaml};
pub use resource::{ModelDeployment, ModelDeploymentSpec, ModelDeploymentStatus};

use std::path::Path;

use kube::CustomResourceExt;
use palisade_core::yaml;

/// What can go wrong here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `ModelDeployment` that cannot be deployed; `field` is its path.
    #[error("field `{field}`: {message}")]
    Invalid {
        /// Where, such as `spec.variants[1].traffic`.
        field: String,
        /// What is wrong, and what would be right.
        message: String,
    },
    /// A document that is not a `ModelDeployment`.
    #[error("{0}")]
    Parse(String),
    /// Turning objects into YAML or JSON failed.
    #[error("rendering failed: {0}")]
    Render(String),
    /// The Kubernetes API refused or failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The finalizer could not be added or removed, or its cleanup failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// This replica lost the leader Lease.
    #[error("lease: {0}")]
    Lease(String),
}

/// The `ModelDeployment` CustomResourceDefinition as YAML.
pub fn crd_yaml() -> Result<String, Error> {
    serde_yaml::to_string(&ModelDeployment::crd()).map_err(|err| Error::Render(err.to_string()))
}

/// Reads a `ModelDeployment` from a YAML file of at most 1 MiB and checks it; errors name
/// the file and the field.
pub fn parse_file(file: &Path) -> Result<ModelDeployment, Error> {
    let text = yaml::read_file(file, "the ModelDeployment").map_err(|err| Error::Parse(err.to_string()))?;
    parse(file, &text)
}

/// Reads a `ModelDeployment` from YAML (`file` names it in errors) and checks it. The text
/// goes through Palisade's bounded YAML reader (size, nesting, nodes and alias expansion
/// limited before anything is built), as every other configuration does.
pub fn parse(file: &Path, text: &str) -> Result<ModelDeployment, Error> {
    let value: serde_yaml::Value = yaml::from_str(file, text).map_err(|err| Error::Parse(err.to_string()))?;
    let api_version = value.get("apiVersion").and_then(|v| v.as_str()).unwrap_or_default();
    let kind = value.get("kind").and_then(|v| v.as_str()).unwrap_or_default();
    if api_version != "palisade.dev/v1alpha1" || kind != "ModelDeployment" {
        return Err(Error::Parse(format!(
            "{}: expected apiVersion palisade.dev/v1alpha1 and kind ModelDeployment, found `{api_version}` `{kind}`",
            file.display()
        )));
    }
    let md: ModelDeployment = serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        Error::Invalid { field: path, message: err.into_inner().to_string() }
    })?;
    md.spec.check()?;
    Ok(md)
}
