//! ONNX model loading: a malformed model file is a load error, never a crash.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = palisade_runtime::onnx::OnnxModel::from_bytes(std::path::Path::new("fuzz.onnx"), data);
});
