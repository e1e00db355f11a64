//! Seldon Core 2's pipeline syntax (`pipeline: {steps, output}`): a directed acyclic graph
//! of model steps, each fed tensors of earlier steps by reference and run as soon as its
//! inputs are ready (steps ready together run at once).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use palisade_bundle::graph::{JoinType, ModelTarget, Pipeline};
use palisade_core::{Tensor, TensorSpec};

use crate::GraphError;
use crate::exec::{Hop, Placement, RunError, placement_of};
use crate::fit::{check_feeds, merge_needs};
use crate::plan::CatalogEntry;

/// Where a step's tensors come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Source {
    /// The step (`None`: the request's inputs).
    step: Option<usize>,
    /// Its outputs (else its inputs).
    outputs: bool,
    /// One tensor, or all of them.
    tensor: Option<String>,
    /// The reference as written (the `tensorMap` key).
    written: String,
}

/// A compiled step.
#[derive(Debug)]
pub(crate) struct PlannedStep {
    name: String,
    target: ModelTarget,
    sources: Vec<Source>,
    join: JoinType,
    triggers: Vec<Source>,
    trigger_join: JoinType,
    renames: BTreeMap<String, String>,
    inputs: Vec<String>,
    /// How long its joins wait once one reference is present (`joinWindowMs`).
    window: Option<Duration>,
    /// Whether the pipeline goes on when the step fails (every join reading it is `outer`
    /// or `any`): then its outputs are absent. Else its failure fails the request.
    tolerated: bool,
    /// Whether a step or the output reads it (else it is a side branch, always waited for).
    read: bool,
    /// The steps that read it.
    readers: Vec<usize>,
    /// Whether the output reads it.
    output_reads: bool,
}

/// A compiled pipeline: steps, and an order where each comes after its sources and
/// triggers.
#[derive(Debug)]
pub struct Steps {
    steps: Vec<PlannedStep>,
    /// The steps in an order where each comes after those it reads.
    order: Vec<usize>,
    output: Vec<Source>,
    output_join: JoinType,
    output_window: Option<Duration>,
    output_renames: BTreeMap<String, String>,
}

fn parse_source(written: &str, own: &str, names: &[String]) -> Result<Source, String> {
    let parts: Vec<&str> = written.splitn(3, '.').collect();
    let (owner, kind, tensor) = match parts.as_slice() {
        [owner, kind] => (*owner, *kind, None),
        [owner, kind, tensor] => (*owner, *kind, Some((*tensor).to_owned())),
        _ => return Err(format!("`{written}`: write STEP.outputs[.TENSOR] or STEP.inputs[.TENSOR]")),
    };
    let outputs = match kind {
        "outputs" => true,
        "inputs" => false,
        _ => return Err(format!("`{written}`: write STEP.outputs[.TENSOR] or STEP.inputs[.TENSOR]")),
    };
    let step = if owner == own {
        if outputs {
            return Err(format!("`{written}`: the pipeline's own tensors are `{own}.inputs`"));
        }
        None
    } else {
        Some(names.iter().position(|n| n == owner).ok_or_else(|| format!("`{written}`: no step `{owner}`"))?)
    };
    Ok(Source { step, outputs, tensor, written: written.to_owned() })
}

/// What the sources hand over, by name (renamed by the map), given each step's specs.
fn gather(
    sources: &[Source],
    renames: &BTreeMap<String, String>,
    inputs: &[TensorSpec],
    specs: &[(Vec<TensorSpec>, Vec<TensorSpec>)],
) -> Result<Vec<TensorSpec>, String> {
    let mut out: Vec<TensorSpec> = Vec::new();
    for source in sources {
        let pool = match source.step {
            None => inputs,
            Some(i) if source.outputs => &specs[i].1,
            Some(i) => &specs[i].0,
        };
        let picked: Vec<&TensorSpec> = match &source.tensor {
            Some(name) => vec![
                pool.iter()
                    .find(|t| &t.name == name)
                    .ok_or_else(|| format!("`{}` names no tensor there", source.written))?,
            ],
            None => pool.iter().collect(),
        };
        for spec in picked {
            let full =
                format!("{}.{}", source.written.trim_end_matches(&format!(".{}", spec.name)), spec.name);
            let mut spec = spec.clone();
            if let Some(to) = renames.get(&full).or_else(|| renames.get(&source.written)) {
                spec.name.clone_from(to);
            }
            out.retain(|t| t.name != spec.name);
            out.push(spec);
        }
    }
    Ok(out)
}

/// Compiles `pipeline:`; `entry` gives each step's model, `inputs` the declared inputs.
pub(crate) fn compile<'e>(
    own: &str,
    pipeline: &Pipeline,
    declared: Option<&[TensorSpec]>,
    entry: &dyn Fn(&ModelTarget) -> &'e CatalogEntry,
) -> Result<(Steps, Vec<TensorSpec>, Vec<TensorSpec>), GraphError> {
    let names: Vec<String> = pipeline.steps.iter().map(|s| s.name.to_string()).collect();
    let mut planned = Vec::new();
    for (i, step) in pipeline.steps.iter().enumerate() {
        let field = format!("pipeline.steps[{i}]");
        let target = step.target().map_err(|e| GraphError::new(format!("{field}.name"), e))?;
        let sources = if step.inputs.is_empty() {
            vec![Source { step: None, outputs: false, tensor: None, written: format!("{own}.inputs") }]
        } else {
            step.inputs
                .iter()
                .map(|w| parse_source(w, own, &names))
                .collect::<Result<_, _>>()
                .map_err(|e| GraphError::new(format!("{field}.inputs"), e))?
        };
        let triggers = step
            .triggers
            .iter()
            .map(|w| parse_source(w, own, &names))
            .collect::<Result<_, _>>()
            .map_err(|e| GraphError::new(format!("{field}.triggers"), e))?;
        let inputs = entry(&target).signature.inputs.iter().map(|t| t.name.clone()).collect();
        planned.push(PlannedStep {
            name: names[i].clone(),
            target,
            sources,
            join: step.inputs_join_type.unwrap_or_default(),
            triggers,
            trigger_join: step.triggers_join_type.unwrap_or_default(),
            renames: step.tensor_map.clone(),
            inputs,
            window: step.join_window_ms.map(|ms| Duration::from_millis(u64::from(ms))),
            tolerated: false,
            read: false,
            readers: Vec::new(),
            output_reads: false,
        });
    }
    // Waves: a step runs once every step it reads or is triggered by has run (or was
    // skipped); what never becomes ready is a cycle.
    let mut done = BTreeSet::new();
    let mut waves = Vec::new();
    while done.len() < planned.len() {
        let wave: Vec<usize> = (0..planned.len())
            .filter(|i| {
                !done.contains(i)
                    && planned[*i]
                        .sources
                        .iter()
                        .chain(&planned[*i].triggers)
                        .all(|s| s.step.is_none_or(|d| done.contains(&d)))
            })
            .collect();
        if wave.is_empty() {
            let stuck: Vec<&str> =
                (0..planned.len()).filter(|i| !done.contains(i)).map(|i| planned[i].name.as_str()).collect();
            return Err(GraphError::new(
                "pipeline.steps",
                format!("a cycle: steps {stuck:?} wait on each other"),
            ));
        }
        done.extend(wave.iter().copied());
        waves.push(wave);
    }
    // The request's inputs: declared, else what the steps fed by them take.
    let inputs = match declared {
        Some(inputs) => inputs.to_vec(),
        None => {
            let mut needs = Vec::new();
            for (i, step) in planned.iter().enumerate() {
                let model = &entry(&step.target).signature;
                for source in step.sources.iter().filter(|s| s.step.is_none()) {
                    let wanted: Vec<TensorSpec> = model
                        .inputs
                        .iter()
                        .filter(|t| match &source.tensor {
                            Some(name) => step.renames.get(&source.written).unwrap_or(name) == &t.name,
                            None => true,
                        })
                        .map(|t| {
                            let mut t = t.clone();
                            if let Some(name) = &source.tensor {
                                t.name.clone_from(name);
                            }
                            t
                        })
                        .collect();
                    merge_needs(&mut needs, &wanted)
                        .map_err(|e| GraphError::new(format!("pipeline.steps[{i}].inputs"), e))?;
                }
            }
            needs
        }
    };
    let mut specs: Vec<(Vec<TensorSpec>, Vec<TensorSpec>)> = vec![(vec![], vec![]); planned.len()];
    for wave in &waves {
        for &i in wave {
            let step = &planned[i];
            let field = format!("pipeline.steps[{i}]");
            let fed = gather(&step.sources, &step.renames, &inputs, &specs)
                .map_err(|e| GraphError::new(format!("{field}.inputs"), e))?;
            let model = &entry(&step.target).signature;
            let what = format!("step `{}` (model `{}`)", step.name, step.target);
            if step.join == JoinType::Any {
                // One input is passed alone: each must feed the model by itself.
                for source in &step.sources {
                    let alone = gather(std::slice::from_ref(source), &step.renames, &inputs, &specs)
                        .map_err(|e| GraphError::new(format!("{field}.inputs"), e))?;
                    check_feeds(&alone, &model.inputs, &what).map_err(|e| {
                        GraphError::new(
                            format!("{field}.inputs"),
                            format!("with `inputsJoinType: any`, `{}` is passed alone: {e}", source.written),
                        )
                    })?;
                }
            } else {
                check_feeds(&fed, &model.inputs, &what)
                    .map_err(|e| GraphError::new(format!("{field}.inputs"), e))?;
            }
            for trigger in &step.triggers {
                gather(std::slice::from_ref(trigger), &BTreeMap::new(), &inputs, &specs)
                    .map_err(|e| GraphError::new(format!("{field}.triggers"), e))?;
            }
            specs[i] = (fed, model.outputs.clone());
        }
    }
    let (output, output_renames, output_join, output_window) = match &pipeline.output {
        Some(out) => {
            let sources = out
                .steps
                .iter()
                .map(|w| {
                    if w.contains('.') {
                        parse_source(w, own, &names)
                    } else {
                        parse_source(&format!("{w}.outputs"), own, &names)
                    }
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| GraphError::new("pipeline.output.steps", e))?;
            (
                sources,
                out.tensor_map.clone(),
                out.steps_join.unwrap_or_default(),
                out.join_window_ms.map(|ms| Duration::from_millis(u64::from(ms))),
            )
        }
        None => {
            let last = waves.last().and_then(|w| w.last()).copied().unwrap_or(0);
            (
                vec![Source {
                    step: Some(last),
                    outputs: true,
                    tensor: None,
                    written: format!("{}.outputs", names[last]),
                }],
                BTreeMap::new(),
                JoinType::Inner,
                None,
            )
        }
    };
    let outputs = match output_join {
        JoinType::Any => {
            // The first output step that ran answers: every one must answer alike.
            let mut first: Option<Vec<TensorSpec>> = None;
            for source in &output {
                let alone = gather(std::slice::from_ref(source), &output_renames, &inputs, &specs)
                    .map_err(|e| GraphError::new("pipeline.output", e))?;
                match &first {
                    None => first = Some(alone),
                    Some(want) if !same_tensors(want, &alone) => {
                        return Err(GraphError::new(
                            "pipeline.output.steps",
                            format!(
                                "with `stepsJoin: any` one of the output steps answers, so they must answer the same tensors: `{}` answers {:?}, `{}` answers {:?}",
                                output[0].written,
                                want.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
                                source.written,
                                alone.iter().map(|t| t.name.as_str()).collect::<Vec<_>>()
                            ),
                        ));
                    }
                    Some(_) => {}
                }
            }
            first.unwrap_or_default()
        }
        _ => gather(&output, &output_renames, &inputs, &specs)
            .map_err(|e| GraphError::new("pipeline.output", e))?,
    };
    // A step's failure is passed over only where every join reading it says so.
    for i in 0..planned.len() {
        let mut readers = planned
            .iter()
            .flat_map(|s| {
                let inputs = s.sources.iter().map(move |r| (r, s.join));
                inputs.chain(s.triggers.iter().map(move |r| (r, s.trigger_join)))
            })
            .chain(output.iter().map(|r| (r, output_join)))
            .filter(|(r, _)| r.step == Some(i))
            .peekable();
        let read = readers.peek().is_some();
        let tolerated = read && readers.all(|(_, join)| join != JoinType::Inner);
        let readers: Vec<usize> = (0..planned.len())
            .filter(|&j| planned[j].sources.iter().chain(&planned[j].triggers).any(|r| r.step == Some(i)))
            .collect();
        let output_reads = output.iter().any(|r| r.step == Some(i));
        planned[i].read = read;
        planned[i].tolerated = tolerated;
        planned[i].readers = readers;
        planned[i].output_reads = output_reads;
    }
    let order = waves.concat();
    Ok((Steps { steps: planned, order, output, output_join, output_window, output_renames }, inputs, outputs))
}

/// Whether two answers have the same tensors (names and datatypes, in order).
fn same_tensors(a: &[TensorSpec], b: &[TensorSpec]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.name == y.name && x.datatype == y.datatype)
}

/// What a reference is for this request, so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presence {
    /// Its step ran and answered it (the request's own inputs always are).
    Present,
    /// Its step was skipped, or answered no elements of the tensor.
    Absent,
    /// Its step failed (passed over only by `outer` and `any` joins).
    Failed(usize),
    /// Its step has not answered yet.
    Pending(usize),
}

/// A join, decided or not.
#[derive(Debug)]
enum Joined<'s> {
    /// The references passed on.
    Met(Vec<&'s Source>),
    /// Not met: the step is skipped, or, when a failed step is why, the request fails.
    NotMet { failed: Option<usize> },
    /// An `inner` join whose window closed with these steps still pending.
    Late(Vec<usize>),
    /// Waiting for pending references.
    Pending,
}

/// A step's state in one request.
enum State<E> {
    Waiting,
    Running,
    Ran,
    Skipped,
    /// Failed, with the error until a join takes it to fail the request.
    Failed(Option<E>),
}

/// What happened while the pipeline waited.
enum Event<E> {
    Answered(usize, Result<Vec<Tensor>, E>),
    /// The join window of a step (or of the output, `steps.len()`) closed.
    Closed(usize),
}

type EventFuture<'a, E> = Pin<Box<dyn Future<Output = Event<E>> + Send + 'a>>;

/// One request's run through the steps.
struct Run<'r, E> {
    steps: &'r Steps,
    states: Vec<State<E>>,
    /// Each step's inputs as fed, and its outputs.
    results: Vec<(Vec<Tensor>, Vec<Tensor>)>,
    /// Per step, then the output: the window has opened (a reference is present) or closed.
    opened: Vec<bool>,
    closed: Vec<bool>,
}

impl<E> Run<'_, E> {
    /// What `source` is now; `tensors`: whether a named tensor must have elements (the
    /// output's references only ask whether the step ran).
    fn presence(&self, source: &Source, tensors: bool) -> Presence {
        let Some(i) = source.step else { return Presence::Present };
        match &self.states[i] {
            State::Waiting | State::Running => Presence::Pending(i),
            State::Skipped => Presence::Absent,
            State::Failed(_) => Presence::Failed(i),
            State::Ran => {
                let Some(name) = source.tensor.as_ref().filter(|_| tensors) else { return Presence::Present };
                let pool = if source.outputs { &self.results[i].1 } else { &self.results[i].0 };
                if pool.iter().any(|t| t.name() == name && t.shape().iter().product::<usize>() > 0) {
                    Presence::Present
                } else {
                    Presence::Absent
                }
            }
        }
    }

    /// Decides a join over `sources` as far as it can be now; `closed`: its window closed.
    fn join<'s>(&self, join: JoinType, sources: &'s [Source], closed: bool, tensors: bool) -> Joined<'s> {
        let seen: Vec<Presence> = sources.iter().map(|s| self.presence(s, tensors)).collect();
        let failed = seen.iter().find_map(|p| match p {
            Presence::Failed(i) => Some(*i),
            _ => None,
        });
        let pending: Vec<usize> = seen
            .iter()
            .filter_map(|p| match p {
                Presence::Pending(i) => Some(*i),
                _ => None,
            })
            .collect();
        let present = || sources.iter().zip(&seen).filter(|(_, p)| **p == Presence::Present).map(|(s, _)| s);
        match join {
            JoinType::Inner => {
                if failed.is_some() {
                    Joined::NotMet { failed }
                } else if seen.contains(&Presence::Absent) {
                    Joined::NotMet { failed: None }
                } else if pending.is_empty() {
                    Joined::Met(sources.iter().collect())
                } else if closed {
                    Joined::Late(pending)
                } else {
                    Joined::Pending
                }
            }
            JoinType::Outer => {
                if !closed && !pending.is_empty() {
                    return Joined::Pending;
                }
                let all: Vec<&Source> = present().collect();
                if all.is_empty() { Joined::NotMet { failed } } else { Joined::Met(all) }
            }
            JoinType::Any => {
                for (source, seen) in sources.iter().zip(&seen) {
                    match seen {
                        Presence::Present => return Joined::Met(vec![source]),
                        Presence::Pending(_) if !closed => return Joined::Pending,
                        _ => {}
                    }
                }
                Joined::NotMet { failed }
            }
        }
    }

    /// The error a failed step left, for the request.
    fn failure(&mut self, i: usize) -> RunError<E> {
        let name = self.steps.steps[i].name.clone();
        match &mut self.states[i] {
            State::Failed(error) => match error.take() {
                Some(error) => RunError::Hop(error),
                None => RunError::Node { node: name, message: "the step failed".to_owned() },
            },
            _ => RunError::Node { node: name, message: "the step failed".to_owned() },
        }
    }

    fn late_error(&self, node: &str, window: Option<Duration>, pending: &[usize]) -> RunError<E> {
        let names: Vec<&str> = pending.iter().map(|&i| self.steps.steps[i].name.as_str()).collect();
        RunError::Late {
            node: node.to_owned(),
            message: format!(
                "step(s) {names:?} had not answered when the join window of {} ms closed, and the `inner` join needs them",
                window.map_or(0, |w| w.as_millis())
            ),
        }
    }
}

/// What to do with a waiting step now.
enum Decision<'s> {
    Run(Vec<&'s Source>),
    Skip,
    Wait,
}

impl Steps {
    /// Decides whether step `i` runs now, is skipped, or waits.
    fn decide<'s, E>(&'s self, run: &mut Run<'_, E>, i: usize) -> Result<Decision<'s>, RunError<E>> {
        let step = &self.steps[i];
        let closed = run.closed[i];
        let triggers = if step.triggers.is_empty() {
            Joined::Met(vec![])
        } else {
            run.join(step.trigger_join, &step.triggers, closed, true)
        };
        let inputs = run.join(step.join, &step.sources, closed, true);
        for joined in [&triggers, &inputs] {
            match joined {
                Joined::NotMet { failed: Some(f) } => return Err(run.failure(*f)),
                Joined::Late(pending) => return Err(run.late_error(&step.name, step.window, pending)),
                _ => {}
            }
        }
        if matches!(triggers, Joined::NotMet { .. }) || matches!(inputs, Joined::NotMet { .. }) {
            return Ok(Decision::Skip);
        }
        match (triggers, inputs) {
            (Joined::Met(_), Joined::Met(sources)) => Ok(Decision::Run(sources)),
            _ => Ok(Decision::Wait),
        }
    }

    /// Runs the steps as their inputs become ready (steps ready together at once): a step
    /// runs when its triggers and its inputs are joined as its join types say, else it is
    /// skipped and what it would answer is absent; a join window lets a join go on without
    /// what is late. Answers the output steps' tensors once the output is joined and no step
    /// waits; steps still running then whose readers all went on without them are cut off
    /// (dropped), side branches that nothing reads are waited for.
    pub(crate) async fn run<H: Hop>(
        &self,
        hop: &H,
        inputs: Vec<Tensor>,
    ) -> Result<Vec<Tensor>, RunError<H::Error>> {
        let n = self.steps.len();
        let mut run: Run<'_, H::Error> = Run {
            steps: self,
            states: (0..n).map(|_| State::Waiting).collect(),
            results: vec![(vec![], vec![]); n],
            opened: vec![false; n + 1],
            closed: vec![false; n + 1],
        };
        let mut events: FuturesUnordered<EventFuture<'_, H::Error>> = FuturesUnordered::new();
        let mut running = 0usize;
        let mut answer: Option<Vec<Tensor>> = None;
        loop {
            // Decide until nothing changes: a step that no one can read any more (its readers
            // decided without it) is skipped, from the last step back; the others run, are
            // skipped or wait, in an order where a skip reaches those reading it.
            let mut due = Vec::new();
            loop {
                let mut changed = false;
                for &i in self.order.iter().rev() {
                    let step = &self.steps[i];
                    if matches!(run.states[i], State::Waiting)
                        && step.read
                        && (!step.output_reads || answer.is_some())
                        && step.readers.iter().all(|&r| !matches!(run.states[r], State::Waiting))
                    {
                        run.states[i] = State::Skipped;
                        changed = true;
                    }
                }
                for &i in &self.order {
                    if !matches!(run.states[i], State::Waiting) {
                        continue;
                    }
                    match self.decide(&mut run, i)? {
                        Decision::Wait => continue,
                        Decision::Skip => run.states[i] = State::Skipped,
                        Decision::Run(sources) => {
                            let step = &self.steps[i];
                            let fed = take(sources, &step.renames, &inputs, &run.results);
                            let mut selected = Vec::with_capacity(step.inputs.len());
                            for name in &step.inputs {
                                match fed.iter().find(|t| t.name() == name) {
                                    Some(t) => selected.push(t.clone()),
                                    None => {
                                        return Err(RunError::Node {
                                            node: step.name.clone(),
                                            message: format!("tensor `{name}` is missing"),
                                        });
                                    }
                                }
                            }
                            run.results[i].0 = fed;
                            run.states[i] = State::Running;
                            due.push((i, selected));
                        }
                    }
                    changed = true;
                }
                if answer.is_none() {
                    answer = self.answer(&mut run, &inputs)?;
                    changed |= answer.is_some();
                }
                if !changed {
                    break;
                }
            }
            let outer = if running > 0 { Placement::Alongside } else { Placement::Inline };
            let count = due.len();
            for (k, (i, selected)) in due.into_iter().enumerate() {
                let step = &self.steps[i];
                let placement = placement_of(k, count, outer);
                let call = hop.call(&step.name, &step.target, selected, placement);
                events.push(Box::pin(async move { Event::Answered(i, call.await) }));
                running += 1;
            }
            // Open the join windows whose first reference is here.
            for i in 0..=n {
                let (window, refs): (Option<Duration>, Vec<&Source>) = match self.steps.get(i) {
                    Some(step) if matches!(run.states[i], State::Waiting) => {
                        (step.window, step.sources.iter().chain(&step.triggers).collect())
                    }
                    Some(_) => continue,
                    None if answer.is_none() => (self.output_window, self.output.iter().collect()),
                    None => continue,
                };
                let Some(window) = window else { continue };
                if !run.opened[i] && refs.iter().any(|r| run.presence(r, true) == Presence::Present) {
                    run.opened[i] = true;
                    let timer = hop.timer(window);
                    events.push(Box::pin(async move {
                        timer.await;
                        Event::Closed(i)
                    }));
                }
            }
            // Once the output is joined and no step waits, what still runs is read by no one
            // any more (its readers decided without it): it is cut off. Side branches, read by
            // nothing, are waited for.
            if answer.is_some()
                && run.states.iter().enumerate().all(|(i, s)| match s {
                    State::Waiting => false,
                    State::Running => self.steps[i].read,
                    _ => true,
                })
            {
                return Ok(answer.unwrap_or_default());
            }
            match events.next().await {
                None => {
                    return Err(RunError::Node {
                        node: "output".to_owned(),
                        message: "the pipeline stopped with steps waiting on nothing".to_owned(),
                    });
                }
                Some(Event::Closed(i)) => run.closed[i] = true,
                Some(Event::Answered(i, Ok(outputs))) => {
                    running -= 1;
                    run.results[i].1 = outputs;
                    run.states[i] = State::Ran;
                }
                Some(Event::Answered(i, Err(error))) => {
                    running -= 1;
                    if hop.refuses(&error) || !self.steps[i].tolerated {
                        return Err(RunError::Hop(error));
                    }
                    run.states[i] = State::Failed(Some(error));
                }
            }
        }
    }

    /// The output steps' tensors, once they are joined (`None`: not yet).
    fn answer<E>(&self, run: &mut Run<'_, E>, inputs: &[Tensor]) -> Result<Option<Vec<Tensor>>, RunError<E>> {
        let closed = run.closed[self.steps.len()];
        match run.join(self.output_join, &self.output, closed, false) {
            Joined::Pending => Ok(None),
            Joined::Met(sources) => Ok(Some(take(sources, &self.output_renames, inputs, &run.results))),
            Joined::Late(pending) => Err(run.late_error("output", self.output_window, &pending)),
            Joined::NotMet { failed: Some(f) } => Err(run.failure(f)),
            Joined::NotMet { failed: None } => {
                let skipped: Vec<&str> = self
                    .output
                    .iter()
                    .filter_map(|s| s.step)
                    .filter(|&i| !matches!(run.states[i], State::Ran))
                    .map(|i| self.steps[i].name.as_str())
                    .collect();
                Err(RunError::Node {
                    node: "output".to_owned(),
                    message: format!(
                        "output step(s) {skipped:?} did not run for this request (their triggers or inputs were absent), so the pipeline has no answer"
                    ),
                })
            }
        }
    }
}
fn take<'s>(
    sources: impl IntoIterator<Item = &'s Source>,
    renames: &BTreeMap<String, String>,
    inputs: &[Tensor],
    results: &[(Vec<Tensor>, Vec<Tensor>)],
) -> Vec<Tensor> {
    let mut out: Vec<Tensor> = Vec::new();
    for source in sources {
        let pool = match source.step {
            None => inputs,
            Some(i) if source.outputs => &results[i].1,
            Some(i) => &results[i].0,
        };
        for tensor in pool.iter().filter(|t| source.tensor.as_deref().is_none_or(|n| n == t.name())) {
            let full = format!(
                "{}.{}",
                source.written.trim_end_matches(&format!(".{}", tensor.name())),
                tensor.name()
            );
            let name = renames
                .get(&full)
                .or_else(|| renames.get(&source.written))
                .cloned()
                .unwrap_or_else(|| tensor.name().to_owned());
            out.retain(|t| t.name() != name);
            out.push(tensor.clone().with_name(name));
        }
    }
    out
}
