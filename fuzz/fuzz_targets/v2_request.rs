//! Open Inference Protocol V2 request parsing, JSON and binary extension.
//! The first two bytes choose the JSON header length, so binary chunks get exercised.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = palisade_protocol::v2::parse_infer_request(data, None);
    if let [a, b, rest @ ..] = data {
        let json_len = usize::from(u16::from_le_bytes([*a, *b]));
        if let Ok(request) = palisade_protocol::v2::parse_infer_request(rest, Some(json_len)) {
            for input in &request.inputs {
                assert_eq!(input.data().len(), input.shape().iter().product::<usize>());
            }
        }
    }
});
