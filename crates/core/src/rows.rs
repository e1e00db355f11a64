//! Stacking tensors along their first dimension and splitting them back: what adaptive
//! batching does with the requests it runs together.

use crate::{CoreError, Tensor, TensorData};

/// Applies `$body` to the vectors of two [`TensorData`] of the same variant; `$other` when
/// the variants differ.
macro_rules! same_variant {
    ($a:expr, $b:expr, $x:ident, $y:ident => $body:expr, else $other:expr) => {
        match ($a, $b) {
            (TensorData::Bool($x), TensorData::Bool($y)) => $body,
            (TensorData::Uint8($x), TensorData::Uint8($y)) => $body,
            (TensorData::Uint16($x), TensorData::Uint16($y)) => $body,
            (TensorData::Uint32($x), TensorData::Uint32($y)) => $body,
            (TensorData::Uint64($x), TensorData::Uint64($y)) => $body,
            (TensorData::Int8($x), TensorData::Int8($y)) => $body,
            (TensorData::Int16($x), TensorData::Int16($y)) => $body,
            (TensorData::Int32($x), TensorData::Int32($y)) => $body,
            (TensorData::Int64($x), TensorData::Int64($y)) => $body,
            (TensorData::Fp16($x), TensorData::Fp16($y)) => $body,
            (TensorData::Fp32($x), TensorData::Fp32($y)) => $body,
            (TensorData::Fp64($x), TensorData::Fp64($y)) => $body,
            (TensorData::Bf16($x), TensorData::Bf16($y)) => $body,
            (TensorData::Bytes($x), TensorData::Bytes($y)) => $body,
            _ => $other,
        }
    };
}

/// Builds a [`TensorData`] of the same variant as `$data` from `$body`, which sees the
/// vector as `$v`.
macro_rules! map_variant {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => TensorData::Bool($body),
            TensorData::Uint8($v) => TensorData::Uint8($body),
            TensorData::Uint16($v) => TensorData::Uint16($body),
            TensorData::Uint32($v) => TensorData::Uint32($body),
            TensorData::Uint64($v) => TensorData::Uint64($body),
            TensorData::Int8($v) => TensorData::Int8($body),
            TensorData::Int16($v) => TensorData::Int16($body),
            TensorData::Int32($v) => TensorData::Int32($body),
            TensorData::Int64($v) => TensorData::Int64($body),
            TensorData::Fp16($v) => TensorData::Fp16($body),
            TensorData::Fp32($v) => TensorData::Fp32($body),
            TensorData::Fp64($v) => TensorData::Fp64($body),
            TensorData::Bf16($v) => TensorData::Bf16($body),
            TensorData::Bytes($v) => TensorData::Bytes($body),
        }
    };
}

fn rows_error(name: &str, reason: impl Into<String>) -> CoreError {
    CoreError::Rows { name: name.to_owned(), reason: reason.into() }
}

impl Tensor {
    /// Rows along the first dimension (0 for a scalar).
    pub fn rows(&self) -> usize {
        self.shape().first().copied().unwrap_or(0)
    }

    /// Stacks tensors along their first dimension, then repeats the last row until there
    /// are `min_rows` (padding rows, to be dropped from the outputs). The tensors must
    /// share a name, a datatype and every dimension but the first.
    pub fn stack_rows(parts: &[Tensor], min_rows: usize) -> Result<Tensor, CoreError> {
        let Some(first) = parts.first() else {
            return Err(rows_error("", "nothing to stack"));
        };
        let name = first.name();
        if first.shape().is_empty() {
            return Err(rows_error(name, "a scalar has no rows to stack"));
        }
        let row_shape = &first.shape()[1..];
        let row_len: usize = row_shape.iter().product();
        let mut rows = 0usize;
        let mut data = map_variant!(first.data(), v => Vec::with_capacity(v.len() * parts.len()));
        for part in parts {
            if part.name() != name || part.shape().get(1..) != Some(row_shape) {
                return Err(rows_error(
                    name,
                    format!("shape {:?} does not stack with {:?}", part.shape(), first.shape()),
                ));
            }
            same_variant!(&mut data, part.data(), out, v => out.extend_from_slice(v), else {
                return Err(rows_error(name, format!("{} does not stack with {}", part.datatype(), first.datatype())));
            });
            rows += part.rows();
        }
        if rows < min_rows && rows > 0 && row_len > 0 {
            let missing = min_rows - rows;
            same_variant!(&mut data, first.data(), out, _unused => {
                let last = out.len() - row_len;
                for _ in 0..missing {
                    out.extend_from_within(last..last + row_len);
                }
            }, else {});
            rows = min_rows;
        }
        let mut shape = first.shape().to_vec();
        shape[0] = rows;
        Tensor::new(name, shape, data)
    }

    /// Splits a tensor along its first dimension into consecutive parts of `counts` rows;
    /// rows after the last part (padding) are dropped.
    pub fn split_rows(&self, counts: &[usize]) -> Result<Vec<Tensor>, CoreError> {
        let name = self.name();
        let wanted: usize = counts.iter().sum();
        if self.shape().is_empty() || self.rows() < wanted {
            return Err(rows_error(
                name,
                format!("shape {:?} has fewer than the {wanted} rows of the batch", self.shape()),
            ));
        }
        let row_len: usize = self.shape()[1..].iter().product();
        let mut start = 0;
        let mut parts = Vec::with_capacity(counts.len());
        for &count in counts {
            let range = start * row_len..(start + count) * row_len;
            let data = map_variant!(self.data(), v => v[range.clone()].to_vec());
            let mut shape = self.shape().to_vec();
            shape[0] = count;
            parts.push(Tensor::new(name, shape, data)?);
            start += count;
        }
        Ok(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp32(rows: usize, start: f32) -> Tensor {
        let data = (0..rows * 2).map(|i| start + i as f32).collect();
        Tensor::new("x", vec![rows, 2], TensorData::Fp32(data)).unwrap()
    }

    #[test]
    fn stack_pad_and_split_round_trip() {
        let parts = [fp32(1, 0.0), fp32(3, 10.0), fp32(2, 20.0)];
        let stacked = Tensor::stack_rows(&parts, 8).unwrap();
        assert_eq!(stacked.shape(), [8, 2]);
        let TensorData::Fp32(v) = stacked.data() else { panic!() };
        assert_eq!(&v[10..], &[22.0, 23.0, 22.0, 23.0, 22.0, 23.0], "last row repeated");
        assert_eq!(stacked.split_rows(&[1, 3, 2]).unwrap(), parts);
        assert_eq!(Tensor::stack_rows(&parts, 2).unwrap().rows(), 6, "no padding needed");
    }

    #[test]
    fn mismatches_are_errors_not_panics() {
        let bytes =
            Tensor::new("x", vec![1, 2], TensorData::Bytes(vec![b"a".to_vec(), b"b".to_vec()])).unwrap();
        assert!(Tensor::stack_rows(&[fp32(1, 0.0), bytes], 1).is_err());
        let wide = Tensor::new("x", vec![1, 3], TensorData::Fp32(vec![0.0; 3])).unwrap();
        assert!(Tensor::stack_rows(&[fp32(1, 0.0), wide], 1).is_err());
        let scalar = Tensor::new("x", vec![], TensorData::Fp32(vec![1.0])).unwrap();
        assert!(Tensor::stack_rows(std::slice::from_ref(&scalar), 1).is_err());
        assert!(scalar.split_rows(&[1]).is_err());
        assert!(fp32(2, 0.0).split_rows(&[2, 1]).is_err());
        assert!(Tensor::stack_rows(&[], 1).is_err());
        let empty = fp32(0, 0.0);
        assert_eq!(Tensor::stack_rows(&[empty.clone(), empty], 4).unwrap().rows(), 0, "nothing to repeat");
    }
}
