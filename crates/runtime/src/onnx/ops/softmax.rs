//! `Softmax` over `f32` rows, computed row by row with the same scalar arithmetic whatever
//! the row's place in the tensor.
//!
//! tract's own softmax runs a vectorized kernel over the whole buffer, and a row that
//! straddles the kernel's block boundary is computed differently in the last bit. That
//! made a request's probabilities depend on where in a batch it sat. Here each row is
//! `exp(x - max) / sum`, with `f32::exp` and the sum taken in order: results depend on the
//! row alone, which adaptive batching relies on. Other types, and softmax over an axis
//! that is not the innermost (opset 13), keep tract's implementation.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// Name of the typed op in optimized models.
pub const SOFTMAX_OP: &str = "PalisadeRowSoftmax";

/// Builds the softmax from an ONNX node: before opset 13 the input is read as 2-D rows
/// from `axis` on (default 1); from opset 13 the softmax runs along `axis` (default -1).
pub(super) fn softmax(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let legacy = ctx.onnx_operator_set_version < 13;
    let axis: Option<i64> = node.get_attr_opt("axis")?;
    let axis = axis.unwrap_or(if legacy { 1 } else { -1 });
    Ok((expand(SoftmaxExpansion { axis: axis as isize, legacy }), vec![]))
}

#[derive(Debug, Clone)]
struct SoftmaxExpansion {
    axis: isize,
    legacy: bool,
}

impl Expansion for SoftmaxExpansion {
    fn name(&self) -> StaticName {
        "Softmax".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let fact = model.outlet_fact(inputs[0])?.clone();
        let rank = fact.rank() as isize;
        let axis = if self.axis < 0 { rank + self.axis } else { self.axis };
        ensure!(
            (0..rank.max(1)).contains(&axis),
            "Softmax axis {} is out of range for rank {rank}",
            self.axis
        );
        // Rows are the trailing elements from `axis` on: always so before opset 13, and
        // from opset 13 when the axis is the innermost one.
        let rows_from_axis = self.legacy || axis == rank - 1;
        if fact.datum_type == DatumType::F32 && rows_from_axis {
            return model.wire_node(prefix, RowSoftmaxOp { axis: axis as usize }, inputs);
        }
        if self.legacy {
            tract_onnx::tract_hir::ops::nn::LayerSoftmax::new(self.axis, true).wire(prefix, model, inputs)
        } else {
            tract_onnx::tract_hir::ops::nn::Softmax::new(self.axis).wire(prefix, model, inputs)
        }
    }
}

/// The typed softmax: `f32` in, `f32` of the same shape out, each row of the elements
/// from `axis` on normalized on its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowSoftmaxOp {
    axis: usize,
}

/// Softmax of one row, in place.
fn softmax_row(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for x in row.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    for x in row.iter_mut() {
        *x /= sum;
    }
}

impl Op for RowSoftmaxOp {
    fn name(&self) -> StaticName {
        SOFTMAX_OP.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("rows from axis {}", self.axis)])
    }

    op_as_typed_op!();
}

impl EvalOp for RowSoftmaxOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let row_len: usize = input.shape().get(self.axis..).map_or(1, |dims| dims.iter().product());
        let mut tensor = input.into_tensor();
        {
            let mut plain = tensor.try_as_plain_ram_mut()?;
            let values = plain.as_slice_mut::<f32>()?;
            if row_len > 0 {
                for row in values.chunks_exact_mut(row_len) {
                    softmax_row(row);
                }
            }
        }
        Ok(tvec!(tensor.into_tvalue()))
    }
}

impl TypedOp for RowSoftmaxOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(
            inputs[0].datum_type == DatumType::F32,
            "RowSoftmax takes f32, not {:?}",
            inputs[0].datum_type
        );
        Ok(tvec!(inputs[0].without_value()))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_sum_to_one_and_keep_their_order() {
        let mut row = [1.0f32, 2.0, 3.0];
        softmax_row(&mut row);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(row[0] < row[1] && row[1] < row[2]);
        let mut big = [1000.0f32, 1000.0];
        softmax_row(&mut big);
        assert_eq!(big, [0.5, 0.5], "no overflow: the max is subtracted first");
    }
}
