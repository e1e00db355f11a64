//! Reading an ONNX-ML node's attributes and wiring its input, shared by Palisade's
//! operators.

use palisade_onnx_ml::{ClassLabels, OnnxMlError};
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::{NodeProto, TensorProto};
use tract_onnx::tract_hir::internal::*;

/// An int list attribute, empty when absent.
pub(super) fn ints(node: &NodeProto, name: &str) -> TractResult<Vec<i64>> {
    Ok(node.get_attr_opt_slice::<i64>(name)?.map(<[i64]>::to_vec).unwrap_or_default())
}

/// A float list attribute, or its `<name>_as_tensor` form (opset 3) rounded to f32;
/// empty when absent.
pub(super) fn floats(ctx: &ParsingContext, node: &NodeProto, name: &str) -> TractResult<Vec<f32>> {
    let list = node.get_attr_opt_slice::<f32>(name)?.unwrap_or_default();
    let tensor_name = format!("{name}_as_tensor");
    let Some(proto) = node.get_attr_opt::<&TensorProto>(&tensor_name)? else {
        return Ok(list.to_vec());
    };
    ensure!(list.is_empty(), "only one of `{name}` and `{tensor_name}` may be set");
    let tensor = ctx.load_tensor(proto).with_context(|| format!("attribute `{tensor_name}`"))?;
    let tensor = tensor.cast_to::<f32>()?;
    Ok(tensor.try_as_plain_ram()?.as_slice::<f32>()?.to_vec())
}

/// A string attribute parsed by `palisade_onnx_ml`, `default` when absent.
pub(super) fn parse<T>(node: &NodeProto, name: &str, default: &str) -> TractResult<T>
where
    T: std::str::FromStr<Err = OnnxMlError>,
{
    Ok(node.get_attr_opt::<&str>(name)?.unwrap_or(default).parse::<T>()?)
}

/// The class labels: `ints_name` (`classlabels_int64s` or `classlabels_ints`) or
/// `classlabels_strings`, not both; no labels at all is an empty int list.
pub(super) fn class_labels(node: &NodeProto, ints_name: &str) -> TractResult<ClassLabels> {
    let ints = node.get_attr_opt_slice::<i64>(ints_name)?.unwrap_or_default();
    let strings = node.get_attr_opt_tvec::<&str>("classlabels_strings")?.unwrap_or_default();
    Ok(match (ints.is_empty(), strings.is_empty()) {
        (false, true) => ClassLabels::Int64(ints.to_vec()),
        (true, false) => ClassLabels::Strings(strings.iter().map(|s| s.to_string()).collect()),
        (true, true) => ClassLabels::Int64(vec![]),
        (false, false) => bail!("only one of `{ints_name}` and `classlabels_strings` may be set"),
    })
}

/// The label tensor type for `labels`.
pub(super) fn label_type(labels: &ClassLabels) -> DatumType {
    match labels {
        ClassLabels::Int64(_) => DatumType::I64,
        ClassLabels::Strings(_) => DatumType::String,
    }
}

/// The labels at `indices`, as an `[N]` tensor of the labels' type.
pub(super) fn label_tensor(labels: &ClassLabels, indices: &[usize]) -> TractResult<Tensor> {
    Ok(match labels {
        ClassLabels::Int64(labels) => {
            let mut tensor = Tensor::zero::<i64>(&[indices.len()])?;
            let mut out = tensor.try_as_plain_ram_mut()?;
            for (o, &i) in out.as_slice_mut::<i64>()?.iter_mut().zip(indices) {
                *o = labels.get(i).copied().unwrap_or_default();
            }
            tensor
        }
        ClassLabels::Strings(labels) => {
            let strings: Vec<String> =
                indices.iter().map(|&i| labels.get(i).cloned().unwrap_or_default()).collect();
            tract_ndarray::Array1::from_vec(strings).into_tensor()
        }
    })
}

/// Casts the input to f32 unless it already is; refuses the types onnxruntime refuses
/// (`op` names the operator in the error).
pub(super) fn wire_f32_input(
    op: &str,
    prefix: &str,
    model: &mut TypedModel,
    input: OutletId,
) -> TractResult<OutletId> {
    let dt = model.outlet_fact(input)?.datum_type;
    match dt {
        DatumType::F32 => Ok(input),
        DatumType::F64 | DatumType::I64 | DatumType::I32 => Ok(model.wire_node(
            format!("{prefix}.cast_to_f32"),
            tract_onnx::tract_core::ops::cast::cast(f32::datum_type()),
            &[input],
        )?[0]),
        other => bail!("{op} takes float, double, int64 or int32 inputs, not {other:?}"),
    }
}

/// A zero-filled `f32 [rows, width]` output, refused (never an abort) past
/// [`palisade_onnx_ml::MAX_ELEMENTS`] elements: `width` comes from the model's attributes.
pub(super) fn zero_rows(op: &str, rows: usize, width: usize) -> TractResult<Tensor> {
    match rows.checked_mul(width) {
        Some(n) if n <= palisade_onnx_ml::MAX_ELEMENTS => Tensor::zero::<f32>(&[rows, width]),
        _ => bail!(
            "{op}: {rows} rows of {width} values is more than the {} one result may hold",
            palisade_onnx_ml::MAX_ELEMENTS
        ),
    }
}

/// `[N, F]` as two usizes.
pub(super) fn rows_and_features(op: &str, x: &Tensor) -> TractResult<(usize, usize)> {
    match *x.shape() {
        [n, f] => Ok((n, f)),
        _ => bail!("{op} expects an input of shape [N, F], got {:?}", x.shape()),
    }
}

/// What callers call the tensor a node reads first: the graph input whose values it holds,
/// directly or through operators that change only their type or shape (`Cast`, `Reshape`,
/// ...) or pick some of its columns (`Gather` on axis 1, `ArrayFeatureExtractor`), as
/// skl2onnx wires a `ColumnTransformer`'s columns; else the tensor's own name.
pub(super) fn caller_name(ctx: &ParsingContext, node: &NodeProto) -> String {
    const PASS_THROUGH: &[&str] = &[
        "Cast",
        "CastLike",
        "Reshape",
        "Identity",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
        "ArrayFeatureExtractor",
    ];
    let picks_columns =
        |n: &NodeProto| n.op_type == "Gather" && n.attribute.iter().any(|a| a.name == "axis" && a.i == 1);
    let first = node.input.first().cloned().unwrap_or_default();
    let Some(graph) = ctx.model.graph.as_ref() else { return first };
    let mut name = first.as_str();
    // Bounded: a malformed graph may loop through its pass-through nodes.
    for _ in 0..16 {
        if graph.input.iter().any(|input| input.name == name) {
            return name.to_owned();
        }
        let producer = graph.node.iter().find(|n| n.output.iter().any(|o| o == name));
        match producer {
            Some(p)
                if (PASS_THROUGH.contains(&p.op_type.as_str()) || picks_columns(p))
                    && !p.input.is_empty() =>
            {
                name = &p.input[0];
            }
            _ => break,
        }
    }
    first
}
