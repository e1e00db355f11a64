//! `ZipMap` (ai.onnx.ml opset 1), served as a pass-through of its probability tensor.
//!
//! ONNX's `ZipMap` turns an `f32 [N, C]` tensor into a sequence of N maps from class
//! label to probability. The V2 protocol has no map type, so Palisade serves the tensor
//! itself: the graph output keeps its name (`output_probability` in skl2onnx exports),
//! its type is `f32 [N, C]` (`f64` for double probabilities), and its columns are in the order of the node's
//! `classlabels_int64s` / `classlabels_strings`. The op is an identity, which the
//! optimizer removes (the output name moves to the tensor that fed it).

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::ops::identity::Identity;
use tract_onnx::tract_hir::internal::*;

/// Builds a `ZipMap` node, checking it has labels.
pub(super) fn zipmap(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let ints = node.get_attr_opt_slice::<i64>("classlabels_int64s")?.map_or(0, <[i64]>::len);
    let strings = node.get_attr_opt_tvec::<&str>("classlabels_strings")?.map_or(0, |s| s.len());
    let n_labels = match (ints, strings) {
        (0, 0) => bail!("ZipMap needs `classlabels_int64s` or `classlabels_strings`"),
        (n, 0) | (0, n) => n,
        _ => bail!("only one of `classlabels_int64s` and `classlabels_strings` may be set"),
    };
    Ok((expand(ZipMap { n_labels }), vec![]))
}

/// `ZipMap` at inference level: checks an `f32` or `f64 [N, C]` input with one column per
/// label.
#[derive(Debug, Clone)]
struct ZipMap {
    n_labels: usize,
}

impl Expansion for ZipMap {
    fn name(&self) -> StaticName {
        "ZipMap".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        // skl2onnx writes a ZipMap over doubles for float64 training data (onnxruntime
        // refuses that graph); Palisade serves the tensor in its own type.
        s.equals(&outputs[0].datum_type, &inputs[0].datum_type)?;
        s.given(&inputs[0].datum_type, |_, dt| {
            ensure!(
                matches!(dt, DatumType::F32 | DatumType::F64),
                "ZipMap takes float or double probabilities"
            );
            Ok(())
        })?;
        s.equals(&inputs[0].rank, 2)?;
        s.equals(&outputs[0].shape, &inputs[0].shape)?;
        s.equals(&inputs[0].shape[1], self.n_labels.to_dim())?;
        Ok(())
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, Identity, inputs)
    }
}
