//! `Gemm`: tract's, except that `alpha` and `beta` are constants of the operands' type.
//! tract multiplies by `f32` constants, which turns a `float16` Gemm's output into `f32`
//! and fails to prepare every `float16` network PyTorch exports.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::math;
use tract_onnx::tract_hir::internal::*;

/// Builds the Gemm from an ONNX node.
pub(super) fn gemm(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((
        expand(Gemm {
            alpha: node.get_attr_opt("alpha")?.unwrap_or(1.),
            beta: node.get_attr_opt("beta")?.unwrap_or(1.),
            trans_a: node.get_attr_opt("transA")?.unwrap_or(false),
            trans_b: node.get_attr_opt("transB")?.unwrap_or(false),
        }),
        vec![],
    ))
}

#[derive(Debug, Clone)]
struct Gemm {
    alpha: f32,
    beta: f32,
    trans_a: bool,
    trans_b: bool,
}

impl Gemm {
    /// `value` as a constant of `dt`, of rank `rank`.
    fn scalar(
        model: &mut TypedModel,
        name: String,
        value: f32,
        dt: DatumType,
        rank: usize,
    ) -> TractResult<OutletId> {
        let constant = tensor0(value).cast_to_dt(dt)?.into_owned().broadcast_into_rank(rank)?;
        model.add_const(name, constant)
    }
}

impl Expansion for Gemm {
    fn name(&self) -> StaticName {
        "Gemm".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        if inputs.len() < 2 {
            bail!("Gemm takes at least 2 inputs, this node has {}", inputs.len());
        }
        if inputs.len() == 3 {
            s.equals(&inputs[2].datum_type, &outputs[0].datum_type)?;
        }
        s.equals(&inputs[0].rank, 2)?;
        s.equals(&inputs[1].rank, 2)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].rank, 2)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[1].datum_type, &outputs[0].datum_type)?;
        let (ca, ra) = if self.trans_a { (0, 1) } else { (1, 0) };
        let (cb, rb) = if self.trans_b { (0, 1) } else { (1, 0) };
        s.equals(&inputs[0].shape[ra], &outputs[0].shape[0])?;
        s.equals(&inputs[0].shape[ca], &inputs[1].shape[rb])?;
        s.equals(&inputs[1].shape[cb], &outputs[0].shape[1])?;
        Ok(())
    }

    fn wire(&self, name: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let (a, b, c) = (inputs[0], inputs[1], inputs.get(2).copied());
        let dt = model.outlet_fact(a)?.datum_type;
        let axes = AxesMapping::for_numpy_matmul(2, self.trans_a, self.trans_b, false)?;
        let mut wire = model.wire_node(format!("{name}.ab"), EinSum::new(axes, dt), &[a, b])?[0];
        if self.alpha != 1.0 {
            let rank = model.outlet_fact(wire)?.rank();
            let alpha = Self::scalar(model, format!("{name}.alpha_ab.cst"), self.alpha, dt, rank)?;
            wire = model.wire_node(format!("{name}.alpha_ab"), math::mul(), &[alpha, wire])?[0];
        }
        if let Some(mut c) = c.filter(|_| self.beta != 0.0) {
            while model.outlet_fact(wire)?.rank() > model.outlet_fact(c)?.rank() {
                let axis = model.outlet_fact(c)?.rank();
                c = model.wire_node(format!("{name}.c_add_axis_{axis}"), AxisOp::Add(0), &[c])?[0];
            }
            if self.beta != 1.0 {
                let rank = model.outlet_fact(wire)?.rank();
                let beta = Self::scalar(model, format!("{name}.beta_c.cst"), self.beta, dt, rank)?;
                c = model.wire_node(format!("{name}.beta_c"), math::mul(), &[beta, c])?[0];
            }
            wire = model.wire_node(name, math::add(), &[wire, c])?[0];
        }
        Ok(tvec!(wire))
    }
}
