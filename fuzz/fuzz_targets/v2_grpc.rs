//! Open Inference Protocol V2 over gRPC: protobuf bytes decoded as a `ModelInferRequest`,
//! then parsed into tensors (typed contents and raw entries).
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_protocol::grpc::{self, ModelInferRequest, prost::Message};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = ModelInferRequest::decode(data)
        && let Ok(parsed) = grpc::parse_infer_request(request)
    {
        for input in &parsed.inputs {
            assert_eq!(input.data().len(), input.shape().iter().product::<usize>());
        }
        // What was accepted re-encodes, raw and typed, to the same tensors.
        for raw in [true, false] {
            let again = grpc::encode_infer_request(&parsed.model_name, None, None, &parsed.inputs, raw);
            let reparsed = grpc::parse_infer_request(again).expect("re-encoded request parses");
            assert_eq!(reparsed.inputs.len(), parsed.inputs.len());
        }
    }
});
