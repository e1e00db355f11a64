//! `palisade predict MODEL --input FILE`: runs a model once, in this process, on an Open
//! Inference Protocol (V2) request read from a file, and prints the V2 response.
//!
//! MODEL is a stored model (`NAME[:VERSION]`) or a model directory, which is prepared and
//! self-tested exactly as `palisade build` would, without storing anything: the way to
//! check an export before it becomes a bundle (the Python SDK's `palisade.save` does).

use std::io::{Read, Write};
use std::path::Path;

use palisade_bundle::Store;
use palisade_bundle::manifest::MANIFEST_FILE;
use palisade_core::{ModelName, Tensor};
use palisade_protocol::v2::{self, ResponseOutput};
use palisade_runtime::{Runnable, UpstreamContext};

use crate::cli::PredictArgs;
use crate::failure::Failure;

/// Runs the command.
pub fn run(home: &Path, args: &PredictArgs) -> Result<(), Failure> {
    let body = read_input(&args.input)?;
    let request = v2::parse_infer_request(&body, None).map_err(|err| {
        Failure::usage(format!("{}: {err}", args.input)).hint(
            "the file holds a V2 inference request, the body of POST /v2/models/NAME/infer (docs/serving.md)",
        )
    })?;
    let model = load(home, &args.model)?;
    let Runnable::InProcess(runnable) = &model.runnable else {
        return Err(Failure::usage(format!("{} is served by an upstream server", args.model))
            .hint("call it through `palisade serve`; predict runs models in this process only"));
    };
    let signature = model.runnable.signature();
    let inputs = palisade_runtime::check_inputs(signature, request.inputs)
        .map_err(|err| Failure::usage(format!("{}: {err}", args.input)))?;
    let outputs = runnable.run(inputs).map_err(|err| Failure::other(format!("{}: {err}", args.model)))?;
    let selected = select(outputs, &request.outputs)?;
    let encoded = v2::encode_infer_response(&model.name, &model.version, request.id.as_deref(), &selected);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&encoded.body)
        .and_then(|()| stdout.write_all(b"\n"))
        .map_err(|err| Failure::other(format!("cannot write the answer: {err}")))
}

/// A model ready to run, with the name and version its answers carry.
struct Loaded {
    runnable: Runnable,
    name: String,
    version: String,
}

/// A model directory (prepared and self-tested as `palisade build` does) or a stored model.
fn load(home: &Path, model: &str) -> Result<Loaded, Failure> {
    let dir = Path::new(model);
    let store = Store::open(home)?;
    if dir.join(MANIFEST_FILE).is_file() {
        let staged = store.stage(dir)?;
        let check = UpstreamContext { check_only: true, ..Default::default() };
        let built = palisade_runtime::selftest::build(staged.manifest(), &staged.model_path(), &check)
            .map_err(|err| {
                Failure::usage(format!("{}: {err}", dir.join(MANIFEST_FILE).display()))
                    .hint("Palisade serves ONNX models; check the export (skl2onnx, tf2onnx, torch.onnx) and model.path")
            })?;
        let manifest = staged.manifest();
        return Ok(Loaded {
            runnable: built.runnable,
            name: manifest.name.to_string(),
            version: manifest.version.to_string(),
        });
    }
    if dir.is_dir() {
        return Err(Failure::usage(format!("{model} has no {MANIFEST_FILE}"))
            .hint("pass a model directory (palisade.yaml and the model file) or a stored NAME[:VERSION]"));
    }
    let (name, version) = model.split_once(':').unwrap_or((model, "latest"));
    let name = ModelName::new(name).map_err(|err| {
        Failure::usage(format!("`{model}` is neither a model directory nor a stored model: {err}"))
            .hint("pass a directory holding palisade.yaml, or NAME, NAME:VERSION or NAME:latest")
    })?;
    let record = store.resolve(&name, version)?;
    let bundle = store.load(&record)?;
    let runnable = palisade_runtime::prepare(&bundle.manifest, &bundle.model_path())
        .map_err(|err| Failure::other(format!("{model}: {err}")))?;
    Ok(Loaded { runnable, name: record.name.to_string(), version: record.version.to_string() })
}

/// The outputs the request asks for, in its order (all when it names none).
fn select(outputs: Vec<Tensor>, wanted: &[v2::RequestedOutput]) -> Result<Vec<ResponseOutput>, Failure> {
    if wanted.is_empty() {
        return Ok(outputs.into_iter().map(|tensor| ResponseOutput { tensor, binary: false }).collect());
    }
    let mut selected = Vec::with_capacity(wanted.len());
    for want in wanted {
        let Some(tensor) = outputs.iter().find(|t| t.name() == want.name) else {
            let names: Vec<&str> = outputs.iter().map(Tensor::name).collect();
            return Err(Failure::usage(format!(
                "unknown output `{}`: the model's outputs are {names:?}",
                want.name
            )));
        };
        selected.push(ResponseOutput { tensor: tensor.clone(), binary: false });
    }
    Ok(selected)
}

/// The request: a file, or standard input for `-`.
fn read_input(input: &str) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    let read = if input == "-" {
        std::io::stdin().lock().read_to_end(&mut body).map(|_| ())
    } else {
        std::fs::File::open(input).and_then(|mut file| file.read_to_end(&mut body)).map(|_| ())
    };
    read.map_err(|err| Failure::usage(format!("cannot read {input}: {err}")))?;
    Ok(body)
}
