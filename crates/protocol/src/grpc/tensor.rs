//! One tensor between its gRPC form (name, datatype, shape, and typed `contents` or a raw
//! entry) and a [`Tensor`].

use palisade_core::{CoreError, DataType, Tensor, TensorData};

use super::inference::InferTensorContents;
use crate::ProtocolError;
use crate::data;

/// Which side of the exchange a tensor is on; it names the tensor and the raw field in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Input,
    Output,
}

impl Side {
    pub(super) fn noun(self) -> &'static str {
        match self {
            Side::Input => "input",
            Side::Output => "output",
        }
    }

    pub(super) fn raw_field(self) -> &'static str {
        match self {
            Side::Input => "raw_input_contents",
            Side::Output => "raw_output_contents",
        }
    }

    /// An error about one tensor, its name clipped like REST's.
    pub(super) fn error(self, name: &str, message: impl std::fmt::Display) -> ProtocolError {
        ProtocolError::new(format!("{} `{}`: {message}", self.noun(), clip(name)))
    }
}

/// Names from the wire are echoed in errors, but never at length.
pub(super) fn clip(name: &str) -> String {
    name.chars().take(64).collect()
}

/// A tensor as it arrives: elements either typed or in the raw entry at `index`.
pub(super) struct WireTensor {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    pub contents: Option<InferTensorContents>,
    pub raw: Option<(usize, Vec<u8>)>,
}

/// Decodes and shape-checks one tensor.
pub(super) fn decode(side: Side, wire: WireTensor) -> Result<Tensor, ProtocolError> {
    let WireTensor { name, datatype, shape: wire_shape, contents, raw } = wire;
    let datatype = DataType::parse(&datatype).map_err(|e| side.error(&name, e))?;
    let mut shape = Vec::with_capacity(wire_shape.len());
    for &dim in &wire_shape {
        let dim = usize::try_from(dim)
            .map_err(|_| side.error(&name, format!("shape {wire_shape:?} has a negative dimension")))?;
        shape.push(dim);
    }
    let Some(expected) = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) else {
        return Err(side.error(&name, format!("shape {wire_shape:?} is too large")));
    };
    let data = match raw {
        Some((index, bytes)) => {
            if let Some(field) = contents.as_ref().and_then(first_field) {
                return Err(side.error(
                    &name,
                    format!("has both `contents.{field}` and {}[{index}]; send one", side.raw_field()),
                ));
            }
            if let Some(width) = datatype.element_size()
                && expected.checked_mul(width) != Some(bytes.len())
            {
                return Err(side.error(
                    &name,
                    format!(
                        "shape {wire_shape:?} of {datatype} needs {} bytes but {}[{index}] has {}",
                        expected.saturating_mul(width),
                        side.raw_field(),
                        bytes.len()
                    ),
                ));
            }
            match datatype {
                DataType::Uint8 => TensorData::Uint8(bytes),
                _ => data::decode_binary(datatype, &bytes)
                    .map_err(|e| side.error(&name, format!("{}[{index}]: {e}", side.raw_field())))?,
            }
        }
        None => typed(side, datatype, contents.unwrap_or_default()).map_err(|e| side.error(&name, e))?,
    };
    let clipped = clip(&name);
    Tensor::new(name, shape, data).map_err(|e| {
        let message = match e {
            CoreError::ShapeMismatch { shape, expected, actual, .. } => {
                format!("shape {shape:?} holds {expected} elements but {actual} were given")
            }
            CoreError::ShapeOverflow { shape, .. } => format!("shape {shape:?} is too large"),
            other => other.to_string(),
        };
        ProtocolError::new(format!("{} `{clipped}`: {message}", side.noun()))
    })
}

/// The first typed field holding elements, if any.
fn first_field(c: &InferTensorContents) -> Option<&'static str> {
    fields(c).into_iter().find_map(|(field, len)| (len > 0).then_some(field))
}

fn fields(c: &InferTensorContents) -> [(&'static str, usize); 8] {
    [
        ("bool_contents", c.bool_contents.len()),
        ("int_contents", c.int_contents.len()),
        ("int64_contents", c.int64_contents.len()),
        ("uint_contents", c.uint_contents.len()),
        ("uint64_contents", c.uint64_contents.len()),
        ("fp32_contents", c.fp32_contents.len()),
        ("fp64_contents", c.fp64_contents.len()),
        ("bytes_contents", c.bytes_contents.len()),
    ]
}

/// The typed field that carries a datatype; `None` for FP16 and BF16, which travel raw only.
pub(super) fn typed_field(datatype: DataType) -> Option<&'static str> {
    Some(match datatype {
        DataType::Bool => "bool_contents",
        DataType::Int8 | DataType::Int16 | DataType::Int32 => "int_contents",
        DataType::Int64 => "int64_contents",
        DataType::Uint8 | DataType::Uint16 | DataType::Uint32 => "uint_contents",
        DataType::Uint64 => "uint64_contents",
        DataType::Fp32 => "fp32_contents",
        DataType::Fp64 => "fp64_contents",
        DataType::Bytes => "bytes_contents",
        DataType::Fp16 | DataType::Bf16 => return None,
    })
}

/// Narrows wire integers to the element type, naming the first one out of range.
fn narrow<W: Copy + std::fmt::Display, T: TryFrom<W>>(
    values: Vec<W>,
    datatype: DataType,
) -> Result<Vec<T>, String> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            T::try_from(v).map_err(|_| format!("contents element {i}: {v} is out of range for {datatype}"))
        })
        .collect()
}

fn typed(side: Side, datatype: DataType, contents: InferTensorContents) -> Result<TensorData, String> {
    let wanted = typed_field(datatype);
    if let Some((field, _)) =
        fields(&contents).into_iter().find(|&(field, len)| len > 0 && Some(field) != wanted)
    {
        return Err(match wanted {
            Some(wanted) => {
                format!("datatype {datatype} takes its elements in `contents.{wanted}`, not `{field}`")
            }
            None => format!(
                "datatype {datatype} has no typed contents field (found `{field}`): send its elements in {}",
                side.raw_field()
            ),
        });
    }
    let InferTensorContents {
        bool_contents,
        int_contents,
        int64_contents,
        uint_contents,
        uint64_contents,
        fp32_contents,
        fp64_contents,
        bytes_contents,
    } = contents;
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(bool_contents),
        DataType::Uint8 => TensorData::Uint8(narrow(uint_contents, datatype)?),
        DataType::Uint16 => TensorData::Uint16(narrow(uint_contents, datatype)?),
        DataType::Uint32 => TensorData::Uint32(uint_contents),
        DataType::Uint64 => TensorData::Uint64(uint64_contents),
        DataType::Int8 => TensorData::Int8(narrow(int_contents, datatype)?),
        DataType::Int16 => TensorData::Int16(narrow(int_contents, datatype)?),
        DataType::Int32 => TensorData::Int32(int_contents),
        DataType::Int64 => TensorData::Int64(int64_contents),
        DataType::Fp32 => TensorData::Fp32(fp32_contents),
        DataType::Fp64 => TensorData::Fp64(fp64_contents),
        DataType::Bytes => TensorData::Bytes(bytes_contents),
        // Only zero-element FP16/BF16 tensors get here (any element would be in a wrong field),
        // and only raw entries can carry them: say so rather than build an empty tensor.
        DataType::Fp16 | DataType::Bf16 => {
            return Err(format!(
                "datatype {datatype} has no typed contents field: send its elements in {}",
                side.raw_field()
            ));
        }
    })
}

/// Typed contents of tensor data; `None` for FP16 and BF16, which have no typed field.
pub(super) fn encode_typed(data: &TensorData) -> Option<InferTensorContents> {
    let mut c = InferTensorContents::default();
    match data {
        TensorData::Bool(v) => c.bool_contents = v.clone(),
        TensorData::Uint8(v) => c.uint_contents = v.iter().map(|&x| u32::from(x)).collect(),
        TensorData::Uint16(v) => c.uint_contents = v.iter().map(|&x| u32::from(x)).collect(),
        TensorData::Uint32(v) => c.uint_contents = v.clone(),
        TensorData::Uint64(v) => c.uint64_contents = v.clone(),
        TensorData::Int8(v) => c.int_contents = v.iter().map(|&x| i32::from(x)).collect(),
        TensorData::Int16(v) => c.int_contents = v.iter().map(|&x| i32::from(x)).collect(),
        TensorData::Int32(v) => c.int_contents = v.clone(),
        TensorData::Int64(v) => c.int64_contents = v.clone(),
        TensorData::Fp32(v) => c.fp32_contents = v.clone(),
        TensorData::Fp64(v) => c.fp64_contents = v.clone(),
        TensorData::Bytes(v) => c.bytes_contents = v.clone(),
        TensorData::Fp16(_) | TensorData::Bf16(_) => return None,
    }
    Some(c)
}

/// The raw entry of tensor data: little-endian elements, BYTES length-prefixed.
pub(super) fn encode_raw(data: &TensorData) -> Vec<u8> {
    let size = match data {
        TensorData::Bytes(v) => v.iter().map(|x| x.len() + 4).sum(),
        other => other.len() * other.datatype().element_size().unwrap_or(0),
    };
    let mut out = Vec::with_capacity(size);
    data::encode_binary(data, &mut out);
    out
}

/// The shape in wire form.
pub(super) fn wire_shape(shape: &[usize]) -> Vec<i64> {
    // Real tensors hold fewer than i64::MAX elements per dimension; only zero-element shapes
    // could exceed it, and those are clamped.
    shape.iter().map(|&d| i64::try_from(d).unwrap_or(i64::MAX)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(datatype: DataType) -> TensorData {
        data::decode_json(datatype, if datatype == DataType::Bool { "[true, false]" } else { "[1, 2]" })
            .or_else(|_| data::decode_json(datatype, r#"["a", "bc"]"#))
            .unwrap()
    }

    #[test]
    fn typed_field_names_the_field_encode_typed_fills() {
        for datatype in DataType::ALL {
            let data = sample(datatype);
            let contents = encode_typed(&data);
            assert_eq!(contents.as_ref().and_then(first_field), typed_field(datatype), "{datatype}");
            if let Some(contents) = contents {
                assert_eq!(typed(Side::Input, datatype, contents).unwrap(), data);
            }
        }
    }

    #[test]
    fn raw_entries_are_sized_exactly() {
        for datatype in DataType::ALL {
            let data = sample(datatype);
            let raw = encode_raw(&data);
            assert_eq!(raw.capacity(), raw.len(), "{datatype}");
        }
    }

    #[test]
    fn narrowing_names_the_element() {
        assert_eq!(narrow::<i32, i8>(vec![1, -128, 127], DataType::Int8).unwrap(), vec![1, -128, 127]);
        let err = narrow::<u32, u16>(vec![1, 2, 65_536], DataType::Uint16).unwrap_err();
        assert_eq!(err, "contents element 2: 65536 is out of range for UINT16");
    }

    #[test]
    fn errors_clip_long_names_and_name_the_raw_field() {
        let err = Side::Output.error(&"x".repeat(100), "bad");
        assert_eq!(err.message(), format!("output `{}`: bad", "x".repeat(64)));
        assert_eq!(Side::Output.raw_field(), "raw_output_contents");
    }
}
