//! `Cast` to `int64`, with the identity kept an identity.
//!
//! tract's ONNX front end turns every cast to `int64` into a cast to its symbolic
//! dimension type (`TDim`), so that shape arithmetic stays symbolic. For a tensor that
//! already is `int64`, such as the label output of a classifier that skl2onnx exports
//! followed by `Cast(to=INT64)`, that is a per-run conversion of every element to
//! `TDim` and back, where ONNX means the identity. Here a cast to `int64` of an `int64`
//! input is the identity (which the optimizer removes); from any other type it is
//! tract's cast to `TDim`; casts to other types are tract's own op, unchanged.

use std::sync::LazyLock;

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::ops::cast::cast as core_cast;
use tract_onnx::tract_core::ops::identity::Identity;
use tract_onnx::tract_hir::internal::*;

/// A parser of one ONNX node into an inference op, as tract's operator register holds.
type Builder = fn(&ParsingContext, &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)>;

/// tract's own builder for `Cast`, for the casts Palisade leaves to tract.
static TRACT_CAST: LazyLock<Option<Builder>> =
    LazyLock::new(|| tract_onnx::onnx().op_register.0.get("Cast").copied());

/// Builds a `Cast` node: Palisade's for `to = INT64`, tract's otherwise.
pub(super) fn cast(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let to = node.get_attr::<DatumType>("to")?;
    if to == i64::datum_type() {
        return Ok((expand(CastToInt64), vec![]));
    }
    let tract_cast = TRACT_CAST.ok_or_else(|| format_err!("tract's ONNX front end has no Cast operator"))?;
    tract_cast(ctx, node)
}

/// `Cast(to=INT64)` at inference level.
#[derive(Debug, Clone)]
struct CastToInt64;

impl Expansion for CastToInt64 {
    fn name(&self) -> StaticName {
        "onnx.Cast".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].rank, &inputs[0].rank)?;
        s.equals(&outputs[0].shape, &inputs[0].shape)?;
        s.given(&inputs[0].datum_type, move |s, dt| {
            let to = if dt == i64::datum_type() { dt } else { TDim::datum_type() };
            s.equals(&outputs[0].datum_type, to)
        })?;
        Ok(())
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        if model.outlet_fact(inputs[0])?.datum_type == i64::datum_type() {
            model.wire_node(prefix, Identity, inputs)
        } else {
            model.wire_node(prefix, core_cast(TDim::datum_type()), inputs)
        }
    }
}

#[cfg(test)]
mod tests {
    use tract_onnx::pb::{self, attribute_proto::AttributeType};
    use tract_onnx::prelude::*;

    /// The optimized one-node graph `y = Cast(x, to)` for a `[3]` input of ONNX type
    /// `elem_type`, tract type `input`.
    fn cast_model(to: i64, elem_type: i32, input: DatumType) -> TypedModel {
        let node = pb::NodeProto {
            input: vec!["x".into()],
            output: vec!["y".into()],
            op_type: "Cast".into(),
            attribute: vec![pb::AttributeProto {
                name: "to".into(),
                r#type: AttributeType::Int as i32,
                i: to,
                ..Default::default()
            }],
            ..Default::default()
        };
        let graph = pb::GraphProto {
            node: vec![node],
            input: vec![pb::ValueInfoProto {
                name: "x".into(),
                r#type: Some(pb::TypeProto {
                    value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                        elem_type,
                        shape: None,
                    })),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            output: vec![pb::ValueInfoProto { name: "y".into(), ..Default::default() }],
            ..Default::default()
        };
        let proto = pb::ModelProto {
            ir_version: 8,
            opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: 17 }],
            graph: Some(graph),
            ..Default::default()
        };
        let mut model = crate::onnx::framework().model_for_proto_model(&proto).unwrap();
        model.set_input_fact(0, InferenceFact::dt_shape(input, tvec![3.to_dim()])).unwrap();
        model.into_optimized().unwrap()
    }

    fn has_cast(model: &TypedModel) -> bool {
        model.nodes().iter().any(|n| n.op().name() == "Cast")
    }

    fn run(model: TypedModel, x: Tensor) -> Tensor {
        let outputs = model.into_runnable().unwrap().run(tvec!(x.into_tvalue())).unwrap();
        outputs[0].clone().into_tensor()
    }

    #[test]
    fn int64_to_int64_is_removed() {
        let model = cast_model(7, 7, DatumType::I64);
        assert!(!has_cast(&model), "{model}");
        assert_eq!(model.output_fact(0).unwrap().datum_type, DatumType::I64);
        assert_eq!(run(model, tensor1(&[3i64, -1, 7])), tensor1(&[3i64, -1, 7]));
    }

    #[test]
    fn other_casts_to_int64_stay_tracts() {
        let model = cast_model(7, 1, DatumType::F32);
        assert!(has_cast(&model), "{model}");
        assert_eq!(model.output_fact(0).unwrap().datum_type, DatumType::TDim);
        let y = run(model, tensor1(&[1.7f32, -2.2, 0.0]));
        assert_eq!(y.cast_to::<i64>().unwrap().into_owned(), tensor1(&[1i64, -2, 0]));
        let model = cast_model(7, 6, DatumType::I32);
        assert_eq!(model.output_fact(0).unwrap().datum_type, DatumType::TDim);
    }

    #[test]
    fn casts_to_other_types_are_tracts() {
        let model = cast_model(1, 11, DatumType::F64);
        assert!(has_cast(&model), "{model}");
        assert_eq!(run(model, tensor1(&[0.5f64, 2.0, -1.0])), tensor1(&[0.5f32, 2.0, -1.0]));
        // Same type: tract's optimizer removes it.
        assert!(!has_cast(&cast_model(1, 1, DatumType::F32)));
    }
}
