//! Serving a request with a compiled graph: Seldon Core's executor, with every model call
//! a [`Hop`] the server authorizes and audits.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use palisade_bundle::graph::ModelTarget;
use palisade_core::{Tensor, TensorData};

use crate::plan::{Call, Graph, Node, Router, Step};
use crate::router::{Choice, sticky_key};

/// A hop's pending answer.
pub type HopFuture<'a, E> = Pin<Box<dyn Future<Output = Result<Vec<Tensor>, E>> + Send + 'a>>;

/// A timer the server supplies (this crate has no clock or runtime of its own): resolves
/// once its time has passed.
pub type Timer = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Where a hop's model may run, as the executor knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// No other hop of the request is pending: a cheap in-process model may run on the
    /// calling task.
    Inline,
    /// Other hops of the request run alongside this one (a node's children, a pipeline's
    /// steps that are ready together): the model should run off the calling task (an
    /// in-process model on an inference thread, unless it is so cheap that the hand-off
    /// costs more), or the calling task would run the hops one after the other.
    Alongside,
}

/// Runs one model for a node: the server resolves the model, authorizes the call (as the
/// caller, or as the graph), audits it, and runs it through its dispatcher.
pub trait Hop: Send + Sync {
    /// Why a hop failed (the server's error, returned to the caller as it is).
    type Error: Send;

    /// Runs `model` for node `node` on `inputs` (the tensors the model takes, by name),
    /// placed as `placement` says.
    fn call<'a>(
        &'a self,
        node: &'a str,
        model: &'a ModelTarget,
        inputs: Vec<Tensor>,
        placement: Placement,
    ) -> HopFuture<'a, Self::Error>;

    /// A timer that fires after `after`: a pipeline's join window.
    fn timer(&self, after: Duration) -> Timer;

    /// Whether `error` refuses the request outright (the caller may not make this hop), which
    /// no join passes over. A pipeline step that fails otherwise, when every join reading it
    /// is `outer` or `any`, answers nothing and the pipeline goes on without it.
    fn refuses(&self, error: &Self::Error) -> bool;
}

/// The placement of `i`-th of `n` hops started together, within a branch placed `outer`:
/// all but the last run alongside the others; the last, polled after the others have
/// started, keeps the branch's placement (a cheap model runs on the calling task while the
/// others compute on the inference threads).
pub(crate) fn placement_of(i: usize, n: usize, outer: Placement) -> Placement {
    if i + 1 < n { Placement::Alongside } else { outer }
}

/// Which way a router sent a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTaken {
    /// The router's node name (`traffic` for a traffic split).
    pub node: String,
    /// What it chose.
    pub choice: Choice,
    /// The chosen child's name (for a traffic split, the arm's model), when one child ran.
    pub child: Option<String>,
}

/// A served request: the graph's answer and the routes taken.
#[derive(Debug)]
pub struct Outcome {
    /// The answer.
    pub outputs: Vec<Tensor>,
    /// Every router's choice, in the order they chose.
    pub routing: Vec<RouteTaken>,
}

/// A request mirrored to the shadow, for the server to run on its own task.
#[derive(Debug)]
pub struct Shadowed {
    /// The shadow model.
    pub target: ModelTarget,
    /// A copy of the request's inputs.
    pub inputs: Vec<Tensor>,
}

/// Why a graph could not answer.
#[derive(Debug)]
pub enum RunError<E> {
    /// A hop failed (the server's error: 403, 429, 504...).
    Hop(E),
    /// A node could not compute (a router model's index out of range, children answering
    /// different shapes to a combiner): the node and why.
    Node {
        /// The node.
        node: String,
        /// Why.
        message: String,
    },
    /// A pipeline's `inner` join was still waiting for a step when its `joinWindowMs`
    /// closed: the joining step (or `output`) and which steps were late.
    Late {
        /// The joining step, or `output`.
        node: String,
        /// Which references were late, and the window.
        message: String,
    },
}

type NodeFuture<'a, E> =
    Pin<Box<dyn Future<Output = Result<(Vec<Tensor>, Vec<RouteTaken>), RunError<E>>> + Send + 'a>>;

impl Graph {
    /// Serves a request: `inputs` checked against [`Graph::signature`]; `sticky`, the value
    /// of the graph's sticky claim or header, when it has one and the request carries it.
    pub async fn run<H: Hop>(
        &self,
        hop: &H,
        inputs: Vec<Tensor>,
        sticky: Option<&[u8]>,
    ) -> Result<Outcome, RunError<H::Error>> {
        if let Some(steps) = &self.steps {
            return Ok(Outcome { outputs: steps.run(hop, inputs).await?, routing: vec![] });
        }
        let (outputs, routing) = self.run_node(self.root(), hop, inputs, sticky, Placement::Inline).await?;
        Ok(Outcome { outputs, routing })
    }

    /// The shadow's copy of a request, when this one is mirrored.
    pub fn shadow_for(&self, inputs: &[Tensor]) -> Option<Shadowed> {
        let target = self.shadow_due()?.clone();
        Some(Shadowed { target, inputs: inputs.to_vec() })
    }

    /// Rewards the bandits along a route (from the server's memory of the request, never
    /// from what the client sends back).
    pub fn reward(&self, routing: &[RouteTaken], reward: f64) -> usize {
        let mut rewarded = 0;
        for taken in routing {
            if let (Some((_, bandit)), Choice::Child(arm)) =
                (self.bandits().iter().find(|(n, _)| *n == taken.node), taken.choice)
            {
                bandit.reward(arm, reward);
                rewarded += 1;
            }
        }
        rewarded
    }

    fn choose(&self, node: &Node, router: &Router, sticky: Option<&[u8]>) -> Choice {
        match router {
            Router::Weighted(weights) => {
                let key = sticky.map(|value| sticky_key(value, &node.name));
                let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
                Choice::Child(weights.draw(&mut rng, key))
            }
            Router::Bandit(bandit) => Choice::Child(bandit.choose()),
            // Chosen by the model's answer, in run_node.
            Router::Model(_) => Choice::All,
        }
    }

    fn run_node<'a, H: Hop>(
        &'a self,
        node: &'a Node,
        hop: &'a H,
        input: Vec<Tensor>,
        sticky: Option<&'a [u8]>,
        placement: Placement,
    ) -> NodeFuture<'a, H::Error> {
        Box::pin(async move {
            let fail = |message: String| RunError::Node { node: node.name.clone(), message };
            let mut routing = Vec::new();
            // 1. Transform the input.
            let transformed = match &node.step {
                Step::Run(call) => call_model(hop, &node.name, call, input, placement).await?,
                Step::Transform(builtin) => builtin.apply(input).map_err(fail)?,
                _ => input,
            };
            // 2. Route, then run the children.
            let aggregated = if node.children.is_empty() {
                transformed
            } else {
                let choice = match &node.step {
                    Step::Route(Router::Model(call)) => {
                        let answer =
                            call_model(hop, &node.name, call, transformed.clone(), placement).await?;
                        let index = first_index(&answer).ok_or_else(|| {
                            fail("the router model's first output is not an integer".to_owned())
                        })?;
                        Choice::from_index(index, node.children.len()).ok_or_else(|| {
                            fail(format!(
                                "the router model answered {index}; it has {} children (or -1 all, -2 none)",
                                node.children.len()
                            ))
                        })?
                    }
                    Step::Route(router) => self.choose(node, router, sticky),
                    _ => Choice::All,
                };
                if matches!(node.step, Step::Route(_)) {
                    let child = match choice {
                        Choice::Child(i) => node.children.get(i).map(|c| c.name.clone()),
                        _ => None,
                    };
                    routing.push(RouteTaken { node: node.name.clone(), choice, child });
                }
                match choice {
                    Choice::Input => transformed,
                    Choice::Child(i) => {
                        let child = node.children.get(i).ok_or_else(|| fail(format!("no child {i}")))?;
                        let (out, more) = self.run_node(child, hop, transformed, sticky, placement).await?;
                        routing.extend(more);
                        out
                    }
                    Choice::All => {
                        let last = node.children.len() - 1;
                        let mut copies: Vec<Vec<Tensor>> = (0..last).map(|_| transformed.clone()).collect();
                        copies.push(transformed);
                        let count = node.children.len();
                        let runs = node.children.iter().zip(copies).enumerate().map(|(i, (child, input))| {
                            self.run_node(child, hop, input, sticky, placement_of(i, count, placement))
                        });
                        let mut answers = Vec::with_capacity(node.children.len());
                        for result in futures_util::future::join_all(runs).await {
                            let (out, more) = result?;
                            routing.extend(more);
                            answers.push(out);
                        }
                        match &node.step {
                            Step::Combine(combiner) => combiner.apply(answers).map_err(fail)?,
                            // Seldon's executor: without a combiner, the first child's answer.
                            _ => answers.into_iter().next().unwrap_or_default(),
                        }
                    }
                }
            };
            // 3. Transform the output.
            let answer = match &node.step {
                Step::RunOutput(call) => call_model(hop, &node.name, call, aggregated, placement).await?,
                Step::TransformOutput(builtin) => builtin.apply(aggregated).map_err(fail)?,
                _ => aggregated,
            };
            Ok((answer, routing))
        })
    }
}

/// Passes a model the tensors it takes (by name) and runs it through the hop.
async fn call_model<H: Hop>(
    hop: &H,
    node: &str,
    call: &Call,
    input: Vec<Tensor>,
    placement: Placement,
) -> Result<Vec<Tensor>, RunError<H::Error>> {
    let mut input = input;
    let mut taken = Vec::with_capacity(call.inputs.len());
    for name in &call.inputs {
        match input.iter().position(|t| t.name() == name) {
            Some(i) => taken.push(input.swap_remove(i)),
            None => {
                return Err(RunError::Node {
                    node: node.to_owned(),
                    message: format!("tensor `{name}` for model `{}` is missing", call.target),
                });
            }
        }
    }
    hop.call(node, &call.target, taken, placement).await.map_err(RunError::Hop)
}

fn first_index(answer: &[Tensor]) -> Option<i64> {
    match answer.first()?.data() {
        TensorData::Int64(v) => v.first().copied(),
        TensorData::Int32(v) => v.first().map(|&i| i64::from(i)),
        _ => None,
    }
}
