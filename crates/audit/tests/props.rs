//! Property tests: `verify` never panics on arbitrary bytes, and notices any changed byte.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::sync::OnceLock;

use common::*;
use palisade_audit::{AuditConfig, VerifyOptions, verify};
use proptest::prelude::*;

/// A small closed log (two segments), built once; cases copy it.
fn template() -> &'static LogDir {
    static TEMPLATE: OnceLock<LogDir> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = log_dir();
        write_log(
            dir.path(),
            AuditConfig { segment_max_bytes: 6 * 1024, checkpoint_every: 4, ..small("p") },
            12,
        );
        dir
    })
}

/// A copy of the template's home: its log and its keys.
fn copy_of_template() -> LogDir {
    let copy = log_dir();
    let keys = copy.key().parent().unwrap().to_owned();
    fs::create_dir(&keys).unwrap();
    for (from, to) in [(template().path(), copy.path()), (template().key().parent().unwrap(), keys.as_path())]
    {
        for entry in fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
    copy
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn verify_never_panics_on_arbitrary_segment_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        keep_prefix in any::<bool>(),
        newline_heavy in any::<bool>(),
    ) {
        let dir = copy_of_template();
        let last = segments(dir.path()).pop().unwrap();
        let mut content = if keep_prefix { fs::read(&last).unwrap() } else { Vec::new() };
        content.extend(bytes.iter().map(|&b| if newline_heavy && b % 7 == 0 { b'\n' } else { b }));
        fs::write(&last, &content).unwrap();
        let report = verify(dir.path(), &VerifyOptions::default()).unwrap();
        prop_assert!(report.ok || report.first_problem.is_some());
    }

    #[test]
    fn verify_never_panics_on_arbitrary_json_lines(
        lines in proptest::collection::vec("\\{[ -~]{0,200}\\}", 0..8),
    ) {
        let dir = copy_of_template();
        let last = segments(dir.path()).pop().unwrap();
        let mut content = fs::read(&last).unwrap();
        for line in &lines {
            content.extend_from_slice(line.as_bytes());
            content.push(b'\n');
        }
        fs::write(&last, &content).unwrap();
        let report = verify(dir.path(), &VerifyOptions::default()).unwrap();
        prop_assert_eq!(report.ok, lines.is_empty(), "{}", report);
    }

    #[test]
    fn any_changed_byte_is_detected(pick in any::<prop::sample::Index>(), delta in 1u8..=255) {
        let dir = copy_of_template();
        let files: Vec<_> = segments(dir.path());
        let sizes: Vec<usize> = files.iter().map(|f| fs::metadata(f).unwrap().len() as usize).collect();
        let mut at = pick.index(sizes.iter().sum());
        let mut file = 0;
        while at >= sizes[file] {
            at -= sizes[file];
            file += 1;
        }
        let mut content = fs::read(&files[file]).unwrap();
        content[at] = content[at].wrapping_add(delta);
        fs::write(&files[file], &content).unwrap();
        let report = verify(dir.path(), &VerifyOptions::default()).unwrap();
        prop_assert!(!report.ok, "byte {} of {} changed by {}: {}", at, files[file].display(), delta, report);
    }
}
