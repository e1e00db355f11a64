//! `LinearClassifier` and `LinearRegressor` (ai.onnx.ml opset 1), evaluated by
//! [`palisade_onnx_ml`].
//!
//! Parsing validates the attributes once (a malformed model fails at load time, naming
//! the attribute). The inference-level op ([`Expansion`]) requires an `[N, F]` input
//! whose width is the coefficients' row length, casts `f64`/`i64`/`i32` inputs to `f32`
//! and wires one typed op for the whole batch; tract's own versions expand into a dozen
//! nodes instead.

use std::sync::Arc;

use palisade_onnx_ml::{
    LinearClassifier, LinearClassifierAttributes, LinearRegressor, LinearRegressorAttributes,
};
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::node::{
    class_labels, floats, label_tensor, label_type, parse, rows_and_features, wire_f32_input, zero_rows,
};

/// Name of the typed classifier op in optimized models.
pub const LINEAR_CLASSIFIER_OP: &str = "PalisadeLinearClassifier";
/// Name of the typed regressor op in optimized models.
pub const LINEAR_REGRESSOR_OP: &str = "PalisadeLinearRegressor";

/// Builds the classifier from an ONNX node.
pub(super) fn classifier(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let model = LinearClassifier::new(LinearClassifierAttributes {
        coefficients: floats(ctx, node, "coefficients")?,
        intercepts: floats(ctx, node, "intercepts")?,
        class_labels: class_labels(node, "classlabels_ints")?,
        post_transform: parse(node, "post_transform", "NONE")?,
    })?;
    Ok((expand(ClassifierExpansion { model: Arc::new(model) }), vec![]))
}

/// Builds the regressor from an ONNX node.
pub(super) fn regressor(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let model = LinearRegressor::new(LinearRegressorAttributes {
        coefficients: floats(ctx, node, "coefficients")?,
        intercepts: floats(ctx, node, "intercepts")?,
        targets: node.get_attr_opt::<i64>("targets")?.unwrap_or(1),
        post_transform: parse(node, "post_transform", "NONE")?,
    })?;
    Ok((expand(RegressorExpansion { model: Arc::new(model) }), vec![]))
}

/// Checks a typed input fact is `[N, n_features]`; returns `N`.
fn batch_dim(op: &str, input: &TypedFact, n_features: usize) -> TractResult<TDim> {
    ensure!(input.rank() == 2, "{op} expects an input of shape [N, F], got {:?}", input.shape);
    if let Ok(width) = input.shape[1].to_usize() {
        ensure!(
            width == n_features,
            "{op} has coefficients for {n_features} features but its input has {width}"
        );
    }
    Ok(input.shape[0].clone())
}

#[derive(Debug, Clone)]
struct ClassifierExpansion {
    model: Arc<LinearClassifier>,
}

impl Expansion for ClassifierExpansion {
    fn name(&self) -> StaticName {
        "LinearClassifier".into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(2)
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 2)?;
        s.equals(&inputs[0].rank, 2)?;
        s.equals(&inputs[0].shape[1], self.model.n_features().to_dim())?;
        s.equals(&outputs[0].datum_type, label_type(self.model.class_labels()))?;
        s.equals(&outputs[1].datum_type, DatumType::F32)?;
        s.equals(&outputs[0].rank, 1)?;
        s.equals(&outputs[1].rank, 2)?;
        s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[1].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[1].shape[1], self.model.n_classes().to_dim())?;
        Ok(())
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let x = wire_f32_input("LinearClassifier", prefix, model, inputs[0])?;
        model.wire_node(prefix, LinearClassifierOp { model: self.model.clone() }, &[x])
    }
}

#[derive(Debug, Clone)]
struct RegressorExpansion {
    model: Arc<LinearRegressor>,
}

impl Expansion for RegressorExpansion {
    fn name(&self) -> StaticName {
        "LinearRegressor".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].rank, 2)?;
        s.equals(&inputs[0].shape[1], self.model.n_features().to_dim())?;
        s.equals(&outputs[0].datum_type, DatumType::F32)?;
        s.equals(&outputs[0].rank, 2)?;
        s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[0].shape[1], self.model.n_targets().to_dim())?;
        Ok(())
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let x = wire_f32_input("LinearRegressor", prefix, model, inputs[0])?;
        model.wire_node(prefix, LinearRegressorOp { model: self.model.clone() }, &[x])
    }
}

/// The typed classifier: `f32 [N, F]` in; labels `[N]` (`i64` or `String`) and
/// `f32 [N, C]` scores out.
#[derive(Debug, Clone)]
pub struct LinearClassifierOp {
    model: Arc<LinearClassifier>,
}

impl LinearClassifierOp {
    /// The validated classifier.
    pub fn model(&self) -> &LinearClassifier {
        &self.model
    }
}

/// Ops are equal when they share their classifier.
impl PartialEq for LinearClassifierOp {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.model, &other.model)
    }
}
impl Eq for LinearClassifierOp {}

impl Op for LinearClassifierOp {
    fn name(&self) -> StaticName {
        LINEAR_CLASSIFIER_OP.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} features, {} classes, {:?}",
            self.model.n_features(),
            self.model.n_classes(),
            self.model.post_transform()
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for LinearClassifierOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let x = input.cast_to::<f32>()?;
        let (n_rows, n_features) = rows_and_features(LINEAR_CLASSIFIER_OP, &x)?;
        let features = x.try_as_plain_ram()?.as_slice::<f32>()?;
        let mut scores = zero_rows(&self.name(), n_rows, self.model.n_classes())?;
        let mut indices = palisade_onnx_ml::filled(n_rows, 0usize)?;
        self.model.predict_into(
            features,
            n_rows,
            n_features,
            &mut indices,
            scores.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?,
        )?;
        let labels = label_tensor(self.model.class_labels(), &indices)?;
        Ok(tvec!(labels.into_tvalue(), scores.into_tvalue()))
    }
}

impl TypedOp for LinearClassifierOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let n = batch_dim(LINEAR_CLASSIFIER_OP, inputs[0], self.model.n_features())?;
        let label_type = label_type(self.model.class_labels());
        Ok(tvec!(label_type.fact([n.clone()]), f32::fact([n, self.model.n_classes().to_dim()])))
    }

    as_op!();
}

/// The typed regressor: `f32 [N, F]` in, `f32 [N, targets]` out.
#[derive(Debug, Clone)]
pub struct LinearRegressorOp {
    model: Arc<LinearRegressor>,
}

impl LinearRegressorOp {
    /// The validated regressor.
    pub fn model(&self) -> &LinearRegressor {
        &self.model
    }
}

/// Ops are equal when they share their regressor.
impl PartialEq for LinearRegressorOp {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.model, &other.model)
    }
}
impl Eq for LinearRegressorOp {}

impl Op for LinearRegressorOp {
    fn name(&self) -> StaticName {
        LINEAR_REGRESSOR_OP.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} features, {} targets, {:?}",
            self.model.n_features(),
            self.model.n_targets(),
            self.model.post_transform()
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for LinearRegressorOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let x = input.cast_to::<f32>()?;
        let (n_rows, n_features) = rows_and_features(LINEAR_REGRESSOR_OP, &x)?;
        let features = x.try_as_plain_ram()?.as_slice::<f32>()?;
        let mut values = zero_rows(&self.name(), n_rows, self.model.n_targets())?;
        self.model.predict_into(
            features,
            n_rows,
            n_features,
            values.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?,
        )?;
        Ok(tvec!(values.into_tvalue()))
    }
}

impl TypedOp for LinearRegressorOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let n = batch_dim(LINEAR_REGRESSOR_OP, inputs[0], self.model.n_features())?;
        Ok(tvec!(f32::fact([n, self.model.n_targets().to_dim()])))
    }

    as_op!();
}
