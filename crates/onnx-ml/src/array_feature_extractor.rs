//! `ArrayFeatureExtractor`.

use crate::OnnxMlError;

/// `ArrayFeatureExtractor` (ai.onnx.ml opset 1): picks the columns `indices` from each
/// row of `x` (rows of `columns` values).
///
/// As in onnxruntime, the output keeps the input's rank with the last axis replaced by
/// the number of indices (whatever the indices' shape: a scalar index still gives
/// `[N, 1]`), a `[C]` input gives `[1, k]`, and an index outside `[0, columns)` fails.
pub fn extract_columns<T: Clone>(x: &[T], columns: usize, indices: &[i64]) -> Result<Vec<T>, OnnxMlError> {
    let mut picked = Vec::with_capacity(indices.len());
    for (i, &ix) in indices.iter().enumerate() {
        match usize::try_from(ix) {
            Ok(c) if c < columns => picked.push(c),
            _ => {
                return Err(OnnxMlError::InvalidInput(format!(
                    "ArrayFeatureExtractor: index {i} is {ix}, outside the {columns} columns"
                )));
            }
        }
    }
    let rows = x.len().checked_div(columns).unwrap_or(0);
    let len = crate::alloc::product(rows, picked.len())?;
    if len > crate::MAX_ELEMENTS {
        return Err(OnnxMlError::TooLarge { elements: len });
    }
    let mut out = Vec::new();
    out.try_reserve_exact(len).map_err(|_| OnnxMlError::TooLarge { elements: len })?;
    for row in x.chunks(columns.max(1)) {
        out.extend(picked.iter().map(|&c| row[c].clone()));
    }
    Ok(out)
}
