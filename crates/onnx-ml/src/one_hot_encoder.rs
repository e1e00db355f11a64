//! `OneHotEncoder`.

use std::collections::HashMap;

use crate::OnnxMlError;

/// A `OneHotEncoder` (ai.onnx.ml opset 1): each input value becomes a row of `C` floats,
/// 1 at its category's position; the output shape is the input's with `C` appended.
///
/// As in onnxruntime: categories are `cats_int64s` or `cats_strings`; numeric inputs are
/// truncated to `int64` before lookup (NaN and values outside `int64` match nothing); a
/// category listed twice takes its last position; an unknown value gives a row of zeros
/// when `zeros` is 1 (the default) and fails the run when it is 0, with
/// [`OnnxMlError::UnknownCategory`] naming the first unknown value's position.
#[derive(Debug, Clone, PartialEq)]
pub struct OneHotEncoder {
    ints: HashMap<i64, usize>,
    strings: HashMap<String, usize>,
    categories: usize,
    zeros: bool,
}

impl OneHotEncoder {
    /// Validates the attributes: exactly one of the category lists, not empty.
    pub fn new(cats_int64s: Vec<i64>, cats_strings: Vec<String>, zeros: bool) -> Result<Self, OnnxMlError> {
        let categories = match (cats_int64s.len(), cats_strings.len()) {
            (0, 0) | (1.., 1..) => {
                return Err(OnnxMlError::InvalidAttribute {
                    attribute: "cats_int64s",
                    reason: "exactly one of `cats_int64s` and `cats_strings` must be set".into(),
                });
            }
            (n, 0) | (0, n) => n,
        };
        let ints = cats_int64s.into_iter().enumerate().map(|(i, c)| (c, i)).collect();
        let strings = cats_strings.into_iter().enumerate().map(|(i, c)| (c, i)).collect();
        Ok(OneHotEncoder { ints, strings, categories, zeros })
    }

    /// Number of categories: the length of the appended axis.
    pub fn categories(&self) -> usize {
        self.categories
    }

    /// Encodes integers (`int64`, `int32`, and `float`/`double` through
    /// [`OneHotEncoder::encode_floats`]) into `output` (`input.len() * categories`).
    pub fn encode_ints(
        &self,
        input: impl ExactSizeIterator<Item = Option<i64>>,
        output: &mut [f32],
    ) -> Result<(), OnnxMlError> {
        let n = input.len();
        crate::check_output("Y", output.len(), crate::alloc::product(n, self.categories)?)?;
        output.fill(0.0);
        for (index, (value, row)) in input.zip(output.chunks_mut(self.categories.max(1))).enumerate() {
            match value.and_then(|v| self.ints.get(&v)) {
                Some(&ix) => row[ix] = 1.0,
                None => self.unknown(index)?,
            }
        }
        Ok(())
    }

    /// Encodes `float`/`double` values, truncated toward zero as C++'s `static_cast`.
    pub fn encode_floats(
        &self,
        input: impl ExactSizeIterator<Item = f64>,
        output: &mut [f32],
    ) -> Result<(), OnnxMlError> {
        let truncate = |x: f64| (x.is_finite() && x.abs() < 9.2e18).then_some(x as i64);
        self.encode_ints(input.map(truncate), output)
    }

    /// Encodes strings into `output` (`input.len() * categories`).
    pub fn encode_strings<S: AsRef<str>>(&self, input: &[S], output: &mut [f32]) -> Result<(), OnnxMlError> {
        crate::check_output("Y", output.len(), crate::alloc::product(input.len(), self.categories)?)?;
        output.fill(0.0);
        for (index, (value, row)) in input.iter().zip(output.chunks_mut(self.categories.max(1))).enumerate() {
            match self.strings.get(value.as_ref()) {
                Some(&ix) => row[ix] = 1.0,
                None => self.unknown(index)?,
            }
        }
        Ok(())
    }

    fn unknown(&self, index: usize) -> Result<(), OnnxMlError> {
        if self.zeros {
            Ok(())
        } else {
            Err(OnnxMlError::UnknownCategory { index, categories: self.categories })
        }
    }
}
