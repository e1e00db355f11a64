//! `LabelEncoder`.

use std::collections::HashMap;

use crate::OnnxMlError;

/// Keys or values of a `LabelEncoder`, in one of the types ONNX allows.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelColumn {
    /// `int64` (`keys_int64s`, `values_int64s`, `default_int64`).
    Int64(Vec<i64>),
    /// `string` (`keys_strings`, `values_strings`, `default_string`).
    Strings(Vec<String>),
    /// `float` (`keys_floats`, `values_floats`, `default_float`).
    Floats(Vec<f32>),
    /// `double` (opset 4 tensors).
    Doubles(Vec<f64>),
}

impl LabelColumn {
    /// Number of entries.
    pub fn len(&self) -> usize {
        match self {
            LabelColumn::Int64(v) => v.len(),
            LabelColumn::Strings(v) => v.len(),
            LabelColumn::Floats(v) => v.len(),
            LabelColumn::Doubles(v) => v.len(),
        }
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn kind(&self) -> &'static str {
        match self {
            LabelColumn::Int64(_) => "int64",
            LabelColumn::Strings(_) => "string",
            LabelColumn::Floats(_) => "float",
            LabelColumn::Doubles(_) => "double",
        }
    }

    /// The entries at `indices` (`None`: `default`'s first entry), allocated fallibly.
    fn gather(&self, indices: &[Option<usize>], default: &LabelColumn) -> Result<LabelColumn, OnnxMlError> {
        fn pick<T: Clone>(v: &[T], d: &[T], ix: &[Option<usize>]) -> Result<Vec<T>, OnnxMlError> {
            let mut out = Vec::new();
            out.try_reserve_exact(ix.len()).map_err(|_| OnnxMlError::TooLarge { elements: ix.len() })?;
            for i in ix {
                let value = match i {
                    Some(i) => v.get(*i),
                    None => d.first(),
                };
                out.push(
                    value
                        .cloned()
                        .ok_or_else(|| OnnxMlError::InvalidInput("LabelEncoder: no value".into()))?,
                );
            }
            Ok(out)
        }
        Ok(match (self, default) {
            (LabelColumn::Int64(v), LabelColumn::Int64(d)) => LabelColumn::Int64(pick(v, d, indices)?),
            (LabelColumn::Strings(v), LabelColumn::Strings(d)) => LabelColumn::Strings(pick(v, d, indices)?),
            (LabelColumn::Floats(v), LabelColumn::Floats(d)) => LabelColumn::Floats(pick(v, d, indices)?),
            (LabelColumn::Doubles(v), LabelColumn::Doubles(d)) => LabelColumn::Doubles(pick(v, d, indices)?),
            _ => return Err(OnnxMlError::InvalidInput("LabelEncoder: default of another type".into())),
        })
    }
}

/// A hashable numeric key: integers as they are, floats by their bits with `-0.0`
/// folded into `0.0` (they compare equal) and every NaN folded into one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Int(i64),
    Float(u64),
}

fn float_key(x: f64) -> Key {
    if x.is_nan() {
        Key::Float(f64::NAN.to_bits())
    } else if x == 0.0 {
        Key::Float(0)
    } else {
        Key::Float(x.to_bits())
    }
}

/// A `LabelEncoder` (ai.onnx.ml opsets 1, 2 and 4): maps each input value through a
/// table of keys and values, with a default for unknown keys.
///
/// As in onnxruntime: opset 1 maps strings to their index in `classes_strings` (the last
/// one when a class repeats) and indices back to strings, with `default_int64` (-1) and
/// `default_string` (`"_Unused"`); opsets 2 and 4 map `keys_*` to `values_*` (the first
/// pair wins when a key repeats), with defaults -1, `"_Unused"` and -0.0; a NaN key
/// matches a NaN input in opset 4 only.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelEncoder {
    map: HashMap<Key, usize>,
    strings: HashMap<String, usize>,
    key_kind: &'static str,
    values: LabelColumn,
    default: LabelColumn,
    nan_matches: bool,
}

impl LabelEncoder {
    /// The opset-1 encoder: strings to class indices when `strings_to_ints`, else class
    /// indices to strings.
    pub fn classes(
        classes: Vec<String>,
        strings_to_ints: bool,
        default_int64: i64,
        default_string: String,
    ) -> Result<Self, OnnxMlError> {
        if strings_to_ints {
            let values = LabelColumn::Int64((0..classes.len() as i64).collect());
            let mut strings = HashMap::new();
            for (i, c) in classes.into_iter().enumerate() {
                strings.insert(c, i);
            }
            Ok(LabelEncoder {
                map: HashMap::new(),
                strings,
                key_kind: "string",
                values,
                default: LabelColumn::Int64(vec![default_int64]),
                nan_matches: false,
            })
        } else {
            let map = (0..classes.len()).map(|i| (Key::Int(i as i64), i)).collect();
            Ok(LabelEncoder {
                map,
                strings: HashMap::new(),
                key_kind: "int64",
                values: LabelColumn::Strings(classes),
                default: LabelColumn::Strings(vec![default_string]),
                nan_matches: false,
            })
        }
    }

    /// The opset-2/4 encoder. `default` holds one value of the values' type;
    /// `nan_matches` is true for opset 4.
    pub fn new(
        keys: LabelColumn,
        values: LabelColumn,
        default: LabelColumn,
        nan_matches: bool,
    ) -> Result<Self, OnnxMlError> {
        if keys.len() != values.len() {
            return Err(OnnxMlError::LengthMismatch {
                attribute: "values",
                actual: values.len(),
                reference: "keys",
                expected: keys.len(),
            });
        }
        if default.len() != 1 || default.kind() != values.kind() {
            return Err(OnnxMlError::InvalidAttribute {
                attribute: "default",
                reason: format!("one {} value is needed", values.kind()),
            });
        }
        let key_kind = keys.kind();
        let mut strings = HashMap::new();
        let keys: Vec<Key> = match keys {
            LabelColumn::Int64(v) => v.into_iter().map(Key::Int).collect(),
            LabelColumn::Strings(v) => {
                for (i, key) in v.into_iter().enumerate() {
                    strings.entry(key).or_insert(i);
                }
                Vec::new()
            }
            LabelColumn::Floats(v) => v.into_iter().map(|x| float_key(f64::from(x))).collect(),
            LabelColumn::Doubles(v) => v.into_iter().map(float_key).collect(),
        };
        let mut map = HashMap::new();
        for (i, key) in keys.into_iter().enumerate() {
            let is_nan = key == float_key(f64::NAN);
            if is_nan && !nan_matches {
                continue;
            }
            map.entry(key).or_insert(i);
        }
        Ok(LabelEncoder { map, strings, key_kind, values, default, nan_matches })
    }

    /// The type of the keys (`int64`, `string`, `float`, `double`).
    pub fn key_type(&self) -> &'static str {
        self.key_kind
    }

    /// The values (their type is the output type).
    pub fn values(&self) -> &LabelColumn {
        &self.values
    }

    /// Maps `input` (of the key type) to a column of the values' type.
    pub fn map(&self, input: &LabelColumn) -> Result<LabelColumn, OnnxMlError> {
        if input.kind() != self.key_kind {
            return Err(OnnxMlError::InvalidInput(format!(
                "LabelEncoder maps {} keys, not {}",
                self.key_kind,
                input.kind()
            )));
        }
        let lookup = |key: Key| self.map.get(&key).copied();
        let nan = |x: f64| x.is_nan() && !self.nan_matches;
        let indices: Vec<Option<usize>> = match input {
            LabelColumn::Int64(v) => v.iter().map(|&x| lookup(Key::Int(x))).collect(),
            LabelColumn::Strings(v) => v.iter().map(|x| self.strings.get(x).copied()).collect(),
            LabelColumn::Floats(v) => v
                .iter()
                .map(|&x| if nan(f64::from(x)) { None } else { lookup(float_key(f64::from(x))) })
                .collect(),
            LabelColumn::Doubles(v) => {
                v.iter().map(|&x| if nan(x) { None } else { lookup(float_key(x)) }).collect()
            }
        };
        self.values.gather(&indices, &self.default)
    }
}
