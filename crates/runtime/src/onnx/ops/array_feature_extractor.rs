//! `ArrayFeatureExtractor` (ai.onnx.ml opset 1), evaluated by
//! [`palisade_onnx_ml::extract_columns`].
//!
//! Replaces tract's, which gathers along the last axis and so drops the axis for a scalar
//! index (`[N, C]` and a scalar index give `[N]`) where onnxruntime gives `[N, 1]`;
//! scikit-learn's SVC exports then fail to concatenate the columns they extract.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::kernel::{Kernel, expansion, tensor};

/// Name of the typed op in optimized models.
pub const ARRAY_FEATURE_EXTRACTOR_OP: &str = "PalisadeArrayFeatureExtractor";

/// Builds the extractor from an ONNX node.
pub(super) fn array_feature_extractor(
    _ctx: &ParsingContext,
    _node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((expansion(ExtractorKernel), vec![]))
}

#[derive(Debug, Clone, PartialEq)]
struct ExtractorKernel;

/// The output shape: the input's with the last axis replaced by `k` (`[1, k]` for `[C]`).
fn output_shape<D: Clone>(input: &[D], k: D, one: D) -> TVec<D> {
    let mut shape: TVec<D> = input.iter().cloned().collect();
    match shape.len() {
        0 | 1 => tvec![one, k],
        _ => {
            if let Some(last) = shape.last_mut() {
                *last = k;
            }
            shape
        }
    }
}

fn gather<T: Datum + Clone>(x: &Tensor, columns: usize, indices: &[i64]) -> TractResult<Vec<T>> {
    Ok(palisade_onnx_ml::extract_columns(x.try_as_plain_ram()?.as_slice::<T>()?, columns, indices)?)
}

impl Kernel for ExtractorKernel {
    fn onnx_name(&self) -> &'static str {
        "ArrayFeatureExtractor"
    }

    fn typed_name(&self) -> &'static str {
        ARRAY_FEATURE_EXTRACTOR_OP
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 2)?;
        s.equals(&outputs[0].datum_type, &inputs[0].datum_type)?;
        s.given_2(&inputs[0].shape, &inputs[1].shape, move |s, x, indices| {
            let k = indices.iter().fold(1.to_dim(), |p, d| p * d);
            s.equals(&outputs[0].shape, output_shape(&x, k, 1.to_dim()))
        })?;
        Ok(())
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let k = inputs[1].shape.iter().fold(1.to_dim(), |p, d| p * d);
        let shape: Vec<TDim> = inputs[0].shape.iter().cloned().collect();
        Ok(tvec!(inputs[0].datum_type.fact(output_shape(&shape, k, 1.to_dim()))))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (x, indices) = args_2!(inputs);
        let indices = indices.cast_to::<i64>()?;
        let indices = indices.try_as_plain_ram()?.as_slice::<i64>()?.to_vec();
        let columns = x.shape().last().copied().unwrap_or(1);
        let shape = output_shape(x.shape(), indices.len(), 1);
        let out = match x.datum_type() {
            DatumType::F32 => tensor(&shape, gather::<f32>(&x, columns, &indices)?)?,
            DatumType::F64 => tensor(&shape, gather::<f64>(&x, columns, &indices)?)?,
            DatumType::I64 => tensor(&shape, gather::<i64>(&x, columns, &indices)?)?,
            DatumType::I32 => tensor(&shape, gather::<i32>(&x, columns, &indices)?)?,
            DatumType::String => tensor(&shape, gather::<String>(&x, columns, &indices)?)?,
            DatumType::TDim => {
                let x = x.cast_to::<i64>()?;
                tensor(&shape, gather::<i64>(&x, columns, &indices)?)?
            }
            other => bail!("ArrayFeatureExtractor cannot read {other:?} inputs"),
        };
        Ok(tvec!(out.into_tvalue()))
    }
}
