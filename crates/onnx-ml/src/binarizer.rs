//! `Binarizer`.

use crate::OnnxMlError;

/// A `Binarizer` (ai.onnx.ml opset 1): `1` where `x > threshold`, else `0`, in the
/// input's type.
///
/// As in onnxruntime: a NaN input fails the run (the error names its index), and the
/// threshold defaults to 1.0 when the attribute is absent (onnxruntime's default; the
/// ONNX specification says 0.0), which the caller passes in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Binarizer {
    threshold: f32,
}

/// Element types `Binarizer` reads: `f32`, `f64`, `i64`, `i32`.
pub trait BinarizerInput: Copy {
    /// 1 or 0 in this type, after onnxruntime's comparison `x > threshold`.
    fn binarize(self, threshold: f32) -> Option<Self>;
}

impl BinarizerInput for f32 {
    fn binarize(self, threshold: f32) -> Option<Self> {
        (!self.is_nan()).then_some(if self > threshold { 1.0 } else { 0.0 })
    }
}

impl BinarizerInput for f64 {
    fn binarize(self, threshold: f32) -> Option<Self> {
        (!(self as f32).is_nan()).then_some(if self > f64::from(threshold) { 1.0 } else { 0.0 })
    }
}

impl BinarizerInput for i64 {
    fn binarize(self, threshold: f32) -> Option<Self> {
        Some(if (self as f32) > threshold { 1 } else { 0 })
    }
}

impl BinarizerInput for i32 {
    fn binarize(self, threshold: f32) -> Option<Self> {
        Some(if (self as f32) > threshold { 1 } else { 0 })
    }
}

impl Binarizer {
    /// A binarizer with `threshold`.
    pub fn new(threshold: f32) -> Self {
        Binarizer { threshold }
    }

    /// Binarizes `values` in place.
    pub fn binarize_in_place<T: BinarizerInput>(&self, values: &mut [T]) -> Result<(), OnnxMlError> {
        for (i, v) in values.iter_mut().enumerate() {
            *v = v
                .binarize(self.threshold)
                .ok_or_else(|| OnnxMlError::InvalidInput(format!("Binarizer: input value {i} is NaN")))?;
        }
        Ok(())
    }
}
