//! The one way a request runs a model: [`Dispatcher::dispatch`].
//!
//! REST, gRPC, Seldon and inference graphs all call it with the model they resolved and
//! the request's tensors. It checks the tensors against the model's signature before
//! anything is queued, then runs the model the way its kind needs: an in-process model
//! goes to its [`Batcher`] when it batches, else to the [`Engine`]; an upstream model is
//! awaited on the async runtime (it waits on the network, not on a CPU). Everything,
//! queue wait included, happens within the dispatcher's timeout.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_core::{ModelRef, ModelSignature, Tensor};

use crate::upstream::{CallContext, UpstreamModel};
use crate::{BatchConfig, BatchObserver, Batcher, Engine, Model, OutputSize, RuntimeError, check_inputs};

/// A prepared model, as the dispatcher runs it.
#[derive(Clone)]
pub enum Runnable {
    /// Computed in this process, on the engine's threads (or on the calling task when a
    /// run is cheap).
    InProcess(Arc<dyn Model>),
    /// Served by an upstream Open Inference Protocol server and awaited.
    Upstream(Arc<UpstreamModel>),
}

impl std::fmt::Debug for Runnable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Runnable::InProcess(model) => write!(f, "InProcess({})", model.platform()),
            Runnable::Upstream(model) => write!(f, "Upstream({})", model.target()),
        }
    }
}

/// Inputs checked against a model's signature, in signature order ([`Runnable::check`]).
#[derive(Debug)]
pub struct CheckedInputs(Vec<Tensor>);

impl CheckedInputs {
    /// The checked tensors, in signature order.
    pub fn into_inner(self) -> Vec<Tensor> {
        self.0
    }
}

impl Runnable {
    /// The model's inputs and outputs.
    pub fn signature(&self) -> &ModelSignature {
        match self {
            Runnable::InProcess(model) => model.signature(),
            Runnable::Upstream(model) => model.signature(),
        }
    }

    /// The model's own request body limit in bytes (`limits.maxBodyBytes`), if it has one.
    pub fn max_body_bytes(&self) -> Option<usize> {
        match self {
            Runnable::InProcess(model) => model.max_body_bytes(),
            Runnable::Upstream(model) => model.max_body_bytes(),
        }
    }

    /// Checks `inputs` against the model's signature (names, datatypes, shapes) and puts
    /// them in signature order: what [`Runnable::output_bytes`] and
    /// [`Dispatcher::dispatch`] take, so neither sees unchecked inputs.
    pub fn check(&self, inputs: Vec<Tensor>) -> Result<CheckedInputs, RuntimeError> {
        check_inputs(self.signature(), inputs).map(CheckedInputs)
    }

    /// The bytes the model's outputs take for a request with these inputs, to reserve
    /// from the server's memory budget before it runs (see [`OutputSize::bytes`]). 0 for
    /// an upstream model: its server computes, and its answer is read within its own
    /// response limit.
    pub fn output_bytes(&self, inputs: &CheckedInputs) -> u64 {
        let inputs = &inputs.0;
        match self {
            Runnable::InProcess(model) => match model.output_size() {
                Some(size) => size.bytes(inputs),
                None => OutputSize::from_signature(model.signature()).bytes(inputs),
            },
            Runnable::Upstream(_) => 0,
        }
    }

    /// The bytes the outputs of one input row take, every dynamic dim 1 (see
    /// [`OutputSize::bytes_per_row`]); 0 for an upstream model.
    pub fn output_bytes_per_row(&self) -> u64 {
        match self {
            Runnable::InProcess(model) => match model.output_size() {
                Some(size) => size.bytes_per_row(),
                None => OutputSize::from_signature(model.signature()).bytes_per_row(),
            },
            Runnable::Upstream(_) => 0,
        }
    }

    /// The engine that computes the model: `tract` or `onnxruntime` in-process, `upstream`
    /// for a model another server runs.
    pub fn engine(&self) -> &'static str {
        match self {
            Runnable::InProcess(model) => model.engine(),
            Runnable::Upstream(_) => "upstream",
        }
    }

    /// The framework that runs it, as V2 metadata reports it (`onnx`, `upstream`).
    pub fn platform(&self) -> &'static str {
        match self {
            Runnable::InProcess(model) => model.platform(),
            Runnable::Upstream(_) => "upstream",
        }
    }

    /// The in-process model, if it is one.
    pub fn in_process(&self) -> Option<&Arc<dyn Model>> {
        match self {
            Runnable::InProcess(model) => Some(model),
            Runnable::Upstream(_) => None,
        }
    }

    /// The upstream model, if it is one.
    pub fn upstream(&self) -> Option<&Arc<UpstreamModel>> {
        match self {
            Runnable::InProcess(_) => None,
            Runnable::Upstream(model) => Some(model),
        }
    }
}

/// A finished dispatch: every output, in signature order, and where the time went.
#[derive(Debug)]
pub struct Dispatched {
    /// Every model output, in signature order.
    pub outputs: Vec<Tensor>,
    /// Time spent waiting for a batch or an inference thread (zero for upstream models).
    pub queue_wait: Duration,
    /// Time spent computing (for upstream models, the whole call).
    pub compute: Duration,
}

/// Runs models for requests: the engine, the batchers of the models that batch, and the
/// timeout of one inference.
pub struct Dispatcher {
    // Batchers feed the engine: declared before it, so they stop first. Models come and go
    // while serving, and so do their batchers; a request holds its batcher until it is done.
    batchers: std::sync::RwLock<HashMap<ModelRef, Arc<Batcher>>>,
    engine: Engine,
    timeout: Duration,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("engine", &self.engine)
            .field("batched", &self.batchers.read().map(|b| b.len()).unwrap_or_default())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Dispatcher {
    /// A dispatcher over `engine`; one inference may take `timeout`, queue wait included.
    pub fn new(engine: Engine, timeout: Duration) -> Dispatcher {
        Dispatcher { batchers: std::sync::RwLock::default(), engine, timeout }
    }

    /// Batches the requests of model version `id` from now on. Upstream models are not
    /// batched here (their server batches, if it does).
    pub fn batch(
        &self,
        id: ModelRef,
        model: &Runnable,
        config: BatchConfig,
        observer: Option<BatchObserver>,
    ) -> Result<(), RuntimeError> {
        let Runnable::InProcess(model) = model else {
            return Err(RuntimeError::Batching(
                "an upstream model's calls go to its server one by one; batch on the upstream server"
                    .to_owned(),
            ));
        };
        let batcher = Arc::new(Batcher::start(&self.engine, model.clone(), config, observer)?);
        let replaced = self.batchers.write().unwrap_or_else(|e| e.into_inner()).insert(id, batcher);
        drop(replaced);
        Ok(())
    }

    /// Stops batching model version `id` (it is no longer served). Requests already queued
    /// in its batcher still run; its thread stops once the last of them holds it no more.
    pub fn unbatch(&self, id: &ModelRef) {
        let removed = self.batchers.write().unwrap_or_else(|e| e.into_inner()).remove(id);
        drop(removed);
    }

    /// The batcher of a model version, if its requests are batched.
    pub fn batcher(&self, id: &ModelRef) -> Option<Arc<Batcher>> {
        self.batchers.read().ok()?.get(id).cloned()
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The timeout of one inference.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs model version `id` on inputs [`Runnable::check`] accepted, and waits for its
    /// outputs within the timeout. `call` identifies the request to upstream servers
    /// (request id, trace context) and says whether the run starts alongside others of the
    /// same request (then an in-process model runs on an inference thread unless trivially
    /// cheap).
    pub async fn dispatch(
        &self,
        id: &ModelRef,
        model: &Runnable,
        inputs: CheckedInputs,
        call: CallContext<'_>,
    ) -> Result<Dispatched, RuntimeError> {
        let CheckedInputs(inputs) = inputs;
        let timeout = self.timeout;
        let started = Instant::now();
        match model {
            Runnable::InProcess(model) => {
                let output = match self.batcher(id) {
                    Some(batcher) => tokio::time::timeout(timeout, batcher.infer(inputs)).await,
                    None if call.alongside => {
                        tokio::time::timeout(timeout, self.engine.infer_alongside(model.clone(), inputs))
                            .await
                    }
                    None => tokio::time::timeout(timeout, self.engine.infer(model.clone(), inputs)).await,
                }
                .map_err(|_| RuntimeError::Timeout(timeout))??;
                Ok(Dispatched {
                    outputs: output.outputs,
                    queue_wait: output.queue_wait,
                    compute: output.compute,
                })
            }
            Runnable::Upstream(upstream) => {
                let outputs = tokio::time::timeout(timeout, upstream.infer(inputs, call))
                    .await
                    .map_err(|_| RuntimeError::Timeout(timeout))??;
                Ok(Dispatched { outputs, queue_wait: Duration::ZERO, compute: started.elapsed() })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Mutex;

    use palisade_core::{DataType, Dim, ModelSignature, TensorData, TensorSpec};

    use super::*;
    use crate::EngineConfig;

    /// Doubles its one FP32 input, after waiting on a gate the test controls.
    struct Doubler {
        signature: ModelSignature,
        gate: Mutex<()>,
    }

    impl Model for Doubler {
        fn signature(&self) -> &ModelSignature {
            &self.signature
        }
        fn platform(&self) -> &'static str {
            "test"
        }
        fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RuntimeError> {
            let _held = self.gate.lock().map_err(|_| RuntimeError::Execution("poisoned".into()))?;
            let input =
                inputs.into_iter().next().ok_or_else(|| RuntimeError::Execution("no input".into()))?;
            let TensorData::Fp32(values) = input.data() else {
                return Err(RuntimeError::Execution("not FP32".into()));
            };
            let doubled = values.iter().map(|v| v * 2.0).collect();
            Tensor::new("y", input.shape().to_vec(), TensorData::Fp32(doubled))
                .map(|t| vec![t])
                .map_err(|e| RuntimeError::Execution(e.to_string()))
        }
    }

    fn spec(name: &str) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            datatype: DataType::Fp32,
            shape: vec![Dim::Dynamic, Dim::Fixed(2)],
            allow_nan: false,
            labels: None,
        }
    }

    fn doubler() -> Arc<Doubler> {
        Arc::new(Doubler {
            signature: ModelSignature { inputs: vec![spec("x")], outputs: vec![spec("y")] },
            gate: Mutex::new(()),
        })
    }

    fn row(values: [f32; 2]) -> Tensor {
        Tensor::new("x", vec![1, 2], TensorData::Fp32(values.to_vec())).unwrap()
    }

    fn id() -> ModelRef {
        ModelRef {
            namespace: "default".parse().unwrap(),
            name: "m".parse().unwrap(),
            version: "1".parse().unwrap(),
        }
    }

    fn dispatcher(timeout: Duration) -> Dispatcher {
        let engine =
            Engine::start(EngineConfig { threads: 1, queue_capacity: 4, inline_below: Duration::ZERO })
                .unwrap();
        Dispatcher::new(engine, timeout)
    }

    #[tokio::test]
    async fn runs_in_process_models_with_and_without_batching() {
        let model = Runnable::InProcess(doubler());
        let dispatcher = dispatcher(Duration::from_secs(5));
        let out = dispatcher
            .dispatch(&id(), &model, model.check(vec![row([1.0, 2.0])]).unwrap(), CallContext::default())
            .await
            .unwrap();
        assert_eq!(out.outputs[0].data(), &TensorData::Fp32(vec![2.0, 4.0]));

        let config = BatchConfig { max_batch_size: 4, max_latency: Duration::from_millis(1), queue_size: 8 };
        dispatcher.batch(id(), &model, config, None).unwrap();
        assert!(dispatcher.batcher(&id()).is_some());
        let out = dispatcher
            .dispatch(&id(), &model, model.check(vec![row([3.0, 4.0])]).unwrap(), CallContext::default())
            .await
            .unwrap();
        assert_eq!(out.outputs[0].data(), &TensorData::Fp32(vec![6.0, 8.0]));
    }

    // The gate is a std mutex on purpose: it blocks the inference thread, not the test task.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test]
    async fn inputs_are_checked_before_anything_runs() {
        let model = doubler();
        // The gate is held: a run would block, so an answer proves nothing ran.
        let _held = model.gate.lock().unwrap();
        let wrong = Tensor::new("x", vec![1, 3], TensorData::Fp32(vec![1.0; 3])).unwrap();
        let refused = Runnable::InProcess(model.clone()).check(vec![wrong]);
        assert!(matches!(refused, Err(RuntimeError::InvalidInput(_))), "{refused:?}");
    }

    // The gate is a std mutex on purpose: it blocks the inference thread, not the test task.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test]
    async fn a_run_past_the_timeout_is_a_timeout() {
        let model = doubler();
        let dispatcher = dispatcher(Duration::from_millis(100));
        let held = model.gate.lock().unwrap();
        let runnable = Runnable::InProcess(model.clone());
        let inputs = runnable.check(vec![row([1.0, 1.0])]).unwrap();
        let result = dispatcher.dispatch(&id(), &runnable, inputs, CallContext::default()).await;
        drop(held);
        assert!(
            matches!(result, Err(RuntimeError::Timeout(t)) if t == Duration::from_millis(100)),
            "{result:?}"
        );
    }
}
