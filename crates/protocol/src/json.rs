//! Tensors as nested JSON arrays, shared by the protocols that carry them so (Seldon's
//! `ndarray`, KServe V1's `instances` and `predictions`).

use palisade_core::TensorData;
use serde_json::Value;

use crate::data::JsonData;

/// The shape of nested JSON arrays (`[[1, 2], [3, 4]]` is `[2, 2]`; a scalar is `[]`).
/// Arrays whose rows differ in length or depth are refused with the reason.
pub(crate) fn nested_shape(value: &Value) -> Result<Vec<usize>, &'static str> {
    fn walk(value: &Value, depth: usize, shape: &mut Vec<usize>) -> Result<(), &'static str> {
        match value {
            Value::Array(items) => {
                if depth == shape.len() {
                    shape.push(items.len());
                } else if shape.get(depth) != Some(&items.len()) {
                    return Err("rows have different lengths");
                }
                items.iter().try_for_each(|item| walk(item, depth + 1, shape))
            }
            _ if depth != shape.len() => Err("rows nest to different depths"),
            _ => Ok(()),
        }
    }
    let mut shape = Vec::new();
    walk(value, 0, &mut shape)?;
    Ok(shape)
}

/// Tensor elements as a flat JSON array; 32- and 16-bit floats keep their shortest decimal
/// form (`0.8`, not `0.800000011920929`). Values JSON cannot hold (NaN) become `null`.
pub(crate) fn values(data: &TensorData) -> Value {
    fn short(x: f32) -> Value {
        x.to_string()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number)
    }
    match data {
        TensorData::Fp32(v) => Value::Array(v.iter().map(|&x| short(x)).collect()),
        TensorData::Fp16(v) => Value::Array(v.iter().map(|x| short(x.to_f32())).collect()),
        TensorData::Bf16(v) => Value::Array(v.iter().map(|x| short(x.to_f32())).collect()),
        other => serde_json::to_value(JsonData(other)).unwrap_or(Value::Null),
    }
}

/// Reshapes a flat JSON array into nested arrays of the given shape.
pub(crate) fn nest(flat: Value, shape: &[usize]) -> Value {
    let Value::Array(items) = flat else { return flat };
    if shape.len() <= 1 {
        return Value::Array(items);
    }
    let mut level: Vec<Value> = items;
    for &dim in shape[1..].iter().rev() {
        if dim == 0 {
            break;
        }
        let mut grouped = Vec::with_capacity(level.len() / dim);
        let mut iter = level.into_iter();
        loop {
            let chunk: Vec<Value> = iter.by_ref().take(dim).collect();
            if chunk.is_empty() {
                break;
            }
            grouped.push(Value::Array(chunk));
        }
        level = grouped;
    }
    Value::Array(level)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn shapes_of_nested_arrays() {
        assert_eq!(nested_shape(&json!([[1, 2], [3, 4], [5, 6]])), Ok(vec![3, 2]));
        assert_eq!(nested_shape(&json!(7)), Ok(vec![]));
        assert_eq!(nested_shape(&json!([])), Ok(vec![0]));
        assert!(nested_shape(&json!([[1, 2], [3]])).is_err());
        assert!(nested_shape(&json!([[1, 2], 3])).is_err());
    }

    #[test]
    fn nests_by_shape() {
        let flat = values(&TensorData::Fp32(vec![1.0, 0.8, 0.0, 0.5]));
        assert_eq!(nest(flat, &[2, 2]).to_string(), "[[1.0,0.8],[0.0,0.5]]");
    }
}
