//! Recognizes scikit-learn's IsolationForest in its skl2onnx export and reads it into a
//! native [`IsolationForest`], so outlier scores cost one pass over a compact forest
//! instead of a run of the export's graph (about 27 plan steps per tree).
//!
//! skl2onnx (1.20) writes, for each tree `i`: `Gather(X, features_i, axis=1)` into a
//! one-tree `TreeEnsembleRegressor` whose leaves answer their own node id; `Cast` to int64
//! and two `LabelEncoder`s (leaf id → training samples left in the leaf, leaf id → nodes on
//! the path), each `Reshape`d to `[-1, 1]`; then `depth_i = path + c(samples) - 1`, with
//! `c` written as about twenty elementwise nodes (`Equal`, `Greater`, `Log`, `Max`,
//! `Div`...). Then `scores = -2^(-Sum(depth_i) / D) + A`, with `D = n_trees ×
//! c(max_samples)` and `A = -offset_` (scikit-learn's `decision_function`).
//!
//! Recognition walks back from the `scores` output and checks **every** node and constant
//! the score depends on against that template (commutative operands in the exported order
//! only): a graph that differs anywhere is not recognized, and the caller runs it as a
//! graph. What is recognized is evaluated in `f64` (the export computes in its input
//! type), which is what scikit-learn's `score_samples` does.

use std::collections::HashMap;

use palisade_explain::{IsolationForest, IsolationNode, IsolationTree, average_path_length};
use palisade_onnx_ml::{NodeAttributes, NodeMode};
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::type_proto::Value as TypeValue;
use tract_onnx::pb::{GraphProto, NodeProto, TensorProto, tensor_shape_proto};
use tract_onnx::prelude::InferenceModel;
use tract_onnx::tract_hir::internal::*;

/// An IsolationForest read out of its skl2onnx export.
#[derive(Debug)]
pub struct NativeIsolationForest {
    /// The forest, scoring scikit-learn's `score_samples`.
    pub forest: IsolationForest,
    /// The export's input name.
    pub input: String,
    /// The constant the export adds to `score_samples` for its `scores` output
    /// (`decision_function`): `-offset_` of the fitted forest.
    pub decision_shift: f64,
    /// `max_samples_`, when the normalizer is exactly `n_trees × c(max_samples)` for one
    /// whole number of samples (then the normalizer is computed in `f64` from it).
    pub max_samples: Option<u64>,
}

const FLOAT: i32 = 1;
const INT64: i32 = 7;
const DOUBLE: i32 = 11;

/// Reads the skl2onnx export of an IsolationForest (`bytes`, an ONNX file) into a native
/// forest, or says why the file is not recognized as one exactly.
pub fn recognize_isolation_forest(bytes: &[u8]) -> Result<NativeIsolationForest, String> {
    let onnx = super::framework();
    let proto = onnx
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| format!("the ONNX file cannot be read: {e}"))?;
    let graph = proto.graph.as_ref().ok_or("the ONNX file has no graph")?;
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
    let g = Graph::new(graph, &ctx)?;
    g.forest()
}

struct Graph<'a> {
    ctx: &'a ParsingContext<'a>,
    producers: HashMap<&'a str, &'a NodeProto>,
    constants: HashMap<&'a str, &'a TensorProto>,
    input: &'a str,
    n_features: usize,
    /// `FLOAT` or `DOUBLE`: the input's type, which the export computes in.
    dtype: i32,
}

impl<'a> Graph<'a> {
    fn new(graph: &'a GraphProto, ctx: &'a ParsingContext<'a>) -> Result<Graph<'a>, String> {
        let constants: HashMap<&str, &TensorProto> =
            graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
        let mut producers = HashMap::new();
        for node in &graph.node {
            for output in &node.output {
                if producers.insert(output.as_str(), node).is_some()
                    || constants.contains_key(output.as_str())
                {
                    return Err(format!("the tensor `{output}` is produced twice"));
                }
            }
        }
        let inputs: Vec<_> =
            graph.input.iter().filter(|i| !constants.contains_key(i.name.as_str())).collect();
        let [input] = inputs[..] else {
            return Err(format!("it has {} inputs, not one", inputs.len()));
        };
        let Some(TypeValue::TensorType(tensor)) = input.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
            return Err("its input is not a tensor".to_owned());
        };
        if tensor.elem_type != FLOAT && tensor.elem_type != DOUBLE {
            return Err("its input is not float or double".to_owned());
        }
        let dims = tensor.shape.as_ref().map(|s| s.dim.as_slice()).unwrap_or_default();
        let n_features = match dims {
            [_, width] => match width.value {
                Some(tensor_shape_proto::dimension::Value::DimValue(m)) if m > 0 => {
                    usize::try_from(m).map_err(|_| "its input is too wide".to_owned())?
                }
                _ => return Err("its input's feature count is not fixed".to_owned()),
            },
            _ => return Err("its input is not [N, M]".to_owned()),
        };
        Ok(Graph {
            ctx,
            producers,
            constants,
            input: input.name.as_str(),
            n_features,
            dtype: tensor.elem_type,
        })
    }

    /// The node computing `tensor`, which must be a `op` of `domain`.
    fn node(&self, tensor: &str, op: &str) -> Result<&'a NodeProto, String> {
        let node = self
            .producers
            .get(tensor)
            .copied()
            .ok_or_else(|| format!("`{tensor}` is not computed by a node (expected {op})"))?;
        let domain = if matches!(op, "TreeEnsembleRegressor" | "LabelEncoder") { "ai.onnx.ml" } else { "" };
        let node_domain = if node.domain == "ai.onnx" { "" } else { node.domain.as_str() };
        if node.op_type != op || node_domain != domain {
            return Err(format!("`{tensor}` is computed by {} `{}`, not {op}", node.op_type, node.name));
        }
        Ok(node)
    }

    /// The node computing `tensor`, a `op` with exactly `N` inputs.
    fn op<const N: usize>(&self, tensor: &str, op: &str) -> Result<(&'a NodeProto, [&'a str; N]), String> {
        let node = self.node(tensor, op)?;
        let inputs: Vec<&str> = node.input.iter().map(String::as_str).collect();
        let inputs: [&str; N] = inputs
            .try_into()
            .map_err(|_| format!("{op} `{}` has {} inputs, not {N}", node.name, node.input.len()))?;
        Ok((node, inputs))
    }

    /// The values of a constant (an initializer), as `f64`.
    fn values(&self, tensor: &str) -> Result<Vec<f64>, String> {
        let t = self.constants.get(tensor).ok_or_else(|| format!("`{tensor}` is not a constant"))?;
        let values: Vec<f64> = match t.data_type {
            FLOAT if !t.float_data.is_empty() => t.float_data.iter().map(|&v| f64::from(v)).collect(),
            FLOAT => t
                .raw_data
                .chunks_exact(4)
                .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect(),
            DOUBLE if !t.double_data.is_empty() => t.double_data.clone(),
            DOUBLE => t
                .raw_data
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .collect(),
            INT64 if !t.int64_data.is_empty() => t.int64_data.iter().map(|&v| v as f64).collect(),
            INT64 => t
                .raw_data
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f64)
                .collect(),
            other => return Err(format!("the constant `{tensor}` has data type {other}")),
        };
        let count = t.dims.iter().try_fold(1i64, |a, &d| a.checked_mul(d)).unwrap_or(-1);
        if usize::try_from(count).ok() != Some(values.len()) {
            return Err(format!("the constant `{tensor}` does not hold {count} values"));
        }
        Ok(values)
    }

    /// The one float value of a constant of at most one element per dimension.
    fn scalar(&self, tensor: &str) -> Result<f64, String> {
        let t = self.constants.get(tensor).ok_or_else(|| format!("`{tensor}` is not a constant"))?;
        if !matches!(t.data_type, FLOAT | DOUBLE) || t.dims.iter().any(|&d| d != 1) || t.dims.len() > 2 {
            return Err(format!("`{tensor}` is not one float"));
        }
        match self.values(tensor)?[..] {
            [v] => Ok(v),
            _ => Err(format!("`{tensor}` is not one float")),
        }
    }

    /// Checks a constant is `want` as the export stores it (rounded to `f32` in a float
    /// graph).
    fn constant(&self, tensor: &str, want: f64) -> Result<(), String> {
        let got = self.scalar(tensor)?;
        let stored = |v: f64| if self.dtype == FLOAT { f64::from(v as f32) } else { v };
        if got == want || got == stored(want) {
            return Ok(());
        }
        Err(format!("the constant `{tensor}` is {got}, not {want}"))
    }

    fn cast_to(&self, node: &NodeProto, to: i32) -> Result<(), String> {
        match node.get_attr_opt::<i64>("to").map_err(|e| format!("{e:#}"))? {
            Some(t) if t == i64::from(to) => Ok(()),
            other => Err(format!("Cast `{}` casts to {other:?}, not {to}", node.name)),
        }
    }

    /// `Cast(Equal|Greater(ns, 2), to=dtype)`: returns `ns`.
    fn compared_to_two(&self, tensor: &str, op: &str) -> Result<&'a str, String> {
        let (cast, [c]) = self.op::<1>(tensor, "Cast")?;
        self.cast_to(cast, self.dtype)?;
        let (_, [ns, two]) = self.op::<2>(c, op)?;
        self.constant(two, 2.0)?;
        Ok(ns)
    }

    /// `Reshape(LabelEncoder(Cast(leaf, int64)), [-1, 1])`: returns `leaf` (the tree's
    /// output) and the encoder's map from leaf id to value, with its default.
    fn leaf_table(&self, tensor: &str) -> Result<(&'a str, HashMap<i64, f64>, f64), String> {
        let (_, [encoded, shape]) = self.op::<2>(tensor, "Reshape")?;
        if self.values(shape)? != [-1.0, 1.0] {
            return Err(format!("Reshape of `{tensor}` is not to [-1, 1]"));
        }
        let (encoder, [ids]) = self.op::<1>(encoded, "LabelEncoder")?;
        let (cast, [leaf]) = self.op::<1>(ids, "Cast")?;
        self.cast_to(cast, INT64)?;
        for name in encoder.attribute.iter().map(|a| a.name.as_str()) {
            if !matches!(name, "keys_int64s" | "values_floats" | "default_float") {
                return Err(format!("LabelEncoder `{}` has the attribute `{name}`", encoder.name));
            }
        }
        let err = |e: TractError| format!("LabelEncoder `{}`: {e:#}", encoder.name);
        let keys = encoder.get_attr_opt_slice::<i64>("keys_int64s").map_err(err)?.unwrap_or_default();
        let values = encoder.get_attr_opt_slice::<f32>("values_floats").map_err(err)?.unwrap_or_default();
        let default = encoder.get_attr_opt::<f32>("default_float").map_err(err)?.unwrap_or(-0.0);
        if keys.len() != values.len() {
            return Err(format!(
                "LabelEncoder `{}` has {} keys and {} values",
                encoder.name,
                keys.len(),
                values.len()
            ));
        }
        let mut table = HashMap::with_capacity(keys.len());
        for (&k, &v) in keys.iter().zip(values) {
            if table.insert(k, f64::from(v)).is_some() {
                return Err(format!("LabelEncoder `{}` has the key {k} twice", encoder.name));
            }
        }
        Ok((leaf, table, f64::from(default)))
    }

    /// One tree's term: `Add(Add(path, c(samples)), -1)` over the leaf tables of one tree.
    fn depth(&self, tensor: &str) -> Result<IsolationTree, String> {
        let (_, [sum, minus_one]) = self.op::<2>(tensor, "Add")?;
        self.constant(minus_one, -1.0)?;
        let (_, [path, avpl]) = self.op::<2>(sum, "Add")?;
        let (leaf, path_table, path_default) = self.leaf_table(path)?;
        // c(n) = Equal(n, 2) + Mul(Add(log_part, ratio_part), Greater(n, 2)).
        let (_, [eq2, avlog]) = self.op::<2>(avpl, "Add")?;
        let ns = self.compared_to_two(eq2, "Equal")?;
        let (_, [terms, plus2]) = self.op::<2>(avlog, "Mul")?;
        if self.compared_to_two(plus2, "Greater")? != ns {
            return Err("the path-length formula compares two different sample counts".to_owned());
        }
        let (_, [log_part, ratio_part]) = self.op::<2>(terms, "Add")?;
        // log_part = Mul(Add(Log(Max(m1, 1)), γ), 2), m1 = Add(np, -1), np = Mul(plus2, ns).
        let (_, [log_plus, two]) = self.op::<2>(log_part, "Mul")?;
        self.constant(two, 2.0)?;
        let (_, [log, gamma]) = self.op::<2>(log_plus, "Add")?;
        self.constant(gamma, 0.577_215_664_901_532_9)?;
        let (_, [max1]) = self.op::<1>(log, "Log")?;
        let (_, [m1, one]) = self.op::<2>(max1, "Max")?;
        self.constant(one, 1.0)?;
        let (_, [np, minus_one]) = self.op::<2>(m1, "Add")?;
        self.constant(minus_one, -1.0)?;
        let (_, [plus2_again, ns_again]) = self.op::<2>(np, "Mul")?;
        if plus2_again != plus2 || ns_again != ns {
            return Err("the path-length formula mixes tensors of different trees".to_owned());
        }
        // ratio_part = Mul(Div(Max(m1, 0), Max(np, 1)), -2).
        let (_, [ratio, minus_two]) = self.op::<2>(ratio_part, "Mul")?;
        self.constant(minus_two, -2.0)?;
        let (_, [top, bottom]) = self.op::<2>(ratio, "Div")?;
        let (_, [m1_again, zero]) = self.op::<2>(top, "Max")?;
        self.constant(zero, 0.0)?;
        let (_, [np_again, one]) = self.op::<2>(bottom, "Max")?;
        self.constant(one, 1.0)?;
        if m1_again != m1 || np_again != np {
            return Err("the path-length formula mixes tensors of different trees".to_owned());
        }
        let (leaf_again, samples_table, samples_default) = self.leaf_table(ns)?;
        if leaf_again != leaf {
            return Err("a tree's path lengths and sample counts come from different trees".to_owned());
        }
        self.tree(leaf, |id| {
            let path = path_table.get(&id).copied().unwrap_or(path_default);
            let samples = samples_table.get(&id).copied().unwrap_or(samples_default);
            if !(path.is_finite() && samples.is_finite()) {
                return Err(format!("leaf {id} has path length {path} and {samples} samples"));
            }
            Ok(path + average_path_length(samples) - 1.0)
        })
    }

    /// `TreeEnsembleRegressor(Gather(X, features, axis=1))` with one tree whose leaves
    /// answer whole numbers: the tree, each leaf's term given by `term(leaf value)`.
    fn tree(&self, tensor: &str, term: impl Fn(i64) -> Result<f64, String>) -> Result<IsolationTree, String> {
        let (node, [gathered]) = self.op::<1>(tensor, "TreeEnsembleRegressor")?;
        let (gather, [x, indices]) = self.op::<2>(gathered, "Gather")?;
        if x != self.input {
            return Err(format!("Gather `{}` reads `{x}`, not the input", gather.name));
        }
        if gather.get_attr_opt::<i64>("axis").map_err(|e| format!("{e:#}"))? != Some(1) {
            return Err(format!("Gather `{}` is not over axis 1", gather.name));
        }
        let features: Vec<u32> = self
            .values(indices)?
            .into_iter()
            .map(|f| {
                (f >= 0.0 && f < self.n_features as f64 && f.fract() == 0.0)
                    .then_some(f as u32)
                    .ok_or_else(|| format!("Gather `{}` takes feature {f}", gather.name))
            })
            .collect::<Result<_, _>>()?;
        let e = |e: TractError| format!("TreeEnsembleRegressor `{}`: {e:#}", node.name);
        for attribute in &node.attribute {
            let ok = match attribute.name.as_str() {
                "n_targets" => node.get_attr_opt::<i64>("n_targets").map_err(e)? == Some(1),
                "post_transform" => node.get_attr_opt::<&str>("post_transform").map_err(e)? == Some("NONE"),
                "aggregate_function" => {
                    node.get_attr_opt::<&str>("aggregate_function").map_err(e)? == Some("SUM")
                }
                "base_values" => node
                    .get_attr_opt_slice::<f32>("base_values")
                    .map_err(e)?
                    .is_none_or(|b| b.iter().all(|&v| v == 0.0)),
                name => name.starts_with("nodes_") || name.starts_with("target_"),
            };
            if !ok {
                return Err(format!("TreeEnsembleRegressor `{}` sets `{}`", node.name, attribute.name));
            }
        }
        let nodes = super::ops::tree_ensemble::node_attributes(self.ctx, node).map_err(e)?;
        let leaves = super::ops::tree_ensemble::leaf_attributes(self.ctx, node, "target").map_err(e)?;
        if leaves.ids.iter().any(|&t| t != 0) {
            return Err(format!("TreeEnsembleRegressor `{}` has several targets", node.name));
        }
        let mut weights: HashMap<i64, f32> = HashMap::new();
        for (i, (&tree, &id)) in leaves.tree_ids.iter().zip(&leaves.node_ids).enumerate() {
            if Some(&tree) != nodes.tree_ids.first() {
                return Err(format!("TreeEnsembleRegressor `{}` has several trees", node.name));
            }
            let w = leaves.weights.get(i).copied().ok_or("missing leaf weights")?;
            if weights.insert(id, w).is_some() {
                return Err(format!("TreeEnsembleRegressor `{}`: leaf {id} has several weights", node.name));
            }
        }
        rebuild(&nodes, &features, &weights, &term)
            .map_err(|m| format!("TreeEnsembleRegressor `{}`: {m}", node.name))
    }

    /// The whole score: `Add(Neg(Pow(2, Neg(Div(Sum(depths), D)))), A)` at `scores`.
    fn forest(&self) -> Result<NativeIsolationForest, String> {
        let (_, [score_samples, shift]) = self.op::<2>("scores", "Add")?;
        let decision_shift = self.scalar(shift)?;
        let (_, [pow]) = self.op::<1>(score_samples, "Neg")?;
        let (_, [two, exponent]) = self.op::<2>(pow, "Pow")?;
        self.constant(two, 2.0)?;
        let (_, [normalized]) = self.op::<1>(exponent, "Neg")?;
        let (_, [sum, normalizer]) = self.op::<2>(normalized, "Div")?;
        let normalizer = self.scalar(normalizer)?;
        let sum = self.node(sum, "Sum")?;
        let trees: Vec<IsolationTree> = sum.input.iter().map(|d| self.depth(d)).collect::<Result<_, _>>()?;
        let (denominator, max_samples) = self.exact_normalizer(trees.len(), normalizer);
        let forest = IsolationForest::new(trees, self.n_features, denominator).map_err(|e| e.to_string())?;
        Ok(NativeIsolationForest { forest, input: self.input.to_owned(), decision_shift, max_samples })
    }

    /// `n_trees × c(max_samples)` in `f64` when exactly one whole `max_samples` gives the
    /// stored normalizer (rounded to the graph's type); the stored value otherwise.
    fn exact_normalizer(&self, n_trees: usize, stored: f64) -> (f64, Option<u64>) {
        let t = n_trees as f64;
        let rounded = |v: f64| if self.dtype == FLOAT { f64::from(v as f32) } else { v };
        // c grows with n: the first n whose normalizer reaches the stored one.
        let (mut lo, mut hi) = (2u64, 1u64 << 32);
        if stored.is_nan() || stored <= t * average_path_length(2.0) {
            return (stored, None);
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if rounded(t * average_path_length(mid as f64)) >= stored {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        let exact = t * average_path_length(lo as f64);
        let unique = rounded(t * average_path_length((lo + 1) as f64)) != stored
            && rounded(t * average_path_length((lo - 1) as f64)) != stored;
        if rounded(exact) == stored && unique { (exact, Some(lo)) } else { (stored, None) }
    }
}

/// The tree in preorder from its first node (onnxruntime's root), with feature ids mapped
/// through the `Gather` and leaf values turned into terms. Only `BRANCH_LEQ` splits; every
/// node is reached once (no cycles, no shared children).
fn rebuild(
    nodes: &NodeAttributes,
    features: &[u32],
    weights: &HashMap<i64, f32>,
    term: &dyn Fn(i64) -> Result<f64, String>,
) -> Result<IsolationTree, String> {
    let n = nodes.node_ids.len();
    let same = [
        nodes.feature_ids.len(),
        nodes.values.len(),
        nodes.modes.len(),
        nodes.true_node_ids.len(),
        nodes.false_node_ids.len(),
        nodes.tree_ids.len(),
    ];
    if n == 0 || same.iter().any(|&l| l != n) {
        return Err("its node attributes differ in length".to_owned());
    }
    if nodes.tree_ids.iter().any(|&t| t != nodes.tree_ids[0]) {
        return Err("it has several trees".to_owned());
    }
    let mut index: HashMap<i64, usize> = HashMap::with_capacity(n);
    for (i, &id) in nodes.node_ids.iter().enumerate() {
        if index.insert(id, i).is_some() {
            return Err(format!("node {id} appears twice"));
        }
    }
    let mut out: Vec<IsolationNode> = Vec::with_capacity(n);
    let mut visited = vec![false; n];
    // (attribute index, where its parent wants its position written: (parent, is_left)).
    let mut stack: Vec<(usize, Option<(usize, bool)>)> = vec![(0, None)];
    while let Some((i, parent)) = stack.pop() {
        if std::mem::replace(&mut visited[i], true) {
            return Err(format!("node {} is reached twice", nodes.node_ids[i]));
        }
        let at = u32::try_from(out.len()).map_err(|_| "too many nodes".to_owned())?;
        if let Some((p, is_left)) = parent
            && let Some(IsolationNode::Split { left, right, .. }) = out.get_mut(p)
        {
            *(if is_left { left } else { right }) = at;
        }
        match nodes.modes[i] {
            NodeMode::Leaf => {
                let id = nodes.node_ids[i];
                let w = *weights.get(&id).ok_or_else(|| format!("leaf {id} has no weight"))?;
                if w.fract() != 0.0 || w.abs() > 2f32.powi(30) {
                    return Err(format!("leaf {id} answers {w}, not a node id"));
                }
                out.push(IsolationNode::Leaf { path_length: term(w as i64)? });
            }
            NodeMode::BranchLeq => {
                let feature = usize::try_from(nodes.feature_ids[i])
                    .ok()
                    .and_then(|f| features.get(f).copied())
                    .ok_or_else(|| {
                        format!("node {} reads feature {}", nodes.node_ids[i], nodes.feature_ids[i])
                    })?;
                out.push(IsolationNode::Split { feature, threshold: nodes.values[i], left: 0, right: 0 });
                let child =
                    |id: i64| index.get(&id).copied().ok_or_else(|| format!("node {id} does not exist"));
                // The false child is pushed first so the true child comes next in preorder.
                stack.push((child(nodes.false_node_ids[i])?, Some((out.len() - 1, false))));
                stack.push((child(nodes.true_node_ids[i])?, Some((out.len() - 1, true))));
            }
            other => return Err(format!("node {} splits with {other:?}, not BRANCH_LEQ", nodes.node_ids[i])),
        }
    }
    if visited.iter().any(|v| !v) {
        return Err("some nodes are not reachable from the root".to_owned());
    }
    Ok(IsolationTree { nodes: out })
}
