//! The build-time self-test and the choice of engine (`palisade build`).
//!
//! A prepared model runs on generated inputs at batch sizes 1, 7, 2, then 1, 2, 7 (each
//! size twice, after different histories). It is refused when a run fails, when an answer
//! does not fit the signature, when the same call answers differently the second time
//! (state carried from one run to the next), or when a row's answer depends on the batch
//! it sits in beyond rounding. When onnxruntime is available and both engines prepare the
//! model, their answers to the same calls are compared, and a disagreement is refused with
//! the output, the element and the difference.
//!
//! Generated inputs: floats uniform in [-1, 1), integers in [0, 4), booleans alternating,
//! strings from a few short phrases; dynamic dimensions other than the first are 3. An
//! input that a categorical operator reads (`OneHotEncoder`, `LabelEncoder`,
//! `CategoryMapper`) takes that operator's own categories instead, in turn: scikit-learn's
//! default `OneHotEncoder` refuses any value it was not fitted on.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use palisade_bundle::Manifest;
use palisade_bundle::manifest::{EngineChoice, ModelSource};
use palisade_bundle::store::BuiltEngine;
use palisade_core::{DataType, Dim, ModelSignature, Tensor, TensorData};

use crate::onnx::Vocabulary;
use crate::onnxruntime;
use crate::upstream::UpstreamContext;
use crate::{Model, Runnable, RuntimeError, prepare_onnx, prepare_with};

/// Batch sizes of the self-test, in call order: each size twice, after different calls.
pub const CALL_SIZES: [usize; 6] = [1, 7, 2, 1, 2, 7];
/// Size of a dynamic dimension other than the first, in generated inputs.
const INNER_DIM: usize = 3;

/// What `palisade build` learned about a model.
pub struct Built {
    /// The prepared model, on the chosen engine.
    pub runnable: Runnable,
    /// The chosen engine (ONNX models only).
    pub engine: Option<BuiltEngine>,
    /// Time spent in self-tests and the comparison.
    pub self_test: Duration,
    /// Whether the answers were compared with the other engine's.
    pub compared: bool,
    /// Things the data scientist should know (what onnxruntime would add, why an engine
    /// was not chosen).
    pub notes: Vec<String>,
}

impl std::fmt::Debug for Built {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Built")
            .field("engine", &self.engine)
            .field("self_test", &self.self_test)
            .field("compared", &self.compared)
            .field("notes", &self.notes)
            .finish_non_exhaustive()
    }
}

/// Prepares the model of a manifest for `palisade build`: chooses its engine
/// (`model.runtime`; `auto` takes tract where it prepares and passes the self-test, or
/// onnxruntime where [`onnxruntime::PREFER_ENV`] asks for it for a neural network and it
/// passes), self-tests it, and with `auto` compares the engines when both can run it (an
/// explicit `tract` or `onnxruntime` runs that engine only: the way to serve a model the
/// engines disagree on, once the data scientist has checked which one is right).
pub fn build(
    manifest: &Manifest,
    model_path: &Path,
    context: &UpstreamContext,
) -> Result<Built, RuntimeError> {
    let Some(section) = &manifest.model else {
        return Err(crate::loader::composite(model_path));
    };
    let ModelSource::Onnx { runtime, .. } = &section.source else {
        let runnable = prepare_with(manifest, model_path, context)?;
        return Ok(Built {
            runnable,
            engine: None,
            self_test: Duration::ZERO,
            compared: false,
            notes: vec![],
        });
    };
    let started = Instant::now();
    let user_path = section.path().map_or_else(|| model_path.to_owned(), |p| p.as_str().into());
    let fail = |message: String| RuntimeError::Load { path: user_path.clone(), message };
    let bytes = std::fs::read(model_path).map_err(|e| fail(format!("cannot read the file: {e}")))?;
    let ops = crate::onnx::operator_types(&bytes);
    let network = onnxruntime::is_network(&ops);
    let vocabularies = crate::onnx::input_vocabularies(&bytes);
    let library = onnxruntime::library();

    let tract = (*runtime != EngineChoice::Onnxruntime).then(|| {
        prepare_onnx(manifest, model_path, BuiltEngine::Tract).and_then(|model| {
            let answers =
                self_test_with(model.as_ref(), &vocabularies).map_err(|e| fail(format!("tract: {e}")))?;
            Ok((model, answers))
        })
    });
    // An explicit engine is the way out of a disagreement: only `auto` runs both.
    let ort = library.as_ref().ok().filter(|_| *runtime != EngineChoice::Tract).map(|_| {
        prepare_onnx(manifest, model_path, BuiltEngine::Onnxruntime).and_then(|model| {
            let answers = self_test_with(model.as_ref(), &vocabularies)
                .map_err(|e| fail(format!("onnxruntime: {e}")))?;
            Ok((model, answers))
        })
    });

    let mut notes = Vec::new();
    let mut compared = false;
    if let (Some(Ok((_, tract_answers))), Some(Ok((_, ort_answers)))) = (&tract, &ort) {
        compare(tract_answers, ort_answers).map_err(|e| {
            fail(format!(
                "tract and onnxruntime disagree on this model: {e}; one of them computes it wrongly, so \
                 Palisade refuses to serve it (please report the model)"
            ))
        })?;
        compared = true;
    }
    let prefer_ort = *runtime == EngineChoice::Onnxruntime
        || (*runtime == EngineChoice::Auto && onnxruntime::prefers(&ops));
    let (model, engine) = match (tract, ort) {
        (_, Some(Ok((model, _)))) if prefer_ort => (model, BuiltEngine::Onnxruntime),
        (None, Some(Ok((model, _)))) => (model, BuiltEngine::Onnxruntime),
        (Some(Ok((model, _))), ort) => {
            match &ort {
                None if *runtime == EngineChoice::Tract => {}
                None => notes.push(missing_library_note(&library, network)),
                Some(Err(e)) => {
                    notes.push(format!("onnxruntime could not run it, so its answers were not compared: {e}"))
                }
                Some(Ok(_)) => {}
            }
            (model, BuiltEngine::Tract)
        }
        (Some(Err(tract)), Some(Ok((model, _)))) => {
            if *runtime == EngineChoice::Tract {
                return Err(fail(format!(
                    "{tract}; onnxruntime runs it: set `model.runtime: auto` or `onnxruntime`"
                )));
            }
            notes.push(format!("tract cannot run it ({}), so it runs on onnxruntime", message(&tract)));
            (model, BuiltEngine::Onnxruntime)
        }
        (None, None) => {
            return Err(fail(format!(
                "`model.runtime: onnxruntime` needs the onnxruntime library: {}",
                library.err().unwrap_or_default()
            )));
        }
        (None, Some(Err(ort))) => return Err(ort),
        (Some(Err(tract)), None) => {
            let hint = match library {
                Err(_) => {
                    " (onnxruntime might run it: install it with `pip install onnxruntime` and set \
                           PALISADE_ONNXRUNTIME_LIB to its libonnxruntime.so)"
                }
                Ok(_) => "",
            };
            return Err(match tract {
                RuntimeError::Load { path, message } => {
                    RuntimeError::Load { path, message: format!("{message}{hint}") }
                }
                other => other,
            });
        }
        (Some(Err(tract)), Some(Err(ort))) => {
            return Err(fail(format!("neither engine runs it: {}; {}", message(&tract), message(&ort))));
        }
    };
    Ok(Built {
        runnable: Runnable::InProcess(model),
        engine: Some(engine),
        self_test: started.elapsed(),
        compared,
        notes,
    })
}

fn message(e: &RuntimeError) -> String {
    match e {
        RuntimeError::Load { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

fn missing_library_note(library: &Result<&onnxruntime::Library, String>, network: bool) -> String {
    let reason = library.as_ref().err().cloned().unwrap_or_default();
    let mut note =
        format!("onnxruntime is not available, so the answers were not compared with it ({reason})");
    if network {
        note.push_str(
            "; with it, this neural network could run on onnxruntime, usually several times faster than on \
             tract (PALISADE_ONNXRUNTIME_PREFER=networks or `model.runtime: onnxruntime`)",
        );
    }
    note
}

/// The answers of one engine: per batch size, the outputs of its first call.
#[derive(Debug)]
pub struct Answers {
    by_size: BTreeMap<usize, Vec<Tensor>>,
}

/// Runs the self-test on a prepared model: [`CALL_SIZES`] (or, for a model without a
/// dynamic first dimension, its fixed shape six times) on generated inputs.
pub fn self_test(model: &dyn Model) -> Result<Answers, String> {
    self_test_with(model, &HashMap::new())
}

/// [`self_test`] with the categories the model's categorical operators know, by input
/// ([`crate::onnx::input_vocabularies`]), fed to those inputs instead of made-up values.
pub fn self_test_with(
    model: &dyn Model,
    vocabularies: &HashMap<String, Vocabulary>,
) -> Result<Answers, String> {
    let signature = model.signature();
    let batchable = signature.inputs.iter().all(|s| matches!(s.shape.first(), Some(Dim::Dynamic)));
    let sizes: Vec<usize> = if batchable { CALL_SIZES.to_vec() } else { vec![0; CALL_SIZES.len()] };
    let pool = generate(signature, 7, vocabularies)?;
    let mut by_size: BTreeMap<usize, Vec<Tensor>> = BTreeMap::new();
    for (call, &size) in sizes.iter().enumerate() {
        let what =
            if batchable { format!("a batch of {size}") } else { "the model's input shape".to_owned() };
        let inputs = pool.iter().map(|t| slice_rows(t, size, batchable)).collect::<Result<Vec<_>, _>>()?;
        let outputs = model
            .run(inputs)
            .map_err(|e| format!("the self-test failed on generated inputs ({what}): {e}"))?;
        check_outputs(signature, &outputs).map_err(|e| format!("the self-test's {what}: {e}"))?;
        match by_size.get(&size) {
            Some(first) => {
                if let Some(diff) = first.iter().zip(&outputs).find_map(|(a, b)| identical(a, b).err()) {
                    return Err(format!(
                        "the model answered {what} differently the second time (call {} of the self-test): {diff}; \
                         its answers depend on earlier calls",
                        call + 1
                    ));
                }
            }
            None => {
                by_size.insert(size, outputs);
            }
        }
    }
    if batchable && let Some(largest) = by_size.get(&7) {
        for (size, outputs) in &by_size {
            for (big, small) in largest.iter().zip(outputs) {
                if let Err(diff) = rows_agree(big, small, *size) {
                    return Err(format!(
                        "a row's answer depends on the batch it is in: output `{}`, batch of {size} against the \
                         same rows in a batch of 7: {diff}",
                        big.name()
                    ));
                }
            }
        }
    }
    Ok(Answers { by_size })
}

/// Compares two engines' answers to the same calls.
pub fn compare(a: &Answers, b: &Answers) -> Result<(), String> {
    for (size, outputs) in &a.by_size {
        let Some(other) = b.by_size.get(size) else { continue };
        for (x, y) in outputs.iter().zip(other) {
            if x.shape() != y.shape() {
                return Err(format!(
                    "output `{}` (batch of {size}) has shape {:?} on tract, {:?} on onnxruntime",
                    x.name(),
                    x.shape(),
                    y.shape()
                ));
            }
            if let Some((index, diff)) = first_difference(x.data(), y.data()) {
                return Err(format!("output `{}` (batch of {size}), element {index}: {diff}", x.name()));
            }
        }
    }
    Ok(())
}

/// Tolerance `(absolute, relative)` between engines or batch sizes, by type.
fn tolerance(dt: DataType) -> (f64, f64) {
    match dt {
        DataType::Fp64 => (1e-9, 1e-6),
        DataType::Fp16 | DataType::Bf16 => (1e-2, 1e-2),
        _ => (1e-4, 1e-3),
    }
}

/// The first element where `a` and `b` differ beyond the tolerance, described.
fn first_difference(a: &TensorData, b: &TensorData) -> Option<(usize, String)> {
    fn floats(a: &[f64], b: &[f64], (abs, rel): (f64, f64)) -> Option<(usize, String)> {
        a.iter().zip(b).enumerate().find_map(|(i, (&x, &y))| {
            let same = (x.is_nan() && y.is_nan()) || x == y || (x - y).abs() <= abs + rel * y.abs();
            (!same).then(|| (i, format!("{x} against {y} (difference {:e})", (x - y).abs())))
        })
    }
    let as_f64 = |d: &TensorData| -> Option<Vec<f64>> {
        Some(match d {
            TensorData::Fp16(v) => v.iter().map(|x| f64::from(x.to_f32())).collect(),
            TensorData::Bf16(v) => v.iter().map(|x| f64::from(x.to_f32())).collect(),
            TensorData::Fp32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            TensorData::Fp64(v) => v.clone(),
            _ => return None,
        })
    };
    if a.datatype() != b.datatype() {
        return Some((0, format!("types {} and {} differ", a.datatype(), b.datatype())));
    }
    if let (Some(x), Some(y)) = (as_f64(a), as_f64(b)) {
        return floats(&x, &y, tolerance(a.datatype()));
    }
    fn exact<T: PartialEq + std::fmt::Debug>(a: &[T], b: &[T]) -> Option<(usize, String)> {
        a.iter().zip(b).position(|(x, y)| x != y).map(|i| (i, format!("{:?} against {:?}", a[i], b[i])))
    }
    match (a, b) {
        (TensorData::Int64(x), TensorData::Int64(y)) => exact(x, y),
        (TensorData::Int32(x), TensorData::Int32(y)) => exact(x, y),
        (TensorData::Bool(x), TensorData::Bool(y)) => exact(x, y),
        (TensorData::Bytes(x), TensorData::Bytes(y)) => {
            let text =
                |v: &[Vec<u8>]| v.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect::<Vec<_>>();
            exact(&text(x), &text(y))
        }
        (x, y) if x != y => Some((0, "the values differ".to_owned())),
        _ => None,
    }
}

/// Bit-identical answers (NaN equal to NaN).
fn identical(a: &Tensor, b: &Tensor) -> Result<(), String> {
    if a.shape() != b.shape() {
        return Err(format!("output `{}` had shape {:?}, then {:?}", a.name(), a.shape(), b.shape()));
    }
    let same = match (a.data(), b.data()) {
        (TensorData::Fp32(x), TensorData::Fp32(y)) => {
            x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())
        }
        (TensorData::Fp64(x), TensorData::Fp64(y)) => {
            x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())
        }
        (x, y) => x == y,
    };
    if same { Ok(()) } else { Err(format!("output `{}` changed", a.name())) }
}

/// Whether the first `size` rows of `big` (a batch of 7) agree with `small` (a batch of
/// `size` of the same rows), for outputs whose first dimension is the batch.
fn rows_agree(big: &Tensor, small: &Tensor, size: usize) -> Result<(), String> {
    let (bs, ss) = (big.shape(), small.shape());
    let row_wise = bs.first() == Some(&7) && ss.first() == Some(&size) && bs[1..] == ss[1..];
    if !row_wise {
        return Ok(());
    }
    let width: usize = ss[1..].iter().product();
    let head = prefix(big.data(), size * width);
    match first_difference(&head, small.data()) {
        Some((index, diff)) => Err(format!("element {index}: {diff}")),
        None => Ok(()),
    }
}

fn prefix(data: &TensorData, len: usize) -> TensorData {
    fn head<T: Clone>(v: &[T], len: usize) -> Vec<T> {
        v[..len.min(v.len())].to_vec()
    }
    match data {
        TensorData::Bool(v) => TensorData::Bool(head(v, len)),
        TensorData::Uint8(v) => TensorData::Uint8(head(v, len)),
        TensorData::Uint16(v) => TensorData::Uint16(head(v, len)),
        TensorData::Uint32(v) => TensorData::Uint32(head(v, len)),
        TensorData::Uint64(v) => TensorData::Uint64(head(v, len)),
        TensorData::Int8(v) => TensorData::Int8(head(v, len)),
        TensorData::Int16(v) => TensorData::Int16(head(v, len)),
        TensorData::Int32(v) => TensorData::Int32(head(v, len)),
        TensorData::Int64(v) => TensorData::Int64(head(v, len)),
        TensorData::Fp16(v) => TensorData::Fp16(head(v, len)),
        TensorData::Fp32(v) => TensorData::Fp32(head(v, len)),
        TensorData::Fp64(v) => TensorData::Fp64(head(v, len)),
        TensorData::Bf16(v) => TensorData::Bf16(head(v, len)),
        TensorData::Bytes(v) => TensorData::Bytes(head(v, len)),
    }
}

/// Checks outputs against the signature: count, names, types and shapes.
fn check_outputs(signature: &ModelSignature, outputs: &[Tensor]) -> Result<(), String> {
    if outputs.len() != signature.outputs.len() {
        return Err(format!("{} outputs for {} declared", outputs.len(), signature.outputs.len()));
    }
    for (spec, out) in signature.outputs.iter().zip(outputs) {
        if spec.name != out.name() {
            return Err(format!("output `{}` where `{}` was expected", out.name(), spec.name));
        }
        if spec.datatype != out.data().datatype() {
            return Err(format!(
                "output `{}` is {} but the signature says {}",
                spec.name,
                out.data().datatype(),
                spec.datatype
            ));
        }
        if !spec.accepts_shape(out.shape()) {
            return Err(format!(
                "output `{}` has shape {:?}, which does not fit the signature's {:?}",
                spec.name,
                out.shape(),
                spec.shape_i64()
            ));
        }
    }
    Ok(())
}

/// Generated inputs of `rows` rows (the first dimension, when dynamic).
fn generate(
    signature: &ModelSignature,
    rows: usize,
    vocabularies: &HashMap<String, Vocabulary>,
) -> Result<Vec<Tensor>, String> {
    const WORDS: &[&str] = &["cat", "dog sat", "a quick brown fox", "", "mat", "hello world", "x"];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    signature
        .inputs
        .iter()
        .map(|spec| {
            let shape: Vec<usize> = spec
                .shape
                .iter()
                .enumerate()
                .map(|(axis, d)| match d {
                    Dim::Fixed(n) => *n as usize,
                    Dim::Dynamic if axis == 0 => rows,
                    Dim::Dynamic => INNER_DIM,
                })
                .collect();
            let n: usize = shape.iter().product();
            let mut unit = || ((next() >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0;
            let known = vocabularies.get(&spec.name);
            let int = |i: usize| match known {
                Some(Vocabulary::Ints(values)) if !values.is_empty() => {
                    Some(values[(i * 7 + 3) % values.len()])
                }
                _ => None,
            };
            let data = match spec.datatype {
                DataType::Bool => TensorData::Bool((0..n).map(|i| i % 2 == 0).collect()),
                DataType::Uint8 => TensorData::Uint8((0..n).map(|i| (i % 4) as u8).collect()),
                DataType::Uint16 => TensorData::Uint16((0..n).map(|i| (i % 4) as u16).collect()),
                DataType::Uint32 => TensorData::Uint32((0..n).map(|i| (i % 4) as u32).collect()),
                DataType::Uint64 => TensorData::Uint64((0..n).map(|i| (i % 4) as u64).collect()),
                DataType::Int8 => TensorData::Int8((0..n).map(|i| (i % 4) as i8).collect()),
                DataType::Int16 => TensorData::Int16((0..n).map(|i| (i % 4) as i16).collect()),
                // Integer inputs are often indices into an embedding (token ids, and token
                // types, of which BERT has two): 0 and 1 are valid for any of them, unless an
                // operator reading the input names its own categories.
                DataType::Int32 => TensorData::Int32(
                    (0..n)
                        .map(|i| {
                            int(i).and_then(|v| i32::try_from(v).ok()).unwrap_or(((i * 7 + 3) % 2) as i32)
                        })
                        .collect(),
                ),
                DataType::Int64 => {
                    TensorData::Int64((0..n).map(|i| int(i).unwrap_or(((i * 7 + 3) % 2) as i64)).collect())
                }
                DataType::Fp16 => TensorData::Fp16((0..n).map(|_| half::f16::from_f64(unit())).collect()),
                DataType::Bf16 => TensorData::Bf16((0..n).map(|_| half::bf16::from_f64(unit())).collect()),
                DataType::Fp32 => TensorData::Fp32((0..n).map(|_| unit() as f32).collect()),
                DataType::Fp64 => TensorData::Fp64((0..n).map(|_| unit()).collect()),
                DataType::Bytes => match known {
                    Some(Vocabulary::Strings(values)) if !values.is_empty() => {
                        TensorData::Bytes((0..n).map(|i| values[i % values.len()].clone()).collect())
                    }
                    _ => TensorData::Bytes(
                        (0..n).map(|i| WORDS[i % WORDS.len()].as_bytes().to_vec()).collect(),
                    ),
                },
            };
            Tensor::new(spec.name.clone(), shape, data).map_err(|e| format!("input `{}`: {e}", spec.name))
        })
        .collect()
}

/// The first `size` rows of a generated input (all of it when the model is not batchable).
fn slice_rows(t: &Tensor, size: usize, batchable: bool) -> Result<Tensor, String> {
    if !batchable {
        return Ok(t.clone());
    }
    let mut shape = t.shape().to_vec();
    let width: usize = shape[1..].iter().product();
    shape[0] = size;
    let data = prefix(t.data(), size * width);
    Tensor::new(t.name(), shape, data).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use palisade_core::TensorSpec;

    use super::*;

    /// `y = x * scale(call, batch)`: a stand-in for models with defects.
    struct Fake {
        signature: ModelSignature,
        calls: AtomicUsize,
        defect: fn(call: usize, rows: usize) -> f32,
    }

    impl Fake {
        fn new(defect: fn(usize, usize) -> f32) -> Fake {
            let spec = |name: &str| TensorSpec {
                name: name.into(),
                datatype: DataType::Fp32,
                shape: vec![Dim::Dynamic, Dim::Fixed(2)],
                allow_nan: false,
                labels: None,
            };
            Fake {
                signature: ModelSignature { inputs: vec![spec("x")], outputs: vec![spec("y")] },
                calls: AtomicUsize::new(0),
                defect,
            }
        }
    }

    impl Model for Fake {
        fn signature(&self) -> &ModelSignature {
            &self.signature
        }
        fn platform(&self) -> &'static str {
            "test"
        }
        fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RuntimeError> {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            let (_, shape, data) = inputs.into_iter().next().unwrap().into_parts();
            let TensorData::Fp32(x) = data else { unreachable!() };
            let scale = (self.defect)(call, shape[0]);
            Ok(vec![
                Tensor::new("y", shape, TensorData::Fp32(x.iter().map(|v| v * scale).collect())).unwrap(),
            ])
        }
    }

    #[test]
    fn a_sound_model_passes() {
        assert!(self_test(&Fake::new(|_, _| 2.0)).is_ok());
    }

    #[test]
    fn answers_that_depend_on_earlier_calls_are_refused() {
        let e = self_test(&Fake::new(|call, _| if call < 3 { 1.0 } else { 1.5 })).unwrap_err();
        assert!(e.contains("differently the second time"), "{e}");
    }

    #[test]
    fn answers_that_depend_on_the_batch_are_refused() {
        let e = self_test(&Fake::new(|_, rows| if rows == 2 { 1.1 } else { 1.0 })).unwrap_err();
        assert!(e.contains("depends on the batch"), "{e}");
        // Rounding-sized differences are not a defect.
        assert!(self_test(&Fake::new(|_, rows| if rows == 2 { 1.0 + 1e-6 } else { 1.0 })).is_ok());
    }

    #[test]
    fn engines_that_disagree_are_named() {
        let a = self_test(&Fake::new(|_, _| 1.0)).unwrap();
        let b = self_test(&Fake::new(|_, _| 1.01)).unwrap();
        let e = compare(&a, &b).unwrap_err();
        assert!(e.starts_with("output `y` (batch of 1), element 0:") && e.contains("difference"), "{e}");
        assert!(compare(&a, &self_test(&Fake::new(|_, _| 1.0 + 1e-7)).unwrap()).is_ok());
    }

    #[test]
    fn failing_runs_are_refused() {
        struct Failing(ModelSignature);
        impl Model for Failing {
            fn signature(&self) -> &ModelSignature {
                &self.0
            }
            fn platform(&self) -> &'static str {
                "test"
            }
            fn run(&self, _: Vec<Tensor>) -> Result<Vec<Tensor>, RuntimeError> {
                Err(RuntimeError::Execution("boom".into()))
            }
        }
        let e = self_test(&Failing(Fake::new(|_, _| 1.0).signature)).unwrap_err();
        assert!(e.contains("a batch of 1") && e.contains("boom"), "{e}");
    }
}
