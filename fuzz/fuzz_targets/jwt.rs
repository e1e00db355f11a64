//! Token and key-set parsing: never a panic, and a parsed token always has its registered
//! claims typed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(token) = palisade_identity::token::parse(text) {
            assert!(token.claims.exp.is_finite());
            assert!(text.starts_with(token.signing_input));
        }
    }
    let _ = palisade_identity::keys::KeySet::parse(data);
});
