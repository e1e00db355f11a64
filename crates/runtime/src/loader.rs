//! Preparing the model a manifest describes.

use std::path::Path;
use std::sync::Arc;

use palisade_bundle::Manifest;
use palisade_bundle::manifest::ModelFormat;
use palisade_core::ModelSignature;

use crate::onnx::OnnxModel;
use crate::{Model, RuntimeError};

/// Loads and prepares the model file of a manifest, applying the inputs and outputs the
/// manifest declares (after checking they match the model).
pub fn prepare(manifest: &Manifest, model_path: &Path) -> Result<Arc<dyn Model>, RuntimeError> {
    match manifest.model.format {
        ModelFormat::Onnx => {
            let mut model = OnnxModel::load(model_path)?;
            let declared = ModelSignature {
                inputs: manifest.model.inputs.clone().unwrap_or_default(),
                outputs: manifest.model.outputs.clone().unwrap_or_default(),
            };
            model.declare(&declared).map_err(|message| RuntimeError::Load {
                path: model_path.to_owned(),
                message: format!("palisade.yaml: fields `model.inputs`/`model.outputs`: {message}"),
            })?;
            Ok(Arc::new(model))
        }
    }
}
