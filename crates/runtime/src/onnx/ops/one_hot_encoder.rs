//! `OneHotEncoder` (ai.onnx.ml opset 1), evaluated by [`palisade_onnx_ml::OneHotEncoder`].

use palisade_onnx_ml::OneHotEncoder;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::kernel::{Kernel, expansion, tensor, zeros};
use super::node::ints;

/// Name of the typed op in optimized models.
pub const ONE_HOT_ENCODER_OP: &str = "PalisadeOneHotEncoder";

/// Builds the encoder from an ONNX node.
pub(super) fn one_hot_encoder(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let strings = node.get_attr_opt_tvec::<&str>("cats_strings")?.unwrap_or_default();
    let encoder = OneHotEncoder::new(
        ints(node, "cats_int64s")?,
        strings.iter().map(|s| s.to_string()).collect(),
        node.get_attr_opt::<i64>("zeros")?.unwrap_or(1) != 0,
    )?;
    Ok((expansion(OneHotKernel(encoder)), vec![]))
}

#[derive(Debug, Clone, PartialEq)]
struct OneHotKernel(OneHotEncoder);

impl Kernel for OneHotKernel {
    fn onnx_name(&self) -> &'static str {
        "OneHotEncoder"
    }

    fn typed_name(&self) -> &'static str {
        ONE_HOT_ENCODER_OP
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        s.equals(&outputs[0].datum_type, DatumType::F32)?;
        s.equals(&outputs[0].rank, inputs[0].rank.bex() + 1)?;
        let categories = self.0.categories();
        s.given(&inputs[0].shape, move |s, shape| {
            let mut out = shape.clone();
            out.push(categories.to_dim());
            s.equals(&outputs[0].shape, out)
        })?;
        Ok(())
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let x = inputs[0];
        ensure!(
            matches!(
                x.datum_type,
                DatumType::String | DatumType::I64 | DatumType::I32 | DatumType::F32 | DatumType::F64
            ),
            "OneHotEncoder takes string, int64, int32, float or double inputs, not {:?}",
            x.datum_type
        );
        ensure!(x.rank() <= 2, "OneHotEncoder takes inputs of rank 2 at most");
        let mut shape: TVec<TDim> = x.shape.iter().cloned().collect();
        shape.push(self.0.categories().to_dim());
        Ok(tvec!(f32::fact(shape)))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let x = if x.datum_type() == DatumType::TDim {
            x.cast_to::<i64>()?.into_owned().into_tvalue()
        } else {
            x
        };
        let len = x.len().checked_mul(self.0.categories()).context("OneHotEncoder output size overflows")?;
        let mut out = zeros(len)?;
        let plain = x.try_as_plain_ram()?;
        match x.datum_type() {
            DatumType::String => self.0.encode_strings(plain.as_slice::<String>()?, &mut out)?,
            DatumType::I64 => {
                self.0.encode_ints(plain.as_slice::<i64>()?.iter().map(|&v| Some(v)), &mut out)?
            }
            DatumType::I32 => {
                self.0.encode_ints(plain.as_slice::<i32>()?.iter().map(|&v| Some(i64::from(v))), &mut out)?
            }
            DatumType::F32 => {
                self.0.encode_floats(plain.as_slice::<f32>()?.iter().map(|&v| f64::from(v)), &mut out)?
            }
            DatumType::F64 => self.0.encode_floats(plain.as_slice::<f64>()?.iter().copied(), &mut out)?,
            other => bail!("OneHotEncoder cannot read {other:?} inputs"),
        }
        let mut shape: TVec<usize> = x.shape().into();
        shape.push(self.0.categories());
        Ok(tvec!(tensor(&shape, out)?.into_tvalue()))
    }
}
