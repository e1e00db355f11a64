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
    let model = tree_ensemble_model(ctx, node)?;
    Ok((expand(TreeEnsembleExpansion { model: Arc::new(model) }), vec![]))
}

/// The regressor's ensemble a `TreeEnsemble` (ai.onnx.ml opset 5) node is rewritten into.
fn tree_ensemble_model(ctx: &ParsingContext, node: &NodeProto) -> TractResult<TreeEnsembleRegressor> {
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
    Ok(model)
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
    /// A `TreeEnsembleRegressor`, or a `TreeEnsemble` (ai.onnx.ml opset 5) rewritten into
    /// the regressor's ensemble as the runtime runs it.
    Regressor(TreeEnsembleRegressor),
}

/// A model's trees and the per-feature steps between its input and them.
#[derive(Debug)]
pub struct FoundTrees {
    /// The ensemble.
    pub ensemble: FoundEnsemble,
    /// The steps from the input to the trees' input, in order.
    pub preprocessing: Preprocessing,
}

/// One-feature-to-one-feature steps before the trees (`Scaler`, a float `Imputer`; a
/// `Cast` to float changes nothing in `f32` rows), applied in `f32` as the runtime applies
/// them to an `FP32` input. Feature `j` of the trees' input depends on feature `j` of the
/// model's input only, so explanations of the trees over the transformed rows are
/// explanations of the model over its own features.
#[derive(Debug, Clone, Default)]
pub struct Preprocessing {
    steps: Vec<Step>,
}

#[derive(Debug, Clone)]
enum Step {
    Scaler(palisade_onnx_ml::Scaler),
    Imputer(palisade_onnx_ml::Imputer),
}

impl Preprocessing {
    /// Whether there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The operators applied, in order (`["Imputer", "Scaler"]`).
    pub fn names(&self) -> Vec<&'static str> {
        self.steps
            .iter()
            .map(|s| match s {
                Step::Scaler(_) => "Scaler",
                Step::Imputer(_) => "Imputer",
            })
            .collect()
    }

    /// Applies the steps to rows of `columns` features, in place.
    pub fn apply(&self, rows: &mut [f32], columns: usize) -> Result<(), String> {
        for step in &self.steps {
            match step {
                Step::Scaler(scaler) => {
                    let input = rows.to_vec();
                    scaler.transform(&input, columns, rows).map_err(|e| e.to_string())?;
                }
                Step::Imputer(imputer) => imputer.impute_f32(rows, columns).map_err(|e| e.to_string())?,
            }
        }
        Ok(())
    }
}

/// Operators a model may have besides its tree ensemble and still be explained by
/// TreeSHAP: they change no score after the trees (the label's cast, a ZipMap, an
/// identity). Before the trees, only the steps of [`Preprocessing`] and casts to float.
const AROUND_TREES: &[&str] = &["Cast", "Identity", "ZipMap"];

const ONNX_FLOAT: i64 = 1;

/// Finds the one `TreeEnsembleClassifier`/`TreeEnsembleRegressor`/`TreeEnsemble`
/// (ai.onnx.ml) of an ONNX file and the steps between the graph's one input and it:
/// casts to float, `Scaler`s and float `Imputer`s (each one feature to one feature).
/// Refuses, with a message saying why, models with no ensemble or several, and models
/// where another operator (a `OneHotEncoder`, a `Normalizer`, a `FeatureVectorizer`...)
/// transforms the features before the trees or the scores after them: TreeSHAP's values
/// are over the trees' own inputs, which must then each be one of the model's features.
pub fn find_ensemble(bytes: &[u8]) -> Result<FoundTrees, String> {
    let onnx = super::super::framework();
    let proto = onnx
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| format!("the ONNX file cannot be read: {e}"))?;
    let graph = proto.graph.as_ref().ok_or("the ONNX file has no graph")?;
    let initializers: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<&tract_onnx::pb::ValueInfoProto> =
        graph.input.iter().filter(|i| !initializers.contains(i.name.as_str())).collect();
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
                "the model has no TreeEnsembleClassifier, TreeEnsembleRegressor or TreeEnsemble: TreeShap explains tree ensembles (random forests, gradient boosting); use `type: KernelShap` for other models".to_owned(),
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
    let [input] = inputs[..] else {
        return Err(format!(
            "the model has {} inputs; TreeShap explains a model with one input of features",
            inputs.len()
        ));
    };
    let input_is_float = matches!(
        input.r#type.as_ref().and_then(|t| t.value.as_ref()),
        Some(tract_onnx::pb::type_proto::Value::TensorType(t)) if i64::from(t.elem_type) == ONNX_FLOAT
    );
    // The chain from the trees back to the input.
    let mut chain: Vec<&NodeProto> = Vec::new();
    let mut source = node.input.first().map(String::as_str).unwrap_or("");
    while source != input.name {
        let Some(step) = graph.node.iter().find(|n| n.output.iter().any(|o| o == source)) else {
            return Err(format!(
                "the trees read `{source}`, which is not computed from the model's input `{}`",
                input.name
            ));
        };
        if !matches!(step.op_type.as_str(), "Cast" | "Scaler" | "Imputer") || step.input.len() != 1 {
            return Err(format!(
                "the model runs `{}` before its trees: TreeShap explains trees whose every input is one of the model's features, transformed one feature at a time (`Scaler`, `Imputer`, `Cast`); export the trees alone, or use `type: KernelShap`",
                step.op_type
            ));
        }
        chain.push(step);
        source = step.input.first().map(String::as_str).unwrap_or("");
    }
    chain.reverse();
    if let Some(other) = graph.node.iter().find(|n| {
        !std::ptr::eq(*n, node)
            && !chain.iter().any(|c| std::ptr::eq(*c, *n))
            && !AROUND_TREES.contains(&n.op_type.as_str())
    }) {
        return Err(format!(
            "the model runs `{}` besides its trees: TreeShap explains the trees' own inputs, and a preprocessing step (or a change of the scores) would make the background and the explanations disagree with the model; export the trees alone, or use `type: KernelShap`",
            other.op_type
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
    let preprocessing = preprocessing(&ctx, &chain, input_is_float)?;
    let ensemble = match node.op_type.as_str() {
        "TreeEnsembleClassifier" => TreeEnsembleClassifier::new(ClassifierAttributes {
            nodes: node_attributes(&ctx, node).map_err(|e| format!("{e:#}"))?,
            leaves: leaf_attributes(&ctx, node, "class").map_err(|e| format!("{e:#}"))?,
            class_labels: class_labels(node, "classlabels_int64s").map_err(|e| format!("{e:#}"))?,
            base_values: floats(&ctx, node, "base_values").map_err(|e| format!("{e:#}"))?,
            post_transform: parse(node, "post_transform", "NONE").map_err(|e| format!("{e:#}"))?,
        })
        .map(FoundEnsemble::Classifier)
        .map_err(|e| format!("the tree ensemble is invalid: {e}"))?,
        "TreeEnsembleRegressor" => TreeEnsembleRegressor::new(RegressorAttributes {
            nodes: node_attributes(&ctx, node).map_err(|e| format!("{e:#}"))?,
            leaves: leaf_attributes(&ctx, node, "target").map_err(|e| format!("{e:#}"))?,
            n_targets: node.get_attr_opt::<i64>("n_targets").map_err(|e| format!("{e:#}"))?.unwrap_or(0),
            base_values: floats(&ctx, node, "base_values").map_err(|e| format!("{e:#}"))?,
            post_transform: parse(node, "post_transform", "NONE").map_err(|e| format!("{e:#}"))?,
            aggregate_function: parse::<Aggregate>(node, "aggregate_function", "SUM")
                .map_err(|e| format!("{e:#}"))?,
        })
        .map(FoundEnsemble::Regressor)
        .map_err(|e| format!("the tree ensemble is invalid: {e}"))?,
        _ => tree_ensemble_model(&ctx, node)
            .map(FoundEnsemble::Regressor)
            .map_err(|e| format!("the TreeEnsemble (ai.onnx.ml opset 5) is invalid: {e:#}"))?,
    };
    Ok(FoundTrees { ensemble, preprocessing })
}

/// The steps of `chain` (input first): casts to float (only first, or after a float step),
/// `Scaler`s and float `Imputer`s. Steps that compute in the input's own type are applied
/// in `f32` only when that type is float (an `FP64` input goes through a `Cast` first).
fn preprocessing(
    ctx: &ParsingContext,
    chain: &[&NodeProto],
    input_is_float: bool,
) -> Result<Preprocessing, String> {
    let mut steps = Vec::new();
    let mut float = input_is_float;
    for node in chain {
        let e = |e: TractError| format!("`{}` before the trees: {e:#}", node.op_type);
        match node.op_type.as_str() {
            "Cast" => {
                if node.get_attr_opt::<i64>("to").map_err(e)? != Some(ONNX_FLOAT) {
                    return Err("a `Cast` before the trees casts to another type than float: TreeShap explains trees over float features; use `type: KernelShap`".to_owned());
                }
                float = true;
                continue;
            }
            _ if !float => {
                return Err(format!(
                    "the `{}` before the trees computes in the input's type, not float: export the model with an FP32 input (to_onnx(model, X[:1].astype(numpy.float32))), or use `type: KernelShap`",
                    node.op_type
                ));
            }
            "Scaler" => steps.push(Step::Scaler(
                palisade_onnx_ml::Scaler::new(
                    floats(ctx, node, "offset").map_err(e)?,
                    floats(ctx, node, "scale").map_err(e)?,
                )
                .map_err(|m| format!("the Scaler before the trees: {m}"))?,
            )),
            "Imputer" => {
                let imputer = palisade_onnx_ml::Imputer::new(
                    floats(ctx, node, "imputed_value_floats").map_err(e)?,
                    node.get_attr_opt::<f32>("replaced_value_float").map_err(e)?.unwrap_or(0.0),
                    ints(node, "imputed_value_int64s").map_err(e)?,
                    node.get_attr_opt::<i64>("replaced_value_int64").map_err(e)?.unwrap_or(0),
                )
                .map_err(|m| format!("the Imputer before the trees: {m}"))?;
                if !matches!(imputer, palisade_onnx_ml::Imputer::Float { .. }) {
                    return Err("the Imputer before the trees imputes int64 values; TreeShap explains float features: use `type: KernelShap`".to_owned());
                }
                steps.push(Step::Imputer(imputer));
            }
            other => return Err(format!("the model runs `{other}` before its trees")),
        }
    }
    Ok(Preprocessing { steps })
}
