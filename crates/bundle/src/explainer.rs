//! What `palisade build` stores for an `explainer:` (the file [`EXPLAINER_FILE`], covered by
//! the bundle digest), and the background file formats it reads: CSV with a header of
//! feature names, or a 2-D `.npy` array.
//!
//! The background file itself is not copied into the bundle: TreeSHAP needs only the node
//! covers computed from it, KernelSHAP the rows themselves (bounded by
//! [`MAX_KERNEL_ROWS`]), and both are in [`ExplainerRecord`].

use palisade_core::ModelSignature;
use serde::{Deserialize, Serialize};

/// The explainer's file in a bundle.
pub const EXPLAINER_FILE: &str = "explainer.json";

/// Largest background file `palisade build` reads.
pub const MAX_BACKGROUND_BYTES: u64 = 64 * 1024 * 1024;

/// Largest explainer file a bundle may hold (covers of large ensembles).
pub const MAX_EXPLAINER_BYTES: u64 = 128 * 1024 * 1024;

/// Most background rows KernelSHAP keeps: each explained row costs `2^M × rows` model rows.
pub const MAX_KERNEL_ROWS: usize = 1000;

/// Most features a background row may have.
pub const MAX_FEATURES: usize = 4096;

/// What the explainer needs at serve time, computed by `palisade build`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum ExplainerRecord {
    /// TreeSHAP: the node covers of the model's tree ensemble, one per `nodes_*`
    /// attribute entry in attribute order, counted over the background rows.
    TreeShap {
        /// The feature names (the background's header).
        features: Vec<String>,
        /// How many background rows the covers count.
        #[serde(rename = "backgroundRows")]
        background_rows: u64,
        /// The covers.
        covers: Vec<f64>,
    },
    /// KernelSHAP: the background rows (row-major, `features.len()` values each).
    KernelShap {
        /// The feature names (the background's header).
        features: Vec<String>,
        /// The rows, row-major.
        rows: Vec<f32>,
    },
}

impl ExplainerRecord {
    /// The feature names.
    pub fn features(&self) -> &[String] {
        match self {
            ExplainerRecord::TreeShap { features, .. } | ExplainerRecord::KernelShap { features, .. } => {
                features
            }
        }
    }
}

/// Background rows as read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Background {
    /// Feature names: the CSV header, or `x0`, `x1`, ... for `.npy`.
    pub features: Vec<String>,
    /// Number of rows.
    pub n_rows: usize,
    /// The values, row-major (`n_rows × features.len()`); missing values are NaN.
    pub values: Vec<f64>,
    /// Whether every value is integral (for integer inputs).
    pub integral: bool,
}

impl Background {
    /// Reads a background file's bytes; `name` decides the format (`.npy`, else CSV).
    /// Errors say what is wrong and where (line and column for CSV).
    pub fn parse(name: &str, bytes: &[u8]) -> Result<Background, String> {
        let background =
            if name.to_ascii_lowercase().ends_with(".npy") { parse_npy(bytes)? } else { parse_csv(bytes)? };
        if background.n_rows == 0 {
            return Err("it has no rows; give at least one row of model inputs".to_owned());
        }
        Ok(background)
    }
}

fn parse_csv(bytes: &[u8]) -> Result<Background, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        format!("it is not UTF-8 text (invalid byte at offset {}); is it a .npy file?", e.valid_up_to())
    })?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err("it is empty; write a header of feature names, then one row per line".to_owned());
    };
    let field = |s: &str| s.trim().trim_matches('"').to_owned();
    let features: Vec<String> = header.split(',').map(field).collect();
    if features.len() > MAX_FEATURES {
        return Err(format!("its header has {} columns; at most {MAX_FEATURES}", features.len()));
    }
    for (i, name) in features.iter().enumerate() {
        if name.is_empty() {
            return Err(format!(
                "line 1: column {} has no name; the first line is the header of feature names",
                i + 1
            ));
        }
        if name.parse::<f64>().is_ok() {
            return Err(format!(
                "line 1: column {} is named `{name}`, a number: the first line must be a header of feature names",
                i + 1
            ));
        }
        if features[..i].contains(name) {
            return Err(format!("line 1: feature `{name}` is named twice"));
        }
    }
    let mut values = Vec::new();
    let mut n_rows = 0;
    let mut integral = true;
    for (index, line) in lines {
        let cells: Vec<&str> = line.split(',').collect();
        if cells.len() != features.len() {
            return Err(format!(
                "line {}: {} values, but the header names {} features",
                index + 1,
                cells.len(),
                features.len()
            ));
        }
        for (column, cell) in cells.iter().enumerate() {
            let cell = cell.trim().trim_matches('"');
            let value = if cell.is_empty() || cell.eq_ignore_ascii_case("nan") {
                f64::NAN
            } else {
                cell.parse::<f64>().map_err(|_| {
                    format!(
                        "line {}, column {} (`{}`): `{}` is not a number",
                        index + 1,
                        column + 1,
                        features[column],
                        clip(cell)
                    )
                })?
            };
            integral &= value.is_nan() || value.fract() == 0.0;
            values.push(value);
        }
        n_rows += 1;
    }
    Ok(Background { features, n_rows, values, integral })
}

/// Checks background rows against the model's signature: the model takes one 2-D
/// numeric input of features (`[-1, M]`), the background has `M` named features, integer
/// inputs get integral values, and NaN only where the input accepts it. Returns `M`.
pub fn check_background(background: &Background, signature: &ModelSignature) -> Result<usize, String> {
    use palisade_core::{DataType, Dim};
    let [input] = &signature.inputs[..] else {
        let names: Vec<&str> = signature.inputs.iter().map(|i| i.name.as_str()).collect();
        return Err(format!(
            "the model has {} inputs {names:?}; explainers need a model with one input of features (shape [-1, M]): export the model with one input",
            names.len()
        ));
    };
    let numeric =
        matches!(input.datatype, DataType::Fp32 | DataType::Fp64 | DataType::Int32 | DataType::Int64);
    if !numeric {
        return Err(format!(
            "the model's input `{}` is {}; explainers need FP32, FP64, INT32 or INT64 features",
            input.name,
            input.datatype.as_str()
        ));
    }
    let n = background.features.len();
    match input.shape[..] {
        [_, Dim::Fixed(m)] if m != n as u64 => {
            return Err(format!(
                "it has {n} features ({}), but the model's input `{}` takes {m} per row: give one column per feature, in the model's order",
                clip(&background.features.join(", ")),
                input.name
            ));
        }
        [_, _] => {}
        _ => {
            return Err(format!(
                "the model's input `{}` has shape {:?}; explainers need rows of features, shape [-1, M]",
                input.name,
                input.shape_i64()
            ));
        }
    }
    if matches!(input.datatype, DataType::Int32 | DataType::Int64) && !background.integral {
        return Err(format!(
            "the model's input `{}` is {}, but the background has values that are not integers",
            input.name,
            input.datatype.as_str()
        ));
    }
    if !input.allow_nan
        && let Some(at) = background.values.iter().position(|v| !v.is_finite())
    {
        return Err(format!(
            "row {}, feature `{}` is missing (NaN) or infinite, and the model's input `{}` refuses such values: fill it in, or set `allow_nan: true` on the input under model.inputs",
            at / n + 1,
            background.features[at % n],
            input.name
        ));
    }
    Ok(n)
}

/// The output KernelSHAP explains: the first FP32/FP64 output of shape `[-1]`, `[-1, 1]`
/// or `[-1, K]` (a regressor's prediction, a classifier's probabilities). Returns its
/// index and `K` (1 for a regressor).
pub fn explained_output(signature: &ModelSignature) -> Result<(usize, usize), String> {
    use palisade_core::{DataType, Dim};
    for (index, output) in signature.outputs.iter().enumerate() {
        if !matches!(output.datatype, DataType::Fp32 | DataType::Fp64) {
            continue;
        }
        match output.shape[..] {
            [_] => return Ok((index, 1)),
            [_, Dim::Fixed(k)] if k >= 1 => {
                return Ok((index, usize::try_from(k).map_err(|_| "too many output columns".to_owned())?));
            }
            _ => {}
        }
    }
    let outputs: Vec<String> = signature
        .outputs
        .iter()
        .map(|o| format!("{} {} {:?}", o.name, o.datatype.as_str(), o.shape_i64()))
        .collect();
    Err(format!(
        "KernelShap explains a float output of shape [-1] or [-1, K] (a prediction, or probabilities); the model's outputs are {outputs:?}"
    ))
}

/// At most 40 characters of a value, for messages.
fn clip(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

fn parse_npy(bytes: &[u8]) -> Result<Background, String> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    if !bytes.starts_with(MAGIC) || bytes.len() < 10 {
        return Err("it is not a .npy file (no \\x93NUMPY magic); save it with numpy.save".to_owned());
    }
    let (header_len, start): (usize, usize) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => {
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(format!(".npy format version {v} is not supported (1 to 3 are)")),
    };
    let header = bytes
        .get(start..start.saturating_add(header_len))
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("its .npy header is truncated or not text")?;
    let item = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))?;
        let rest = header[at + key.len() + 2..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = item("descr").and_then(|r| r.strip_prefix('\'')).and_then(|r| r.split('\'').next());
    let width: i8 = match descr {
        Some("<f8") => 8,
        Some("<f4") => 4,
        Some("<i8") => -8,
        Some("<i4") => -4,
        other => {
            return Err(format!(
                "dtype {} is not supported; save float64, float32, int64 or int32 (little-endian)",
                other.unwrap_or("?")
            ));
        }
    };
    if item("fortran_order").is_none_or(|r| !r.starts_with("False")) {
        return Err("it is in Fortran order; save numpy.ascontiguousarray(rows)".to_owned());
    }
    let shape_text =
        item("shape").and_then(|r| r.strip_prefix('(')).and_then(|r| r.split(')').next()).unwrap_or("");
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("its shape ({shape_text}) is not readable"))?;
    let [n_rows, n_features] = shape[..] else {
        return Err(format!("its shape is ({shape_text}); a background is 2-D: rows × features"));
    };
    if n_features == 0 || n_features > MAX_FEATURES {
        return Err(format!("it has {n_features} features; 1 to {MAX_FEATURES} are accepted"));
    }
    let data = &bytes[start + header_len..];
    let size = usize::from(width.unsigned_abs());
    let expected = n_rows.checked_mul(n_features).and_then(|n| n.checked_mul(size));
    if expected != Some(data.len()) {
        return Err(format!(
            "its shape ({n_rows}, {n_features}) needs {} bytes of data; the file has {}",
            expected.map_or_else(|| "too many".to_owned(), |n| n.to_string()),
            data.len()
        ));
    }
    let values: Vec<f64> = data
        .chunks_exact(size)
        .map(|c| match width {
            8 => f64::from_le_bytes(c.try_into().unwrap_or_default()),
            4 => f64::from(f32::from_le_bytes(c.try_into().unwrap_or_default())),
            -8 => i64::from_le_bytes(c.try_into().unwrap_or_default()) as f64,
            _ => f64::from(i32::from_le_bytes(c.try_into().unwrap_or_default())),
        })
        .collect();
    let integral = values.iter().all(|v| v.is_nan() || v.fract() == 0.0);
    let features = (0..n_features).map(|i| format!("x{i}")).collect();
    Ok(Background { features, n_rows, values, integral })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_header_and_missing_values() {
        let b = Background::parse("bg.csv", b"a, \"b\"\n1,2.5\n\n3,nan\n4,\n").unwrap();
        assert_eq!(b.features, ["a", "b"]);
        assert_eq!(b.n_rows, 3);
        assert_eq!(b.values[..3], [1.0, 2.5, 3.0]);
        assert!(b.values[3].is_nan() && b.values[5].is_nan());
        assert!(!b.integral);
    }

    #[test]
    fn csv_errors_name_line_and_column() {
        let err = |text: &str| Background::parse("bg.csv", text.as_bytes()).unwrap_err();
        assert!(err("1,2\n3,4\n").contains("a number: the first line must be a header"));
        assert!(err("a,b\n1,2\n3\n").starts_with("line 3: 1 values, but the header names 2"));
        assert!(err("a,b\n1,x\n").contains("line 2, column 2 (`b`): `x` is not a number"));
        assert!(err("a,a\n1,2\n").contains("named twice"));
        assert!(err("a,b\n").contains("no rows"));
        assert!(err("").contains("empty"));
    }

    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&u16::try_from(header.len()).unwrap().to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn npy_float_and_int() {
        let data: Vec<u8> = [1.0f64, 2.0, 3.5, 4.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let b = Background::parse("bg.npy", &npy("<f8", "(2, 2)", &data)).unwrap();
        assert_eq!(
            (b.n_rows, b.values.clone(), b.features.clone()),
            (2, vec![1.0, 2.0, 3.5, 4.0], vec!["x0".to_owned(), "x1".to_owned()])
        );
        let data: Vec<u8> = [1i64, 2, 3].iter().flat_map(|v| v.to_le_bytes()).collect();
        let b = Background::parse("BG.NPY", &npy("<i8", "(3, 1)", &data)).unwrap();
        assert!(b.integral && b.values == [1.0, 2.0, 3.0]);
        assert!(Background::parse("bg.npy", &npy("<f8", "(4,)", &data[..])).unwrap_err().contains("2-D"));
        assert!(
            Background::parse("bg.npy", &npy("<f8", "(2, 2)", &data[..8]))
                .unwrap_err()
                .contains("bytes of data")
        );
        assert!(Background::parse("bg.npy", &npy("|b1", "(2, 2)", &data)).unwrap_err().contains("dtype |b1"));
        assert!(Background::parse("bg.npy", b"a,b\n1,2\n").unwrap_err().contains("magic"));
    }

    #[test]
    fn record_round_trips() {
        let record = ExplainerRecord::TreeShap {
            features: vec!["a".into()],
            background_rows: 2,
            covers: vec![2.0, 1.0, 1.0],
        };
        let json = serde_json::to_string(&record).unwrap();
        assert!(json.contains("\"type\":\"TreeShap\""));
        assert_eq!(serde_json::from_str::<ExplainerRecord>(&json).unwrap(), record);
    }
}
