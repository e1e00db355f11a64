//! Compiling `graph:` / `traffic:` into a [`Graph`]: types inferred, built-ins configured,
//! models looked up, tensors checked from node to node, cycles refused.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use palisade_bundle::Manifest;
use palisade_bundle::graph::{CallAs, GraphNode, Implementation, ModelTarget, NodeType, Sticky};
use palisade_core::{DataType, ModelSignature, TensorSpec};

use crate::GraphError;
use crate::bandit::{Bandit, BanditKind};
use crate::builtin::Builtin;
use crate::combine::Combiner;
use crate::fit::{check_feeds, check_same, merge_needs};
use crate::params::Params;
use crate::rng::Rng;
use crate::router::Weights;

/// The models a graph can name, as the store (at build time) or the served registry (at
/// serve time) knows them.
pub trait Catalog {
    /// The model `target` names, or why there is none (the message is shown as is).
    fn lookup(&self, target: &ModelTarget) -> Result<CatalogEntry, String>;
}

/// What a graph needs to know of a model it names.
#[derive(Debug, Clone)]
pub struct CatalogEntry {
    /// Its inputs and outputs.
    pub signature: ModelSignature,
    /// The models it serves, when it is itself a graph or traffic bundle (for cycles).
    pub uses: Vec<ModelTarget>,
}

/// The models of a store, as a graph being built sees them: each one's recorded signature,
/// and the models it serves when it is a graph itself. Every bundle is verified as read.
#[derive(Debug)]
pub struct StoreCatalog<'a>(pub &'a palisade_bundle::Store);

impl Catalog for StoreCatalog<'_> {
    fn lookup(&self, target: &ModelTarget) -> Result<CatalogEntry, String> {
        let version = target.version.as_ref().map_or("latest", |v| v.as_str());
        let record = self.0.resolve(&target.name, version).map_err(|e| {
            format!("model `{target}` is not in the store ({e}); build it first with `palisade build`")
        })?;
        let bundle = self.0.load(&record).map_err(|e| format!("model `{target}`: {e}"))?;
        let signature = bundle.signature.clone().ok_or_else(|| {
            format!(
                "model `{target}` has no recorded signature; build it again with this version of palisade"
            )
        })?;
        Ok(CatalogEntry { signature, uses: uses_of(&bundle.manifest) })
    }
}

/// A call of a stored model: which one, and which of the incoming tensors it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The model.
    pub target: ModelTarget,
    /// Its input names: the node passes these tensors on and leaves the others out.
    pub inputs: Vec<String>,
}

/// How a ROUTER chooses.
#[derive(Debug)]
pub enum Router {
    /// A weighted draw (RANDOM_ABTEST, WEIGHTED_RANDOM, `traffic:`), sticky when the graph
    /// says so.
    Weighted(Weights),
    /// A bandit driven by feedback.
    Bandit(Arc<Bandit>),
    /// A model whose first output's first element is the child's index (or -1, -2).
    Model(Call),
}

/// What a node does (see the crate docs for the order).
#[derive(Debug)]
pub enum Step {
    /// Runs a model on the input (MODEL, or TRANSFORMER with a model).
    Run(Call),
    /// A built-in transformer on the input.
    Transform(Builtin),
    /// Runs a model on the children's answer (OUTPUT_TRANSFORMER with a model).
    RunOutput(Call),
    /// A built-in on the children's answer (OUTPUT_TRANSFORMER).
    TransformOutput(Builtin),
    /// Chooses children.
    Route(Router),
    /// Combines the children's answers.
    Combine(Combiner),
}

/// One node of a compiled graph.
#[derive(Debug)]
pub struct Node {
    /// The node's name (for `traffic:`, the arm's model, `iris:1.0.0`; the router is
    /// `traffic`).
    pub name: String,
    /// Its type.
    pub kind: NodeType,
    /// What it does.
    pub step: Step,
    /// Its children.
    pub children: Vec<Node>,
}

/// A compiled graph (or traffic split): what a bundle with `graph:` or `traffic:` serves.
#[derive(Debug)]
pub struct Graph {
    root: Node,
    signature: ModelSignature,
    uses: Vec<ModelTarget>,
    shadow: Option<(ModelTarget, f64)>,
    sticky: Option<Sticky>,
    call_as: CallAs,
    traffic: bool,
    bandits: Vec<(String, Arc<Bandit>)>,
    pub(crate) steps: Option<crate::steps::Steps>,
    pub(crate) rng: Mutex<Rng>,
}

impl Graph {
    /// The graph's inputs and outputs, as clients see them.
    pub fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    /// The root node.
    pub fn root(&self) -> &Node {
        &self.root
    }

    /// Every model the graph names (nodes, arms, shadow), once each.
    pub fn uses(&self) -> &[ModelTarget] {
        &self.uses
    }

    /// The shadow model and the percentage of requests it mirrors.
    pub fn shadow(&self) -> Option<(&ModelTarget, f64)> {
        self.shadow.as_ref().map(|(t, p)| (t, *p))
    }

    /// Whether this request is mirrored to the shadow (a draw against its percentage).
    pub fn shadow_due(&self) -> Option<&ModelTarget> {
        let (target, percent) = self.shadow.as_ref()?;
        let draw = self.rng.lock().unwrap_or_else(|e| e.into_inner()).unit() * 100.0;
        (draw < *percent).then_some(target)
    }

    /// What keeps a caller in one arm.
    pub fn sticky(&self) -> Option<&Sticky> {
        self.sticky.as_ref()
    }

    /// Whose authority the nodes run with.
    pub fn call_as(&self) -> CallAs {
        self.call_as
    }

    /// Whether this is a `traffic:` split (its routing names the arm's model).
    pub fn is_traffic(&self) -> bool {
        self.traffic
    }

    /// The bandits, by node name.
    pub fn bandits(&self) -> &[(String, Arc<Bandit>)] {
        &self.bandits
    }

    /// Every node, depth first.
    pub fn nodes(&self) -> Vec<&Node> {
        let mut out = Vec::new();
        let mut stack = vec![&self.root];
        while let Some(node) = stack.pop() {
            out.push(node);
            stack.extend(node.children.iter().rev());
        }
        out
    }
}

/// Every model a manifest's `graph:`, `traffic:` and `shadow:` name (none for a model).
pub fn uses_of(manifest: &Manifest) -> Vec<ModelTarget> {
    let mut uses: Vec<ModelTarget> = manifest
        .graph
        .iter()
        .flat_map(|g| g.walk())
        .filter_map(|(_, node)| node.model.clone())
        .chain(manifest.traffic.iter().flatten().map(|arm| arm.model.clone()))
        .chain(manifest.shadow.iter().map(|s| s.model.clone()))
        .chain(manifest.pipeline.iter().flat_map(|p| p.steps.iter().filter_map(|s| s.target().ok())))
        .collect();
    uses.sort();
    uses.dedup();
    uses
}

/// Compiles the `graph:` or `traffic:` (and `shadow:`) of `manifest` against `catalog`.
/// `seed` fixes the random draws (tests); `None` seeds from the process's randomness.
pub fn compile(manifest: &Manifest, catalog: &dyn Catalog, seed: Option<u64>) -> Result<Graph, GraphError> {
    let mut rng = seed.map_or_else(Rng::from_entropy, Rng::seeded);
    let mut targets: Vec<(String, ModelTarget)> = Vec::new();
    if let Some(graph) = &manifest.graph {
        for (path, node) in graph.walk() {
            if let Some(model) = &node.model {
                targets.push((format!("{path}.model"), model.clone()));
            }
        }
    }
    for (i, arm) in manifest.traffic.iter().flatten().enumerate() {
        targets.push((format!("traffic[{i}].model"), arm.model.clone()));
    }
    if let Some(shadow) = &manifest.shadow {
        targets.push(("shadow.model".to_owned(), shadow.model.clone()));
    }
    for (i, step) in manifest.pipeline.iter().flat_map(|p| p.steps.iter()).enumerate() {
        let target = step.target().map_err(|e| GraphError::new(format!("pipeline.steps[{i}].name"), e))?;
        let field = if step.model.is_some() { "model" } else { "name" };
        targets.push((format!("pipeline.steps[{i}].{field}"), target));
    }
    let mut resolved = Vec::new();
    for (field, target) in &targets {
        resolved.push((target.clone(), resolve(manifest, catalog, field, target)?));
    }
    // Only targets resolved above are looked up; the empty entry is never used.
    let empty = CatalogEntry { signature: ModelSignature::default(), uses: Vec::new() };
    let entry = |target: &ModelTarget| -> &CatalogEntry {
        resolved.iter().find(|(t, _)| t == target).map_or(&empty, |(_, e)| e)
    };
    let mut bandits = Vec::new();
    let mut steps = None;
    let (root, inputs, outputs, traffic) = if let Some(pipeline) = &manifest.pipeline {
        let (planned, inputs, outputs) =
            crate::steps::compile(manifest.name.as_str(), pipeline, manifest.inputs.as_deref(), &entry)?;
        steps = Some(planned);
        let root = Node {
            name: "pipeline".to_owned(),
            kind: NodeType::Model,
            step: Step::Transform(Builtin::Rename(vec![])),
            children: vec![],
        };
        (root, inputs, outputs, false)
    } else if let Some(graph) = &manifest.graph {
        let inputs = match &manifest.inputs {
            Some(inputs) => inputs.clone(),
            None => needs(graph, "graph", &entry)?.ok_or_else(|| {
                GraphError::new("inputs", "the graph's first node is a built-in, so its inputs cannot be inferred: declare them with `inputs:` (name, datatype, shape), as under model.inputs")
            })?,
        };
        let mut builder = Builder { entry: &entry, bandits: &mut bandits, rng: &mut rng };
        let (root, outputs) = builder.build(graph, "graph", &inputs)?;
        (root, inputs, outputs, false)
    } else if let Some(arms) = &manifest.traffic {
        let first = entry(&arms[0].model).signature.clone();
        let mut children = Vec::new();
        for (i, arm) in arms.iter().enumerate() {
            let signature = &entry(&arm.model).signature;
            let field = format!("traffic[{i}].model");
            check_same(
                &first.inputs,
                &signature.inputs,
                &format!("`{}` and `{}` take different inputs", arms[0].model, arm.model),
            )
            .map_err(|e| {
                GraphError::new(&field, format!("{e}; the arms of a traffic split are interchangeable"))
            })?;
            check_same(
                &first.outputs,
                &signature.outputs,
                &format!("`{}` and `{}` answer differently", arms[0].model, arm.model),
            )
            .map_err(|e| {
                GraphError::new(&field, format!("{e}; the arms of a traffic split are interchangeable"))
            })?;
            children.push(Node {
                name: arm.model.to_string(),
                kind: NodeType::Model,
                step: Step::Run(Call {
                    target: arm.model.clone(),
                    inputs: signature.inputs.iter().map(|t| t.name.clone()).collect(),
                }),
                children: vec![],
            });
        }
        let weights: Vec<u64> = arms.iter().map(|a| u64::from(a.weight)).collect();
        let weights =
            Weights::new(&weights).ok_or_else(|| GraphError::new("traffic", "every weight is 0"))?;
        let root = Node {
            name: "traffic".to_owned(),
            kind: NodeType::Router,
            step: Step::Route(Router::Weighted(weights)),
            children,
        };
        (root, first.inputs, first.outputs, true)
    } else {
        return Err(GraphError::new("graph", "the bundle has none of `graph:`, `pipeline:` or `traffic:`"));
    };
    if let Some(shadow) = &manifest.shadow {
        let signature = &entry(&shadow.model).signature;
        check_feeds(&inputs, &signature.inputs, &format!("the shadow `{}`", shadow.model))
            .map_err(|e| GraphError::new("shadow.model", e))?;
    }
    let mut uses: Vec<ModelTarget> = targets.into_iter().map(|(_, t)| t).collect();
    uses.sort();
    uses.dedup();
    Ok(Graph {
        root,
        signature: ModelSignature { inputs, outputs },
        uses,
        shadow: manifest.shadow.as_ref().map(|s| (s.model.clone(), s.percent)),
        sticky: manifest.sticky.clone(),
        call_as: manifest.call_as,
        traffic,
        bandits,
        steps,
        rng: Mutex::new(rng),
    })
}

/// Looks a target up, refusing the graph's own name and any chain of graphs that leads
/// back to it.
fn resolve(
    manifest: &Manifest,
    catalog: &dyn Catalog,
    field: &str,
    target: &ModelTarget,
) -> Result<CatalogEntry, GraphError> {
    let own = &manifest.name;
    // Another version of the same name is allowed when it is a model, not a graph (a
    // canary served as the model's own new version; the router's variants): named without
    // a version, or by this version, it is this bundle itself.
    let other_version = target.version.as_ref().is_some_and(|v| v != &manifest.version);
    if &target.name == own && !other_version {
        return Err(GraphError::new(
            field,
            format!("`{target}` is this bundle itself: a graph cannot call itself (a cycle)"),
        ));
    }
    let entry = catalog.lookup(target).map_err(|e| GraphError::new(field, e))?;
    if &target.name == own && !entry.uses.is_empty() {
        return Err(GraphError::new(
            field,
            format!(
                "`{target}` is another graph of this name: a graph may name its own model's other versions only when they are models"
            ),
        ));
    }
    // Depth-first over the graphs it names: a path back to this bundle is a cycle.
    let mut stack: Vec<(ModelTarget, Vec<String>)> =
        entry.uses.iter().map(|u| (u.clone(), vec![own.to_string(), target.to_string()])).collect();
    let mut seen = BTreeSet::new();
    while let Some((next, chain)) = stack.pop() {
        if &next.name == own {
            let mut chain = chain;
            chain.push(next.to_string());
            return Err(GraphError::new(
                field,
                format!(
                    "a cycle: {}; a graph cannot reach itself through the models it names",
                    chain.join(" -> ")
                ),
            ));
        }
        if !seen.insert(next.clone()) || seen.len() > 10_000 {
            continue;
        }
        if let Ok(nested) = catalog.lookup(&next) {
            for used in nested.uses {
                let mut longer = chain.clone();
                longer.push(next.to_string());
                stack.push((used, longer));
            }
        }
    }
    Ok(entry)
}

/// The tensors a node needs from its input, when that can be known without its input:
/// a model's inputs, or what its children need when it passes its input on unchanged.
fn needs<'e>(
    node: &GraphNode,
    path: &str,
    entry: &dyn Fn(&ModelTarget) -> &'e CatalogEntry,
) -> Result<Option<Vec<TensorSpec>>, GraphError> {
    let kind = node.node_type().unwrap_or(NodeType::Model);
    let own = match (&node.model, kind) {
        (Some(model), NodeType::Model | NodeType::Transformer) => {
            return Ok(Some(entry(model).signature.inputs.clone()));
        }
        (Some(model), NodeType::Router) => Some(entry(model).signature.inputs.clone()),
        (None, NodeType::Transformer) => return Ok(None),
        _ => None,
    };
    if node.children.is_empty() {
        return Ok(None);
    }
    let mut all = own.unwrap_or_default();
    for (i, child) in node.children.iter().enumerate() {
        let path = format!("{path}.children[{i}]");
        match needs(child, &path, entry)? {
            Some(more) => merge_needs(&mut all, &more).map_err(|e| GraphError::new(path, e))?,
            None => return Ok(None),
        }
    }
    Ok(Some(all))
}

struct Builder<'a, 'e> {
    entry: &'a dyn Fn(&ModelTarget) -> &'e CatalogEntry,
    bandits: &'a mut Vec<(String, Arc<Bandit>)>,
    rng: &'a mut Rng,
}

impl Builder<'_, '_> {
    fn call(
        &self,
        model: &ModelTarget,
        incoming: &[TensorSpec],
        node: &GraphNode,
        path: &str,
    ) -> Result<(Call, Vec<TensorSpec>), GraphError> {
        let signature = &(self.entry)(model).signature;
        check_feeds(incoming, &signature.inputs, &format!("node `{}` (model `{model}`)", node.name))
            .map_err(|e| GraphError::new(format!("{path}.model"), e))?;
        let call =
            Call { target: model.clone(), inputs: signature.inputs.iter().map(|t| t.name.clone()).collect() };
        Ok((call, signature.outputs.clone()))
    }

    /// Builds a node fed `incoming`; returns it and what it answers.
    fn build(
        &mut self,
        node: &GraphNode,
        path: &str,
        incoming: &[TensorSpec],
    ) -> Result<(Node, Vec<TensorSpec>), GraphError> {
        let kind = node
            .node_type()
            .ok_or_else(|| GraphError::new(format!("{path}.type"), "the node's type is missing"))?;
        let mut params = Params::new(path, &node.parameters);
        let at = |e: String| GraphError::new(path, format!("node `{}`: {e}", node.name));
        let (step, transformed) = match (kind, &node.model, node.implementation) {
            (NodeType::Model | NodeType::Transformer, Some(model), _) => {
                let (call, out) = self.call(model, incoming, node, path)?;
                (Step::Run(call), out)
            }
            (NodeType::Transformer, None, Some(implementation)) => {
                let builtin = Builtin::configure(implementation, path, &mut params)?;
                let out = builtin.output_specs(incoming).map_err(at)?;
                params.finish(Builtin::known(implementation))?;
                (Step::Transform(builtin), out)
            }
            (NodeType::OutputTransformer, Some(model), _) => {
                // Checked against the children's answer below.
                let call = Call { target: model.clone(), inputs: vec![] };
                (Step::RunOutput(call), incoming.to_vec())
            }
            (NodeType::OutputTransformer, None, Some(implementation)) => {
                let builtin = Builtin::configure(implementation, path, &mut params)?;
                params.finish(Builtin::known(implementation))?;
                (Step::TransformOutput(builtin), incoming.to_vec())
            }
            (NodeType::Router, Some(model), _) => {
                let (call, out) = self.call(model, incoming, node, path)?;
                if !out.first().is_some_and(|o| matches!(o.datatype, DataType::Int32 | DataType::Int64)) {
                    return Err(GraphError::new(
                        format!("{path}.model"),
                        format!(
                            "a router model answers the child's index as its first output (INT32 or INT64); `{model}` does not"
                        ),
                    ));
                }
                (Step::Route(Router::Model(call)), incoming.to_vec())
            }
            (NodeType::Router, None, Some(implementation)) => {
                let router = self.router(implementation, node, path, &mut params)?;
                (Step::Route(router), incoming.to_vec())
            }
            (NodeType::Combiner, None, Some(implementation)) => {
                let combiner = Combiner::configure(implementation, path, &mut params)?;
                params.finish(Combiner::known(implementation))?;
                (Step::Combine(combiner), incoming.to_vec())
            }
            _ => {
                return Err(GraphError::new(
                    path,
                    format!(
                        "node `{}`: a {} node needs `model` or a built-in `implementation`",
                        node.name,
                        kind.as_str()
                    ),
                ));
            }
        };
        if matches!(step, Step::Run(_) | Step::RunOutput(_) | Step::Route(Router::Model(_)))
            && !node.parameters.is_empty()
        {
            return Err(GraphError::new(
                format!("{path}.parameters"),
                "a node that runs a model takes no parameters: the model's bundle holds its settings",
            ));
        }
        let mut children = Vec::new();
        let mut answers = Vec::new();
        for (i, child) in node.children.iter().enumerate() {
            let (built, out) = self.build(child, &format!("{path}.children[{i}]"), &transformed)?;
            children.push(built);
            answers.push(out);
        }
        let aggregated = match (&step, answers.first()) {
            (_, None) => transformed,
            (Step::Combine(combiner), Some(_)) => combiner.output_specs(&answers).map_err(at)?,
            (Step::Route(_), Some(first)) => {
                for (i, answer) in answers.iter().enumerate().skip(1) {
                    check_same(first, answer, &format!("children 0 and {i} of router `{}`", node.name))
                        .map_err(|e| {
                            GraphError::new(
                                format!("{path}.children[{i}]"),
                                format!("{e}; a router's children must answer alike"),
                            )
                        })?;
                }
                first.clone()
            }
            (_, Some(first)) => first.clone(),
        };
        let (step, answer) = match step {
            Step::RunOutput(call) => {
                let (call, out) = self.call(&call.target, &aggregated, node, path)?;
                (Step::RunOutput(call), out)
            }
            Step::TransformOutput(builtin) => {
                let out = builtin.output_specs(&aggregated).map_err(at)?;
                (Step::TransformOutput(builtin), out)
            }
            other => (other, aggregated),
        };
        Ok((Node { name: node.name.to_string(), kind, step, children }, answer))
    }

    fn router(
        &mut self,
        implementation: Implementation,
        node: &GraphNode,
        path: &str,
        params: &mut Params<'_>,
    ) -> Result<Router, GraphError> {
        let n = node.children.len();
        let field = format!("{path}.parameters");
        let router = match implementation {
            Implementation::RandomAbtest => {
                if n != 2 {
                    return Err(GraphError::new(
                        format!("{path}.children"),
                        format!("RANDOM_ABTEST chooses between 2 children; this node has {n}"),
                    ));
                }
                let ratio = params.number("ratioA")?.ok_or_else(|| {
                    GraphError::new(&field, "RANDOM_ABTEST needs `ratioA` (the share of child 0, 0 to 1)")
                })?;
                if !(0.0..=1.0).contains(&ratio) {
                    return Err(GraphError::new(
                        &field,
                        format!("`ratioA` {ratio} is out of range: use 0 to 1"),
                    ));
                }
                let a = (ratio * 1e6).round() as u64;
                params.finish("`ratioA`")?;
                Router::Weighted(
                    Weights::new(&[a, 1_000_000 - a]).ok_or_else(|| GraphError::new(&field, "no weight"))?,
                )
            }
            Implementation::WeightedRandom => {
                let weights = params.numbers("weights")?.ok_or_else(|| {
                    GraphError::new(&field, "WEIGHTED_RANDOM needs `weights`, one per child, e.g. `[90, 10]`")
                })?;
                if weights.len() != n || weights.iter().any(|w| *w < 0.0) {
                    return Err(GraphError::new(
                        &field,
                        format!("`weights` needs {n} non-negative numbers, one per child"),
                    ));
                }
                let integral = weights.iter().all(|w| w.fract() == 0.0 && *w <= 1e9);
                let scaled: Vec<u64> = weights
                    .iter()
                    .map(|w| if integral { *w as u64 } else { (w * 1e6).round() as u64 })
                    .collect();
                params.finish("`weights`")?;
                Router::Weighted(
                    Weights::new(&scaled).ok_or_else(|| GraphError::new(&field, "every weight is 0"))?,
                )
            }
            Implementation::EpsilonGreedy | Implementation::ThompsonSampling => {
                let kind = if implementation == Implementation::EpsilonGreedy {
                    let epsilon = params.number("epsilon")?.unwrap_or(0.1);
                    if !(0.0..=1.0).contains(&epsilon) {
                        return Err(GraphError::new(
                            &field,
                            format!("`epsilon` {epsilon} is out of range: use 0 to 1"),
                        ));
                    }
                    params.finish("`epsilon`")?;
                    BanditKind::EpsilonGreedy { epsilon }
                } else {
                    params.finish("no parameters")?;
                    BanditKind::Thompson
                };
                let bandit = Arc::new(Bandit::new(kind, n, Rng::seeded(self.rng.next_u64())));
                self.bandits.push((node.name.to_string(), bandit.clone()));
                Router::Bandit(bandit)
            }
            other => {
                return Err(GraphError::new(
                    format!("{path}.implementation"),
                    format!("{} is not a router", other.as_str()),
                ));
            }
        };
        Ok(router)
    }
}
