//! Adaptive batching on the real engine with every fixture model: results of requests
//! batched together are bit-identical to the same requests run alone, a full queue is
//! refused at once, and batches really form.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core::{Tensor, TensorData};
use palisade_runtime::onnx::OnnxModel;
use palisade_runtime::{BatchConfig, BatchStats, Batcher, Engine, EngineConfig, Model, RuntimeError};

const MODELS: [&str; 14] = [
    "iris_rf",
    "iris_rf_nozipmap",
    "iris_lr",
    "iris_lr_nozipmap",
    "iris_gb",
    "iris_gb_nozipmap",
    "iris_mlp",
    "iris_mlp_nozipmap",
    "iris_binary_rf_nozipmap",
    "iris_binary_gb_nozipmap",
    "iris_rf_regressor",
    "iris_gb_regressor",
    "iris_binary_rf",
    "iris_binary_gb",
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models")
}

fn iris_rows() -> Vec<Vec<f32>> {
    let text = std::fs::read_to_string(fixtures().join("iris.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect())
        .collect()
}

/// A request of `rows`, cut to the model's feature count (the regressors take three).
fn request_for(model: &dyn Model, rows: &[Vec<f32>]) -> Vec<Tensor> {
    let spec = &model.signature().inputs[0];
    let features = spec.shape_i64()[1] as usize;
    let data = rows.iter().flat_map(|r| r[..features].iter().copied()).collect();
    vec![Tensor::new(spec.name.clone(), vec![rows.len(), features], TensorData::Fp32(data)).unwrap()]
}

fn model(name: &str) -> Arc<dyn Model> {
    Arc::new(OnnxModel::load(&fixtures().join(format!("{name}.onnx"))).unwrap())
}

/// Every output's elements as bits, so that equality is bit-identity (NaN included).
fn bits(outputs: &[Tensor]) -> Vec<(String, Vec<usize>, Vec<u64>)> {
    outputs
        .iter()
        .map(|t| {
            let values: Vec<u64> = match t.data() {
                TensorData::Fp32(v) => v.iter().map(|x| u64::from(x.to_bits())).collect(),
                TensorData::Fp64(v) => v.iter().map(|x| x.to_bits()).collect(),
                TensorData::Int64(v) => v.iter().map(|x| *x as u64).collect(),
                TensorData::Int32(v) => v.iter().map(|x| *x as u64).collect(),
                TensorData::Bytes(v) => v.iter().map(|b| b.iter().map(|x| u64::from(*x)).sum()).collect(),
                other => panic!("unexpected output type {:?}", other.datatype()),
            };
            (t.name().to_owned(), t.shape().to_vec(), values)
        })
        .collect()
}

fn config(max_batch_size: usize, latency_ms: u64) -> BatchConfig {
    BatchConfig { max_batch_size, max_latency: Duration::from_millis(latency_ms), queue_size: 1024 }
}

/// Requests of 1 to 3 rows over the whole iris set.
fn requests(model: &dyn Model) -> Vec<Vec<Tensor>> {
    let rows = iris_rows();
    let mut out = Vec::new();
    let mut start = 0;
    for size in [1usize, 1, 2, 1, 3].iter().cycle() {
        if start >= rows.len() {
            break;
        }
        let end = (start + size).min(rows.len());
        out.push(request_for(model, &rows[start..end]));
        start = end;
    }
    out
}

// The gate is a std mutex on purpose: it blocks the inference threads, not the test task.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_results_are_bit_identical_to_runs_alone() {
    let engine = Arc::new(
        Engine::start(EngineConfig { threads: 2, queue_capacity: 1024, ..EngineConfig::default() }).unwrap(),
    );
    for name in MODELS {
        let model = model(name);
        let stats: Arc<Mutex<Vec<BatchStats>>> = Arc::default();
        let seen = stats.clone();
        let observer = Arc::new(move |s: &BatchStats| seen.lock().unwrap().push(*s));
        let batcher =
            Arc::new(Batcher::start(&engine, model.clone(), config(64, 20), Some(observer)).unwrap());
        let requests = requests(model.as_ref());

        // Alone: one request at a time, each its own batch.
        let mut alone = Vec::new();
        for inputs in &requests {
            alone.push(bits(&batcher.infer(inputs.clone()).await.unwrap().outputs));
        }
        let batches_alone = stats.lock().unwrap().len();
        assert_eq!(batches_alone, requests.len(), "{name}: one batch per request when sent one by one");

        // Together: all at once while both engine threads are busy (held by another model),
        // so requests gather into batches instead of going out as threads free up.
        let gate = Arc::new(Mutex::new(()));
        let held = gate.lock().unwrap();
        let blockers: Vec<_> = (0..2)
            .map(|_| {
                let engine = engine.clone();
                let blocker: Arc<dyn Model> = Arc::new(Gated { inner: model.clone(), gate: gate.clone() });
                let inputs = requests[0].clone();
                tokio::spawn(async move { engine.infer(blocker, inputs).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let tasks: Vec<_> = requests
            .iter()
            .map(|inputs| {
                let (batcher, inputs) = (batcher.clone(), inputs.clone());
                tokio::spawn(async move { batcher.infer(inputs).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(held);
        for blocker in blockers {
            blocker.await.unwrap().unwrap();
        }
        for (i, task) in tasks.into_iter().enumerate() {
            let together = bits(&task.await.unwrap().unwrap().outputs);
            assert_eq!(together, alone[i], "{name}: request {i} differs when batched");
        }
        let stats = stats.lock().unwrap();
        let together = &stats[batches_alone..];
        assert!(together.len() < requests.len() / 4, "{name}: requests were batched: {together:?}");
        assert!(together.iter().all(|s| s.rows <= 64));
        assert_eq!(together.iter().map(|s| s.requests).sum::<usize>(), requests.len());
        assert!(together.iter().all(|s| s.rows + s.padding_rows >= model.min_batch_rows()));
        assert!(together.iter().all(|s| s.padding_rows == 0 || s.rows < model.min_batch_rows()));
    }
}

/// Without a batcher too: a model run on a whole batch gives each row what it gives the
/// row alone (for linear models, alone means in a batch of two, see `min_batch_rows`).
#[test]
fn rows_do_not_depend_on_their_batch_mates() {
    let rows = iris_rows();
    for name in MODELS {
        let model = model(name);
        let whole = model.run(request_for(model.as_ref(), &rows)).unwrap();
        let min = model.min_batch_rows();
        for (i, row) in rows.iter().enumerate() {
            let alone: Vec<Vec<f32>> = std::iter::repeat_n(row.clone(), min).collect();
            let outputs = model.run(request_for(model.as_ref(), &alone)).unwrap();
            for (one, all) in outputs.iter().zip(&whole) {
                let per_row = one.data().len() / min;
                let got = &bits(std::slice::from_ref(one))[0].2[..per_row];
                let want = &bits(std::slice::from_ref(all))[0].2[i * per_row..(i + 1) * per_row];
                assert_eq!(got, want, "{name}: row {i}, output {}", one.name());
            }
        }
    }
    assert_eq!(model("iris_lr").min_batch_rows(), 2);
    assert_eq!(model("iris_mlp").min_batch_rows(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_request_does_not_wait_for_company() {
    let engine =
        Engine::start(EngineConfig { threads: 1, queue_capacity: 16, ..EngineConfig::default() }).unwrap();
    let model = model("iris_mlp_nozipmap");
    let inputs = request_for(model.as_ref(), &iris_rows()[..1]);
    let long = BatchConfig { max_batch_size: 32, max_latency: Duration::from_secs(5), queue_size: 16 };
    let batcher = Batcher::start(&engine, model, long, None).unwrap();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        batcher.infer(inputs.clone()).await.unwrap();
        // The engine's thread is free, so the batch goes at once, not after 5 s.
        assert!(started.elapsed() < Duration::from_secs(2), "waited {:?}", started.elapsed());
    }
}

/// Waits on a gate the test holds, so that the queue fills.
struct Gated {
    inner: Arc<dyn Model>,
    gate: Arc<Mutex<()>>,
}

impl Model for Gated {
    fn signature(&self) -> &palisade_core::ModelSignature {
        self.inner.signature()
    }
    fn platform(&self) -> &'static str {
        "test"
    }
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RuntimeError> {
        let _open = self.gate.lock().unwrap();
        self.inner.run(inputs)
    }
}

// The gate is a std mutex on purpose: it blocks the inference thread, not the test task.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_refused_at_once() {
    let engine =
        Engine::start(EngineConfig { threads: 1, queue_capacity: 1, ..EngineConfig::default() }).unwrap();
    let gate = Arc::new(Mutex::new(()));
    let inner = model("iris_rf_nozipmap");
    let inputs = request_for(inner.as_ref(), &iris_rows()[..1]);
    let model = Arc::new(Gated { inner, gate: gate.clone() });
    let batcher = Arc::new(
        Batcher::start(
            &engine,
            model,
            BatchConfig { max_batch_size: 1, max_latency: Duration::ZERO, queue_size: 2 },
            None,
        )
        .unwrap(),
    );
    let held = gate.lock().unwrap();
    let mut waiting = Vec::new();
    let mut refused = 0;
    for _ in 0..16 {
        let (batcher, inputs) = (batcher.clone(), inputs.clone());
        waiting.push(tokio::spawn(async move { batcher.infer(inputs).await }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(held);
    let mut served = 0;
    for task in waiting {
        match task.await.unwrap() {
            Ok(_) => served += 1,
            Err(RuntimeError::Overloaded) => refused += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert!(refused > 0, "a full queue refuses");
    assert!(served >= 2, "what was queued ran: {served}");
}

#[test]
fn batching_needs_a_dynamic_first_dimension() {
    let engine =
        Engine::start(EngineConfig { threads: 1, queue_capacity: 1, ..EngineConfig::default() }).unwrap();
    let mut fixed = OnnxModel::load(&fixtures().join("iris_rf_nozipmap.onnx")).unwrap();
    let mut signature = fixed.signature().clone();
    signature.inputs[0].shape[0] = palisade_core::Dim::Fixed(1);
    fixed.declare(&signature).unwrap();
    let err = Batcher::start(&engine, Arc::new(fixed), config(8, 1), None).unwrap_err();
    assert!(err.to_string().contains("dynamic first dimension"), "{err}");
    let err = Batcher::start(&engine, model("iris_rf_nozipmap"), config(0, 1), None).unwrap_err();
    assert!(err.to_string().contains("at least 1"), "{err}");
}

/// Refuses a request whose first feature is negative, as a model refuses a category it was
/// not trained on ([`RuntimeError::InputRefused`]), wherever the row sits in a batch.
struct Refusing {
    inner: Arc<dyn Model>,
}

impl Model for Refusing {
    fn signature(&self) -> &palisade_core::ModelSignature {
        self.inner.signature()
    }
    fn platform(&self) -> &'static str {
        "test"
    }
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RuntimeError> {
        let TensorData::Fp32(x) = inputs[0].data() else { panic!("FP32 inputs") };
        let features = inputs[0].shape()[1];
        if let Some(row) = x.chunks(features).position(|r| r[0] < 0.0) {
            return Err(RuntimeError::InputRefused(format!("input `X`, row {row}: refused")));
        }
        self.inner.run(inputs)
    }
}

// The gate is a std mutex on purpose: it blocks the inference thread, not the test task.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_value_fails_only_the_request_that_sent_it() {
    let engine = Arc::new(
        Engine::start(EngineConfig { threads: 1, queue_capacity: 64, ..EngineConfig::default() }).unwrap(),
    );
    let inner = model("iris_rf_nozipmap");
    let stats: Arc<Mutex<Vec<BatchStats>>> = Arc::default();
    let seen = stats.clone();
    let observer = Arc::new(move |s: &BatchStats| seen.lock().unwrap().push(*s));
    let model: Arc<dyn Model> = Arc::new(Refusing { inner: inner.clone() });
    let batcher = Arc::new(Batcher::start(&engine, model, config(64, 20), Some(observer)).unwrap());
    let rows = iris_rows();
    let mut bad = rows[3].clone();
    bad[0] = -1.0;
    let requests: Vec<Vec<Tensor>> = (0..8)
        .map(|i| {
            let row = if i == 5 { bad.clone() } else { rows[i].clone() };
            request_for(inner.as_ref(), &[rows[i + 10].clone(), row])
        })
        .collect();
    let mut alone = Vec::new();
    for inputs in &requests {
        alone.push(batcher.infer(inputs.clone()).await.map(|out| bits(&out.outputs)));
    }
    assert!(matches!(&alone[5], Err(RuntimeError::InputRefused(m)) if m == "input `X`, row 1: refused"));

    // All at once while the engine's thread is held, so that they form one batch.
    let gate = Arc::new(Mutex::new(()));
    let held = gate.lock().unwrap();
    let blocker: Arc<dyn Model> = Arc::new(Gated { inner: inner.clone(), gate: gate.clone() });
    let blocked = {
        let (engine, inputs) = (engine.clone(), requests[0].clone());
        tokio::spawn(async move { engine.infer(blocker, inputs).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = stats.lock().unwrap().len();
    let tasks: Vec<_> = requests
        .iter()
        .map(|inputs| {
            let (batcher, inputs) = (batcher.clone(), inputs.clone());
            tokio::spawn(async move { batcher.infer(inputs).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(held);
    blocked.await.unwrap().unwrap();
    for (i, task) in tasks.into_iter().enumerate() {
        let together = task.await.unwrap().map(|out| bits(&out.outputs));
        match (&together, &alone[i]) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "request {i}"),
            (Err(RuntimeError::InputRefused(got)), Err(RuntimeError::InputRefused(want))) => {
                assert_eq!(got, want, "the refusal names the request's own row");
            }
            other => panic!("request {i}: {other:?}"),
        }
    }
    let stats = stats.lock().unwrap();
    assert!(stats[before..].iter().any(|s| s.requests > 1), "the requests were batched: {stats:?}");
}
