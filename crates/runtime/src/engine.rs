//! The inference engine: dedicated threads fed by one bounded queue.
//!
//! Async handlers call [`Engine::infer`]; the job goes into the queue with a oneshot reply
//! channel and the caller's tracing span. A full queue is refused at once
//! ([`RuntimeError::Overloaded`], HTTP 429) instead of blocking the async runtime. A job whose
//! caller went away before a thread picked it up is skipped.
//!
//! Cheap runs skip the queue: the engine keeps a running estimate of each model's compute
//! time per input element, and a run estimated below [`EngineConfig::inline_below`] runs on
//! the calling task, where a thread hop (two wake-ups) would cost more than the model. A
//! model's first run, and any run estimated above the bound (a large batch), go to the
//! threads.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use palisade_core::Tensor;
use tokio::sync::oneshot;

use crate::{Model, RuntimeError};

/// How many inference threads to run and how many jobs may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Inference threads (default: the number of CPUs).
    pub threads: usize,
    /// Jobs that may wait for a thread before new ones are refused (default 1024).
    pub queue_capacity: usize,
    /// Runs estimated to take less than this run on the calling task instead of a thread
    /// (default 20 µs; zero sends every run to the threads); half of it for a run that
    /// starts alongside others of the same request ([`Engine::infer_alongside`]).
    pub inline_below: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            queue_capacity: 1024,
            inline_below: Duration::from_micros(20),
        }
    }
}

/// A finished job: the outputs and where the time went.
#[derive(Debug)]
pub struct InferenceOutput {
    /// Every model output, in signature order.
    pub outputs: Vec<Tensor>,
    /// Time spent waiting in the queue.
    pub queue_wait: Duration,
    /// Time spent running the model.
    pub compute: Duration,
}

/// Where a finished job's result goes: one caller, or a batch's splitter.
pub(crate) enum Reply {
    /// A single caller, waiting on a oneshot (skipped if it went away).
    Caller(oneshot::Sender<Result<InferenceOutput, RuntimeError>>),
    /// A completion that runs on the inference thread (the batcher splits the outputs).
    Done(Box<dyn FnOnce(Result<InferenceOutput, RuntimeError>) + Send>),
}

pub(crate) struct Job {
    pub(crate) model: Arc<dyn Model>,
    pub(crate) inputs: Vec<Tensor>,
    pub(crate) reply: Reply,
    pub(crate) span: tracing::Span,
    pub(crate) enqueued: Instant,
}

/// Runs models on dedicated threads. Dropping the engine lets queued jobs finish, then
/// stops the threads.
pub struct Engine {
    queue: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
    config: EngineConfig,
    costs: CostTable,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("config", &self.config).finish()
    }
}

impl Engine {
    /// Starts the inference threads.
    pub fn start(config: EngineConfig) -> std::io::Result<Engine> {
        let threads_wanted = config.threads.max(1);
        let (queue, jobs) = bounded::<Job>(config.queue_capacity.max(1));
        let mut threads = Vec::with_capacity(threads_wanted);
        for index in 0..threads_wanted {
            let jobs = jobs.clone();
            let handle = std::thread::Builder::new()
                .name(format!("palisade-infer-{index}"))
                .spawn(move || worker(jobs))?;
            threads.push(handle);
        }
        Ok(Engine { queue: Some(queue), threads, config, costs: CostTable::default() })
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> EngineConfig {
        self.config
    }

    /// Jobs waiting for a thread right now.
    pub fn queue_depth(&self) -> usize {
        self.queue.as_ref().map_or(0, Sender::len)
    }

    /// Runs a model: on the calling task when the run is estimated to be cheaper than
    /// [`EngineConfig::inline_below`], else queued for a thread and awaited without
    /// blocking the async runtime.
    pub async fn infer(
        &self,
        model: Arc<dyn Model>,
        inputs: Vec<Tensor>,
    ) -> Result<InferenceOutput, RuntimeError> {
        self.infer_placed(model, inputs, true).await
    }

    /// Runs a model that starts alongside others of the same request (the children of a
    /// graph node): on an inference thread unless the run is estimated below half of
    /// [`EngineConfig::inline_below`]. Such a run would make its siblings wait for it on the
    /// calling task; below that bound, the thread hand-off (two wake-ups) costs more than
    /// the wait it saves (measured: BENCHMARKS.md, "parallel children").
    pub async fn infer_alongside(
        &self,
        model: Arc<dyn Model>,
        inputs: Vec<Tensor>,
    ) -> Result<InferenceOutput, RuntimeError> {
        self.infer_placed(model, inputs, false).await
    }

    async fn infer_placed(
        &self,
        model: Arc<dyn Model>,
        inputs: Vec<Tensor>,
        may_inline: bool,
    ) -> Result<InferenceOutput, RuntimeError> {
        let queue = self.queue.as_ref().ok_or(RuntimeError::Unavailable)?;
        let key = CostTable::key(&model);
        let elements = inputs.iter().map(|t| t.shape().iter().product::<usize>()).sum::<usize>().max(1);
        let estimate = self.costs.estimate(key, elements);
        let bound = if may_inline { self.config.inline_below } else { self.config.inline_below / 2 };
        let cheap = estimate.is_some_and(|nanos| nanos < bound.as_nanos());
        let output = if cheap {
            let started = Instant::now();
            let outputs = run_guarded(model.as_ref(), inputs)?;
            InferenceOutput { outputs, queue_wait: Duration::ZERO, compute: started.elapsed() }
        } else {
            run_queued(queue, model, inputs).await?
        };
        self.costs.record(key, elements, output.compute);
        Ok(output)
    }

    /// Runs a model on an inference thread, whatever its cost (explanations: never on the
    /// calling task), awaited without blocking the async runtime; a full queue is refused
    /// at once.
    pub async fn infer_on_thread(
        &self,
        model: Arc<dyn Model>,
        inputs: Vec<Tensor>,
    ) -> Result<InferenceOutput, RuntimeError> {
        let queue = self.queue.as_ref().ok_or(RuntimeError::Unavailable)?;
        run_queued(queue, model, inputs).await
    }

    /// The queue, for batchers that feed it.
    pub(crate) fn queue(&self) -> Option<Sender<Job>> {
        self.queue.clone()
    }
}

/// Queues a run for an inference thread and awaits its answer without blocking the async
/// runtime; a full queue is refused at once.
async fn run_queued(
    queue: &Sender<Job>,
    model: Arc<dyn Model>,
    inputs: Vec<Tensor>,
) -> Result<InferenceOutput, RuntimeError> {
    let (reply, result) = oneshot::channel();
    let job = Job {
        model,
        inputs,
        reply: Reply::Caller(reply),
        span: tracing::Span::current(),
        enqueued: Instant::now(),
    };
    submit(queue, job)?;
    result.await.map_err(|_| RuntimeError::Unavailable)?
}

/// Queues a job, refusing at once when the queue is full. A refused job's completion
/// (batches) is told why before this returns.
pub(crate) fn submit(queue: &Sender<Job>, job: Job) -> Result<(), RuntimeError> {
    let (job, why) = match queue.try_send(job) {
        Ok(()) => return Ok(()),
        Err(TrySendError::Full(job)) => (job, RuntimeError::Overloaded),
        Err(TrySendError::Disconnected(job)) => (job, RuntimeError::Unavailable),
    };
    if let Reply::Done(done) = job.reply {
        done(Err(match why {
            RuntimeError::Overloaded => RuntimeError::Overloaded,
            _ => RuntimeError::Unavailable,
        }));
    }
    Err(why)
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.queue.take();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Running estimates of each model's compute time per input element, keyed by the
/// model's address (a reloaded model starts over; the table is cleared when it grows past
/// [`CostTable::MAX_MODELS`], so addresses of dropped models cannot pile up).
#[derive(Default)]
struct CostTable {
    nanos_per_element: Mutex<HashMap<usize, u64>>,
}

impl CostTable {
    const MAX_MODELS: usize = 4096;

    fn key(model: &Arc<dyn Model>) -> usize {
        Arc::as_ptr(model).cast::<()>() as usize
    }

    /// The estimated nanoseconds of a run over `elements` input elements; `None` until
    /// the model has run once.
    fn estimate(&self, key: usize, elements: usize) -> Option<u128> {
        let table = self.nanos_per_element.lock().unwrap_or_else(|e| e.into_inner());
        table.get(&key).map(|&per| u128::from(per) * elements as u128)
    }

    /// Folds one run into the model's estimate (an exponential moving average, 1/8 weight).
    fn record(&self, key: usize, elements: usize, took: Duration) {
        let per = u64::try_from(took.as_nanos() / elements as u128).unwrap_or(u64::MAX).max(1);
        let mut table = self.nanos_per_element.lock().unwrap_or_else(|e| e.into_inner());
        if table.len() >= Self::MAX_MODELS && !table.contains_key(&key) {
            table.clear();
        }
        table.entry(key).and_modify(|old| *old = *old - *old / 8 + per / 8).or_insert(per);
    }
}

/// Runs a model, turning a panic into an error.
fn run_guarded(model: &dyn Model, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RuntimeError> {
    catch_unwind(AssertUnwindSafe(|| model.run(inputs)))
        .unwrap_or_else(|_| Err(RuntimeError::Execution("the model panicked".to_owned())))
}

fn worker(jobs: Receiver<Job>) {
    while let Ok(job) = jobs.recv() {
        if let Reply::Caller(reply) = &job.reply
            && reply.is_closed()
        {
            continue;
        }
        let _entered = job.span.enter();
        let queue_wait = job.enqueued.elapsed();
        let started = Instant::now();
        // A panicking model must not take the thread down with it.
        let result = run_guarded(job.model.as_ref(), job.inputs);
        let compute = started.elapsed();
        let result = result.map(|outputs| InferenceOutput { outputs, queue_wait, compute });
        match job.reply {
            Reply::Caller(reply) => {
                let _ = reply.send(result);
            }
            Reply::Done(done) => done(result),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use palisade_core::{ModelSignature, TensorData};

    use super::*;

    /// Echoes its input, after waiting on a gate the test controls.
    struct Gated {
        signature: ModelSignature,
        gate: Mutex<()>,
        runs: AtomicUsize,
    }

    impl Model for Gated {
        fn signature(&self) -> &ModelSignature {
            &self.signature
        }
        fn platform(&self) -> &'static str {
            "test"
        }
        fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RuntimeError> {
            if inputs.is_empty() {
                panic!("no inputs");
            }
            let _held = self.gate.lock().map_err(|_| RuntimeError::Execution("poisoned".into()))?;
            self.runs.fetch_add(1, Ordering::SeqCst);
            Ok(inputs)
        }
    }

    fn tensor() -> Tensor {
        Tensor::new("x", vec![1], TensorData::Fp32(vec![1.0])).unwrap()
    }

    fn gated() -> Arc<Gated> {
        Arc::new(Gated {
            signature: ModelSignature::default(),
            gate: Mutex::new(()),
            runs: AtomicUsize::new(0),
        })
    }

    #[tokio::test]
    async fn runs_jobs() {
        let engine =
            Engine::start(EngineConfig { threads: 2, queue_capacity: 4, ..EngineConfig::default() }).unwrap();
        let out = engine.infer(gated(), vec![tensor()]).await.unwrap();
        assert_eq!(out.outputs, vec![tensor()]);
    }

    // The gate is a std mutex on purpose: it blocks the inference thread, not the test task.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test]
    async fn full_queue_is_refused_at_once() {
        let engine = Arc::new(
            Engine::start(EngineConfig { threads: 1, queue_capacity: 2, inline_below: Duration::ZERO })
                .unwrap(),
        );
        let model = gated();
        let held = model.gate.lock().unwrap();
        let mut pending = Vec::new();
        // One job occupies the thread; two fill the queue.
        for _ in 0..3 {
            let (engine, model) = (engine.clone(), model.clone());
            pending.push(tokio::spawn(async move { engine.infer(model, vec![tensor()]).await }));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let refused = engine.infer(model.clone(), vec![tensor()]).await;
        assert!(matches!(refused, Err(RuntimeError::Overloaded)), "{refused:?}");
        drop(held);
        for job in pending {
            assert!(job.await.unwrap().is_ok());
        }
        assert_eq!(model.runs.load(Ordering::SeqCst), 3);
    }

    /// Echoes its input and notes the name of the thread it ran on.
    struct WhereRan {
        signature: ModelSignature,
        threads: Mutex<Vec<String>>,
    }

    impl Model for WhereRan {
        fn signature(&self) -> &ModelSignature {
            &self.signature
        }
        fn platform(&self) -> &'static str {
            "test"
        }
        fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RuntimeError> {
            let name = std::thread::current().name().unwrap_or("").to_owned();
            self.threads.lock().unwrap().push(name);
            if inputs.is_empty() {
                panic!("no inputs");
            }
            Ok(inputs)
        }
    }

    fn on_pool(name: &str) -> bool {
        name.starts_with("palisade-infer-")
    }

    /// An engine whose inline bound is far above a trivial run even on a loaded machine
    /// (so these tests do not depend on how busy the CPU is), and far below a million
    /// elements at the same per-element cost.
    fn roomy_engine() -> Engine {
        Engine::start(EngineConfig { threads: 1, queue_capacity: 2, inline_below: Duration::from_millis(5) })
            .unwrap()
    }

    #[tokio::test]
    async fn cheap_runs_skip_the_queue_and_large_ones_do_not() {
        let engine = roomy_engine();
        let model =
            Arc::new(WhereRan { signature: ModelSignature::default(), threads: Mutex::new(Vec::new()) });
        for _ in 0..3 {
            engine.infer(model.clone(), vec![tensor()]).await.unwrap();
        }
        // A million elements at even 1 ns each are estimated far above 20 µs.
        let large = Tensor::new("x", vec![1_000_000], TensorData::Fp32(vec![0.5; 1_000_000])).unwrap();
        let out = engine.infer(model.clone(), vec![large.clone()]).await.unwrap();
        assert_eq!(out.outputs, vec![large]);
        let threads = model.threads.lock().unwrap().clone();
        assert!(on_pool(&threads[0]), "the first run measures the model on a thread: {threads:?}");
        assert!(!on_pool(&threads[1]) && !on_pool(&threads[2]), "cheap runs stay on the task: {threads:?}");
        assert!(on_pool(&threads[3]), "a large run goes to a thread: {threads:?}");
    }

    /// Sleeps 12 ms, then echoes its input, noting the thread it ran on.
    struct Sleepy(WhereRan);

    impl Model for Sleepy {
        fn signature(&self) -> &ModelSignature {
            self.0.signature()
        }
        fn platform(&self) -> &'static str {
            "test"
        }
        fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RuntimeError> {
            std::thread::sleep(Duration::from_millis(12));
            self.0.run(inputs)
        }
    }

    #[tokio::test]
    async fn runs_alongside_others_go_to_a_thread_unless_trivially_cheap() {
        // Bound 20 ms: a 12 ms run alone stays on the task; alongside others (half the
        // bound, 10 ms) it goes to a thread. A trivial run stays on the task either way.
        let engine = Engine::start(EngineConfig {
            threads: 1,
            queue_capacity: 2,
            inline_below: Duration::from_millis(20),
        })
        .unwrap();
        let sleepy = Arc::new(Sleepy(WhereRan {
            signature: ModelSignature::default(),
            threads: Mutex::new(Vec::new()),
        }));
        for _ in 0..2 {
            engine.infer(sleepy.clone(), vec![tensor()]).await.unwrap();
        }
        let out = engine.infer_alongside(sleepy.clone(), vec![tensor()]).await.unwrap();
        assert_eq!(out.outputs, vec![tensor()]);
        engine.infer(sleepy.clone(), vec![tensor()]).await.unwrap();
        let threads = sleepy.0.threads.lock().unwrap().clone();
        assert!(!on_pool(&threads[1]), "a run under the bound alone stays on the task: {threads:?}");
        assert!(on_pool(&threads[2]), "alongside others it goes to a thread: {threads:?}");
        assert!(!on_pool(&threads[3]), "and the next one alone stays on the task again: {threads:?}");

        let trivial =
            Arc::new(WhereRan { signature: ModelSignature::default(), threads: Mutex::new(Vec::new()) });
        engine.infer(trivial.clone(), vec![tensor()]).await.unwrap();
        engine.infer_alongside(trivial.clone(), vec![tensor()]).await.unwrap();
        let threads = trivial.threads.lock().unwrap().clone();
        assert!(!on_pool(&threads[1]), "a trivial run alongside others stays on the task: {threads:?}");
    }

    #[tokio::test]
    async fn inline_panics_become_errors() {
        let engine = roomy_engine();
        let model =
            Arc::new(WhereRan { signature: ModelSignature::default(), threads: Mutex::new(Vec::new()) });
        engine.infer(model.clone(), vec![tensor()]).await.unwrap();
        let err = engine.infer(model.clone(), vec![]).await.unwrap_err();
        assert!(matches!(err, RuntimeError::Execution(_)), "{err:?}");
        assert!(!on_pool(&model.threads.lock().unwrap()[1]), "the panic happened on the task");
        assert!(engine.infer(model, vec![tensor()]).await.is_ok());
    }

    #[tokio::test]
    async fn panics_become_errors_and_the_thread_survives() {
        let engine =
            Engine::start(EngineConfig { threads: 1, queue_capacity: 2, inline_below: Duration::ZERO })
                .unwrap();
        let model = gated();
        let err = engine.infer(model.clone(), vec![]).await.unwrap_err();
        assert!(matches!(err, RuntimeError::Execution(_)), "{err:?}");
        assert!(engine.infer(model, vec![tensor()]).await.is_ok());
    }
}
