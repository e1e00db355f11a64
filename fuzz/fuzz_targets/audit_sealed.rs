//! Sealed audit segments are read back by `verify` and `query` after anyone may have edited
//! them: arbitrary bytes as a sealed segment's file (footer, frame index, seal checkpoint,
//! zstd frames), and as the trailer parser's input, must give findings or errors, never a
//! panic or an allocation the file's size does not justify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_audit::{CHECKPOINT_FILE, Filter, VerifyOptions};

fuzz_target!(|data: &[u8]| {
    let _ = palisade_audit::parse_trailer(data, data.len() as u64 / 2);
    let Ok(dir) = tempfile::tempdir() else { return };
    let split = data.iter().position(|b| *b == 0xff).unwrap_or(data.len());
    let (sealed, checkpoints) = data.split_at(split);
    let audit = dir.path();
    if std::fs::write(audit.join("segment-00000000000000000000.jsonl.zst"), sealed).is_err()
        || std::fs::write(audit.join("segment-00000000000000000001.jsonl"), b"").is_err()
        || std::fs::write(audit.join(CHECKPOINT_FILE), checkpoints).is_err()
    {
        return;
    }
    let _ = palisade_audit::verify(audit, &VerifyOptions::default());
    for filter in [Filter::default(), Filter { request_id: Some("r".into()), ..Filter::default() }] {
        if let Ok(records) = palisade_audit::query(audit, filter) {
            for record in records.take(64) {
                let _ = record;
            }
        }
    }
});
