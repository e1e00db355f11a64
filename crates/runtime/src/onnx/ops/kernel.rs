//! The tract plumbing shared by Palisade's simpler operators: an operator describes its
//! inference rules, its typed output facts and its evaluation ([`Kernel`]); [`KernelOp`]
//! and [`expansion`] make a tract typed op and an ONNX expansion of it.

use std::fmt::Debug;

use tract_onnx::tract_hir::internal::*;

/// One of Palisade's operators, evaluated by `palisade_onnx_ml`.
pub(super) trait Kernel: Debug + Clone + PartialEq + Send + Sync + 'static {
    /// The ONNX operator's name.
    fn onnx_name(&self) -> &'static str;
    /// The typed op's name in optimized models.
    fn typed_name(&self) -> &'static str;
    /// Number of outputs.
    fn n_outputs(&self) -> usize {
        1
    }
    /// Whether an output dimension depends on the input's values (a symbol of its own,
    /// bound by tract from the actual output at run time).
    fn mints_symbols(&self) -> bool {
        false
    }
    /// tract's inference rules (types and shapes) for the ONNX node.
    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult;
    /// The typed outputs for typed inputs; refuses input types the operator does not read.
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>>;
    /// Runs the operator.
    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>>;
}

/// The typed op of a [`Kernel`].
#[derive(Debug, Clone)]
pub struct KernelOp<K>(pub(super) K);

impl<K: Kernel> PartialEq for KernelOp<K> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

// Equality compares attributes; one holding NaN only makes two ops unequal, which keeps
// identical nodes apart and is never unsound.
impl<K: Kernel> Eq for KernelOp<K> {}

impl<K: Kernel> Op for KernelOp<K> {
    fn name(&self) -> StaticName {
        self.0.typed_name().into()
    }

    fn mints_runtime_symbols(&self) -> bool {
        self.0.mints_symbols()
    }

    op_as_typed_op!();
}

impl<K: Kernel> EvalOp for KernelOp<K> {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        self.0.eval(inputs)
    }
}

impl<K: Kernel> TypedOp for KernelOp<K> {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        self.0.output_facts(inputs)
    }

    as_op!();
}

#[derive(Debug, Clone)]
struct KernelExpansion<K>(K);

impl<K: Kernel> Expansion for KernelExpansion<K> {
    fn name(&self) -> StaticName {
        self.0.onnx_name().into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(self.0.n_outputs())
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_output_arity(outputs, self.0.n_outputs())?;
        self.0.rules(s, inputs, outputs)
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, KernelOp(self.0.clone()), inputs)
    }
}

/// The ONNX expansion of a kernel, for an op builder.
pub(super) fn expansion<K: Kernel>(kernel: K) -> Box<dyn InferenceOp> {
    expand(KernelExpansion(kernel))
}

/// `(rows, columns)` of a rank-1 (`[C]`) or rank-2 (`[N, C]`) shape, as onnxruntime reads
/// the ONNX-ML preprocessing operators' inputs.
pub(super) fn rows_and_columns(op: &str, shape: &[usize]) -> TractResult<(usize, usize)> {
    match *shape {
        [c] => Ok((1, c)),
        [n, c] => Ok((n, c)),
        _ => bail!("{op} expects an input of shape [N, C] or [C], got {shape:?}"),
    }
}

/// A tensor of `shape` from `data` (no copy).
pub(super) fn tensor<T: Datum>(shape: &[usize], data: Vec<T>) -> TractResult<Tensor> {
    Ok(tract_ndarray::ArrayD::from_shape_vec(shape, data)?.into_tensor())
}

/// An `f32` buffer of `len` zeros, allocated fallibly.
pub(super) fn zeros(len: usize) -> TractResult<Vec<f32>> {
    Ok(palisade_onnx_ml::filled(len, 0.0f32)?)
}

/// The input's values as `f32` (cast from `f64`, `i64`, `i32`).
pub(super) fn as_f32(op: &str, input: &Tensor) -> TractResult<Vec<f32>> {
    let plain = input.try_as_plain_ram()?;
    let mut out = palisade_onnx_ml::filled(input.len(), 0.0f32)?;
    match input.datum_type() {
        DatumType::F32 => out.copy_from_slice(plain.as_slice::<f32>()?),
        DatumType::F64 => out.iter_mut().zip(plain.as_slice::<f64>()?).for_each(|(o, &x)| *o = x as f32),
        DatumType::I64 => out.iter_mut().zip(plain.as_slice::<i64>()?).for_each(|(o, &x)| *o = x as f32),
        DatumType::I32 => out.iter_mut().zip(plain.as_slice::<i32>()?).for_each(|(o, &x)| *o = x as f32),
        other => bail!("{op} takes float, double, int64 or int32 inputs, not {other:?}"),
    }
    Ok(out)
}

/// Whether `dt` is one of the numeric types the ONNX-ML operators read.
pub(super) fn is_ml_numeric(dt: DatumType) -> bool {
    matches!(dt, DatumType::F32 | DatumType::F64 | DatumType::I64 | DatumType::I32)
}
