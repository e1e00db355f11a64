//! `Scaler`.

use crate::OnnxMlError;

/// A `Scaler` (ai.onnx.ml opset 1): `y = (x - offset) * scale`, per column, into `f32`.
///
/// As in onnxruntime: `offset` and `scale` have one entry per column (the last axis of
/// an `[N, C]` input, the only axis of a `[C]` one) or a single entry for all columns;
/// the arithmetic is that of C++ on the input type (a `double` input subtracts and
/// multiplies in `f64` and rounds once to `f32`; integer inputs are converted to `f32`
/// first).
#[derive(Debug, Clone, PartialEq)]
pub struct Scaler {
    offset: Vec<f32>,
    scale: Vec<f32>,
}

/// Element types `Scaler` reads: `f32`, `f64`, `i64`, `i32`.
pub trait ScalerInput: Copy {
    /// `(x - offset) * scale` in onnxruntime's arithmetic for this type.
    fn scaled(self, offset: f32, scale: f32) -> f32;
}

impl ScalerInput for f32 {
    fn scaled(self, offset: f32, scale: f32) -> f32 {
        (self - offset) * scale
    }
}

impl ScalerInput for f64 {
    fn scaled(self, offset: f32, scale: f32) -> f32 {
        ((self - f64::from(offset)) * f64::from(scale)) as f32
    }
}

impl ScalerInput for i64 {
    fn scaled(self, offset: f32, scale: f32) -> f32 {
        (self as f32 - offset) * scale
    }
}

impl ScalerInput for i32 {
    fn scaled(self, offset: f32, scale: f32) -> f32 {
        (self as f32 - offset) * scale
    }
}

impl Scaler {
    /// Validates `offset` and `scale`: not empty, the same length (onnxruntime refuses
    /// the model otherwise).
    pub fn new(offset: Vec<f32>, scale: Vec<f32>) -> Result<Self, OnnxMlError> {
        if scale.is_empty() {
            return Err(OnnxMlError::InvalidAttribute { attribute: "scale", reason: "it is empty".into() });
        }
        if offset.len() != scale.len() {
            return Err(OnnxMlError::LengthMismatch {
                attribute: "offset",
                actual: offset.len(),
                reference: "scale",
                expected: scale.len(),
            });
        }
        Ok(Scaler { offset, scale })
    }

    /// Scales `input`, whose rows have `columns` values, into `output` (same length).
    pub fn transform<T: ScalerInput>(
        &self,
        input: &[T],
        columns: usize,
        output: &mut [f32],
    ) -> Result<(), OnnxMlError> {
        crate::check_output("Y", output.len(), input.len())?;
        if self.scale.len() == columns && columns > 0 {
            for (row_in, row_out) in input.chunks(columns).zip(output.chunks_mut(columns)) {
                for (((o, &x), &off), &sc) in
                    row_out.iter_mut().zip(row_in).zip(&self.offset).zip(&self.scale)
                {
                    *o = x.scaled(off, sc);
                }
            }
        } else if self.scale.len() == 1 {
            let (off, sc) = (self.offset[0], self.scale[0]);
            for (o, &x) in output.iter_mut().zip(input) {
                *o = x.scaled(off, sc);
            }
        } else {
            return Err(OnnxMlError::InvalidInput(format!(
                "the input has {columns} columns but `scale` and `offset` have {} entries (one per column, or one)",
                self.scale.len()
            )));
        }
        Ok(())
    }
}
