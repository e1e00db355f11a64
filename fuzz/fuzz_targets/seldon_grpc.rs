//! Seldon Core v1 over gRPC: a request body (one gRPC frame) decoded as a `SeldonMessage`
//! (`protocol::seldon::grpc::decode_frame`), parsed into a tensor for every target datatype
//! (`parse_message`), and the answer written back in the gRPC form (`response_message`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_core::DataType;
use palisade_protocol::seldon::{self, grpc};

fuzz_target!(|data: &[u8]| {
    let Some((selector, body)) = data.split_first() else { return };
    let datatype = DataType::ALL[usize::from(*selector) % DataType::ALL.len()];
    let Ok(message) = grpc::decode_frame(body) else { return };
    if let Ok(request) = grpc::parse_message(message, "X", datatype) {
        assert_eq!(request.tensor.datatype(), datatype);
        let names = request.names.clone();
        let response = seldon::encode_response(
            &request.tensor,
            &names,
            request.form,
            "m",
            "1",
            request.meta.get("tags"),
        );
        let _ = grpc::response_message(&response);
    }
});
