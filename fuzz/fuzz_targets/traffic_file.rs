//! The router's traffic file (`palisade serve --traffic FILE`, from the `NAME-traffic`
//! ConfigMap): any bytes give a checked file or an error naming the file, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_server::router::TrafficFile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match TrafficFile::parse(std::path::Path::new("fuzz/traffic.yaml"), text) {
        Ok(file) => {
            let sum: u32 = file.variants.iter().map(|v| v.traffic).sum();
            assert_eq!(sum, 100, "a checked file's traffic sums to 100");
            assert!(file.variants.iter().filter(|v| v.shadow).count() <= 1);
        }
        Err(err) => assert!(err.to_string().contains("fuzz/traffic.yaml")),
    }
});
