//! Evaluators for ONNX-ML operators (domain `ai.onnx.ml`) that give the same results as
//! onnxruntime's CPU kernels:
//!
//! * `TreeEnsembleClassifier` and `TreeEnsembleRegressor` (opsets 1 and 3):
//!   [`TreeEnsembleClassifier`] and [`TreeEnsembleRegressor`]; `TreeEnsemble` (opset 5),
//!   rewritten into the latter by [`tree_ensemble`];
//! * `LinearClassifier` and `LinearRegressor` (opset 1): [`LinearClassifier`] and
//!   [`LinearRegressor`];
//! * `Normalizer` (opset 1): [`Normalizer`];
//! * the preprocessing operators of scikit-learn pipelines: `Scaler` ([`Scaler`]),
//!   `Imputer` ([`Imputer`]), `Binarizer` ([`Binarizer`]), `OneHotEncoder`
//!   ([`OneHotEncoder`]), `LabelEncoder` (opsets 1, 2 and 4: [`LabelEncoder`]) and
//!   `FeatureVectorizer` ([`FeatureVectorizer`]), `ArrayFeatureExtractor`
//!   ([`extract_columns`]), `CategoryMapper` ([`CategoryMapper`]);
//! * `SVMClassifier` and `SVMRegressor` (every kernel, Platt probabilities):
//!   [`SvmClassifier`] and [`SvmRegressor`];
//! * the text operators of scikit-learn's text pipelines: `StringNormalizer`
//!   ([`StringNormalizer`]), com.microsoft `Tokenizer` ([`Tokenizer`], RE2's pattern
//!   semantics) and `TfIdfVectorizer` ([`TfIdfVectorizer`]).
//!
//! Sizes that come from a model or a request are checked before memory is reserved:
//! results above [`MAX_ELEMENTS`] elements, or that cannot be allocated, are errors
//! ([`OnnxMlError::TooLarge`]), never an abort.
//!
//! This crate knows nothing of ONNX files or tensor libraries: the caller reads the
//! node's attributes into the operator's attributes struct ([`ClassifierAttributes`],
//! [`LinearClassifierAttributes`], ...), builds an evaluator once (which validates every
//! attribute and fails with an [`OnnxMlError`] naming it), and then evaluates row-major
//! `f32` features. Inputs of other types are cast to `f32` by the caller, as onnxruntime
//! does for `int32`/`int64` inputs (and for `double` ones of linear classifiers); the
//! normalizer reads all four ONNX input types itself.
//!
//! ```
//! use palisade_onnx_ml::{
//!     ClassLabels, ClassifierAttributes, LeafAttributes, NodeAttributes, NodeMode,
//!     PostTransform, TreeEnsembleClassifier,
//! };
//!
//! // One stump: feature 0 <= 0.5 votes for class 0, otherwise for class 1.
//! let nodes = NodeAttributes {
//!     tree_ids: vec![0, 0, 0],
//!     node_ids: vec![0, 1, 2],
//!     feature_ids: vec![0, 0, 0],
//!     values: vec![0.5, 0.0, 0.0],
//!     modes: vec![NodeMode::BranchLeq, NodeMode::Leaf, NodeMode::Leaf],
//!     true_node_ids: vec![1, 0, 0],
//!     false_node_ids: vec![2, 0, 0],
//!     missing_value_tracks_true: vec![],
//! };
//! let leaves = LeafAttributes {
//!     tree_ids: vec![0, 0, 0],
//!     node_ids: vec![1, 2, 2],
//!     ids: vec![0, 1, 2],
//!     weights: vec![1.0, 0.25, 0.75],
//! };
//! let model = TreeEnsembleClassifier::new(ClassifierAttributes {
//!     nodes,
//!     leaves,
//!     class_labels: ClassLabels::Int64(vec![10, 20, 30]),
//!     base_values: vec![],
//!     post_transform: PostTransform::None,
//! })?;
//! let out = model.predict(&[0.0, 1.0], 2, 1)?;
//! assert_eq!(out.labels, vec![0, 2]);
//! assert_eq!(out.scores, vec![1.0, 0.0, 0.0, 0.0, 0.25, 0.75]);
//! # Ok::<(), palisade_onnx_ml::OnnxMlError>(())
//! ```
//!
//! A linear classifier:
//!
//! ```
//! use palisade_onnx_ml::{ClassLabels, LinearClassifier, LinearClassifierAttributes, PostTransform};
//!
//! let model = LinearClassifier::new(LinearClassifierAttributes {
//!     coefficients: vec![1.0, 0.0, 0.0, 1.0],
//!     intercepts: vec![0.0, 0.5],
//!     class_labels: ClassLabels::Strings(vec!["a".into(), "b".into()]),
//!     post_transform: PostTransform::None,
//! })?;
//! let out = model.predict(&[2.0, 1.0, 0.0, 1.0], 2, 2)?;
//! assert_eq!(out.labels, vec![0, 1]);
//! assert_eq!(out.scores, vec![2.0, 1.5, 0.0, 1.5]);
//! # Ok::<(), palisade_onnx_ml::OnnxMlError>(())
//! ```
//!
//! # Matching onnxruntime: tree ensembles
//!
//! Scores are accumulated in `f32`, tree by tree in attribute order, exactly as
//! onnxruntime does with one thread, and the post-transforms repeat its `f32`
//! operations (logistic on `|x|`, softmax after subtracting the maximum, its
//! `SOFTMAX_ZERO`, and probit through its approximation of erfinv). The special cases
//! onnxruntime applies (binary classifiers, unscored classes, single-target regressors)
//! are described on [`TreeEnsembleClassifier`] and [`TreeEnsembleRegressor`].
//!
//! Deliberate differences, each for a model onnxruntime mishandles or a case it leaves
//! undefined:
//!
//! * a tree's nodes must be contiguous in `nodes_treeids` (onnxruntime then counts a
//!   tree once per run), children must not form a cycle, and a classifier needs at
//!   least two classes (onnxruntime returns labels 0/1 or crashes with one);
//! * node ids need not be below the number of nodes, and child ids are looked up by
//!   value within their tree;
//! * in a 2-class model where both classes carry weights, onnxruntime returns the
//!   literal `int64` 0 or 1 as label; Palisade returns the class index, so the label is
//!   `classlabels_int64s[index]` (the same whenever the labels are `[0, 1]`);
//! * where onnxruntime leaves the second score of a 2-class row uninitialized, Palisade
//!   writes 0 (see [`TreeEnsembleClassifier::predict_into`]);
//! * nodes no root reaches are ignored, with their weights (onnxruntime adds the weights
//!   of unreachable leaves to an unrelated leaf);
//! * `double` inputs are cast to `f32` by the caller, whereas onnxruntime compares and
//!   sums them in `f64`: a feature within one `f32` ulp of a threshold may branch
//!   differently, and sums may differ in the last bits.
//!
//! # Matching onnxruntime: linear models and `Normalizer`
//!
//! Linear scores are `X * coefficients^T + intercepts` in `f32`, summed in the order of
//! onnxruntime's SGEMM as MLAS runs it on x86-64 CPUs with AVX2 and FMA3 and one
//! intra-op thread: one order for a batch of one row, another (fused multiply-adds,
//! blocked along the features) for larger batches. Palisade computes the fused
//! multiply-adds exactly without needing the FMA instruction. The post-transforms are
//! onnxruntime's, including MLAS's rational approximation of the logistic function for
//! rows of two or more scores; [`LinearClassifier`] lists the binary special cases, and
//! [`Normalizer`] the normalizer's quirks. On the iris fixtures and on random models
//! (`tests/golden/linear_random.json`) the results are onnxruntime's, bit for bit.
//!
//! Deliberate differences:
//!
//! * for `SOFTMAX` over five or more scores (and over 2 to 4 scores once a batch holds
//!   16384 or 32768 of them), onnxruntime switches to MLAS's vectorized softmax, whose
//!   `exp` differs from libm's; Palisade keeps the scalar softmax, a few ulps apart
//!   (under 2e-7 on the golden cases);
//! * a binary classifier under `PROBIT` writes `[probit(s), 0]`, where onnxruntime
//!   leaves or scrambles memory (see [`LinearClassifier`]);
//! * the input width must be the coefficients' row length (onnxruntime accepts narrower
//!   inputs and then reads the coefficients at the input's stride); a classifier may not
//!   have more labels than intercepts, nor a regressor intercepts of another length than
//!   `targets` (onnxruntime ignores the extra labels or all of the intercepts);
//! * on CPUs without AVX2 and FMA3, and on other architectures, MLAS runs other kernels
//!   and onnxruntime's own results move in the last bits; Palisade's do not;
//! * integer `Normalizer` inputs whose square or absolute value overflows wrap, where
//!   onnxruntime's behavior is undefined.
//!
//! # Performance
//!
//! Trees are flattened into one array of 16-byte nodes, a tree's nodes contiguous and
//! children addressed by index. Eight trees of similar depth are walked in lock step
//! with branch-free steps, so their loads overlap, until all eight sit on a leaf.
//! Evaluation allocates nothing per row, and per call only for ensembles of more than
//! 512 trees or 32 output columns.
//!
//! Linear models evaluate batches four rows at a time, so that four independent chains
//! of multiply-adds overlap, and allocate nothing.

mod alloc;
mod array_feature_extractor;
mod attributes;
mod binarizer;
mod category_mapper;
mod classifier;
mod error;
mod feature_vectorizer;
mod forest;
mod imputer;
mod label_encoder;
mod linear;
mod mlas;
mod normalizer;
mod one_hot_encoder;
mod regressor;
mod scaler;
mod string_normalizer;
mod svm_classifier;
mod svm_kernel;
mod svm_regressor;
mod tfidf_vectorizer;
mod tokenizer;
mod transform;
mod tree_ensemble;

pub use attributes::{
    Aggregate, ClassLabels, ClassifierAttributes, LeafAttributes, LinearClassifierAttributes,
    LinearRegressorAttributes, NodeAttributes, NodeMode, Norm, PostTransform, RegressorAttributes,
};
pub use classifier::{Classification, TreeEnsembleClassifier};
pub use error::OnnxMlError;
pub use forest::{Branch, LeafWeight, TreeNode, Trees};
pub use linear::{LinearClassifier, LinearRegressor};
pub use normalizer::{Normalizer, NormalizerInput};
pub use regressor::TreeEnsembleRegressor;

pub use alloc::{MAX_ELEMENTS, filled};
pub use array_feature_extractor::extract_columns;
pub use binarizer::{Binarizer, BinarizerInput};
pub use category_mapper::CategoryMapper;
pub use feature_vectorizer::FeatureVectorizer;
pub use imputer::Imputer;
pub use label_encoder::{LabelColumn, LabelEncoder};
pub use one_hot_encoder::OneHotEncoder;
pub use scaler::{Scaler, ScalerInput};
pub use string_normalizer::{CaseChange, StringNormalizer, StringNormalizerAttributes};
pub use svm_classifier::{MAX_CLASSES, SvmClassifier, SvmClassifierAttributes};
pub use svm_kernel::{Kernel, KernelType};
pub use svm_regressor::{SvmRegressor, SvmRegressorAttributes};
pub use tfidf_vectorizer::{NgramPool, TfIdfInput, TfIdfMode, TfIdfVectorizer, TfIdfVectorizerAttributes};
pub use tokenizer::{Tokenizer, TokenizerAttributes};
pub use tree_ensemble::{TreeEnsembleAttributes, tree_ensemble};

/// Trees and columns whose per-call scratch lives on the stack rather than the heap.
const STACK_TREES: usize = 512;
const STACK_COLUMNS: usize = 32;

/// `len` elements of `stack` when it is long enough, else of `heap` grown to `len`
/// (fallibly: `len` comes from the model's attributes).
fn scratch<'a, T: Copy + Default>(
    stack: &'a mut [T],
    heap: &'a mut Vec<T>,
    len: usize,
) -> Result<&'a mut [T], OnnxMlError> {
    match stack.get_mut(..len) {
        Some(slice) => Ok(slice),
        None => {
            alloc::grow(heap, len, T::default())?;
            Ok(heap)
        }
    }
}

/// Sums the weights of `leaves` per column, tree by tree, flagging the columns any
/// weight reached (`has`): onnxruntime's accumulation for sums and classifiers.
fn accumulate_sums(forest: &forest::Forest, leaves: &[u32], sums: &mut [f32], has: &mut [bool]) {
    sums.fill(0.0);
    if forest.has_dense_weights() {
        let n_columns = sums.len();
        for &leaf in leaves {
            for (s, w) in sums.iter_mut().zip(forest.leaf_dense(leaf, n_columns)) {
                *s += w;
            }
        }
        has.fill(!leaves.is_empty());
        return;
    }
    has.fill(false);
    for &leaf in leaves {
        for w in forest.leaf_weights(leaf) {
            let c = w.column as usize;
            if let (Some(s), Some(h)) = (sums.get_mut(c), has.get_mut(c)) {
                *s += w.value;
                *h = true;
            }
        }
    }
}

/// Checks the feature buffer against its announced shape and the ensemble's needs.
fn check_input(
    features: &[f32],
    n_rows: usize,
    n_features: usize,
    required_features: usize,
) -> Result<(), OnnxMlError> {
    check_input_len(features.len(), n_rows, n_features)?;
    if n_features < required_features && n_rows > 0 {
        return Err(OnnxMlError::MissingFeature { feature: required_features - 1, n_features });
    }
    Ok(())
}

/// Checks an input buffer of `len` values holds `n_rows` rows of `n_features`.
fn check_input_len(len: usize, n_rows: usize, n_features: usize) -> Result<(), OnnxMlError> {
    if n_rows.checked_mul(n_features) == Some(len) {
        return Ok(());
    }
    let expected = n_rows.saturating_mul(n_features);
    Err(OnnxMlError::InputSize { n_rows, n_features, expected, actual: len })
}

/// Checks the length of an output buffer.
fn check_output(output: &'static str, actual: usize, expected: usize) -> Result<(), OnnxMlError> {
    if actual == expected { Ok(()) } else { Err(OnnxMlError::OutputSize { output, expected, actual }) }
}
