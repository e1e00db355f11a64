//! `OneHotEncoder` (ai.onnx.ml opset 1), evaluated by [`palisade_onnx_ml::OneHotEncoder`].

use palisade_onnx_ml::{OneHotEncoder, OnnxMlError};
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::RefusedValue;
use super::kernel::{Kernel, expansion, tensor, zeros};
use super::node::{caller_name, ints};

/// Name of the typed op in optimized models.
pub const ONE_HOT_ENCODER_OP: &str = "PalisadeOneHotEncoder";

/// Builds the encoder from an ONNX node.
pub(super) fn one_hot_encoder(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let strings = node.get_attr_opt_tvec::<&str>("cats_strings")?.unwrap_or_default();
    let encoder = OneHotEncoder::new(
        ints(node, "cats_int64s")?,
        strings.iter().map(|s| s.to_string()).collect(),
        node.get_attr_opt::<i64>("zeros")?.unwrap_or(1) != 0,
    )?;
    Ok((expansion(OneHotKernel { encoder, input: caller_name(ctx, node) }), vec![]))
}

#[derive(Debug, Clone, PartialEq)]
struct OneHotKernel {
    encoder: OneHotEncoder,
    /// What callers call the input, for [`refused`].
    input: String,
}

/// The error of an unknown category in `x` at `index`: the input, the row and the value,
/// for the caller who sent it (strings cut to 64 characters).
fn refused(input: &str, x: &Tensor, index: usize, categories: usize) -> TractError {
    fn at<T: Datum>(x: &Tensor, index: usize, show: impl Fn(&T) -> String) -> Option<String> {
        let plain = x.try_as_plain_ram().ok()?;
        plain.as_slice::<T>().ok()?.get(index).map(show)
    }
    let value = match x.datum_type() {
        DatumType::String => at::<String>(x, index, |v| {
            let cut: String = v.chars().take(64).collect();
            format!("{cut:?}")
        }),
        DatumType::I64 => at::<i64>(x, index, i64::to_string),
        DatumType::I32 => at::<i32>(x, index, i32::to_string),
        DatumType::F32 => at::<f32>(x, index, f32::to_string),
        DatumType::F64 => at::<f64>(x, index, f64::to_string),
        _ => None,
    }
    .unwrap_or_else(|| "a value".to_owned());
    let per_row = match x.shape() {
        [_, columns, ..] => (*columns).max(1),
        _ => 1,
    };
    RefusedValue(format!(
        "input `{input}`, row {}: unknown category {value}: the model's OneHotEncoder knows {categories} \
         categories for this input and refuses others (scikit-learn's handle_unknown=\"error\")",
        index / per_row
    ))
    .into()
}

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
        let categories = self.encoder.categories();
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
        shape.push(self.encoder.categories().to_dim());
        Ok(tvec!(f32::fact(shape)))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let x = if x.datum_type() == DatumType::TDim {
            x.cast_to::<i64>()?.into_owned().into_tvalue()
        } else {
            x
        };
        let encoder = &self.encoder;
        let len = x.len().checked_mul(encoder.categories()).context("OneHotEncoder output size overflows")?;
        let mut out = zeros(len)?;
        let plain = x.try_as_plain_ram()?;
        let encoded = match x.datum_type() {
            DatumType::String => encoder.encode_strings(plain.as_slice::<String>()?, &mut out),
            DatumType::I64 => {
                encoder.encode_ints(plain.as_slice::<i64>()?.iter().map(|&v| Some(v)), &mut out)
            }
            DatumType::I32 => {
                encoder.encode_ints(plain.as_slice::<i32>()?.iter().map(|&v| Some(i64::from(v))), &mut out)
            }
            DatumType::F32 => {
                encoder.encode_floats(plain.as_slice::<f32>()?.iter().map(|&v| f64::from(v)), &mut out)
            }
            DatumType::F64 => encoder.encode_floats(plain.as_slice::<f64>()?.iter().copied(), &mut out),
            other => bail!("OneHotEncoder cannot read {other:?} inputs"),
        };
        match encoded {
            Err(OnnxMlError::UnknownCategory { index, categories }) => {
                return Err(refused(&self.input, &x, index, categories));
            }
            other => other?,
        }
        let mut shape: TVec<usize> = x.shape().into();
        shape.push(encoder.categories());
        Ok(tvec!(tensor(&shape, out)?.into_tvalue()))
    }
}
