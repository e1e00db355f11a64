//! Finding the Palisade home directory.

use std::path::{Path, PathBuf};

use crate::failure::Failure;

/// `--home`, else `$PALISADE_HOME`, else `~/.palisade`.
pub fn resolve(flag: Option<&Path>) -> Result<PathBuf, Failure> {
    if let Some(path) = flag {
        return Ok(path.to_owned());
    }
    if let Some(path) = std::env::var_os("PALISADE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".palisade")),
        None => Err(Failure::usage("cannot find a home directory: $HOME is not set")
            .hint("pass --home PATH or set PALISADE_HOME")),
    }
}
