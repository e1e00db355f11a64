//! `Flatten`: like tract's, but with any number of symbolic dimensions. tract refuses to
//! multiply symbols ("square of symbols"), and real graphs flatten `[batch, sequence]`: a
//! tokenizer's output `[N, tokens]` (axis 1, which changes nothing), and the attention
//! mask of a Hugging Face BERT exported by the TorchScript exporter (axis 2, giving
//! `[batch * sequence, 1]`).

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::ops::change_axes::AxisOp;
use tract_onnx::tract_hir::internal::*;

/// Builds the flatten from an ONNX node.
pub(super) fn flatten(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let axis = node.get_attr_opt::<i64>("axis")?.unwrap_or(1);
    Ok((expand(PalisadeFlatten { axis }), vec![]))
}

#[derive(Debug, Clone)]
struct PalisadeFlatten {
    axis: i64,
}

impl PalisadeFlatten {
    /// The axis as an index in `0..=rank`.
    fn axis(&self, rank: usize) -> TractResult<usize> {
        let axis = if self.axis < 0 { self.axis + rank as i64 } else { self.axis };
        match usize::try_from(axis) {
            Ok(axis) if axis <= rank => Ok(axis),
            _ => bail!("Flatten axis {} out of range for rank {rank}", self.axis),
        }
    }

    /// `[product of dims before axis, product of dims from axis]`.
    fn compute_shape(&self, shape: &[TDim]) -> TractResult<[TDim; 2]> {
        let axis = self.axis(shape.len())?;
        Ok([shape[..axis].iter().product(), shape[axis..].iter().product()])
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
        s.equals(&outputs[0].rank, 2)?;
        s.given(&inputs[0].shape, move |s, shape| {
            let [shape_0, shape_1] = self.compute_shape(&shape)?;
            s.equals(&outputs[0].shape, ShapeFactoid::from(vec![shape_0, shape_1]))
        })
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let shape = model.outlet_fact(inputs[0])?.shape.to_tvec();
        let axis = self.axis(shape.len())?;
        // The dims before the axis become axis 0, the others axis 1.
        let group = |dims: &[TDim], at: usize| match dims.len() {
            0 => Some(AxisOp::Add(at)),
            1 => None,
            _ => Some(AxisOp::Reshape(at, dims.into(), tvec!(dims.iter().product()))),
        };
        let ops = [group(&shape[..axis], 0), group(&shape[axis..], 1)];
        let mut wire = tvec!(inputs[0]);
        for (ix, op) in ops.into_iter().flatten().enumerate() {
            wire = model.wire_node(format!("{prefix}.{ix}"), op, &wire)?;
        }
        Ok(wire)
    }
}
