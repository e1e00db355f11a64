/// Why a core value could not be constructed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A model name or namespace is not a Kubernetes DNS label.
    #[error(
        "`{value}` is not a valid {what}: {reason} (use 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit)"
    )]
    InvalidName {
        /// What was being named ("model name", "namespace").
        what: &'static str,
        /// The rejected value.
        value: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A version string is unusable.
    #[error("`{value}` is not a valid version: {reason}")]
    InvalidVersion {
        /// The rejected value.
        value: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// An owner entry is not an email, `group:NAME` or `serviceaccount:NS/NAME`.
    #[error(
        "`{value}` is not a valid owner: {reason} (use an email, group:NAME or serviceaccount:NAMESPACE/NAME)"
    )]
    InvalidOwner {
        /// The rejected value.
        value: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// A datatype name is not one of the Open Inference Protocol's.
    #[error(
        "unknown datatype `{0}` (expected one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BF16, BYTES)"
    )]
    UnknownDataType(String),
    /// A tensor's shape does not match its number of elements.
    #[error("tensor `{name}`: shape {shape:?} holds {expected} elements but {actual} were given")]
    ShapeMismatch {
        /// The tensor's name.
        name: String,
        /// The declared shape.
        shape: Vec<usize>,
        /// Elements the shape implies.
        expected: usize,
        /// Elements present.
        actual: usize,
    },
    /// A shape's element count overflows.
    #[error("tensor `{name}`: shape {shape:?} is too large")]
    ShapeOverflow {
        /// The tensor's name.
        name: String,
        /// The declared shape.
        shape: Vec<usize>,
    },
    /// Tensors cannot be stacked or split along their first dimension.
    #[error("tensor `{name}`: {reason}")]
    Rows {
        /// The tensor's name.
        name: String,
        /// What does not fit.
        reason: String,
    },
}
