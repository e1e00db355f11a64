//! Open Inference Protocol V2 over gRPC: round trips for every datatype, every request
//! error, golden messages made by the real `tritonclient`, and property tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::PathBuf;

use half::{bf16, f16};
use palisade_core::{DataType, Dim, ModelSignature, Tensor, TensorData, TensorSpec};
use palisade_protocol::grpc::inference::infer_parameter::ParameterChoice;
use palisade_protocol::grpc::inference::model_metadata_response::TensorMetadata;
use palisade_protocol::grpc::prost::Message;
use palisade_protocol::grpc::{
    self, GrpcRequestedOutput, InferInputTensor, InferParameter, InferRequestedOutputTensor,
    InferTensorContents, ModelInferRequest, ModelInferResponse,
};
use palisade_protocol::v2;
use proptest::prelude::*;
use serde_json::json;

/// One sample tensor of every datatype, with edge values.
fn samples() -> Vec<Tensor> {
    let data = [
        TensorData::Bool(vec![true, false, true, true]),
        TensorData::Uint8(vec![0, 1, 128, 255]),
        TensorData::Uint16(vec![0, 1, 300, u16::MAX]),
        TensorData::Uint32(vec![0, 1, 70_000, u32::MAX]),
        TensorData::Uint64(vec![0, 1, u64::from(u32::MAX) + 1, u64::MAX]),
        TensorData::Int8(vec![i8::MIN, -1, 0, i8::MAX]),
        TensorData::Int16(vec![i16::MIN, -1, 0, i16::MAX]),
        TensorData::Int32(vec![i32::MIN, -1, 0, i32::MAX]),
        TensorData::Int64(vec![i64::MIN, -1, 0, i64::MAX]),
        TensorData::Fp16(vec![f16::from_f32(-1.5), f16::ZERO, f16::MAX, f16::from_f32(0.1)]),
        TensorData::Fp32(vec![-1.5, 0.0, f32::MAX, 5.1]),
        TensorData::Fp64(vec![-1.5, 0.0, f64::MIN_POSITIVE, 0.1]),
        TensorData::Bf16(vec![bf16::from_f32(-1.5), bf16::ZERO, bf16::MAX, bf16::from_f32(3.0)]),
        TensorData::Bytes(vec![b"".to_vec(), b"hi".to_vec(), "h\u{e9}llo".into(), vec![0, 0xff, 4]]),
    ];
    data.into_iter()
        .map(|d| Tensor::new(format!("t_{}", d.datatype().as_str().to_lowercase()), vec![2, 2], d).unwrap())
        .collect()
}

/// Through the wire: prost-encode, prost-decode.
fn wire<M: Message + Default>(m: &M) -> M {
    M::decode(m.encode_to_vec().as_slice()).unwrap()
}

#[test]
fn every_datatype_round_trips_in_requests_raw_and_typed() {
    for raw in [true, false] {
        for tensor in samples() {
            let request =
                grpc::encode_infer_request("m", Some("2"), Some("id-1"), std::slice::from_ref(&tensor), raw);
            let typed_form = !matches!(tensor.datatype(), DataType::Fp16 | DataType::Bf16);
            assert_eq!(request.raw_input_contents.is_empty(), !raw && typed_form, "{tensor:?}");
            assert_eq!(request.inputs[0].contents.is_some(), !raw && typed_form, "{tensor:?}");
            let parsed = grpc::parse_infer_request(wire(&request)).unwrap();
            assert_eq!(parsed.model_name, "m");
            assert_eq!(parsed.model_version.as_deref(), Some("2"));
            assert_eq!(parsed.id.as_deref(), Some("id-1"));
            assert_eq!(parsed.inputs, vec![tensor.clone()], "raw={raw}");
        }
    }
}

#[test]
fn every_datatype_round_trips_in_responses_raw_and_typed() {
    let all = samples();
    for raw in [true, false] {
        // One output at a time: FP16/BF16 would force raw for all.
        for tensor in &all {
            let response = grpc::encode_infer_response("m", "1", None, std::slice::from_ref(tensor), raw);
            let parsed = grpc::parse_infer_response(wire(&response)).unwrap();
            assert_eq!(parsed.outputs, vec![tensor.clone()], "raw={raw}");
            assert_eq!(parsed.id, None);
        }
    }
    // All together, typed asked for: the FP16/BF16 outputs force every output raw.
    let response = grpc::encode_infer_response("m", "1", Some("x"), &all, false);
    assert_eq!(response.raw_output_contents.len(), all.len());
    assert!(response.outputs.iter().all(|o| o.contents.is_none()));
    assert_eq!(grpc::parse_infer_response(wire(&response)).unwrap().outputs, all);
}

#[test]
fn many_inputs_round_trip_in_order() {
    let all = samples();
    for raw in [true, false] {
        let no_half: Vec<Tensor> = all
            .iter()
            .filter(|t| !matches!(t.datatype(), DataType::Fp16 | DataType::Bf16))
            .cloned()
            .collect();
        let request = grpc::encode_infer_request("m", None, None, &no_half, raw);
        assert_eq!(request.raw_input_contents.len(), if raw { no_half.len() } else { 0 });
        let parsed = grpc::parse_infer_request(wire(&request)).unwrap();
        assert_eq!(parsed.inputs, no_half);
        assert_eq!(parsed.model_version, None);
        assert_eq!(parsed.id, None);
    }
}

#[test]
fn raw_wire_layout_is_little_endian_and_length_prefixed() {
    let tensors = [
        Tensor::new("f", vec![2], TensorData::Fp32(vec![1.0, -2.0])).unwrap(),
        Tensor::new("s", vec![2], TensorData::Bytes(vec![b"ab".to_vec(), vec![]])).unwrap(),
        Tensor::new("b", vec![2], TensorData::Bool(vec![true, false])).unwrap(),
    ];
    let response = grpc::encode_infer_response("m", "1", None, &tensors, true);
    assert_eq!(response.raw_output_contents[0], [0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0]);
    assert_eq!(response.raw_output_contents[1], [2, 0, 0, 0, b'a', b'b', 0, 0, 0, 0]);
    assert_eq!(response.raw_output_contents[2], [1, 0]);
    assert_eq!(response.outputs[1].shape, [2]);
    assert_eq!(response.outputs[1].datatype, "BYTES");
}

fn input(
    name: &str,
    datatype: &str,
    shape: &[i64],
    contents: Option<InferTensorContents>,
) -> InferInputTensor {
    InferInputTensor {
        name: name.to_owned(),
        datatype: datatype.to_owned(),
        shape: shape.to_vec(),
        parameters: HashMap::new(),
        contents,
    }
}

fn fp32(values: &[f32]) -> Option<InferTensorContents> {
    Some(InferTensorContents { fp32_contents: values.to_vec(), ..Default::default() })
}

fn request(inputs: Vec<InferInputTensor>, raw: Vec<Vec<u8>>) -> ModelInferRequest {
    ModelInferRequest { model_name: "iris".to_owned(), inputs, raw_input_contents: raw, ..Default::default() }
}

fn param(choice: Option<ParameterChoice>) -> InferParameter {
    InferParameter { parameter_choice: choice }
}

fn fp32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn bad_requests_say_what_is_wrong() {
    let ok = || input("X", "FP32", &[1, 4], fp32(&[1.0, 2.0, 3.0, 4.0]));
    let mut cases: Vec<(ModelInferRequest, &str)> = vec![
        (
            ModelInferRequest { model_name: String::new(), ..request(vec![ok()], vec![]) },
            "`model_name` is empty",
        ),
        (ModelInferRequest { id: "x".repeat(257), ..request(vec![ok()], vec![]) }, "`id` is longer than 256"),
        (request(vec![], vec![]), "`inputs` is empty"),
        (request(vec![input("", "FP32", &[1], fp32(&[1.0]))], vec![]), "input 0 has an empty name"),
        (request(vec![ok(), ok()], vec![]), "input `X`: appears twice"),
        (
            request(vec![input("X", "FLOAT32", &[1], fp32(&[1.0]))], vec![]),
            "input `X`: unknown datatype `FLOAT32`",
        ),
        (
            request(vec![input("X", "FP32", &[-1, 4], fp32(&[1.0]))], vec![]),
            "shape [-1, 4] has a negative dimension",
        ),
        (
            request(vec![input("X", "FP32", &[1 << 32, 1 << 32, 1 << 32], fp32(&[1.0]))], vec![]),
            "input `X`: shape [4294967296, 4294967296, 4294967296] is too large",
        ),
        (
            request(vec![input("X", "FP32", &[1, 4], fp32(&[1.0, 2.0, 3.0]))], vec![]),
            "input `X`: shape [1, 4] holds 4 elements but 3 were given",
        ),
        (
            request(vec![input("X", "FP32", &[1], None)], vec![]),
            "input `X`: shape [1] holds 1 elements but 0 were given",
        ),
        (
            request(
                vec![input(
                    "X",
                    "FP32",
                    &[1],
                    Some(InferTensorContents { int64_contents: vec![1], ..Default::default() }),
                )],
                vec![],
            ),
            "input `X`: datatype FP32 takes its elements in `contents.fp32_contents`, not `int64_contents`",
        ),
        (
            request(
                vec![input(
                    "X",
                    "FP32",
                    &[1],
                    Some(InferTensorContents {
                        fp32_contents: vec![1.0],
                        bytes_contents: vec![vec![1]],
                        ..Default::default()
                    }),
                )],
                vec![],
            ),
            "not `bytes_contents`",
        ),
        (
            request(vec![input("H", "FP16", &[1], fp32(&[1.0]))], vec![]),
            "input `H`: datatype FP16 has no typed contents field (found `fp32_contents`): send its elements in raw_input_contents",
        ),
        (request(vec![input("H", "BF16", &[0], None)], vec![]), "datatype BF16 has no typed contents field"),
        (
            request(
                vec![input(
                    "I",
                    "INT8",
                    &[2],
                    Some(InferTensorContents { int_contents: vec![1, 200], ..Default::default() }),
                )],
                vec![],
            ),
            "input `I`: contents element 1: 200 is out of range for INT8",
        ),
        (
            request(
                vec![input(
                    "I",
                    "INT16",
                    &[1],
                    Some(InferTensorContents { int_contents: vec![-40_000], ..Default::default() }),
                )],
                vec![],
            ),
            "-40000 is out of range for INT16",
        ),
        (
            request(
                vec![input(
                    "U",
                    "UINT8",
                    &[1],
                    Some(InferTensorContents { uint_contents: vec![256], ..Default::default() }),
                )],
                vec![],
            ),
            "256 is out of range for UINT8",
        ),
        (
            request(
                vec![input(
                    "U",
                    "UINT16",
                    &[1],
                    Some(InferTensorContents { uint_contents: vec![70_000], ..Default::default() }),
                )],
                vec![],
            ),
            "70000 is out of range for UINT16",
        ),
        (
            request(vec![ok()], vec![fp32_bytes(&[1.0, 2.0, 3.0, 4.0])]),
            "input `X`: has both `contents.fp32_contents` and raw_input_contents[0]; send one",
        ),
        (
            request(vec![input("X", "FP32", &[1, 4], None)], vec![fp32_bytes(&[1.0, 2.0, 3.0])]),
            "input `X`: shape [1, 4] of FP32 needs 16 bytes but raw_input_contents[0] has 12",
        ),
        (
            request(
                vec![input("A", "FP32", &[1], None), input("B", "FP32", &[1], None)],
                vec![fp32_bytes(&[1.0])],
            ),
            "`raw_input_contents` has 1 entries but there are 2 inputs: send one entry per input, in order",
        ),
        (
            request(vec![input("A", "FP32", &[1], None)], vec![fp32_bytes(&[1.0]), fp32_bytes(&[2.0])]),
            "`raw_input_contents` has 2 entries but there are 1 inputs",
        ),
        (
            request(vec![input("S", "BYTES", &[2], None)], vec![vec![1, 0, 0, 0, b'a']]),
            "input `S`: shape [2] holds 2 elements but 1 were given",
        ),
        (
            request(vec![input("S", "BYTES", &[1], None)], vec![vec![5, 0, 0, 0, b'a']]),
            "input `S`: raw_input_contents[0]: BYTES element declares 5 bytes but only 1 remain",
        ),
        (
            request(vec![input("S", "BYTES", &[1], None)], vec![vec![1, 0]]),
            "BYTES element is missing its 4-byte length prefix",
        ),
        (
            request(vec![input("B", "BOOL", &[1], None)], vec![vec![2]]),
            "input `B`: raw_input_contents[0]: byte 2 is not a BOOL (0 or 1)",
        ),
    ];

    let mut with_params = request(vec![ok()], vec![]);
    with_params.parameters.insert("p".to_owned(), param(None));
    cases.push((with_params, "parameter `p` has no value"));
    let mut nan = request(vec![ok()], vec![]);
    nan.parameters.insert("t".to_owned(), param(Some(ParameterChoice::DoubleParam(f64::NAN))));
    cases.push((nan, "parameter `t`: NaN is not a finite number"));

    let mut shared_in = ok();
    shared_in
        .parameters
        .insert("shared_memory_region".to_owned(), param(Some(ParameterChoice::StringParam("r".into()))));
    cases.push((request(vec![shared_in], vec![]), "input `X`: shared memory inputs are not supported"));

    let out = |name: &str| InferRequestedOutputTensor { name: name.to_owned(), parameters: HashMap::new() };
    cases.push((
        ModelInferRequest { outputs: vec![out("a"), out("a")], ..request(vec![ok()], vec![]) },
        "output `a` is requested twice",
    ));
    cases.push((
        ModelInferRequest { outputs: vec![out("")], ..request(vec![ok()], vec![]) },
        "a requested output has an empty name",
    ));
    let mut shared_out = out("y");
    shared_out
        .parameters
        .insert("shared_memory_region".to_owned(), param(Some(ParameterChoice::StringParam("r".into()))));
    cases.push((
        ModelInferRequest { outputs: vec![shared_out], ..request(vec![ok()], vec![]) },
        "output `y`: shared memory outputs are not supported",
    ));
    let mut bad_out_param = out("y");
    bad_out_param.parameters.insert("classification".to_owned(), param(None));
    cases.push((
        ModelInferRequest { outputs: vec![bad_out_param], ..request(vec![ok()], vec![]) },
        "output `y`: parameter `classification` has no value",
    ));

    let long = "n".repeat(1000);
    cases
        .push((request(vec![input(&long, "FP32", &[1], None)], vec![]), "holds 1 elements but 0 were given"));

    for (req, needle) in cases {
        let err = grpc::parse_infer_request(req.clone()).unwrap_err().to_string();
        assert!(err.contains(needle), "expected `{needle}` in `{err}` for {req:?}");
        assert!(err.len() < 400, "error too long: {err}");
    }
}

#[test]
fn empty_contents_beside_raw_entries_are_tolerated() {
    // Some clients send `contents {}` with raw data; it carries no elements, so nothing conflicts.
    let req = request(
        vec![input("X", "FP32", &[1], Some(InferTensorContents::default()))],
        vec![fp32_bytes(&[2.5])],
    );
    let parsed = grpc::parse_infer_request(req).unwrap();
    assert_eq!(parsed.inputs[0].data(), &TensorData::Fp32(vec![2.5]));
}

#[test]
fn zero_element_tensors_parse_both_ways() {
    let typed = request(vec![input("X", "FP32", &[0, 4], None)], vec![]);
    assert_eq!(grpc::parse_infer_request(typed).unwrap().inputs[0].shape(), &[0, 4]);
    let raw = request(vec![input("X", "FP32", &[0, 4], None)], vec![vec![]]);
    assert_eq!(grpc::parse_infer_request(raw).unwrap().inputs[0].data(), &TensorData::Fp32(vec![]));
}

#[test]
fn parameters_become_json_values() {
    let mut req = request(vec![input("X", "FP32", &[1], fp32(&[1.0]))], vec![]);
    for (k, v) in [
        ("b", ParameterChoice::BoolParam(true)),
        ("i", ParameterChoice::Int64Param(-7)),
        ("u", ParameterChoice::Uint64Param(u64::MAX)),
        ("s", ParameterChoice::StringParam("x".into())),
        ("d", ParameterChoice::DoubleParam(0.5)),
    ] {
        req.parameters.insert(k.to_owned(), param(Some(v)));
    }
    req.outputs.push(InferRequestedOutputTensor {
        name: "label".to_owned(),
        parameters: [("classification".to_owned(), param(Some(ParameterChoice::Int64Param(2))))].into(),
    });
    let parsed = grpc::parse_infer_request(req).unwrap();
    assert_eq!(
        serde_json::Value::Object(parsed.parameters),
        json!({"b": true, "i": -7, "u": u64::MAX, "s": "x", "d": 0.5})
    );
    assert_eq!(
        parsed.outputs,
        vec![GrpcRequestedOutput {
            name: "label".to_owned(),
            parameters: json!({"classification": 2}).as_object().unwrap().clone()
        }]
    );
    for value in [json!(true), json!(-7), json!(u64::MAX), json!("x"), json!(0.5)] {
        let p = grpc::parameter_from_json(&value).unwrap();
        let mut m = ModelInferResponse::default();
        m.parameters.insert("k".to_owned(), p);
        assert_eq!(grpc::parse_infer_response(m).unwrap().parameters["k"], value);
    }
    assert!(grpc::parameter_from_json(&json!(null)).is_none());
    assert!(grpc::parameter_from_json(&json!([1])).is_none());
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// The iris request exactly as `tritonclient.grpc` sends it: FP32 in `raw_input_contents`.
#[test]
fn golden_tritonclient_iris_request() {
    let golden = std::fs::read(golden_dir().join("tritonclient_iris_fp32.bin")).unwrap();
    let x = [5.1f32, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3];
    let out = |name: &str| InferRequestedOutputTensor { name: name.to_owned(), parameters: HashMap::new() };
    let built = ModelInferRequest {
        model_name: "iris".to_owned(),
        model_version: String::new(),
        id: "req-1".to_owned(),
        parameters: HashMap::new(),
        inputs: vec![input("input", "FP32", &[2, 4], None)],
        outputs: vec![out("label"), out("probabilities")],
        raw_input_contents: vec![fp32_bytes(&x)],
    };
    assert_eq!(built.encode_to_vec(), golden, "prost and tritonclient disagree on the bytes");
    // The library's own client-side encoder writes the same bytes.
    let tensor = Tensor::new("input", vec![2, 4], TensorData::Fp32(x.to_vec())).unwrap();
    let mut encoded =
        grpc::encode_infer_request("iris", None, Some("req-1"), std::slice::from_ref(&tensor), true);
    encoded.outputs = built.outputs.clone();
    assert_eq!(encoded.encode_to_vec(), golden);

    let parsed = grpc::parse_infer_request(ModelInferRequest::decode(golden.as_slice()).unwrap()).unwrap();
    assert_eq!(parsed.model_name, "iris");
    assert_eq!(parsed.model_version, None);
    assert_eq!(parsed.id.as_deref(), Some("req-1"));
    assert!(parsed.parameters.is_empty());
    assert_eq!(parsed.inputs, vec![tensor]);
    let names: Vec<&str> = parsed.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["label", "probabilities"]);
}

/// Every raw layout tritonclient produces (INT64, BYTES, BOOL, FP16, UINT8) and its
/// parameter kinds (priority as uint64, timeout as int64, custom double/string/bool/int).
#[test]
fn golden_tritonclient_mixed_request() {
    let golden = std::fs::read(golden_dir().join("tritonclient_mixed.bin")).unwrap();
    let decoded = ModelInferRequest::decode(golden.as_slice()).unwrap();
    let mut parameters = HashMap::new();
    for (k, v) in [
        ("priority", ParameterChoice::Uint64Param(3)),
        ("timeout", ParameterChoice::Int64Param(1000)),
        ("temperature", ParameterChoice::DoubleParam(0.5)),
        ("tag", ParameterChoice::StringParam("golden".into())),
        ("flag", ParameterChoice::BoolParam(true)),
        ("n", ParameterChoice::Int64Param(7)),
    ] {
        parameters.insert(k.to_owned(), param(Some(v)));
    }
    let inputs = vec![
        Tensor::new("ids", vec![2, 2], TensorData::Int64(vec![1, -2, 3, 4])).unwrap(),
        Tensor::new("text", vec![2], TensorData::Bytes(vec![b"hi".to_vec(), "h\u{e9}llo".into()])).unwrap(),
        Tensor::new("mask", vec![3], TensorData::Bool(vec![true, false, true])).unwrap(),
        Tensor::new("half", vec![2], TensorData::Fp16(vec![f16::from_f32(1.5), f16::from_f32(-0.25)]))
            .unwrap(),
        Tensor::new("pixels", vec![3], TensorData::Uint8(vec![0, 128, 255])).unwrap(),
    ];
    let mut built = grpc::encode_infer_request("mixed", None, None, &inputs, true);
    built.parameters = parameters;
    built.outputs = vec![InferRequestedOutputTensor {
        name: "probabilities".to_owned(),
        parameters: [("classification".to_owned(), param(Some(ParameterChoice::Int64Param(2))))].into(),
    }];
    // Map entries have no fixed order on the wire, so compare messages, not bytes.
    assert_eq!(decoded, built);

    let parsed = grpc::parse_infer_request(decoded).unwrap();
    assert_eq!(parsed.inputs, inputs);
    assert_eq!(
        serde_json::Value::Object(parsed.parameters),
        json!({"priority": 3, "timeout": 1000, "temperature": 0.5, "tag": "golden", "flag": true, "n": 7})
    );
    assert_eq!(parsed.outputs[0].parameters["classification"], 2);
}

/// The raw response Palisade sends, checked by `tritonclient`'s `InferResult.as_numpy()`
/// (see `golden/tritonclient_grpc.py`). `PALISADE_UPDATE_GOLDEN=1` rewrites it.
#[test]
fn golden_raw_response_for_tritonclient() {
    let outputs = [
        Tensor::new("label", vec![2], TensorData::Int64(vec![0, 2])).unwrap(),
        Tensor::new("probabilities", vec![2, 3], TensorData::Fp32(vec![0.75, 0.25, 0.0, 0.125, 0.125, 0.75]))
            .unwrap(),
        Tensor::new("names", vec![2], TensorData::Bytes(vec![b"setosa".to_vec(), b"virginica".to_vec()]))
            .unwrap(),
        Tensor::new("flags", vec![2], TensorData::Bool(vec![true, false])).unwrap(),
        Tensor::new("half", vec![2], TensorData::Fp16(vec![f16::from_f32(0.5), f16::from_f32(-2.0)]))
            .unwrap(),
    ];
    let response = grpc::encode_infer_response("iris", "1", Some("req-1"), &outputs, true);
    let bytes = response.encode_to_vec();
    let path = golden_dir().join("palisade_response_raw.bin");
    if std::env::var_os("PALISADE_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &bytes).unwrap();
    }
    assert_eq!(bytes, std::fs::read(&path).unwrap(), "response bytes changed: re-check with tritonclient");
    assert_eq!(grpc::parse_infer_response(response).unwrap().outputs, outputs);
}

#[test]
fn metadata_from_signature_and_from_rest() {
    let signature = ModelSignature {
        inputs: vec![TensorSpec {
            name: "input".into(),
            datatype: DataType::Fp32,
            shape: vec![Dim::Dynamic, Dim::Fixed(4)],
            allow_nan: false,
            labels: None,
        }],
        outputs: vec![TensorSpec {
            name: "label".into(),
            datatype: DataType::Int64,
            shape: vec![Dim::Dynamic],
            allow_nan: false,
            labels: Some(vec!["a".into()]),
        }],
    };
    let m = grpc::model_metadata_response("iris", vec!["1".into(), "2".into()], "onnx", &signature);
    assert_eq!(m.name, "iris");
    assert_eq!(m.versions, ["1", "2"]);
    assert_eq!(m.platform, "onnx");
    assert_eq!(
        m.inputs,
        [TensorMetadata { name: "input".into(), datatype: "FP32".into(), shape: vec![-1, 4] }]
    );
    assert_eq!(
        m.outputs,
        [TensorMetadata { name: "label".into(), datatype: "INT64".into(), shape: vec![-1] }]
    );

    let rest = v2::ModelMetadata {
        name: "iris".into(),
        versions: vec!["1".into(), "2".into()],
        platform: "onnx".into(),
        inputs: vec![v2::MetadataTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: vec![-1, 4],
            parameters: None,
        }],
        outputs: vec![v2::MetadataTensor {
            name: "label".into(),
            datatype: "INT64".into(),
            shape: vec![-1],
            parameters: Some(json!({"labels": ["a"]})),
        }],
        parameters: Some(json!({"namespace": "default"})),
    };
    assert_eq!(grpc::inference::ModelMetadataResponse::from(rest), m);

    let s = grpc::server_metadata_response("palisade", "0.1.0", vec![]);
    assert_eq!((s.name.as_str(), s.version.as_str()), ("palisade", "0.1.0"));
    let from_rest = grpc::inference::ServerMetadataResponse::from(v2::ServerMetadata {
        name: "palisade".into(),
        version: "0.1.0".into(),
        extensions: vec![],
    });
    assert_eq!(from_rest, s);
    assert_eq!(grpc::rpc_path("ModelInfer"), "/inference.GRPCInferenceService/ModelInfer");
}

const DATATYPES: [&str; 16] = [
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64",
    "BF16", "BYTES", "fp32", "",
];

fn arb_contents() -> impl Strategy<Value = Option<InferTensorContents>> {
    let small = 0..6usize;
    proptest::option::of(
        (
            proptest::collection::vec(any::<bool>(), small.clone()),
            proptest::collection::vec(any::<i32>(), small.clone()),
            proptest::collection::vec(any::<i64>(), small.clone()),
            proptest::collection::vec(any::<u32>(), small.clone()),
            proptest::collection::vec(any::<u64>(), small.clone()),
            proptest::collection::vec(any::<f32>(), small.clone()),
            proptest::collection::vec(any::<f64>(), small.clone()),
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..4), small),
        )
            .prop_map(|(b, i, i64s, u, u64s, f, d, s)| InferTensorContents {
                bool_contents: b,
                int_contents: i,
                int64_contents: i64s,
                uint_contents: u,
                uint64_contents: u64s,
                fp32_contents: f,
                fp64_contents: d,
                bytes_contents: s,
            }),
    )
}

fn arb_request() -> impl Strategy<Value = ModelInferRequest> {
    let dim = prop_oneof![4 => 0i64..4, 1 => any::<i64>()];
    let input = (
        prop_oneof![Just("a".to_owned()), Just("b".to_owned()), Just(String::new())],
        proptest::sample::select(&DATATYPES[..]),
        proptest::collection::vec(dim, 0..4),
        arb_contents(),
    )
        .prop_map(|(name, datatype, shape, contents)| input(&name, datatype, &shape, contents));
    (
        proptest::collection::vec(input, 0..4),
        proptest::option::of(proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..24), 0..4)),
        any::<bool>(),
    )
        .prop_map(|(inputs, raw, named)| ModelInferRequest {
            model_name: if named { "m".to_owned() } else { String::new() },
            inputs,
            raw_input_contents: raw.unwrap_or_default(),
            ..Default::default()
        })
}

fn arb_tensor() -> impl Strategy<Value = Tensor> {
    (proptest::sample::select(&DataType::ALL[..]), proptest::collection::vec(0usize..4, 0..3), any::<u64>())
        .prop_map(|(datatype, shape, seed)| {
            let n: usize = shape.iter().product();
            let mut state = seed;
            let mut next = move || {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                state >> 11
            };
            let data = match datatype {
                DataType::Bool => TensorData::Bool((0..n).map(|_| next() % 2 == 1).collect()),
                DataType::Uint8 => TensorData::Uint8((0..n).map(|_| next() as u8).collect()),
                DataType::Uint16 => TensorData::Uint16((0..n).map(|_| next() as u16).collect()),
                DataType::Uint32 => TensorData::Uint32((0..n).map(|_| next() as u32).collect()),
                DataType::Uint64 => TensorData::Uint64((0..n).map(|_| next() << 11).collect()),
                DataType::Int8 => TensorData::Int8((0..n).map(|_| next() as i8).collect()),
                DataType::Int16 => TensorData::Int16((0..n).map(|_| next() as i16).collect()),
                DataType::Int32 => TensorData::Int32((0..n).map(|_| next() as i32).collect()),
                DataType::Int64 => TensorData::Int64((0..n).map(|_| (next() << 11) as i64).collect()),
                DataType::Fp16 => {
                    TensorData::Fp16((0..n).map(|_| f16::from_f32((next() % 1000) as f32 / 8.0)).collect())
                }
                DataType::Fp32 => TensorData::Fp32((0..n).map(|_| (next() % 100_000) as f32 / 7.0).collect()),
                DataType::Fp64 => TensorData::Fp64((0..n).map(|_| (next() % 100_000) as f64 / 7.0).collect()),
                DataType::Bf16 => {
                    TensorData::Bf16((0..n).map(|_| bf16::from_f32((next() % 1000) as f32)).collect())
                }
                DataType::Bytes => TensorData::Bytes(
                    (0..n).map(|_| (0..next() % 5).map(|_| next() as u8).collect()).collect(),
                ),
            };
            Tensor::new("t", shape, data).unwrap()
        })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(request) = ModelInferRequest::decode(bytes.as_slice()) {
            let _ = grpc::parse_infer_request(request);
        }
        if let Ok(response) = ModelInferResponse::decode(bytes.as_slice()) {
            let _ = grpc::parse_infer_response(response);
        }
    }

    #[test]
    fn arbitrary_requests_never_panic_and_tensors_fit_their_shapes(request in arb_request()) {
        let bytes = request.encode_to_vec();
        let decoded = ModelInferRequest::decode(bytes.as_slice()).unwrap();
        if let Ok(parsed) = grpc::parse_infer_request(decoded) {
            for t in &parsed.inputs {
                prop_assert_eq!(t.data().len(), t.shape().iter().product::<usize>());
            }
        }
    }

    #[test]
    fn arbitrary_tensors_round_trip(tensor in arb_tensor(), raw in any::<bool>()) {
        let request = grpc::encode_infer_request("m", None, None, std::slice::from_ref(&tensor), raw);
        let parsed = grpc::parse_infer_request(wire(&request)).unwrap();
        prop_assert_eq!(&parsed.inputs[0], &tensor);
        let response = grpc::encode_infer_response("m", "1", None, std::slice::from_ref(&tensor), raw);
        let parsed = grpc::parse_infer_response(wire(&response)).unwrap();
        prop_assert_eq!(&parsed.outputs[0], &tensor);
    }
}
