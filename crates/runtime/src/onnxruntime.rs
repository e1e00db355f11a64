//! onnxruntime as a second engine for ONNX models, through the `ort` crate with the
//! library loaded at run time (`load-dynamic`): the `libonnxruntime.so` of the PyPI
//! `onnxruntime` wheel, or any build of the same C API. Nothing is linked or downloaded at
//! build time; without the library, models run on tract only.
//!
//! The library is found, in order, at [`LIBRARY_ENV`] (`PALISADE_ONNXRUNTIME_LIB`), or in
//! the `onnxruntime` package of a Python environment: the active one (`VIRTUAL_ENV`), then
//! `.venv` or `venv` in the working directory. A library found by searching must belong to
//! the current user or root and be writable by no one else, so a shared directory cannot
//! plant one. It is loaded once per process ([`library`]).
//!
//! [`OrtModel`] is a [`Model`]: requests reach it through the same engine threads,
//! batcher and dispatcher as tract's models. `ort` runs a session with exclusive access, so
//! the model keeps a small pool of sessions (one intra-op thread each; parallelism comes
//! from the engine's threads), created as concurrent runs need them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, OnceLock};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor as OrtTensor, TensorElementType, ValueType};
use palisade_core::{DataType, Dim, ModelSignature, Tensor, TensorData, TensorSpec};

use tract_onnx::prelude::{SymbolScope, TDim};

use crate::onnx::{self, ModelFacts};
use crate::{Model, OutputSize, RuntimeError};

/// The environment variable naming the onnxruntime library file.
pub const LIBRARY_ENV: &str = "PALISADE_ONNXRUNTIME_LIB";
/// The environment variable that makes `runtime: auto` prefer onnxruntime for neural
/// networks (convolutions, recurrent layers, attention) when the library is present:
/// `PALISADE_ONNXRUNTIME_PREFER=networks`.
pub const PREFER_ENV: &str = "PALISADE_ONNXRUNTIME_PREFER";

/// Most sessions one model keeps: concurrent runs beyond it wait for a session.
fn max_sessions() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 16)
}

/// The loaded onnxruntime library and its environment.
pub struct Library {
    environment: ort::environment::Environment,
    path: PathBuf,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Library {
    /// The library file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The onnxruntime environment, for sessions made outside Palisade's models (the
    /// benchmarks' onnxruntime-alone baseline).
    pub fn environment(&self) -> &ort::environment::Environment {
        &self.environment
    }

    /// onnxruntime's version, as it reports it.
    pub fn version(&self) -> String {
        ort::info()
            .split(',')
            .find_map(|part| part.trim().strip_prefix("git-branch=rel-"))
            .unwrap_or("unknown")
            .to_owned()
    }
}

static LIBRARY: OnceLock<Result<Library, String>> = OnceLock::new();

/// The library, loaded on first use from [`library_path`]; why not, when it cannot be.
pub fn library() -> Result<&'static Library, String> {
    LIBRARY
        .get_or_init(|| match library_path() {
            Some(path) => open(&path),
            None => Err(format!(
                "the onnxruntime library was not found: set {LIBRARY_ENV} to libonnxruntime.so (in the PyPI \
                 wheel: site-packages/onnxruntime/capi/libonnxruntime.so.*), or activate a Python \
                 environment where `pip install onnxruntime` ran"
            )),
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Loads the library from `path`, unless one is loaded already (a process holds one
/// onnxruntime); returns the loaded library either way.
pub fn load(path: &Path) -> Result<&'static Library, String> {
    LIBRARY.get_or_init(|| open(path)).as_ref().map_err(Clone::clone)
}

/// Whether the library is loaded or can be loaded.
pub fn available() -> bool {
    library().is_ok()
}

fn open(path: &Path) -> Result<Library, String> {
    let load = || -> Result<ort::environment::Environment, String> {
        let builder = ort::init_from(path).map_err(|e| e.to_string())?;
        builder.with_name("palisade").with_telemetry(false).build().map_err(|e| e.to_string())
    };
    // A library that is not onnxruntime may make `ort` panic instead of failing.
    match std::panic::catch_unwind(load) {
        Ok(Ok(environment)) => Ok(Library { environment, path: path.to_owned() }),
        Ok(Err(e)) => Err(format!("cannot load onnxruntime from {}: {e}", path.display())),
        Err(_) => Err(format!(
            "cannot load onnxruntime from {}: it is not a usable onnxruntime library",
            path.display()
        )),
    }
}

/// Where the library is: [`LIBRARY_ENV`], else a search of the Python environments.
pub fn library_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(LIBRARY_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV").filter(|p| !p.is_empty()) {
        roots.push(PathBuf::from(venv));
    }
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd.join(".venv"));
        roots.push(cwd.join("venv"));
    }
    roots.iter().find_map(|root| find_in_environment(root))
}

/// The onnxruntime library of the Python environment at `root`
/// (`lib/python3.*/site-packages/onnxruntime/capi/libonnxruntime.so*`), if it is there
/// and trustworthy (see the module documentation).
pub fn find_in_environment(root: &Path) -> Option<PathBuf> {
    let lib = root.join("lib");
    let mut pythons: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path())
        .collect();
    pythons.sort();
    pythons.iter().rev().find_map(|python| {
        let capi = python.join("site-packages/onnxruntime/capi");
        let mut libraries: Vec<PathBuf> = std::fs::read_dir(&capi)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so")))
            .filter(|p| trusted(p))
            .collect();
        libraries.sort();
        libraries.pop()
    })
}

/// Whether a file found by searching may be loaded: owned by the current user or root,
/// writable by no one else.
fn trusted(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else { return false };
    // `/proc/self` belongs to the process's user.
    let owner_ok = meta.uid() == 0 || std::fs::metadata("/proc/self").is_ok_and(|me| me.uid() == meta.uid());
    meta.is_file() && owner_ok && meta.mode() & 0o022 == 0
}

/// Whether `auto` should prefer onnxruntime for a graph with these operators: when asked to
/// by [`PREFER_ENV`] and the graph is a neural network (convolutions, recurrent layers,
/// attention) without ONNX-ML operators.
pub fn prefers(op_types: &HashSet<(String, String)>) -> bool {
    let asked = std::env::var(PREFER_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("networks"));
    asked && is_network(op_types)
}

/// Whether a graph looks like a neural network that onnxruntime runs faster than tract.
pub fn is_network(op_types: &HashSet<(String, String)>) -> bool {
    const NETWORK_OPS: &[&str] = &[
        "Conv",
        "ConvTranspose",
        "LSTM",
        "GRU",
        "RNN",
        "Attention",
        "MultiHeadAttention",
        "LayerNormalization",
        "Gemm",
        "MatMul",
    ];
    let ml = op_types.iter().any(|(domain, _)| domain == "ai.onnx.ml");
    !ml && op_types.iter().any(|(_, op)| NETWORK_OPS.contains(&op.as_str()))
}

/// A model run by onnxruntime.
pub struct OrtModel {
    path: PathBuf,
    signature: ModelSignature,
    /// Idle sessions, and how many exist.
    pool: Mutex<(Vec<Session>, usize)>,
    returned: Condvar,
    library: &'static Library,
    /// Whether the signature's inputs and outputs are the session's, in its order.
    positional: bool,
    /// The outputs' shapes as expressions of the inputs' dims, from the file's declared
    /// shapes.
    output_size: OutputSize,
}

impl std::fmt::Debug for OrtModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtModel")
            .field("path", &self.path)
            .field("signature", &self.signature)
            .finish_non_exhaustive()
    }
}

impl OrtModel {
    /// Loads an ONNX model file with onnxruntime. The file is checked as for tract first
    /// (ONNX at all, external data only from the model's directory); its signature comes
    /// from the graph, with output shapes as onnxruntime infers them.
    pub fn load(path: &Path) -> Result<OrtModel, RuntimeError> {
        let fail = |message: String| RuntimeError::Load { path: path.to_owned(), message };
        let library = library().map_err(&fail)?;
        let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read the file: {e}")))?;
        let facts = onnx::inspect(path, &bytes)?;
        let session = new_session(library, path).map_err(&fail)?;
        let signature = signature(&session, &facts).map_err(&fail)?;
        let output_size =
            tract_output_size(path, &signature).unwrap_or_else(|| declared_output_size(&facts, &signature));
        onnx::check_row_bytes(&output_size).map_err(&fail)?;
        let same = |names: Vec<&str>, specs: &[TensorSpec]| {
            names.iter().copied().eq(specs.iter().map(|s| s.name.as_str()))
        };
        let positional = same(session.inputs().iter().map(|o| o.name()).collect(), &signature.inputs)
            && same(session.outputs().iter().map(|o| o.name()).collect(), &signature.outputs);
        Ok(OrtModel {
            path: path.to_owned(),
            signature,
            pool: Mutex::new((vec![session], 1)),
            returned: Condvar::new(),
            library,
            positional,
            output_size,
        })
    }

    /// Replaces the signature's specs by declared ones, after checking they fit (as
    /// [`crate::onnx::OnnxModel::declare`]).
    pub fn declare(&mut self, declared: &ModelSignature) -> Result<(), String> {
        onnx::merge_declared(&mut self.signature, declared)
    }

    fn take(&self) -> Result<Session, RuntimeError> {
        let poisoned = || RuntimeError::Execution("the onnxruntime session pool is unusable".to_owned());
        let mut pool = self.pool.lock().map_err(|_| poisoned())?;
        loop {
            if let Some(session) = pool.0.pop() {
                return Ok(session);
            }
            if pool.1 < max_sessions() {
                pool.1 += 1;
                drop(pool);
                return new_session(self.library, &self.path).map_err(|e| {
                    if let Ok(mut pool) = self.pool.lock() {
                        pool.1 -= 1;
                    }
                    RuntimeError::Execution(e)
                });
            }
            pool = self.returned.wait(pool).map_err(|_| poisoned())?;
        }
    }

    fn give_back(&self, session: Session) {
        if let Ok(mut pool) = self.pool.lock() {
            pool.0.push(session);
        }
        self.returned.notify_one();
    }
}

fn new_session(library: &Library, path: &Path) -> Result<Session, String> {
    let build = || -> ort::Result<Session> {
        Session::builder(&library.environment)?
            .with_intra_threads(1)?
            .with_inter_threads(1)?
            .with_optimization_level(GraphOptimizationLevel::All)?
            .commit_from_file(path)
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(build)) {
        Ok(result) => result.map_err(|e| format!("onnxruntime cannot load this model: {e}")),
        Err(_) => Err("onnxruntime stopped with an internal error while loading this model".to_owned()),
    }
}

/// The output size tract works out for the same file, when it prepares it: the operators'
/// own shapes, which the file's declarations may leave open (a tree ensemble's width is
/// its `n_targets`, whatever the output declares).
fn tract_output_size(path: &Path, signature: &ModelSignature) -> Option<OutputSize> {
    let model = onnx::OnnxModel::load(path).ok()?;
    let have: Vec<&str> = model.signature().outputs.iter().map(|s| s.name.as_str()).collect();
    let want: Vec<&str> = signature.outputs.iter().map(|s| s.name.as_str()).collect();
    model.output_size()?.select(&have, &want)
}

/// The output size from the file's declared dims (the session's shapes where the file
/// declares none): outputs that reuse an input's `dim_param` are computed from the
/// request, other dynamic dims estimated (see [`OutputSize`]).
fn declared_output_size(facts: &ModelFacts, signature: &ModelSignature) -> OutputSize {
    let scope = SymbolScope::default();
    let mut unnamed = 0usize;
    let mut dims = |name: &str, spec: &TensorSpec| -> Vec<TDim> {
        match facts.declared.get(name) {
            Some(dims) if dims.len() == spec.shape.len() => dims.clone(),
            _ => spec
                .shape
                .iter()
                .map(|d| match d {
                    Dim::Fixed(n) => TDim::Val(i64::try_from(*n).unwrap_or(i64::MAX)),
                    Dim::Dynamic => {
                        unnamed += 1;
                        TDim::Sym(scope.sym(&format!("session_unnamed_{unnamed}")))
                    }
                })
                .collect(),
        }
    };
    let inputs: Vec<Vec<TDim>> = signature.inputs.iter().map(|s| dims(&s.name, s)).collect();
    let outputs = signature.outputs.iter().map(|s| (s.datatype, dims(&s.name, s))).collect();
    OutputSize::new(&inputs, outputs)
}

/// The signature: inputs from the graph (as tract's models read them), outputs from the
/// session, each a tensor.
///
/// onnxruntime does not check the shapes a file declares for its outputs, and converters
/// get them wrong: onnxmltools declares a LightGBM classifier's `label` as `[1]`, though it
/// has one label per row. When the inputs have a dynamic leading (batch) dimension, an
/// output's leading dimension declared 1 is therefore taken as dynamic too.
fn signature(session: &Session, facts: &ModelFacts) -> Result<ModelSignature, String> {
    let batched = facts.inputs.iter().any(|i| i.shape.first() == Some(&Dim::Dynamic));
    let dim = |axis: usize, d: i64| match d {
        1 if axis == 0 && batched => Dim::Dynamic,
        d if d >= 0 => Dim::Fixed(d as u64),
        _ => Dim::Dynamic,
    };
    let mut outputs = Vec::with_capacity(session.outputs().len());
    for outlet in session.outputs() {
        let ValueType::Tensor { ty, shape, .. } = outlet.dtype() else {
            return Err(format!(
                "output `{}` is not a tensor ({}); V2 carries tensors only: export a classifier with \
                 `options={{id(model): {{\"zipmap\": False}}}}`, or use `runtime: tract`, which serves \
                 ZipMap's probability tensor",
                outlet.name(),
                outlet.dtype()
            ));
        };
        let datatype = data_type(*ty).ok_or_else(|| {
            format!("output `{}` has element type {ty:?}, which Palisade cannot serve", outlet.name())
        })?;
        outputs.push(TensorSpec {
            name: outlet.name().to_owned(),
            datatype,
            shape: shape.iter().enumerate().map(|(axis, &d)| dim(axis, d)).collect(),
            allow_nan: false,
            labels: facts.labels.get(outlet.name()).cloned(),
        });
    }
    Ok(ModelSignature { inputs: facts.inputs.clone(), outputs })
}

fn data_type(ty: TensorElementType) -> Option<DataType> {
    Some(match ty {
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::Uint8 => DataType::Uint8,
        TensorElementType::Uint16 => DataType::Uint16,
        TensorElementType::Uint32 => DataType::Uint32,
        TensorElementType::Uint64 => DataType::Uint64,
        TensorElementType::Int8 => DataType::Int8,
        TensorElementType::Int16 => DataType::Int16,
        TensorElementType::Int32 => DataType::Int32,
        TensorElementType::Int64 => DataType::Int64,
        TensorElementType::Float16 => DataType::Fp16,
        TensorElementType::Bfloat16 => DataType::Bf16,
        TensorElementType::Float32 => DataType::Fp32,
        TensorElementType::Float64 => DataType::Fp64,
        TensorElementType::String => DataType::Bytes,
        _ => return None,
    })
}

fn to_ort(tensor: Tensor) -> Result<(String, DynValue), RuntimeError> {
    let (name, shape, data) = tensor.into_parts();
    let invalid = |e: ort::Error| RuntimeError::InvalidInput(format!("input `{name}`: {e}"));
    let value = match data {
        TensorData::Bool(v) => OrtTensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::Uint8(v) => OrtTensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::Uint16(v) => OrtTensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::Uint32(v) => OrtTensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::Uint64(v) => OrtTensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::Int8(v) => OrtTensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::Int16(v) => OrtTensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::Int32(v) => OrtTensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::Int64(v) => OrtTensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::Fp16(v) => OrtTensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::Bf16(v) => OrtTensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::Fp32(v) => OrtTensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::Fp64(v) => OrtTensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::Bytes(v) => {
            let strings =
                v.into_iter().map(String::from_utf8).collect::<Result<Vec<_>, _>>().map_err(|_| {
                    RuntimeError::InvalidInput(format!("input `{name}`: BYTES elements must be UTF-8 text"))
                })?;
            if strings.iter().any(|s| s.contains('\0')) {
                return Err(RuntimeError::InvalidInput(format!(
                    "input `{name}`: BYTES elements must not contain NUL characters"
                )));
            }
            OrtTensor::from_string_array((shape, strings.as_slice())).map(|t| t.into_dyn())
        }
    };
    Ok((name.clone(), value.map_err(invalid)?))
}

fn from_ort(name: &str, value: &DynValue) -> Result<Tensor, RuntimeError> {
    fn plain<T: ort::value::PrimitiveTensorElementType + Clone>(
        value: &DynValue,
    ) -> ort::Result<(Vec<usize>, Vec<T>)> {
        let (shape, data) = value.try_extract_tensor::<T>()?;
        Ok((shape.iter().map(|&d| d.max(0) as usize).collect(), data.to_vec()))
    }
    let fail = |e: ort::Error| RuntimeError::Execution(format!("output `{name}`: {e}"));
    let ValueType::Tensor { ty, .. } = value.dtype() else {
        return Err(RuntimeError::Execution(format!("output `{name}` is not a tensor")));
    };
    let (shape, data) = match ty {
        TensorElementType::Bool => plain(value).map(|(s, v)| (s, TensorData::Bool(v))),
        TensorElementType::Uint8 => plain(value).map(|(s, v)| (s, TensorData::Uint8(v))),
        TensorElementType::Uint16 => plain(value).map(|(s, v)| (s, TensorData::Uint16(v))),
        TensorElementType::Uint32 => plain(value).map(|(s, v)| (s, TensorData::Uint32(v))),
        TensorElementType::Uint64 => plain(value).map(|(s, v)| (s, TensorData::Uint64(v))),
        TensorElementType::Int8 => plain(value).map(|(s, v)| (s, TensorData::Int8(v))),
        TensorElementType::Int16 => plain(value).map(|(s, v)| (s, TensorData::Int16(v))),
        TensorElementType::Int32 => plain(value).map(|(s, v)| (s, TensorData::Int32(v))),
        TensorElementType::Int64 => plain(value).map(|(s, v)| (s, TensorData::Int64(v))),
        TensorElementType::Float16 => plain(value).map(|(s, v)| (s, TensorData::Fp16(v))),
        TensorElementType::Bfloat16 => plain(value).map(|(s, v)| (s, TensorData::Bf16(v))),
        TensorElementType::Float32 => plain(value).map(|(s, v)| (s, TensorData::Fp32(v))),
        TensorElementType::Float64 => plain(value).map(|(s, v)| (s, TensorData::Fp64(v))),
        TensorElementType::String => value.try_extract_strings().map(|(shape, strings)| {
            let shape = shape.iter().map(|&d| d.max(0) as usize).collect();
            (shape, TensorData::Bytes(strings.into_iter().map(String::into_bytes).collect()))
        }),
        other => {
            return Err(RuntimeError::Execution(format!("output `{name}` has unsupported type {other:?}")));
        }
    }
    .map_err(fail)?;
    Tensor::new(name, shape, data).map_err(|e| RuntimeError::Execution(e.to_string()))
}

impl Model for OrtModel {
    fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    fn platform(&self) -> &'static str {
        "onnx"
    }

    fn engine(&self) -> &'static str {
        "onnxruntime"
    }

    fn output_size(&self) -> Option<&OutputSize> {
        Some(&self.output_size)
    }

    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RuntimeError> {
        let values = inputs.into_iter().map(to_ort).collect::<Result<Vec<_>, _>>()?;
        let mut session = self.take()?;
        let result = {
            let run = std::panic::AssertUnwindSafe(|| -> Result<Vec<Tensor>, RuntimeError> {
                let failed = |e: ort::Error| {
                    refused_value(&e).unwrap_or_else(|| RuntimeError::Execution(e.to_string()))
                };
                // Inputs by position when they are in the session's order (no name lookups).
                let outputs = if self.positional {
                    let values: Vec<SessionInputValue<'_>> =
                        values.into_iter().map(|(_, v)| v.into()).collect();
                    session.run(values.as_slice()).map_err(failed)?
                } else {
                    session.run(values).map_err(failed)?
                };
                self.signature
                    .outputs
                    .iter()
                    .enumerate()
                    .map(|(ix, spec)| {
                        let value = (self.positional && ix < outputs.len())
                            .then(|| &outputs[ix])
                            .or_else(|| outputs.get(spec.name.as_str()))
                            .ok_or_else(|| {
                                RuntimeError::Execution(format!(
                                    "onnxruntime returned no output `{}`",
                                    spec.name
                                ))
                            })?;
                        from_ort(&spec.name, value)
                    })
                    .collect()
            });
            std::panic::catch_unwind(run)
        };
        match result {
            Ok(outputs) => {
                self.give_back(session);
                outputs
            }
            Err(_) => {
                // The session may be in any state: drop it, so another is made when needed.
                if let Ok(mut pool) = self.pool.lock() {
                    pool.1 -= 1;
                }
                self.returned.notify_one();
                Err(RuntimeError::Execution("onnxruntime stopped with an internal error".to_owned()))
            }
        }
    }
}

/// onnxruntime's refusal of a category its `OneHotEncoder` does not know (`zeros = 0`,
/// scikit-learn's `handle_unknown="error"`), as the caller's error. onnxruntime says
/// neither the input nor the value; its message is matched as onnxruntime 1.32 writes it
/// (`onehotencoder.cc`).
fn refused_value(err: &ort::Error) -> Option<RuntimeError> {
    err.to_string().contains("Unknown Category and zeros = 0").then(|| {
        RuntimeError::InputRefused(
            "a value is not one of the categories the model's OneHotEncoder knows, and the model \
             refuses unknown ones (scikit-learn's handle_unknown=\"error\"); this model runs on \
             onnxruntime, which does not say which input or row"
                .to_owned(),
        )
    })
}
