//! Sizes a model's attributes imply, checked before either engine prepares it.
//!
//! A model file is attacker input. An attribute of a few bytes can announce billions of
//! values per row (`n_targets = 2000000000`), and a constant can ask an operator for a
//! tensor of billions of elements (`Tile` repeats, `Expand` to a shape, `TopK` with a huge
//! `k`). Such a model must not build, nor load on a server, with either engine: an
//! allocation that fails aborts the process, and one that succeeds takes the machine's
//! memory. [`check`] walks the graph (subgraphs included) and refuses, naming the node
//! and the attribute:
//!
//! * row widths an ONNX-ML operator's attributes set: `n_targets`, `targets`, the class
//!   labels of classifiers, `TfIdfVectorizer`'s columns, `FeatureVectorizer`'s
//!   `inputdimensions`, above [`MAX_ELEMENTS`] (SVM classifiers: more than
//!   [`palisade_onnx_ml::MAX_CLASSES`] classes);
//! * declared dimensions (graph inputs, outputs and `value_info`) whose product exceeds
//!   [`MAX_ELEMENTS`];
//! * where the size is a constant of the file (an initializer or a `Constant` node):
//!   `TopK`'s `k`, `Tile`'s repeats, `Expand`'s and `ConstantOfShape`'s shapes,
//!   `OneHot`'s depth, `Reshape`'s shape and `Resize`'s sizes, each with the statically
//!   known dims of its input, above [`MAX_ELEMENTS`].
//!
//! Sizes that depend on the request (its rows, or values of its tensors) are the
//! request's business: see [`crate::OutputSize`].

use std::collections::HashMap;

use tract_onnx::pb;

/// Most elements one tensor a model's attributes or constants imply may hold (2^28, the
/// limit of Palisade's own operators: 1 GiB of `f32`).
pub const MAX_ELEMENTS: u64 = palisade_onnx_ml::MAX_ELEMENTS as u64;

/// Subgraphs nested deeper than this are refused (tract and onnxruntime recurse too).
const MAX_DEPTH: usize = 32;

/// Constants longer than this are not read as sizes (shapes and repeats are short).
const MAX_SIZE_CONSTANT: usize = 64;

/// Checks every size the graph's attributes, constants and declared shapes imply.
pub(crate) fn check(graph: &pb::GraphProto) -> Result<(), String> {
    let mut known = Known::default();
    walk(graph, &mut known, 0)
}

/// What the walk has seen so far: small integer constants and static shapes, by name.
#[derive(Default)]
struct Known {
    constants: HashMap<String, Vec<i64>>,
    /// Per value, its dims where declared (`None` for a dynamic dim).
    shapes: HashMap<String, Vec<Option<u64>>>,
}

impl Known {
    /// The product of a value's known dims (dynamic ones count 1), if it is declared.
    fn known_elements(&self, name: &str) -> u64 {
        self.shapes.get(name).map_or(1, |dims| product(dims.iter().map(|d| d.unwrap_or(1))))
    }
}

fn product(values: impl IntoIterator<Item = u64>) -> u64 {
    values.into_iter().fold(1u64, u64::saturating_mul)
}

fn walk(graph: &pb::GraphProto, known: &mut Known, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("subgraphs are nested more than {MAX_DEPTH} deep"));
    }
    for value in graph.input.iter().chain(&graph.output).chain(&graph.value_info) {
        let dims = declared_dims(value);
        let elements = product(dims.iter().map(|d| d.unwrap_or(1)));
        if elements > MAX_ELEMENTS {
            return Err(format!(
                "`{}` is declared with shape {:?}: {elements} elements is more than the limit of \
                 {MAX_ELEMENTS} for one tensor",
                value.name,
                dims.iter().map(|d| d.map_or(-1, |n| n as i64)).collect::<Vec<_>>()
            ));
        }
        known.shapes.insert(value.name.clone(), dims);
    }
    for tensor in &graph.initializer {
        known
            .shapes
            .insert(tensor.name.clone(), tensor.dims.iter().map(|&d| u64::try_from(d).ok()).collect());
        if let Some(values) = integers(tensor) {
            known.constants.insert(tensor.name.clone(), values);
        }
    }
    for node in &graph.node {
        check_node(node, known).map_err(|reason| {
            let name = if node.name.is_empty() {
                node.output.first().map_or("", String::as_str)
            } else {
                &node.name
            };
            let domain = if node.domain.is_empty() { "ai.onnx" } else { &node.domain };
            format!("node `{name}` ({domain} {}): {reason}", node.op_type)
        })?;
        if node.op_type == "Constant" && node.domain.is_empty() {
            let value = node.attribute.iter().find(|a| a.name == "value").and_then(|a| a.t.as_ref());
            if let (Some(tensor), Some(output)) = (value, node.output.first())
                && let Some(values) = integers(tensor)
            {
                known.constants.insert(output.clone(), values);
            }
        }
        for attribute in &node.attribute {
            for subgraph in attribute.g.iter().chain(&attribute.graphs) {
                walk(subgraph, known, depth + 1)?;
            }
        }
    }
    Ok(())
}

/// A value's declared dims: `Some(n)` for `dim_value`, `None` for a named or unnamed
/// dynamic dim. Empty when the value has no tensor shape.
fn declared_dims(value: &pb::ValueInfoProto) -> Vec<Option<u64>> {
    let Some(pb::type_proto::Value::TensorType(tensor)) =
        value.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Vec::new();
    };
    let Some(shape) = &tensor.shape else { return Vec::new() };
    shape
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(pb::tensor_shape_proto::dimension::Value::DimValue(n)) => u64::try_from(*n).ok(),
            _ => None,
        })
        .collect()
}

/// The values of a small INT64 or INT32 tensor stored in the file (not external data).
fn integers(tensor: &pb::TensorProto) -> Option<Vec<i64>> {
    const INT32: i32 = 6;
    const INT64: i32 = 7;
    let values: Vec<i64> = match tensor.data_type {
        INT64 if !tensor.raw_data.is_empty() => {
            if tensor.raw_data.len() > MAX_SIZE_CONSTANT * 8 {
                return None;
            }
            tensor
                .raw_data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect()
        }
        INT32 if !tensor.raw_data.is_empty() => {
            if tensor.raw_data.len() > MAX_SIZE_CONSTANT * 4 {
                return None;
            }
            tensor
                .raw_data
                .chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect()
        }
        INT64 => tensor.int64_data.clone(),
        INT32 => tensor.int32_data.iter().map(|&v| i64::from(v)).collect(),
        _ => return None,
    };
    (values.len() <= MAX_SIZE_CONSTANT).then_some(values)
}

fn attribute<'a>(node: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

/// A row width an attribute sets, at most [`MAX_ELEMENTS`].
fn width(attribute: &str, n: u64) -> Result<(), String> {
    if n > MAX_ELEMENTS {
        return Err(format!(
            "`{attribute}` implies {n} values per row, more than the limit of {MAX_ELEMENTS}"
        ));
    }
    Ok(())
}

/// A tensor size a constant implies, at most [`MAX_ELEMENTS`].
fn elements(what: &str, n: u64) -> Result<(), String> {
    if n > MAX_ELEMENTS {
        return Err(format!(
            "{what} implies {n} elements, more than the limit of {MAX_ELEMENTS} for one tensor"
        ));
    }
    Ok(())
}

/// The largest number of class labels of a classifier node.
fn class_count(node: &pb::NodeProto) -> u64 {
    ["classlabels_int64s", "classlabels_ints", "classlabels_strings"]
        .iter()
        .filter_map(|name| attribute(node, name))
        .map(|a| a.ints.len().max(a.strings.len()) as u64)
        .max()
        .unwrap_or(0)
}

fn check_node(node: &pb::NodeProto, known: &Known) -> Result<(), String> {
    let int = |name: &str| attribute(node, name).map(|a| a.i);
    let constant = |ix: usize| node.input.get(ix).and_then(|name| known.constants.get(name));
    let input_elements = || node.input.first().map_or(1, |name| known.known_elements(name));
    let input_dims = || node.input.first().and_then(|name| known.shapes.get(name));
    let positive = |v: i64| u64::try_from(v).unwrap_or(0);
    match (node.domain.as_str(), node.op_type.as_str()) {
        ("ai.onnx.ml", "TreeEnsembleRegressor" | "TreeEnsemble") => {
            width("n_targets", int("n_targets").map_or(0, positive))
        }
        ("ai.onnx.ml", "LinearRegressor") => width("targets", int("targets").map_or(0, positive)),
        ("ai.onnx.ml", "TreeEnsembleClassifier" | "LinearClassifier") => {
            width("classlabels", class_count(node))
        }
        ("ai.onnx.ml", "SVMClassifier") => {
            let classes = class_count(node);
            let limit = palisade_onnx_ml::MAX_CLASSES as u64;
            if classes > limit {
                return Err(format!("{classes} classes is more than the limit of {limit} for an SVM"));
            }
            Ok(())
        }
        ("ai.onnx.ml", "TfIdfVectorizer") => {
            let columns = attribute(node, "ngram_indexes")
                .and_then(|a| a.ints.iter().max())
                .map_or(0, |&m| positive(m).saturating_add(1));
            width("ngram_indexes", columns)
        }
        ("ai.onnx.ml", "FeatureVectorizer") => {
            let total = attribute(node, "inputdimensions")
                .map_or(0, |a| a.ints.iter().fold(0u64, |t, &d| t.saturating_add(positive(d))));
            width("inputdimensions", total)
        }
        ("", "TopK") => {
            let k = constant(1).map_or(0, |k| k.iter().copied().map(positive).max().unwrap_or(0));
            let rows = input_dims().map_or(1, |dims| {
                let axis = int("axis").unwrap_or(-1);
                let axis = if axis < 0 { dims.len() as i64 + axis } else { axis };
                let other = dims.iter().enumerate().filter(|(ix, _)| *ix as i64 != axis);
                product(other.map(|(_, d)| d.unwrap_or(1)))
            });
            elements("`k`", k.saturating_mul(rows))
        }
        ("", "Tile") => match constant(1) {
            Some(repeats) => elements(
                "the repeats",
                product(repeats.iter().copied().map(positive)).saturating_mul(input_elements()),
            ),
            None => Ok(()),
        },
        ("", "Expand") => match constant(1) {
            Some(shape) => {
                let dims = input_dims().cloned().unwrap_or_default();
                // Broadcasting aligns the trailing axes; each is the larger of the two.
                let rank = shape.len().max(dims.len());
                let at = |v: &[Option<u64>], ix: usize| {
                    (ix + v.len()).checked_sub(rank).and_then(|i| v.get(i).copied().flatten()).unwrap_or(1)
                };
                let target: Vec<Option<u64>> = shape.iter().map(|&d| Some(positive(d))).collect();
                elements("the shape", product((0..rank).map(|ix| at(&target, ix).max(at(&dims, ix)))))
            }
            None => Ok(()),
        },
        ("", "ConstantOfShape") => match constant(0) {
            Some(shape) => elements("the shape", product(shape.iter().copied().map(positive))),
            None => Ok(()),
        },
        ("", "OneHot") => match constant(1) {
            Some(depth) => elements(
                "the depth",
                depth.iter().copied().map(positive).max().unwrap_or(0).saturating_mul(input_elements()),
            ),
            None => Ok(()),
        },
        ("", "Reshape") => match constant(1) {
            Some(shape) => {
                elements("the shape", product(shape.iter().copied().map(positive).filter(|&d| d > 0)))
            }
            None => Ok(()),
        },
        ("", "Resize") => match constant(3) {
            Some(sizes) => elements("the sizes", product(sizes.iter().copied().map(positive))),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn int_attr(name: &str, i: i64) -> pb::AttributeProto {
        pb::AttributeProto { name: name.into(), i, r#type: 2, ..Default::default() }
    }

    fn node(domain: &str, op: &str, inputs: &[&str], attribute: Vec<pb::AttributeProto>) -> pb::NodeProto {
        pb::NodeProto {
            op_type: op.into(),
            domain: domain.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec!["y".into()],
            attribute,
            ..Default::default()
        }
    }

    fn ints(name: &str, values: &[i64]) -> pb::TensorProto {
        pb::TensorProto {
            name: name.into(),
            data_type: 7,
            dims: vec![values.len() as i64],
            int64_data: values.to_vec(),
            ..Default::default()
        }
    }

    fn graph(node: pb::NodeProto, initializer: Vec<pb::TensorProto>) -> pb::GraphProto {
        pb::GraphProto { node: vec![node], initializer, ..Default::default() }
    }

    #[test]
    fn row_widths_past_the_limit_are_refused() {
        let huge =
            node("ai.onnx.ml", "TreeEnsembleRegressor", &["x"], vec![int_attr("n_targets", 2_000_000_000)]);
        let err = check(&graph(huge, vec![])).unwrap_err();
        assert!(err.contains("n_targets") && err.contains("2000000000"), "{err}");
        let fine = node("ai.onnx.ml", "TreeEnsembleRegressor", &["x"], vec![int_attr("n_targets", 3)]);
        check(&graph(fine, vec![])).unwrap();
    }

    #[test]
    fn constant_sizes_past_the_limit_are_refused() {
        let tile = node("", "Tile", &["x", "r"], vec![]);
        assert!(check(&graph(tile.clone(), vec![ints("r", &[100_000, 100_000])])).is_err());
        check(&graph(tile, vec![ints("r", &[2, 3])])).unwrap();
        let expand = node("", "Expand", &["x", "s"], vec![]);
        assert!(check(&graph(expand, vec![ints("s", &[1, 4_000_000_000])])).is_err());
        let topk = node("", "TopK", &["x", "k"], vec![]);
        assert!(check(&graph(topk, vec![ints("k", &[2_000_000_000])])).is_err());
        let fill = node("", "ConstantOfShape", &["s"], vec![]);
        assert!(check(&graph(fill, vec![ints("s", &[65_536, 65_536])])).is_err());
    }

    #[test]
    fn declared_dims_past_the_limit_are_refused() {
        let dim = |v: i64| pb::tensor_shape_proto::Dimension {
            value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)),
            ..Default::default()
        };
        let output = pb::ValueInfoProto {
            name: "y".into(),
            r#type: Some(pb::TypeProto {
                value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                    elem_type: 1,
                    shape: Some(pb::TensorShapeProto { dim: vec![dim(1), dim(2_000_000_000)] }),
                })),
                ..Default::default()
            }),
            ..Default::default()
        };
        let g = pb::GraphProto { output: vec![output], ..Default::default() };
        let err = check(&g).unwrap_err();
        assert!(err.contains("`y` is declared with shape [1, 2000000000]"), "{err}");
    }
}
