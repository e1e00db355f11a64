//! Preparing the model a manifest describes, on the engine it asks for or was built for.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use palisade_bundle::Manifest;
use palisade_bundle::manifest::{EngineChoice, ModelSource};
use palisade_bundle::store::{BuiltEngine, recorded_engine};
use palisade_core::ModelSignature;

use crate::onnx::OnnxModel;
use crate::onnxruntime::{self, OrtModel};
use crate::upstream::{UpstreamContext, UpstreamModel};
use crate::{Model, Runnable, RuntimeError};

/// Loads and prepares the model of a manifest, applying the inputs and outputs the manifest
/// declares (after checking they match the model). `model_path` is the file that defines the
/// model (`VerifiedBundle::model_path`): the model file, or for an upstream model the
/// manifest, next to which the files it names are found.
///
/// An ONNX model runs on the engine `palisade build` recorded in its bundle (`engine.json`).
/// Without a record (a bundle built before engines were recorded, or a model not yet
/// built), `model.runtime` decides: `tract` or `onnxruntime` as written; `auto` takes tract
/// where it prepares the model, onnxruntime otherwise or where
/// [`onnxruntime::PREFER_ENV`] asks for it (neural networks).
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
    let limit = max_body_bytes(manifest);
    Ok(match prepare_engine(manifest, model_path, context)? {
        Runnable::InProcess(model) => Runnable::InProcess(with_limits(model, limit)),
        Runnable::Upstream(model) => match Arc::try_unwrap(model) {
            Ok(model) => Runnable::Upstream(Arc::new(model.with_max_body_bytes(limit))),
            Err(shared) => Runnable::Upstream(shared),
        },
    })
}

/// The manifest's `limits.maxBodyBytes`, in bytes.
fn max_body_bytes(manifest: &Manifest) -> Option<usize> {
    manifest.limits.and_then(|l| l.max_body_bytes).map(|b| usize::try_from(b).unwrap_or(usize::MAX))
}

/// `model` with the manifest's limits, when it sets any.
pub(crate) fn with_limits(model: Arc<dyn Model>, max_body_bytes: Option<usize>) -> Arc<dyn Model> {
    match max_body_bytes {
        Some(limit) => Arc::new(Limited { model, max_body_bytes: limit }),
        None => model,
    }
}

/// A model with its manifest's request limits.
struct Limited {
    model: Arc<dyn Model>,
    max_body_bytes: usize,
}

impl Model for Limited {
    fn signature(&self) -> &ModelSignature {
        self.model.signature()
    }

    fn platform(&self) -> &'static str {
        self.model.platform()
    }

    fn engine(&self) -> &'static str {
        self.model.engine()
    }

    fn run(&self, inputs: Vec<palisade_core::Tensor>) -> Result<Vec<palisade_core::Tensor>, RuntimeError> {
        self.model.run(inputs)
    }

    fn min_batch_rows(&self) -> usize {
        self.model.min_batch_rows()
    }

    fn max_body_bytes(&self) -> Option<usize> {
        Some(self.max_body_bytes)
    }

    fn output_size(&self) -> Option<&crate::OutputSize> {
        self.model.output_size()
    }
}

fn prepare_engine(
    manifest: &Manifest,
    model_path: &Path,
    context: &UpstreamContext,
) -> Result<Runnable, RuntimeError> {
    let Some(section) = &manifest.model else {
        return Err(composite(model_path));
    };
    match &section.source {
        ModelSource::Onnx { runtime, .. } => {
            let engine = match (recorded_engine(manifest, model_path), runtime) {
                (Some(engine), _) => engine,
                (None, EngineChoice::Tract) => BuiltEngine::Tract,
                (None, EngineChoice::Onnxruntime) => BuiltEngine::Onnxruntime,
                (None, EngineChoice::Auto) => {
                    let bytes = std::fs::read(model_path).unwrap_or_default();
                    let ops = crate::onnx::operator_types(&bytes);
                    if onnxruntime::prefers(&ops) && onnxruntime::available() {
                        BuiltEngine::Onnxruntime
                    } else {
                        match prepare_onnx(manifest, model_path, BuiltEngine::Tract) {
                            Ok(model) => return Ok(Runnable::InProcess(model)),
                            Err(tract) if onnxruntime::available() => {
                                return prepare_onnx(manifest, model_path, BuiltEngine::Onnxruntime)
                                    .map(Runnable::InProcess)
                                    .map_err(|_| tract);
                            }
                            Err(tract) => return Err(tract),
                        }
                    }
                }
            };
            prepare_onnx(manifest, model_path, engine).map(Runnable::InProcess)
        }
        ModelSource::Upstream(spec) => {
            let dir = model_path.parent().unwrap_or(Path::new("."));
            let model = UpstreamModel::new(manifest.name.as_str(), spec, declared(manifest), dir, context)?;
            Ok(Runnable::Upstream(Arc::new(model)))
        }
    }
}

/// Prepares an ONNX model on one engine, with the manifest's declared inputs and outputs.
/// Errors name the model as the manifest does (`model.path`, relative to palisade.yaml), not
/// the staging or bundle copy being loaded.
pub fn prepare_onnx(
    manifest: &Manifest,
    model_path: &Path,
    engine: BuiltEngine,
) -> Result<Arc<dyn Model>, RuntimeError> {
    let user_path = manifest
        .model
        .as_ref()
        .and_then(|m| m.path())
        .map_or_else(|| model_path.to_owned(), |p| PathBuf::from(p.as_str()));
    // onnxruntime's messages quote the file it was given: the staging or bundle copy.
    let copy = model_path.display().to_string();
    let rename = |e: RuntimeError| match e {
        RuntimeError::Load { message, .. } => RuntimeError::Load {
            path: user_path.clone(),
            message: message.replace(&copy, &user_path.display().to_string()),
        },
        other => other,
    };
    let declared = declared(manifest);
    let declare_error = |message: String| RuntimeError::Load {
        path: user_path.clone(),
        message: format!("palisade.yaml: fields `model.inputs`/`model.outputs`: {message}"),
    };
    match engine {
        BuiltEngine::Tract => {
            let mut model = OnnxModel::load(model_path).map_err(rename)?;
            model.declare(&declared).map_err(declare_error)?;
            Ok(Arc::new(model))
        }
        BuiltEngine::Onnxruntime => {
            let mut model = OrtModel::load(model_path).map_err(rename)?;
            model.declare(&declared).map_err(declare_error)?;
            Ok(Arc::new(model))
        }
    }
}

fn declared(manifest: &Manifest) -> ModelSignature {
    let section = manifest.model.as_ref();
    ModelSignature {
        inputs: section.and_then(|m| m.inputs.clone()).unwrap_or_default(),
        outputs: section.and_then(|m| m.outputs.clone()).unwrap_or_default(),
    }
}

/// The error for a bundle that serves other models (`graph:`, `traffic:`): it has no model
/// of its own to prepare; the server runs it over the models it names.
pub(crate) fn composite(model_path: &Path) -> RuntimeError {
    RuntimeError::Load {
        path: model_path.to_owned(),
        message:
            "the bundle serves other models (`graph:` or `traffic:`); it has no model of its own to prepare"
                .to_owned(),
    }
}
