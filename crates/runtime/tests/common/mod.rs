//! What several test files share: the onnxruntime library.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::Path;

use palisade_runtime::onnxruntime::{self, Library};

/// Set to `1` to run without onnxruntime on a machine that lacks it; CI never sets it, so
/// there the tests that need the library fail when it is missing.
pub const SKIP_ENV: &str = "PALISADE_SKIP_ONNXRUNTIME_TESTS";

/// The onnxruntime library: `PALISADE_ONNXRUNTIME_LIB`, else the repository's test
/// environments (`.venv/e2e`, made by scripts/install-test-deps.sh, or `.venv/fixtures`).
/// Panics when it is missing, unless [`SKIP_ENV`] is `1` (then `None`).
pub fn onnxruntime() -> Option<&'static Library> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = onnxruntime::library_path().or_else(|| {
        ["e2e", "fixtures"]
            .iter()
            .find_map(|venv| onnxruntime::find_in_environment(&repo.join(".venv").join(venv)))
    });
    match path {
        Some(path) => Some(onnxruntime::load(&path).unwrap_or_else(|e| panic!("{e}"))),
        None if std::env::var(SKIP_ENV).is_ok_and(|v| v == "1") => None,
        None => panic!(
            "these tests compare with onnxruntime and need its library: run scripts/install-test-deps.sh \
             (it installs the onnxruntime wheel into .venv/e2e) or set PALISADE_ONNXRUNTIME_LIB; \
             {SKIP_ENV}=1 runs them on tract only"
        ),
    }
}
