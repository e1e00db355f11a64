//! Seldon Core v1 prediction protocol (`POST /api/v1.0/predictions`), for callers
//! migrating from Seldon Core.
//!
//! Requests carry one tensor as `data.ndarray` (nested arrays) or `data.tensor`
//! (`shape` + flat `values`), with optional column `names` and `meta`. The response uses the
//! same form the request used.

use palisade_core::{DataType, Tensor, TensorData};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{ProtocolError, data, json};

pub mod grpc;

/// Which payload form a request used; the response answers in the same form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `data.ndarray`: nested arrays.
    Ndarray,
    /// `data.tensor`: `shape` and flat `values`.
    Tensor,
}

/// A parsed Seldon prediction request.
#[derive(Debug, Clone, PartialEq)]
pub struct SeldonRequest {
    /// The input tensor, named after the model input it feeds.
    pub tensor: Tensor,
    /// Column names the caller sent.
    pub names: Vec<String>,
    /// The payload form, echoed in the response.
    pub form: Form,
    /// The caller's `meta`, echoed (tags) in the response.
    pub meta: Map<String, Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    #[serde(default)]
    meta: Option<Map<String, Value>>,
    #[serde(default)]
    data: Option<RawData>,
    #[serde(default, rename = "strData")]
    str_data: Option<Value>,
    #[serde(default, rename = "binData")]
    bin_data: Option<Value>,
    #[serde(default, rename = "jsonData")]
    json_data: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawData {
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    ndarray: Option<Value>,
    #[serde(default)]
    tensor: Option<RawTensor>,
    #[serde(default)]
    tftensor: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTensor {
    shape: Vec<i64>,
    values: Value,
}

/// Parses a Seldon request for a model input called `input_name` of type `datatype`.
pub fn parse_request(
    body: &[u8],
    input_name: &str,
    datatype: DataType,
) -> Result<SeldonRequest, ProtocolError> {
    crate::expect_object(body)?;
    let raw: RawRequest = serde_json::from_slice(body).map_err(|e| ProtocolError::json(&e))?;
    from_raw(raw, input_name, datatype)
}

/// A request's parts, as both the JSON body and the gRPC message carry them.
fn from_raw(raw: RawRequest, input_name: &str, datatype: DataType) -> Result<SeldonRequest, ProtocolError> {
    if raw.str_data.is_some() || raw.bin_data.is_some() || raw.json_data.is_some() {
        return Err(ProtocolError::new(
            "only `data.ndarray` and `data.tensor` payloads are supported; strData, binData and jsonData are not",
        ));
    }
    let data = raw.data.ok_or_else(|| ProtocolError::new("the request has no `data`"))?;
    if data.tftensor.is_some() {
        return Err(ProtocolError::new(
            "`data.tftensor` is not supported; send `data.ndarray` or `data.tensor`",
        ));
    }
    let (shape, values, form) = match (data.ndarray, data.tensor) {
        (Some(_), Some(_)) => {
            return Err(ProtocolError::new("send either `data.ndarray` or `data.tensor`, not both"));
        }
        (None, None) => return Err(ProtocolError::new("`data` needs `ndarray` or `tensor`")),
        (Some(array), None) => {
            if !array.is_array() {
                return Err(ProtocolError::new("`data.ndarray` must be an array"));
            }
            let shape = json::nested_shape(&array)
                .map_err(|e| ProtocolError::new(format!("`data.ndarray` is ragged: {e}")))?;
            (shape, array, Form::Ndarray)
        }
        (None, Some(tensor)) => {
            let shape = tensor
                .shape
                .iter()
                .map(|&d| {
                    usize::try_from(d)
                        .map_err(|_| ProtocolError::new("`data.tensor.shape` has a negative dimension"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            (shape, tensor.values, Form::Tensor)
        }
    };
    let elements = data::decode_json(datatype, &values.to_string())
        .map_err(|e| ProtocolError::input(input_name, format!("data element {}: {}", e.index, e.message)))?;
    let tensor = Tensor::new(input_name, shape, elements).map_err(|e| ProtocolError::new(e.to_string()))?;
    Ok(SeldonRequest { tensor, names: data.names, form, meta: raw.meta.unwrap_or_default() })
}

/// Encodes a Seldon response for one output tensor.
pub fn encode_response(
    output: &Tensor,
    names: &[String],
    form: Form,
    model_name: &str,
    model_version: &str,
    tags: Option<&Value>,
) -> Value {
    let values = json::values(output.data());
    let data = match form {
        Form::Tensor => json!({"names": names, "tensor": {"shape": output.shape(), "values": values}}),
        Form::Ndarray => json!({"names": names, "ndarray": json::nest(values, output.shape())}),
    };
    let mut meta = json!({"requestPath": {model_name: model_version}});
    if let (Some(tags), Some(obj)) = (tags, meta.as_object_mut()) {
        obj.insert("tags".to_owned(), tags.clone());
    }
    json!({"data": data, "meta": meta})
}

/// Whether a tensor holds a datatype Seldon callers can read as numbers.
pub fn is_numeric(data: &TensorData) -> bool {
    !matches!(data, TensorData::Bytes(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndarray_request() {
        let req = parse_request(
            br#"{"data":{"names":["a","b","c","d"],"ndarray":[[5.1,3.5,1.4,0.2]]}}"#,
            "X",
            DataType::Fp32,
        )
        .unwrap();
        assert_eq!(req.tensor.shape(), &[1, 4]);
        assert_eq!(req.tensor.name(), "X");
        assert_eq!(req.names.len(), 4);
        assert_eq!(req.form, Form::Ndarray);
    }

    #[test]
    fn tensor_request() {
        let req = parse_request(
            br#"{"data":{"tensor":{"shape":[2,2],"values":[1,2,3,4]}},"meta":{"tags":{"a":1}}}"#,
            "X",
            DataType::Fp64,
        )
        .unwrap();
        assert_eq!(req.tensor.data(), &TensorData::Fp64(vec![1.0, 2.0, 3.0, 4.0]));
        assert_eq!(req.form, Form::Tensor);
        assert!(req.meta.contains_key("tags"));
    }

    #[test]
    fn refuses_bad_payloads() {
        let cases: [(&[u8], &str); 7] = [
            (br#"{"data":{"ndarray":[[1,2],[3]]}}"#, "ragged"),
            (br#"{"data":{"ndarray":[[1,2],3]}}"#, "ragged"),
            (br#"{"data":{"ndarray":5}}"#, "must be an array"),
            (br#"{"strData":"hello"}"#, "strData"),
            (br#"{"data":{}}"#, "needs `ndarray` or `tensor`"),
            (br#"{"data":{"tensor":{"shape":[3],"values":[1,2]}}}"#, "3 elements but 2"),
            (br#"{"data":{"ndarray":[["x"]]}}"#, "expected a number"),
        ];
        for (body, needle) in cases {
            let err = parse_request(body, "X", DataType::Fp32).unwrap_err().to_string();
            assert!(err.contains(needle), "{}: {err}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn response_nests_by_shape() {
        let t = Tensor::new("p", vec![2, 3], TensorData::Fp32(vec![1.0, 0.0, 0.0, 0.0, 0.5, 0.5])).unwrap();
        let names = vec!["0".to_owned(), "1".to_owned(), "2".to_owned()];
        let v = encode_response(&t, &names, Form::Ndarray, "iris", "1.0.0", None);
        assert_eq!(v["data"]["ndarray"], json!([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]]));
        assert_eq!(v["data"]["names"], json!(["0", "1", "2"]));
        assert_eq!(v["meta"]["requestPath"]["iris"], "1.0.0");
        let v = encode_response(&t, &names, Form::Tensor, "iris", "1.0.0", None);
        assert_eq!(v["data"]["tensor"]["shape"], json!([2, 3]));
        let t = Tensor::new("p", vec![1, 1], TensorData::Fp32(vec![0.8])).unwrap();
        let v = encode_response(&t, &names[..1], Form::Ndarray, "iris", "1.0.0", None);
        assert_eq!(v["data"]["ndarray"].to_string(), "[[0.8]]");
    }
}
