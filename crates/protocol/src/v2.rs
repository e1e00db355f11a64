//! Open Inference Protocol V2 over REST (KServe v2, Triton, MLServer, Seldon Core 2).
//!
//! Requests are JSON; Triton's binary tensor data extension is also accepted: when the
//! `Inference-Header-Content-Length` header is present, the body starts with that many bytes
//! of JSON and continues with raw tensor bytes, one chunk per input that declares a
//! `binary_data_size` parameter, in input order.

pub mod client;

use std::collections::HashSet;

use palisade_core::{DataType, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::ProtocolError;
use crate::data::{self, JsonData};

/// The header that marks a body carrying binary tensor data after its JSON part.
pub const HEADER_CONTENT_LENGTH: &str = "inference-header-content-length";

/// Longest request id echoed back.
const MAX_ID_LEN: usize = 256;

/// Free-form parameters of a request, input or output.
pub type Parameters = Map<String, Value>;

/// A parsed inference request, its tensors decoded and shape-checked.
#[derive(Debug, Clone, PartialEq)]
pub struct InferRequest {
    /// The caller's request id, echoed in the response.
    pub id: Option<String>,
    /// The top-level `model_name` KServe's and Triton's clients add to the body. The route
    /// chooses the model; the server only compares this with it.
    pub model_name: Option<String>,
    /// The top-level `model_version`, compared with the route's version like `model_name`.
    pub model_version: Option<String>,
    /// Request parameters.
    pub parameters: Parameters,
    /// Input tensors, in request order, with unique names.
    pub inputs: Vec<Tensor>,
    /// Outputs asked for; empty means all.
    pub outputs: Vec<RequestedOutput>,
}

/// One output a caller asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestedOutput {
    /// The output's name.
    pub name: String,
    /// Whether it should come back as binary data.
    pub binary: bool,
}

impl InferRequest {
    /// Whether all outputs should be returned as binary data unless an output says otherwise.
    pub fn binary_output_default(&self) -> bool {
        self.parameters.get("binary_data_output").and_then(Value::as_bool).unwrap_or(false)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model_name: Option<String>,
    #[serde(default)]
    model_version: Option<String>,
    #[serde(default)]
    parameters: Option<Parameters>,
    #[serde(borrow)]
    inputs: Vec<RawInput<'a>>,
    #[serde(default)]
    outputs: Option<Vec<RawOutput>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput<'a> {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Parameters>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    name: String,
    #[serde(default)]
    parameters: Option<Parameters>,
}

/// Splits a V2 body into its JSON object and the binary tensor data after it
/// (`json_len` is the `Inference-Header-Content-Length` header), checking that the JSON
/// part is UTF-8 and an object. `what` names the body in errors ("request", "response").
pub(crate) fn split_body<'a>(
    body: &'a [u8],
    json_len: Option<usize>,
    what: &str,
) -> Result<(&'a str, &'a [u8]), ProtocolError> {
    let (json, binary) = match json_len {
        Some(n) if n > body.len() => {
            return Err(ProtocolError::new(format!(
                "Inference-Header-Content-Length is {n} but the body has only {} bytes",
                body.len()
            )));
        }
        Some(n) => body.split_at(n),
        None => (body, &[][..]),
    };
    let json = std::str::from_utf8(json).map_err(|e| {
        ProtocolError::new(format!("the {what} is not UTF-8 JSON (invalid byte at {})", e.valid_up_to()))
    })?;
    crate::expect_object(json.as_bytes())?;
    Ok((json, binary))
}

/// Parses an inference request body.
///
/// `json_len` is the value of the `Inference-Header-Content-Length` header, when present.
pub fn parse_infer_request(body: &[u8], json_len: Option<usize>) -> Result<InferRequest, ProtocolError> {
    let (json, mut binary) = split_body(body, json_len, "request")?;
    let raw: RawRequest<'_> = serde_json::from_str(json).map_err(|e| ProtocolError::json(&e))?;

    if let Some(id) = &raw.id
        && id.len() > MAX_ID_LEN
    {
        return Err(ProtocolError::new(format!("`id` is longer than {MAX_ID_LEN} characters")));
    }
    if raw.inputs.is_empty() {
        return Err(ProtocolError::new("`inputs` is empty: send at least one input tensor"));
    }
    let mut names = HashSet::new();
    let mut inputs = Vec::with_capacity(raw.inputs.len());
    for input in &raw.inputs {
        if !names.insert(input.name.as_str()) {
            return Err(ProtocolError::input(&input.name, "appears twice in `inputs`"));
        }
        inputs.push(decode_input(input, &mut binary)?);
    }
    if !binary.is_empty() {
        return Err(ProtocolError::new(format!(
            "{} bytes of binary data follow the JSON but no input claims them (binary_data_size)",
            binary.len()
        )));
    }

    let parameters = raw.parameters.unwrap_or_default();
    let default_binary = parameters.get("binary_data_output").and_then(Value::as_bool).unwrap_or(false);
    let mut outputs = Vec::new();
    let mut seen = HashSet::new();
    for output in raw.outputs.unwrap_or_default() {
        if !seen.insert(output.name.clone()) {
            return Err(ProtocolError::new(format!("output `{}` is requested twice", output.name)));
        }
        let binary = match output.parameters.as_ref().and_then(|p| p.get("binary_data")) {
            None => default_binary,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(ProtocolError::new(format!(
                    "output `{}`: parameter `binary_data` must be true or false",
                    output.name
                )));
            }
        };
        outputs.push(RequestedOutput { name: output.name, binary });
    }
    Ok(InferRequest {
        id: raw.id,
        model_name: raw.model_name,
        model_version: raw.model_version,
        parameters,
        inputs,
        outputs,
    })
}

fn decode_input(input: &RawInput<'_>, binary: &mut &[u8]) -> Result<Tensor, ProtocolError> {
    let datatype =
        DataType::parse(&input.datatype).map_err(|e| ProtocolError::input(&input.name, e.to_string()))?;
    let mut shape = Vec::with_capacity(input.shape.len());
    for &dim in &input.shape {
        let dim = usize::try_from(dim).map_err(|_| {
            ProtocolError::input(&input.name, format!("shape {:?} has a negative dimension", input.shape))
        })?;
        shape.push(dim);
    }
    let expected = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let binary_size = match input.parameters.as_ref().and_then(|p| p.get("binary_data_size")) {
        None => None,
        Some(v) => Some(v.as_u64().and_then(|n| usize::try_from(n).ok()).ok_or_else(|| {
            ProtocolError::input(&input.name, "parameter `binary_data_size` must be a non-negative integer")
        })?),
    };
    let data = match (binary_size, input.data) {
        (Some(_), Some(_)) => {
            return Err(ProtocolError::input(
                &input.name,
                "has both `data` and `binary_data_size`; send one",
            ));
        }
        (None, None) => return Err(ProtocolError::input(&input.name, "has no `data`")),
        (Some(size), None) => {
            if size > binary.len() {
                return Err(ProtocolError::input(
                    &input.name,
                    format!("binary_data_size is {size} but only {} binary bytes remain", binary.len()),
                ));
            }
            let (chunk, rest) = binary.split_at(size);
            *binary = rest;
            if let (Some(expected), Some(width)) = (expected, datatype.element_size())
                && expected.checked_mul(width) != Some(size)
            {
                return Err(ProtocolError::input(
                    &input.name,
                    format!(
                        "shape {:?} of {datatype} needs {} bytes but binary_data_size is {size}",
                        input.shape,
                        expected.saturating_mul(width)
                    ),
                ));
            }
            data::decode_binary(datatype, chunk).map_err(|e| ProtocolError::input(&input.name, e))?
        }
        (None, Some(raw)) => data::decode_json(datatype, raw.get()).map_err(|e| {
            ProtocolError::input(&input.name, format!("data element {}: {}", e.index, e.message))
        })?,
    };
    Tensor::new(input.name.clone(), shape, data)
        .map_err(|e| ProtocolError::input(&input.name, strip_name(e.to_string())))
}

/// Core errors start with "tensor `NAME`: "; the protocol error names the input itself.
fn strip_name(message: String) -> String {
    match message.split_once("`: ") {
        Some((_, rest)) if message.starts_with("tensor `") => rest.to_owned(),
        _ => message,
    }
}

/// One output tensor of a response, and whether to send it as binary data.
#[derive(Debug, Clone)]
pub struct ResponseOutput {
    /// The tensor.
    pub tensor: Tensor,
    /// Send its bytes after the JSON instead of as a JSON array.
    pub binary: bool,
}

/// An encoded response body.
#[derive(Debug, Clone)]
pub struct EncodedResponse {
    /// The body: JSON, then binary tensor data if any.
    pub body: Vec<u8>,
    /// Length of the JSON part when binary data follows (the `Inference-Header-Content-Length`).
    pub json_len: Option<usize>,
}

#[derive(Serialize)]
struct ResponseJson<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<&'a Value>,
    outputs: Vec<OutputJson<'a>>,
}

#[derive(Serialize)]
struct OutputJson<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<JsonData<'a>>,
}

/// Encodes an inference response.
pub fn encode_infer_response(
    model_name: &str,
    model_version: &str,
    id: Option<&str>,
    outputs: &[ResponseOutput],
) -> EncodedResponse {
    encode_infer_response_with(model_name, model_version, id, None, outputs)
}

/// [`encode_infer_response`] with the response's `parameters` (an inference graph's
/// `routing`).
pub fn encode_infer_response_with(
    model_name: &str,
    model_version: &str,
    id: Option<&str>,
    parameters: Option<&Value>,
    outputs: &[ResponseOutput],
) -> EncodedResponse {
    let mut binary = Vec::new();
    let mut json_outputs = Vec::with_capacity(outputs.len());
    for output in outputs {
        let tensor = &output.tensor;
        let (parameters, data) = if output.binary {
            let start = binary.len();
            data::encode_binary(tensor.data(), &mut binary);
            (Some(serde_json::json!({"binary_data_size": binary.len() - start})), None)
        } else {
            (None, Some(JsonData(tensor.data())))
        };
        json_outputs.push(OutputJson {
            name: tensor.name(),
            datatype: tensor.datatype().as_str(),
            shape: tensor.shape(),
            parameters,
            data,
        });
    }
    let response = ResponseJson { model_name, model_version, id, parameters, outputs: json_outputs };
    // Serializing plain structs of strings and numbers to a Vec cannot fail.
    let mut body = serde_json::to_vec(&response).unwrap_or_else(|_| b"{}".to_vec());
    let json_len = (!binary.is_empty() || outputs.iter().any(|o| o.binary)).then_some(body.len());
    body.extend_from_slice(&binary);
    EncodedResponse { body, json_len }
}

/// `GET /v2`: server metadata.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerMetadata {
    /// Server name.
    pub name: String,
    /// Server version.
    pub version: String,
    /// Protocol extensions supported.
    pub extensions: Vec<String>,
}

/// A tensor in model metadata.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MetadataTensor {
    /// Tensor name.
    pub name: String,
    /// Datatype name.
    pub datatype: String,
    /// Shape, `-1` for dynamic dimensions.
    pub shape: Vec<i64>,
    /// Extra information (class labels of probability outputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
}

/// `GET /v2/models/{name}[/versions/{version}]`: model metadata.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelMetadata {
    /// Model name.
    pub name: String,
    /// Available versions.
    pub versions: Vec<String>,
    /// The framework that runs it.
    pub platform: String,
    /// Inputs.
    pub inputs: Vec<MetadataTensor>,
    /// Outputs.
    pub outputs: Vec<MetadataTensor>,
    /// Extra model information (namespace, digest, description).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
}

/// The error body of every failed call: `{"error": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// What went wrong, safe to show to the caller.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::TensorData;

    fn parse(json: &str) -> Result<InferRequest, ProtocolError> {
        parse_infer_request(json.as_bytes(), None)
    }

    #[test]
    fn parses_the_readme_request() {
        let req =
            parse(r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#)
                .unwrap();
        assert_eq!(req.inputs.len(), 1);
        assert_eq!(req.inputs[0].shape(), &[1, 4]);
        assert_eq!(req.inputs[0].data(), &TensorData::Fp32(vec![5.1, 3.5, 1.4, 0.2]));
        assert!(req.outputs.is_empty());
    }

    #[test]
    fn parses_id_parameters_outputs_nested_data() {
        let req = parse(
            r#"{"id":"r-1","parameters":{"binary_data_output":true},
                "inputs":[{"name":"X","shape":[2,2],"datatype":"INT64","parameters":{"content_type":"np"},"data":[[1,2],[3,4]]}],
                "outputs":[{"name":"label"},{"name":"probabilities","parameters":{"binary_data":false}}]}"#,
        )
        .unwrap();
        assert_eq!(req.id.as_deref(), Some("r-1"));
        assert!(req.binary_output_default());
        assert_eq!(req.inputs[0].data(), &TensorData::Int64(vec![1, 2, 3, 4]));
        assert_eq!(
            req.outputs,
            vec![
                RequestedOutput { name: "label".into(), binary: true },
                RequestedOutput { name: "probabilities".into(), binary: false }
            ]
        );
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let cases = [
            ("", "body is empty"),
            ("[]", "must be a JSON object"),
            (r#"{"inputs":[]}"#, "`inputs` is empty"),
            (r#"{"input":[]}"#, "unknown field `input`"),
            (
                r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FLOAT32","data":[1,2,3,4]}]}"#,
                "unknown datatype `FLOAT32`",
            ),
            (
                r#"{"inputs":[{"name":"X","shape":[1,4],"datatype":"FP32","data":[1,2,3]}]}"#,
                "input `X`: shape [1, 4] holds 4 elements but 3 were given",
            ),
            (
                r#"{"inputs":[{"name":"X","shape":[-1,4],"datatype":"FP32","data":[1,2,3,4]}]}"#,
                "negative dimension",
            ),
            (r#"{"inputs":[{"name":"X","shape":[1],"datatype":"FP32"}]}"#, "has no `data`"),
            (
                r#"{"inputs":[{"name":"X","shape":[1],"datatype":"FP32","data":["a"]}]}"#,
                "data element 0: expected a number",
            ),
            (
                r#"{"inputs":[{"name":"X","shape":[1],"datatype":"FP32","data":[1]},{"name":"X","shape":[1],"datatype":"FP32","data":[1]}]}"#,
                "appears twice",
            ),
            (
                r#"{"inputs":[{"name":"X","shape":[4294967296,4294967296,4294967296],"datatype":"FP32","data":[1]}]}"#,
                "too large",
            ),
            (
                r#"{"inputs":[{"name":"X","shape":[1],"datatype":"FP32","data":[1]}],"outputs":[{"name":"a"},{"name":"a"}]}"#,
                "requested twice",
            ),
        ];
        for (json, needle) in cases {
            let err = parse(json).unwrap_err().to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn binary_extension_request() {
        let json = r#"{"inputs":[{"name":"X","shape":[1,2],"datatype":"FP32","parameters":{"binary_data_size":8}},{"name":"S","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":6}}],"outputs":[{"name":"Y","parameters":{"binary_data":true}}]}"#;
        let mut body = json.as_bytes().to_vec();
        body.extend_from_slice(&1.5f32.to_le_bytes());
        body.extend_from_slice(&(-2.0f32).to_le_bytes());
        body.extend_from_slice(&[2, 0, 0, 0, b'h', b'i']);
        let req = parse_infer_request(&body, Some(json.len())).unwrap();
        assert_eq!(req.inputs[0].data(), &TensorData::Fp32(vec![1.5, -2.0]));
        assert_eq!(req.inputs[1].data(), &TensorData::Bytes(vec![b"hi".to_vec()]));
        assert!(req.outputs[0].binary);

        assert!(parse_infer_request(&body, Some(body.len() + 1)).is_err());
        let mut extra = body.clone();
        extra.push(0);
        let err = parse_infer_request(&extra, Some(json.len())).unwrap_err().to_string();
        assert!(err.contains("no input claims"), "{err}");
        let err = parse_infer_request(&body[..body.len() - 1], Some(json.len())).unwrap_err().to_string();
        assert!(err.contains("only 5 binary bytes remain"), "{err}");
    }

    #[test]
    fn response_json_and_binary() {
        let label = Tensor::new("label", vec![2], TensorData::Int64(vec![0, 2])).unwrap();
        let proba = Tensor::new("p", vec![2, 1], TensorData::Fp32(vec![0.8, 0.25])).unwrap();
        let json = encode_infer_response(
            "iris",
            "1",
            Some("abc"),
            &[
                ResponseOutput { tensor: label.clone(), binary: false },
                ResponseOutput { tensor: proba.clone(), binary: false },
            ],
        );
        assert_eq!(json.json_len, None);
        assert_eq!(
            std::str::from_utf8(&json.body).unwrap(),
            r#"{"model_name":"iris","model_version":"1","id":"abc","outputs":[{"name":"label","datatype":"INT64","shape":[2],"data":[0,2]},{"name":"p","datatype":"FP32","shape":[2,1],"data":[0.8,0.25]}]}"#
        );
        let bin = encode_infer_response("iris", "1", None, &[ResponseOutput { tensor: proba, binary: true }]);
        let n = bin.json_len.unwrap();
        let header: Value = serde_json::from_slice(&bin.body[..n]).unwrap();
        assert_eq!(header["outputs"][0]["parameters"]["binary_data_size"], 8);
        assert_eq!(&bin.body[n..n + 4], &0.8f32.to_le_bytes());
    }

    #[test]
    fn keeps_the_model_name_and_version_clients_add_and_refuses_other_fields() {
        let req = parse(
            r#"{"id":"k","model_name":"iris","model_version":"1.0.0","inputs":[{"name":"X","shape":[1],"datatype":"FP32","data":[1]}]}"#,
        )
        .unwrap();
        assert_eq!(req.model_name.as_deref(), Some("iris"));
        assert_eq!(req.model_version.as_deref(), Some("1.0.0"));
        let req = parse(r#"{"inputs":[{"name":"X","shape":[1],"datatype":"FP32","data":[1]}]}"#).unwrap();
        assert_eq!((req.model_name, req.model_version), (None, None));
        for body in [
            r#"{"model":"iris","inputs":[{"name":"X","shape":[1],"datatype":"FP32","data":[1]}]}"#,
            r#"{"model_name":7,"inputs":[{"name":"X","shape":[1],"datatype":"FP32","data":[1]}]}"#,
        ] {
            assert!(parse(body).is_err(), "{body}");
        }
    }
}
