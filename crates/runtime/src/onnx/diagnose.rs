//! Load errors a data scientist can act on: files that are not ONNX (and the converter
//! that makes them ONNX), operators Palisade cannot run (with their domain and opset, and
//! the export option that avoids them), shape conflicts, and panics inside tract turned
//! into messages.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::sync::Once;

use tract_onnx::model::OnnxOpRegister;
use tract_onnx::pb;

/// What a file that is not an ONNX model looks like it is, and what to do about it.
pub(super) fn foreign_format(bytes: &[u8]) -> Option<String> {
    let head = &bytes[..bytes.len().min(4096)];
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    let contains = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
    let what = if starts(&[0x80]) && matches!(bytes.get(1), Some(2..=5)) {
        "a Python pickle (pickle.dump or joblib.dump of the Python object), not an ONNX model; \
         convert a scikit-learn model with skl2onnx (`skl2onnx.to_onnx(model, X[:1])`), \
         XGBoost/LightGBM with onnxmltools"
    } else if starts(b"PK\x03\x04") {
        if contains(b"data.pkl") || contains(b"constants.pkl") || contains(b"bytecode.pkl") {
            "a PyTorch archive (torch.save or TorchScript), not an ONNX model; export the \
             module with `torch.onnx.export(model, (example_input,), \"model.onnx\")`"
        } else if contains(b"saved_model.pb") || contains(b"keras_version") || contains(b"config.json") {
            "a zipped Keras/TensorFlow model, not an ONNX model; convert it with tf2onnx \
             (`python -m tf2onnx.convert --saved-model DIR --output model.onnx`)"
        } else {
            "a zip archive, not an ONNX model; point `model.path` at the .onnx file itself"
        }
    } else if starts(b"\x89HDF\r\n\x1a\n") {
        "an HDF5 file (a Keras .h5 model), not an ONNX model; convert it with tf2onnx \
         (`tf2onnx.convert.from_keras(model, output_path=\"model.onnx\")`)"
    } else if bytes.get(4..8) == Some(b"TFL3") {
        "a TensorFlow Lite model, not an ONNX model; convert it with `python -m tf2onnx.convert --tflite`"
    } else if starts(&[0x1f, 0x8b])
        || starts(b"BZh")
        || starts(&[0xfd, b'7', b'z', b'X', b'Z', 0])
        || starts(&[0x28, 0xb5, 0x2f, 0xfd])
        || (starts(&[0x78]) && matches!(bytes.get(1), Some(0x01 | 0x5e | 0x9c | 0xda)))
    {
        "a compressed file (joblib.dump with compress=, or gzip/xz/zstd), not an ONNX model; \
         load the object in Python and convert it with skl2onnx or onnxmltools"
    } else if starts(b"{") || starts(b"[") {
        if contains(b"\"learner\"") && contains(b"gradient_booster") {
            "an XGBoost model saved as JSON, not an ONNX model; convert it with onnxmltools \
             (`onnxmltools.convert_xgboost(booster, initial_types=[(\"X\", FloatTensorType([None, n_features]))])`)"
        } else {
            "a JSON document, not an ONNX model"
        }
    } else if starts(b"tree\nversion=") || starts(b"tree\r\nversion=") {
        "a LightGBM text model, not an ONNX model; convert it with onnxmltools \
         (`onnxmltools.convert_lightgbm(booster, initial_types=..., target_opset=15)`)"
    } else if bytes.len() >= 10
        && u64::from_le_bytes([
            bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
        ]) < bytes.len() as u64
        && bytes[8..].starts_with(b"{\"")
    {
        "a safetensors weights file, not an ONNX model; load the weights into the model in \
         Python and export it with `torch.onnx.export`"
    } else {
        return None;
    };
    Some(format!("this file is {what}"))
}

/// A file whose protobuf decoded but holds nothing of an ONNX model (a TensorFlow
/// `saved_model.pb`, another protobuf).
pub(super) fn not_a_model(proto: &pb::ModelProto) -> Option<String> {
    let graph_empty = proto.graph.as_ref().is_none_or(|g| g.node.is_empty() && g.output.is_empty());
    (proto.ir_version <= 0 && proto.opset_import.is_empty() && graph_empty).then(|| {
        "this file is not an ONNX model (no IR version, opsets or graph); a TensorFlow \
         SavedModel converts with `python -m tf2onnx.convert --saved-model DIR --output model.onnx`"
            .to_owned()
    })
}

/// The operators of the graph (subgraphs included) that no registered builder handles,
/// each described as `Op (domain, opset N)` with a hint where one helps.
pub(super) fn unsupported_operators(proto: &pb::ModelProto, register: &OnnxOpRegister) -> Vec<String> {
    let mut missing = BTreeSet::new();
    if let Some(graph) = &proto.graph {
        collect_missing(graph, register, &mut missing, 0);
    }
    missing
        .into_iter()
        .map(|(domain, op)| {
            let domain_name = if domain.is_empty() { "ai.onnx" } else { domain.as_str() };
            let opset = proto
                .opset_import
                .iter()
                .find(|o| o.domain == domain || (domain.is_empty() && o.domain == "ai.onnx"))
                .map_or_else(String::new, |o| format!(", opset {}", o.version));
            let hint = operator_hint(&op).map_or_else(String::new, |h| format!(": {h}"));
            format!("`{op}` (domain {domain_name}{opset}){hint}")
        })
        .collect()
}

fn collect_missing(
    graph: &pb::GraphProto,
    register: &OnnxOpRegister,
    missing: &mut BTreeSet<(String, String)>,
    depth: usize,
) {
    for node in &graph.node {
        if !register.0.contains_key(&node.op_type) {
            missing.insert((node.domain.clone(), node.op_type.clone()));
        }
        if depth < 16 {
            for attr in &node.attribute {
                for g in attr.g.iter().chain(&attr.graphs) {
                    collect_missing(g, register, missing, depth + 1);
                }
            }
        }
    }
}

/// The export option or change that avoids an operator Palisade does not run.
fn operator_hint(op: &str) -> Option<&'static str> {
    Some(match op {
        "DictVectorizer" => {
            "it reads a map input, which the V2 protocol cannot send; export the features as a tensor (DictVectorizer before the pipeline, outside the exported model)"
        }
        "SequenceConstruct" | "SequenceAt" | "SplitToSequence" | "ConcatFromSequence" | "SequenceEmpty" => {
            "sequence values cannot be served; for scikit-learn classifiers export with `options={id(model): {\"zipmap\": False}}`"
        }
        "CastMap" => "it reads a map input, which the V2 protocol cannot send",
        "FusedMatMul"
        | "FusedConv"
        | "FusedGemm"
        | "Gelu"
        | "BiasGelu"
        | "FastGelu"
        | "SkipLayerNormalization"
        | "Attention"
        | "MultiHeadAttention"
        | "EmbedLayerNormalization"
        | "QuickGelu" => {
            "an onnxruntime-optimized (fused) operator; serve the model as exported, before onnxruntime's graph optimizations"
        }
        "Loop" | "If" => {
            "control flow from a traced data-dependent branch; export with fixed control flow (torch.onnx.export with dynamo=True, or remove the branch)"
        }
        _ => return None,
    })
}

/// Rewords a tract error from `into_optimized` for someone who exported a model: shape
/// conflicts say so (with the exporter's dimension names), anything else keeps tract's
/// chain of causes.
pub(super) fn prepare_failure(error: &str) -> String {
    let shape = ["unify", "Impossible to", "shape", "Shape", "rank", "Rank"];
    if shape.iter().any(|s| error.contains(s)) {
        format!(
            "the tensor shapes in the graph do not agree (the model's declared shapes, its value_info, \
             disagree with what its operators compute; re-export with consistent dynamic axes): {error}"
        )
    } else {
        format!("cannot prepare the graph: {error}")
    }
}

thread_local! {
    /// Whether the current thread runs [`catch`]: its panics are recorded, not printed.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    /// The last panic caught on this thread: message and location.
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Runs `f`, turning a panic into `Err` with the panic's message and location. While `f`
/// runs, a panic on this thread prints nothing (no backtrace reaches the user); panics
/// elsewhere go to the hook that was installed before.
pub(super) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CATCHING.with(Cell::get) {
                let payload = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                let location = info.location().map_or_else(String::new, |l| format!(" at {l}"));
                CAUGHT.with(|c| *c.borrow_mut() = Some(format!("{payload}{location}")));
            } else {
                previous(info);
            }
        }));
    });
    let was = CATCHING.with(|c| c.replace(true));
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(was));
    result.map_err(|_| CAUGHT.with(|c| c.borrow_mut().take()).unwrap_or_else(|| "unknown panic".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_other_formats() {
        let cases: [(&[u8], &str); 8] = [
            (b"\x80\x04\x95\x10\x00\x00", "pickle"),
            (b"PK\x03\x04....archive/data.pkl", "PyTorch"),
            (b"PK\x03\x04....keras_version", "tf2onnx"),
            (b"\x89HDF\r\n\x1a\n\0\0", "HDF5"),
            (br#"{"learner":{"gradient_booster":{}}}"#, "onnxmltools"),
            (b"tree\nversion=v4\n", "LightGBM"),
            (b"\x1f\x8b\x08\x00", "compressed"),
            (b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":{\"dtype\"}}", "safetensors"),
        ];
        for (bytes, word) in cases {
            let message = foreign_format(bytes).unwrap_or_default();
            assert!(message.contains(word), "{word}: {message}");
        }
        // An ONNX file starts with a protobuf field key (ir_version = field 1, varint).
        assert_eq!(foreign_format(b"\x08\x07\x12\x07pytorch"), None);
    }

    #[test]
    fn panics_become_messages_without_output() {
        let caught = catch(|| -> u8 { panic!("inner {}", 42) }).unwrap_err();
        assert!(caught.starts_with("inner 42 at "), "{caught}");
        assert!(caught.contains("diagnose.rs"), "{caught}");
        assert_eq!(catch(|| 7), Ok(7));
        // Nested use keeps catching in the outer scope.
        let outer = catch(|| {
            let _ = catch(|| panic!("one"));
            panic!("two")
        });
        assert!(outer.unwrap_err().starts_with("two"));
    }
}
