//! `FeatureVectorizer` (ai.onnx.ml opset 1), evaluated by
//! [`palisade_onnx_ml::FeatureVectorizer`].

use palisade_onnx_ml::FeatureVectorizer;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::kernel::{Kernel, as_f32, expansion, is_ml_numeric, tensor, zeros};
use super::node::ints;

/// Name of the typed op in optimized models.
pub const FEATURE_VECTORIZER_OP: &str = "PalisadeFeatureVectorizer";

/// Builds the vectorizer from an ONNX node.
pub(super) fn feature_vectorizer(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let vectorizer = FeatureVectorizer::new(&ints(node, "inputdimensions")?)?;
    Ok((expansion(VectorizerKernel(vectorizer)), vec![]))
}

#[derive(Debug, Clone, PartialEq)]
struct VectorizerKernel(FeatureVectorizer);

/// Rows and columns of one input: `[N, C]`, or `[C]` as one row.
fn rows_and_columns(shape: &[usize]) -> TractResult<(usize, usize)> {
    match *shape {
        [c] => Ok((1, c)),
        [n, c] => Ok((n, c)),
        [n, ref rest @ ..] => Ok((n, rest.iter().product())),
        [] => Ok((1, 1)),
    }
}

impl Kernel for VectorizerKernel {
    fn onnx_name(&self) -> &'static str {
        "FeatureVectorizer"
    }

    fn typed_name(&self) -> &'static str {
        FEATURE_VECTORIZER_OP
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        s.equals(&outputs[0].datum_type, DatumType::F32)?;
        s.equals(&outputs[0].rank, 2)?;
        s.equals(&outputs[0].shape[1], self.0.width().to_dim())?;
        if let Some(first) = inputs.first() {
            s.given(&first.rank, move |s, rank| {
                if rank >= 2 {
                    s.equals(&outputs[0].shape[0], &first.shape[0])?;
                } else {
                    s.equals(&outputs[0].shape[0], 1.to_dim())?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.iter().all(|f| is_ml_numeric(f.datum_type)), "FeatureVectorizer takes numeric inputs");
        ensure!(
            self.0.input_width(inputs.len().saturating_sub(1)).is_some(),
            "more inputs than `inputdimensions`"
        );
        let rows = match inputs.first() {
            Some(f) if f.rank() >= 2 => f.shape[0].clone(),
            _ => 1.to_dim(),
        };
        Ok(tvec!(f32::fact(tvec![rows, self.0.width().to_dim()])))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let rows = match inputs.first() {
            Some(x) => rows_and_columns(x.shape())?.0,
            None => 1,
        };
        let len = rows.checked_mul(self.0.width()).context("FeatureVectorizer output size overflows")?;
        let mut out = zeros(len)?;
        for (i, x) in inputs.iter().enumerate() {
            let (n, columns) = rows_and_columns(x.shape())?;
            ensure!(n == rows, "FeatureVectorizer inputs have {rows} and {n} rows");
            self.0.place(i, &as_f32("FeatureVectorizer", x)?, columns, &mut out)?;
        }
        Ok(tvec!(tensor(&[rows, self.0.width()], out)?.into_tvalue()))
    }
}
