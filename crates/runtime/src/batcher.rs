//! Adaptive batching: requests for one model that arrive together run as one batch.
//!
//! Like BentoML's `batch=True` and Triton's dynamic batcher. Each batched model has a
//! bounded queue (full: [`RuntimeError::Overloaded`], HTTP 429) and a thread that forms
//! batches: it takes the oldest request and every request already queued behind it. If
//! fewer of this model's batches are running than the engine has threads, the batch goes
//! at once: a request never waits for company while a thread is free for it. Only while
//! every thread is busy with this model does the batch keep taking requests, until it
//! holds `max_batch_size` rows, a running batch finishes, or the oldest request has waited
//! `max_latency`. The batch's inputs are stacked along the first dimension, run as one job
//! on the [`Engine`], and the outputs are split back by rows.
//!
//! Results are bit-identical to the same request run alone: every operator Palisade runs
//! computes a row from that row alone, in the same order wherever the row sits (see
//! [`Model::min_batch_rows`] for the one exception, linear models' one-row arithmetic,
//! which the batcher avoids by padding a lone row to two).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError, bounded, select};
use palisade_core::{Dim, ModelSignature, Tensor};
use tokio::sync::oneshot;

use crate::engine::{Job, Reply, submit};
use crate::{Engine, InferenceOutput, Model, RuntimeError};

/// How a model's requests are batched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Most rows in one batch; a larger request runs alone.
    pub max_batch_size: usize,
    /// Longest the oldest request of a batch waits for others, which it does only while
    /// every engine thread is running one of this model's batches.
    pub max_latency: Duration,
    /// Requests that may wait for a batch before new ones are refused.
    pub queue_size: usize,
}

/// One batch, as the batcher ran it (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchStats {
    /// Requests in the batch.
    pub requests: usize,
    /// Their rows.
    pub rows: usize,
    /// Rows added to reach the model's [`Model::min_batch_rows`] (dropped from outputs).
    pub padding_rows: usize,
}

/// Called once per batch, on the batcher's thread.
pub type BatchObserver = Arc<dyn Fn(&BatchStats) + Send + Sync>;

type ReplyTo = oneshot::Sender<Result<InferenceOutput, RuntimeError>>;

struct Pending {
    inputs: Vec<Tensor>,
    rows: usize,
    reply: ReplyTo,
    enqueued: Instant,
    span: tracing::Span,
}

/// A model's batcher. Dropping it lets the queued requests run, then stops its thread;
/// drop it before the [`Engine`] it feeds.
pub struct Batcher {
    queue: Option<Sender<Pending>>,
    thread: Option<JoinHandle<()>>,
    config: BatchConfig,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").field("config", &self.config).finish()
    }
}

impl Batcher {
    /// Starts batching `model`'s requests onto `engine`. Every input must have a dynamic
    /// first dimension (the batch dimension).
    pub fn start(
        engine: &Engine,
        model: Arc<dyn Model>,
        config: BatchConfig,
        observer: Option<BatchObserver>,
    ) -> Result<Batcher, RuntimeError> {
        if config.max_batch_size == 0 || config.queue_size == 0 {
            return Err(RuntimeError::Batching(
                "max_batch_size and queue_size must be at least 1".to_owned(),
            ));
        }
        check_batchable(model.signature())?;
        let engine_queue = engine.queue().ok_or(RuntimeError::Unavailable)?;
        let threads = engine.config().threads.max(1);
        let (queue, pending) = bounded::<Pending>(config.queue_size);
        let thread = std::thread::Builder::new()
            .name("palisade-batch".to_owned())
            .spawn(move || {
                let target = Target { engine: engine_queue, model, observer, running: Running::new(threads) };
                batch_loop(&pending, &target, config);
            })
            .map_err(|e| RuntimeError::Batching(format!("cannot start the batching thread: {e}")))?;
        Ok(Batcher { queue: Some(queue), thread: Some(thread), config })
    }

    /// The configuration.
    pub fn config(&self) -> BatchConfig {
        self.config
    }

    /// Requests waiting for a batch right now.
    pub fn queue_depth(&self) -> usize {
        self.queue.as_ref().map_or(0, Sender::len)
    }

    /// Queues a request (inputs already checked by [`crate::check_inputs`]) and waits for
    /// its share of its batch's outputs. `queue_wait` covers the wait for the batch and for
    /// an inference thread.
    pub async fn infer(&self, inputs: Vec<Tensor>) -> Result<InferenceOutput, RuntimeError> {
        let rows = inputs.first().map_or(0, Tensor::rows);
        if let Some(other) = inputs.iter().find(|t| t.shape().is_empty() || t.rows() != rows) {
            return Err(RuntimeError::InvalidInput(format!(
                "input `{}` has shape {:?}: every input of a batched model needs the same first dimension ({rows})",
                other.name(),
                other.shape()
            )));
        }
        let queue = self.queue.as_ref().ok_or(RuntimeError::Unavailable)?;
        let (reply, result) = oneshot::channel();
        let pending =
            Pending { inputs, rows, reply, enqueued: Instant::now(), span: tracing::Span::current() };
        match queue.try_send(pending) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(RuntimeError::Overloaded),
            Err(TrySendError::Disconnected(_)) => return Err(RuntimeError::Unavailable),
        }
        result.await.map_err(|_| RuntimeError::Unavailable)?
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Whether a model with this signature can be batched: every input and output needs a
/// dynamic first dimension, the batch dimension.
pub fn check_batchable(signature: &ModelSignature) -> Result<(), RuntimeError> {
    if signature.inputs.is_empty() {
        return Err(RuntimeError::Batching("the model has no inputs to batch".to_owned()));
    }
    for spec in signature.inputs.iter().chain(&signature.outputs) {
        if spec.shape.first() != Some(&Dim::Dynamic) {
            return Err(RuntimeError::Batching(format!(
                "`{}` has shape {:?}: batching needs a dynamic first dimension (-1) on every input and output",
                spec.name,
                spec.shape_i64()
            )));
        }
    }
    Ok(())
}

/// Where a batcher's batches go, and how many of them are running.
#[derive(Clone)]
struct Target {
    engine: Sender<Job>,
    model: Arc<dyn Model>,
    observer: Option<BatchObserver>,
    running: Running,
}

/// The batches (or lone requests) of one batcher queued or running on the engine, and a
/// signal each sends when it finishes.
#[derive(Clone)]
struct Running {
    count: Arc<AtomicUsize>,
    limit: usize,
    finished_tx: Sender<()>,
    finished: Receiver<()>,
}

impl Running {
    fn new(limit: usize) -> Running {
        let (finished_tx, finished) = bounded(1);
        Running { count: Arc::new(AtomicUsize::new(0)), limit, finished_tx, finished }
    }

    /// Whether a thread is free for another batch.
    fn has_room(&self) -> bool {
        self.count.load(Ordering::Acquire) < self.limit
    }

    /// Counts a job as running until its completion has run.
    fn track(
        &self,
        done: Box<dyn FnOnce(Result<InferenceOutput, RuntimeError>) + Send>,
    ) -> Box<dyn FnOnce(Result<InferenceOutput, RuntimeError>) + Send> {
        self.count.fetch_add(1, Ordering::AcqRel);
        let (count, finished) = (Arc::clone(&self.count), self.finished_tx.clone());
        Box::new(move |result| {
            done(result);
            count.fetch_sub(1, Ordering::AcqRel);
            // A full signal channel already says "something finished".
            let _ = finished.try_send(());
        })
    }
}

fn batch_loop(pending: &Receiver<Pending>, target: &Target, config: BatchConfig) {
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(request) => request,
            None => match pending.recv() {
                Ok(request) => request,
                Err(_) => return,
            },
        };
        if first.reply.is_closed() {
            continue;
        }
        let deadline = first.enqueued + config.max_latency;
        let mut rows = first.rows;
        let mut batch = vec![first];
        while rows < config.max_batch_size {
            let next = match pending.try_recv() {
                Ok(request) => Some(request),
                Err(TryRecvError::Disconnected) => break,
                // Nothing else is queued: a free thread takes the batch now.
                Err(TryRecvError::Empty) if target.running.has_room() => break,
                // Every thread runs this model: gather until one finishes or time is up.
                Err(TryRecvError::Empty) => select! {
                    recv(pending) -> request => match request {
                        Ok(request) => Some(request),
                        Err(_) => break,
                    },
                    recv(target.running.finished) -> _ => None,
                    default(deadline.saturating_duration_since(Instant::now())) => break,
                },
            };
            let Some(request) = next else { continue };
            if request.reply.is_closed() {
                continue;
            }
            if rows + request.rows > config.max_batch_size {
                carried = Some(request);
                break;
            }
            rows += request.rows;
            batch.push(request);
        }
        run_batch(batch, target);
    }
}

/// Stacks a batch, queues it on the engine, and splits the result back to its requests.
fn run_batch(batch: Vec<Pending>, target: &Target) {
    let (engine, model) = (&target.engine, &target.model);
    let min_rows = model.min_batch_rows().max(1);
    let formed = Instant::now();
    let counts: Vec<usize> = batch.iter().map(|p| p.rows).collect();
    let rows: usize = counts.iter().sum();
    let padded = if rows > 0 { rows.max(min_rows) } else { 0 };
    let span = batch.first().map_or_else(tracing::Span::none, |p| p.span.clone());
    let inputs_per_request = batch.first().map_or(0, |p| p.inputs.len());
    let mut columns: Vec<Vec<Tensor>> =
        (0..inputs_per_request).map(|_| Vec::with_capacity(batch.len())).collect();
    let mut replies = Vec::with_capacity(batch.len());
    for request in batch {
        let waited = formed.saturating_duration_since(request.enqueued);
        for (column, tensor) in columns.iter_mut().zip(request.inputs.iter().cloned()) {
            column.push(tensor);
        }
        replies.push((request.reply, waited, request.rows, request.inputs, request.span));
    }
    let stacked: Result<Vec<Tensor>, _> = columns.iter().map(|c| Tensor::stack_rows(c, padded)).collect();
    let Ok(stacked) = stacked else {
        // Requests whose other dimensions differ cannot share a batch: run each alone.
        for (reply, waited, _, inputs, span) in replies {
            run_alone(target, Alone { reply, waited, inputs, span });
        }
        return;
    };
    if let Some(observe) = &target.observer {
        observe(&BatchStats { requests: replies.len(), rows, padding_rows: padded - rows });
    }
    // Each request keeps its inputs until the batch is done, to run alone if the model
    // refuses a value of one of them (`split`).
    let requests: Vec<Alone> = replies
        .into_iter()
        .map(|(reply, waited, _, inputs, span)| Alone { reply, waited, inputs, span })
        .collect();
    let retry = target.clone();
    let done = target.running.track(Box::new(move |result: Result<InferenceOutput, RuntimeError>| {
        split(result, &counts, requests, &retry)
    }));
    let job = Job {
        model: model.clone(),
        inputs: stacked,
        reply: Reply::Done(done),
        span,
        enqueued: Instant::now(),
    };
    if let Err(err) = submit(engine, job) {
        // The job (and its completion) came back inside the error: answer every request.
        tracing::debug!(error = %err, "batch refused by the engine");
    }
}

/// A request of a batch that runs on its own.
struct Alone {
    reply: ReplyTo,
    waited: Duration,
    inputs: Vec<Tensor>,
    span: tracing::Span,
}

/// Queues one request on the engine by itself.
fn run_alone(target: &Target, request: Alone) {
    let Alone { reply, waited, inputs, span } = request;
    let done = target.running.track(Box::new(move |result: Result<InferenceOutput, RuntimeError>| {
        let _ = reply.send(result.map(|mut out| {
            out.queue_wait += waited;
            out
        }));
    }));
    let job =
        Job { model: target.model.clone(), inputs, reply: Reply::Done(done), span, enqueued: Instant::now() };
    if let Err(err) = submit(&target.engine, job) {
        tracing::warn!(error = %err, "batched request refused by the engine");
    }
}

/// Hands each request its rows of every output, or the batch's error. When the model
/// refused a value of one request ([`RuntimeError::InputRefused`]), each request of a batch
/// of several runs again alone: the others get their answers, and only the request that
/// carried the value hears about it.
fn split(
    result: Result<InferenceOutput, RuntimeError>,
    counts: &[usize],
    requests: Vec<Alone>,
    target: &Target,
) {
    let output = match result {
        Ok(output) => output,
        Err(RuntimeError::InputRefused(_)) if requests.len() > 1 => {
            for request in requests {
                run_alone(target, request);
            }
            return;
        }
        Err(err) => {
            let message = err.to_string();
            for request in requests {
                let _ = request.reply.send(Err(same_error(&err, &message)));
            }
            return;
        }
    };
    let mut per_request: Vec<Vec<Tensor>> = (0..counts.len()).map(|_| Vec::new()).collect();
    for tensor in &output.outputs {
        match tensor.split_rows(counts) {
            Ok(parts) => {
                for (outputs, part) in per_request.iter_mut().zip(parts) {
                    outputs.push(part);
                }
            }
            Err(err) => {
                let message = format!(
                    "cannot split the batch's outputs back ({err}); turn batching off for this model"
                );
                for request in requests {
                    let _ = request.reply.send(Err(RuntimeError::Execution(message.clone())));
                }
                return;
            }
        }
    }
    for (request, outputs) in requests.into_iter().zip(per_request) {
        let _ = request.reply.send(Ok(InferenceOutput {
            outputs,
            queue_wait: request.waited + output.queue_wait,
            compute: output.compute,
        }));
    }
}

/// The batch's error, for each of its requests.
fn same_error(err: &RuntimeError, message: &str) -> RuntimeError {
    match err {
        RuntimeError::Overloaded => RuntimeError::Overloaded,
        RuntimeError::Unavailable => RuntimeError::Unavailable,
        RuntimeError::InvalidInput(m) => RuntimeError::InvalidInput(m.clone()),
        RuntimeError::InputRefused(m) => RuntimeError::InputRefused(m.clone()),
        _ => RuntimeError::Execution(message.to_owned()),
    }
}
