//! Tensors stored outside the model file (ONNX external data), as PyTorch's default export
//! writes them (`model.onnx.data`).
//!
//! A location is the model's input too: before tract reads anything, every location must
//! be a plain relative path inside the model's directory (no `..`, no absolute path, no
//! symbolic link on the way, a regular file at the end), and its `offset`/`length` must lie
//! within that file.

use std::path::{Component, Path};

use tract_onnx::pb;

/// Deepest subgraph nesting followed.
const MAX_DEPTH: usize = 16;

/// Checks every externally stored tensor of the graph (initializers, node attributes,
/// subgraphs) against `dir`, the model's directory; returns how many there are.
pub(super) fn check(graph: &pb::GraphProto, dir: &Path) -> Result<usize, String> {
    let mut count = 0;
    visit_graph(graph, 0, &mut |tensor| {
        count += 1;
        check_tensor(tensor, dir)
    })?;
    Ok(count)
}

fn visit_graph(
    graph: &pb::GraphProto,
    depth: usize,
    f: &mut dyn FnMut(&pb::TensorProto) -> Result<(), String>,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("subgraphs nest deeper than {MAX_DEPTH} levels"));
    }
    for tensor in &graph.initializer {
        visit_tensor(tensor, f)?;
    }
    for node in &graph.node {
        for attr in &node.attribute {
            if let Some(t) = &attr.t {
                visit_tensor(t, f)?;
            }
            for t in &attr.tensors {
                visit_tensor(t, f)?;
            }
            for g in attr.g.iter().chain(&attr.graphs) {
                visit_graph(g, depth + 1, f)?;
            }
        }
    }
    Ok(())
}

fn visit_tensor(
    tensor: &pb::TensorProto,
    f: &mut dyn FnMut(&pb::TensorProto) -> Result<(), String>,
) -> Result<(), String> {
    if !tensor.external_data.is_empty() || tensor.data_location == Some(1) {
        f(tensor)?;
    }
    Ok(())
}

fn entry<'a>(tensor: &'a pb::TensorProto, key: &str) -> Option<&'a str> {
    tensor.external_data.iter().find(|e| e.key == key).map(|e| e.value.as_str())
}

fn check_tensor(tensor: &pb::TensorProto, dir: &Path) -> Result<(), String> {
    let name = &tensor.name;
    let Some(location) = entry(tensor, "location") else {
        return Err(format!("tensor `{name}` is marked as external data but names no file (`location`)"));
    };
    let refuse = |why: &str| {
        Err(format!(
            "tensor `{name}` is stored in `{location}`, which {why}; external data must sit in the model's \
             directory (or export with `external_data=False` to keep every tensor in the .onnx file)"
        ))
    };
    let relative = Path::new(location);
    if location.is_empty() || !relative.components().all(|c| matches!(c, Component::Normal(_))) {
        return refuse("is not a plain relative path (`..`, `.` and absolute paths are refused)");
    }
    let mut walked = dir.to_owned();
    for part in relative.components() {
        walked.push(part);
        match std::fs::symlink_metadata(&walked) {
            Ok(meta) if meta.file_type().is_symlink() => return refuse("is reached through a symbolic link"),
            Ok(_) => {}
            Err(e) => return refuse(&format!("cannot be read ({e})")),
        }
    }
    let meta = std::fs::symlink_metadata(&walked).map_err(|e| format!("`{location}`: {e}"))?;
    if !meta.is_file() {
        return refuse("is not a regular file");
    }
    let number = |key: &str| -> Result<Option<u64>, String> {
        entry(tensor, key)
            .map(|v| v.parse::<u64>().map_err(|_| format!("tensor `{name}`: external data `{key}` is `{v}`")))
            .transpose()
    };
    let offset = number("offset")?.unwrap_or(0);
    let length = number("length")?;
    let end = match length {
        Some(length) => offset.checked_add(length),
        None => Some(offset),
    };
    if end.is_none_or(|end| end > meta.len()) {
        return Err(format!(
            "tensor `{name}`: external data `{location}` holds {} bytes, fewer than offset {offset} + length {}",
            meta.len(),
            length.unwrap_or(0)
        ));
    }
    Ok(())
}
