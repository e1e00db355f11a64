//! `CategoryMapper` (ai.onnx.ml opset 1), evaluated by [`palisade_onnx_ml::CategoryMapper`]
//! (replacing tract's, which refuses a node with both defaults or neither).

use palisade_onnx_ml::CategoryMapper;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::kernel::{Kernel, expansion, tensor};
use super::node::ints;

/// Name of the typed op in optimized models.
pub const CATEGORY_MAPPER_OP: &str = "PalisadeCategoryMapper";

/// Builds the mapper from an ONNX node.
pub(super) fn category_mapper(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let strings = node
        .get_attr_opt_tvec::<&str>("cats_strings")?
        .map(|v| v.iter().map(|s| s.to_string()).collect())
        .unwrap_or_default();
    let mapper = CategoryMapper::new(
        strings,
        ints(node, "cats_int64s")?,
        node.get_attr_opt::<i64>("default_int64")?,
        node.get_attr_opt::<&str>("default_string")?.map(str::to_owned),
    )?;
    Ok((expansion(CategoryMapperKernel(mapper)), vec![]))
}

#[derive(Debug, Clone, PartialEq)]
struct CategoryMapperKernel(CategoryMapper);

impl Kernel for CategoryMapperKernel {
    fn onnx_name(&self) -> &'static str {
        "CategoryMapper"
    }

    fn typed_name(&self) -> &'static str {
        CATEGORY_MAPPER_OP
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        s.equals(&outputs[0].shape, &inputs[0].shape)?;
        s.given(&inputs[0].datum_type, move |s, dt| {
            let out = if dt == DatumType::String { DatumType::I64 } else { DatumType::String };
            s.equals(&outputs[0].datum_type, out)
        })?;
        Ok(())
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let out = match inputs[0].datum_type {
            DatumType::String => DatumType::I64,
            DatumType::I64 | DatumType::TDim => DatumType::String,
            other => bail!("CategoryMapper takes string or int64 inputs, not {other:?}"),
        };
        Ok(tvec!(out.fact(inputs[0].shape.clone())))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let out = match x.datum_type() {
            DatumType::String => {
                tensor(x.shape(), self.0.to_ints(x.try_as_plain_ram()?.as_slice::<String>()?)?)?
            }
            DatumType::I64 => {
                tensor(x.shape(), self.0.to_strings(x.try_as_plain_ram()?.as_slice::<i64>()?)?)?
            }
            DatumType::TDim => {
                let wide = x.cast_to::<i64>()?;
                tensor(x.shape(), self.0.to_strings(wide.try_as_plain_ram()?.as_slice::<i64>()?)?)?
            }
            other => bail!("CategoryMapper takes string or int64 inputs, not {other:?}"),
        };
        Ok(tvec!(out.into_tvalue()))
    }
}
