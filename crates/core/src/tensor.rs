use std::fmt;

use half::{bf16, f16};
use serde::{Deserialize, Serialize};

use crate::CoreError;

/// A tensor element type, named as in the Open Inference Protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataType {
    /// `BOOL`
    Bool,
    /// `UINT8`
    Uint8,
    /// `UINT16`
    Uint16,
    /// `UINT32`
    Uint32,
    /// `UINT64`
    Uint64,
    /// `INT8`
    Int8,
    /// `INT16`
    Int16,
    /// `INT32`
    Int32,
    /// `INT64`
    Int64,
    /// `FP16`
    Fp16,
    /// `FP32`
    Fp32,
    /// `FP64`
    Fp64,
    /// `BF16`
    Bf16,
    /// `BYTES`: each element is a byte string (UTF-8 text in JSON).
    Bytes,
}

impl DataType {
    /// Every datatype, in protocol order.
    pub const ALL: [DataType; 14] = [
        DataType::Bool,
        DataType::Uint8,
        DataType::Uint16,
        DataType::Uint32,
        DataType::Uint64,
        DataType::Int8,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::Fp16,
        DataType::Fp32,
        DataType::Fp64,
        DataType::Bf16,
        DataType::Bytes,
    ];

    /// The protocol name, such as `FP32`.
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::Uint8 => "UINT8",
            DataType::Uint16 => "UINT16",
            DataType::Uint32 => "UINT32",
            DataType::Uint64 => "UINT64",
            DataType::Int8 => "INT8",
            DataType::Int16 => "INT16",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::Fp16 => "FP16",
            DataType::Fp32 => "FP32",
            DataType::Fp64 => "FP64",
            DataType::Bf16 => "BF16",
            DataType::Bytes => "BYTES",
        }
    }

    /// Parses a protocol name (exact, upper case).
    pub fn parse(name: &str) -> Result<Self, CoreError> {
        DataType::ALL
            .into_iter()
            .find(|dt| dt.as_str() == name)
            .ok_or_else(|| CoreError::UnknownDataType(name.chars().take(32).collect()))
    }

    /// Size of one element in bytes, or `None` for `BYTES`.
    pub fn element_size(self) -> Option<usize> {
        Some(match self {
            DataType::Bool | DataType::Uint8 | DataType::Int8 => 1,
            DataType::Uint16 | DataType::Int16 | DataType::Fp16 | DataType::Bf16 => 2,
            DataType::Uint32 | DataType::Int32 | DataType::Fp32 => 4,
            DataType::Uint64 | DataType::Int64 | DataType::Fp64 => 8,
            DataType::Bytes => return None,
        })
    }

    /// Whether elements are floating point (and so may be NaN or infinite).
    pub fn is_float(self) -> bool {
        matches!(self, DataType::Fp16 | DataType::Fp32 | DataType::Fp64 | DataType::Bf16)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DataType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DataType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(d)?;
        DataType::parse(&name).map_err(serde::de::Error::custom)
    }
}

/// One dimension of a tensor spec: a fixed size, or `-1` for any size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    /// Exactly this many elements.
    Fixed(u64),
    /// Any number of elements (written `-1`).
    Dynamic,
}

impl Dim {
    /// Whether a concrete size fits this dimension.
    pub fn accepts(self, size: usize) -> bool {
        match self {
            Dim::Fixed(n) => n == size as u64,
            Dim::Dynamic => true,
        }
    }

    /// The protocol form: the size, or `-1`.
    pub fn as_i64(self) -> i64 {
        match self {
            Dim::Fixed(n) => i64::try_from(n).unwrap_or(i64::MAX),
            Dim::Dynamic => -1,
        }
    }
}

impl Serialize for Dim {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.as_i64())
    }
}

impl<'de> Deserialize<'de> for Dim {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match i64::deserialize(d)? {
            -1 => Ok(Dim::Dynamic),
            n if n >= 0 => Ok(Dim::Fixed(n as u64)),
            n => Err(serde::de::Error::custom(format!(
                "dimension {n} is invalid: use a size >= 0, or -1 for any size"
            ))),
        }
    }
}

/// The declared name, datatype and shape of a model input or output.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    /// Tensor name, as in the model graph.
    pub name: String,
    /// Element type.
    pub datatype: DataType,
    /// Shape; `-1` marks a dimension of any size.
    pub shape: Vec<Dim>,
    /// Whether NaN and infinite values are accepted in this input (default: refused with 400).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_nan: bool,
    /// Class labels for a probability output, in column order, when the model declares them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
}

impl TensorSpec {
    /// Whether a concrete shape fits this spec.
    pub fn accepts_shape(&self, shape: &[usize]) -> bool {
        shape.len() == self.shape.len() && self.shape.iter().zip(shape).all(|(dim, &n)| dim.accepts(n))
    }

    /// The shape in protocol form (`-1` for dynamic dimensions).
    pub fn shape_i64(&self) -> Vec<i64> {
        self.shape.iter().map(|d| d.as_i64()).collect()
    }
}

/// A model's inputs and outputs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSignature {
    /// Inputs, in graph order.
    pub inputs: Vec<TensorSpec>,
    /// Outputs, in graph order.
    pub outputs: Vec<TensorSpec>,
}

impl ModelSignature {
    /// The input with this name.
    pub fn input(&self, name: &str) -> Option<&TensorSpec> {
        self.inputs.iter().find(|spec| spec.name == name)
    }

    /// The output with this name.
    pub fn output(&self, name: &str) -> Option<&TensorSpec> {
        self.outputs.iter().find(|spec| spec.name == name)
    }
}

/// The elements of a tensor, row-major, typed.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum TensorData {
    Bool(Vec<bool>),
    Uint8(Vec<u8>),
    Uint16(Vec<u16>),
    Uint32(Vec<u32>),
    Uint64(Vec<u64>),
    Int8(Vec<i8>),
    Int16(Vec<i16>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Fp16(Vec<f16>),
    Fp32(Vec<f32>),
    Fp64(Vec<f64>),
    Bf16(Vec<bf16>),
    Bytes(Vec<Vec<u8>>),
}

/// Applies `$body` to the vector inside any [`TensorData`] variant.
#[macro_export]
#[doc(hidden)]
macro_rules! dispatch_tensor_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            $crate::TensorData::Bool($v) => $body,
            $crate::TensorData::Uint8($v) => $body,
            $crate::TensorData::Uint16($v) => $body,
            $crate::TensorData::Uint32($v) => $body,
            $crate::TensorData::Uint64($v) => $body,
            $crate::TensorData::Int8($v) => $body,
            $crate::TensorData::Int16($v) => $body,
            $crate::TensorData::Int32($v) => $body,
            $crate::TensorData::Int64($v) => $body,
            $crate::TensorData::Fp16($v) => $body,
            $crate::TensorData::Fp32($v) => $body,
            $crate::TensorData::Fp64($v) => $body,
            $crate::TensorData::Bf16($v) => $body,
            $crate::TensorData::Bytes($v) => $body,
        }
    };
}

impl TensorData {
    /// The element type.
    pub fn datatype(&self) -> DataType {
        match self {
            TensorData::Bool(_) => DataType::Bool,
            TensorData::Uint8(_) => DataType::Uint8,
            TensorData::Uint16(_) => DataType::Uint16,
            TensorData::Uint32(_) => DataType::Uint32,
            TensorData::Uint64(_) => DataType::Uint64,
            TensorData::Int8(_) => DataType::Int8,
            TensorData::Int16(_) => DataType::Int16,
            TensorData::Int32(_) => DataType::Int32,
            TensorData::Int64(_) => DataType::Int64,
            TensorData::Fp16(_) => DataType::Fp16,
            TensorData::Fp32(_) => DataType::Fp32,
            TensorData::Fp64(_) => DataType::Fp64,
            TensorData::Bf16(_) => DataType::Bf16,
            TensorData::Bytes(_) => DataType::Bytes,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        dispatch_tensor_data!(self, v => v.len())
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Index of the first NaN or infinite element, if any (always `None` for non-float types).
    pub fn first_non_finite(&self) -> Option<usize> {
        match self {
            TensorData::Fp16(v) => v.iter().position(|x| !x.is_finite()),
            TensorData::Fp32(v) => v.iter().position(|x| !x.is_finite()),
            TensorData::Fp64(v) => v.iter().position(|x| !x.is_finite()),
            TensorData::Bf16(v) => v.iter().position(|x| !x.is_finite()),
            _ => None,
        }
    }
}

/// A named, shaped, typed tensor. The shape always matches the number of elements.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    name: String,
    shape: Vec<usize>,
    data: TensorData,
}

/// Number of elements a shape holds, or `None` on overflow.
pub(crate) fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

impl Tensor {
    /// Builds a tensor, checking that the shape matches the data.
    pub fn new(name: impl Into<String>, shape: Vec<usize>, data: TensorData) -> Result<Self, CoreError> {
        let name = name.into();
        let Some(expected) = element_count(&shape) else {
            return Err(CoreError::ShapeOverflow { name, shape });
        };
        if expected != data.len() {
            return Err(CoreError::ShapeMismatch { name, shape, expected, actual: data.len() });
        }
        Ok(Tensor { name, shape, data })
    }

    /// The tensor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renames the tensor.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The element type.
    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }

    /// The elements.
    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// Takes the elements out, with the shape.
    pub fn into_parts(self) -> (String, Vec<usize>, TensorData) {
        (self.name, self.shape, self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datatype_names_round_trip() {
        for dt in DataType::ALL {
            assert_eq!(DataType::parse(dt.as_str()).unwrap(), dt);
        }
        assert!(DataType::parse("fp32").is_err());
        assert!(DataType::parse("FLOAT").is_err());
    }

    #[test]
    fn shape_must_match() {
        assert!(Tensor::new("x", vec![2, 2], TensorData::Fp32(vec![1.0; 4])).is_ok());
        let err = Tensor::new("x", vec![2, 3], TensorData::Fp32(vec![1.0; 4])).unwrap_err();
        assert!(matches!(err, CoreError::ShapeMismatch { expected: 6, actual: 4, .. }));
        let err = Tensor::new("x", vec![usize::MAX, 2], TensorData::Fp32(vec![])).unwrap_err();
        assert!(matches!(err, CoreError::ShapeOverflow { .. }));
        assert!(Tensor::new("x", vec![0, 4], TensorData::Fp32(vec![])).is_ok());
    }

    #[test]
    fn dims() {
        let spec: TensorSpec =
            serde_json::from_str(r#"{"name":"X","datatype":"FP32","shape":[-1,4]}"#).unwrap();
        assert!(spec.accepts_shape(&[7, 4]));
        assert!(!spec.accepts_shape(&[7, 3]));
        assert!(!spec.accepts_shape(&[4]));
        assert!(serde_json::from_str::<Dim>("-2").is_err());
    }

    #[test]
    fn non_finite_detection() {
        assert_eq!(TensorData::Fp32(vec![1.0, f32::NAN]).first_non_finite(), Some(1));
        assert_eq!(TensorData::Fp64(vec![f64::INFINITY]).first_non_finite(), Some(0));
        assert_eq!(TensorData::Int32(vec![1]).first_non_finite(), None);
    }
}
