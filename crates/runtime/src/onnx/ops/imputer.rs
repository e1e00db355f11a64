//! `Imputer` (ai.onnx.ml opset 1), evaluated by [`palisade_onnx_ml::Imputer`].

use palisade_onnx_ml::Imputer;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::kernel::{Kernel, expansion, rows_and_columns};
use super::node::{floats, ints};

/// Name of the typed op in optimized models.
pub const IMPUTER_OP: &str = "PalisadeImputer";

/// Builds the imputer from an ONNX node.
pub(super) fn imputer(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let imputer = Imputer::new(
        floats(ctx, node, "imputed_value_floats")?,
        node.get_attr_opt::<f32>("replaced_value_float")?.unwrap_or(0.0),
        ints(node, "imputed_value_int64s")?,
        node.get_attr_opt::<i64>("replaced_value_int64")?.unwrap_or(0),
    )?;
    Ok((expansion(ImputerKernel(imputer)), vec![]))
}

/// Whether a node is an `Imputer` that replaces NaN: its graph inputs must accept NaN.
pub fn replaces_nan(node: &NodeProto) -> bool {
    node.op_type == "Imputer"
        && node.attribute.iter().any(|a| a.name == "replaced_value_float" && a.f.is_nan())
}

#[derive(Debug, Clone, PartialEq)]
struct ImputerKernel(Imputer);

impl Kernel for ImputerKernel {
    fn onnx_name(&self) -> &'static str {
        "Imputer"
    }

    fn typed_name(&self) -> &'static str {
        IMPUTER_OP
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
        let want = match self.0 {
            Imputer::Float { .. } => DatumType::F32,
            Imputer::Int64 { .. } => DatumType::I64,
        };
        ensure!(
            inputs[0].datum_type == want,
            "this Imputer takes {want:?} inputs, not {:?}",
            inputs[0].datum_type
        );
        ensure!(matches!(inputs[0].rank(), 1 | 2), "Imputer expects an input of shape [N, C] or [C]");
        Ok(tvec!(inputs[0].without_value()))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let (_, columns) = rows_and_columns("Imputer", x.shape())?;
        let mut x = x.into_tensor();
        {
            let mut plain = x.try_as_plain_ram_mut()?;
            match self.0 {
                Imputer::Float { .. } => self.0.impute_f32(plain.as_slice_mut::<f32>()?, columns)?,
                Imputer::Int64 { .. } => self.0.impute_i64(plain.as_slice_mut::<i64>()?, columns)?,
            }
        }
        Ok(tvec!(x.into_tvalue()))
    }
}
