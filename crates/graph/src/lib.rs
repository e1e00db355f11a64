//! Inference graphs and traffic: what a bundle with `graph:` or `traffic:` does.
//!
//! [`compile`] turns the manifest's sections into a [`Graph`], checking what needs the
//! store (through a [`Catalog`]): every model a node names exists, tensors fit from node to
//! node (names, datatypes, shapes), and no graph reaches itself through the models it
//! names. [`Graph::run`] then serves a request with Seldon Core's executor semantics: a
//! node transforms its input (MODEL and TRANSFORMER nodes run their model or built-in),
//! its children run (a ROUTER chooses one, `-1` all of them at once, `-2` none; other
//! nodes run every child), their answers are merged (a COMBINER combines; otherwise the
//! first child's answer is the node's), and an OUTPUT_TRANSFORMER transforms the result.
//!
//! Every model call is a hop through a [`Hop`] the server supplies: it resolves the model,
//! authorizes the call as the caller (or as the graph) and audits it. This crate has no
//! I/O and no async runtime of its own; it depends on `core` and the manifest types.

mod bandit;
mod builtin;
mod combine;
mod exec;
mod feedback;
mod fit;
mod params;
mod plan;
pub mod rng;
mod router;
mod steps;

pub use bandit::{Bandit, BanditKind};
pub use builtin::Builtin;
pub use combine::Combiner;
pub use exec::{Hop, HopFuture, Outcome, Placement, RouteTaken, RunError, Shadowed, Timer};
pub use feedback::{FeedbackLog, Remembered};
pub use plan::{Call, Catalog, CatalogEntry, Graph, Node, Router, Step, StoreCatalog, compile, uses_of};
pub use router::{Choice, Weights, sticky_key, sticky_point};
pub use steps::Steps;

/// Why a graph does not compile: the manifest field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {message}")]
pub struct GraphError {
    /// The field of `palisade.yaml` (`graph.children[1].model`, `traffic[0].model`).
    pub field: String,
    /// What is wrong, and how to fix it.
    pub message: String,
}

impl GraphError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> GraphError {
        GraphError { field: field.into(), message: message.into() }
    }
}
