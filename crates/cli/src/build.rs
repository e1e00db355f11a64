//! `palisade build DIR`

use std::path::Path;

use palisade_bundle::Store;
use palisade_bundle::manifest::{MANIFEST_FILE, ModelFormat};
use serde_json::json;

use crate::cli::{BuildArgs, OutputFormat};
use crate::failure::Failure;
use crate::output;

/// Validates the model directory, prepares the model on its engine and self-tests it (so a
/// broken model never becomes a bundle, see `palisade_runtime::selftest`), records its
/// signature and engine, and commits the bundle.
pub fn run(home: &Path, args: &BuildArgs) -> Result<(), Failure> {
    if !args.dir.is_dir() {
        return Err(Failure::usage(format!("{} is not a directory", args.dir.display()))
            .hint("pass the directory that holds palisade.yaml and the model file"));
    }
    if !args.dir.join(MANIFEST_FILE).is_file() {
        return Err(Failure::usage(format!("{} has no {MANIFEST_FILE}", args.dir.display())).hint(
            "write one next to the model: name, version, owners and model.path (see docs/manifest.md), or model.upstream for a model another server runs (docs/upstream.md)",
        ));
    }
    let store = Store::open(home)?;
    for warning in store.warnings() {
        crate::output::warn(&warning);
    }
    let mut staged = store.stage(&args.dir)?;
    if staged.manifest().is_composite() {
        return build_graph(home, &store, staged, args);
    }
    // Upstream models are checked, not contacted: the server's TLS material comes at serve time.
    let check = palisade_runtime::UpstreamContext { check_only: true, ..Default::default() };
    let built = palisade_runtime::selftest::build(staged.manifest(), &staged.model_path(), &check).map_err(|err| {
        let hint = match staged.manifest().model.as_ref().map(|m| m.format()) {
            Some(ModelFormat::Onnx) | None => {
                "Palisade serves ONNX models; check the export (skl2onnx, tf2onnx, torch.onnx) and model.path"
            }
            Some(ModelFormat::Upstream) => "check `model.upstream` against docs/upstream.md",
        };
        Failure::usage(format!("{}: {err}", args.dir.join(MANIFEST_FILE).display())).hint(hint)
    })?;
    let signature = built.runnable.signature().clone();
    if staged.manifest().batching.is_some()
        && let Err(err) = palisade_runtime::check_batchable(&signature)
    {
        return Err(Failure::usage(format!(
            "{}: field `batching`: {err}",
            args.dir.join(MANIFEST_FILE).display()
        ))
        .hint("declare the inputs with a -1 first dimension under model.inputs, or remove `batching:`"));
    }
    staged.set_signature(&signature)?;
    let explainer_note = crate::explainer::stage(&args.dir, &mut staged, &signature)?;
    let monitoring_notes = crate::monitoring::stage(&args.dir, &mut staged, &signature)?;
    let mut notes = built.notes.clone();
    notes.extend(explainer_note);
    notes.extend(monitoring_notes);
    if let Some(engine) = built.engine {
        staged.set_engine(engine)?;
    }
    let record = store.commit(staged)?;
    let self_test_ms = built.self_test.as_secs_f64() * 1000.0;
    match args.output {
        OutputFormat::Json => output::json(&json!({
            "name": record.name,
            "version": record.version,
            "namespace": record.namespace,
            "digest": record.digest,
            "inputs": signature.inputs,
            "outputs": signature.outputs,
            "engine": built.engine.map(|e| e.as_str()),
            "selfTest": built.engine.map(|_| json!({
                "milliseconds": self_test_ms,
                "comparedEngines": built.compared,
            })),
            "notes": notes,
        })),
        OutputFormat::Text => {
            println!("built {}:{} {}", record.name, record.version, record.digest);
            println!("  namespace: {}", record.namespace);
            if let Some(engine) = built.engine {
                let compared = if built.compared { ", answers match the other engine's" } else { "" };
                println!(
                    "  engine:    {} (self-test passed in {self_test_ms:.0} ms{compared})",
                    engine.as_str()
                );
            }
            for input in &signature.inputs {
                println!("  input:  {}", output::tensor(input));
            }
            for out in &signature.outputs {
                println!("  output: {}", output::tensor(out));
            }
            println!("  store:  {}", home.display());
            for note in &notes {
                println!("  note:   {note}");
            }
            Ok(())
        }
    }
}

/// Builds a bundle with `graph:` or `traffic:`: every model it names must be in the store,
/// tensors must fit from node to node, and no cycle may lead back to it. Its signature is
/// the graph's.
fn build_graph(
    home: &Path,
    store: &Store,
    mut staged: palisade_bundle::StagedBundle,
    args: &BuildArgs,
) -> Result<(), Failure> {
    let manifest_path = args.dir.join(MANIFEST_FILE);
    let graph = palisade_graph::compile(staged.manifest(), &palisade_graph::StoreCatalog(store), None)
        .map_err(|err| {
            Failure::usage(format!("{}: field `{}`: {}", manifest_path.display(), err.field, err.message))
                .hint("see docs/graphs.md")
        })?;
    let signature = graph.signature().clone();
    staged.set_signature(&signature)?;
    let record = store.commit(staged)?;
    let uses: Vec<String> = graph.uses().iter().map(ToString::to_string).collect();
    match args.output {
        OutputFormat::Json => output::json(&json!({
            "name": record.name,
            "version": record.version,
            "namespace": record.namespace,
            "digest": record.digest,
            "inputs": signature.inputs,
            "outputs": signature.outputs,
            "engine": "graph",
            "uses": uses,
        })),
        OutputFormat::Text => {
            println!("built {}:{} {}", record.name, record.version, record.digest);
            println!("  namespace: {}", record.namespace);
            println!("  graph:     {} nodes over {}", graph.nodes().len(), uses.join(", "));
            for input in &signature.inputs {
                println!("  input:  {}", output::tensor(input));
            }
            for out in &signature.outputs {
                println!("  output: {}", output::tensor(out));
            }
            println!("  store:  {}", home.display());
            Ok(())
        }
    }
}
