//! Palisade's wire protocols: the Open Inference Protocol V2 over REST (with Triton's binary
//! tensor extension) and over gRPC, KServe's V1 prediction protocol, and the Seldon Core v1
//! prediction protocol over REST and gRPC.
//!
//! Parsers here take untrusted bytes: they never panic, and every error says what to fix.
//! Model-specific checks (does the input exist, is the datatype right) belong to the caller,
//! which knows the model's signature.

mod data;
pub mod grpc;
mod json;
pub mod kserve_v1;
pub mod seldon;
pub mod v2;

use std::fmt;

/// A request that cannot be understood; always the caller's fault (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    message: String,
}

impl ProtocolError {
    /// An error with a message for the caller.
    pub fn new(message: impl Into<String>) -> Self {
        ProtocolError { message: message.into() }
    }

    /// An error about one input tensor.
    pub fn input(name: &str, message: impl fmt::Display) -> Self {
        let name: String = name.chars().take(64).collect();
        ProtocolError { message: format!("input `{name}`: {message}") }
    }

    fn json(err: &serde_json::Error) -> Self {
        ProtocolError { message: format!("invalid JSON body: {err}") }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ProtocolError {}

/// Refuses bodies that are not a JSON object (serde would accept a struct written as an array).
fn expect_object(body: &[u8]) -> Result<(), ProtocolError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(()),
        None => Err(ProtocolError::new("the body is empty: send a JSON object")),
        Some(_) => Err(ProtocolError::new("the body must be a JSON object")),
    }
}
