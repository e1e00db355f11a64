//! Shipped audit lines come back from a log collector's store, where anyone with access to
//! it may have edited them: arbitrary bytes as shipped lines must be imported or refused,
//! and the trails written must give findings or errors when verified and read, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_audit::{Filter, Trails, VerifyOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let out = dir.path().join("out");
    let Ok(report) = palisade_audit::import_shipped(vec![("fuzz".to_owned(), data)], &out) else { return };
    for trail in &report.trails {
        let _ = palisade_audit::verify(&trail.dir, &VerifyOptions::default());
    }
    if let Ok(Trails::Replicas { trails, .. }) = palisade_audit::find_trails(&out)
        && let Ok(records) = palisade_audit::query_replicas(&trails, Filter::default())
    {
        for record in records.take(64) {
            let _ = record;
        }
    }
});
