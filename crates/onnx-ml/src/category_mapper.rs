//! `CategoryMapper` (ai.onnx.ml opset 1).

use std::collections::HashMap;

use crate::OnnxMlError;

/// A `CategoryMapper`: strings to integers (`cats_strings[i]` to `cats_int64s[i]`) for
/// string inputs, integers to strings for `int64` inputs, with onnxruntime's semantics:
/// where a category appears twice, its last pair wins; unknown values map to
/// `default_int64` (default -1) or `default_string` (default `"_Unused"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryMapper {
    to_int: HashMap<String, i64>,
    to_string: HashMap<i64, String>,
    default_int: i64,
    default_string: String,
}

impl CategoryMapper {
    /// Validates the attributes: the two category lists pair up.
    pub fn new(
        cats_strings: Vec<String>,
        cats_int64s: Vec<i64>,
        default_int64: Option<i64>,
        default_string: Option<String>,
    ) -> Result<Self, OnnxMlError> {
        if cats_strings.len() != cats_int64s.len() {
            return Err(OnnxMlError::LengthMismatch {
                attribute: "cats_int64s",
                actual: cats_int64s.len(),
                reference: "cats_strings",
                expected: cats_strings.len(),
            });
        }
        let mut to_int = HashMap::with_capacity(cats_strings.len());
        let mut to_string = HashMap::with_capacity(cats_strings.len());
        for (s, i) in cats_strings.into_iter().zip(cats_int64s) {
            to_string.insert(i, s.clone());
            to_int.insert(s, i);
        }
        Ok(CategoryMapper {
            to_int,
            to_string,
            default_int: default_int64.unwrap_or(-1),
            default_string: default_string.unwrap_or_else(|| "_Unused".to_owned()),
        })
    }

    /// Maps strings to their integers.
    pub fn to_ints(&self, input: &[String]) -> Result<Vec<i64>, OnnxMlError> {
        let mut out = Vec::new();
        out.try_reserve_exact(input.len()).map_err(|_| OnnxMlError::TooLarge { elements: input.len() })?;
        out.extend(input.iter().map(|s| self.to_int.get(s).copied().unwrap_or(self.default_int)));
        Ok(out)
    }

    /// Maps integers to their strings.
    pub fn to_strings(&self, input: &[i64]) -> Result<Vec<String>, OnnxMlError> {
        let mut out = Vec::new();
        out.try_reserve_exact(input.len()).map_err(|_| OnnxMlError::TooLarge { elements: input.len() })?;
        out.extend(input.iter().map(|i| self.to_string.get(i).unwrap_or(&self.default_string).clone()));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// onnxruntime 1.32's answers for the same attributes.
    #[test]
    fn last_pair_wins_and_defaults_like_onnxruntime() {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let m = CategoryMapper::new(strings(&["a", "b", "a"]), vec![1, 2, 3], None, None).unwrap();
        assert_eq!(m.to_ints(&strings(&["a", "b", "x"])).unwrap(), vec![3, 2, -1]);
        let m = CategoryMapper::new(strings(&["a", "b", "c"]), vec![1, 2, 1], None, None).unwrap();
        assert_eq!(m.to_strings(&[1, 2, 5]).unwrap(), strings(&["c", "b", "_Unused"]));
        assert!(CategoryMapper::new(strings(&["a"]), vec![], None, None).is_err());
    }
}
