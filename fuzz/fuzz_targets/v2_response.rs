//! Open Inference Protocol V2 response parsing (what upstream servers answer), JSON and
//! binary extension, and the error-body reader. The first two bytes choose the JSON header
//! length, so binary chunks get exercised.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_protocol::v2::client::{parse_error_message, parse_infer_response};

fuzz_target!(|data: &[u8]| {
    let _ = parse_infer_response(data, None);
    let _ = parse_error_message(data);
    if let [a, b, rest @ ..] = data {
        let json_len = usize::from(u16::from_le_bytes([*a, *b]));
        if let Ok(response) = parse_infer_response(rest, Some(json_len)) {
            for output in &response.outputs {
                assert_eq!(output.data().len(), output.shape().iter().product::<usize>());
            }
        }
    }
});
