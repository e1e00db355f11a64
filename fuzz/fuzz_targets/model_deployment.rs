//! `ModelDeployment` resources, as `palisade k8s render` reads them from YAML and the
//! operator receives them from the API server as JSON: any bytes give a resource or an
//! error, never a panic; a resource that passes its checks renders.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let file = std::path::Path::new("fuzz/md.yaml");
    if let Ok(text) = std::str::from_utf8(data) {
        match palisade_k8s::parse(file, text) {
            Ok(md) => {
                let objects = palisade_k8s::render(&md, &[])
                    .unwrap_or_else(|e| panic!("checked but not renderable: {e}"));
                let _ = palisade_k8s::to_yaml(&objects);
            }
            Err(err) => assert!(!err.to_string().is_empty()),
        }
    }
    // The operator's path: JSON from the API server; rendering runs the same checks.
    if let Ok(md) = serde_json::from_slice::<palisade_k8s::ModelDeployment>(data) {
        let _ = palisade_k8s::render(&md, &[]);
    }
});
