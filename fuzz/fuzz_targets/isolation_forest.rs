//! IsolationForest recognition in an ONNX file (the outlier model of `monitoring.outliers`):
//! malformed bytes or graphs are "not recognized", never a crash; a recognized forest scores
//! a row of its own width without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(native) = palisade_runtime::onnx::isolation_forest::recognize_isolation_forest(data) {
        let row = vec![0.5f32; native.forest.n_features()];
        let mut out = [0.0f64];
        let _ = native.forest.score_samples(&row, 1, &mut out);
    }
});
