//! What a request's outputs will take in memory, worked out before the model runs.
//!
//! A model's output shapes are expressions of its input dimensions: `[batch, 3]`,
//! `[batch, sequence, 768]`, `[batch * 4, n]`. [`OutputSize`] keeps those expressions (from
//! tract's typed facts, or from the `dim_param` names of the ONNX file for onnxruntime)
//! and, for a request, binds each input dimension's symbol to the request's extent and
//! evaluates them. A dimension no input determines (an output whose length depends on the
//! input's values, or an unnamed one) is estimated: on the leading axis as the request's
//! rows, elsewhere as the largest extent of the request's inputs; an estimate, not a bound
//! (see docs/limits.md).
//!
//! The server reserves [`OutputSize::bytes`] from its in-flight memory budget before the
//! model runs; at load time a model whose one-row outputs would exceed [`MAX_ROW_BYTES`]
//! is refused.

use palisade_core::{DataType, Dim, ModelSignature, Tensor};
use tract_onnx::prelude::{Symbol, SymbolScope, SymbolValues, TDim};

/// Most bytes the outputs of one input row may take (1 GiB): a model whose attributes or
/// declared shapes imply more is refused when it loads.
pub const MAX_ROW_BYTES: u64 = 1 << 30;

/// Bytes counted per element of a `BYTES` (string) output: the string's own header and a
/// short text. Strings are an estimate; their lengths are known only after the run.
const STRING_ELEMENT_BYTES: u64 = 32;

/// A model's output shapes as expressions of its input dimensions, and the bytes their
/// elements take.
#[derive(Debug, Clone)]
pub struct OutputSize {
    /// Per input, per axis: the symbol a dynamic axis binds (`None` for fixed axes and
    /// axes that are expressions rather than a plain symbol).
    inputs: Vec<Vec<Option<Symbol>>>,
    /// Per output: bytes per element and the dims.
    outputs: Vec<(u64, Vec<TDim>)>,
}

/// Bytes one element of `datatype` takes in memory.
fn element_bytes(datatype: DataType) -> u64 {
    datatype.element_size().map_or(STRING_ELEMENT_BYTES, |n| n as u64)
}

impl OutputSize {
    /// From symbols: each input's dims (a `TDim::Sym` at an axis is bound by the request's
    /// extent there) and each output's datatype and dims.
    pub(crate) fn new(inputs: &[Vec<TDim>], outputs: Vec<(DataType, Vec<TDim>)>) -> OutputSize {
        let inputs = inputs
            .iter()
            .map(|dims| {
                dims.iter()
                    .map(|d| match d {
                        TDim::Sym(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect()
            })
            .collect();
        let outputs = outputs.into_iter().map(|(dt, dims)| (element_bytes(dt), dims)).collect();
        OutputSize { inputs, outputs }
    }

    /// From a signature alone: the dynamic leading axis of every input and output is one
    /// batch symbol; other dynamic output axes are estimated.
    pub fn from_signature(signature: &ModelSignature) -> OutputSize {
        let scope = SymbolScope::default();
        let batch = scope.sym("batch");
        let mut unknown = 0usize;
        let mut dims = |shape: &[Dim]| -> Vec<TDim> {
            shape
                .iter()
                .enumerate()
                .map(|(axis, d)| match d {
                    Dim::Fixed(n) => TDim::Val(i64::try_from(*n).unwrap_or(i64::MAX)),
                    Dim::Dynamic if axis == 0 => TDim::Sym(batch.clone()),
                    Dim::Dynamic => {
                        unknown += 1;
                        TDim::Sym(scope.sym(&format!("unknown_{unknown}")))
                    }
                })
                .collect()
        };
        let inputs: Vec<Vec<TDim>> = signature.inputs.iter().map(|s| dims(&s.shape)).collect();
        let outputs = signature.outputs.iter().map(|s| (s.datatype, dims(&s.shape))).collect();
        OutputSize::new(&inputs, outputs)
    }

    /// The same inputs with the outputs named `want`, taken from outputs named `have` (in
    /// this size's order); `None` when one is missing.
    pub(crate) fn select(&self, have: &[&str], want: &[&str]) -> Option<OutputSize> {
        let outputs = want
            .iter()
            .map(|name| have.iter().position(|h| h == name).and_then(|ix| self.outputs.get(ix)).cloned())
            .collect::<Option<Vec<_>>>()?;
        Some(OutputSize { inputs: self.inputs.clone(), outputs })
    }

    /// The bytes the outputs take for a request with these inputs (in signature order):
    /// each output's dims evaluated with the inputs' extents, a dim no input determines
    /// estimated as the largest input extent. Saturates at `u64::MAX`.
    pub fn bytes(&self, inputs: &[Tensor]) -> u64 {
        let mut values = SymbolValues::default();
        let mut largest = 1u64;
        let rows = inputs.iter().find_map(|t| t.shape().first()).map_or(1, |&n| n as u64);
        for (symbols, tensor) in self.inputs.iter().zip(inputs) {
            for (symbol, &extent) in symbols.iter().zip(tensor.shape()) {
                largest = largest.max(extent as u64);
                if let Some(symbol) = symbol
                    && values.get(symbol).is_none()
                {
                    values.set(symbol, i64::try_from(extent).unwrap_or(i64::MAX));
                }
            }
        }
        self.total(&values, rows, largest)
    }

    /// The bytes the outputs of one row take when every dynamic dimension is 1: exact
    /// for models whose outputs are `[batch, fixed...]`, a lower bound otherwise.
    pub fn bytes_per_row(&self) -> u64 {
        let mut values = SymbolValues::default();
        for symbol in self.inputs.iter().flatten().flatten() {
            values.set(symbol, 1);
        }
        self.total(&values, 1, 1)
    }

    /// A dim no symbol value determines counts `rows` on the leading axis (a batch the
    /// file does not name) and `unknown` elsewhere.
    fn total(&self, values: &SymbolValues, rows: u64, unknown: u64) -> u64 {
        self.outputs.iter().fold(0u64, |sum, (element, dims)| {
            let elements = dims.iter().enumerate().fold(1u64, |n, (axis, d)| {
                n.saturating_mul(evaluate(d, values, if axis == 0 { rows } else { unknown }))
            });
            sum.saturating_add(elements.saturating_mul(*element))
        })
    }
}

/// A dim's value with these symbol values: `unknown` when symbols remain, `u64::MAX` when
/// the arithmetic overflows (tract's `i64` arithmetic panics in debug builds).
fn evaluate(dim: &TDim, values: &SymbolValues, unknown: u64) -> u64 {
    if let TDim::Val(v) = dim {
        return u64::try_from(*v).unwrap_or(0);
    }
    let evaluated = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dim.eval(values)));
    match evaluated {
        Ok(TDim::Val(v)) => u64::try_from(v).unwrap_or(0),
        Ok(_) => unknown,
        Err(_) => u64::MAX,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use palisade_core::{TensorData, TensorSpec};

    use super::*;

    fn spec(name: &str, datatype: DataType, shape: Vec<Dim>) -> TensorSpec {
        TensorSpec { name: name.into(), datatype, shape, allow_nan: false, labels: None }
    }

    fn rows(n: usize, width: usize) -> Tensor {
        Tensor::new("x", vec![n, width], TensorData::Fp32(vec![0.0; n * width])).unwrap()
    }

    #[test]
    fn a_signature_gives_rows_times_bytes_per_row() {
        let signature = ModelSignature {
            inputs: vec![spec("x", DataType::Fp32, vec![Dim::Dynamic, Dim::Fixed(4)])],
            outputs: vec![
                spec("label", DataType::Int64, vec![Dim::Dynamic]),
                spec("p", DataType::Fp32, vec![Dim::Dynamic, Dim::Fixed(3)]),
            ],
        };
        let size = OutputSize::from_signature(&signature);
        assert_eq!(size.bytes_per_row(), 8 + 12);
        assert_eq!(size.bytes(&[rows(7, 4)]), 7 * 20);
    }

    #[test]
    fn symbols_shared_with_inputs_are_bound_and_others_estimated() {
        let scope = SymbolScope::default();
        let (batch, sequence, other) = (scope.sym("batch"), scope.sym("sequence"), scope.sym("n"));
        let inputs = vec![vec![TDim::Sym(batch.clone()), TDim::Sym(sequence.clone())]];
        let hidden = vec![TDim::Sym(batch.clone()), TDim::Sym(sequence.clone()), TDim::Val(32)];
        let doubled = vec![TDim::Sym(batch) * 2, TDim::Sym(other)];
        let size = OutputSize::new(&inputs, vec![(DataType::Fp32, hidden), (DataType::Fp16, doubled)]);
        let ids = Tensor::new("ids", vec![2, 7], TensorData::Int64(vec![0; 14])).unwrap();
        // [2, 7, 32] f32, and [4, estimated 7] f16.
        assert_eq!(size.bytes(&[ids]), 2 * 7 * 32 * 4 + 4 * 7 * 2);
        assert_eq!(size.bytes_per_row(), 32 * 4 + 2 * 2);
    }

    #[test]
    fn huge_shapes_saturate() {
        let signature = ModelSignature {
            inputs: vec![spec("x", DataType::Fp32, vec![Dim::Dynamic, Dim::Fixed(1)])],
            outputs: vec![spec(
                "y",
                DataType::Fp64,
                vec![Dim::Dynamic, Dim::Fixed(u64::MAX / 2), Dim::Fixed(u64::MAX / 2)],
            )],
        };
        let size = OutputSize::from_signature(&signature);
        assert_eq!(size.bytes(&[rows(3, 1)]), u64::MAX);
        assert!(size.bytes_per_row() > MAX_ROW_BYTES);
    }
}
