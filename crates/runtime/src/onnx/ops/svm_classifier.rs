//! `SVMClassifier` (ai.onnx.ml opset 1), evaluated by [`palisade_onnx_ml::SvmClassifier`].
//!
//! Outputs the labels `[N]` (int64 or string) and the scores `[N, S]` (see
//! [`palisade_onnx_ml::SvmClassifier::score_columns`]). Inputs of `double`, `int64` and
//! `int32` are cast to `f32`, as onnxruntime does.

use palisade_onnx_ml::{SvmClassifier, SvmClassifierAttributes};
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::kernel::{Kernel, as_f32, expansion, is_ml_numeric, rows_and_columns, tensor};
use super::node::{class_labels, floats, ints, label_tensor, label_type, parse};

/// Name of the typed op in optimized models.
pub const SVM_CLASSIFIER_OP: &str = "PalisadeSVMClassifier";

/// Builds the classifier from an ONNX node.
pub(super) fn svm_classifier(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let svm = SvmClassifier::new(SvmClassifierAttributes {
        kernel_type: parse(node, "kernel_type", "LINEAR")?,
        kernel_params: floats(ctx, node, "kernel_params")?,
        vectors_per_class: ints(node, "vectors_per_class")?,
        support_vectors: floats(ctx, node, "support_vectors")?,
        coefficients: floats(ctx, node, "coefficients")?,
        rho: floats(ctx, node, "rho")?,
        prob_a: floats(ctx, node, "prob_a")?,
        prob_b: floats(ctx, node, "prob_b")?,
        class_labels: class_labels(node, "classlabels_ints")?,
        post_transform: parse(node, "post_transform", "NONE")?,
    })?;
    Ok((expansion(SvmClassifierKernel(svm)), vec![]))
}

#[derive(Debug, Clone, PartialEq)]
struct SvmClassifierKernel(SvmClassifier);

impl Kernel for SvmClassifierKernel {
    fn onnx_name(&self) -> &'static str {
        "SVMClassifier"
    }

    fn typed_name(&self) -> &'static str {
        SVM_CLASSIFIER_OP
    }

    fn n_outputs(&self) -> usize {
        2
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        s.equals(&outputs[0].datum_type, label_type(self.0.class_labels()))?;
        s.equals(&outputs[1].datum_type, DatumType::F32)?;
        s.equals(&outputs[0].rank, 1)?;
        s.equals(&outputs[1].rank, 2)?;
        s.equals(&outputs[1].shape[1], self.0.score_columns().to_dim())?;
        s.given(&inputs[0].rank, move |s, rank| {
            if rank == 1 {
                s.equals(&outputs[0].shape[0], 1.to_dim())?;
            } else {
                s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
            }
            s.equals(&outputs[1].shape[0], &outputs[0].shape[0])
        })?;
        Ok(())
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let x = inputs[0];
        ensure!(is_ml_numeric(x.datum_type), "SVMClassifier takes float, double, int64 or int32 inputs");
        let n = match x.rank() {
            1 => 1.to_dim(),
            2 => x.shape[0].clone(),
            _ => bail!("SVMClassifier expects an input of shape [N, F]"),
        };
        Ok(tvec!(
            label_type(self.0.class_labels()).fact(tvec![n.clone()]),
            f32::fact(tvec![n, self.0.score_columns().to_dim()])
        ))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let (rows, _) = rows_and_columns("SVMClassifier", x.shape())?;
        let features = as_f32("SVMClassifier", &x)?;
        let out = self.0.predict(&features, rows)?;
        let labels = label_tensor(self.0.class_labels(), &out.labels)?;
        let scores = tensor(&[rows, self.0.score_columns()], out.scores)?;
        Ok(tvec!(labels.into_tvalue(), scores.into_tvalue()))
    }
}
