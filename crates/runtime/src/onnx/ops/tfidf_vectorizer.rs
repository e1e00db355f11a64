//! `TfIdfVectorizer` (ONNX opset 9), evaluated by [`palisade_onnx_ml::TfIdfVectorizer`].

use palisade_onnx_ml::{NgramPool, TfIdfInput, TfIdfVectorizer, TfIdfVectorizerAttributes};
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::kernel::{Kernel, expansion, tensor};
use super::node::{ints, parse};

/// Name of the typed op in optimized models.
pub const TFIDF_VECTORIZER_OP: &str = "PalisadeTfIdfVectorizer";

/// Builds the vectorizer from an ONNX node.
pub(super) fn tfidf_vectorizer(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let pool = match node.get_attr_opt_tvec::<&str>("pool_strings")? {
        Some(strings) => NgramPool::Strings(strings.iter().map(|s| s.to_string()).collect()),
        None => NgramPool::Int64(ints(node, "pool_int64s")?),
    };
    let vectorizer = TfIdfVectorizer::new(TfIdfVectorizerAttributes {
        mode: parse(node, "mode", "")?,
        min_gram_length: node.get_attr::<i64>("min_gram_length")?,
        max_gram_length: node.get_attr::<i64>("max_gram_length")?,
        max_skip_count: node.get_attr::<i64>("max_skip_count")?,
        ngram_counts: ints(node, "ngram_counts")?,
        ngram_indexes: ints(node, "ngram_indexes")?,
        weights: node.get_attr_opt_slice::<f32>("weights")?.map(<[f32]>::to_vec).unwrap_or_default(),
        pool,
    })?;
    Ok((expansion(TfIdfKernel(vectorizer)), vec![]))
}

#[derive(Debug, Clone, PartialEq)]
struct TfIdfKernel(TfIdfVectorizer);

impl Kernel for TfIdfKernel {
    fn onnx_name(&self) -> &'static str {
        "TfIdfVectorizer"
    }

    fn typed_name(&self) -> &'static str {
        TFIDF_VECTORIZER_OP
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        s.equals(&outputs[0].datum_type, DatumType::F32)?;
        let columns = self.0.columns().to_dim();
        s.given(&inputs[0].rank, move |s, rank| {
            if rank == 2 {
                s.equals(&outputs[0].rank, 2)?;
                s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
                s.equals(&outputs[0].shape[1], columns.clone())?;
            } else {
                s.equals(&outputs[0].rank, 1)?;
                s.equals(&outputs[0].shape[0], columns.clone())?;
            }
            Ok(())
        })?;
        Ok(())
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let dt = inputs[0].datum_type;
        ensure!(
            matches!(dt, DatumType::String | DatumType::I64 | DatumType::I32),
            "TfIdfVectorizer takes string, int64 or int32 inputs, not {dt:?}"
        );
        let columns = self.0.columns().to_dim();
        let shape: TVec<TDim> = match inputs[0].rank() {
            0 | 1 => tvec!(columns),
            2 => tvec!(inputs[0].shape[0].clone(), columns),
            _ => bail!("TfIdfVectorizer expects an input of shape [C] or [B, C]"),
        };
        Ok(tvec!(f32::fact(shape)))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let plain = x.try_as_plain_ram()?;
        let input = match x.datum_type() {
            DatumType::String => TfIdfInput::Strings(plain.as_slice::<String>()?),
            DatumType::I64 => TfIdfInput::Int64(plain.as_slice::<i64>()?),
            DatumType::I32 => TfIdfInput::Int32(plain.as_slice::<i32>()?),
            other => bail!("TfIdfVectorizer takes string, int64 or int32 inputs, not {other:?}"),
        };
        let (shape, values) = self.0.vectorize(x.shape(), input)?;
        Ok(tvec!(tensor(&shape, values)?.into_tvalue()))
    }
}
