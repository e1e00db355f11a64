//! Palisade's model runtime: prepared models and the inference engine that runs them.
//!
//! A model is prepared once ([`prepare`]) into a [`Runnable`]: an in-process model
//! (`Arc<dyn Model>`, ONNX on tract) or an upstream server's model. Every caller (REST,
//! gRPC, Seldon, and inference graphs) runs it through one [`Dispatcher::dispatch`], which
//! checks the inputs, then sends in-process models to the model's [`Batcher`] or the
//! [`Engine`] and awaits upstream models on the async runtime, all within one timeout.
//! Requests never run a model on the async runtime: [`Engine`] hands each job to a fixed
//! set of inference threads through a bounded queue, and answers [`RuntimeError::Overloaded`]
//! at once when the queue is full.

mod batcher;
mod dispatch;
pub mod egress;
mod engine;
mod inputs;
mod loader;
pub mod onnx;
pub mod onnxruntime;
mod output_size;
pub mod selftest;
pub mod upstream;

use std::path::PathBuf;

use palisade_core::{ModelSignature, Tensor};

pub use batcher::{BatchConfig, BatchObserver, BatchStats, Batcher, check_batchable};
pub use dispatch::{CheckedInputs, Dispatched, Dispatcher, Runnable};
pub use egress::EgressPolicy;
pub use engine::{Engine, EngineConfig, InferenceOutput};
pub use inputs::check_inputs;
pub use loader::{prepare, prepare_onnx, prepare_with};
pub use output_size::{MAX_ROW_BYTES, OutputSize};
pub use upstream::{CallContext, UpstreamContext, UpstreamError, UpstreamModel};

/// A prepared model, shared by all requests. `run` is called on inference threads only.
pub trait Model: Send + Sync + 'static {
    /// The model's inputs and outputs.
    fn signature(&self) -> &ModelSignature;

    /// The framework that runs it, as reported in V2 model metadata (`onnx`).
    fn platform(&self) -> &'static str;

    /// The engine that computes it (`tract`, `onnxruntime`), as reported by
    /// `palisade models show` and in V2 model metadata (`parameters.engine`).
    fn engine(&self) -> &'static str {
        "tract"
    }

    /// Runs the model on inputs already checked by [`check_inputs`] (in signature order).
    /// Returns every output, in signature order.
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RuntimeError>;

    /// The fewest rows a batch is run with (the batcher repeats the last row to get there):
    /// for models that compute a lone row differently from the rows of a batch, so that a
    /// request's result never depends on whether it was batched. 1 for most models.
    fn min_batch_rows(&self) -> usize {
        1
    }

    /// The model's own request body limit in bytes (`limits.maxBodyBytes` in its
    /// manifest), replacing the server's; `None` for the server's.
    fn max_body_bytes(&self) -> Option<usize> {
        None
    }

    /// The model's output shapes as expressions of its input dims, for the memory a
    /// request's outputs take ([`Runnable::output_bytes`]); `None` to work it out from
    /// the signature ([`OutputSize::from_signature`]).
    fn output_size(&self) -> Option<&OutputSize> {
        None
    }
}

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The model file could not be loaded or prepared.
    #[error("cannot load model {}: {message}", path.display())]
    Load {
        /// The model file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The inputs do not fit the model (the caller's fault).
    #[error("{0}")]
    InvalidInput(String),
    /// The inference queue is full; the caller should retry later.
    #[error("the server is overloaded: the inference queue is full")]
    Overloaded,
    /// The engine is shutting down.
    #[error("the inference engine is shutting down")]
    Unavailable,
    /// The model failed while running.
    #[error("model execution failed: {0}")]
    Execution(String),
    /// The upstream server of an upstream model failed, or refused the request.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// Batching cannot be set up for the model as configured.
    #[error("batching cannot be used: {0}")]
    Batching(String),
    /// The inference (queue wait included) did not finish within the dispatcher's timeout.
    #[error("inference did not finish within {0:?}")]
    Timeout(std::time::Duration),
}
