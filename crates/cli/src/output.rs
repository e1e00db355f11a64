//! Printing results as text or JSON.

use std::time::{Duration, UNIX_EPOCH};

use palisade_core::TensorSpec;
use serde::Serialize;

use crate::failure::Failure;

/// Prints a value as pretty JSON on stdout.
pub fn json<T: Serialize>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(Failure::other)?;
    println!("{text}");
    Ok(())
}

/// Prints a warning on stderr, where it reaches the person running the command whatever
/// the log settings.
pub fn warn(message: &str) {
    eprintln!("warning: {message}");
}

/// A Unix timestamp as RFC 3339 (UTC, seconds).
pub fn timestamp(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// `X FP32 [-1, 4]`, plus class labels when known.
pub fn tensor(spec: &TensorSpec) -> String {
    let mut line = format!("{} {} {:?}", spec.name, spec.datatype, spec.shape_i64());
    if let Some(labels) = &spec.labels {
        line.push_str(&format!(" classes [{}]", labels.join(", ")));
    }
    line
}

/// Prints rows as aligned columns under a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
