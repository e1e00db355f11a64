//! Graphs compiled against a catalog and run with hops that compute in the test: each node
//! type, routers, combiners, traffic splits, and the build-time errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use palisade_bundle::Manifest;
use palisade_bundle::graph::ModelTarget;
use palisade_core::{DataType, Dim, ModelSignature, Tensor, TensorData, TensorSpec};
use palisade_graph::{
    Catalog, CatalogEntry, Choice, Graph, Hop, HopFuture, Placement, RunError, Timer, compile,
};

fn spec(name: &str, datatype: DataType, shape: &[i64]) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        datatype,
        shape: shape.iter().map(|&d| if d < 0 { Dim::Dynamic } else { Dim::Fixed(d as u64) }).collect(),
        allow_nan: false,
        labels: None,
    }
}

/// Models of the test: `double` (X -> X*2), `slow` (X -> X*3, after 100 ms), `broken` (fails
/// with a 500), `forbidden` (refuses with a 403), `plus1` (X -> Y = X+1), `probs-a/b/c` (X ->
/// probabilities, label), `route` (X -> index), `nested` (a graph naming `outer`), `gate`
/// (X -> big, small: the rows whose first value is at least 2, and the others; a tensor of
/// no rows when there are none).
struct Models {
    uses: BTreeMap<String, Vec<ModelTarget>>,
}

impl Models {
    fn new() -> Models {
        let mut uses = BTreeMap::new();
        uses.insert("nested".to_owned(), vec![ModelTarget::parse("outer").unwrap()]);
        Models { uses }
    }
}

impl Catalog for Models {
    fn lookup(&self, target: &ModelTarget) -> Result<CatalogEntry, String> {
        let x = spec("X", DataType::Fp32, &[-1, 4]);
        let signature = match target.name.as_str() {
            "double" | "nested" | "slow" | "broken" | "forbidden" => {
                ModelSignature { inputs: vec![x.clone()], outputs: vec![x] }
            }
            "plus1" => ModelSignature { inputs: vec![x], outputs: vec![spec("Y", DataType::Fp32, &[-1, 4])] },
            "probs-a" | "probs-b" | "probs-c" => ModelSignature {
                inputs: vec![x],
                outputs: vec![
                    spec("label", DataType::Int64, &[-1]),
                    spec("probabilities", DataType::Fp32, &[-1, 3]),
                ],
            },
            "route" => {
                ModelSignature { inputs: vec![x], outputs: vec![spec("index", DataType::Int64, &[1])] }
            }
            "gate" => ModelSignature {
                inputs: vec![x],
                outputs: vec![spec("big", DataType::Fp32, &[-1, 4]), spec("small", DataType::Fp32, &[-1, 4])],
            },
            "fp64" => ModelSignature { inputs: vec![spec("X", DataType::Fp64, &[-1, 4])], outputs: vec![] },
            other => return Err(format!("model `{other}` is not in the store; build it first")),
        };
        Ok(CatalogEntry { signature, uses: self.uses.get(target.name.as_str()).cloned().unwrap_or_default() })
    }
}

/// Computes the test models, recording each call.
#[derive(Default)]
struct Hops {
    calls: Mutex<Vec<(String, String)>>,
    placements: Mutex<Vec<(String, Placement)>>,
    route: Mutex<i64>,
}

fn data(t: &Tensor) -> Vec<f32> {
    match t.data() {
        TensorData::Fp32(v) => v.clone(),
        other => panic!("{other:?}"),
    }
}

impl Hop for Hops {
    type Error = String;
    fn call<'a>(
        &'a self,
        node: &'a str,
        model: &'a ModelTarget,
        inputs: Vec<Tensor>,
        placement: Placement,
    ) -> HopFuture<'a, String> {
        self.placements.lock().unwrap().push((node.to_owned(), placement));
        Box::pin(async move {
            self.calls.lock().unwrap().push((node.to_owned(), model.to_string()));
            let x = inputs.iter().find(|t| t.name() == "X").ok_or("no X")?;
            let rows = x.shape()[0];
            let v = data(x);
            if model.name.as_str() == "slow" {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(match model.name.as_str() {
                "slow" => vec![
                    Tensor::new(
                        "X",
                        x.shape().to_vec(),
                        TensorData::Fp32(v.iter().map(|a| a * 3.0).collect()),
                    )
                    .unwrap(),
                ],
                "broken" => return Err("500 broken".to_owned()),
                "forbidden" => return Err("403 forbidden".to_owned()),
                "double" => vec![
                    Tensor::new(
                        "X",
                        x.shape().to_vec(),
                        TensorData::Fp32(v.iter().map(|a| a * 2.0).collect()),
                    )
                    .unwrap(),
                ],
                "plus1" => vec![
                    Tensor::new(
                        "Y",
                        x.shape().to_vec(),
                        TensorData::Fp32(v.iter().map(|a| a + 1.0).collect()),
                    )
                    .unwrap(),
                ],
                "probs-a" | "probs-b" | "probs-c" => {
                    let (p, label) = match model.name.as_str() {
                        "probs-a" => ([0.6, 0.3, 0.1], 0),
                        "probs-b" => ([0.2, 0.5, 0.3], 1),
                        _ => ([0.1, 0.3, 0.6], 1),
                    };
                    vec![
                        Tensor::new("label", vec![rows], TensorData::Int64(vec![label; rows])).unwrap(),
                        Tensor::new("probabilities", vec![rows, 3], TensorData::Fp32(p.repeat(rows)))
                            .unwrap(),
                    ]
                }
                "gate" => {
                    let (mut big, mut small) = (Vec::new(), Vec::new());
                    for r in v.chunks(4) {
                        if r[0] >= 2.0 { big.extend_from_slice(r) } else { small.extend_from_slice(r) }
                    }
                    vec![
                        Tensor::new("big", vec![big.len() / 4, 4], TensorData::Fp32(big)).unwrap(),
                        Tensor::new("small", vec![small.len() / 4, 4], TensorData::Fp32(small)).unwrap(),
                    ]
                }
                "route" => vec![
                    Tensor::new("index", vec![1], TensorData::Int64(vec![*self.route.lock().unwrap()]))
                        .unwrap(),
                ],
                other => return Err(format!("no model {other}")),
            })
        })
    }
    fn timer(&self, after: Duration) -> Timer {
        Box::pin(tokio::time::sleep(after))
    }
    fn refuses(&self, error: &String) -> bool {
        error.starts_with("403")
    }
}

fn manifest(body: &str) -> Manifest {
    let text = format!("name: outer\nversion: \"1\"\nowners: [alice@example.com]\n{body}");
    Manifest::parse(Path::new("graph/palisade.yaml"), text.as_bytes()).unwrap()
}

fn graph(body: &str) -> Graph {
    compile(&manifest(body), &Models::new(), Some(42)).unwrap()
}

fn build_error(body: &str) -> (String, String) {
    let text = format!("name: outer\nversion: \"1\"\nowners: [alice@example.com]\n{body}");
    match Manifest::parse(Path::new("graph/palisade.yaml"), text.as_bytes()) {
        Err(palisade_bundle::BundleError::Manifest(err)) => (err.field, err.message),
        Err(other) => panic!("{other}"),
        Ok(manifest) => {
            let err = compile(&manifest, &Models::new(), Some(42)).unwrap_err();
            (err.field, err.message)
        }
    }
}

fn row() -> Vec<Tensor> {
    vec![Tensor::new("X", vec![1, 4], TensorData::Fp32(vec![1.0, 2.0, 3.0, 4.0])).unwrap()]
}

async fn run(graph: &Graph, hops: &Hops) -> palisade_graph::Outcome {
    graph.run(hops, row(), None).await.map_err(|e| format!("{e:?}")).unwrap()
}

#[tokio::test]
async fn a_transformer_then_a_model() {
    let g = graph(
        "graph:\n  name: t\n  type: TRANSFORMER\n  model: double\n  children:\n  - {name: m, type: MODEL, model: plus1}\n",
    );
    assert_eq!(g.signature().inputs[0].name, "X");
    assert_eq!(g.signature().outputs[0].name, "Y");
    let hops = Hops::default();
    let out = run(&g, &hops).await;
    assert_eq!(data(&out.outputs[0]), vec![3.0, 5.0, 7.0, 9.0]);
    assert_eq!(
        *hops.calls.lock().unwrap(),
        vec![("t".to_owned(), "double".to_owned()), ("m".to_owned(), "plus1".to_owned())]
    );
}

#[tokio::test]
async fn built_in_transformers_and_output_transformers() {
    let g = graph(
        "graph:\n  name: out\n  type: OUTPUT_TRANSFORMER\n  implementation: SCALE\n  parameters: [{name: scale, value: '10', type: FLOAT}]\n  children:\n  - name: m\n    model: plus1\n    children:\n    - {name: r, implementation: RENAME, parameters: [{name: Y, value: Z}]}\n",
    );
    let out = run(&g, &Hops::default()).await;
    assert_eq!(out.outputs[0].name(), "Z");
    assert_eq!(data(&out.outputs[0]), vec![20.0, 30.0, 40.0, 50.0]);
}

#[tokio::test]
async fn combiners_over_three_models() {
    let children = "  children:\n  - {name: a, model: probs-a}\n  - {name: b, model: probs-b}\n  - {name: c, model: probs-c}\n";
    let g = graph(&format!(
        "graph:\n  name: avg\n  type: COMBINER\n  implementation: AVERAGE_COMBINER\n{children}"
    ));
    let out = run(&g, &Hops::default()).await;
    assert_eq!(out.outputs.len(), 1);
    let p = data(&out.outputs[0]);
    for (got, want) in p.iter().zip([0.3f32, 0.366_666_7, 0.333_333_34]) {
        assert!((got - want).abs() < 1e-6, "{p:?}");
    }
    let g = graph(&format!("graph:\n  name: vote\n  implementation: MAJORITY_VOTE\n{children}"));
    let out = run(&g, &Hops::default()).await;
    assert_eq!(out.outputs[0].data(), &TensorData::Int64(vec![1]));
    let g = graph(&format!(
        "graph:\n  name: cat\n  implementation: CONCAT_COMBINER\n  parameters: [{{name: tensors, value: probabilities}}]\n{children}"
    ));
    assert_eq!(g.signature().outputs[0].shape, vec![Dim::Dynamic, Dim::Fixed(9)]);
    let out = run(&g, &Hops::default()).await;
    assert_eq!(out.outputs[0].shape(), &[1, 9]);
}

/// The placement each node's hop was asked for, by node.
fn placements(hops: &Hops) -> Vec<(String, Placement)> {
    let mut placed = hops.placements.lock().unwrap().clone();
    placed.sort_by(|a, b| a.0.cmp(&b.0));
    placed
}

#[tokio::test]
async fn children_started_together_run_off_the_calling_task_but_the_last() {
    use Placement::{Alongside, Inline};
    let own = |list: &[(&str, Placement)]| -> Vec<(String, Placement)> {
        list.iter().map(|(n, p)| ((*n).to_owned(), *p)).collect()
    };
    // Three children at once: the first two go to the inference threads, the last may run
    // on the task while they compute. A lone child, before and after, runs inline.
    let g = graph(
        "graph:
  name: t
  model: double
  children:
  - name: avg
    implementation: AVERAGE_COMBINER
    children:
    - {name: a, model: probs-a}
    - {name: b, model: probs-b}
    - {name: c, model: probs-c}
",
    );
    let hops = Hops::default();
    run(&g, &hops).await;
    assert_eq!(placements(&hops), own(&[("a", Alongside), ("b", Alongside), ("c", Inline), ("t", Inline)]));
    // A child's whole branch runs alongside (its chain of hops), and a nested group inside a
    // branch that runs alongside stays alongside, its last child included.
    let g = graph(
        "graph:
  name: avg
  implementation: AVERAGE_COMBINER
  children:
  - name: a
    type: TRANSFORMER
    model: double
    children:
    - name: inner
      implementation: AVERAGE_COMBINER
      children:
      - {name: a1, model: probs-a}
      - {name: a2, model: probs-b}
  - {name: b, model: probs-b}
",
    );
    let hops = Hops::default();
    run(&g, &hops).await;
    assert_eq!(
        placements(&hops),
        own(&[("a", Alongside), ("a1", Alongside), ("a2", Alongside), ("b", Inline)])
    );
    // A router that runs one child runs it as its own hop would run.
    let g = graph(
        "graph:
  name: r
  implementation: RANDOM_ABTEST
  parameters: [{name: ratioA, value: '1', type: FLOAT}]
  children:
  - {name: a, model: probs-a}
  - {name: b, model: probs-b}
",
    );
    let hops = Hops::default();
    run(&g, &hops).await;
    assert_eq!(placements(&hops), own(&[("a", Inline)]));
    // A pipeline's steps that are ready together are placed like children.
    let g = graph(
        "pipeline:
  steps:
  - name: double
  - {name: plus1, inputs: [double.outputs.X]}
  - {name: probs-a, inputs: [double.outputs]}
  - {name: probs-b, inputs: [double.outputs]}
  output:
    steps: [plus1, probs-a]
",
    );
    let hops = Hops::default();
    run(&g, &hops).await;
    assert_eq!(
        placements(&hops),
        own(&[("double", Inline), ("plus1", Alongside), ("probs-a", Alongside), ("probs-b", Inline)])
    );
}

#[tokio::test]
async fn a_router_model_routes_per_index() {
    let g = graph(
        "graph:\n  name: r\n  type: ROUTER\n  model: route\n  children:\n  - {name: a, model: probs-a}\n  - {name: b, model: probs-b}\n",
    );
    let hops = Hops::default();
    for (index, first_label) in [(0, Some(0)), (1, Some(1)), (-1, Some(0)), (-2, None)] {
        *hops.route.lock().unwrap() = index;
        hops.calls.lock().unwrap().clear();
        let out = run(&g, &hops).await;
        let want = Choice::from_index(index, 2).unwrap();
        assert_eq!(out.routing[0].choice, want);
        match first_label {
            Some(label) => assert_eq!(out.outputs[0].data(), &TensorData::Int64(vec![label])),
            // -2: the router's input is the answer.
            None => assert_eq!(out.outputs[0].name(), "X"),
        }
        let called: Vec<String> = hops.calls.lock().unwrap().iter().map(|(n, _)| n.clone()).collect();
        let expected: Vec<&str> = match index {
            0 => vec!["r", "a"],
            1 => vec!["r", "b"],
            -1 => vec!["r", "a", "b"],
            _ => vec!["r"],
        };
        assert_eq!(called, expected, "index {index}");
    }
    *hops.route.lock().unwrap() = 2;
    let err = g.run(&hops, row(), None).await.unwrap_err();
    assert!(matches!(err, RunError::Node { ref node, .. } if node == "r"), "{err:?}");
}

#[tokio::test]
async fn a_failing_hop_fails_the_graph() {
    let g = graph("graph:\n  name: t\n  model: double\n");
    struct Refuse;
    impl Hop for Refuse {
        type Error = String;
        fn call<'a>(
            &'a self,
            node: &'a str,
            _: &'a ModelTarget,
            _: Vec<Tensor>,
            _: Placement,
        ) -> HopFuture<'a, String> {
            Box::pin(async move { Err(format!("403 at {node}")) })
        }
        fn timer(&self, after: Duration) -> Timer {
            Box::pin(tokio::time::sleep(after))
        }
        fn refuses(&self, _: &String) -> bool {
            true
        }
    }
    let err = g.run(&Refuse, row(), None).await.unwrap_err();
    assert!(matches!(err, RunError::Hop(ref m) if m == "403 at t"), "{err:?}");
}

/// Pearson's chi-square statistic of observed counts against expected shares.
fn chi_square(counts: &[u64], shares: &[f64]) -> f64 {
    let n: u64 = counts.iter().sum();
    counts
        .iter()
        .zip(shares)
        .map(|(&c, &s)| {
            let e = n as f64 * s;
            (c as f64 - e).powi(2) / e
        })
        .sum()
}

async fn split(g: &Graph, arms: &[&str], n: usize) -> Vec<u64> {
    let hops = Hops::default();
    let mut counts = vec![0u64; arms.len()];
    for _ in 0..n {
        let out = run(g, &hops).await;
        let child = out.routing[0].child.clone().unwrap();
        counts[arms.iter().position(|a| *a == child).unwrap()] += 1;
    }
    counts
}

// Critical values of chi-square at the 0.001 level: 10.828 (1 degree of freedom), 13.816 (2).
#[tokio::test]
async fn traffic_splits_pass_a_chi_square_test() {
    let g = graph("traffic: [{model: 'probs-a', weight: 90}, {model: 'probs-b', weight: 10}]\n");
    let counts = split(&g, &["probs-a", "probs-b"], 10_000).await;
    let stat = chi_square(&counts, &[0.9, 0.1]);
    assert!(stat < 10.828, "{counts:?}: chi-square {stat}");
    let g = graph(
        "traffic: [{model: 'probs-a', weight: 50}, {model: 'probs-b', weight: 30}, {model: 'probs-c', weight: 20}]\n",
    );
    let counts = split(&g, &["probs-a", "probs-b", "probs-c"], 10_000).await;
    let stat = chi_square(&counts, &[0.5, 0.3, 0.2]);
    assert!(stat < 13.816, "{counts:?}: chi-square {stat}");
    let g = graph(
        "graph:\n  name: ab\n  implementation: RANDOM_ABTEST\n  parameters: [{name: ratioA, value: '0.25', type: FLOAT}]\n  children:\n  - {name: a, model: probs-a}\n  - {name: b, model: probs-b}\n",
    );
    let counts = split(&g, &["a", "b"], 10_000).await;
    let stat = chi_square(&counts, &[0.25, 0.75]);
    assert!(stat < 10.828, "{counts:?}: chi-square {stat}");
}

#[tokio::test]
async fn sticky_callers_stay_in_one_arm_and_spread_over_arms() {
    let g = graph(
        "traffic: [{model: 'probs-a', weight: 50}, {model: 'probs-b', weight: 50}]\nsticky: {header: x-user}\n",
    );
    let hops = Hops::default();
    let mut per_arm = [0u32; 2];
    for user in 0..200 {
        let key = format!("user-{user}");
        let mut arms = std::collections::BTreeSet::new();
        for _ in 0..5 {
            let out = g.run(&hops, row(), Some(key.as_bytes())).await.map_err(|e| format!("{e:?}")).unwrap();
            arms.insert(out.routing[0].child.clone().unwrap());
        }
        assert_eq!(arms.len(), 1, "{key} moved between arms: {arms:?}");
        per_arm[usize::from(arms.contains("probs-b"))] += 1;
    }
    assert!(per_arm[0] > 70 && per_arm[1] > 70, "{per_arm:?}");
}

#[tokio::test]
async fn bandits_learn_from_feedback_on_the_route_taken() {
    let g = graph(
        "graph:\n  name: bandit\n  implementation: EPSILON_GREEDY\n  parameters: [{name: epsilon, value: '0.1', type: FLOAT}]\n  children:\n  - {name: a, model: probs-a}\n  - {name: b, model: probs-b}\n",
    );
    let hops = Hops::default();
    let mut b_late = 0;
    for i in 0..1500 {
        let out = run(&g, &hops).await;
        let chose_b = out.routing[0].choice == Choice::Child(1);
        // Arm b always pays; a never does.
        g.reward(&out.routing, if chose_b { 1.0 } else { 0.0 });
        if i >= 1000 && chose_b {
            b_late += 1;
        }
    }
    assert!(b_late >= 425, "{b_late} of the last 500 went to the better arm");
}

#[test]
fn build_errors_name_the_field() {
    let (field, message) = build_error("graph:\n  name: a\n  model: missing\n");
    assert_eq!(field, "graph.model");
    assert!(message.contains("not in the store"), "{message}");
    let (field, message) =
        build_error("graph:\n  name: a\n  model: plus1\n  children:\n  - {name: b, model: plus1}\n");
    assert_eq!(field, "graph.children[0].model");
    assert!(message.contains("takes tensor `X`"), "{message}");
    let (field, message) =
        build_error("graph:\n  name: a\n  model: double\n  children:\n  - {name: b, model: fp64}\n");
    assert_eq!(field, "graph.children[0].model");
    assert!(message.contains("FP64"), "{message}");
    let (field, message) = build_error("graph:\n  name: a\n  model: nested\n");
    assert_eq!(field, "graph.model");
    assert!(message.contains("cycle: outer -> nested -> outer"), "{message}");
    let (field, _) = build_error("graph:\n  name: a\n  model: outer\n");
    assert_eq!(field, "graph.model");
    let (field, message) = build_error(
        "graph:\n  name: r\n  implementation: RANDOM_ABTEST\n  children:\n  - {name: a, model: probs-a}\n  - {name: b, model: plus1}\n  parameters: [{name: ratioA, value: '0.5'}]\n",
    );
    assert_eq!(field, "graph.children[1]");
    assert!(message.contains("must answer alike"), "{message}");
    let (field, message) = build_error(
        "graph:\n  name: r\n  implementation: RANDOM_ABTEST\n  children:\n  - {name: a, model: probs-a}\n  - {name: b, model: probs-b}\n  parameters: [{name: ratio, value: '0.5'}]\n",
    );
    assert_eq!(field, "graph.parameters");
    assert!(message.contains("ratioA"), "{message}");
    let (field, message) =
        build_error("traffic: [{model: 'probs-a', weight: 1}, {model: plus1, weight: 1}]\n");
    assert_eq!(field, "traffic[1].model");
    assert!(message.contains("interchangeable"), "{message}");
    let (field, _) = build_error("graph:\n  name: s\n  implementation: SCALE\n");
    assert_eq!(field, "inputs");
}

#[tokio::test]
async fn seldon_core_2_pipelines_run_steps_by_their_inputs() {
    let g = graph(
        "pipeline:\n  steps:\n  - name: double\n  - {name: plus1, inputs: [double.outputs.X]}\n  - {name: probs-a, inputs: [double.outputs]}\n  - {name: again, model: plus1, inputs: [plus1.outputs.Y], tensorMap: {plus1.outputs.Y: X}}\n  output:\n    steps: [again, probs-a]\n",
    );
    let names: Vec<&str> = g.signature().outputs.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["Y", "label", "probabilities"]);
    assert_eq!(g.signature().inputs[0].name, "X");
    let hops = Hops::default();
    let out = run(&g, &hops).await;
    // (x * 2 + 1) + 1
    assert_eq!(data(&out.outputs[0]), vec![4.0, 6.0, 8.0, 10.0]);
    assert_eq!(out.outputs[1].data(), &TensorData::Int64(vec![0]));
    let called: Vec<String> = hops.calls.lock().unwrap().iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(called[0], "double");
    assert_eq!(called.last().unwrap(), "again");
    assert_eq!(called.len(), 4);

    let (field, message) = build_error(
        "pipeline:\n  steps:\n  - {name: double, inputs: [plus1.outputs.Y]}\n  - {name: plus1, inputs: [double.outputs.X]}\n",
    );
    assert_eq!(field, "pipeline.steps");
    assert!(message.contains("a cycle"), "{message}");
    let (field, message) =
        build_error("pipeline:\n  steps:\n  - {name: plus1, inputs: [nowhere.outputs.Y]}\n");
    assert_eq!(field, "pipeline.steps[0].inputs");
    assert!(message.contains("no step `nowhere`"), "{message}");
    let (field, message) = build_error(
        "pipeline:\n  steps:\n  - name: plus1\n  - {name: again, model: plus1, inputs: [plus1.outputs.Y]}\n",
    );
    assert_eq!(field, "pipeline.steps[1].inputs");
    assert!(message.contains("takes tensor `X`"), "{message}");
}

/// The names of the steps called, in call order.
fn called(hops: &Hops) -> Vec<String> {
    hops.calls.lock().unwrap().iter().map(|(n, _)| n.clone()).collect()
}

fn rows(values: &[[f32; 4]]) -> Vec<Tensor> {
    let flat: Vec<f32> = values.iter().flatten().copied().collect();
    vec![Tensor::new("X", vec![values.len(), 4], TensorData::Fp32(flat)).unwrap()]
}

#[tokio::test]
async fn pipeline_triggers_run_a_step_only_when_their_tensors_are_present() {
    // Seldon Core 2's conditional pipeline: `gate` answers `big` or `small` rows; each
    // branch runs only when its trigger has rows, on the request's X (the trigger's data is
    // not passed), and `stepsJoin: any` answers with the first output step that ran.
    let g = graph(
        "pipeline:\n  steps:\n  - name: gate\n  - {name: on-big, model: double, inputs: [outer.inputs.X], triggers: [gate.outputs.big]}\n  - {name: on-small, model: plus1, inputs: [outer.inputs.X], triggers: [gate.outputs.small], tensorMap: {}}\n  - {name: small-y, model: double, inputs: [on-small.outputs.Y], tensorMap: {on-small.outputs.Y: X}}\n  output:\n    steps: [on-big, small-y]\n    stepsJoin: any\n",
    );
    assert_eq!(g.signature().outputs[0].name, "X");
    let hops = Hops::default();
    let out = g.run(&hops, rows(&[[3.0, 0.0, 0.0, 1.0]]), None).await.unwrap();
    assert_eq!(data(&out.outputs[0]), vec![6.0, 0.0, 0.0, 2.0]);
    assert_eq!(called(&hops), ["gate", "on-big"]);
    let hops = Hops::default();
    let out = g.run(&hops, rows(&[[1.0, 0.0, 0.0, 1.0]]), None).await.unwrap();
    // (x + 1) * 2, through the small branch.
    assert_eq!(data(&out.outputs[0]), vec![4.0, 2.0, 2.0, 4.0]);
    assert_eq!(called(&hops), ["gate", "on-small", "small-y"]);
    // Both present: `any` answers with the first output step listed as soon as it has
    // answered; what only the answer would have read is then cut off (here `on-small`
    // before it ran, as the test's hops answer at once) or skipped (`small-y`).
    let hops = Hops::default();
    let out = g.run(&hops, rows(&[[3.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]), None).await.unwrap();
    assert_eq!(data(&out.outputs[0]), vec![6.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0]);
    assert_eq!(called(&hops), ["gate", "on-big"]);

    // triggersJoinType: inner needs every trigger, outer or any one of them.
    let two_triggers = |join: &str| {
        graph(&format!(
            "pipeline:\n  steps:\n  - name: gate\n  - {{name: both, model: double, inputs: [outer.inputs.X], triggers: [gate.outputs.big, gate.outputs.small], triggersJoinType: {join}}}\n  - {{name: pre, model: double}}\n  - {{name: always, model: double, inputs: [pre.outputs.X]}}\n  output:\n    steps: [both, always]\n    stepsJoin: any\n",
        ))
    };
    for (join, one_row, two_rows) in [("inner", false, true), ("outer", true, true), ("any", true, true)] {
        let g = two_triggers(join);
        for (input, runs) in [(rows(&[[3.0; 4]]), one_row), (rows(&[[3.0; 4], [1.0; 4]]), two_rows)] {
            let hops = Hops::default();
            let out = g.run(&hops, input, None).await.unwrap();
            assert_eq!(called(&hops).contains(&"both".to_owned()), runs, "{join}: {:?}", called(&hops));
            // `both` doubles the request; `always` (the fallback) doubles it twice.
            let want = if runs { 6.0 } else { 12.0 };
            assert_eq!(data(&out.outputs[0])[0], want, "{join}");
        }
    }
    // An inner output whose step was skipped: no answer, and the error says which step.
    let g = graph(
        "pipeline:\n  steps:\n  - name: gate\n  - {name: on-big, model: double, inputs: [outer.inputs.X], triggers: [gate.outputs.big]}\n",
    );
    let err = g.run(&Hops::default(), rows(&[[1.0; 4]]), None).await.unwrap_err();
    match err {
        RunError::Node { node, message } => {
            assert_eq!(node, "output");
            assert!(message.contains("on-big") && message.contains("did not run"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn pipeline_input_joins_inner_outer_and_any() {
    // `join` reads `gate.outputs.big` (as X) and `gate.outputs.small` (as Z, which it does
    // not take); with one row, only one of them is present.
    let pipeline = |join: &str, first: &str| {
        graph(&format!(
            "pipeline:\n  steps:\n  - name: gate\n  - name: join\n    model: double\n    inputs: [{first}, gate.outputs.small]\n    tensorMap: {{gate.outputs.big: X, gate.outputs.small: X}}\n    inputsJoinType: {join}\n  - {{name: pre, model: double}}\n  - {{name: fallback, model: double, inputs: [pre.outputs.X]}}\n  output:\n    steps: [join, fallback]\n    stepsJoin: any\n",
        ))
    };
    // inner: both must be present, else the step is skipped.
    let g = pipeline("inner", "gate.outputs.big");
    let hops = Hops::default();
    let out = g.run(&hops, rows(&[[3.0, 1.0, 1.0, 1.0]]), None).await.unwrap();
    assert!(!called(&hops).contains(&"join".to_owned()), "{:?}", called(&hops));
    assert_eq!(data(&out.outputs[0]), vec![12.0, 4.0, 4.0, 4.0], "the fallback answers");
    // outer: those present are joined (here the big rows alone).
    let g = pipeline("outer", "gate.outputs.big");
    let hops = Hops::default();
    let out = g.run(&hops, rows(&[[3.0, 1.0, 1.0, 1.0]]), None).await.unwrap();
    assert_eq!(data(&out.outputs[0]), vec![6.0, 2.0, 2.0, 2.0]);
    // With both present, outer joins both; the later one's X wins, as tensorMap renames
    // both to X (Seldon's join keeps one tensor per name).
    let hops = Hops::default();
    let out = g.run(&hops, rows(&[[3.0; 4], [1.0; 4]]), None).await.unwrap();
    assert_eq!(data(&out.outputs[0]), vec![2.0; 4]);
    // any: the first present in the order written, alone.
    let g = pipeline("any", "gate.outputs.big");
    let hops = Hops::default();
    let out = g.run(&hops, rows(&[[3.0; 4], [1.0; 4]]), None).await.unwrap();
    assert_eq!(data(&out.outputs[0]), vec![6.0; 4]);
    let hops = Hops::default();
    let out = g.run(&hops, rows(&[[1.0, 0.0, 0.0, 0.0]]), None).await.unwrap();
    assert_eq!(data(&out.outputs[0]), vec![2.0, 0.0, 0.0, 0.0]);
}

#[test]
fn invalid_joins_and_triggers_are_refused_at_build_time() {
    let (field, message) = build_error("pipeline:\n  steps:\n  - {name: plus1, inputsJoinType: sometimes}\n");
    assert_eq!(field, "pipeline.steps[0].inputsJoinType");
    assert!(message.contains("inner") && message.contains("outer") && message.contains("any"), "{message}");
    let (field, message) = build_error("pipeline:\n  steps:\n  - {name: plus1, triggersJoinType: any}\n");
    assert_eq!(field, "pipeline.steps[0].triggersJoinType");
    assert!(message.contains("no `triggers`"), "{message}");
    let (field, message) =
        build_error("pipeline:\n  steps:\n  - {name: plus1, triggers: [gate.outputs.big]}\n");
    assert_eq!(field, "pipeline.steps[0].triggers");
    assert!(message.contains("no step `gate`"), "{message}");
    let (field, message) = build_error(
        "pipeline:\n  steps:\n  - name: gate\n  - {name: plus1, triggers: [gate.outputs.huge]}\n",
    );
    assert_eq!(field, "pipeline.steps[1].triggers");
    assert!(message.contains("gate.outputs.huge"), "{message}");
    // A trigger cycle is a cycle.
    let (field, message) = build_error(
        "pipeline:\n  steps:\n  - {name: double, triggers: [plus1.outputs.Y]}\n  - {name: plus1, inputs: [double.outputs.X]}\n",
    );
    assert_eq!(field, "pipeline.steps");
    assert!(message.contains("a cycle"), "{message}");
    // `any` passes one input alone: each must feed the model by itself.
    let (field, message) = build_error(
        "pipeline:\n  steps:\n  - name: gate\n  - {name: plus1, inputs: [gate.outputs.big, gate.outputs.small], tensorMap: {gate.outputs.big: X}, inputsJoinType: any}\n",
    );
    assert_eq!(field, "pipeline.steps[1].inputs");
    assert!(message.contains("inputsJoinType: any") && message.contains("gate.outputs.small"), "{message}");
    // `stepsJoin: any` answers one step's tensors: they must answer alike.
    let (field, message) = build_error(
        "pipeline:\n  steps:\n  - name: double\n  - name: plus1\n  output:\n    steps: [double, plus1]\n    stepsJoin: any\n",
    );
    assert_eq!(field, "pipeline.output.steps");
    assert!(message.contains("the same tensors"), "{message}");
    // A join window: milliseconds from 1 to an hour, over a join of two references or more.
    for (body, field) in [
        (
            "pipeline:\n  steps:\n  - name: double\n  - {name: plus1, inputs: [double.outputs.X, outer.inputs.X], joinWindowMs: 0}\n",
            "pipeline.steps[1].joinWindowMs",
        ),
        (
            "pipeline:\n  steps:\n  - name: double\n  - {name: plus1, inputs: [double.outputs.X, outer.inputs.X], joinWindowMs: 3600001}\n",
            "pipeline.steps[1].joinWindowMs",
        ),
        (
            "pipeline:\n  steps:\n  - name: double\n  - name: plus1\n  output:\n    steps: [double, plus1]\n    joinWindowMs: -5\n",
            "pipeline.output.joinWindowMs",
        ),
    ] {
        let (got, message) = build_error(body);
        assert_eq!(got, field, "{message}");
    }
    let (field, message) = build_error(
        "pipeline:\n  steps:\n  - name: double\n  - {name: plus1, inputs: [double.outputs.X], joinWindowMs: 50}\n",
    );
    assert_eq!(field, "pipeline.steps[1].joinWindowMs");
    assert!(message.contains("has one") && message.contains("remove `joinWindowMs`"), "{message}");
    let (field, message) = build_error(
        "pipeline:\n  steps:\n  - name: double\n  output:\n    steps: [double]\n    joinWindowMs: 50\n",
    );
    assert_eq!(field, "pipeline.output.joinWindowMs");
    assert!(message.contains("has one"), "{message}");
    let (_, message) = build_error(
        "pipeline:\n  steps:\n  - {name: double, joinWindowMs: 10, inputs: [outer.inputs.X, outer.inputs.X]}\n  - {name: plus1, joinwindowms: 5}\n",
    );
    assert!(message.contains("unknown field `joinwindowms`"), "{message}");
    // A window and a stepsJoin that are fine build.
    graph(
        "pipeline:\n  steps:\n  - name: double\n  - name: plus1\n  output:\n    steps: [double, plus1]\n    stepsJoin: outer\n    joinWindowMs: 20\n",
    );
}

/// A pipeline joining `fast` (double: X*2) and `late` (slow: X*3 after 100 ms) into `join`
/// (plus1), as `join` and within `window`, answering `join`'s Y.
fn joining(join: &str, first: &str, second: &str, window: Option<u32>) -> Graph {
    let window = window.map_or(String::new(), |w| format!(", joinWindowMs: {w}"));
    graph(&format!(
        "pipeline:\n  steps:\n  - {{name: fast, model: double}}\n  - {{name: late, model: slow}}\n  - {{name: join, model: plus1, inputs: [{first}.outputs.X, {second}.outputs.X], inputsJoinType: {join}{window}}}\n",
    ))
}

#[tokio::test(start_paused = true)]
async fn join_windows_go_on_without_late_steps_unless_the_join_is_inner() {
    let x = 1.0; // the row is [1, 2, 3, 4]: its first value, doubled or tripled, plus one.
    for (join, first, second, window, want, at_ms) in [
        // No window: every join waits for both; the later reference's X wins.
        ("inner", "fast", "late", None, 3.0 * x + 1.0, 100),
        ("outer", "fast", "late", None, 3.0 * x + 1.0, 100),
        ("any", "late", "fast", None, 3.0 * x + 1.0, 100),
        // A window long enough changes nothing.
        ("outer", "fast", "late", Some(200), 3.0 * x + 1.0, 100),
        // A short one: outer and any go on with what is there when it closes.
        ("outer", "fast", "late", Some(30), 2.0 * x + 1.0, 30),
        ("any", "late", "fast", Some(30), 2.0 * x + 1.0, 30),
        // `any` takes the first present in the order written, without waiting for a window;
        // `late`, which nothing else reads, is then cut off.
        ("any", "fast", "late", Some(30), 2.0 * x + 1.0, 0),
        ("any", "fast", "late", None, 2.0 * x + 1.0, 0),
    ] {
        let g = joining(join, first, second, window);
        let hops = Hops::default();
        let started = tokio::time::Instant::now();
        let out = run(&g, &hops).await;
        let took = started.elapsed();
        let what = format!("{join} [{first}, {second}] within {window:?}");
        assert_eq!(out.outputs[0].name(), "Y", "{what}");
        assert_eq!(data(&out.outputs[0])[0], want, "{what}");
        assert_eq!(took, Duration::from_millis(at_ms), "{what}");
        assert!(called(&hops).contains(&"late".to_owned()), "{what}");
    }
    // An inner join whose window closes first fails, naming the join and the late step.
    let g = joining("inner", "fast", "late", Some(30));
    let started = tokio::time::Instant::now();
    let err = g.run(&Hops::default(), row(), None).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_millis(30));
    match err {
        RunError::Late { node, message } => {
            assert_eq!(node, "join");
            assert!(message.contains("[\"late\"]") && message.contains("30 ms"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // The output's own window: `outer` answers what the output steps answered in time.
    let g = graph(
        "pipeline:\n  steps:\n  - {name: fast, model: double}\n  - {name: late, model: plus1, inputs: [slow.outputs.X]}\n  - {name: slow}\n  output:\n    steps: [fast, late]\n    stepsJoin: outer\n    joinWindowMs: 30\n",
    );
    let names = |g: &Graph| g.signature().outputs.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&g), ["X", "Y"]);
    let started = tokio::time::Instant::now();
    let out = run(&g, &Hops::default()).await;
    assert_eq!(started.elapsed(), Duration::from_millis(30));
    assert_eq!(out.outputs.iter().map(|t| t.name()).collect::<Vec<_>>(), ["X"]);
    assert_eq!(data(&out.outputs[0]), vec![2.0, 4.0, 6.0, 8.0]);
    // Without the window, outer waits for both.
    let g = graph(
        "pipeline:\n  steps:\n  - {name: fast, model: double}\n  - {name: late, model: plus1, inputs: [slow.outputs.X]}\n  - {name: slow}\n  output:\n    steps: [fast, late]\n    stepsJoin: outer\n",
    );
    let out = run(&g, &Hops::default()).await;
    assert_eq!(out.outputs.iter().map(|t| t.name()).collect::<Vec<_>>(), ["X", "Y"]);
    assert_eq!(data(&out.outputs[1]), vec![4.0, 7.0, 10.0, 13.0]);
    // An inner output with a window fails when a step is late, naming `output`.
    let g = graph(
        "pipeline:\n  steps:\n  - {name: fast, model: double}\n  - {name: slow}\n  output:\n    steps: [fast, slow]\n    joinWindowMs: 30\n",
    );
    let err = g.run(&Hops::default(), row(), None).await.unwrap_err();
    assert!(matches!(err, RunError::Late { ref node, .. } if node == "output"), "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_step_is_passed_over_only_by_outer_and_any_joins_and_never_a_refusal() {
    let pipeline = |join: &str, failing: &str| {
        graph(&format!(
            "pipeline:\n  steps:\n  - {{name: fast, model: double}}\n  - {{name: bad, model: {failing}}}\n  - {{name: join, model: plus1, inputs: [bad.outputs.X, fast.outputs.X], inputsJoinType: {join}}}\n",
        ))
    };
    // outer and any go on with the step that answered.
    for join in ["outer", "any"] {
        let hops = Hops::default();
        let out = run(&pipeline(join, "broken"), &hops).await;
        assert_eq!(data(&out.outputs[0]), vec![3.0, 5.0, 7.0, 9.0], "{join}");
        assert_eq!(called(&hops), ["fast", "bad", "join"], "{join}");
    }
    // inner fails with the step's own error (its status reaches the caller).
    let err = pipeline("inner", "broken").run(&Hops::default(), row(), None).await.unwrap_err();
    assert!(matches!(err, RunError::Hop(ref m) if m == "500 broken"), "{err:?}");
    // A refusal fails the request whatever the join: a graph is no way around a policy.
    for join in ["inner", "outer", "any"] {
        let err = pipeline(join, "forbidden").run(&Hops::default(), row(), None).await.unwrap_err();
        assert!(matches!(err, RunError::Hop(ref m) if m == "403 forbidden"), "{join}: {err:?}");
    }
    // A failed step that no join passes over (nothing reads it) fails the request.
    let g = graph(
        "pipeline:\n  steps:\n  - {name: fast, model: double}\n  - {name: bad, model: broken}\n  output:\n    steps: [fast]\n",
    );
    let err = g.run(&Hops::default(), row(), None).await.unwrap_err();
    assert!(matches!(err, RunError::Hop(ref m) if m == "500 broken"), "{err:?}");
    // ... nor does an outer join when nothing else is present: its error is the request's.
    let g = graph(
        "pipeline:\n  steps:\n  - {name: bad, model: broken}\n  - {name: gate}\n  - {name: join, model: plus1, inputs: [bad.outputs.X, gate.outputs.big], tensorMap: {gate.outputs.big: X}, inputsJoinType: outer}\n",
    );
    let err = g.run(&Hops::default(), row(), None).await.unwrap_err();
    assert!(matches!(err, RunError::Hop(ref m) if m == "500 broken"), "{err:?}");
    // The output's outer join passes over a failed output step.
    let g = graph(
        "pipeline:\n  steps:\n  - {name: fast, model: double}\n  - {name: bad, model: broken}\n  output:\n    steps: [bad, fast]\n    stepsJoin: outer\n",
    );
    let out = run(&g, &Hops::default()).await;
    assert_eq!(data(&out.outputs[0]), vec![2.0, 4.0, 6.0, 8.0]);
}

#[tokio::test]
async fn an_outer_output_answers_the_tensors_of_the_steps_that_ran() {
    let g = graph(
        "pipeline:\n  steps:\n  - name: gate\n  - {name: on-big, model: double, inputs: [gate.outputs.big], tensorMap: {gate.outputs.big: X}}\n  - {name: on-small, model: plus1, inputs: [gate.outputs.small], tensorMap: {gate.outputs.small: X}}\n  output:\n    steps: [on-big, on-small]\n    stepsJoin: outer\n",
    );
    let names =
        |out: &palisade_graph::Outcome| out.outputs.iter().map(|t| t.name().to_owned()).collect::<Vec<_>>();
    let out = g.run(&Hops::default(), rows(&[[3.0; 4], [1.0; 4]]), None).await.unwrap();
    assert_eq!(names(&out), ["X", "Y"]);
    let out = g.run(&Hops::default(), rows(&[[3.0; 4]]), None).await.unwrap();
    assert_eq!(names(&out), ["X"]);
    assert_eq!(data(&out.outputs[0]), vec![6.0; 4]);
    let out = g.run(&Hops::default(), rows(&[[1.0; 4]]), None).await.unwrap();
    assert_eq!(names(&out), ["Y"]);
}

/// A catalog where `outer:0` is a model and `outer:2` a graph (the router's case: the
/// model's own versions as arms of its traffic split).
struct OwnVersions;

impl Catalog for OwnVersions {
    fn lookup(&self, target: &ModelTarget) -> Result<CatalogEntry, String> {
        let x = spec("X", DataType::Fp32, &[-1, 4]);
        let signature = ModelSignature { inputs: vec![x.clone()], outputs: vec![x] };
        match (target.name.as_str(), target.version.as_ref().map(|v| v.as_str())) {
            ("outer" | "double", Some("0")) => Ok(CatalogEntry { signature, uses: vec![] }),
            ("outer", Some("2")) => {
                Ok(CatalogEntry { signature, uses: vec![ModelTarget::parse("double:0").unwrap()] })
            }
            _ => Err(format!("`{target}` is not in the store")),
        }
    }
}

#[test]
fn a_split_may_name_its_own_models_other_versions_but_never_itself() {
    let compile_own =
        |body: &str| compile(&manifest(body), &OwnVersions, Some(1)).map_err(|e| (e.field, e.message));
    compile_own("traffic: [{model: 'outer:0', weight: 9}, {model: 'double:0', weight: 1}]\n").unwrap();
    for (body, want) in [
        ("traffic: [{model: outer, weight: 1}]\n", "is this bundle itself"),
        ("traffic: [{model: 'outer:1', weight: 1}]\n", "is this bundle itself"),
        ("traffic: [{model: 'outer:2', weight: 1}]\n", "another graph of this name"),
    ] {
        let (field, message) = compile_own(body).unwrap_err();
        assert_eq!(field, "traffic[0].model");
        assert!(message.contains(want), "{body} -> {message}");
    }
}
