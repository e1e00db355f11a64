//! `Flatten`: tract's, except that a flatten which keeps a rank-2 input as it is (axis 1)
//! accepts two symbolic dimensions. A tokenizer's output `[N, tokens]` has two, and
//! tract refuses to multiply symbols ("square of symbols") even when nothing is multiplied.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::array::Flatten;

/// Builds the flatten from an ONNX node.
pub(super) fn flatten(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let axis = node.get_attr_opt::<i64>("axis")?.unwrap_or(1);
    Ok((expand(PalisadeFlatten(Flatten::new(axis))), vec![]))
}

#[derive(Debug, Clone)]
struct PalisadeFlatten(Flatten);

impl PalisadeFlatten {
    /// Whether flattening a tensor of `rank` changes nothing.
    fn is_identity(&self, rank: usize) -> bool {
        rank == 2 && (self.0.axis == 1 || self.0.axis == -1)
    }
}

impl Expansion for PalisadeFlatten {
    fn name(&self) -> StaticName {
        "Flatten".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        s.equals(&outputs[0].datum_type, &inputs[0].datum_type)?;
        s.given(&inputs[0].rank, move |s, rank| {
            if self.is_identity(rank as usize) {
                s.equals(&outputs[0].shape, &inputs[0].shape)?;
            } else {
                s.given(&inputs[0].shape, move |s, shape| {
                    let [shape_0, shape_1] = self.0.compute_shape(&shape)?;
                    s.equals(&outputs[0].shape, ShapeFactoid::from(vec![shape_0, shape_1]))
                })?;
            }
            Ok(())
        })
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        if self.is_identity(model.outlet_fact(inputs[0])?.rank()) {
            return Ok(inputs.into());
        }
        self.0.wire(prefix, model, inputs)
    }
}
