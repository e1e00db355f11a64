//! Palisade's own implementations of the ONNX-ML operators tract lacks or runs slowly,
//! registered over tract's ONNX front end.
//!
//! * `TreeEnsembleClassifier` and `TreeEnsembleRegressor` ([`tree_ensemble`]) replace
//!   tract's classifier and add the regressor; both evaluate with
//!   [`palisade_onnx_ml`], which reproduces onnxruntime's results.
//! * `ZipMap` ([`zipmap`]) is served as a pass-through: the V2 protocol has no map type,
//!   so the graph output that ZipMap produces (e.g. `output_probability`) keeps its name
//!   and carries the `f32 [N, C]` probability tensor that fed it, its columns ordered by
//!   the ZipMap's `classlabels_*`.
//!
//! Graph outputs declared as sequences of maps have no tract type; the loader parses
//! with `with_ignore_output_types(true)` and `with_ignore_output_shapes(true)` so their
//! facts are inferred from these ops instead.

pub mod tree_ensemble;
pub mod zipmap;

pub use tree_ensemble::{CLASSIFIER_OP, REGRESSOR_OP, TreeEnsembleClassifierOp, TreeEnsembleRegressorOp};

/// Registers Palisade's operators, replacing tract's `TreeEnsembleClassifier`.
pub fn register(reg: &mut tract_onnx::model::OnnxOpRegister) {
    reg.insert("TreeEnsembleClassifier", tree_ensemble::classifier);
    reg.insert("TreeEnsembleRegressor", tree_ensemble::regressor);
    reg.insert("ZipMap", zipmap::zipmap);
}
