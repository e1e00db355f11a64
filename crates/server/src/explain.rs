//! Explanations: `POST /v2/models/NAME[/versions/V]/explain` and KServe's
//! `/v1/models/NAME:explain`, for a model whose bundle has an `explainer:` (see
//! docs/explain.md).
//!
//! The request context resolved the route and the model; authorization judged the
//! request on its own path (`.../explain`, never `.../infer`), and audit records it like a
//! prediction. The explanation is computed on an inference thread, never on the async
//! runtime: the engine runs an [`ExplainRun`] as it runs a model, and that run calls the
//! model directly on the same thread (the served prediction, and for KernelSHAP the one
//! batch of every coalition), so explaining never waits on the engine's own queue.

use std::path::Path;
use std::sync::Arc;

use palisade_bundle::explainer::{self, ExplainerRecord};
use palisade_bundle::manifest::ExplainerKind;
use palisade_core::{DataType, ModelSignature, Tensor, TensorData};
use palisade_explain::{Covers, Explanation, KernelShap, KernelShapOptions, TreeEnsemble, TreeShap};
use palisade_runtime::onnx::ops::{FoundEnsemble, Preprocessing, find_ensemble};
use palisade_runtime::{Model, RuntimeError};
use serde_json::{Value, json};

/// A model version's explainer, loaded once with the model (immutable, shared).
pub struct Explainer {
    kind: ExplainerKind,
    features: Vec<String>,
    method: Method,
}

enum Method {
    Tree {
        shap: Box<TreeShap>,
        /// The per-feature steps before the trees, applied to the rows first.
        preprocessing: Preprocessing,
    },
    Kernel {
        shap: KernelShap,
        /// The explained output's index in the signature.
        output: usize,
        /// Its columns (1 for a regressor).
        width: usize,
    },
}

impl std::fmt::Debug for Explainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Explainer").field("kind", &self.kind).field("features", &self.features.len()).finish()
    }
}

/// Most synthetic feature values one KernelSHAP request may run the model on (rows ×
/// coalitions × background rows × features): 16 Mi values, 64 MiB of `f32`.
pub const MAX_KERNEL_BATCH_VALUES: usize = 1 << 24;

/// Most rows one explanation request may hold: an explanation costs far more than a
/// prediction (TreeSHAP walks every tree's paths, KernelSHAP runs the model on every
/// coalition), and holds an inference thread while it runs.
pub const MAX_EXPLAIN_ROWS: usize = 1000;

impl Explainer {
    /// Rebuilds the explainer `palisade build` recorded, against the bundle's model file
    /// (TreeSHAP's covers must belong to its trees) and signature.
    pub fn load(
        record: &ExplainerRecord,
        model_path: &Path,
        signature: &ModelSignature,
    ) -> Result<Explainer, String> {
        let n_features = record.features().len();
        let method = match record {
            ExplainerRecord::TreeShap { covers, .. } => {
                let bytes =
                    std::fs::read(model_path).map_err(|e| format!("cannot read the model file: {e}"))?;
                let found = find_ensemble(&bytes)?;
                let ensemble = match found.ensemble {
                    FoundEnsemble::Classifier(model) => TreeEnsemble::from_classifier(&model),
                    FoundEnsemble::Regressor(model) => TreeEnsemble::from_regressor(&model),
                }
                .map_err(|e| e.to_string())?;
                let covers = Covers::from_counts(&ensemble, covers.clone()).map_err(|e| e.to_string())?;
                let shap = Box::new(TreeShap::new(ensemble, &covers).map_err(|e| e.to_string())?);
                Method::Tree { shap, preprocessing: found.preprocessing }
            }
            ExplainerRecord::KernelShap { rows, .. } => {
                let (output, width) = explainer::explained_output(signature)?;
                let options =
                    KernelShapOptions { max_batch_values: MAX_KERNEL_BATCH_VALUES, ..Default::default() };
                let n_rows = rows.len().checked_div(n_features).unwrap_or(0);
                let shap =
                    KernelShap::new(rows.clone(), n_rows, n_features, options).map_err(|e| e.to_string())?;
                Method::Kernel { shap, output, width }
            }
        };
        let kind = match record {
            ExplainerRecord::TreeShap { .. } => ExplainerKind::TreeShap,
            ExplainerRecord::KernelShap { .. } => ExplainerKind::KernelShap,
        };
        Ok(Explainer { kind, features: record.features().to_vec(), method })
    }

    /// `TreeShap` or `KernelShap`.
    pub fn kind(&self) -> ExplainerKind {
        self.kind
    }

    /// Explains the checked inputs (in signature order) with `model`, on the calling
    /// (inference) thread: the model's own outputs, then the explanation.
    fn compute(
        &self,
        model: &dyn Model,
        inputs: Vec<Tensor>,
    ) -> Result<(Vec<Tensor>, Explanation, bool), RuntimeError> {
        let [input] = &inputs[..] else {
            return Err(RuntimeError::InvalidInput(
                "an explanation takes one input tensor of features".to_owned(),
            ));
        };
        let (name, datatype) = (input.name().to_owned(), input.datatype());
        let m = self.features.len();
        let (n_rows, rows) = match input.shape() {
            [n, width] if *width == m => (*n, features_f32(input.data())?),
            shape => {
                return Err(RuntimeError::InvalidInput(format!(
                    "input `{name}` has shape {shape:?}; explanations take rows of {m} features ([N, {m}])"
                )));
            }
        };
        let prediction = model.run(inputs)?;
        let invalid =
            |e: palisade_explain::ExplainError| RuntimeError::InvalidInput(format!("cannot explain: {e}"));
        match &self.method {
            Method::Tree { shap, preprocessing } => {
                let mut rows = rows;
                preprocessing
                    .apply(&mut rows, m)
                    .map_err(|e| RuntimeError::InvalidInput(format!("cannot explain: {e}")))?;
                Ok((prediction, shap.explain(&rows, n_rows, m).map_err(invalid)?, true))
            }
            Method::Kernel { shap, output, width } => {
                let run = |batch: &[f32], n: usize| -> Result<Vec<f64>, RuntimeError> {
                    let tensor = Tensor::new(name.clone(), vec![n, m], typed(batch, datatype))
                        .map_err(|e| RuntimeError::Execution(e.to_string()))?;
                    let outputs = model.run(vec![tensor])?;
                    let out = outputs.get(*output).ok_or_else(|| {
                        RuntimeError::Execution("the explained output is missing".to_owned())
                    })?;
                    let values = values_f64(out.data())?;
                    if values.len() != n * width {
                        return Err(RuntimeError::Execution(format!(
                            "the explained output has {} values for {n} rows of {width}",
                            values.len()
                        )));
                    }
                    Ok(values)
                };
                let explained = shap.explain(&rows, n_rows, run).map_err(|e| match e {
                    palisade_explain::ExplainError::Model(message) => RuntimeError::Execution(message),
                    other => invalid(other),
                })?;
                Ok((prediction, explained.explanation, explained.exact))
            }
        }
    }
}

/// The rows of an input as `f32` (how onnx-ml's trees read them).
fn features_f32(data: &TensorData) -> Result<Vec<f32>, RuntimeError> {
    Ok(match data {
        TensorData::Fp32(v) => v.clone(),
        TensorData::Fp64(v) => v.iter().map(|&x| x as f32).collect(),
        TensorData::Int32(v) => v.iter().map(|&x| x as f32).collect(),
        TensorData::Int64(v) => v.iter().map(|&x| x as f32).collect(),
        _ => {
            return Err(RuntimeError::InvalidInput(
                "explanations take FP32, FP64, INT32 or INT64 features".to_owned(),
            ));
        }
    })
}

/// Synthetic rows in the input's datatype (integer inputs get integral background and
/// request values, checked at build and by the input check).
fn typed(batch: &[f32], datatype: DataType) -> TensorData {
    match datatype {
        DataType::Fp64 => TensorData::Fp64(batch.iter().map(|&x| f64::from(x)).collect()),
        DataType::Int32 => TensorData::Int32(batch.iter().map(|&x| x as i32).collect()),
        DataType::Int64 => TensorData::Int64(batch.iter().map(|&x| x as i64).collect()),
        _ => TensorData::Fp32(batch.to_vec()),
    }
}

fn values_f64(data: &TensorData) -> Result<Vec<f64>, RuntimeError> {
    match data {
        TensorData::Fp32(v) => Ok(v.iter().map(|&x| f64::from(x)).collect()),
        TensorData::Fp64(v) => Ok(v.clone()),
        _ => Err(RuntimeError::Execution("the explained output is not FP32 or FP64".to_owned())),
    }
}

/// An explanation as a job for the engine's threads: its outputs are `shap_values`
/// (`[outputs, rows, features]`), `expected_value`, `raw_prediction` (`[rows, outputs]`,
/// what the values explain), `exact`, then the model's own outputs.
pub(crate) struct ExplainRun {
    pub(crate) model: Arc<dyn Model>,
    pub(crate) explainer: Arc<Explainer>,
}

impl Model for ExplainRun {
    fn signature(&self) -> &ModelSignature {
        self.model.signature()
    }

    fn platform(&self) -> &'static str {
        self.model.platform()
    }

    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RuntimeError> {
        let (prediction, e, exact) = self.explainer.compute(self.model.as_ref(), inputs)?;
        let tensor = |name: &str, shape: Vec<usize>, data: TensorData| {
            Tensor::new(name, shape, data).map_err(|err| RuntimeError::Execution(err.to_string()))
        };
        let mut out = vec![
            tensor(
                "shap_values",
                vec![e.n_outputs, e.n_rows, e.n_features],
                TensorData::Fp64(e.shap_values),
            )?,
            tensor("expected_value", vec![e.n_outputs], TensorData::Fp64(e.expected_value))?,
            tensor("raw_prediction", vec![e.n_rows, e.n_outputs], TensorData::Fp64(e.margins))?,
            tensor("exact", vec![1], TensorData::Bool(vec![exact]))?,
        ];
        out.extend(prediction);
        Ok(out)
    }
}

/// Alibi's `Explanation` JSON of an [`ExplainRun`]'s outputs.
pub(crate) fn alibi_json(
    explainer: &Explainer,
    model_name: &str,
    version: &str,
    outputs: &[Tensor],
) -> Result<Value, String> {
    let [shap, expected, raw, exact, prediction @ ..] = outputs else {
        return Err("the explanation is incomplete".to_owned());
    };
    let (TensorData::Fp64(values), [n_outputs, n_rows, n_features]) = (shap.data(), shap.shape()) else {
        return Err("the explanation's values are malformed".to_owned());
    };
    let number = |x: f64| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number);
    let shap_values: Vec<Value> = (0..*n_outputs)
        .map(|o| {
            Value::Array(
                (0..*n_rows)
                    .map(|r| {
                        let start = (o * n_rows + r) * n_features;
                        Value::Array(values[start..start + n_features].iter().map(|&x| number(x)).collect())
                    })
                    .collect(),
            )
        })
        .collect();
    let exact = matches!(exact.data(), TensorData::Bool(v) if v.first() == Some(&true));
    let (name, whitebox) = match explainer.kind {
        ExplainerKind::TreeShap => ("TreeShap", true),
        ExplainerKind::KernelShap => ("KernelShap", false),
    };
    let served = prediction.first().map_or(Value::Null, palisade_protocol::kserve_v1::tensor_value);
    Ok(json!({
        "meta": {
            "name": name,
            "type": [if whitebox { "whitebox" } else { "blackbox" }],
            "explanations": ["local"],
            "params": {
                "model_output": if whitebox { "raw" } else { "probability" },
                "feature_perturbation": if whitebox { "tree_path_dependent" } else { "interventional" },
                "exact": exact,
            },
            "model": {"name": model_name, "version": version},
        },
        "data": {
            "shap_values": shap_values,
            "expected_value": palisade_protocol::kserve_v1::tensor_value(expected),
            "link": "identity",
            "feature_names": explainer.features,
            "raw": {
                "raw_prediction": palisade_protocol::kserve_v1::tensor_value(raw),
                "prediction": served,
                "outputs": prediction.iter().map(|t| json!({"name": t.name(), "data": palisade_protocol::kserve_v1::tensor_value(t)})).collect::<Vec<_>>(),
            },
        },
    }))
}

/// 501 for a model without an explainer (its bundle has no `explainer:`).
pub(crate) fn no_explainer(served: &crate::ServedModel) -> crate::ApiError {
    crate::ApiError::NotImplemented(format!(
        "model `{}` version `{}` has no explainer: declare `explainer:` in its palisade.yaml and build it again (see docs/explain.md)",
        served.id.name, served.id.version
    ))
}

/// Explains `inputs` (parsed from the request's body as for a prediction) with the
/// request's model, on an inference thread, within the inference timeout; answers
/// Alibi's `Explanation` JSON.
pub(crate) async fn serve(
    state: &crate::AppState,
    served: &Arc<crate::ServedModel>,
    inputs: Vec<Tensor>,
) -> Result<Value, crate::ApiError> {
    use crate::ApiError;
    let Some(explainer) = served.explainer.clone() else { return Err(no_explainer(served)) };
    let (Some(runnable), Some(model)) =
        (served.model.runnable(), served.model.runnable().and_then(|r| r.in_process()))
    else {
        return Err(no_explainer(served));
    };
    let inputs = runnable.check(inputs)?.into_inner();
    // The results and the model's outputs are reserved from the in-flight memory budget,
    // as for a prediction; KernelSHAP's synthetic batch is bounded by
    // `MAX_KERNEL_BATCH_VALUES` (refused before anything is allocated).
    let rows = inputs.first().and_then(|t| t.shape().first().copied()).unwrap_or(0);
    if rows > MAX_EXPLAIN_ROWS {
        return Err(ApiError::BadRequest(format!(
            "{rows} rows: an explanation request takes at most {MAX_EXPLAIN_ROWS}; split the rows over several requests"
        )));
    }
    let outputs = match &explainer.method {
        Method::Tree { shap, .. } => shap.ensemble().n_outputs(),
        Method::Kernel { width, .. } => *width,
    };
    let needed = (rows as u64)
        .saturating_mul(outputs as u64)
        .saturating_mul(explainer.features.len() as u64 + 2)
        .saturating_mul(8)
        .saturating_add(runnable.output_bytes_per_row().saturating_mul(rows as u64));
    let budget = state.body_budget();
    let limit = budget.limit();
    let bytes = usize::try_from(needed).map_err(|_| ApiError::OutputBudget { needed, limit })?;
    if bytes > limit {
        return Err(ApiError::OutputBudget { needed, limit });
    }
    let _reserved =
        crate::body::Reservation::new(budget, bytes).ok_or(ApiError::OutputBudget { needed, limit })?;
    let run = Arc::new(ExplainRun { model: model.clone(), explainer: explainer.clone() });
    let timeout = state.inner.dispatcher.timeout();
    let done = tokio::time::timeout(timeout, state.engine().infer_on_thread(run, inputs))
        .await
        .map_err(|_| ApiError::Timeout(timeout))??;
    state.metrics().observe_inference(served.id.name.as_str(), done.queue_wait, done.compute);
    alibi_json(&explainer, served.id.name.as_str(), served.id.version.as_str(), &done.outputs)
        .map_err(ApiError::Internal)
}

/// Why `palisade build` refuses an explainer: the manifest field at fault, what is wrong,
/// and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRefusal {
    /// `explainer.background` or `explainer.type`.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: &'static str,
}

/// What `palisade build` stores for an `explainer:`: reads the background file's bytes
/// (`name` decides CSV or `.npy`), checks them against the model's signature, and for
/// TreeSHAP finds the tree ensemble in the ONNX file (`model`) and counts its covers;
/// for KernelSHAP keeps the rows. Returns the record and a note for the build's output.
pub fn build_record(
    kind: ExplainerKind,
    name: &str,
    background: &[u8],
    model: &[u8],
    signature: &ModelSignature,
) -> Result<(ExplainerRecord, String), BuildRefusal> {
    use palisade_bundle::explainer::{Background, MAX_KERNEL_ROWS};
    let refuse = |field, message: String, hint| BuildRefusal { field, message, hint };
    let background = Background::parse(name, background).map_err(|m| {
        refuse(
            "explainer.background",
            m,
            "a background is a CSV file whose first line names the features (then one row of model inputs per line), or a 2-D .npy array; see docs/explain.md",
        )
    })?;
    let n_features = explainer::check_background(&background, signature).map_err(|m| {
        refuse(
            "explainer.background",
            m,
            "the background holds rows of the model's inputs, one column per feature, in the model's order; see docs/explain.md",
        )
    })?;
    let rows: Vec<f32> = background.values.iter().map(|&v| v as f32).collect();
    match kind {
        ExplainerKind::TreeShap => {
            let hint =
                "TreeShap explains a model that is one tree ensemble over its input; see docs/explain.md";
            let found = find_ensemble(model).map_err(|m| refuse("explainer.type", m, hint))?;
            let ensemble = match found.ensemble {
                FoundEnsemble::Classifier(model) => TreeEnsemble::from_classifier(&model),
                FoundEnsemble::Regressor(model) => TreeEnsemble::from_regressor(&model),
            }
            .map_err(|e| refuse("explainer.type", e.to_string(), hint))?;
            // The covers count the background as the trees see it: after the preprocessing.
            let mut transformed = rows.clone();
            found
                .preprocessing
                .apply(&mut transformed, n_features)
                .map_err(|m| refuse("explainer.background", m, hint))?;
            let covers = palisade_explain::covers_from_background(
                &ensemble,
                &transformed,
                background.n_rows,
                n_features,
            )
            .map_err(|e| refuse("explainer.background", e.to_string(), hint))?;
            let steps = found.preprocessing.names();
            let note = format!(
                "explainer: TreeShap over {} trees{}, covers from {} background rows",
                ensemble.n_trees(),
                if steps.is_empty() { String::new() } else { format!(" after {}", steps.join(", ")) },
                background.n_rows
            );
            let record = ExplainerRecord::TreeShap {
                features: background.features,
                background_rows: background.n_rows as u64,
                covers: covers.counts().to_vec(),
            };
            Ok((record, note))
        }
        ExplainerKind::KernelShap => {
            if background.n_rows > MAX_KERNEL_ROWS {
                return Err(refuse(
                    "explainer.background",
                    format!("it has {} rows; KernelShap keeps at most {MAX_KERNEL_ROWS}", background.n_rows),
                    "each explained row costs 2^M × (background rows) model rows: summarize the data (a sample, or k-means centers, of 10 to 100 rows)",
                ));
            }
            explainer::explained_output(signature)
                .map_err(|m| refuse("explainer.type", m, "see docs/explain.md"))?;
            KernelShap::new(rows.clone(), background.n_rows, n_features, KernelShapOptions::default())
                .map_err(|e| refuse("explainer.background", e.to_string(), "see docs/explain.md"))?;
            let note = format!(
                "explainer: KernelShap over {} background rows of {n_features} features",
                background.n_rows
            );
            Ok((ExplainerRecord::KernelShap { features: background.features, rows }, note))
        }
    }
}
