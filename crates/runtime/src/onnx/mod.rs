//! ONNX models, run in-process by tract with Palisade's own ONNX-ML operators.
//!
//! Loading parses the file (after making sure it is ONNX at all, see [`diagnose`]), checks
//! the tensors it stores outside itself (external data, which must sit in the model's
//! directory), resolves the signature (declared dims stay fixed, named or unnamed dynamic
//! dims become `-1`), optimizes the graph once and keeps the runnable plan. Dynamic dims
//! keep the model's own `dim_param` names as tract symbols, one per name, so inputs that
//! share a batch dimension and the exporter's `value_info` agree. Runs reuse per-plan
//! states from a small pool, so a request pays for neither re-optimization nor state
//! allocation.

mod diagnose;
mod external;
pub mod isolation_forest;
pub mod limits;
pub mod ops;

/// The ONNX protobuf types, as tract reads them (for tools and tests that write models).
pub use tract_onnx::pb;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use palisade_core::{DataType, Dim, ModelSignature, Tensor, TensorData, TensorSpec};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::{Factoid, InferenceFact};
use tract_onnx::tract_hir::internal::{DimLike, SimpleState};

use crate::output_size::{MAX_ROW_BYTES, OutputSize};
use crate::{Model, RuntimeError};

/// States kept for reuse per model; more concurrent runs than this allocate a fresh one.
const STATE_POOL: usize = 64;

/// A prepared ONNX model.
pub struct OnnxModel {
    plan: Arc<TypedSimplePlan>,
    min_batch_rows: usize,
    signature: ModelSignature,
    /// Whether run states may be reused: only when no operator of the plan keeps state
    /// between runs. tract's `Scan` (KNeighbors exports, recurrent networks) keeps its
    /// loop-carried values from one run to the next, so a reused state answers a new
    /// batch with the previous batch's values (wrong labels, seen with batch sizes
    /// 1, 2); such plans get a fresh state for every run.
    poolable: bool,
    states: Mutex<Vec<TypedSimpleState>>,
    /// The outputs' shapes as expressions of the inputs' dims, from the typed plan.
    output_size: OutputSize,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel").field("signature", &self.signature).finish_non_exhaustive()
    }
}

/// The tract ONNX front end with Palisade's operators registered.
pub fn framework() -> tract_onnx::Onnx {
    // Graph outputs of sequence/map type (ZipMap) have no tract fact: ignore declared output
    // types and shapes and let inference derive them.
    let mut onnx = tract_onnx::onnx().with_ignore_output_shapes(true).with_ignore_output_types(true);
    // External data is read with plain reads, not memory-mapped.
    onnx.provider = Arc::new(tract_onnx::data_resolver::FopenDataResolver);
    ops::register(&mut onnx.op_register);
    onnx
}

impl OnnxModel {
    /// Loads and prepares an ONNX model file. Tensors it stores outside itself (external
    /// data) are read from files in the same directory.
    pub fn load(path: &Path) -> Result<OnnxModel, RuntimeError> {
        let bytes =
            std::fs::read(path).map_err(|e| load_error(path, format!("cannot read the file: {e}")))?;
        OnnxModel::from_bytes(path, &bytes)
    }

    /// Prepares an ONNX model from its bytes; `path` names it in errors, and its directory
    /// holds the model's external data files, if any.
    ///
    /// Model files are input too: a panic inside tract on a malformed graph is caught and
    /// reported as a load error with its message (nothing is printed).
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<OnnxModel, RuntimeError> {
        diagnose::catch(|| OnnxModel::prepare(path, bytes)).unwrap_or_else(|panic| {
            Err(load_error(
                path,
                format!("tract could not load this graph (it stopped with an internal error: {panic})"),
            ))
        })
    }

    fn prepare(path: &Path, bytes: &[u8]) -> Result<OnnxModel, RuntimeError> {
        let fail = |message: String| load_error(path, message);
        let onnx = framework();
        let (proto, facts) = read(path, bytes, &onnx)?;
        let ModelFacts { inputs, labels, dir, .. } = facts;
        let graph = proto.graph.as_ref().ok_or_else(|| fail("the ONNX file has no graph".to_owned()))?;
        let bf16 = |v: &pb::ValueInfoProto| {
            matches!(v.r#type.as_ref().and_then(|t| t.value.as_ref()),
                Some(pb::type_proto::Value::TensorType(t)) if t.elem_type == 16)
        };
        if let Some(v) = graph.input.iter().chain(&graph.output).find(|v| bf16(v)) {
            return Err(fail(format!(
                "`{}` is a bfloat16 tensor, and tract has no bfloat16 type; onnxruntime runs BF16 models \
                 (`model.runtime: onnxruntime`, or `auto` with the onnxruntime library present)",
                v.name
            )));
        }
        let min_batch_rows = min_batch_rows(graph);
        let dir_name = dir.as_deref();

        // The exporter's value_info is a hint: when it contradicts what the operators
        // compute, the graph is prepared again without it. Unnamed leading dims get a
        // symbol each; when that fails (inputs concatenated along their rows, as a
        // ColumnTransformer's are), they share one batch symbol.
        let without_value_info = onnx.clone().with_ignore_value_info(true);
        let attempts =
            [(&onnx, false), (&without_value_info, false), (&onnx, true), (&without_value_info, true)];
        let mut first_error = None;
        let mut typed = None;
        for (framework, share_batch) in attempts {
            match optimize(framework, &proto, dir_name, &inputs, share_batch) {
                Ok(model) => {
                    typed = Some(model);
                    break;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let Some(typed) = typed else {
            let missing = diagnose::unsupported_operators(&proto, &onnx.op_register);
            let message = if missing.is_empty() {
                diagnose::prepare_failure(first_error.as_deref().unwrap_or("unknown error"))
            } else {
                format!("the graph uses operators Palisade cannot run: {}", missing.join("; "))
            };
            return Err(fail(message));
        };

        let mut outputs = Vec::with_capacity(graph.output.len());
        for (ix, output) in graph.output.iter().enumerate() {
            let fact = typed.output_fact(ix).map_err(|e| fail(format!("output `{}`: {e:#}", output.name)))?;
            let datatype = data_type(fact.datum_type).ok_or_else(|| {
                fail(format!("output `{}` has unsupported type {:?}", output.name, fact.datum_type))
            })?;
            let shape = fact
                .shape
                .iter()
                .map(|d| d.to_usize().map_or(Dim::Dynamic, |n| Dim::Fixed(n as u64)))
                .collect();
            outputs.push(TensorSpec {
                name: output.name.clone(),
                datatype,
                shape,
                allow_nan: false,
                labels: labels.get(output.name.as_str()).cloned(),
            });
        }
        let output_size = typed_output_size(&typed, &outputs).map_err(&fail)?;
        check_row_bytes(&output_size).map_err(&fail)?;
        let plan = typed.into_runnable().map_err(|e| fail(format!("{e:#}")))?;
        let first = SimpleState::new(&plan).map_err(|e| fail(format!("{e:#}")))?;
        let poolable = first.op_states.iter().all(Option::is_none);
        let states = if poolable { vec![first] } else { Vec::new() };
        Ok(OnnxModel {
            plan,
            min_batch_rows,
            signature: ModelSignature { inputs, outputs },
            poolable,
            states: Mutex::new(states),
            output_size,
        })
    }

    /// Replaces the inferred signature's input and output specs by declared ones (from the
    /// manifest), after checking they describe the same tensors.
    pub fn declare(&mut self, declared: &ModelSignature) -> Result<(), String> {
        merge_declared(&mut self.signature, declared)
    }

    /// Whether runs reuse pooled states; `false` for plans with operators that keep state
    /// between runs (`Scan`), which get a fresh state every run.
    pub fn reuses_states(&self) -> bool {
        self.poolable
    }

    fn take_state(&self) -> Result<TypedSimpleState, RuntimeError> {
        let pooled = self.states.lock().ok().and_then(|mut pool| pool.pop());
        match pooled {
            Some(state) => Ok(state),
            None => SimpleState::new(&self.plan).map_err(|e| RuntimeError::Execution(format!("{e:#}"))),
        }
    }

    fn return_state(&self, state: TypedSimpleState) {
        if !self.poolable {
            return;
        }
        if let Ok(mut pool) = self.states.lock()
            && pool.len() < STATE_POOL
        {
            pool.push(state);
        }
    }
}

impl Model for OnnxModel {
    fn min_batch_rows(&self) -> usize {
        self.min_batch_rows
    }

    fn output_size(&self) -> Option<&OutputSize> {
        Some(&self.output_size)
    }

    fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    fn platform(&self) -> &'static str {
        "onnx"
    }

    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RuntimeError> {
        let values = inputs.into_iter().map(to_tract).collect::<Result<TVec<TValue>, _>>()?;
        let mut state = self.take_state()?;
        // A panic inside tract fails this run only: the state it left is dropped.
        let outputs = diagnose::catch(|| state.run(values))
            .map_err(|panic| {
                RuntimeError::Execution(format!("the model stopped with an internal error: {panic}"))
            })?
            .map_err(|e| match e.chain().find_map(|cause| cause.downcast_ref::<ops::RefusedValue>()) {
                Some(refused) => RuntimeError::InputRefused(refused.to_string()),
                None => RuntimeError::Execution(format!("{e:#}")),
            })?;
        self.return_state(state);
        outputs
            .into_iter()
            .zip(&self.signature.outputs)
            .map(|(value, spec)| from_tract(&spec.name, &value))
            .collect()
    }
}

/// What Palisade reads from an ONNX file before either engine prepares it.
#[derive(Debug, Clone)]
pub(crate) struct ModelFacts {
    /// The graph's inputs (initializers excluded), NaN allowed where the model imputes it.
    pub inputs: Vec<TensorSpec>,
    /// Class labels of probability outputs, by output name.
    pub labels: HashMap<String, Vec<String>>,
    /// The model's directory, where its external data is, as tract's parser wants it
    /// (`None` when the name is not UTF-8 and the model has no external data).
    pub dir: Option<String>,
    /// The declared dims of the graph's inputs and outputs, by name: a `dim_value` as a
    /// value, a `dim_param` as the symbol of that name (shared by every value that uses
    /// it), an unnamed dim as a symbol of its own.
    pub declared: HashMap<String, Vec<TDim>>,
}

/// Checks an ONNX file as both engines need it (ONNX at all, a model, external data only
/// from its directory) and reads its facts.
pub(crate) fn inspect(path: &Path, bytes: &[u8]) -> Result<ModelFacts, RuntimeError> {
    let onnx = framework();
    diagnose::catch(|| read(path, bytes, &onnx).map(|(_, facts)| facts)).unwrap_or_else(|panic| {
        Err(load_error(path, format!("the ONNX file could not be read (an internal error: {panic})")))
    })
}

/// The `(domain, op_type)` of every node of an ONNX file, for choosing an engine; empty
/// when the file cannot be parsed.
pub fn operator_types(bytes: &[u8]) -> HashSet<(String, String)> {
    framework()
        .proto_model_for_read(&mut &bytes[..])
        .ok()
        .and_then(|proto| proto.graph)
        .map(|graph| graph.node.iter().map(|n| (n.domain.clone(), n.op_type.clone())).collect())
        .unwrap_or_default()
}

/// Values a categorical operator knows for one graph input: the categories of a
/// `OneHotEncoder`, the keys of a `LabelEncoder` or `CategoryMapper` of `ai.onnx.ml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vocabulary {
    /// String categories.
    Strings(Vec<Vec<u8>>),
    /// Integer categories.
    Ints(Vec<i64>),
}

/// Operators that pass a column through unchanged in value (a cast, a column pick, a
/// reshape) between a graph input and the categorical operator that reads it.
const VALUE_PRESERVING: &[&str] =
    &["Cast", "Gather", "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "ArrayFeatureExtractor"];

/// The categories that the model's categorical operators know, by the graph input they
/// read (directly or through [`VALUE_PRESERVING`] operators). The build's self-test feeds
/// them instead of made-up values: scikit-learn's default `OneHotEncoder`
/// (`handle_unknown="error"`) is exported as an operator that fails on any other value.
/// An input read by operators with different vocabularies is left out; so is everything
/// when the file cannot be parsed.
pub fn input_vocabularies(bytes: &[u8]) -> HashMap<String, Vocabulary> {
    let Some(graph) = framework().proto_model_for_read(&mut &bytes[..]).ok().and_then(|proto| proto.graph)
    else {
        return HashMap::new();
    };
    let producers: HashMap<&str, &pb::NodeProto> =
        graph.node.iter().flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n))).collect();
    let inputs: HashSet<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
    let mut found: HashMap<String, Option<Vocabulary>> = HashMap::new();
    for node in &graph.node {
        let keys: &[&str] = match (node.domain.as_str(), node.op_type.as_str()) {
            ("ai.onnx.ml", "OneHotEncoder" | "CategoryMapper") => &["cats_strings", "cats_int64s"],
            ("ai.onnx.ml", "LabelEncoder") => &["keys_strings", "keys_int64s"],
            _ => continue,
        };
        let vocabulary = node.attribute.iter().filter(|a| keys.contains(&a.name.as_str())).find_map(|a| {
            if !a.strings.is_empty() {
                Some(Vocabulary::Strings(a.strings.clone()))
            } else if !a.ints.is_empty() {
                Some(Vocabulary::Ints(a.ints.clone()))
            } else {
                None
            }
        });
        let (Some(vocabulary), Some(mut tensor)) = (vocabulary, node.input.first().map(String::as_str))
        else {
            continue;
        };
        // Walk back to a graph input; at most a few steps (a graph is acyclic, but bounded anyway).
        for _ in 0..16 {
            match producers.get(tensor) {
                Some(p) if VALUE_PRESERVING.contains(&p.op_type.as_str()) && !p.input.is_empty() => {
                    tensor = p.input[0].as_str();
                }
                _ => break,
            }
        }
        if !inputs.contains(tensor) {
            continue;
        }
        found
            .entry(tensor.to_owned())
            .and_modify(|seen| {
                if seen.as_ref() != Some(&vocabulary) {
                    *seen = None;
                }
            })
            .or_insert(Some(vocabulary));
    }
    found.into_iter().filter_map(|(name, v)| v.map(|v| (name, v))).collect()
}

fn read(
    path: &Path,
    bytes: &[u8],
    onnx: &tract_onnx::Onnx,
) -> Result<(pb::ModelProto, ModelFacts), RuntimeError> {
    let fail = |message: String| load_error(path, message);
    if let Some(message) = diagnose::foreign_format(bytes) {
        return Err(fail(message));
    }
    let proto = onnx.proto_model_for_read(&mut &bytes[..]).map_err(|e| {
        fail(format!(
            "not a valid ONNX file ({e}); ONNX files come from skl2onnx, torch.onnx.export, \
             onnxmltools, or tf2onnx (a TensorFlow SavedModel: `python -m tf2onnx.convert --saved-model DIR --output model.onnx`)"
        ))
    })?;
    if let Some(message) = diagnose::not_a_model(&proto) {
        return Err(fail(message));
    }
    let graph = proto.graph.as_ref().ok_or_else(|| fail("the ONNX file has no graph".to_owned()))?;
    limits::check(graph).map_err(|e| fail(format!("the model asks for too much memory: {e}")))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let external = external::check(graph, dir).map_err(&fail)?;
    let initializers: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    // A model that imputes missing values (NaN) expects NaN in its float inputs.
    let imputes_nan = graph.node.iter().any(ops::imputer::replaces_nan);
    let mut inputs = Vec::new();
    for input in graph.input.iter().filter(|i| !initializers.contains(i.name.as_str())) {
        let mut spec = input_spec(input).map_err(&fail)?;
        spec.allow_nan =
            imputes_nan && matches!(spec.datatype, DataType::Fp32 | DataType::Fp64 | DataType::Fp16);
        inputs.push(spec);
    }
    let dir = match dir.to_str() {
        Some(name) => Some(name.to_owned()),
        None if external > 0 => {
            return Err(fail(
                "the model's directory name is not UTF-8, so its external data cannot be read".to_owned(),
            ));
        }
        None => None,
    };
    let labels = probability_labels(graph).into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let declared = declared_dims(graph);
    let facts = ModelFacts { inputs, labels, dir, declared };
    Ok((proto, facts))
}

/// The declared dims of the graph's inputs and outputs (see [`ModelFacts::declared`]).
fn declared_dims(graph: &pb::GraphProto) -> HashMap<String, Vec<TDim>> {
    use pb::tensor_shape_proto::dimension::Value;
    let scope = SymbolScope::default();
    let mut unnamed = 0usize;
    let mut dims = HashMap::new();
    for value in graph.input.iter().chain(&graph.output) {
        let Some(pb::type_proto::Value::TensorType(tensor)) =
            value.r#type.as_ref().and_then(|t| t.value.as_ref())
        else {
            continue;
        };
        let Some(shape) = &tensor.shape else { continue };
        let mut fresh = || {
            unnamed += 1;
            TDim::Sym(scope.sym(&format!("palisade_unnamed_{unnamed}")))
        };
        let value_dims = shape
            .dim
            .iter()
            .map(|d| match &d.value {
                Some(Value::DimValue(n)) if *n >= 0 => TDim::Val(*n),
                Some(Value::DimParam(name))
                    if !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_') =>
                {
                    TDim::Sym(scope.sym(name))
                }
                _ => fresh(),
            })
            .collect();
        dims.insert(value.name.clone(), value_dims);
    }
    dims
}

/// The output size of a typed plan: its input and output facts' dims.
fn typed_output_size(typed: &TypedModel, outputs: &[TensorSpec]) -> Result<OutputSize, String> {
    let mut inputs = Vec::with_capacity(typed.inputs.len());
    for ix in 0..typed.inputs.len() {
        let fact = typed.input_fact(ix).map_err(|e| format!("{e:#}"))?;
        inputs.push(fact.shape.iter().cloned().collect::<Vec<TDim>>());
    }
    let mut dims = Vec::with_capacity(outputs.len());
    for (ix, spec) in outputs.iter().enumerate() {
        let fact = typed.output_fact(ix).map_err(|e| format!("{e:#}"))?;
        dims.push((spec.datatype, fact.shape.iter().cloned().collect::<Vec<TDim>>()));
    }
    Ok(OutputSize::new(&inputs, dims))
}

/// Refuses a model whose one-row outputs would take more than [`MAX_ROW_BYTES`].
pub(crate) fn check_row_bytes(size: &OutputSize) -> Result<(), String> {
    let bytes = size.bytes_per_row();
    if bytes > MAX_ROW_BYTES {
        return Err(format!(
            "the model asks for too much memory: the outputs of one input row would take {bytes} bytes, \
             more than the limit of {MAX_ROW_BYTES}"
        ));
    }
    Ok(())
}

/// Replaces a signature's input and output specs by declared ones (from the manifest),
/// after checking they describe the same tensors.
pub(crate) fn merge_declared(
    signature: &mut ModelSignature,
    declared: &ModelSignature,
) -> Result<(), String> {
    fn merge(kind: &str, inferred: &mut [TensorSpec], declared: &[TensorSpec]) -> Result<(), String> {
        if declared.is_empty() {
            return Ok(());
        }
        if declared.len() != inferred.len() {
            return Err(format!(
                "the manifest declares {} {kind}s but the model has {}: {:?}",
                declared.len(),
                inferred.len(),
                inferred.iter().map(|s| s.name.as_str()).collect::<Vec<_>>()
            ));
        }
        for spec in declared {
            let Some(actual) = inferred.iter_mut().find(|s| s.name == spec.name) else {
                return Err(format!("the model has no {kind} named `{}`", spec.name));
            };
            if actual.datatype != spec.datatype {
                return Err(format!(
                    "{kind} `{}` is {} in the model, not {}",
                    spec.name, actual.datatype, spec.datatype
                ));
            }
            let compatible = actual.shape.len() == spec.shape.len()
                && actual.shape.iter().zip(&spec.shape).all(|(a, d)| match (a, d) {
                    (Dim::Fixed(a), Dim::Fixed(d)) => a == d,
                    (Dim::Fixed(_), Dim::Dynamic) => false,
                    (Dim::Dynamic, _) => true,
                });
            if !compatible {
                return Err(format!(
                    "{kind} `{}` has shape {:?} in the model, which does not fit the declared {:?}",
                    spec.name,
                    actual.shape_i64(),
                    spec.shape_i64()
                ));
            }
            let labels = spec.labels.clone().or(actual.labels.take());
            *actual = TensorSpec { labels, ..spec.clone() };
        }
        Ok(())
    }
    merge("input", &mut signature.inputs, &declared.inputs)?;
    merge("output", &mut signature.outputs, &declared.outputs)
}

/// Parses the graph and optimizes it for the given inputs. A dynamic input dim whose
/// `dim_param` tract read as a plain symbol keeps that symbol (shared by every input and
/// `value_info` entry with the same name); an unnamed one gets a fresh symbol, except
/// unnamed leading dims with `share_batch`, which all get one batch symbol.
fn optimize(
    onnx: &tract_onnx::Onnx,
    proto: &pb::ModelProto,
    dir: Option<&str>,
    inputs: &[TensorSpec],
    share_batch: bool,
) -> Result<TypedModel, String> {
    let parsed = onnx.parse(proto, dir).map_err(|e| format!("{e:#}"))?;
    if !parsed.unresolved_inputs.is_empty() {
        return Err(format!("the graph reads values nothing defines: {:?}", parsed.unresolved_inputs));
    }
    let mut model = parsed.model;
    let batch = model.symbols.new_with_prefix("batch");
    for (ix, spec) in inputs.iter().enumerate() {
        let dt = datum_type(spec.datatype)?;
        let named: Vec<Option<TDim>> = model
            .input_fact(ix)
            .map_err(|e| format!("input `{}`: {e:#}", spec.name))?
            .shape
            .dims()
            .map(|d| d.concretize().filter(|d| matches!(d, TDim::Sym(_))))
            .collect();
        let shape: TVec<TDim> = spec
            .shape
            .iter()
            .enumerate()
            .map(|(axis, dim)| match dim {
                Dim::Fixed(n) => (*n as usize).to_dim(),
                Dim::Dynamic => match named.get(axis).cloned().flatten() {
                    Some(symbol) => symbol,
                    None if share_batch && axis == 0 => batch.to_dim(),
                    None => model.symbols.new_with_prefix("unnamed").to_dim(),
                },
            })
            .collect();
        model
            .set_input_fact(ix, InferenceFact::dt_shape(dt, shape))
            .map_err(|e| format!("input `{}`: {e:#}", spec.name))?;
    }
    let mut typed = model.into_typed().map_err(|e| format!("{e:#}"))?;
    declutter(&mut typed).map_err(|e| format!("{e:#}"))?;
    typed.optimize().map_err(|e| format!("{e:#}"))?;
    Ok(typed)
}

/// tract's declutter passes without `FoldUniformMask`, which computes wrong shapes for a
/// boolean `And` of a comparison on a `Range` (tract 0.23.9: `And(true, arange(n) >= 0)`
/// unsqueezed to `[1, 1, n, 1]` came out `[1, 1, 1, 1]`, and with `>= 3` two rows). Every
/// Hugging Face model exported with transformers 5 builds its attention mask this way. The
/// pass is an optimization only; the other passes fold what it would where that is correct.
fn declutter(model: &mut TypedModel) -> TractResult<()> {
    let mut optimizer = tract_onnx::tract_core::optim::Optimizer::declutter();
    optimizer.passes.retain(|pass| !format!("{pass:?}").starts_with("FoldUniformMask"));
    debug_assert_eq!(
        optimizer.passes.len(),
        tract_onnx::tract_core::optim::Optimizer::declutter().passes.len() - 1
    );
    optimizer.optimize(model)
}

/// Rows a batch needs for its rows to be computed as in any larger batch (see
/// [`Model::min_batch_rows`]): 2 for linear models, whose one-row scores are summed in
/// onnxruntime's one-row order; 1 otherwise. Tree ensembles, softmax (Palisade's row-wise
/// one) and tract's matrix products compute a row the same way wherever it sits in a
/// batch of any size; the runtime's batching tests check it on every fixture model.
fn min_batch_rows(graph: &pb::GraphProto) -> usize {
    let linear = |n: &pb::NodeProto| matches!(n.op_type.as_str(), "LinearClassifier" | "LinearRegressor");
    if graph.node.iter().any(linear) { 2 } else { 1 }
}

fn load_error(path: &Path, message: String) -> RuntimeError {
    RuntimeError::Load { path: path.to_owned(), message }
}

fn input_spec(input: &pb::ValueInfoProto) -> Result<TensorSpec, String> {
    let Some(pb::type_proto::Value::TensorType(tensor)) =
        input.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(format!("input `{}` is not a tensor; Palisade serves tensor inputs only", input.name));
    };
    let datatype = onnx_data_type(tensor.elem_type).ok_or_else(|| {
        format!(
            "input `{}` has ONNX element type {}, which Palisade cannot serve",
            input.name, tensor.elem_type
        )
    })?;
    let shape = match &tensor.shape {
        Some(shape) => shape
            .dim
            .iter()
            .map(|d| match &d.value {
                Some(pb::tensor_shape_proto::dimension::Value::DimValue(n)) if *n >= 0 => {
                    Dim::Fixed(*n as u64)
                }
                _ => Dim::Dynamic,
            })
            .collect(),
        None => {
            return Err(format!("input `{}` has no declared rank; re-export it with a shape", input.name));
        }
    };
    Ok(TensorSpec { name: input.name.clone(), datatype, shape, allow_nan: false, labels: None })
}

/// ONNX `TensorProto.DataType` codes Palisade can serve.
fn onnx_data_type(code: i32) -> Option<DataType> {
    Some(match code {
        1 => DataType::Fp32,
        2 => DataType::Uint8,
        3 => DataType::Int8,
        4 => DataType::Uint16,
        5 => DataType::Int16,
        6 => DataType::Int32,
        7 => DataType::Int64,
        8 => DataType::Bytes,
        9 => DataType::Bool,
        10 => DataType::Fp16,
        11 => DataType::Fp64,
        12 => DataType::Uint32,
        13 => DataType::Uint64,
        16 => DataType::Bf16,
        _ => return None,
    })
}

fn datum_type(dt: DataType) -> Result<DatumType, String> {
    Ok(match dt {
        DataType::Bool => DatumType::Bool,
        DataType::Uint8 => DatumType::U8,
        DataType::Uint16 => DatumType::U16,
        DataType::Uint32 => DatumType::U32,
        DataType::Uint64 => DatumType::U64,
        DataType::Int8 => DatumType::I8,
        DataType::Int16 => DatumType::I16,
        DataType::Int32 => DatumType::I32,
        DataType::Int64 => DatumType::I64,
        DataType::Fp16 => DatumType::F16,
        DataType::Fp32 => DatumType::F32,
        DataType::Fp64 => DatumType::F64,
        DataType::Bytes => DatumType::String,
        DataType::Bf16 => {
            return Err(
                "tract has no bfloat16 type; onnxruntime runs BF16 models (`model.runtime: onnxruntime`, \
                        or `auto` with the onnxruntime library present)"
                    .to_owned(),
            );
        }
    })
}

fn data_type(dt: DatumType) -> Option<DataType> {
    Some(match dt {
        DatumType::Bool => DataType::Bool,
        DatumType::U8 => DataType::Uint8,
        DatumType::U16 => DataType::Uint16,
        DatumType::U32 => DataType::Uint32,
        DatumType::U64 => DataType::Uint64,
        DatumType::I8 => DataType::Int8,
        DatumType::I16 => DataType::Int16,
        DatumType::I32 => DataType::Int32,
        DatumType::I64 => DataType::Int64,
        DatumType::F16 => DataType::Fp16,
        DatumType::F32 => DataType::Fp32,
        DatumType::F64 => DataType::Fp64,
        DatumType::String => DataType::Bytes,
        // tract types integer index arithmetic (ArgMax, shapes) as symbolic dims; ONNX says INT64.
        DatumType::TDim => DataType::Int64,
        _ => return None,
    })
}

fn to_tract(tensor: Tensor) -> Result<TValue, RuntimeError> {
    let (name, shape, data) = tensor.into_parts();
    let built = match data {
        TensorData::Bool(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v),
        TensorData::Uint8(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v),
        TensorData::Uint16(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v),
        TensorData::Uint32(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v),
        TensorData::Uint64(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v),
        TensorData::Int8(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v),
        TensorData::Int16(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v),
        TensorData::Int32(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v),
        TensorData::Int64(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v),
        TensorData::Fp16(v) => {
            let v: Vec<f16> = v.iter().map(|x| f16::from_bits(x.to_bits())).collect();
            tract_onnx::prelude::Tensor::from_shape(&shape, &v)
        }
        TensorData::Fp32(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v),
        TensorData::Fp64(v) => tract_onnx::prelude::Tensor::from_shape(&shape, &v),
        TensorData::Bf16(_) => {
            return Err(RuntimeError::InvalidInput(format!("input `{name}`: tract has no bfloat16 type")));
        }
        TensorData::Bytes(v) => {
            let strings =
                v.into_iter().map(String::from_utf8).collect::<Result<Vec<_>, _>>().map_err(|_| {
                    RuntimeError::InvalidInput(format!("input `{name}`: BYTES elements must be UTF-8 text"))
                })?;
            tract_ndarray::ArrayD::from_shape_vec(shape.as_slice(), strings)
                .map(tract_onnx::prelude::Tensor::from)
                .map_err(|e| anyhow::anyhow!(e))
        }
    };
    built.map(TValue::from).map_err(|e| RuntimeError::Execution(format!("input `{name}`: {e:#}")))
}

fn from_tract(name: &str, value: &TValue) -> Result<Tensor, RuntimeError> {
    fn elements<T: Datum + Clone>(t: &tract_onnx::prelude::Tensor) -> TractResult<Vec<T>> {
        Ok(t.to_plain_array_view::<T>()?.iter().cloned().collect())
    }
    let t: &tract_onnx::prelude::Tensor = value;
    let converted = (|| -> TractResult<TensorData> {
        Ok(match t.datum_type() {
            DatumType::Bool => TensorData::Bool(elements(t)?),
            DatumType::U8 => TensorData::Uint8(elements(t)?),
            DatumType::U16 => TensorData::Uint16(elements(t)?),
            DatumType::U32 => TensorData::Uint32(elements(t)?),
            DatumType::U64 => TensorData::Uint64(elements(t)?),
            DatumType::I8 => TensorData::Int8(elements(t)?),
            DatumType::I16 => TensorData::Int16(elements(t)?),
            DatumType::I32 => TensorData::Int32(elements(t)?),
            DatumType::I64 => TensorData::Int64(elements(t)?),
            DatumType::TDim => TensorData::Int64(elements(&*t.cast_to::<i64>()?)?),
            DatumType::F16 => TensorData::Fp16(
                elements::<f16>(t)?.into_iter().map(|x| half::f16::from_bits(x.to_bits())).collect(),
            ),
            DatumType::F32 => TensorData::Fp32(elements(t)?),
            DatumType::F64 => TensorData::Fp64(elements(t)?),
            DatumType::String => {
                TensorData::Bytes(elements::<String>(t)?.into_iter().map(String::into_bytes).collect())
            }
            other => anyhow::bail!("unsupported output type {other:?}"),
        })
    })()
    .map_err(|e| RuntimeError::Execution(format!("output `{name}`: {e:#}")))?;
    Tensor::new(name, t.shape().to_vec(), converted).map_err(|e| RuntimeError::Execution(e.to_string()))
}

/// Class labels of probability outputs, found by following each graph output back through
/// pass-through nodes to a node that declares `classlabels_*` (ZipMap, a classifier).
fn probability_labels(graph: &pb::GraphProto) -> HashMap<&str, Vec<String>> {
    let producer: HashMap<&str, (&pb::NodeProto, usize)> = graph
        .node
        .iter()
        .flat_map(|node| node.output.iter().enumerate().map(move |(ix, out)| (out.as_str(), (node, ix))))
        .collect();
    let mut found = HashMap::new();
    for output in &graph.output {
        let mut name = output.name.as_str();
        for _ in 0..16 {
            let Some(&(node, ix)) = producer.get(name) else { break };
            let labels = class_labels(node);
            let is_classifier_scores = node.op_type.ends_with("Classifier") && ix == 1;
            if labels.is_some() && (node.op_type == "ZipMap" || is_classifier_scores) {
                if let Some(labels) = labels {
                    found.insert(output.name.as_str(), labels);
                }
                break;
            }
            match node.op_type.as_str() {
                "Identity" | "Cast" | "Normalizer" => match node.input.first() {
                    Some(input) => name = input.as_str(),
                    None => break,
                },
                _ => break,
            }
        }
    }
    found
}

fn class_labels(node: &pb::NodeProto) -> Option<Vec<String>> {
    for attr in &node.attribute {
        match attr.name.as_str() {
            "classlabels_int64s" | "classlabels_ints" if !attr.ints.is_empty() => {
                return Some(attr.ints.iter().map(i64::to_string).collect());
            }
            "classlabels_strings" if !attr.strings.is_empty() => {
                return Some(attr.strings.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect());
            }
            _ => {}
        }
    }
    None
}
