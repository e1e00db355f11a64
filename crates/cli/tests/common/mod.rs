//! What the CLI's integration tests share.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's root (fixtures, examples).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `palisade --home HOME build DIR --output json`.
pub fn build_json(home: &Path, dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .arg("--home")
        .arg(home)
        .args(["build", dir.to_str().unwrap(), "--output", "json"])
        .output()
        .unwrap()
}
