//! `FeatureVectorizer`.

use crate::OnnxMlError;

/// A `FeatureVectorizer` (ai.onnx.ml opset 1): concatenates its inputs' columns into one
/// `f32` row per example.
///
/// As in onnxruntime: input `i` contributes `inputdimensions[i]` columns; a narrower input
/// is padded with zeros, a wider one is cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureVectorizer {
    widths: Vec<usize>,
    total: usize,
}

impl FeatureVectorizer {
    /// Validates `inputdimensions` (non-negative, with a total that fits in memory).
    pub fn new(input_dimensions: &[i64]) -> Result<Self, OnnxMlError> {
        let mut widths = Vec::with_capacity(input_dimensions.len());
        let mut total = 0usize;
        for (index, &d) in input_dimensions.iter().enumerate() {
            let width = usize::try_from(d).map_err(|_| OnnxMlError::InvalidEntry {
                attribute: "inputdimensions",
                index,
                value: d,
                reason: "must be non-negative",
            })?;
            total = total
                .checked_add(width)
                .filter(|t| *t <= crate::MAX_ELEMENTS)
                .ok_or(OnnxMlError::TooLarge { elements: usize::MAX })?;
            widths.push(width);
        }
        Ok(FeatureVectorizer { widths, total })
    }

    /// Columns of the output.
    pub fn width(&self) -> usize {
        self.total
    }

    /// Columns taken from input `i`.
    pub fn input_width(&self, i: usize) -> Option<usize> {
        self.widths.get(i).copied()
    }

    /// Writes input `i` (rows of `columns` values, as f32) into its columns of `output`
    /// (`rows * width()` values, zero-filled by the caller).
    pub fn place(
        &self,
        i: usize,
        input: &[f32],
        columns: usize,
        output: &mut [f32],
    ) -> Result<(), OnnxMlError> {
        let Some(&width) = self.widths.get(i) else {
            return Err(OnnxMlError::InvalidInput(format!("FeatureVectorizer has no input {i}")));
        };
        let offset: usize = self.widths[..i].iter().sum();
        let rows = input.len().checked_div(columns).unwrap_or(0);
        crate::check_output("Y", output.len(), crate::alloc::product(rows, self.total)?)?;
        let copied = width.min(columns);
        for (row_in, row_out) in input.chunks(columns.max(1)).zip(output.chunks_mut(self.total.max(1))) {
            row_out[offset..offset + copied].copy_from_slice(&row_in[..copied]);
        }
        Ok(())
    }
}
