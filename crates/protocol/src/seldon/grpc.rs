//! Seldon Core v1 over gRPC (`seldon.protos.Seldon`): the messages, server and client
//! generated from `proto/seldon.proto`, and conversions between them and the JSON form
//! [`super`] parses and writes, so both transports accept and answer exactly the same.
//!
//! Like the REST form, a request carries one tensor, as `data.tensor` (shape and doubles)
//! or `data.ndarray` (nested lists); `binData`, `strData`, `jsonData`, `customData` and
//! `tftensor` are refused. The deployment a call is for is not in the message: Seldon's
//! clients name it in the `seldon` metadata (and the namespace in `namespace`).

use std::collections::HashMap;

use palisade_core::DataType;
use prost_types::value::Kind;
use prost_types::{ListValue, Struct};
use serde_json::{Map, Number, Value};

use super::{RawData, RawRequest, RawTensor, SeldonRequest};
use crate::ProtocolError;

/// Messages, server and client generated from `proto/seldon.proto`.
pub mod protos {
    tonic::include_proto!("seldon.protos");
}

pub use self::protos::seldon_client::SeldonClient;
use self::protos::seldon_message::DataOneof;
pub use self::protos::seldon_server::{SERVICE_NAME, Seldon, SeldonServer};
use self::protos::{DefaultData, Meta, SeldonMessage, Tensor, default_data};

/// Decodes the `SeldonMessage` of a unary call's body (one uncompressed gRPC frame), so a
/// malformed message is the caller's error with a reason, before any model work.
pub fn decode_frame(body: &[u8]) -> Result<SeldonMessage, ProtocolError> {
    let message = crate::grpc::unframe(body)?;
    <SeldonMessage as prost::Message>::decode(message)
        .map_err(|e| ProtocolError::new(format!("invalid Seldon message: {e}")))
}

/// Parses a `Predict` request for a model input called `input_name` of type `datatype`,
/// as [`super::parse_request`] parses the JSON body.
pub fn parse_message(
    message: SeldonMessage,
    input_name: &str,
    datatype: DataType,
) -> Result<SeldonRequest, ProtocolError> {
    let mut raw = RawRequest {
        meta: message.meta.map(|meta| meta_tags(meta.tags)).transpose()?,
        ..RawRequest::default()
    };
    match message.data_oneof {
        None => {}
        Some(DataOneof::Data(data)) => raw.data = Some(raw_data(data)?),
        Some(DataOneof::BinData(_)) => raw.bin_data = Some(Value::Null),
        Some(DataOneof::StrData(_)) => raw.str_data = Some(Value::Null),
        Some(DataOneof::JsonData(_) | DataOneof::CustomData(_)) => raw.json_data = Some(Value::Null),
    }
    super::from_raw(raw, input_name, datatype)
}

fn raw_data(data: DefaultData) -> Result<RawData, ProtocolError> {
    let mut raw = RawData { names: data.names, ..RawData::default() };
    match data.data_oneof {
        None => {}
        Some(default_data::DataOneof::Tensor(Tensor { shape, values })) => {
            let values = values.into_iter().map(number).collect::<Result<Vec<_>, _>>()?;
            raw.tensor = Some(RawTensor {
                shape: shape.into_iter().map(i64::from).collect(),
                values: Value::Array(values),
            });
        }
        Some(default_data::DataOneof::Ndarray(list)) => raw.ndarray = Some(list_to_json(list)?),
        Some(default_data::DataOneof::Tftensor(_)) => raw.tftensor = Some(Value::Null),
    }
    Ok(raw)
}

fn meta_tags(tags: HashMap<String, prost_types::Value>) -> Result<Map<String, Value>, ProtocolError> {
    let mut meta = Map::new();
    if !tags.is_empty() {
        let tags = tags
            .into_iter()
            .map(|(key, value)| Ok((key, to_json(value)?)))
            .collect::<Result<Map<_, _>, ProtocolError>>()?;
        meta.insert("tags".to_owned(), Value::Object(tags));
    }
    Ok(meta)
}

/// A double as a JSON number: integers as integers (so integer inputs take them), and
/// NaN or infinity refused, as in the JSON form.
fn number(x: f64) -> Result<Value, ProtocolError> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53: every integer below is exact
    if x.fract() == 0.0 && x.abs() < EXACT {
        // The check above makes the conversion exact.
        #[allow(clippy::cast_possible_truncation)]
        return Ok(Value::from(x as i64));
    }
    Number::from_f64(x)
        .map(Value::Number)
        .ok_or_else(|| ProtocolError::new(format!("{x} is not a finite number")))
}

fn list_to_json(list: ListValue) -> Result<Value, ProtocolError> {
    list.values.into_iter().map(to_json).collect::<Result<Vec<_>, _>>().map(Value::Array)
}

/// A protobuf `Value` as JSON. Depth is bounded by the protobuf decoder's recursion limit.
fn to_json(value: prost_types::Value) -> Result<Value, ProtocolError> {
    Ok(match value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::NumberValue(x)) => number(x)?,
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::StructValue(s)) => Value::Object(
            s.fields
                .into_iter()
                .map(|(k, v)| Ok((k, to_json(v)?)))
                .collect::<Result<Map<_, _>, ProtocolError>>()?,
        ),
        Some(Kind::ListValue(list)) => list_to_json(list)?,
    })
}

/// JSON as a protobuf `Value`.
fn from_json(value: &Value) -> prost_types::Value {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(ListValue { values: items.iter().map(from_json).collect() }),
        Value::Object(fields) => Kind::StructValue(Struct {
            fields: fields.iter().map(|(k, v)| (k.clone(), from_json(v))).collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

/// The gRPC form of a response [`super::encode_response`] wrote: the same names, the same
/// payload form, the same `meta`. Tensor values must be numbers (or booleans, as 0 and 1).
pub fn response_message(response: &Value) -> Result<SeldonMessage, ProtocolError> {
    let data = &response["data"];
    let names = data["names"]
        .as_array()
        .map(|names| names.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let payload = if let Some(tensor) = data.get("tensor") {
        let shape = tensor["shape"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                d.as_u64().and_then(|d| i32::try_from(d).ok()).ok_or_else(|| {
                    ProtocolError::new("an output dimension does not fit the Seldon tensor shape")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let values = tensor["values"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| match v {
                Value::Number(n) => {
                    n.as_f64().ok_or_else(|| ProtocolError::new("an output value is not a number"))
                }
                Value::Bool(b) => Ok(f64::from(u8::from(*b))),
                _ => Err(ProtocolError::new(
                    "the output holds strings, which `data.tensor` cannot carry: send `data.ndarray`",
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        default_data::DataOneof::Tensor(Tensor { shape, values })
    } else {
        let list = match from_json(&data["ndarray"]).kind {
            Some(Kind::ListValue(list)) => list,
            _ => ListValue::default(),
        };
        default_data::DataOneof::Ndarray(list)
    };
    let meta = &response["meta"];
    let request_path = meta["requestPath"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    let tags =
        meta["tags"].as_object().into_iter().flatten().map(|(k, v)| (k.clone(), from_json(v))).collect();
    // An inference graph's routers, by index, and the request id feedback names.
    let routing = meta["routing"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), i32::try_from(v.as_i64()?).ok()?)))
        .collect();
    let puid = meta["puid"].as_str().unwrap_or_default().to_owned();
    Ok(SeldonMessage {
        status: None,
        meta: Some(Meta { puid, request_path, tags, routing, ..Meta::default() }),
        data_oneof: Some(DataOneof::Data(DefaultData { names, data_oneof: Some(payload) })),
    })
}

#[cfg(test)]
mod tests {
    use palisade_core::TensorData;
    use prost::Message;
    use serde_json::json;

    use super::*;
    use crate::seldon::{Form, encode_response};

    fn tensor_message(shape: Vec<i32>, values: Vec<f64>) -> SeldonMessage {
        SeldonMessage {
            data_oneof: Some(DataOneof::Data(DefaultData {
                names: vec!["a".into()],
                data_oneof: Some(default_data::DataOneof::Tensor(Tensor { shape, values })),
            })),
            ..SeldonMessage::default()
        }
    }

    #[test]
    fn tensor_and_ndarray_messages_parse_like_json() {
        let req =
            parse_message(tensor_message(vec![1, 4], vec![5.1, 3.5, 1.4, 0.2]), "X", DataType::Fp32).unwrap();
        assert_eq!(req.tensor.shape(), &[1, 4]);
        assert_eq!(req.tensor.data(), &TensorData::Fp32(vec![5.1, 3.5, 1.4, 0.2]));
        assert_eq!(req.form, Form::Tensor);
        let ints = parse_message(tensor_message(vec![2], vec![1.0, -2.0]), "X", DataType::Int64).unwrap();
        assert_eq!(ints.tensor.data(), &TensorData::Int64(vec![1, -2]));

        let row = from_json(&json!([[1.0, 2.5], [3.0, 4.0]]));
        let Some(Kind::ListValue(list)) = row.kind else { panic!() };
        let message = SeldonMessage {
            meta: Some(Meta { tags: [("t".to_owned(), from_json(&json!("v")))].into(), ..Meta::default() }),
            data_oneof: Some(DataOneof::Data(DefaultData {
                names: vec![],
                data_oneof: Some(default_data::DataOneof::Ndarray(list)),
            })),
            ..SeldonMessage::default()
        };
        let req = parse_message(message, "X", DataType::Fp64).unwrap();
        assert_eq!(req.tensor.shape(), &[2, 2]);
        assert_eq!(req.form, Form::Ndarray);
        assert_eq!(req.meta["tags"]["t"], "v");
    }

    #[test]
    fn refuses_what_the_json_form_refuses() {
        let cases = [
            (SeldonMessage::default(), "no `data`"),
            (
                SeldonMessage { data_oneof: Some(DataOneof::StrData("x".into())), ..Default::default() },
                "strData",
            ),
            (
                SeldonMessage { data_oneof: Some(DataOneof::CustomData(vec![1])), ..Default::default() },
                "jsonData",
            ),
            (tensor_message(vec![3], vec![1.0, 2.0]), "3 elements but 2"),
            (tensor_message(vec![-1], vec![]), "negative"),
            (tensor_message(vec![1], vec![f64::NAN]), "not a finite number"),
        ];
        for (message, needle) in cases {
            let err = parse_message(message, "X", DataType::Fp32).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn responses_keep_form_names_and_meta() {
        let t = palisade_core::Tensor::new("p", vec![1, 2], TensorData::Fp32(vec![0.25, 0.75])).unwrap();
        let names = vec!["0".to_owned(), "1".to_owned()];
        let tags = json!({"a": 1});
        for form in [Form::Tensor, Form::Ndarray] {
            let value = encode_response(&t, &names, form, "iris", "1.0.0", Some(&tags));
            let message = response_message(&value).unwrap();
            let bytes = message.encode_to_vec();
            let back = SeldonMessage::decode(bytes.as_slice()).unwrap();
            let Some(DataOneof::Data(data)) = back.data_oneof else { panic!() };
            assert_eq!(data.names, names);
            match (form, data.data_oneof.unwrap()) {
                (Form::Tensor, default_data::DataOneof::Tensor(t)) => {
                    assert_eq!((t.shape, t.values), (vec![1, 2], vec![0.25, 0.75]));
                }
                (Form::Ndarray, default_data::DataOneof::Ndarray(list)) => {
                    assert_eq!(list_to_json(list).unwrap(), json!([[0.25, 0.75]]));
                }
                other => panic!("{other:?}"),
            }
            let meta = back.meta.unwrap();
            assert_eq!(meta.request_path["iris"], "1.0.0");
            assert_eq!(to_json(meta.tags["a"].clone()).unwrap(), json!(1));
        }
        let words = palisade_core::Tensor::new("w", vec![1], TensorData::Bytes(vec![b"x".to_vec()])).unwrap();
        let value = encode_response(&words, &[], Form::Tensor, "m", "1", None);
        assert!(response_message(&value).is_err());
    }
}
