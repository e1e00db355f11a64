//! `palisade build` with `explainer:`: reads the background, checks it against the
//! model's signature, and stores what the explainer needs in the bundle (TreeSHAP's node
//! covers, or KernelSHAP's rows).

use std::path::Path;

use palisade_bundle::StagedBundle;
use palisade_bundle::explainer::{self, Background, ExplainerRecord, MAX_KERNEL_ROWS};
use palisade_bundle::manifest::{ExplainerKind, MANIFEST_FILE};
use palisade_core::ModelSignature;
use palisade_explain::TreeEnsemble;
use palisade_runtime::onnx::ops::{FoundEnsemble, find_ensemble};

use crate::failure::Failure;

/// Computes and stages the explainer record; returns a note for the build's output.
pub fn stage(
    dir: &Path,
    staged: &mut StagedBundle,
    signature: &ModelSignature,
) -> Result<Option<String>, Failure> {
    let Some(section) = staged.manifest().explainer.clone() else { return Ok(None) };
    let file = section.background.under(dir);
    let fail = |field: &str, message: String, hint: &str| {
        Failure::usage(format!(
            "{}: field `{field}`: {}: {message}",
            dir.join(MANIFEST_FILE).display(),
            file.display()
        ))
        .hint(hint.to_owned())
    };
    let bytes = staged.background().unwrap_or_default();
    let background = Background::parse(section.background.as_str(), bytes).map_err(|message| {
        fail(
            "explainer.background",
            message,
            "a background is a CSV file whose first line names the features (then one row of model inputs per line), or a 2-D .npy array; see docs/explain.md",
        )
    })?;
    let n_features = explainer::check_background(&background, signature).map_err(|message| {
        fail(
            "explainer.background",
            message,
            "the background holds rows of the model's inputs, one column per feature; see docs/explain.md",
        )
    })?;
    let rows: Vec<f32> = background.values.iter().map(|&v| v as f32).collect();
    let (record, note) = match section.kind {
        ExplainerKind::TreeShap => {
            let model_bytes = std::fs::read(staged.model_path())
                .map_err(|e| Failure::other(format!("cannot read the staged model file: {e}")))?;
            let hint =
                "TreeShap explains a model that is one tree ensemble over its input; see docs/explain.md";
            let ensemble = match find_ensemble(&model_bytes).map_err(|m| fail("explainer.type", m, hint))? {
                FoundEnsemble::Classifier(model) => TreeEnsemble::from_classifier(&model),
                FoundEnsemble::Regressor(model) => TreeEnsemble::from_regressor(&model),
            }
            .map_err(|e| fail("explainer.type", e.to_string(), hint))?;
            let covers =
                palisade_explain::covers_from_background(&ensemble, &rows, background.n_rows, n_features)
                    .map_err(|e| fail("explainer.background", e.to_string(), hint))?;
            let note = format!(
                "explainer: TreeShap over {} trees, covers from {} background rows",
                ensemble.n_trees(),
                background.n_rows
            );
            let record = ExplainerRecord::TreeShap {
                features: background.features,
                background_rows: background.n_rows as u64,
                covers: covers.counts().to_vec(),
            };
            (record, note)
        }
        ExplainerKind::KernelShap => {
            if background.n_rows > MAX_KERNEL_ROWS {
                return Err(fail(
                    "explainer.background",
                    format!("it has {} rows; KernelShap keeps at most {MAX_KERNEL_ROWS}", background.n_rows),
                    "each explained row costs 2^M × (background rows) model rows: summarize the data (a sample or k-means centers of 10 to 100 rows)",
                ));
            }
            explainer::explained_output(signature)
                .map_err(|m| fail("explainer.type", m, "see docs/explain.md"))?;
            palisade_explain::KernelShap::new(
                rows.clone(),
                background.n_rows,
                n_features,
                palisade_explain::KernelShapOptions::default(),
            )
            .map_err(|e| fail("explainer.background", e.to_string(), "see docs/explain.md"))?;
            let note = format!(
                "explainer: KernelShap over {} background rows of {n_features} features",
                background.n_rows
            );
            (ExplainerRecord::KernelShap { features: background.features, rows }, note)
        }
    };
    staged.set_explainer(&record)?;
    Ok(Some(note))
}
