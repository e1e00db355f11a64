//! Lowercase hex for digests on the request path (audit hashes, bundle digests).
//!
//! `hex::encode` builds its string from a char iterator, about 100 instructions per byte
//! under callgrind; every audited request writes five to six hex digests.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The lowercase hex digits of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    out
}

/// Appends the lowercase hex digits of `bytes` to `out`.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_hex_crate() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(to_hex(&bytes), hex::encode(&bytes));
        assert_eq!(to_hex(&[]), "");
        let mut out = "sha256:".to_owned();
        push_hex(&mut out, &[0xab, 0x01]);
        assert_eq!(out, "sha256:ab01");
    }
}
