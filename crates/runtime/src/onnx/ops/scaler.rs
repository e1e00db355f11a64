//! `Scaler` (ai.onnx.ml opset 1), evaluated by [`palisade_onnx_ml::Scaler`].

use palisade_onnx_ml::Scaler;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::kernel::{Kernel, expansion, is_ml_numeric, rows_and_columns, tensor, zeros};
use super::node::floats;

/// Name of the typed op in optimized models.
pub const SCALER_OP: &str = "PalisadeScaler";

/// Builds the scaler from an ONNX node.
pub(super) fn scaler(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let scaler = Scaler::new(floats(ctx, node, "offset")?, floats(ctx, node, "scale")?)?;
    Ok((expansion(ScalerKernel(scaler)), vec![]))
}

#[derive(Debug, Clone, PartialEq)]
struct ScalerKernel(Scaler);

impl Kernel for ScalerKernel {
    fn onnx_name(&self) -> &'static str {
        "Scaler"
    }

    fn typed_name(&self) -> &'static str {
        SCALER_OP
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        s.equals(&outputs[0].datum_type, DatumType::F32)?;
        s.equals(&outputs[0].shape, &inputs[0].shape)?;
        Ok(())
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(is_ml_numeric(inputs[0].datum_type), "Scaler takes float, double, int64 or int32 inputs");
        ensure!(matches!(inputs[0].rank(), 1 | 2), "Scaler expects an input of shape [N, C] or [C]");
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let (_, columns) = rows_and_columns("Scaler", x.shape())?;
        let mut out = zeros(x.len())?;
        let plain = x.try_as_plain_ram()?;
        match x.datum_type() {
            DatumType::F32 => self.0.transform(plain.as_slice::<f32>()?, columns, &mut out)?,
            DatumType::F64 => self.0.transform(plain.as_slice::<f64>()?, columns, &mut out)?,
            DatumType::I64 => self.0.transform(plain.as_slice::<i64>()?, columns, &mut out)?,
            DatumType::I32 => self.0.transform(plain.as_slice::<i32>()?, columns, &mut out)?,
            other => bail!("Scaler takes float, double, int64 or int32 inputs, not {other:?}"),
        }
        Ok(tvec!(tensor(x.shape(), out)?.into_tvalue()))
    }
}
