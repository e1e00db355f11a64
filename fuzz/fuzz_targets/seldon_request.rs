//! Seldon v1 request parsing, for every target datatype.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_core::DataType;

fuzz_target!(|data: &[u8]| {
    let Some((selector, body)) = data.split_first() else { return };
    let datatype = DataType::ALL[usize::from(*selector) % DataType::ALL.len()];
    if let Ok(request) = palisade_protocol::seldon::parse_request(body, "X", datatype) {
        assert_eq!(request.tensor.datatype(), datatype);
    }
});
