//! Fallible allocation for sizes that come from a model file or a request.

use crate::OnnxMlError;

/// Most elements one operator allocates for one result (2^28: 1 GiB of `f32`). Widths an
/// attribute sets (classes, targets, columns of one row) are held to it when the operator
/// is built, so a model cannot announce rows wider than any result may be.
pub const MAX_ELEMENTS: usize = 1 << 28;

/// `len` copies of `value`, refusing sizes over [`MAX_ELEMENTS`] and failed allocations
/// instead of aborting.
pub fn filled<T: Clone>(len: usize, value: T) -> Result<Vec<T>, OnnxMlError> {
    let mut v = Vec::new();
    grow(&mut v, len, value)?;
    Ok(v)
}

/// Resizes `v` to `len` copies of `value` (or truncates it), refusing sizes over
/// [`MAX_ELEMENTS`] and failed allocations instead of aborting.
pub(crate) fn grow<T: Clone>(v: &mut Vec<T>, len: usize, value: T) -> Result<(), OnnxMlError> {
    if len > MAX_ELEMENTS {
        return Err(OnnxMlError::TooLarge { elements: len });
    }
    v.clear();
    v.try_reserve_exact(len).map_err(|_| OnnxMlError::TooLarge { elements: len })?;
    v.resize(len, value);
    Ok(())
}

/// `a * b`, or [`OnnxMlError::TooLarge`] when it overflows.
pub fn product(a: usize, b: usize) -> Result<usize, OnnxMlError> {
    a.checked_mul(b).ok_or(OnnxMlError::TooLarge { elements: usize::MAX })
}

/// Checks a row width an attribute sets (classes, targets, columns) is at most
/// [`MAX_ELEMENTS`].
pub(crate) fn width(attribute: &'static str, n: usize) -> Result<usize, OnnxMlError> {
    if n > MAX_ELEMENTS {
        return Err(OnnxMlError::InvalidAttribute {
            attribute,
            reason: format!("{n} values per row is more than the limit of {MAX_ELEMENTS}"),
        });
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn sizes_past_the_limit_are_errors_not_aborts() {
        assert!(matches!(filled(MAX_ELEMENTS + 1, 0u8), Err(OnnxMlError::TooLarge { .. })));
        assert!(matches!(filled(usize::MAX, 0.0f32), Err(OnnxMlError::TooLarge { .. })));
        assert_eq!(filled(3, 1u8).unwrap(), vec![1, 1, 1]);
        let mut v = vec![5u8; 4];
        grow(&mut v, 2, 0).unwrap();
        assert_eq!(v, vec![0, 0]);
        assert!(width("n_targets", 2_000_000_000).is_err());
        assert_eq!(width("n_targets", 7).unwrap(), 7);
    }
}
