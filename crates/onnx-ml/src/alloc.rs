//! Fallible allocation for sizes that come from a model file or a request.

use crate::OnnxMlError;

/// Most elements one operator allocates for one result (2^28: 1 GiB of `f32`).
pub const MAX_ELEMENTS: usize = 1 << 28;

/// `len` copies of `value`, refusing sizes over [`MAX_ELEMENTS`] and failed allocations
/// instead of aborting.
pub fn filled<T: Clone>(len: usize, value: T) -> Result<Vec<T>, OnnxMlError> {
    if len > MAX_ELEMENTS {
        return Err(OnnxMlError::TooLarge { elements: len });
    }
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| OnnxMlError::TooLarge { elements: len })?;
    v.resize(len, value);
    Ok(v)
}

/// `a * b`, or [`OnnxMlError::TooLarge`] when it overflows.
pub fn product(a: usize, b: usize) -> Result<usize, OnnxMlError> {
    a.checked_mul(b).ok_or(OnnxMlError::TooLarge { elements: usize::MAX })
}
