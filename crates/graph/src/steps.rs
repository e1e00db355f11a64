//! Seldon Core 2's pipeline syntax (`pipeline: {steps, output}`): a directed acyclic graph
//! of model steps, each fed tensors of earlier steps by reference and run as soon as its
//! inputs are ready (steps ready together run at once).

use std::collections::{BTreeMap, BTreeSet};

use palisade_bundle::graph::{ModelTarget, Pipeline};
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
    renames: BTreeMap<String, String>,
    inputs: Vec<String>,
}

/// A compiled pipeline: steps in an order where each comes after its sources, in waves.
#[derive(Debug)]
pub struct Steps {
    steps: Vec<PlannedStep>,
    waves: Vec<Vec<usize>>,
    output: Vec<Source>,
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
        let inputs = entry(&target).signature.inputs.iter().map(|t| t.name.clone()).collect();
        planned.push(PlannedStep {
            name: names[i].clone(),
            target,
            sources,
            renames: step.tensor_map.clone(),
            inputs,
        });
    }
    // Waves: a step runs once every step it reads has run; what never becomes ready is a cycle.
    let mut done = BTreeSet::new();
    let mut waves = Vec::new();
    while done.len() < planned.len() {
        let wave: Vec<usize> = (0..planned.len())
            .filter(|i| {
                !done.contains(i)
                    && planned[*i].sources.iter().all(|s| s.step.is_none_or(|d| done.contains(&d)))
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
            check_feeds(&fed, &model.inputs, &format!("step `{}` (model `{}`)", step.name, step.target))
                .map_err(|e| GraphError::new(format!("{field}.inputs"), e))?;
            specs[i] = (fed, model.outputs.clone());
        }
    }
    let (output, output_renames) = match &pipeline.output {
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
            (sources, out.tensor_map.clone())
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
            )
        }
    };
    let outputs = gather(&output, &output_renames, &inputs, &specs)
        .map_err(|e| GraphError::new("pipeline.output", e))?;
    Ok((Steps { steps: planned, waves, output, output_renames }, inputs, outputs))
}

fn take(
    sources: &[Source],
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
    /// Runs the steps wave by wave (a wave's steps at once) and answers the output steps'
    /// tensors.
    pub(crate) async fn run<H: Hop>(
        &self,
        hop: &H,
        inputs: Vec<Tensor>,
    ) -> Result<Vec<Tensor>, RunError<H::Error>> {
        {
            let mut results: Vec<(Vec<Tensor>, Vec<Tensor>)> = vec![(vec![], vec![]); self.steps.len()];
            for wave in &self.waves {
                let mut calls = Vec::with_capacity(wave.len());
                for (n, &i) in wave.iter().enumerate() {
                    let step = &self.steps[i];
                    let fed = take(&step.sources, &step.renames, &inputs, &results);
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
                    let placement = placement_of(n, wave.len(), Placement::Inline);
                    calls.push(async move {
                        (i, fed, hop.call(&step.name, &step.target, selected, placement).await)
                    });
                }
                for (i, fed, answer) in futures_util::future::join_all(calls).await {
                    results[i] = (fed, answer.map_err(RunError::Hop)?);
                }
            }
            Ok(take(&self.output, &self.output_renames, &inputs, &results))
        }
    }
}
