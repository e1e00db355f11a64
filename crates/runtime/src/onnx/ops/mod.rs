//! Palisade's own implementations of the ONNX-ML operators tract lacks or runs slowly,
//! registered over tract's ONNX front end. One file per operator; `node` reads
//! attributes and wires inputs for all of them.
//!
//! * `TreeEnsembleClassifier` and `TreeEnsembleRegressor` ([`tree_ensemble`]) replace
//!   tract's classifier and add the regressor; both evaluate with
//!   [`palisade_onnx_ml`], which reproduces onnxruntime's results; `TreeEnsemble`
//!   (ai.onnx.ml opset 5) is rewritten into the regressor's ensemble, in the input's
//!   float type.
//! * `LinearClassifier` and `LinearRegressor` ([`linear`]) and `Normalizer`
//!   ([`normalizer`]) replace tract's expansions (a dozen nodes for a classifier) by one
//!   op each, evaluated with [`palisade_onnx_ml`] in onnxruntime's arithmetic.
//! * `ZipMap` ([`zipmap`]) is served as a pass-through: the V2 protocol has no map type,
//!   so the graph output that ZipMap produces (e.g. `output_probability`) keeps its name
//!   and carries the `f32 [N, C]` probability tensor that fed it, its columns ordered by
//!   the ZipMap's `classlabels_*`.
//! * `Cast` ([`cast`]) to `int64` of an `int64` tensor is the identity, which the
//!   optimizer removes (tract would convert every element to a symbolic dimension and
//!   back); every other cast is tract's.
//!
//! * `Softmax` ([`softmax`]) over `f32` rows is computed row by row, so that a row's
//!   probabilities never depend on its place in a batch; other softmaxes are tract's.
//!
//! * The preprocessing operators of scikit-learn pipelines, `Scaler` ([`scaler`]),
//!   `Imputer` ([`imputer`]), `Binarizer` ([`binarizer`]), `OneHotEncoder`
//!   ([`one_hot_encoder`]), `LabelEncoder` ([`label_encoder`]) and `FeatureVectorizer`
//!   ([`feature_vectorizer`]), `ArrayFeatureExtractor` ([`array_feature_extractor`],
//!   replacing tract's, which drops the axis of a scalar index), `CategoryMapper`
//!   ([`category_mapper`], replacing tract's), and `SVMClassifier` / `SVMRegressor`
//!   ([`svm_classifier`], [`svm_regressor`]): tract has none of them; each evaluates
//!   with [`palisade_onnx_ml`] through the shared plumbing of `kernel`.
//!
//! * The text operators of scikit-learn's text pipelines, `StringNormalizer`
//!   ([`string_normalizer`]), com.microsoft `Tokenizer` ([`tokenizer`]) and
//!   `TfIdfVectorizer` ([`tfidf_vectorizer`]): tract has none of them. The tokenizer's
//!   output width (and the normalizer's, with stopwords) depends on the strings: it is
//!   a symbol of its own, bound at run time.
//!
//! * `Gemm` ([`gemm`]) and `Flatten` ([`flatten`]) are tract's with a fix each: `alpha`
//!   and `beta` in the operands' type (tract's `f32` constants broke `float16` networks),
//!   and a rank-2 flatten that keeps two symbolic dimensions.
//!
//! Graph outputs declared as sequences of maps have no tract type; the loader parses
//! with `with_ignore_output_types(true)` and `with_ignore_output_shapes(true)` so their
//! facts are inferred from these ops instead.

pub mod array_feature_extractor;
pub mod binarizer;
pub mod cast;
pub mod category_mapper;
pub mod feature_vectorizer;
mod flatten;
mod gemm;
pub mod imputer;
mod kernel;
pub mod label_encoder;
pub mod linear;
mod node;
pub mod normalizer;
pub mod one_hot_encoder;
pub mod scaler;
pub mod softmax;
pub mod string_normalizer;
pub mod svm_classifier;
pub mod svm_regressor;
pub mod tfidf_vectorizer;
pub mod tokenizer;
pub mod tree_ensemble;
pub mod zipmap;

pub use linear::{LINEAR_CLASSIFIER_OP, LINEAR_REGRESSOR_OP, LinearClassifierOp, LinearRegressorOp};
pub use normalizer::{NORMALIZER_OP, NormalizerOp};
pub use tree_ensemble::{
    CLASSIFIER_OP, FoundEnsemble, FoundTrees, Preprocessing, REGRESSOR_OP, TreeEnsembleClassifierOp,
    TreeEnsembleRegressorOp, find_ensemble,
};

/// A value of the caller's inputs that an operator refuses while the model runs (a
/// category its encoder was not trained on), raised inside tract's run and turned into
/// [`crate::RuntimeError::InputRefused`] by the model's run. The message names the input,
/// the row and the value: it is for the caller, who sent the value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RefusedValue(String);

/// Registers Palisade's operators, replacing tract's where it has them.
pub fn register(reg: &mut tract_onnx::model::OnnxOpRegister) {
    reg.insert("TreeEnsembleClassifier", tree_ensemble::classifier);
    reg.insert("TreeEnsembleRegressor", tree_ensemble::regressor);
    reg.insert("TreeEnsemble", tree_ensemble::tree_ensemble);
    reg.insert("LinearClassifier", linear::classifier);
    reg.insert("LinearRegressor", linear::regressor);
    reg.insert("Normalizer", normalizer::normalizer);
    reg.insert("ZipMap", zipmap::zipmap);
    reg.insert("Cast", cast::cast);
    reg.insert("Softmax", softmax::softmax);
    reg.insert("Scaler", scaler::scaler);
    reg.insert("Imputer", imputer::imputer);
    reg.insert("Binarizer", binarizer::binarizer);
    reg.insert("OneHotEncoder", one_hot_encoder::one_hot_encoder);
    reg.insert("LabelEncoder", label_encoder::label_encoder);
    reg.insert("FeatureVectorizer", feature_vectorizer::feature_vectorizer);
    reg.insert("SVMClassifier", svm_classifier::svm_classifier);
    reg.insert("SVMRegressor", svm_regressor::svm_regressor);
    reg.insert("ArrayFeatureExtractor", array_feature_extractor::array_feature_extractor);
    reg.insert("StringNormalizer", string_normalizer::string_normalizer);
    reg.insert("TfIdfVectorizer", tfidf_vectorizer::tfidf_vectorizer);
    reg.insert("Tokenizer", tokenizer::tokenizer);
    reg.insert("Flatten", flatten::flatten);
    reg.insert("Gemm", gemm::gemm);
    reg.insert("CategoryMapper", category_mapper::category_mapper);
}
