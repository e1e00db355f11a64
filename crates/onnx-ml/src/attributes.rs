//! The operators' attributes, as read from an ONNX node, before validation.

use std::str::FromStr;

use crate::OnnxMlError;

/// How a node compares its feature with its threshold (`nodes_modes`).
///
/// The feature goes to the *true* child when the comparison holds. NaN features
/// follow IEEE comparisons (only `BRANCH_NEQ` holds) unless the node's
/// `nodes_missing_value_tracks_true` entry is 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeMode {
    /// `feature <= threshold`.
    BranchLeq,
    /// `feature < threshold`.
    BranchLt,
    /// `feature >= threshold`.
    BranchGte,
    /// `feature > threshold`.
    BranchGt,
    /// `feature == threshold`.
    BranchEq,
    /// `feature != threshold`.
    BranchNeq,
    /// A leaf: carries weights, has no children.
    Leaf,
}

impl FromStr for NodeMode {
    type Err = OnnxMlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "BRANCH_LEQ" => NodeMode::BranchLeq,
            "BRANCH_LT" => NodeMode::BranchLt,
            "BRANCH_GTE" => NodeMode::BranchGte,
            "BRANCH_GT" => NodeMode::BranchGt,
            "BRANCH_EQ" => NodeMode::BranchEq,
            "BRANCH_NEQ" => NodeMode::BranchNeq,
            "LEAF" => NodeMode::Leaf,
            other => return Err(OnnxMlError::unknown_value("nodes_modes", other)),
        })
    }
}

/// The function applied to the aggregated scores (`post_transform`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PostTransform {
    /// Scores are returned as aggregated.
    #[default]
    None,
    /// Softmax over each row, after subtracting the row maximum.
    Softmax,
    /// `1 / (1 + exp(-x))` per score.
    Logistic,
    /// Softmax that leaves scores within 1e-7 of zero (almost) at zero.
    SoftmaxZero,
    /// `sqrt(2) * erfinv(2x - 1)` per score, with onnxruntime's erfinv approximation.
    Probit,
}

impl FromStr for PostTransform {
    type Err = OnnxMlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "NONE" => PostTransform::None,
            "SOFTMAX" => PostTransform::Softmax,
            "LOGISTIC" => PostTransform::Logistic,
            "SOFTMAX_ZERO" => PostTransform::SoftmaxZero,
            "PROBIT" => PostTransform::Probit,
            other => return Err(OnnxMlError::unknown_value("post_transform", other)),
        })
    }
}

/// How a regressor combines the leaves of its trees (`aggregate_function`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Aggregate {
    /// Sum of the leaf weights.
    #[default]
    Sum,
    /// Sum divided by the number of trees.
    Average,
    /// Smallest leaf weight.
    Min,
    /// Largest leaf weight.
    Max,
}

impl FromStr for Aggregate {
    type Err = OnnxMlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "SUM" => Aggregate::Sum,
            "AVERAGE" => Aggregate::Average,
            "MIN" => Aggregate::Min,
            "MAX" => Aggregate::Max,
            other => return Err(OnnxMlError::unknown_value("aggregate_function", other)),
        })
    }
}

/// The classifier's labels: exactly one of `classlabels_int64s` or `classlabels_strings`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClassLabels {
    /// `classlabels_int64s`.
    Int64(Vec<i64>),
    /// `classlabels_strings`.
    Strings(Vec<String>),
}

impl ClassLabels {
    /// Number of classes.
    pub fn len(&self) -> usize {
        match self {
            ClassLabels::Int64(v) => v.len(),
            ClassLabels::Strings(v) => v.len(),
        }
    }

    /// Whether there are no classes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The `nodes_*` attributes: one tuple per node, associated by position.
///
/// `nodes_hitrates` is not used for inference and is not carried.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeAttributes {
    /// `nodes_treeids`: the tree of each node. A tree's nodes must be contiguous, and
    /// its first node is its root.
    pub tree_ids: Vec<i64>,
    /// `nodes_nodeids`: the id of each node within its tree.
    pub node_ids: Vec<i64>,
    /// `nodes_featureids`: the feature a branch node reads (ignored for leaves).
    pub feature_ids: Vec<i64>,
    /// `nodes_values` (or `nodes_values_as_tensor`, rounded to f32): the thresholds.
    pub values: Vec<f32>,
    /// `nodes_modes`.
    pub modes: Vec<NodeMode>,
    /// `nodes_truenodeids`: the child taken when the comparison holds.
    pub true_node_ids: Vec<i64>,
    /// `nodes_falsenodeids`: the child taken otherwise.
    pub false_node_ids: Vec<i64>,
    /// `nodes_missing_value_tracks_true`: whether a NaN feature goes to the true child.
    /// May be shorter than the other vectors (or empty); missing entries are `false`.
    pub missing_value_tracks_true: Vec<bool>,
}

/// The leaf weights: `class_*` for the classifier, `target_*` for the regressor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeafAttributes {
    /// `class_treeids` / `target_treeids`.
    pub tree_ids: Vec<i64>,
    /// `class_nodeids` / `target_nodeids`: must name a node of that tree. Weights on
    /// branch nodes are ignored, as onnxruntime does.
    pub node_ids: Vec<i64>,
    /// `class_ids` / `target_ids`: the output column the weight adds to.
    pub ids: Vec<i64>,
    /// `class_weights` / `target_weights` (or their `_as_tensor` forms, rounded to f32).
    pub weights: Vec<f32>,
}

/// Everything `TreeEnsembleClassifier` (ai.onnx.ml opsets 1 and 3) is configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierAttributes {
    /// The trees.
    pub nodes: NodeAttributes,
    /// The `class_*` leaf weights.
    pub leaves: LeafAttributes,
    /// The labels; their number is the number of classes (at least 2).
    pub class_labels: ClassLabels,
    /// `base_values`: empty, or one per class; a 2-class model may also have exactly one.
    pub base_values: Vec<f32>,
    /// `post_transform`.
    pub post_transform: PostTransform,
}

/// Everything `TreeEnsembleRegressor` (ai.onnx.ml opsets 1 and 3) is configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct RegressorAttributes {
    /// The trees.
    pub nodes: NodeAttributes,
    /// The `target_*` leaf weights.
    pub leaves: LeafAttributes,
    /// `n_targets`: number of output columns (at least 1).
    pub n_targets: i64,
    /// `base_values`: empty or one per target.
    pub base_values: Vec<f32>,
    /// `post_transform`. With one target only `PROBIT` has an effect, as in onnxruntime.
    pub post_transform: PostTransform,
    /// `aggregate_function`.
    pub aggregate_function: Aggregate,
}

/// Everything `LinearClassifier` (ai.onnx.ml opset 1) is configured with.
///
/// `multi_class` is not carried: onnxruntime ignores it, and so does Palisade.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearClassifierAttributes {
    /// `coefficients`: row-major `[n_targets, n_features]`, one row per intercept.
    pub coefficients: Vec<f32>,
    /// `intercepts`: one per target; their number is the number of targets (at least 1).
    pub intercepts: Vec<f32>,
    /// `classlabels_ints` or `classlabels_strings`: exactly 2 labels for a single target
    /// (a binary classifier), otherwise one per target.
    pub class_labels: ClassLabels,
    /// `post_transform`.
    pub post_transform: PostTransform,
}

/// Everything `LinearRegressor` (ai.onnx.ml opset 1) is configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearRegressorAttributes {
    /// `coefficients`: row-major `[targets, n_features]`.
    pub coefficients: Vec<f32>,
    /// `intercepts`: empty, or one per target.
    pub intercepts: Vec<f32>,
    /// `targets`: number of outputs per row (at least 1; ONNX's default is 1).
    pub targets: i64,
    /// `post_transform`. With one target only `PROBIT` has an effect, as in onnxruntime.
    pub post_transform: PostTransform,
}

/// How `Normalizer` scales each row (`norm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Norm {
    /// Divide by the row maximum (unless it is 0).
    #[default]
    Max,
    /// Divide by the sum of absolute values (unless it is 0).
    L1,
    /// Divide by the Euclidean norm (unless it is 0).
    L2,
}

impl FromStr for Norm {
    type Err = OnnxMlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "MAX" => Norm::Max,
            "L1" => Norm::L1,
            "L2" => Norm::L2,
            other => return Err(OnnxMlError::unknown_value("norm", other)),
        })
    }
}
