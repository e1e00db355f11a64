//! KServe's V1 prediction protocol (TensorFlow Serving's REST API, the default of KServe's
//! scikit-learn and XGBoost runtimes): `POST /v1/models/{model}:predict`.
//!
//! A request carries exactly one of:
//! - `instances`: a list of rows. For a model with one input, each row is that input's
//!   row (a number, a string, or nested lists); for any model, each row may instead be an
//!   object keyed by input name. Rows are stacked into one tensor per input.
//! - `inputs`: whole tensors at once: the one input's tensor (nested lists), or an object
//!   keyed by input name.
//!
//! The answer is `{"predictions": [...]}`, one entry per row: for a model with one output,
//! that output's row; otherwise an object keyed by output name.

use palisade_core::{DataType, Tensor};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::{ProtocolError, data, json};

/// A model input the request must feed.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The input's name.
    pub name: &'a str,
    /// Its datatype.
    pub datatype: DataType,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    #[serde(default)]
    instances: Option<Value>,
    #[serde(default)]
    inputs: Option<Value>,
}

/// Parses a `:predict` body into one tensor per model input, in the model's input order.
pub fn parse_predict_request(body: &[u8], inputs: &[Input<'_>]) -> Result<Vec<Tensor>, ProtocolError> {
    crate::expect_object(body)?;
    let raw: RawRequest = serde_json::from_slice(body).map_err(|e| ProtocolError::json(&e))?;
    match (raw.instances, raw.inputs) {
        (Some(_), Some(_)) => Err(ProtocolError::new("send either `instances` or `inputs`, not both")),
        (None, None) => Err(ProtocolError::new("the request needs `instances` (rows) or `inputs` (tensors)")),
        (Some(instances), None) => from_instances(instances, inputs),
        (None, Some(tensors)) => from_inputs(tensors, inputs),
    }
}

fn from_instances(instances: Value, inputs: &[Input<'_>]) -> Result<Vec<Tensor>, ProtocolError> {
    let Value::Array(rows) = instances else {
        return Err(ProtocolError::new("`instances` must be a list of rows"));
    };
    if rows.is_empty() {
        return Err(ProtocolError::new("`instances` is empty: send at least one row"));
    }
    if !rows.first().is_some_and(Value::is_object) {
        return match inputs {
            [input] => tensor(input, Value::Array(rows), "`instances`"),
            _ => Err(several_inputs(inputs)),
        }
        .map(|t| vec![t]);
    }
    let mut columns: Vec<Vec<Value>> = inputs.iter().map(|_| Vec::with_capacity(rows.len())).collect();
    for (index, row) in rows.into_iter().enumerate() {
        let Value::Object(mut fields) = row else {
            return Err(ProtocolError::new(format!(
                "`instances` row {index} is not an object keyed by input name, like the first"
            )));
        };
        for (input, column) in inputs.iter().zip(&mut columns) {
            let value = fields.remove(input.name).ok_or_else(|| {
                ProtocolError::input(input.name, format!("missing from `instances` row {index}"))
            })?;
            column.push(value);
        }
        if let Some(unknown) = fields.keys().next() {
            return Err(unknown_input(unknown, inputs));
        }
    }
    inputs
        .iter()
        .zip(columns)
        .map(|(input, column)| tensor(input, Value::Array(column), "`instances`"))
        .collect()
}

fn from_inputs(tensors: Value, inputs: &[Input<'_>]) -> Result<Vec<Tensor>, ProtocolError> {
    match tensors {
        Value::Object(mut named) => {
            let tensors = inputs
                .iter()
                .map(|input| {
                    let value = named
                        .remove(input.name)
                        .ok_or_else(|| ProtocolError::input(input.name, "missing from `inputs`"))?;
                    tensor(input, value, "`inputs`")
                })
                .collect::<Result<Vec<_>, _>>()?;
            match named.keys().next() {
                Some(unknown) => Err(unknown_input(unknown, inputs)),
                None => Ok(tensors),
            }
        }
        value @ Value::Array(_) => match inputs {
            [input] => tensor(input, value, "`inputs`").map(|t| vec![t]),
            _ => Err(several_inputs(inputs)),
        },
        _ => Err(ProtocolError::new(
            "`inputs` must be a tensor (nested lists) or an object keyed by input name",
        )),
    }
}

fn tensor(input: &Input<'_>, value: Value, field: &str) -> Result<Tensor, ProtocolError> {
    let shape = json::nested_shape(&value)
        .map_err(|e| ProtocolError::input(input.name, format!("{field} is ragged: {e}")))?;
    let elements = data::decode_json(input.datatype, &value.to_string())
        .map_err(|e| ProtocolError::input(input.name, format!("element {}: {}", e.index, e.message)))?;
    Tensor::new(input.name, shape, elements).map_err(|e| ProtocolError::input(input.name, e))
}

fn several_inputs(inputs: &[Input<'_>]) -> ProtocolError {
    let names: Vec<&str> = inputs.iter().map(|i| i.name).collect();
    ProtocolError::new(format!(
        "the model has {} inputs {names:?}: send each row as an object keyed by input name",
        inputs.len()
    ))
}

fn unknown_input(name: &str, inputs: &[Input<'_>]) -> ProtocolError {
    let names: Vec<&str> = inputs.iter().map(|i| i.name).collect();
    ProtocolError::input(name, format!("is not an input of the model; its inputs are {names:?}"))
}

/// Encodes `{"predictions": [...]}`: one entry per row of the outputs (their first
/// dimension), each the row of the one output, or an object keyed by output name.
pub fn encode_predictions(outputs: &[Tensor]) -> Result<Value, ProtocolError> {
    let mut per_output = Vec::with_capacity(outputs.len());
    for output in outputs {
        let nested = json::nest(json::values(output.data()), output.shape());
        let rows = match (output.shape().is_empty(), nested) {
            (false, Value::Array(rows)) => rows,
            (_, scalar) => vec![scalar],
        };
        per_output.push((output.name(), rows));
    }
    let predictions = match per_output.as_slice() {
        [] => Vec::new(),
        [(_, rows)] => rows.clone(),
        [(_, first), rest @ ..] => {
            let count = first.len();
            if rest.iter().any(|(_, rows)| rows.len() != count) {
                return Err(ProtocolError::new(
                    "the model's outputs have different numbers of rows, which V1 predictions cannot carry: use the V2 endpoint",
                ));
            }
            (0..count)
                .map(|row| {
                    Value::Object(
                        per_output
                            .iter()
                            .map(|(name, rows)| ((*name).to_owned(), rows[row].clone()))
                            .collect::<Map<_, _>>(),
                    )
                })
                .collect()
        }
    };
    Ok(json!({ "predictions": predictions }))
}

/// A tensor as nested JSON arrays of its shape (floats in their shortest form; NaN as
/// `null`), as predictions carry it.
pub fn tensor_value(tensor: &Tensor) -> Value {
    json::nest(json::values(tensor.data()), tensor.shape())
}

#[cfg(test)]
mod tests {
    use palisade_core::TensorData;

    use super::*;

    const X: Input<'static> = Input { name: "X", datatype: DataType::Fp32 };

    fn parse(body: &str, inputs: &[Input<'_>]) -> Result<Vec<Tensor>, ProtocolError> {
        parse_predict_request(body.as_bytes(), inputs)
    }

    #[test]
    fn rows_objects_and_tensors_give_the_same_tensor() {
        let expected = Tensor::new("X", vec![2, 2], TensorData::Fp32(vec![1.0, 2.0, 3.0, 4.0])).unwrap();
        for body in [
            r#"{"instances": [[1, 2], [3, 4]]}"#,
            r#"{"instances": [{"X": [1, 2]}, {"X": [3, 4]}]}"#,
            r#"{"inputs": [[1, 2], [3, 4]]}"#,
            r#"{"inputs": {"X": [[1, 2], [3, 4]]}}"#,
        ] {
            assert_eq!(parse(body, &[X]).unwrap(), vec![expected.clone()], "{body}");
        }
        let scalars = parse(r#"{"instances": [1.5, 2.5]}"#, &[X]).unwrap();
        assert_eq!(scalars[0].shape(), &[2]);
    }

    #[test]
    fn several_inputs_by_name_in_model_order() {
        let inputs =
            [Input { name: "a", datatype: DataType::Int64 }, Input { name: "b", datatype: DataType::Bytes }];
        let tensors = parse(r#"{"instances": [{"b": "x", "a": 1}, {"a": 2, "b": "y"}]}"#, &inputs).unwrap();
        assert_eq!(tensors[0].data(), &TensorData::Int64(vec![1, 2]));
        assert_eq!(tensors[1].data(), &TensorData::Bytes(vec![b"x".to_vec(), b"y".to_vec()]));
        let columns = parse(r#"{"inputs": {"a": [1, 2], "b": ["x", "y"]}}"#, &inputs).unwrap();
        assert_eq!(columns, tensors);
    }

    #[test]
    fn refuses_with_a_reason() {
        let two = [X, Input { name: "Y", datatype: DataType::Fp32 }];
        let cases: [(&str, &[Input<'_>], &str); 11] = [
            (r#"{"instances": [[1, 2]], "inputs": [[1, 2]]}"#, &[X], "not both"),
            (r#"{}"#, &[X], "needs `instances`"),
            (r#"{"instances": []}"#, &[X], "empty"),
            (r#"{"instances": 5}"#, &[X], "list of rows"),
            (r#"{"instances": [[1, 2], [3]]}"#, &[X], "ragged"),
            (r#"{"instances": [{"X": [1]}, [2]]}"#, &[X], "row 1 is not an object"),
            (r#"{"instances": [{"Z": [1]}]}"#, &[X], "`X`: missing"),
            (r#"{"instances": [{"X": [1], "Z": 2}]}"#, &[X], "`Z`: is not an input"),
            (r#"{"instances": [[1, 2]]}"#, &two, "2 inputs"),
            (r#"{"instances": [["a"]]}"#, &[X], "expected a number"),
            (r#"{"instances": [[1]], "signature_name": "x"}"#, &[X], "unknown field"),
        ];
        for (body, inputs, needle) in cases {
            let err = parse(body, inputs).unwrap_err().to_string();
            assert!(err.contains(needle), "{body}: {err}");
        }
        assert!(parse("[1]", &[X]).is_err());
    }

    #[test]
    fn predictions_per_row() {
        let label = Tensor::new("label", vec![2], TensorData::Int64(vec![0, 2])).unwrap();
        let probs = Tensor::new("p", vec![2, 2], TensorData::Fp32(vec![0.9, 0.1, 0.2, 0.8])).unwrap();
        assert_eq!(encode_predictions(std::slice::from_ref(&label)).unwrap(), json!({"predictions": [0, 2]}));
        assert_eq!(
            encode_predictions(&[label, probs.clone()]).unwrap(),
            json!({"predictions": [{"label": 0, "p": [0.9, 0.1]}, {"label": 2, "p": [0.2, 0.8]}]})
        );
        let odd = Tensor::new("o", vec![3], TensorData::Int64(vec![1, 2, 3])).unwrap();
        assert!(encode_predictions(&[probs, odd]).is_err());
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            "[a-z]{0,3}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec(("[XYab]", inner), 0..3)
                    .prop_map(|fields| Value::Object(fields.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// The fuzz target `kserve_v1_request` on stable: any body is refused or gives one
        /// tensor per input whose elements fill its shape, and predictions can be written.
        #[test]
        fn accepted_bodies_give_whole_tensors(value in json_value(), instances in proptest::bool::ANY, ints in proptest::bool::ANY) {
            let body = if instances { json!({"instances": value}) } else { json!({"inputs": value}) };
            let one = [Input { name: "X", datatype: if ints { DataType::Int64 } else { DataType::Fp32 } }];
            let two = [X, Input { name: "Y", datatype: DataType::Bool }];
            for inputs in [&one[..], &two[..]] {
                if let Ok(tensors) = parse_predict_request(body.to_string().as_bytes(), inputs) {
                    proptest::prop_assert_eq!(tensors.len(), inputs.len());
                    for tensor in &tensors {
                        proptest::prop_assert_eq!(tensor.data().len(), tensor.shape().iter().product::<usize>());
                    }
                    let _ = encode_predictions(&tensors);
                }
            }
        }
    }
}
