//! RequestAuthentication parsing: any text gives rules or an error naming the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let file = std::path::Path::new("fuzz.yaml");
    if let Err(err) = palisade_identity::rules::parse_request_authentication(file, text, false) {
        assert!(err.to_string().contains("fuzz.yaml") || !err.field.is_empty());
    }
});
