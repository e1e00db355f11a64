//! `palisade build` with `monitoring:`: reads the reference files, checks them against the
//! model's signature, checks the IsolationForest model, and stores what serving needs in the
//! bundle (see `palisade_server::monitoring::build_record`).

use std::path::Path;

use palisade_bundle::StagedBundle;
use palisade_bundle::manifest::MANIFEST_FILE;
use palisade_core::ModelSignature;

use crate::failure::Failure;

/// Computes and stages the monitoring record; returns notes for the build's output.
pub fn stage(
    dir: &Path,
    staged: &mut StagedBundle,
    signature: &ModelSignature,
) -> Result<Vec<String>, Failure> {
    let Some(section) = staged.manifest().monitoring.clone() else { return Ok(Vec::new()) };
    let forest = section.forest_model().map(|path| path.under(&staged.dir_path()));
    let reference = |field: &'static str| staged.reference(field).map(<[u8]>::to_vec);
    let (record, notes) =
        palisade_server::monitoring::build_record(&section, &reference, forest.as_deref(), signature)
            .map_err(|refusal| {
                let file = section
                    .references()
                    .into_iter()
                    .chain(section.forest_model().map(|p| ("monitoring.outliers.model", p)))
                    .find(|(field, _)| *field == refusal.field)
                    .map(|(_, path)| format!("{}: ", path.under(dir).display()))
                    .unwrap_or_default();
                Failure::usage(format!(
                    "{}: field `{}`: {file}{}",
                    dir.join(MANIFEST_FILE).display(),
                    refusal.field,
                    refusal.message
                ))
                .hint(refusal.hint)
            })?;
    staged.set_monitoring(&record)?;
    Ok(notes)
}
