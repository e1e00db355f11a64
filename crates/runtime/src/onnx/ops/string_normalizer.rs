//! `StringNormalizer` (ONNX opset 10), evaluated by [`palisade_onnx_ml::StringNormalizer`].

use palisade_onnx_ml::{StringNormalizer, StringNormalizerAttributes};
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::kernel::{Kernel, expansion, tensor};
use super::node::parse;

/// Name of the typed op in optimized models.
pub const STRING_NORMALIZER_OP: &str = "PalisadeStringNormalizer";

/// Builds the normalizer from an ONNX node.
pub(super) fn string_normalizer(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let stopwords = node
        .get_attr_opt_tvec::<&str>("stopwords")?
        .map(|v| v.iter().map(|s| s.to_string()).collect())
        .unwrap_or_default();
    let normalizer = StringNormalizer::new(StringNormalizerAttributes {
        case_change_action: parse(node, "case_change_action", "NONE")?,
        is_case_sensitive: node.get_attr_opt::<i64>("is_case_sensitive")?.unwrap_or(0) != 0,
        stopwords,
        locale: node.get_attr_opt::<&str>("locale")?.map(str::to_owned),
    })?;
    // Stopwords make the output's length depend on the strings.
    let length = normalizer.filters().then(|| ctx.template.symbols.new_with_prefix("strings"));
    Ok((expansion(StringNormalizerKernel { normalizer, length }), vec![]))
}

#[derive(Debug, Clone, PartialEq)]
struct StringNormalizerKernel {
    normalizer: StringNormalizer,
    /// The output's last dimension when stopwords filter the input.
    length: Option<Symbol>,
}

impl Kernel for StringNormalizerKernel {
    fn onnx_name(&self) -> &'static str {
        "StringNormalizer"
    }

    fn typed_name(&self) -> &'static str {
        STRING_NORMALIZER_OP
    }

    fn mints_symbols(&self) -> bool {
        self.length.is_some()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        s.equals(&inputs[0].datum_type, DatumType::String)?;
        s.equals(&outputs[0].datum_type, DatumType::String)?;
        s.equals(&outputs[0].rank, &inputs[0].rank)?;
        if self.length.is_none() {
            s.equals(&outputs[0].shape, &inputs[0].shape)?;
        }
        Ok(())
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type == DatumType::String, "StringNormalizer takes string inputs");
        let shape = &inputs[0].shape;
        let out: TVec<TDim> = match (&self.length, shape.rank()) {
            (None, 1 | 2) => shape.iter().cloned().collect(),
            (Some(length), 1) => tvec!(length.to_dim()),
            (Some(length), 2) => tvec!(shape[0].clone(), length.to_dim()),
            _ => bail!("StringNormalizer expects an input of shape [C] or [1, C]"),
        };
        Ok(tvec!(String::fact(out)))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let plain = x.try_as_plain_ram()?;
        let (shape, out) = self.normalizer.normalize(x.shape(), plain.as_slice::<String>()?)?;
        Ok(tvec!(tensor(&shape, out)?.into_tvalue()))
    }
}
