//! The one error type of this crate.

/// Why an operator could not be built from its attributes, or could not be evaluated.
///
/// Construction errors name the ONNX attribute at fault (`nodes_truenodeids`,
/// `class_ids`, `coefficients`, ...) so a model author can find it; evaluation errors
/// describe the input. No variant carries feature values.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum OnnxMlError {
    /// Two attributes that describe the same tuples have different lengths.
    #[error("attribute `{attribute}` has {actual} entries but `{reference}` has {expected}")]
    LengthMismatch {
        /// The attribute with the unexpected length.
        attribute: &'static str,
        /// Its length.
        actual: usize,
        /// The attribute it must agree with.
        reference: &'static str,
        /// That attribute's length.
        expected: usize,
    },
    /// A string attribute holds a value the operator does not define.
    #[error("attribute `{attribute}`: unknown value `{value}`")]
    UnknownValue {
        /// The attribute.
        attribute: &'static str,
        /// The offending value (truncated to 64 characters).
        value: String,
    },
    /// One entry of an integer attribute is out of its allowed range.
    #[error("attribute `{attribute}`[{index}] = {value}: {reason}")]
    InvalidEntry {
        /// The attribute.
        attribute: &'static str,
        /// Position of the entry.
        index: usize,
        /// The entry.
        value: i64,
        /// What was expected.
        reason: &'static str,
    },
    /// A (tree id, node id) pair appears twice in `nodes_nodeids`.
    #[error("attribute `nodes_nodeids`[{index}]: node {node_id} appears twice in tree {tree_id}")]
    DuplicateNode {
        /// Position of the second occurrence.
        index: usize,
        /// Tree id.
        tree_id: i64,
        /// Node id.
        node_id: i64,
    },
    /// A child id or a leaf weight refers to a node its tree does not have.
    #[error("attribute `{attribute}`[{index}]: tree {tree_id} has no node {node_id}")]
    UnknownNode {
        /// The attribute holding the reference.
        attribute: &'static str,
        /// Position of the reference.
        index: usize,
        /// Tree id.
        tree_id: i64,
        /// The missing node id.
        node_id: i64,
    },
    /// The nodes of one tree are split into several runs of `nodes_treeids`.
    #[error(
        "attribute `nodes_treeids`[{index}]: tree {tree_id} continues after another tree \
         started; the nodes of a tree must be contiguous"
    )]
    NonContiguousTree {
        /// Position where the tree id reappears.
        index: usize,
        /// Tree id.
        tree_id: i64,
    },
    /// Following children from a tree's root comes back to a node already on the path.
    #[error(
        "attributes `nodes_truenodeids`/`nodes_falsenodeids`: tree {tree_id} has a cycle through node {node_id}"
    )]
    Cycle {
        /// Tree id.
        tree_id: i64,
        /// A node on the cycle.
        node_id: i64,
    },
    /// An attribute is inconsistent in a way the other variants do not describe.
    #[error("attribute `{attribute}`: {reason}")]
    InvalidAttribute {
        /// The attribute.
        attribute: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The feature buffer does not hold `n_rows * n_features` values.
    #[error("input holds {actual} values but {n_rows} rows of {n_features} features need {expected}")]
    InputSize {
        /// Rows announced by the caller.
        n_rows: usize,
        /// Features per row announced by the caller.
        n_features: usize,
        /// `n_rows * n_features` (saturating).
        expected: usize,
        /// Length of the buffer.
        actual: usize,
    },
    /// The input rows do not have the width a linear model's coefficients are laid out for.
    #[error("the model has coefficients for {expected} features but the input has {actual} features per row")]
    FeatureCount {
        /// Features per row the coefficients describe.
        expected: usize,
        /// Features per row in the input.
        actual: usize,
    },
    /// The input rows are narrower than the ensemble needs.
    #[error("the ensemble reads feature {feature} but the input has {n_features} features per row")]
    MissingFeature {
        /// Highest feature index a branch node reads.
        feature: usize,
        /// Features per row in the input.
        n_features: usize,
    },
    /// An output buffer has the wrong length.
    #[error("output `{output}` holds {actual} values, expected {expected}")]
    OutputSize {
        /// Which output (`labels`, `scores`, `values`).
        output: &'static str,
        /// Required length.
        expected: usize,
        /// Length of the buffer.
        actual: usize,
    },
    /// An input value the operator refuses (NaN where onnxruntime fails on NaN).
    #[error("{0}")]
    InvalidInput(String),
    /// The input value at `index` (row-major, in the operator's input) is not one of the
    /// operator's categories, and the model asks for an error rather than a default
    /// (`OneHotEncoder` with `zeros = 0`, scikit-learn's `handle_unknown="error"`). The
    /// value is the caller's, so the caller may be shown it; this error names its
    /// position only.
    #[error(
        "input value {index} is not one of the {categories} categories and the model refuses unknown ones"
    )]
    UnknownCategory {
        /// Position of the value in the operator's input.
        index: usize,
        /// Number of categories the operator knows.
        categories: usize,
    },
    /// An output or working buffer would exceed [`crate::MAX_ELEMENTS`] elements, or
    /// could not be allocated.
    #[error("the result would hold {elements} elements, more than this operator can allocate")]
    TooLarge {
        /// Elements requested (saturating).
        elements: usize,
    },
    /// A classifier row reached only leaves without weights and there are no base values,
    /// so no class has a score (onnxruntime fails the same way).
    #[error("row {row}: no class received a score, so no label can be chosen")]
    NoScore {
        /// The row.
        row: usize,
    },
}

impl OnnxMlError {
    pub(crate) fn unknown_value(attribute: &'static str, value: &str) -> Self {
        let value: String = value.chars().take(64).collect();
        OnnxMlError::UnknownValue { attribute, value }
    }
}
