//! `Normalizer` (ai.onnx.ml opset 1), evaluated by [`palisade_onnx_ml`].
//!
//! Rows of an `[N, C]` input (or the single row of a `[C]` input) are scaled by their
//! maximum, L1 or L2 norm into `f32`. `float`, `double`, `int64` and `int32` inputs are
//! read in their own type, as onnxruntime does; an `f32` input is normalized in place
//! when the run owns it.

use palisade_onnx_ml::{Norm, Normalizer};
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::node::parse;

/// Name of the typed op in optimized models.
pub const NORMALIZER_OP: &str = "PalisadeNormalizer";

/// Builds the normalizer from an ONNX node.
pub(super) fn normalizer(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let norm: Norm = parse(node, "norm", "MAX")?;
    Ok((expand(NormalizerExpansion { normalizer: Normalizer::new(norm) }), vec![]))
}

#[derive(Debug, Clone)]
struct NormalizerExpansion {
    normalizer: Normalizer,
}

impl Expansion for NormalizerExpansion {
    fn name(&self) -> StaticName {
        "Normalizer".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, DatumType::F32)?;
        s.equals(&outputs[0].rank, &inputs[0].rank)?;
        s.equals(&outputs[0].shape, &inputs[0].shape)?;
        Ok(())
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, NormalizerOp { normalizer: self.normalizer }, inputs)
    }
}

/// The typed normalizer: `[N, C]` or `[C]` of `f32`, `f64`, `i64` or `i32` in, `f32` of
/// the same shape out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizerOp {
    normalizer: Normalizer,
}

impl NormalizerOp {
    /// The normalizer.
    pub fn normalizer(&self) -> Normalizer {
        self.normalizer
    }
}

/// `(rows, columns)` of a rank-1 or rank-2 shape.
fn rows_and_columns(shape: &[usize]) -> TractResult<(usize, usize)> {
    match *shape {
        [c] => Ok((1, c)),
        [n, c] => Ok((n, c)),
        _ => bail!("Normalizer expects an input of shape [N, C] or [C], got {shape:?}"),
    }
}

impl Op for NormalizerOp {
    fn name(&self) -> StaticName {
        NORMALIZER_OP.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{:?}", self.normalizer.norm())])
    }

    op_as_typed_op!();
}

impl EvalOp for NormalizerOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let (n_rows, n_columns) = rows_and_columns(input.shape())?;
        if input.datum_type() == DatumType::F32 {
            let mut tensor = input.into_tensor();
            self.normalizer.normalize_in_place(
                tensor.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?,
                n_rows,
                n_columns,
            )?;
            return Ok(tvec!(tensor.into_tvalue()));
        }
        let mut output = Tensor::zero::<f32>(input.shape())?;
        {
            let mut plain = output.try_as_plain_ram_mut()?;
            let out = plain.as_slice_mut::<f32>()?;
            let source = input.try_as_plain_ram()?;
            let n = &self.normalizer;
            match input.datum_type() {
                DatumType::F64 => n.normalize_into(source.as_slice::<f64>()?, n_rows, n_columns, out)?,
                DatumType::I64 => n.normalize_into(source.as_slice::<i64>()?, n_rows, n_columns, out)?,
                DatumType::I32 => n.normalize_into(source.as_slice::<i32>()?, n_rows, n_columns, out)?,
                other => bail!("Normalizer takes float, double, int64 or int32 inputs, not {other:?}"),
            }
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for NormalizerOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let input = inputs[0];
        ensure!(
            matches!(input.datum_type, DatumType::F32 | DatumType::F64 | DatumType::I64 | DatumType::I32),
            "Normalizer takes float, double, int64 or int32 inputs, not {:?}",
            input.datum_type
        );
        ensure!(
            matches!(input.rank(), 1 | 2),
            "Normalizer expects an input of shape [N, C] or [C], got {:?}",
            input.shape
        );
        Ok(tvec!(f32::fact(input.shape.clone())))
    }

    as_op!();
}
