//! Preparing the model a manifest describes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use palisade_bundle::Manifest;
use palisade_bundle::manifest::ModelSource;
use palisade_core::ModelSignature;

use crate::onnx::OnnxModel;
use crate::upstream::{UpstreamContext, UpstreamModel};
use crate::{Runnable, RuntimeError};

/// Loads and prepares the model of a manifest, applying the inputs and outputs the manifest
/// declares (after checking they match the model). `model_path` is the file that defines the
/// model (`VerifiedBundle::model_path`): the model file, or for an upstream model the
/// manifest, next to which the files it names are found.
///
/// An upstream model that asks for mutual TLS, or names no CA, needs the serving host's TLS
/// material: use [`prepare_with`].
pub fn prepare(manifest: &Manifest, model_path: &Path) -> Result<Runnable, RuntimeError> {
    prepare_with(manifest, model_path, &UpstreamContext::default())
}

/// [`prepare`], with what upstream models need from the server that runs them.
pub fn prepare_with(
    manifest: &Manifest,
    model_path: &Path,
    context: &UpstreamContext,
) -> Result<Runnable, RuntimeError> {
    let declared = ModelSignature {
        inputs: manifest.model.inputs.clone().unwrap_or_default(),
        outputs: manifest.model.outputs.clone().unwrap_or_default(),
    };
    match &manifest.model.source {
        ModelSource::Onnx { path } => {
            // Errors name the model as the manifest does (`model.path`, relative to
            // palisade.yaml), not the staging or bundle copy being loaded.
            let user_path = PathBuf::from(path.as_str());
            let mut model = OnnxModel::load(model_path).map_err(|e| match e {
                RuntimeError::Load { message, .. } => RuntimeError::Load { path: user_path.clone(), message },
                other => other,
            })?;
            model.declare(&declared).map_err(|message| RuntimeError::Load {
                path: user_path,
                message: format!("palisade.yaml: fields `model.inputs`/`model.outputs`: {message}"),
            })?;
            Ok(Runnable::InProcess(Arc::new(model)))
        }
        ModelSource::Upstream(spec) => {
            let dir = model_path.parent().unwrap_or(Path::new("."));
            let model = UpstreamModel::new(manifest.name.as_str(), spec, declared, dir, context)?;
            Ok(Runnable::Upstream(Arc::new(model)))
        }
    }
}
