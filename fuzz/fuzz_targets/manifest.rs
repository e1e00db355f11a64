//! `palisade.yaml` parsing: any bytes give a manifest or an error naming the file, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz/palisade.yaml");
    match palisade_bundle::Manifest::parse(path, data) {
        Ok(manifest) => {
            let _ = manifest.model_ref().to_string();
            let _ = manifest.model.files();
            if let Some(upstream) = manifest.model.upstream() {
                let name = upstream.model.as_deref().unwrap_or(manifest.name.as_str());
                let _ = upstream.url.join(&["v2", "models", name, "infer"]);
            }
        }
        Err(err) => assert!(err.to_string().starts_with("fuzz/palisade.yaml")),
    }
});
