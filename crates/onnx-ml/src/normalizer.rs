//! `Normalizer`.

use crate::{Norm, OnnxMlError};

/// A `Normalizer` (ai.onnx.ml opset 1): scales each row by its maximum, its L1 norm or
/// its L2 norm, into f32.
///
/// It reproduces onnxruntime's kernel, including its quirks: `MAX` divides by the row
/// maximum even when it is negative (and NaN never counts as the maximum); a row whose
/// maximum or norm is 0 is copied unchanged; L2 computes `sqrt(x² / sum)` with the sign
/// of `x`, the squares taken in the input type (so `double` and integer inputs square
/// before rounding to f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Normalizer {
    norm: Norm,
}

/// Element types `Normalizer` reads: `f32`, `f64`, `i64` and `i32`, the types ONNX allows.
///
/// The operations are those of onnxruntime's kernel in the input type; integer overflow
/// wraps, where onnxruntime's behavior is undefined.
pub trait NormalizerInput: Copy + sealed::Sealed {
    /// The value as f32.
    fn to_f32(self) -> f32;
    /// `|x|` in the input type, as f32.
    fn abs_to_f32(self) -> f32;
    /// `x * x` in the input type, as f32.
    fn square_to_f32(self) -> f32;
    /// `x < 0` in the input type.
    fn is_negative(self) -> bool;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for i64 {}
    impl Sealed for i32 {}
}

impl NormalizerInput for f32 {
    fn to_f32(self) -> f32 {
        self
    }
    fn abs_to_f32(self) -> f32 {
        self.abs()
    }
    fn square_to_f32(self) -> f32 {
        self * self
    }
    fn is_negative(self) -> bool {
        self < 0.0
    }
}

impl NormalizerInput for f64 {
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn abs_to_f32(self) -> f32 {
        self.abs() as f32
    }
    fn square_to_f32(self) -> f32 {
        (self * self) as f32
    }
    fn is_negative(self) -> bool {
        self < 0.0
    }
}

impl NormalizerInput for i64 {
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn abs_to_f32(self) -> f32 {
        self.wrapping_abs() as f32
    }
    fn square_to_f32(self) -> f32 {
        self.wrapping_mul(self) as f32
    }
    fn is_negative(self) -> bool {
        self < 0
    }
}

impl NormalizerInput for i32 {
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn abs_to_f32(self) -> f32 {
        self.wrapping_abs() as f32
    }
    fn square_to_f32(self) -> f32 {
        self.wrapping_mul(self) as f32
    }
    fn is_negative(self) -> bool {
        self < 0
    }
}

impl Normalizer {
    /// A normalizer for `norm`.
    pub fn new(norm: Norm) -> Self {
        Normalizer { norm }
    }

    /// The norm rows are scaled by.
    pub fn norm(&self) -> Norm {
        self.norm
    }

    /// Normalizes `n_rows` rows of `n_columns` row-major values into `output` (same
    /// length, f32).
    pub fn normalize_into<T: NormalizerInput>(
        &self,
        input: &[T],
        n_rows: usize,
        n_columns: usize,
        output: &mut [f32],
    ) -> Result<(), OnnxMlError> {
        crate::check_input_len(input.len(), n_rows, n_columns)?;
        crate::check_output("normalized", output.len(), input.len())?;
        if n_columns == 0 {
            return Ok(());
        }
        for (row, out) in input.chunks_exact(n_columns).zip(output.chunks_exact_mut(n_columns)) {
            let divisor = match self.norm {
                Norm::Max => max(row.iter().map(|v| v.to_f32())),
                Norm::L1 => row.iter().fold(0.0f32, |sum, v| sum + v.abs_to_f32()),
                Norm::L2 => row.iter().fold(0.0f32, |sum, v| sum + v.square_to_f32()),
            };
            for (o, &v) in out.iter_mut().zip(row) {
                *o = if divisor == 0.0 {
                    v.to_f32()
                } else if self.norm == Norm::L2 {
                    let scaled = (v.square_to_f32() / divisor).sqrt();
                    if v.is_negative() { -scaled } else { scaled }
                } else {
                    v.to_f32() / divisor
                };
            }
        }
        Ok(())
    }

    /// Normalizes `n_rows` rows of `n_columns` row-major f32 values in place.
    pub fn normalize_in_place(
        &self,
        values: &mut [f32],
        n_rows: usize,
        n_columns: usize,
    ) -> Result<(), OnnxMlError> {
        crate::check_input_len(values.len(), n_rows, n_columns)?;
        if n_columns == 0 {
            return Ok(());
        }
        for row in values.chunks_exact_mut(n_columns) {
            let divisor = match self.norm {
                Norm::Max => max(row.iter().copied()),
                Norm::L1 => row.iter().fold(0.0f32, |sum, v| sum + v.abs()),
                Norm::L2 => row.iter().fold(0.0f32, |sum, v| sum + v * v),
            };
            if divisor == 0.0 {
                continue;
            }
            for v in row.iter_mut() {
                *v = if self.norm == Norm::L2 {
                    let scaled = (*v * *v / divisor).sqrt();
                    if *v < 0.0 { -scaled } else { scaled }
                } else {
                    *v / divisor
                };
            }
        }
        Ok(())
    }
}

/// `std::max` folded from `f32::MIN`: NaN never replaces the running maximum.
#[inline]
fn max(values: impl Iterator<Item = f32>) -> f32 {
    values.fold(f32::MIN, |max, v| if max < v { v } else { max })
}
