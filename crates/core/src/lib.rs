//! Palisade's core vocabulary: model identities, owners, tensors and their datatypes.
//!
//! This crate has no I/O and no async runtime, so every other crate (and the fuzzers)
//! can depend on it cheaply. Types here are parsed, not validated: a value of
//! [`ModelName`] or [`Tensor`] is valid by construction.

pub mod diff;
mod duration;
mod error;
pub mod hex;
mod ids;
mod owner;
pub mod quiet;
mod rows;
mod tensor;
pub mod yaml;

pub use duration::{format_duration, parse_duration};
pub use error::CoreError;
pub use ids::{ModelName, ModelRef, Namespace, Version};
pub use owner::Owner;
pub use tensor::{DataType, Dim, ModelSignature, Tensor, TensorData, TensorSpec};
