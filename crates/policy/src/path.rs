//! Request path and host normalization, done once before any matching.
//!
//! This is Envoy's path normalization with the settings Istio recommends for
//! authorization (`DECODE_AND_MERGE_SLASHES`), made strict where Envoy is lenient:
//!
//! 1. the query string and fragment are dropped (policies match the path alone);
//! 2. NUL, raw or `%00`, is refused, and so is a `%` without two hex digits;
//! 3. in one pass, `%2F` / `%5C` (any case) are decoded to `/` and `\`, percent-encoded
//!    characters that a path segment may hold literally (RFC 3986 `pchar`: the unreserved
//!    `A-Z a-z 0-9 - . _ ~`, the sub-delimiters `! $ & ' ( ) * + , ; =`, and `:` `@`; so
//!    `%2E` -> `.` and `%2B` -> `+`) are decoded, and every other escape is kept with
//!    upper-case hex digits. One resource then has one spelling: a policy written for
//!    `/v2/models/iris/versions/1.0+b/infer` matches `.../1.0%2Bb/infer` too;
//! 4. backslashes become slashes;
//! 5. runs of slashes are merged;
//! 6. `.` and `..` segments are removed (RFC 3986 `remove_dot_segments`), never above `/`.
//!
//! Every other byte a path segment may not hold literally (control characters, spaces,
//! `"` `<` `>` `[` `]` `{` `}` `|` `^` and the backtick, non-ASCII bytes) is
//! percent-encoded, so the result is plain ASCII in one canonical spelling. The function is idempotent, and what the model sees is the
//! normalized path, so the authorization decision and the model agree on the resource.

use crate::PathError;

/// Longest request path accepted, in bytes, before normalization.
pub const MAX_PATH_BYTES: usize = 8 * 1024;

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether a byte may stand literally in a path segment (RFC 3986 `pchar` less `%`).
fn is_path_literal(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Normalizes a request path (see the module documentation); the server answers 400 on error.
pub fn normalize_path(raw: &str) -> Result<String, PathError> {
    if raw.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    let end = raw.find(['?', '#']).unwrap_or(raw.len());
    let raw = &raw[..end];
    if raw.is_empty() {
        return Err(PathError::Empty);
    }
    let bytes = raw.as_bytes();
    // Steps 2-4: decode, escape what must stay escaped, turn backslashes into slashes.
    let mut decoded: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            0 => return Err(PathError::Nul),
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    bytes.get(i + 1).copied().and_then(hex_value),
                    bytes.get(i + 2).copied().and_then(hex_value),
                ) else {
                    return Err(PathError::InvalidEncoding(i));
                };
                let value = hi * 16 + lo;
                if value == 0 {
                    return Err(PathError::Nul);
                }
                if value == b'/' || value == b'\\' {
                    decoded.push(b'/');
                } else if is_path_literal(value) {
                    decoded.push(value);
                } else {
                    decoded.extend_from_slice(&[
                        b'%',
                        HEX_UPPER[usize::from(hi)],
                        HEX_UPPER[usize::from(lo)],
                    ]);
                }
                i += 3;
            }
            b'\\' => {
                decoded.push(b'/');
                i += 1;
            }
            b if b != b'/' && !is_path_literal(b) => {
                decoded.extend_from_slice(&[
                    b'%',
                    HEX_UPPER[usize::from(b >> 4)],
                    HEX_UPPER[usize::from(b & 15)],
                ]);
                i += 1;
            }
            b => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    if decoded.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // Steps 5-6: split into segments (merging slashes), then resolve dot segments.
    let trailing_slash = decoded.last() == Some(&b'/');
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut last_was_dot = false;
    for segment in decoded.split(|b| *b == b'/').filter(|s| !s.is_empty()) {
        last_was_dot = true;
        match segment {
            b"." => {}
            b".." => {
                segments.pop();
            }
            other => {
                last_was_dot = false;
                segments.push(other);
            }
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for segment in &segments {
        out.push('/');
        // Every byte in `decoded` is ASCII: non-ASCII input was percent-encoded above.
        out.extend(segment.iter().map(|b| char::from(*b)));
    }
    if segments.is_empty() || trailing_slash || last_was_dot {
        out.push('/');
    }
    Ok(out)
}

/// Lower-cases a request's host (authority) for matching; `hosts` match case-insensitively.
pub fn normalize_host(host: &str) -> String {
    host.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_plain_paths() {
        assert_eq!(normalize_path("/v2/models/iris/infer").unwrap(), "/v2/models/iris/infer");
        assert_eq!(normalize_path("/").unwrap(), "/");
        assert_eq!(normalize_path("/a/").unwrap(), "/a/");
    }
}
