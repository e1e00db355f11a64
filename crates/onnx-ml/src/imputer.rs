//! `Imputer`.

use crate::OnnxMlError;

/// An `Imputer` (ai.onnx.ml opset 1): replaces a missing value (`replaced_value_*`, NaN
/// matching NaN) by a per-column imputed value.
///
/// As in onnxruntime: `float` inputs use `imputed_value_floats`, `int64` inputs
/// `imputed_value_int64s`; the output has the input's type and shape; the imputed value
/// of column `c` is `imputed[c]` when there is one value per column (the last axis of
/// an `[N, C]` input), otherwise `imputed[0]` for every column.
#[derive(Debug, Clone, PartialEq)]
pub enum Imputer {
    /// `imputed_value_floats` and `replaced_value_float`.
    Float {
        /// Values to impute.
        imputed: Vec<f32>,
        /// The value that marks a missing entry (NaN matches NaN).
        replaced: f32,
    },
    /// `imputed_value_int64s` and `replaced_value_int64`.
    Int64 {
        /// Values to impute.
        imputed: Vec<i64>,
        /// The value that marks a missing entry.
        replaced: i64,
    },
}

impl Imputer {
    /// Validates the attributes: exactly one of the imputed lists is non-empty.
    pub fn new(
        imputed_floats: Vec<f32>,
        replaced_float: f32,
        imputed_int64s: Vec<i64>,
        replaced_int64: i64,
    ) -> Result<Self, OnnxMlError> {
        match (imputed_floats.is_empty(), imputed_int64s.is_empty()) {
            (false, true) => Ok(Imputer::Float { imputed: imputed_floats, replaced: replaced_float }),
            (true, false) => Ok(Imputer::Int64 { imputed: imputed_int64s, replaced: replaced_int64 }),
            _ => Err(OnnxMlError::InvalidAttribute {
                attribute: "imputed_value_floats",
                reason: "exactly one of `imputed_value_floats` and `imputed_value_int64s` must be set".into(),
            }),
        }
    }

    /// Imputes `float` values in place; rows have `columns` values.
    pub fn impute_f32(&self, values: &mut [f32], columns: usize) -> Result<(), OnnxMlError> {
        let Imputer::Float { imputed, replaced } = self else {
            return Err(OnnxMlError::InvalidInput("this Imputer imputes int64 values, not float".into()));
        };
        let missing = |x: f32| if replaced.is_nan() { x.is_nan() } else { x == *replaced };
        impute(values, columns, imputed, missing);
        Ok(())
    }

    /// Imputes `int64` values in place; rows have `columns` values.
    pub fn impute_i64(&self, values: &mut [i64], columns: usize) -> Result<(), OnnxMlError> {
        let Imputer::Int64 { imputed, replaced } = self else {
            return Err(OnnxMlError::InvalidInput("this Imputer imputes float values, not int64".into()));
        };
        impute(values, columns, imputed, |x| x == *replaced);
        Ok(())
    }

    /// Whether the missing marker is NaN (so NaN inputs are expected).
    pub fn replaces_nan(&self) -> bool {
        matches!(self, Imputer::Float { replaced, .. } if replaced.is_nan())
    }
}

fn impute<T: Copy>(values: &mut [T], columns: usize, imputed: &[T], missing: impl Fn(T) -> bool) {
    if imputed.len() == columns && columns > 0 {
        for row in values.chunks_mut(columns) {
            for (v, &fill) in row.iter_mut().zip(imputed) {
                if missing(*v) {
                    *v = fill;
                }
            }
        }
    } else if let Some(&fill) = imputed.first() {
        for v in values.iter_mut().filter(|v| missing(**v)) {
            *v = fill;
        }
    }
}
