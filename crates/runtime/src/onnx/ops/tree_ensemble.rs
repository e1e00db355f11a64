//! `TreeEnsembleClassifier` and `TreeEnsembleRegressor` (ai.onnx.ml opsets 1 and 3),
//! evaluated by [`palisade_onnx_ml`].
//!
//! Parsing reads every attribute once and builds the compiled ensemble, so a malformed
//! model fails at load time with an error naming the attribute. The inference-level op
//! ([`Expansion`]) casts `f64`/`i64`/`i32` inputs to `f32` (the rest are refused) and
//! wires one typed op that evaluates the whole batch.

use std::sync::Arc;

use palisade_onnx_ml::{
    Aggregate, ClassifierAttributes, LeafAttributes, NodeAttributes, NodeMode, RegressorAttributes,
    TreeEnsembleClassifier, TreeEnsembleRegressor,
};
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

use super::node::{
    class_labels, floats, ints, label_tensor, label_type, parse, rows_and_features, wire_f32_input, zero_rows,
};

/// Name of the typed classifier op in optimized models.
pub const CLASSIFIER_OP: &str = "PalisadeTreeEnsembleClassifier";
/// Name of the typed regressor op in optimized models.
pub const REGRESSOR_OP: &str = "PalisadeTreeEnsembleRegressor";

/// Builds the classifier from an ONNX node.
pub(super) fn classifier(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let class_labels = class_labels(node, "classlabels_int64s")?;
    let model = TreeEnsembleClassifier::new(ClassifierAttributes {
        nodes: node_attributes(ctx, node)?,
        leaves: leaf_attributes(ctx, node, "class")?,
        class_labels,
        base_values: floats(ctx, node, "base_values")?,
        post_transform: parse(node, "post_transform", "NONE")?,
    })?;
    Ok((expand(ClassifierExpansion { model: Arc::new(model) }), vec![]))
}

/// Builds the regressor from an ONNX node.
pub(super) fn regressor(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let model = TreeEnsembleRegressor::new(RegressorAttributes {
        nodes: node_attributes(ctx, node)?,
        leaves: leaf_attributes(ctx, node, "target")?,
        n_targets: node.get_attr_opt::<i64>("n_targets")?.unwrap_or(0),
        base_values: floats(ctx, node, "base_values")?,
        post_transform: parse(node, "post_transform", "NONE")?,
        aggregate_function: parse::<Aggregate>(node, "aggregate_function", "SUM")?,
    })?;
    Ok((expand(RegressorExpansion { model: Arc::new(model) }), vec![]))
}

pub(crate) fn node_attributes(ctx: &ParsingContext, node: &NodeProto) -> TractResult<NodeAttributes> {
    let modes = node.get_attr_opt_tvec::<&str>("nodes_modes")?.unwrap_or_default();
    Ok(NodeAttributes {
        tree_ids: ints(node, "nodes_treeids")?,
        node_ids: ints(node, "nodes_nodeids")?,
        feature_ids: ints(node, "nodes_featureids")?,
        values: floats(ctx, node, "nodes_values")?,
        modes: modes.iter().map(|m| m.parse::<NodeMode>()).collect::<Result<_, _>>()?,
        true_node_ids: ints(node, "nodes_truenodeids")?,
        false_node_ids: ints(node, "nodes_falsenodeids")?,
        // As onnxruntime: 1 tracks NaN to the true child, anything else does not.
        missing_value_tracks_true: ints(node, "nodes_missing_value_tracks_true")?
            .into_iter()
            .map(|v| v == 1)
            .collect(),
    })
}

/// `class_*` or `target_*` attributes.
pub(crate) fn leaf_attributes(
    ctx: &ParsingContext,
    node: &NodeProto,
    prefix: &str,
) -> TractResult<LeafAttributes> {
    Ok(LeafAttributes {
        tree_ids: ints(node, &format!("{prefix}_treeids"))?,
        node_ids: ints(node, &format!("{prefix}_nodeids"))?,
        ids: ints(node, &format!("{prefix}_ids"))?,
        weights: floats(ctx, node, &format!("{prefix}_weights"))?,
    })
}

/// Checks a typed input fact is `[N, F]` with enough features; returns `N`.
fn batch_dim(op: &str, input: &TypedFact, required_features: usize) -> TractResult<TDim> {
    ensure!(input.rank() == 2, "{op} expects an input of shape [N, F], got {:?}", input.shape);
    if let Ok(width) = input.shape[1].to_usize() {
        ensure!(
            width >= required_features,
            "{op} reads feature {} but its input has {width} features",
            required_features.saturating_sub(1)
        );
    }
    Ok(input.shape[0].clone())
}

#[derive(Debug, Clone)]
struct ClassifierExpansion {
    model: Arc<TreeEnsembleClassifier>,
}

impl Expansion for ClassifierExpansion {
    fn name(&self) -> StaticName {
        "TreeEnsembleClassifier".into()
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
        let x = wire_f32_input("TreeEnsembleClassifier", prefix, model, inputs[0])?;
        model.wire_node(prefix, TreeEnsembleClassifierOp { model: self.model.clone() }, &[x])
    }
}

#[derive(Debug, Clone)]
struct RegressorExpansion {
    model: Arc<TreeEnsembleRegressor>,
}

impl Expansion for RegressorExpansion {
    fn name(&self) -> StaticName {
        "TreeEnsembleRegressor".into()
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
        s.equals(&outputs[0].datum_type, DatumType::F32)?;
        s.equals(&outputs[0].rank, 2)?;
        s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[0].shape[1], self.model.n_targets().to_dim())?;
        Ok(())
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let x = wire_f32_input("TreeEnsembleRegressor", prefix, model, inputs[0])?;
        model.wire_node(prefix, TreeEnsembleRegressorOp { model: self.model.clone() }, &[x])
    }
}

/// The typed classifier: `f32 [N, F]` in; labels `[N]` (`i64` or `String`) and
/// `f32 [N, C]` scores out.
#[derive(Debug, Clone)]
pub struct TreeEnsembleClassifierOp {
    model: Arc<TreeEnsembleClassifier>,
}

impl TreeEnsembleClassifierOp {
    /// The compiled ensemble.
    pub fn model(&self) -> &TreeEnsembleClassifier {
        &self.model
    }
}

/// Ops are equal when they share their compiled ensemble.
impl PartialEq for TreeEnsembleClassifierOp {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.model, &other.model)
    }
}
impl Eq for TreeEnsembleClassifierOp {}

impl Op for TreeEnsembleClassifierOp {
    fn name(&self) -> StaticName {
        CLASSIFIER_OP.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} trees, {} classes, {:?}",
            self.model.n_trees(),
            self.model.n_classes(),
            self.model.post_transform()
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for TreeEnsembleClassifierOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let x = input.cast_to::<f32>()?;
        let (n_rows, n_features) = rows_and_features(CLASSIFIER_OP, &x)?;
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

impl TypedOp for TreeEnsembleClassifierOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let n = batch_dim(CLASSIFIER_OP, inputs[0], self.model.required_features())?;
        let label_type = label_type(self.model.class_labels());
        Ok(tvec!(label_type.fact([n.clone()]), f32::fact([n, self.model.n_classes().to_dim()])))
    }

    as_op!();
}

/// The typed regressor: `f32 [N, F]` in, `f32 [N, n_targets]` out.
#[derive(Debug, Clone)]
pub struct TreeEnsembleRegressorOp {
    model: Arc<TreeEnsembleRegressor>,
}

impl TreeEnsembleRegressorOp {
    /// The compiled ensemble.
    pub fn model(&self) -> &TreeEnsembleRegressor {
        &self.model
    }
}

/// Ops are equal when they share their compiled ensemble.
impl PartialEq for TreeEnsembleRegressorOp {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.model, &other.model)
    }
}
impl Eq for TreeEnsembleRegressorOp {}

impl Op for TreeEnsembleRegressorOp {
    fn name(&self) -> StaticName {
        REGRESSOR_OP.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} trees, {} targets, {:?}, {:?}",
            self.model.n_trees(),
            self.model.n_targets(),
            self.model.aggregate(),
            self.model.post_transform()
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for TreeEnsembleRegressorOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let x = input.cast_to::<f32>()?;
        let (n_rows, n_features) = rows_and_features(REGRESSOR_OP, &x)?;
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

impl TypedOp for TreeEnsembleRegressorOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let n = batch_dim(REGRESSOR_OP, inputs[0], self.model.required_features())?;
        Ok(tvec!(f32::fact([n, self.model.n_targets().to_dim()])))
    }

    as_op!();
}

/// Builds a `TreeEnsemble` (ai.onnx.ml opset 5) from an ONNX node: the same compiled
/// regressor, with the input cast to `f32` and the output cast back to the input's type.
pub(super) fn tree_ensemble(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let tensor = |name: &str| -> TractResult<Vec<f64>> {
        match node.get_attr_opt::<&tract_onnx::pb::TensorProto>(name)? {
            Some(proto) => {
                let t = ctx.load_tensor(proto).with_context(|| format!("attribute `{name}`"))?;
                let t = t.cast_to::<f64>()?;
                Ok(t.try_as_plain_ram()?.as_slice::<f64>()?.to_vec())
            }
            None => Ok(vec![]),
        }
    };
    let modes = match node.get_attr_opt::<&tract_onnx::pb::TensorProto>("nodes_modes")? {
        Some(proto) => {
            let t = ctx.load_tensor(proto).context("attribute `nodes_modes`")?;
            let t = t.cast_to::<u8>()?;
            t.try_as_plain_ram()?.as_slice::<u8>()?.to_vec()
        }
        None => vec![],
    };
    let model = palisade_onnx_ml::tree_ensemble(palisade_onnx_ml::TreeEnsembleAttributes {
        n_targets: node.get_attr_opt::<i64>("n_targets")?.unwrap_or(0),
        aggregate_function: node.get_attr_opt::<i64>("aggregate_function")?.unwrap_or(1),
        post_transform: node.get_attr_opt::<i64>("post_transform")?.unwrap_or(0),
        tree_roots: ints(node, "tree_roots")?,
        nodes_featureids: ints(node, "nodes_featureids")?,
        nodes_splits: tensor("nodes_splits")?,
        nodes_modes: modes,
        nodes_truenodeids: ints(node, "nodes_truenodeids")?,
        nodes_trueleafs: ints(node, "nodes_trueleafs")?,
        nodes_falsenodeids: ints(node, "nodes_falsenodeids")?,
        nodes_falseleafs: ints(node, "nodes_falseleafs")?,
        nodes_missing_value_tracks_true: ints(node, "nodes_missing_value_tracks_true")?,
        leaf_targetids: ints(node, "leaf_targetids")?,
        leaf_weights: tensor("leaf_weights")?,
        membership_values: tensor("membership_values")?,
    })?;
    Ok((expand(TreeEnsembleExpansion { model: Arc::new(model) }), vec![]))
}

#[derive(Debug, Clone)]
struct TreeEnsembleExpansion {
    model: Arc<TreeEnsembleRegressor>,
}

impl Expansion for TreeEnsembleExpansion {
    fn name(&self) -> StaticName {
        "TreeEnsemble".into()
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
        s.equals(&outputs[0].datum_type, &inputs[0].datum_type)?;
        s.equals(&outputs[0].rank, 2)?;
        s.equals(&outputs[0].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[0].shape[1], self.model.n_targets().to_dim())?;
        Ok(())
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let dt = model.outlet_fact(inputs[0])?.datum_type;
        ensure!(
            matches!(dt, DatumType::F32 | DatumType::F64 | DatumType::F16),
            "TreeEnsemble takes float, double or float16 inputs, not {dt:?}"
        );
        let x = if dt == DatumType::F32 {
            inputs[0]
        } else {
            model.wire_node(
                format!("{prefix}.cast_to_f32"),
                tract_onnx::tract_core::ops::cast::cast(f32::datum_type()),
                &[inputs[0]],
            )?[0]
        };
        let y = model.wire_node(prefix, TreeEnsembleRegressorOp { model: self.model.clone() }, &[x])?;
        if dt == DatumType::F32 {
            return Ok(y);
        }
        model.wire_node(format!("{prefix}.cast_back"), tract_onnx::tract_core::ops::cast::cast(dt), &y)
    }
}

/// The tree ensemble of a model file, for TreeSHAP (`palisade build` with
/// `explainer.type: TreeShap`).
#[derive(Debug)]
pub enum FoundEnsemble {
    /// A `TreeEnsembleClassifier`.
    Classifier(TreeEnsembleClassifier),
    /// A `TreeEnsembleRegressor`.
    Regressor(TreeEnsembleRegressor),
}

/// Operators a model may have besides its tree ensemble and still be explained by
/// TreeSHAP: they change no feature value before the trees (a cast of the input) and no
/// score after them (the label's cast, a ZipMap, an identity).
const AROUND_TREES: &[&str] = &["Cast", "Identity", "ZipMap"];

/// Finds the one `TreeEnsembleClassifier`/`TreeEnsembleRegressor` (ai.onnx.ml) of an ONNX
/// file, reading the graph's one input directly (or through a `Cast`). Refuses, with a
/// message saying why, models with no ensemble or several, and models where another
/// operator (a `Scaler`, an `Imputer`, a `OneHotEncoder`...) transforms the features
/// before the trees or the scores after them: TreeSHAP's covers and values are over the
/// trees' own inputs, which the background would then not be.
pub fn find_ensemble(bytes: &[u8]) -> Result<FoundEnsemble, String> {
    let onnx = super::super::framework();
    let proto = onnx
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| format!("the ONNX file cannot be read: {e}"))?;
    let graph = proto.graph.as_ref().ok_or("the ONNX file has no graph")?;
    let initializers: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<&str> =
        graph.input.iter().map(|i| i.name.as_str()).filter(|name| !initializers.contains(name)).collect();
    let trees: Vec<&NodeProto> = graph
        .node
        .iter()
        .filter(|n| {
            matches!(n.op_type.as_str(), "TreeEnsembleClassifier" | "TreeEnsembleRegressor" | "TreeEnsemble")
        })
        .collect();
    let node = match trees[..] {
        [] => {
            return Err(
                "the model has no TreeEnsembleClassifier or TreeEnsembleRegressor: TreeShap explains tree ensembles (random forests, gradient boosting); use `type: KernelShap` for other models".to_owned(),
            );
        }
        [node] => node,
        _ => {
            return Err(format!(
                "the model has {} tree ensembles; TreeShap explains a model with one: use `type: KernelShap`",
                trees.len()
            ));
        }
    };
    if node.op_type == "TreeEnsemble" {
        return Err("the model uses ai.onnx.ml `TreeEnsemble` (opset 5), which TreeShap does not read yet: export with ai.onnx.ml opset 3 or lower (skl2onnx's default), or use `type: KernelShap`".to_owned());
    }
    if let Some(other) =
        graph.node.iter().find(|n| !std::ptr::eq(*n, node) && !AROUND_TREES.contains(&n.op_type.as_str()))
    {
        return Err(format!(
            "the model runs `{}` besides its trees: TreeShap explains the trees' own inputs, and a preprocessing step (or a change of the scores) would make the background and the explanations disagree with the model; export the trees alone, or use `type: KernelShap`",
            other.op_type
        ));
    }
    let [input] = inputs[..] else {
        return Err(format!(
            "the model has {} inputs; TreeShap explains a model with one input of features",
            inputs.len()
        ));
    };
    let mut source = node.input.first().map(String::as_str).unwrap_or("");
    if let Some(cast) =
        graph.node.iter().find(|n| n.op_type == "Cast" && n.output.iter().any(|o| o == source))
    {
        source = cast.input.first().map(String::as_str).unwrap_or("");
    }
    if source != input {
        return Err(format!(
            "the trees read `{source}`, not the model's input `{input}`: TreeShap explains trees that read the input directly"
        ));
    }
    let opset = proto
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(1, |o| o.version);
    let ctx = ParsingContext {
        onnx_operator_set_version: opset,
        framework: &onnx,
        model: &proto,
        parent_graphs: vec![],
        model_dir: None,
        template: InferenceModel::default(),
    };
    let built = if node.op_type == "TreeEnsembleClassifier" {
        TreeEnsembleClassifier::new(ClassifierAttributes {
            nodes: node_attributes(&ctx, node).map_err(|e| format!("{e:#}"))?,
            leaves: leaf_attributes(&ctx, node, "class").map_err(|e| format!("{e:#}"))?,
            class_labels: class_labels(node, "classlabels_int64s").map_err(|e| format!("{e:#}"))?,
            base_values: floats(&ctx, node, "base_values").map_err(|e| format!("{e:#}"))?,
            post_transform: parse(node, "post_transform", "NONE").map_err(|e| format!("{e:#}"))?,
        })
        .map(FoundEnsemble::Classifier)
    } else {
        TreeEnsembleRegressor::new(RegressorAttributes {
            nodes: node_attributes(&ctx, node).map_err(|e| format!("{e:#}"))?,
            leaves: leaf_attributes(&ctx, node, "target").map_err(|e| format!("{e:#}"))?,
            n_targets: node.get_attr_opt::<i64>("n_targets").map_err(|e| format!("{e:#}"))?.unwrap_or(0),
            base_values: floats(&ctx, node, "base_values").map_err(|e| format!("{e:#}"))?,
            post_transform: parse(node, "post_transform", "NONE").map_err(|e| format!("{e:#}"))?,
            aggregate_function: parse::<Aggregate>(node, "aggregate_function", "SUM")
                .map_err(|e| format!("{e:#}"))?,
        })
        .map(FoundEnsemble::Regressor)
    };
    built.map_err(|e| format!("the tree ensemble is invalid: {e}"))
}
