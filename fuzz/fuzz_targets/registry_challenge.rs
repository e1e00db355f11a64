//! `WWW-Authenticate` challenges a registry sends to `palisade image push`: any text
//! parses into a scheme and parameters without a panic, and every parameter read back is
//! one that was parsed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let challenge = palisade_image::Challenge::parse(text);
    assert!(text.trim().starts_with(challenge.scheme.as_str()));
    for (name, value) in &challenge.params {
        let found = challenge.param(name);
        assert!(found.is_some());
        assert!(value.len() <= text.len());
    }
});
