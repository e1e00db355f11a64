//! `palisade build` with `explainer:`: reads the background, checks it against the
//! model's signature, and stores what the explainer needs in the bundle (TreeSHAP's node
//! covers, or KernelSHAP's rows); see `palisade_server::explain::build_record`.

use std::path::Path;

use palisade_bundle::StagedBundle;
use palisade_bundle::manifest::MANIFEST_FILE;
use palisade_core::ModelSignature;

use crate::failure::Failure;

/// Computes and stages the explainer record; returns a note for the build's output.
pub fn stage(
    dir: &Path,
    staged: &mut StagedBundle,
    signature: &ModelSignature,
) -> Result<Option<String>, Failure> {
    let Some(section) = staged.manifest().explainer.clone() else { return Ok(None) };
    let model = std::fs::read(staged.model_path())
        .map_err(|e| Failure::other(format!("cannot read the staged model file: {e}")))?;
    let background = staged.background().unwrap_or_default();
    let (record, note) = palisade_server::explain::build_record(
        section.kind,
        section.background.as_str(),
        background,
        &model,
        signature,
    )
    .map_err(|refusal| {
        Failure::usage(format!(
            "{}: field `{}`: {}: {}",
            dir.join(MANIFEST_FILE).display(),
            refusal.field,
            section.background.under(dir).display(),
            refusal.message
        ))
        .hint(refusal.hint)
    })?;
    staged.set_explainer(&record)?;
    Ok(Some(note))
}
