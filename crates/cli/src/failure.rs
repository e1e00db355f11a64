//! How commands fail: a message, an optional hint, and an exit code.

use std::fmt::Display;

/// Usage or configuration error (sysexits EX_USAGE).
pub const EXIT_USAGE: u8 = 64;
/// Input data is corrupt, such as a tampered bundle (EX_DATAERR).
pub const EXIT_DATA: u8 = 65;
/// Anything else.
pub const EXIT_FAILURE: u8 = 1;

/// A failed command.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    message: String,
    hint: Option<String>,
}

impl Failure {
    /// A usage or configuration error (exit 64).
    pub fn usage(message: impl Display) -> Self {
        Failure { code: EXIT_USAGE, message: message.to_string(), hint: None }
    }

    /// Corrupt or tampered data (exit 65).
    pub fn data(message: impl Display) -> Self {
        Failure { code: EXIT_DATA, message: message.to_string(), hint: None }
    }

    /// Any other failure (exit 1).
    pub fn other(message: impl Display) -> Self {
        Failure { code: EXIT_FAILURE, message: message.to_string(), hint: None }
    }

    /// A policy check that denies (exit 1, nothing more to print).
    pub fn denied() -> Self {
        Failure { code: EXIT_FAILURE, message: String::new(), hint: None }
    }

    /// Adds a hint on how to fix it.
    pub fn hint(mut self, hint: impl Display) -> Self {
        self.hint = Some(hint.to_string());
        self
    }

    /// The exit code.
    pub fn code(&self) -> u8 {
        self.code
    }

    /// Prints the failure to stderr.
    pub fn print(&self) {
        if self.message.is_empty() {
            return;
        }
        eprintln!("error: {}", self.message);
        if let Some(hint) = &self.hint {
            eprintln!("hint: {hint}");
        }
    }
}

impl From<palisade_bundle::BundleError> for Failure {
    fn from(err: palisade_bundle::BundleError) -> Self {
        use palisade_bundle::BundleError as E;
        match &err {
            E::Manifest(_) | E::ModelFile { .. } => {
                Failure::usage(&err).hint("fix palisade.yaml; the fields are described in docs/manifest.md")
            }
            E::VersionExists { .. } | E::NameTaken { .. } => Failure::usage(&err),
            E::NotFound { .. } => Failure::usage(&err),
            E::Tampered { .. } | E::CorruptRef { .. } => Failure::data(&err).hint(
                "the bundle on disk no longer matches what was built; rebuild it with `palisade build`, or restore the store from a backup",
            ),
            _ => Failure::other(&err),
        }
    }
}
