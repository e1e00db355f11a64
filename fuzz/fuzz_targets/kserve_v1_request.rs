//! KServe V1 `:predict` bodies (`protocol::kserve_v1::parse_predict_request`) for a model of
//! one or two inputs of any datatypes, and the predictions written for what was accepted.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_core::DataType;
use palisade_protocol::kserve_v1::{self, Input};

fuzz_target!(|data: &[u8]| {
    let Some((&[first, second], body)) = data.split_first_chunk::<2>() else { return };
    let pick = |b: u8| DataType::ALL[usize::from(b) % DataType::ALL.len()];
    let one = [Input { name: "X", datatype: pick(first) }];
    let two = [Input { name: "a", datatype: pick(first) }, Input { name: "b", datatype: pick(second) }];
    let inputs: &[Input<'_>] = if second % 2 == 0 { &one } else { &two };
    if let Ok(tensors) = kserve_v1::parse_predict_request(body, inputs) {
        assert_eq!(tensors.len(), inputs.len());
        for (tensor, input) in tensors.iter().zip(inputs) {
            assert_eq!(tensor.name(), input.name);
            assert_eq!(tensor.datatype(), input.datatype);
            assert_eq!(tensor.data().len(), tensor.shape().iter().product::<usize>());
        }
        let _ = kserve_v1::encode_predictions(&tensors);
    }
});
