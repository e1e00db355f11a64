//! Audit trails are read back by `audit verify`, `query` and `tail` after anyone may have
//! edited them: arbitrary bytes as a segment (and as a checkpoint file) must give findings
//! or errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_audit::{CHECKPOINT_FILE, Filter, VerifyOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let split = data.iter().position(|b| *b == 0xff).unwrap_or(data.len());
    let (segment, checkpoints) = data.split_at(split);
    if std::fs::write(dir.path().join("segment-00000000000000000000.jsonl"), segment).is_err()
        || std::fs::write(dir.path().join(CHECKPOINT_FILE), checkpoints).is_err()
    {
        return;
    }
    let _ = palisade_audit::verify(dir.path(), &VerifyOptions::default());
    if let Ok(records) = palisade_audit::query(dir.path(), Filter::default()) {
        for record in records.take(64) {
            let _ = record;
        }
    }
});
