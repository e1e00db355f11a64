//! `graph:`, `traffic:` and `shadow:`: a bundle that serves other models.
//!
//! The syntax of `graph:` is Seldon Core v1's predictive unit, so a team can paste the
//! graph of its SeldonDeployment: `name`, `type`, `implementation`, `parameters` (as
//! `{name, value, type}`) and `children`. A MODEL node names a model of the store with
//! `model: NAME[:VERSION]` (its latest version without one). What the nodes mean, and the
//! checks that need the store (models exist, tensors fit from node to node, no cycles), are
//! `palisade-graph`'s; this module parses what is written, with the file, line and field
//! of every error.
//!
//! ```yaml
//! graph:
//!   name: ab-test
//!   type: ROUTER
//!   implementation: RANDOM_ABTEST
//!   parameters: [{name: ratioA, value: "0.5", type: FLOAT}]
//!   children:
//!     - {name: a, type: MODEL, model: iris-lr}
//!     - {name: b, type: MODEL, model: "iris-rf:2.0.0"}
//! ```
//!
//! ```yaml
//! traffic: [{model: "iris:1.0.0", weight: 90}, {model: "iris:2.0.0", weight: 10}]
//! shadow: {model: "iris:3.0.0", percent: 100}
//! sticky: {header: x-user}
//! ```

use std::collections::BTreeMap;
use std::fmt;

use palisade_core::{ModelName, Version};
use serde::{Deserialize, Deserializer, Serialize};

/// Most nodes in one graph.
pub const MAX_NODES: usize = 256;
/// Deepest nesting of `children`.
pub const MAX_DEPTH: usize = 32;
/// Most arms of `traffic:`.
pub const MAX_ARMS: usize = 64;

/// A model named by a graph, a traffic arm or a shadow: `NAME` (its latest version) or
/// `NAME:VERSION`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelTarget {
    /// The model's name.
    pub name: ModelName,
    /// The version; `None` for the latest.
    pub version: Option<Version>,
}

impl ModelTarget {
    /// Parses `NAME[:VERSION]`; `NAME:latest` is `NAME`.
    pub fn parse(text: &str) -> Result<ModelTarget, String> {
        let (name, version) = match text.split_once(':') {
            Some((name, version)) => (name, Some(version)),
            None => (text, None),
        };
        let name = ModelName::new(name).map_err(|e| format!("`{text}`: {e}; write NAME or NAME:VERSION"))?;
        let version = match version {
            None | Some(Version::LATEST) => None,
            Some(v) => {
                Some(Version::new(v).map_err(|e| format!("`{text}`: {e}; write NAME or NAME:VERSION"))?)
            }
        };
        Ok(ModelTarget { name, version })
    }
}

impl fmt::Display for ModelTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.version {
            Some(version) => write!(f, "{}:{}", self.name, version),
            None => write!(f, "{}", self.name),
        }
    }
}

impl Serialize for ModelTarget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ModelTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ModelTarget::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A node's name: 1-63 of `a-z A-Z 0-9 - _ .`, unique in its graph.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(into = "String")]
pub struct NodeName(String);

impl NodeName {
    /// Parses a node name.
    pub fn new(text: &str) -> Result<NodeName, String> {
        let ok = !text.is_empty()
            && text.len() <= 63
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(NodeName(text.to_owned()))
        } else {
            Err(format!("node name `{text}` is invalid: use 1-63 of letters, digits, `-_.`"))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<NodeName> for String {
    fn from(name: NodeName) -> String {
        name.0
    }
}

impl<'de> Deserialize<'de> for NodeName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        NodeName::new(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Seldon's node types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodeType {
    /// Runs a model on its input; its children get the model's outputs.
    Model,
    /// Transforms the input (a model or a built-in) before the children.
    Transformer,
    /// Transforms what the children answered (a model or a built-in).
    OutputTransformer,
    /// Chooses which child runs (a built-in, or a model answering the child's index).
    Router,
    /// Merges what its children answered (a built-in).
    Combiner,
}

impl NodeType {
    /// The type as written.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeType::Model => "MODEL",
            NodeType::Transformer => "TRANSFORMER",
            NodeType::OutputTransformer => "OUTPUT_TRANSFORMER",
            NodeType::Router => "ROUTER",
            NodeType::Combiner => "COMBINER",
        }
    }
}

/// The built-in implementations: Seldon's (`RANDOM_ABTEST`, `AVERAGE_COMBINER`) and
/// Palisade's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Implementation {
    /// ROUTER: child 0 with probability `ratioA`, else child 1 (Seldon's).
    RandomAbtest,
    /// ROUTER: child i with probability `weights[i] / sum(weights)`.
    WeightedRandom,
    /// ROUTER: a bandit; the best arm by mean reward, a random one with probability `epsilon`.
    EpsilonGreedy,
    /// ROUTER: a bandit; Thompson sampling over Beta posteriors of the rewards.
    ThompsonSampling,
    /// COMBINER: the element-wise mean of the children's tensors (Seldon's).
    AverageCombiner,
    /// COMBINER: per row, the label most children answered.
    MajorityVote,
    /// COMBINER: the children's tensors concatenated along the last axis.
    ConcatCombiner,
    /// TRANSFORMER: keeps the listed tensors.
    Select,
    /// TRANSFORMER: renames tensors.
    Rename,
    /// TRANSFORMER: concatenates tensors along the last axis into one.
    Concat,
    /// TRANSFORMER: converts tensors to another datatype.
    Cast,
    /// TRANSFORMER: `x * scale + offset` on floating-point tensors.
    Scale,
}

impl Implementation {
    /// The implementation as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Implementation::RandomAbtest => "RANDOM_ABTEST",
            Implementation::WeightedRandom => "WEIGHTED_RANDOM",
            Implementation::EpsilonGreedy => "EPSILON_GREEDY",
            Implementation::ThompsonSampling => "THOMPSON_SAMPLING",
            Implementation::AverageCombiner => "AVERAGE_COMBINER",
            Implementation::MajorityVote => "MAJORITY_VOTE",
            Implementation::ConcatCombiner => "CONCAT_COMBINER",
            Implementation::Select => "SELECT",
            Implementation::Rename => "RENAME",
            Implementation::Concat => "CONCAT",
            Implementation::Cast => "CAST",
            Implementation::Scale => "SCALE",
        }
    }

    /// The node type the implementation belongs to (`TRANSFORMER` built-ins also serve
    /// `OUTPUT_TRANSFORMER` nodes).
    pub fn node_type(self) -> NodeType {
        match self {
            Implementation::RandomAbtest
            | Implementation::WeightedRandom
            | Implementation::EpsilonGreedy
            | Implementation::ThompsonSampling => NodeType::Router,
            Implementation::AverageCombiner
            | Implementation::MajorityVote
            | Implementation::ConcatCombiner => NodeType::Combiner,
            Implementation::Select
            | Implementation::Rename
            | Implementation::Concat
            | Implementation::Cast
            | Implementation::Scale => NodeType::Transformer,
        }
    }
}

/// Seldon's parameter types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ParameterType {
    /// An integer.
    Int,
    /// A floating-point number.
    Float,
    /// A floating-point number.
    Double,
    /// Text (the default).
    #[default]
    String,
    /// `true` or `false`.
    Bool,
    /// A JSON document (lists, maps).
    Json,
}

/// One `{name, value, type}` of a node's `parameters`. Seldon writes every value as a
/// string; a YAML number or boolean is taken as its text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameter {
    /// The parameter's name.
    pub name: String,
    /// Its value, as text.
    #[serde(deserialize_with = "scalar_text")]
    pub value: String,
    /// How the value is read.
    #[serde(default, rename = "type")]
    pub kind: ParameterType,
}

fn scalar_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a scalar value (text, number or boolean)")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(Visitor)
}

/// One node of `graph:` (Seldon's predictive unit), as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphNode {
    /// The node's name, unique in the graph: audit records, metrics and `routing` name it.
    pub name: NodeName,
    /// The node's type; inferred from `implementation`, or MODEL for a node with `model`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<NodeType>,
    /// A built-in implementation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub implementation: Option<Implementation>,
    /// The stored model the node runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelTarget>,
    /// Parameters of the implementation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Parameter>,
    /// The nodes that run after this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<GraphNode>,
    /// Seldon's `endpoint` (how its executor reached a container): accepted so that a
    /// SeldonDeployment's graph pastes unchanged, and unused (nodes run in this process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<serde_json::Value>,
}

impl GraphNode {
    /// The node's type: as written, else the implementation's, else MODEL for a node
    /// with a model. `None` when nothing says.
    pub fn node_type(&self) -> Option<NodeType> {
        self.kind
            .or_else(|| self.implementation.map(Implementation::node_type))
            .or_else(|| self.model.as_ref().map(|_| NodeType::Model))
    }

    /// The node and its descendants, depth first, each with its field path (`graph`,
    /// `graph.children[0]`, ...).
    pub fn walk(&self) -> Vec<(String, &GraphNode)> {
        let mut out = Vec::new();
        let mut stack = vec![("graph".to_owned(), self)];
        while let Some((path, node)) = stack.pop() {
            for (i, child) in node.children.iter().enumerate().rev() {
                stack.push((format!("{path}.children[{i}]"), child));
            }
            out.push((path, node));
        }
        out
    }
}

/// `pipeline:`: Seldon Core 2's pipeline syntax, an alternative to `graph:`. Each step
/// runs a model on tensors of earlier steps (`inputs: [STEP.outputs.TENSOR]`, renamed for
/// the model by `tensorMap`); steps without `inputs` get the pipeline's inputs; the answer
/// is what the `output` steps answer (the last step's by default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// The steps, in any order (they run when their inputs are ready).
    pub steps: Vec<PipelineStep>,
    /// Which steps answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<PipelineOutput>,
}

/// One step of `pipeline:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineStep {
    /// The step's name; also its model's, unless `model` says otherwise (Seldon Core 2
    /// names a step by its model).
    pub name: NodeName,
    /// The stored model the step runs (default: the step's name, latest version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelTarget>,
    /// Where its tensors come from: `STEP.outputs.TENSOR`, `STEP.outputs` (all of them),
    /// `STEP.inputs[.TENSOR]`, or `PIPELINE.inputs[.TENSOR]` (the request's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
    /// Renames: a reference (as in `inputs`) to the model input it feeds.
    #[serde(default, rename = "tensorMap", skip_serializing_if = "BTreeMap::is_empty")]
    pub tensor_map: BTreeMap<String, String>,
    /// How the step joins its `inputs` (default `inner`: every one present).
    #[serde(default, rename = "inputsJoinType", skip_serializing_if = "Option::is_none")]
    pub inputs_join_type: Option<JoinType>,
    /// References (as in `inputs`) that must be present for the step to run; their data is
    /// not passed to the model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<String>,
    /// How the step joins its `triggers` (default `inner`: every one present).
    #[serde(default, rename = "triggersJoinType", skip_serializing_if = "Option::is_none")]
    pub triggers_join_type: Option<JoinType>,
    /// How long, in milliseconds, the step's joins wait for the rest of their references once
    /// the first is present (Seldon Core 2's join window; here a per-request deadline). When
    /// it closes, `outer` and `any` joins go on with what is present; an `inner` join with a
    /// reference still pending fails the request (504). Default: no window, the joins wait
    /// for every step they read.
    #[serde(default, rename = "joinWindowMs", skip_serializing_if = "Option::is_none")]
    pub join_window_ms: Option<u32>,
}

/// The longest `joinWindowMs` accepted: an hour (a request's own timeout cuts it shorter).
pub const MAX_JOIN_WINDOW_MS: u32 = 3_600_000;

/// How a pipeline step joins the references it reads (Seldon Core 2's `inputsJoinType`,
/// `triggersJoinType` and `output.stepsJoin`). A reference is present when the step it
/// names ran and, for one tensor, answered it with at least one element.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JoinType {
    /// Every reference present, else the step does not run.
    #[default]
    Inner,
    /// At least one present; those present are joined.
    Outer,
    /// At least one present; the first present, in the order written, is used alone.
    Any,
}

impl PipelineStep {
    /// The model the step runs.
    pub fn target(&self) -> Result<ModelTarget, String> {
        match &self.model {
            Some(model) => Ok(model.clone()),
            None => ModelTarget::parse(self.name.as_str()),
        }
    }
}

/// `pipeline.output`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineOutput {
    /// The steps whose outputs are the answer, joined.
    pub steps: Vec<String>,
    /// Renames of the answer's tensors: a reference (`STEP.outputs.TENSOR`) to its name.
    #[serde(default, rename = "tensorMap", skip_serializing_if = "BTreeMap::is_empty")]
    pub tensor_map: BTreeMap<String, String>,
    /// How the output steps join (default `inner`: every one ran; `outer`: those that ran;
    /// `any`: the first that ran).
    #[serde(default, rename = "stepsJoin", skip_serializing_if = "Option::is_none")]
    pub steps_join: Option<JoinType>,
    /// How long, in milliseconds, the answer waits for the other output steps once the
    /// first has answered (as a step's `joinWindowMs`).
    #[serde(default, rename = "joinWindowMs", skip_serializing_if = "Option::is_none")]
    pub join_window_ms: Option<u32>,
}

/// One arm of `traffic:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficArm {
    /// The model version the arm serves.
    pub model: ModelTarget,
    /// Its share: `weight / sum of weights` of the requests (0 to 1000000).
    pub weight: u32,
}

/// `shadow:`: a model that gets a copy of requests; its answers, failures and latency never
/// reach the caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shadow {
    /// The mirrored model.
    pub model: ModelTarget,
    /// Percentage of requests mirrored (0 to 100; default 100).
    #[serde(default = "hundred")]
    pub percent: f64,
}

fn hundred() -> f64 {
    100.0
}

/// `sticky:`: what keeps a caller in one arm (one of the two).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sticky {
    /// A claim of the caller's token (`sub`, `email`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    /// A request header (`x-user`), lower-cased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

/// `callAs:`: whose authority the nodes run with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallAs {
    /// Every node is authorized as the original caller (the default): a graph is never a
    /// way around a model's policy.
    #[default]
    Caller,
    /// Nodes are authorized as the graph's own principal, `graph:NAMESPACE/NAME`.
    Graph,
}

impl CallAs {
    /// Whether this is the default.
    pub fn is_caller(&self) -> bool {
        *self == CallAs::Caller
    }
}

/// Checks what parsing alone can check of a graph, traffic and shadow: sizes, node names,
/// types against implementations, weights and percentages. On error, the field and why.
pub fn check_syntax(
    graph: Option<&GraphNode>,
    traffic: Option<&[TrafficArm]>,
    shadow: Option<&Shadow>,
    sticky: Option<&Sticky>,
) -> Result<(), (String, String)> {
    if let Some(graph) = graph {
        let nodes = graph.walk();
        if nodes.len() > MAX_NODES {
            return Err((
                "graph".to_owned(),
                format!("{} nodes; a graph has at most {MAX_NODES}", nodes.len()),
            ));
        }
        let mut seen = std::collections::BTreeMap::new();
        for (path, node) in &nodes {
            if path.matches(".children[").count() >= MAX_DEPTH {
                return Err((path.clone(), format!("nested deeper than {MAX_DEPTH} levels")));
            }
            if let Some(first) = seen.insert(node.name.as_str(), path.clone()) {
                return Err((
                    format!("{path}.name"),
                    format!(
                        "node name `{}` is used twice (also at {first}); names are unique in a graph: audit records, metrics and routing name nodes",
                        node.name
                    ),
                ));
            }
            check_node(path, node)?;
        }
    }
    if let Some(arms) = traffic {
        if arms.is_empty() || arms.len() > MAX_ARMS {
            return Err(("traffic".to_owned(), format!("list 1 to {MAX_ARMS} arms, each {{model, weight}}")));
        }
        for (i, arm) in arms.iter().enumerate() {
            if arm.weight > 1_000_000 {
                return Err((
                    format!("traffic[{i}].weight"),
                    format!("{} is out of range: use 0 to 1000000", arm.weight),
                ));
            }
            if arms[..i].iter().any(|a| a.model == arm.model) {
                return Err((format!("traffic[{i}].model"), format!("`{}` is listed twice", arm.model)));
            }
        }
        if arms.iter().all(|a| a.weight == 0) {
            return Err((
                "traffic".to_owned(),
                "every weight is 0: give at least one arm a weight".to_owned(),
            ));
        }
    }
    if let Some(shadow) = shadow
        && !(0.0..=100.0).contains(&shadow.percent)
    {
        return Err((
            "shadow.percent".to_owned(),
            format!("{} is out of range: use 0 to 100", shadow.percent),
        ));
    }
    if let Some(sticky) = sticky {
        match (&sticky.claim, &sticky.header) {
            (Some(claim), None) if !claim.is_empty() && claim.len() <= 256 => {}
            (None, Some(header))
                if !header.is_empty()
                    && header.len() <= 256
                    && header.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    && header != "authorization" =>
            {
                if header.bytes().any(|b| b.is_ascii_uppercase()) {
                    return Err((
                        "sticky.header".to_owned(),
                        format!("write the header name in lower case: `{}`", header.to_ascii_lowercase()),
                    ));
                }
            }
            _ => {
                return Err((
                    "sticky".to_owned(),
                    "give exactly one of `claim` (a token claim such as `sub`) or `header` (a lower-case header name other than authorization)".to_owned(),
                ));
            }
        }
    }
    Ok(())
}

fn check_node(path: &str, node: &GraphNode) -> Result<(), (String, String)> {
    let Some(kind) = node.node_type() else {
        return Err((
            format!("{path}.type"),
            "say what the node is: `type` (MODEL, TRANSFORMER, OUTPUT_TRANSFORMER, ROUTER, COMBINER), with `model: NAME[:VERSION]` or a built-in `implementation`".to_owned(),
        ));
    };
    if let Some(implementation) = node.implementation {
        let fits = implementation.node_type() == kind
            || (kind == NodeType::OutputTransformer && implementation.node_type() == NodeType::Transformer);
        if !fits {
            return Err((
                format!("{path}.implementation"),
                format!(
                    "{} is a {} built-in; this node is a {}",
                    implementation.as_str(),
                    implementation.node_type().as_str(),
                    kind.as_str()
                ),
            ));
        }
        if node.model.is_some() {
            return Err((
                format!("{path}.model"),
                format!(
                    "the node runs the built-in {}: remove `model`, or remove `implementation` to run the model",
                    implementation.as_str()
                ),
            ));
        }
    } else if node.model.is_none() {
        let hint = match kind {
            NodeType::Router => {
                "name a model answering the child's index, or a built-in: RANDOM_ABTEST, WEIGHTED_RANDOM, EPSILON_GREEDY, THOMPSON_SAMPLING"
            }
            NodeType::Combiner => "a built-in: AVERAGE_COMBINER, MAJORITY_VOTE, CONCAT_COMBINER",
            _ => {
                "a stored model (`model: NAME[:VERSION]`), or for transformers a built-in: SELECT, RENAME, CONCAT, CAST, SCALE"
            }
        };
        return Err((format!("{path}.model"), format!("a {} node needs {hint}", kind.as_str())));
    }
    if kind == NodeType::Combiner && node.model.is_some() {
        return Err((
            format!("{path}.model"),
            "a COMBINER runs a built-in: AVERAGE_COMBINER, MAJORITY_VOTE or CONCAT_COMBINER".to_owned(),
        ));
    }
    if matches!(kind, NodeType::Router | NodeType::Combiner) && node.children.is_empty() {
        return Err((format!("{path}.children"), format!("a {} needs children", kind.as_str())));
    }
    for (i, parameter) in node.parameters.iter().enumerate() {
        if node.parameters[..i].iter().any(|p| p.name == parameter.name) {
            return Err((
                format!("{path}.parameters[{i}].name"),
                format!("`{}` is given twice", parameter.name),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn model_targets_parse() {
        let t = ModelTarget::parse("iris:1.0.0").unwrap();
        assert_eq!(t.to_string(), "iris:1.0.0");
        assert_eq!(ModelTarget::parse("iris:latest").unwrap().version, None);
        assert!(ModelTarget::parse("Iris").is_err());
        assert!(ModelTarget::parse("iris:").is_err());
    }

    fn node(yaml: &str) -> GraphNode {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn types_are_inferred_and_checked() {
        assert_eq!(node("{name: a, model: iris}").node_type(), Some(NodeType::Model));
        assert_eq!(
            node("{name: a, implementation: RANDOM_ABTEST, children: [{name: b, model: x}]}").node_type(),
            Some(NodeType::Router)
        );
        let wrong =
            node("{name: a, type: COMBINER, implementation: RANDOM_ABTEST, children: [{name: b, model: x}]}");
        let (field, message) = check_syntax(Some(&wrong), None, None, None).unwrap_err();
        assert_eq!(field, "graph.implementation");
        assert!(message.contains("ROUTER built-in"), "{message}");
        let dup = node(
            "{name: a, type: COMBINER, implementation: AVERAGE_COMBINER, children: [{name: b, model: x}, {name: b, model: y}]}",
        );
        let (field, _) = check_syntax(Some(&dup), None, None, None).unwrap_err();
        assert_eq!(field, "graph.children[1].name");
    }

    #[test]
    fn seldon_graphs_paste() {
        let graph = node(
            "name: router\ntype: ROUTER\nimplementation: RANDOM_ABTEST\nparameters:\n- {name: ratioA, value: '0.5', type: FLOAT}\nchildren:\n- {name: a, type: MODEL, model: iris, endpoint: {type: REST}}\n- {name: b, type: MODEL, model: 'iris:2'}\n",
        );
        check_syntax(Some(&graph), None, None, None).unwrap();
        assert_eq!(graph.walk().len(), 3);
        assert_eq!(graph.parameters[0].kind, ParameterType::Float);
    }

    #[test]
    fn traffic_and_sticky_are_checked() {
        let arms: Vec<TrafficArm> = serde_yaml::from_str("[{model: 'iris:1', weight: 0}]").unwrap();
        assert!(check_syntax(None, Some(&arms), None, None).is_err());
        let sticky = Sticky { claim: Some("sub".into()), header: Some("x".into()) };
        assert!(check_syntax(None, None, None, Some(&sticky)).is_err());
        let sticky = Sticky { claim: None, header: Some("X-User".into()) };
        assert!(check_syntax(None, None, None, Some(&sticky)).is_err());
    }
}
