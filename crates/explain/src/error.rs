//! The crate's one error type.

/// Why an explanation, a score or a test could not be computed.
///
/// Every function that takes sizes or rows from outside (a request, a bundle, a
/// background file) returns one of these rather than panicking.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExplainError {
    /// A buffer does not hold the announced number of rows and columns.
    #[error("{what}: expected {expected} values ({rows} rows of {columns}), got {actual}")]
    Shape {
        /// Which input.
        what: &'static str,
        /// Rows announced.
        rows: usize,
        /// Columns announced.
        columns: usize,
        /// `rows * columns`.
        expected: usize,
        /// Values given.
        actual: usize,
    },
    /// A row is narrower than the model reads.
    #[error("rows have {actual} features but the model reads {required}")]
    TooFewFeatures {
        /// Features the model reads.
        required: usize,
        /// Features given.
        actual: usize,
    },
    /// Reference or background data with no rows (or too few for the statistic).
    #[error("{what} needs at least {min} rows, got {actual}")]
    TooFewRows {
        /// Which data.
        what: &'static str,
        /// Rows needed.
        min: usize,
        /// Rows given.
        actual: usize,
    },
    /// A size past a limit: refused before memory is reserved.
    #[error("{what} would need {requested} elements, more than the limit of {limit}")]
    TooLarge {
        /// What would be allocated or computed.
        what: &'static str,
        /// Elements requested (saturated on overflow).
        requested: usize,
        /// The limit.
        limit: usize,
    },
    /// A value that must be finite is NaN or infinite.
    #[error("{what} holds a value that is not finite (row {row}, column {column})")]
    NotFinite {
        /// Which data.
        what: &'static str,
        /// Row of the value.
        row: usize,
        /// Column of the value.
        column: usize,
    },
    /// A model this explainer cannot explain exactly, and why.
    #[error("unsupported model: {0}")]
    Unsupported(String),
    /// Covers that do not belong to the ensemble (another model, or edited).
    #[error("covers do not match the ensemble: {0}")]
    InvalidCovers(String),
    /// An argument out of its range (a quantile outside [0, 1], a zero window).
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// The argument.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The model called by KernelSHAP failed or answered the wrong number of values.
    #[error("the model failed while explaining: {0}")]
    Model(String),
    /// A linear system without a unique solution.
    #[error("{0} is singular")]
    Singular(&'static str),
}

/// Checks `len == rows * columns`.
pub(crate) fn check_shape(
    what: &'static str,
    len: usize,
    rows: usize,
    columns: usize,
) -> Result<(), ExplainError> {
    if rows.checked_mul(columns) == Some(len) {
        return Ok(());
    }
    Err(ExplainError::Shape { what, rows, columns, expected: rows.saturating_mul(columns), actual: len })
}

/// Most elements one call allocates for one result (2^28: 2 GiB of `f64`).
pub const MAX_ELEMENTS: usize = 1 << 28;

/// `len` copies of `value`, refusing sizes over `limit` and failed allocations.
pub(crate) fn filled<T: Clone>(
    what: &'static str,
    len: usize,
    limit: usize,
    value: T,
) -> Result<Vec<T>, ExplainError> {
    let too_large = || ExplainError::TooLarge { what, requested: len, limit };
    if len > limit {
        return Err(too_large());
    }
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| too_large())?;
    v.resize(len, value);
    Ok(v)
}

/// `a * b`, saturating (a saturated size is then refused by a limit).
pub(crate) fn product(a: usize, b: usize) -> usize {
    a.saturating_mul(b)
}
