//! Open Inference Protocol V2 over gRPC: the `inference.GRPCInferenceService` of KServe and
//! Triton, generated from `proto/grpc_predict_v2.proto`, and conversions between its
//! messages and Palisade's tensors.
//!
//! Tensor elements travel either typed, in each tensor's `contents`, or raw, in the
//! message's `raw_input_contents` / `raw_output_contents`: one entry per tensor, in tensor
//! order, little-endian, each BYTES element prefixed by its 4-byte little-endian length.
//! FP16 and BF16 have no typed field and travel raw only. Parsing accepts both forms;
//! responses are raw by default, as Triton answers and as `tritonclient`'s `as_numpy()`
//! reads them.
//!
//! Like [`crate::v2`], nothing here knows a model: checking inputs against a signature, and
//! requested outputs against the model's outputs, belongs to the caller.

mod metadata;
mod tensor;

use std::collections::{HashMap, HashSet};

use palisade_core::Tensor;
use serde_json::{Number, Value};

pub use self::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
pub use self::inference::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer, SERVICE_NAME,
};
use self::inference::infer_parameter::ParameterChoice;
pub use self::inference::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
pub use self::inference::model_infer_response::InferOutputTensor;
pub use self::inference::{InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse};
pub use self::metadata::{model_metadata_response, server_metadata_response};
use self::tensor::{Side, WireTensor, clip};
use crate::ProtocolError;
pub use crate::v2::Parameters;

/// The prost and tonic this crate generated its code with, for callers that decode messages
/// or implement the service without naming the versions again.
pub use {prost, tonic};

/// Messages, server and client generated from `proto/grpc_predict_v2.proto`.
///
/// The server is [`GrpcInferenceServiceServer`], which serves any [`GrpcInferenceService`];
/// the client takes any tower service (no transport is compiled in).
pub mod inference {
    tonic::include_proto!("inference");
}

/// The gRPC path of an RPC, as authorization policies see it (`/inference.GRPCInferenceService/ModelInfer`).
pub fn rpc_path(method: &str) -> String {
    format!("/{SERVICE_NAME}/{method}")
}

/// Longest request id echoed back, as over REST.
const MAX_ID_LEN: usize = 256;

/// A parsed `ModelInfer` request, its tensors decoded and shape-checked.
#[derive(Debug, Clone, PartialEq)]
pub struct GrpcInferRequest {
    /// The model to run (never empty).
    pub model_name: String,
    /// The version asked for; `None` lets the server choose.
    pub model_version: Option<String>,
    /// The caller's request id, echoed in the response.
    pub id: Option<String>,
    /// Request parameters (`sequence_id`, `priority`, `timeout`, custom ones), as JSON values.
    pub parameters: Parameters,
    /// Input tensors, in request order, with unique names. Input parameters are dropped.
    pub inputs: Vec<Tensor>,
    /// Outputs asked for, with unique names; empty means all.
    pub outputs: Vec<GrpcRequestedOutput>,
}

/// One output a gRPC caller asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct GrpcRequestedOutput {
    /// The output's name.
    pub name: String,
    /// Its parameters, such as `classification` (tritonclient's `class_count`).
    pub parameters: Parameters,
}

/// A parsed `ModelInfer` response, for clients and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct GrpcInferResponse {
    /// The model that ran.
    pub model_name: String,
    /// Its version.
    pub model_version: String,
    /// The request's id, if it had one.
    pub id: Option<String>,
    /// Response parameters, as JSON values.
    pub parameters: Parameters,
    /// Output tensors, in response order.
    pub outputs: Vec<Tensor>,
}

/// Parses a `ModelInfer` request: names, parameters and tensors, from typed `contents` or
/// from `raw_input_contents`.
pub fn parse_infer_request(request: ModelInferRequest) -> Result<GrpcInferRequest, ProtocolError> {
    let ModelInferRequest { model_name, model_version, id, parameters, inputs, outputs, raw_input_contents } =
        request;
    if model_name.is_empty() {
        return Err(ProtocolError::new("`model_name` is empty: name the model to run"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(ProtocolError::new(format!("`id` is longer than {MAX_ID_LEN} characters")));
    }
    let parameters = parameters_to_json(parameters, "")?;
    let inputs = decode_tensors(
        Side::Input,
        inputs.into_iter().map(|input| {
            let shared = input.parameters.contains_key("shared_memory_region");
            let wire = WireTensor {
                name: input.name,
                datatype: input.datatype,
                shape: input.shape,
                contents: input.contents,
                raw: None,
            };
            (wire, shared)
        }),
        raw_input_contents,
    )?;

    let mut seen = HashSet::new();
    let mut requested = Vec::with_capacity(outputs.len());
    for output in outputs {
        if output.name.is_empty() {
            return Err(ProtocolError::new("a requested output has an empty name"));
        }
        if !seen.insert(output.name.clone()) {
            return Err(ProtocolError::new(format!("output `{}` is requested twice", clip(&output.name))));
        }
        if output.parameters.contains_key("shared_memory_region") {
            return Err(Side::Output.error(&output.name, "shared memory outputs are not supported"));
        }
        let prefix = format!("output `{}`: ", clip(&output.name));
        let parameters = parameters_to_json(output.parameters, &prefix)?;
        requested.push(GrpcRequestedOutput { name: output.name, parameters });
    }

    Ok(GrpcInferRequest {
        model_name,
        model_version: (!model_version.is_empty()).then_some(model_version),
        id: (!id.is_empty()).then_some(id),
        parameters,
        inputs,
        outputs: requested,
    })
}

/// Decodes the tensors of a message, each with whether it names a shared memory region.
fn decode_tensors(
    side: Side,
    wires: impl ExactSizeIterator<Item = (WireTensor, bool)>,
    raw: Vec<Vec<u8>>,
) -> Result<Vec<Tensor>, ProtocolError> {
    let count = wires.len();
    if side == Side::Input && count == 0 {
        return Err(ProtocolError::new("`inputs` is empty: send at least one input tensor"));
    }
    if !raw.is_empty() && raw.len() != count {
        let (field, entries, noun) = (side.raw_field(), raw.len(), side.noun());
        return Err(ProtocolError::new(format!(
            "`{field}` has {entries} entries but there are {count} {noun}s: send one entry per {noun}, in order"
        )));
    }
    let mut raw = raw.into_iter().enumerate();
    let mut names = HashSet::with_capacity(count);
    let mut tensors = Vec::with_capacity(count);
    for (index, (mut wire, shared)) in wires.enumerate() {
        if wire.name.is_empty() {
            return Err(ProtocolError::new(format!("{} {index} has an empty name", side.noun())));
        }
        if !names.insert(wire.name.clone()) {
            return Err(side.error(&wire.name, "appears twice"));
        }
        if shared {
            return Err(side.error(&wire.name, "shared memory inputs are not supported"));
        }
        wire.raw = raw.next();
        tensors.push(tensor::decode(side, wire)?);
    }
    Ok(tensors)
}

/// Encodes a `ModelInfer` response.
///
/// With `raw` (the default to use: Triton answers so, and `tritonclient` reads only raw
/// entries for non-BYTES outputs) elements go to `raw_output_contents`; otherwise to each
/// output's typed `contents`, unless an output is FP16 or BF16, which forces raw for all.
pub fn encode_infer_response(
    model_name: &str,
    model_version: &str,
    id: Option<&str>,
    outputs: &[Tensor],
    raw: bool,
) -> ModelInferResponse {
    let raw = raw || outputs.iter().any(|t| tensor::typed_field(t.datatype()).is_none());
    let mut response = ModelInferResponse {
        model_name: model_name.to_owned(),
        model_version: model_version.to_owned(),
        id: id.unwrap_or_default().to_owned(),
        outputs: Vec::with_capacity(outputs.len()),
        ..ModelInferResponse::default()
    };
    if raw {
        response.raw_output_contents = outputs.iter().map(|t| tensor::encode_raw(t.data())).collect();
    }
    for t in outputs {
        response.outputs.push(InferOutputTensor {
            name: t.name().to_owned(),
            datatype: t.datatype().as_str().to_owned(),
            shape: tensor::wire_shape(t.shape()),
            parameters: HashMap::new(),
            contents: if raw { None } else { tensor::encode_typed(t.data()) },
        });
    }
    response
}

/// Encodes a `ModelInfer` request, as a client would: raw (as `tritonclient` sends) or typed.
/// FP16 and BF16 inputs force raw for all.
pub fn encode_infer_request(
    model_name: &str,
    model_version: Option<&str>,
    id: Option<&str>,
    inputs: &[Tensor],
    raw: bool,
) -> ModelInferRequest {
    let raw = raw || inputs.iter().any(|t| tensor::typed_field(t.datatype()).is_none());
    ModelInferRequest {
        model_name: model_name.to_owned(),
        model_version: model_version.unwrap_or_default().to_owned(),
        id: id.unwrap_or_default().to_owned(),
        inputs: inputs
            .iter()
            .map(|t| InferInputTensor {
                name: t.name().to_owned(),
                datatype: t.datatype().as_str().to_owned(),
                shape: tensor::wire_shape(t.shape()),
                parameters: HashMap::new(),
                contents: if raw { None } else { tensor::encode_typed(t.data()) },
            })
            .collect(),
        raw_input_contents: if raw {
            inputs.iter().map(|t| tensor::encode_raw(t.data())).collect()
        } else {
            vec![]
        },
        ..ModelInferRequest::default()
    }
}

/// Parses a `ModelInfer` response (typed or raw), as a client would.
pub fn parse_infer_response(response: ModelInferResponse) -> Result<GrpcInferResponse, ProtocolError> {
    let ModelInferResponse { model_name, model_version, id, parameters, outputs, raw_output_contents } =
        response;
    let parameters = parameters_to_json(parameters, "")?;
    let outputs = decode_tensors(
        Side::Output,
        outputs.into_iter().map(|output| {
            let wire = WireTensor {
                name: output.name,
                datatype: output.datatype,
                shape: output.shape,
                contents: output.contents,
                raw: None,
            };
            (wire, false)
        }),
        raw_output_contents,
    )?;
    Ok(GrpcInferResponse {
        model_name,
        model_version,
        id: (!id.is_empty()).then_some(id),
        parameters,
        outputs,
    })
}

/// Converts wire parameters to JSON values; `prefix` locates them in errors.
fn parameters_to_json(
    parameters: HashMap<String, InferParameter>,
    prefix: &str,
) -> Result<Parameters, ProtocolError> {
    let mut out = Parameters::new();
    for (key, value) in parameters {
        let value = match value.parameter_choice {
            Some(ParameterChoice::BoolParam(b)) => Value::Bool(b),
            Some(ParameterChoice::Int64Param(n)) => Value::from(n),
            Some(ParameterChoice::Uint64Param(n)) => Value::from(n),
            Some(ParameterChoice::StringParam(s)) => Value::String(s),
            Some(ParameterChoice::DoubleParam(d)) => Value::Number(Number::from_f64(d).ok_or_else(|| {
                ProtocolError::new(format!("{prefix}parameter `{}`: {d} is not a finite number", clip(&key)))
            })?),
            None => {
                return Err(ProtocolError::new(format!("{prefix}parameter `{}` has no value", clip(&key))));
            }
        };
        out.insert(key, value);
    }
    Ok(out)
}

/// Converts a JSON parameter value to its wire form; `None` for arrays, objects and null,
/// which the protocol cannot carry.
pub fn parameter_from_json(value: &Value) -> Option<InferParameter> {
    let choice = match value {
        Value::Bool(b) => ParameterChoice::BoolParam(*b),
        Value::String(s) => ParameterChoice::StringParam(s.clone()),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => ParameterChoice::Int64Param(i),
            (None, Some(u), _) => ParameterChoice::Uint64Param(u),
            (None, None, Some(f)) => ParameterChoice::DoubleParam(f),
            (None, None, None) => return None,
        },
        Value::Null | Value::Array(_) | Value::Object(_) => return None,
    };
    Some(InferParameter { parameter_choice: Some(choice) })
}

/// The model a unary gRPC request body names: fields 1 and 2 (name, version) of
/// `ModelInferRequest`, `ModelMetadataRequest` and `ModelReadyRequest`, which all put them
/// there. Nothing else is decoded: tensors are skipped over, not allocated, so the caller
/// can authorize the request before any tensor is decoded.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedModel {
    /// The model name (empty when absent).
    #[prost(string, tag = "1")]
    pub name: String,
    /// The model version (empty: the latest).
    #[prost(string, tag = "2")]
    pub version: String,
}

/// Reads the model a unary request body names (see [`NamedModel`]). The body is one
/// gRPC message frame: a zero compression flag, a 4-byte big-endian length, and exactly
/// that many bytes of protobuf. Compressed messages, trailing bytes and a frame that is cut
/// short are refused.
pub fn named_model(body: &[u8]) -> Result<NamedModel, ProtocolError> {
    let message = unframe(body)?;
    let named = <NamedModel as prost::Message>::decode(message)
        .map_err(|e| ProtocolError::new(format!("invalid gRPC message: {e}")))?;
    if named.name.is_empty() {
        return Err(ProtocolError::new("the request names no model"));
    }
    Ok(named)
}

/// The protobuf bytes of a unary request body: one gRPC message frame (a zero compression
/// flag, a 4-byte big-endian length, exactly that many bytes). Compressed messages,
/// trailing bytes and a frame that is cut short are refused.
pub fn unframe(body: &[u8]) -> Result<&[u8], ProtocolError> {
    let Some((&[flag, a, b, c, d], message)) = body.split_first_chunk::<5>() else {
        return Err(ProtocolError::new("the gRPC message frame is incomplete"));
    };
    if flag != 0 {
        return Err(ProtocolError::new("compressed gRPC messages are not accepted: send them uncompressed"));
    }
    let length = u32::from_be_bytes([a, b, c, d]) as usize;
    if message.len() != length {
        return Err(ProtocolError::new(format!(
            "the gRPC frame announces {length} bytes but {} follow: send exactly one message",
            message.len()
        )));
    }
    Ok(message)
}

#[cfg(test)]
mod named_model_tests {
    use prost::Message;

    use super::*;
    use crate::grpc::inference::{ModelMetadataRequest, ModelReadyRequest};

    fn frame(message: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8];
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    #[test]
    fn reads_the_name_and_version_of_every_model_message() {
        let infer = ModelInferRequest {
            model_name: "iris".into(),
            model_version: "2.0.0+b".into(),
            inputs: vec![InferInputTensor {
                name: "X".into(),
                datatype: "FP32".into(),
                shape: vec![1, 4],
                ..Default::default()
            }],
            raw_input_contents: vec![vec![0; 16]],
            ..Default::default()
        };
        let named = named_model(&frame(&infer.encode_to_vec())).unwrap();
        assert_eq!((named.name.as_str(), named.version.as_str()), ("iris", "2.0.0+b"));
        let meta = ModelMetadataRequest { name: "a".into(), version: String::new() };
        assert_eq!(named_model(&frame(&meta.encode_to_vec())).unwrap().name, "a");
        let ready = ModelReadyRequest { name: "b".into(), version: "1".into() };
        assert_eq!(named_model(&frame(&ready.encode_to_vec())).unwrap().version, "1");
    }

    #[test]
    fn agrees_with_the_full_decoder_on_repeated_fields() {
        // Protobuf lets a field repeat; the last value wins, in both decoders.
        let mut bytes =
            ModelInferRequest { model_name: "public".into(), ..Default::default() }.encode_to_vec();
        bytes.extend(ModelInferRequest { model_name: "secret".into(), ..Default::default() }.encode_to_vec());
        let full = ModelInferRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(named_model(&frame(&bytes)).unwrap().name, full.model_name);
        assert_eq!(full.model_name, "secret");
    }

    #[test]
    fn refuses_frames_it_cannot_vouch_for() {
        let message = ModelReadyRequest { name: "b".into(), version: String::new() }.encode_to_vec();
        let mut compressed = frame(&message);
        compressed[0] = 1;
        assert!(named_model(&compressed).is_err());
        let mut two = frame(&message);
        two.extend(frame(&message));
        assert!(named_model(&two).is_err(), "a second message");
        assert!(named_model(&frame(&message)[..6]).is_err(), "cut short");
        assert!(named_model(&[0, 0, 0]).is_err());
        assert!(named_model(&frame(&[])).is_err(), "no model named");
        assert!(named_model(&frame(&[0xff, 0xff])).is_err(), "not protobuf");
    }
}
