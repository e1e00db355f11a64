//! The client side of V2 REST: the request Palisade sends to an upstream Open Inference
//! Protocol server (MLServer, Triton, a KServe runtime) and the response it reads back.
//!
//! Responses come from another server, so they are parsed as untrusted bytes too: every
//! tensor is decoded and shape-checked, and fields this side does not use (`parameters`,
//! `model_version` and whatever a server adds) are ignored rather than refused.

use palisade_core::{DataType, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::ProtocolError;
use crate::data::{self, JsonData};

#[derive(Serialize)]
struct RequestJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    inputs: Vec<InputJson<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    outputs: Vec<OutputName<'a>>,
}

#[derive(Serialize)]
struct InputJson<'a> {
    name: &'a str,
    shape: &'a [usize],
    datatype: &'static str,
    data: JsonData<'a>,
}

#[derive(Serialize)]
struct OutputName<'a> {
    name: &'a str,
}

/// Encodes an inference request as JSON: the inputs with flat `data`, and the outputs asked
/// for by name (all of the model's when `outputs` is empty). BYTES elements are sent as
/// strings.
pub fn encode_infer_request(id: Option<&str>, inputs: &[Tensor], outputs: &[&str]) -> Vec<u8> {
    let request = RequestJson {
        id,
        inputs: inputs
            .iter()
            .map(|t| InputJson {
                name: t.name(),
                shape: t.shape(),
                datatype: t.datatype().as_str(),
                data: JsonData(t.data()),
            })
            .collect(),
        outputs: outputs.iter().map(|name| OutputName { name }).collect(),
    };
    // Serializing plain structs of strings and numbers to a Vec cannot fail.
    serde_json::to_vec(&request).unwrap_or_else(|_| b"{}".to_vec())
}

/// A parsed inference response.
#[derive(Debug, Clone, PartialEq)]
pub struct InferResponse {
    /// The model that answered, as the server names it.
    pub model_name: Option<String>,
    /// The request id the server echoed.
    pub id: Option<String>,
    /// The output tensors, in response order, with unique names.
    pub outputs: Vec<Tensor>,
}

#[derive(Deserialize)]
struct RawResponse<'a> {
    #[serde(default)]
    model_name: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(borrow)]
    outputs: Vec<RawOutput<'a>>,
}

#[derive(Deserialize)]
struct RawOutput<'a> {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<serde_json::Map<String, Value>>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

/// Parses an inference response body. `json_len` is the `Inference-Header-Content-Length`
/// header, when the server sent binary tensor data after the JSON.
pub fn parse_infer_response(body: &[u8], json_len: Option<usize>) -> Result<InferResponse, ProtocolError> {
    let (json, mut binary) = super::split_body(body, json_len, "response")?;
    let raw: RawResponse<'_> =
        serde_json::from_str(json).map_err(|e| ProtocolError::new(format!("invalid JSON response: {e}")))?;
    let mut outputs: Vec<Tensor> = Vec::with_capacity(raw.outputs.len());
    for output in &raw.outputs {
        if outputs.iter().any(|t| t.name() == output.name) {
            return Err(ProtocolError::new(format!("output `{}` appears twice", clip(&output.name))));
        }
        outputs.push(decode_output(output, &mut binary)?);
    }
    if !binary.is_empty() {
        return Err(ProtocolError::new(format!(
            "{} bytes of binary data follow the JSON but no output claims them",
            binary.len()
        )));
    }
    Ok(InferResponse { model_name: raw.model_name, id: raw.id, outputs })
}

fn decode_output(output: &RawOutput<'_>, binary: &mut &[u8]) -> Result<Tensor, ProtocolError> {
    let name = clip(&output.name);
    let fail = |message: String| ProtocolError::new(format!("output `{name}`: {message}"));
    let datatype = DataType::parse(&output.datatype).map_err(|e| fail(e.to_string()))?;
    let shape = output
        .shape
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| fail(format!("shape {:?} has a negative dimension", output.shape)))
        })
        .collect::<Result<Vec<usize>, _>>()?;
    let binary_size =
        match output.parameters.as_ref().and_then(|p| p.get("binary_data_size")) {
            None => None,
            Some(v) => Some(v.as_u64().and_then(|n| usize::try_from(n).ok()).ok_or_else(|| {
                fail("parameter `binary_data_size` must be a non-negative integer".to_owned())
            })?),
        };
    let data = match (binary_size, output.data) {
        (Some(_), Some(_)) => return Err(fail("has both `data` and `binary_data_size`".to_owned())),
        (None, None) => return Err(fail("has no `data`".to_owned())),
        (Some(size), None) => {
            if size > binary.len() {
                return Err(fail(format!(
                    "binary_data_size is {size} but only {} binary bytes remain",
                    binary.len()
                )));
            }
            let (chunk, rest) = binary.split_at(size);
            *binary = rest;
            data::decode_binary(datatype, chunk).map_err(fail)?
        }
        (None, Some(raw)) => data::decode_json(datatype, raw.get())
            .map_err(|e| fail(format!("data element {}: {}", e.index, e.message)))?,
    };
    Tensor::new(output.name.clone(), shape, data).map_err(|e| fail(e.to_string()))
}

/// The message of a V2 error body (`{"error": "..."}`), if the body is one. MLServer also
/// answers FastAPI's `{"detail": ...}` for malformed requests; its text is used likewise.
pub fn parse_error_message(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    match value.get("error").or_else(|| value.get("detail"))? {
        Value::String(message) => Some(message.clone()),
        other => Some(other.to_string()),
    }
}

fn clip(name: &str) -> String {
    name.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use palisade_core::TensorData;

    use super::*;

    #[test]
    fn request_is_v2_json_that_our_own_parser_reads_back() {
        let x = Tensor::new("X", vec![2, 2], TensorData::Fp32(vec![5.1, 3.5, 1.4, 0.2])).unwrap();
        let s = Tensor::new("S", vec![1], TensorData::Bytes(vec![b"hi".to_vec()])).unwrap();
        let body = encode_infer_request(Some("r-1"), &[x.clone(), s.clone()], &["predict", "predict_proba"]);
        let text = std::str::from_utf8(&body).unwrap();
        assert_eq!(
            text,
            r#"{"id":"r-1","inputs":[{"name":"X","shape":[2,2],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]},{"name":"S","shape":[1],"datatype":"BYTES","data":["hi"]}],"outputs":[{"name":"predict"},{"name":"predict_proba"}]}"#
        );
        let parsed = crate::v2::parse_infer_request(&body, None).unwrap();
        assert_eq!(parsed.inputs, vec![x, s]);
        assert_eq!(parsed.outputs.len(), 2);
        // No outputs named: the field is left out, so the server answers with its defaults.
        let body = encode_infer_request(None, &[], &[]);
        assert_eq!(std::str::from_utf8(&body).unwrap(), r#"{"inputs":[]}"#);
    }

    #[test]
    fn parses_an_mlserver_response() {
        // What MLServer 1.7 answers for an sklearn model asked for predict and predict_proba.
        let body = br#"{"model_name":"iris","model_version":null,"id":"6f0c","parameters":{"headers":null},
            "outputs":[{"name":"predict","shape":[2,1],"datatype":"INT64","parameters":{"content_type":"np"},"data":[0,2]},
                       {"name":"predict_proba","shape":[2,3],"datatype":"FP64","parameters":{"content_type":"np"},"data":[0.9,0.1,0.0,0.0,0.2,0.8]}]}"#;
        let response = parse_infer_response(body, None).unwrap();
        assert_eq!(response.model_name.as_deref(), Some("iris"));
        assert_eq!(response.id.as_deref(), Some("6f0c"));
        assert_eq!(
            response.outputs[0],
            Tensor::new("predict", vec![2, 1], TensorData::Int64(vec![0, 2])).unwrap()
        );
        assert_eq!(response.outputs[1].shape(), &[2, 3]);
        assert_eq!(response.outputs[1].datatype(), DataType::Fp64);
    }

    #[test]
    fn parses_our_own_encoded_responses_json_and_binary() {
        let label = Tensor::new("label", vec![2], TensorData::Int64(vec![0, 2])).unwrap();
        let proba = Tensor::new("p", vec![2, 1], TensorData::Fp32(vec![0.8, 0.25])).unwrap();
        let encoded = crate::v2::encode_infer_response(
            "iris",
            "1",
            None,
            &[
                crate::v2::ResponseOutput { tensor: label.clone(), binary: false },
                crate::v2::ResponseOutput { tensor: proba.clone(), binary: true },
            ],
        );
        let response = parse_infer_response(&encoded.body, encoded.json_len).unwrap();
        assert_eq!(response.outputs, vec![label, proba]);
    }

    #[test]
    fn bad_responses_say_what_is_wrong() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"<html>502 Bad Gateway</html>", "must be a JSON object"),
            (b"{}", "missing field `outputs`"),
            (br#"{"outputs":[{"name":"y","shape":[2],"datatype":"FP32","data":[1]}]}"#, "output `y`"),
            (br#"{"outputs":[{"name":"y","shape":[1],"datatype":"FLOAT","data":[1]}]}"#, "unknown datatype"),
            (br#"{"outputs":[{"name":"y","shape":[-1],"datatype":"FP32","data":[1]}]}"#, "negative dimension"),
            (br#"{"outputs":[{"name":"y","shape":[1],"datatype":"FP32"}]}"#, "has no `data`"),
            (br#"{"outputs":[{"name":"y","shape":[1],"datatype":"INT8","data":[300]}]}"#, "out of range"),
            (
                br#"{"outputs":[{"name":"y","shape":[1],"datatype":"FP32","data":[1]},{"name":"y","shape":[1],"datatype":"FP32","data":[1]}]}"#,
                "appears twice",
            ),
            (
                br#"{"outputs":[{"name":"y","shape":[4294967296,4294967296,4294967296],"datatype":"FP32","data":[1]}]}"#,
                "output `y`",
            ),
        ];
        for (body, needle) in cases {
            let err = parse_infer_response(body, None).unwrap_err().to_string();
            assert!(err.contains(needle), "{}: {err}", String::from_utf8_lossy(body));
        }
        let err = parse_infer_response(b"{}", Some(10)).unwrap_err().to_string();
        assert!(err.contains("only 2 bytes"), "{err}");
    }

    #[test]
    fn error_bodies() {
        assert_eq!(parse_error_message(br#"{"error":"bad input"}"#).as_deref(), Some("bad input"));
        assert_eq!(
            parse_error_message(br#"{"detail":[{"msg":"field required"}]}"#).as_deref(),
            Some(r#"[{"msg":"field required"}]"#)
        );
        assert_eq!(parse_error_message(b"Internal Server Error"), None);
    }
}
