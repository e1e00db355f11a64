//! Seldon Core 2's pipeline syntax (`pipeline: {steps, output}`): a directed acyclic graph
//! of model steps, each fed tensors of earlier steps by reference and run as soon as its
//! inputs are ready (steps ready together run at once).

use std::collections::{BTreeMap, BTreeSet};

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
}

/// A compiled pipeline: steps in an order where each comes after its sources and
/// triggers, in waves.
#[derive(Debug)]
pub struct Steps {
    steps: Vec<PlannedStep>,
    waves: Vec<Vec<usize>>,
    output: Vec<Source>,
    output_join: JoinType,
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
    let (output, output_renames, output_join) = match &pipeline.output {
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
            (sources, out.tensor_map.clone(), out.steps_join.unwrap_or_default())
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
    Ok((Steps { steps: planned, waves, output, output_join, output_renames }, inputs, outputs))
}

/// Whether two answers have the same tensors (names and datatypes, in order).
fn same_tensors(a: &[TensorSpec], b: &[TensorSpec]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.name == y.name && x.datatype == y.datatype)
}

/// Whether a reference is present in this request: its step ran and, for one tensor, the
/// tensor is there with at least one element (Seldon Core 2's steps answer only the
/// tensors they have; an ONNX model answers every output, so an empty one counts as absent).
fn present(source: &Source, ran: &[bool], results: &[(Vec<Tensor>, Vec<Tensor>)]) -> bool {
    let Some(i) = source.step else { return true };
    if !ran.get(i).copied().unwrap_or(false) {
        return false;
    }
    let Some(name) = &source.tensor else { return true };
    let pool = if source.outputs { &results[i].1 } else { &results[i].0 };
    pool.iter().any(|t| t.name() == name && t.shape().iter().product::<usize>() > 0)
}

/// The references a join passes on, or `None` when the join is not met.
fn joined<'s>(
    join: JoinType,
    sources: &'s [Source],
    ran: &[bool],
    results: &[(Vec<Tensor>, Vec<Tensor>)],
) -> Option<Vec<&'s Source>> {
    let mut here = sources.iter().filter(|s| present(s, ran, results));
    match join {
        JoinType::Inner => {
            (sources.iter().all(|s| present(s, ran, results))).then(|| sources.iter().collect())
        }
        JoinType::Outer => {
            let all: Vec<&Source> = here.collect();
            (!all.is_empty()).then_some(all)
        }
        JoinType::Any => here.next().map(|s| vec![s]),
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

impl Steps {
    /// Runs the steps wave by wave (a wave's steps at once): a step runs when its triggers
    /// and its inputs are joined as its join types say, else it is skipped and what it
    /// would answer is absent. Answers the output steps' tensors.
    pub(crate) async fn run<H: Hop>(
        &self,
        hop: &H,
        inputs: Vec<Tensor>,
    ) -> Result<Vec<Tensor>, RunError<H::Error>> {
        let mut results: Vec<(Vec<Tensor>, Vec<Tensor>)> = vec![(vec![], vec![]); self.steps.len()];
        let mut ran = vec![false; self.steps.len()];
        for wave in &self.waves {
            let mut due = Vec::with_capacity(wave.len());
            for &i in wave {
                let step = &self.steps[i];
                if !step.triggers.is_empty()
                    && joined(step.trigger_join, &step.triggers, &ran, &results).is_none()
                {
                    continue;
                }
                let Some(sources) = joined(step.join, &step.sources, &ran, &results) else { continue };
                let fed = take(sources, &step.renames, &inputs, &results);
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
                due.push((i, fed, selected));
            }
            let count = due.len();
            let calls = due.into_iter().enumerate().map(|(n, (i, fed, selected))| {
                let step = &self.steps[i];
                let placement = placement_of(n, count, Placement::Inline);
                async move { (i, fed, hop.call(&step.name, &step.target, selected, placement).await) }
            });
            for (i, fed, answer) in futures_util::future::join_all(calls).await {
                results[i] = (fed, answer.map_err(RunError::Hop)?);
                ran[i] = true;
            }
        }
        let ran_any = |s: &&Source| s.step.is_none_or(|i| ran[i]);
        let answer: Vec<&Source> = match self.output_join {
            JoinType::Any => self.output.iter().find(ran_any).into_iter().collect(),
            _ => {
                if self.output.iter().all(|s| ran_any(&s)) {
                    self.output.iter().collect()
                } else {
                    vec![]
                }
            }
        };
        if answer.is_empty() {
            let skipped: Vec<&str> = self
                .output
                .iter()
                .filter_map(|s| s.step)
                .filter(|&i| !ran[i])
                .map(|i| self.steps[i].name.as_str())
                .collect();
            return Err(RunError::Node {
                node: "output".to_owned(),
                message: format!(
                    "output step(s) {skipped:?} did not run for this request (their triggers or inputs were absent), so the pipeline has no answer"
                ),
            });
        }
        Ok(take(answer, &self.output_renames, &inputs, &results))
    }
}
