//! `SVMRegressor` (ai.onnx.ml opset 1), evaluated by [`palisade_onnx_ml::SvmRegressor`]:
//! `[N, F]` in (cast to `f32`), `f32 [N, 1]` out.

use palisade_onnx_ml::{SvmRegressor, SvmRegressorAttributes};
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::kernel::{Kernel, as_f32, expansion, is_ml_numeric, rows_and_columns, tensor, zeros};
use super::node::{floats, parse};

/// Name of the typed op in optimized models.
pub const SVM_REGRESSOR_OP: &str = "PalisadeSVMRegressor";

/// Builds the regressor from an ONNX node.
pub(super) fn svm_regressor(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let svm = SvmRegressor::new(SvmRegressorAttributes {
        kernel_type: parse(node, "kernel_type", "LINEAR")?,
        kernel_params: floats(ctx, node, "kernel_params")?,
        n_supports: node.get_attr_opt::<i64>("n_supports")?.unwrap_or(0),
        support_vectors: floats(ctx, node, "support_vectors")?,
        coefficients: floats(ctx, node, "coefficients")?,
        rho: floats(ctx, node, "rho")?,
        one_class: node.get_attr_opt::<i64>("one_class")?.unwrap_or(0) != 0,
        post_transform: parse(node, "post_transform", "NONE")?,
    })?;
    Ok((expansion(SvmRegressorKernel(svm)), vec![]))
}

#[derive(Debug, Clone, PartialEq)]
struct SvmRegressorKernel(SvmRegressor);

impl Kernel for SvmRegressorKernel {
    fn onnx_name(&self) -> &'static str {
        "SVMRegressor"
    }

    fn typed_name(&self) -> &'static str {
        SVM_REGRESSOR_OP
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        s.equals(&outputs[0].datum_type, DatumType::F32)?;
        s.equals(&outputs[0].rank, 2)?;
        s.equals(&outputs[0].shape[1], 1.to_dim())?;
        s.given(&inputs[0].rank, move |s, rank| {
            if rank == 1 {
                s.equals(&outputs[0].shape[0], 1.to_dim())
            } else {
                s.equals(&outputs[0].shape[0], &inputs[0].shape[0])
            }
        })?;
        Ok(())
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let x = inputs[0];
        ensure!(is_ml_numeric(x.datum_type), "SVMRegressor takes float, double, int64 or int32 inputs");
        let n = match x.rank() {
            1 => 1.to_dim(),
            2 => x.shape[0].clone(),
            _ => bail!("SVMRegressor expects an input of shape [N, F]"),
        };
        Ok(tvec!(f32::fact(tvec![n, 1.to_dim()])))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let (rows, _) = rows_and_columns("SVMRegressor", x.shape())?;
        let features = as_f32("SVMRegressor", &x)?;
        let mut out = zeros(rows)?;
        self.0.predict_into(&features, rows, &mut out)?;
        Ok(tvec!(tensor(&[rows, 1], out)?.into_tvalue()))
    }
}
