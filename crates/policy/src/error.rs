use std::path::PathBuf;

use palisade_core::yaml::LocatedError;

/// Why a policy could not be loaded or a policy set could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A policy document is malformed or breaks one of Istio's validation rules; says
    /// where (file, line, column, field) and why.
    #[error("{0}")]
    Invalid(Box<LocatedError>),
    /// Two policies share a namespace and a name.
    #[error("policy {namespace}/{name} is defined twice ({first} and {second})")]
    Duplicate {
        /// The policies' namespace.
        namespace: String,
        /// The policies' name.
        name: String,
        /// Where the first definition came from.
        first: PathBuf,
        /// Where the second definition came from.
        second: PathBuf,
    },
    /// A [`Settings`](crate::Settings) value is unusable.
    #[error("policy settings: {0}")]
    Settings(String),
}

impl PolicyError {
    /// The location details when the error is about one document.
    pub fn invalid(&self) -> Option<&LocatedError> {
        match self {
            PolicyError::Invalid(invalid) => Some(invalid),
            _ => None,
        }
    }
}

/// Why a request path was refused before authorization; the server answers 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path is empty.
    #[error("the request path is empty")]
    Empty,
    /// The path does not start with `/` (after backslashes are turned into slashes).
    #[error("the request path does not start with '/'")]
    NotAbsolute,
    /// The path contains a NUL byte, raw or as `%00`.
    #[error("the request path contains a NUL byte")]
    Nul,
    /// A `%` is not followed by two hexadecimal digits.
    #[error("the request path has an invalid percent-encoding at byte {0}")]
    InvalidEncoding(usize),
    /// The path is longer than [`MAX_PATH_BYTES`](crate::MAX_PATH_BYTES).
    #[error("the request path is longer than {} bytes", crate::MAX_PATH_BYTES)]
    TooLong,
}
