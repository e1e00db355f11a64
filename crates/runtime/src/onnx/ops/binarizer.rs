//! `Binarizer` (ai.onnx.ml opset 1), evaluated by [`palisade_onnx_ml::Binarizer`].

use palisade_onnx_ml::Binarizer;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::kernel::{Kernel, expansion, is_ml_numeric};

/// Name of the typed op in optimized models.
pub const BINARIZER_OP: &str = "PalisadeBinarizer";

/// Builds the binarizer from an ONNX node; an absent threshold is onnxruntime's 1.0.
pub(super) fn binarizer(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let threshold = node.get_attr_opt::<f32>("threshold")?.unwrap_or(1.0);
    Ok((expansion(BinarizerKernel(Binarizer::new(threshold))), vec![]))
}

#[derive(Debug, Clone, PartialEq)]
struct BinarizerKernel(Binarizer);

impl Kernel for BinarizerKernel {
    fn onnx_name(&self) -> &'static str {
        "Binarizer"
    }

    fn typed_name(&self) -> &'static str {
        BINARIZER_OP
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        s.equals(&outputs[0].datum_type, &inputs[0].datum_type)?;
        s.equals(&outputs[0].shape, &inputs[0].shape)?;
        Ok(())
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(is_ml_numeric(inputs[0].datum_type), "Binarizer takes float, double, int64 or int32 inputs");
        Ok(tvec!(inputs[0].without_value()))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let mut x = args_1!(inputs).into_tensor();
        let dt = x.datum_type();
        {
            let mut plain = x.try_as_plain_ram_mut()?;
            match dt {
                DatumType::F32 => self.0.binarize_in_place(plain.as_slice_mut::<f32>()?)?,
                DatumType::F64 => self.0.binarize_in_place(plain.as_slice_mut::<f64>()?)?,
                DatumType::I64 => self.0.binarize_in_place(plain.as_slice_mut::<i64>()?)?,
                DatumType::I32 => self.0.binarize_in_place(plain.as_slice_mut::<i32>()?)?,
                other => bail!("Binarizer takes float, double, int64 or int32 inputs, not {other:?}"),
            }
        }
        Ok(tvec!(x.into_tvalue()))
    }
}
