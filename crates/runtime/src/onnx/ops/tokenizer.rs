//! com.microsoft `Tokenizer` (opset 1), evaluated by [`palisade_onnx_ml::Tokenizer`].

use palisade_onnx_ml::{Tokenizer, TokenizerAttributes};
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::kernel::{Kernel, expansion, tensor};

/// Name of the typed op in optimized models.
pub const TOKENIZER_OP: &str = "PalisadeTokenizer";

/// Builds the tokenizer from an ONNX node.
pub(super) fn tokenizer(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let strings = |name: &str| -> TractResult<Option<Vec<String>>> {
        Ok(node.get_attr_opt_tvec::<&str>(name)?.map(|v| v.iter().map(|s| s.to_string()).collect()))
    };
    let tokenizer = Tokenizer::new(TokenizerAttributes {
        mark: node.get_attr::<i64>("mark")? != 0,
        pad_value: node.get_attr::<&str>("pad_value")?.to_owned(),
        mincharnum: node.get_attr::<i64>("mincharnum")?,
        separators: strings("separators")?,
        tokenexp: node.get_attr_opt::<&str>("tokenexp")?.map(str::to_owned),
    })?;
    let tokens = ctx.template.symbols.new_with_prefix("tokens");
    Ok((expansion(TokenizerKernel { tokenizer, tokens }), vec![]))
}

#[derive(Debug, Clone, PartialEq)]
struct TokenizerKernel {
    tokenizer: Tokenizer,
    /// The output's last dimension: the most tokens in a string (marks included).
    tokens: Symbol,
}

impl Kernel for TokenizerKernel {
    fn onnx_name(&self) -> &'static str {
        "Tokenizer"
    }

    fn typed_name(&self) -> &'static str {
        TOKENIZER_OP
    }

    fn mints_symbols(&self) -> bool {
        true
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
        s.equals(&outputs[0].rank, inputs[0].rank.bex() + 1)?;
        s.given(&inputs[0].rank, move |s, rank| {
            for axis in 0..rank as usize {
                s.equals(&outputs[0].shape[axis], &inputs[0].shape[axis])?;
            }
            s.equals(&outputs[0].shape[rank as usize], self.tokens.to_dim())?;
            Ok(())
        })?;
        Ok(())
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type == DatumType::String, "Tokenizer takes string inputs");
        ensure!(matches!(inputs[0].rank(), 1 | 2), "Tokenizer expects an input of shape [C] or [N, C]");
        let mut shape: TVec<TDim> = inputs[0].shape.iter().cloned().collect();
        shape.push(self.tokens.to_dim());
        Ok(tvec!(String::fact(shape)))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let plain = x.try_as_plain_ram()?;
        let (shape, out) = self.tokenizer.tokenize(x.shape(), plain.as_slice::<String>()?)?;
        Ok(tvec!(tensor(&shape, out)?.into_tvalue()))
    }
}
