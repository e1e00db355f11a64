//! Reference and background rows (`monitoring.*.reference`, `explainer.background`): any
//! bytes, read as CSV or as `.npy`, give rows whose shape adds up or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_bundle::explainer::Background;

fuzz_target!(|data: &[u8]| {
    for name in ["reference.csv", "reference.npy"] {
        if let Ok(rows) = Background::parse(name, data) {
            assert!(rows.n_rows > 0);
            assert_eq!(rows.values.len(), rows.n_rows * rows.features.len());
        }
    }
});
