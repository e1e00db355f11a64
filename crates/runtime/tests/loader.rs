//! Loading fixtures through Palisade's loader: signatures, labels and refusals.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use palisade_core::{DataType, Dim, Tensor, TensorData};
use palisade_runtime::onnx::OnnxModel;
use palisade_runtime::{Model, RuntimeError};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models").join(format!("{name}.onnx"))
}

#[test]
fn signature_is_inferred_from_the_graph() {
    for (name, label_out, proba_out) in
        [("iris_lr_nozipmap", "label", "probabilities"), ("iris_rf", "output_label", "output_probability")]
    {
        let model = OnnxModel::load(&fixture(name)).unwrap();
        let sig = model.signature();
        assert_eq!(sig.inputs.len(), 1, "{name}");
        assert_eq!(sig.inputs[0].name, "X");
        assert_eq!(sig.inputs[0].datatype, DataType::Fp32);
        assert_eq!(sig.inputs[0].shape, vec![Dim::Dynamic, Dim::Fixed(4)]);
        let names: Vec<_> = sig.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, [label_out, proba_out], "{name}");
        assert_eq!(sig.outputs[0].datatype, DataType::Int64);
        assert_eq!(sig.outputs[1].datatype, DataType::Fp32);
        assert_eq!(sig.outputs[1].shape, vec![Dim::Dynamic, Dim::Fixed(3)], "{name}");
        assert_eq!(
            sig.outputs[1].labels.as_deref(),
            Some(&["0".to_owned(), "1".into(), "2".into()][..]),
            "{name}"
        );
    }
}

#[test]
fn runs_one_row_and_reuses_state() {
    let model = OnnxModel::load(&fixture("iris_lr_nozipmap")).unwrap();
    for _ in 0..3 {
        let x = Tensor::new("X", vec![1, 4], TensorData::Fp32(vec![5.1, 3.5, 1.4, 0.2])).unwrap();
        let out = model.run(vec![x]).unwrap();
        assert_eq!(out[0].name(), "label");
        assert_eq!(out[0].data(), &TensorData::Int64(vec![0]));
        assert_eq!(out[1].shape(), &[1, 3]);
    }
}

#[test]
fn garbage_files_are_load_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (i, bytes) in [&b""[..], b"not onnx at all", &[0x0a, 0xff, 0xff, 0xff, 0x0f]].into_iter().enumerate()
    {
        let path = dir.path().join(format!("m{i}.onnx"));
        std::fs::write(&path, bytes).unwrap();
        let err = OnnxModel::load(&path).unwrap_err();
        assert!(matches!(err, RuntimeError::Load { .. }), "{err}");
        assert!(err.to_string().contains(&format!("m{i}.onnx")), "{err}");
    }
}

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/corpus").join(format!("{name}.onnx"))
}

/// PyTorch's dynamo export names its dynamic dims (`batch`) in the inputs and in
/// `value_info`: the model loads, its inputs share the batch symbol, and a request whose
/// inputs disagree on it is refused rather than answered.
#[test]
fn inputs_sharing_a_named_dim_share_one_symbol() {
    let model = OnnxModel::load(&corpus("torch_two_inputs")).unwrap();
    let sig = model.signature();
    assert_eq!(sig.inputs.len(), 2);
    assert_eq!(sig.inputs[0].shape, vec![Dim::Dynamic, Dim::Fixed(4)]);
    assert_eq!(sig.inputs[1].shape, vec![Dim::Dynamic, Dim::Fixed(3)]);
    let x = |name: &str, rows: usize, width: usize| {
        Tensor::new(name, vec![rows, width], TensorData::Fp32(vec![0.5; rows * width])).unwrap()
    };
    let out = model.run(vec![x("numeric", 3, 4), x("extra", 3, 3)]).unwrap();
    assert_eq!(out[0].shape(), &[3, 2]);
    assert!(model.run(vec![x("numeric", 3, 4), x("extra", 2, 3)]).is_err());
}

#[test]
fn files_of_other_formats_say_which_converter_to_use() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[u8], &str); 5] = [
        (b"\x80\x04\x95\x20\x00\x00\x00\x00\x00\x00\x00\x8c\x15sklearn.linear_model", "skl2onnx"),
        (b"PK\x03\x04\x14\x00\x00\x00\x08\x00model/data.pkl", "torch.onnx.export"),
        (
            br#"{"learner":{"attributes":{},"gradient_booster":{"name":"gbtree"}},"version":[2,1,0]}"#,
            "onnxmltools",
        ),
        (b"\x89HDF\r\n\x1a\n\x00\x00\x00\x00", "tf2onnx"),
        (b"\x0a\x0e\x0a\x0cserving_default", "tf2onnx"),
    ];
    for (i, (bytes, converter)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("m{i}.onnx"));
        std::fs::write(&path, bytes).unwrap();
        let err = OnnxModel::load(&path).unwrap_err().to_string();
        assert!(err.contains(converter), "{converter}: {err}");
        assert!(err.contains(&format!("m{i}.onnx")), "{err}");
    }
}

#[test]
fn unsupported_operators_are_named_with_domain_and_opset() {
    // A ZipMap-free classifier with a DictVectorizer in front, as skl2onnx writes it.
    let proto = tract_onnx::pb::ModelProto {
        ir_version: 8,
        opset_import: vec![
            tract_onnx::pb::OperatorSetIdProto { domain: String::new(), version: 17 },
            tract_onnx::pb::OperatorSetIdProto { domain: "ai.onnx.ml".into(), version: 1 },
        ],
        graph: Some(tract_onnx::pb::GraphProto {
            node: vec![tract_onnx::pb::NodeProto {
                op_type: "DictVectorizer".into(),
                domain: "ai.onnx.ml".into(),
                input: vec!["X".into()],
                output: vec!["Y".into()],
                ..Default::default()
            }],
            input: vec![tensor_info("X")],
            output: vec![tensor_info("Y")],
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = OnnxModel::from_bytes(Path::new("dict.onnx"), &encode(&proto)).unwrap_err().to_string();
    assert!(err.contains("`DictVectorizer` (domain ai.onnx.ml, opset 1)"), "{err}");
    assert!(err.contains("dict.onnx"), "{err}");
    assert!(!err.contains("unsupported operator?"), "{err}");
}

fn tensor_info(name: &str) -> tract_onnx::pb::ValueInfoProto {
    use tract_onnx::pb::{TypeProto, tensor_shape_proto, type_proto};
    let dim = |v| tensor_shape_proto::Dimension { value: Some(v), ..Default::default() };
    tract_onnx::pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: 1,
                shape: Some(tract_onnx::pb::TensorShapeProto {
                    dim: vec![
                        dim(tensor_shape_proto::dimension::Value::DimParam("N".into())),
                        dim(tensor_shape_proto::dimension::Value::DimValue(2)),
                    ],
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn encode(proto: &tract_onnx::pb::ModelProto) -> Vec<u8> {
    use prost::Message;
    proto.encode_to_vec()
}

/// External data outside the model's directory is refused before anything reads it.
#[test]
fn external_data_must_stay_in_the_model_directory() {
    let source = std::fs::read(corpus("torch_mlp")).unwrap();
    let mut proto: tract_onnx::pb::ModelProto = prost::Message::decode(&source[..]).unwrap();
    let outer = tempfile::tempdir().unwrap();
    let dir = outer.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    let data = std::fs::read(corpus("torch_mlp").with_extension("onnx.data")).unwrap();
    std::fs::write(outer.path().join("outside.data"), &data).unwrap();
    std::os::unix::fs::symlink(outer.path().join("outside.data"), dir.join("link.data")).unwrap();
    for (location, why) in [
        ("../outside.data", "plain relative path"),
        ("/etc/hostname", "plain relative path"),
        ("link.data", "symbolic link"),
        ("missing.data", "cannot be read"),
    ] {
        for tensor in &mut proto.graph.as_mut().unwrap().initializer {
            for entry in &mut tensor.external_data {
                if entry.key == "location" {
                    entry.value = location.into();
                }
            }
        }
        let path = dir.join("model.onnx");
        std::fs::write(&path, encode(&proto)).unwrap();
        let err = OnnxModel::load(&path).unwrap_err().to_string();
        assert!(err.contains(why) && err.contains(location), "{location}: {err}");
        assert!(err.contains("external_data=False"), "{err}");
    }
}

/// A Scan keeps its loop-carried values between runs in tract: such a plan never reuses a
/// state (a KNeighbors model answered a 2-row batch after a 1-row one with wrong labels),
/// while plans without stateful operators keep their pool.
#[test]
fn stateful_plans_get_a_fresh_state_every_run() {
    assert!(!OnnxModel::load(&corpus("knn")).unwrap().reuses_states());
    for name in ["iris_rf", "iris_lr", "iris_mlp", "iris_gb_regressor"] {
        assert!(OnnxModel::load(&fixture(name)).unwrap().reuses_states(), "{name}");
    }
    let model = OnnxModel::load(&corpus("knn")).unwrap();
    let rows = [[5.1f32, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]];
    let run = |rows: &[[f32; 4]]| {
        let x = Tensor::new("X", vec![rows.len(), 4], TensorData::Fp32(rows.concat())).unwrap();
        model.run(vec![x]).unwrap()[0].data().clone()
    };
    let alone: Vec<_> = rows.iter().map(|r| run(std::slice::from_ref(r))).collect();
    let together = run(&rows);
    let TensorData::Int64(together) = together else { panic!("labels are int64") };
    for (i, one) in alone.iter().enumerate() {
        assert_eq!(one, &TensorData::Int64(vec![together[i]]), "row {i}");
    }
    assert_eq!(run(&rows[..1]), alone[0]);
}

/// The attention mask of a Hugging Face model exported by torch.onnx's dynamo exporter:
/// `And(true, arange(sequence)[None, None, :, None] >= k)`. tract 0.23.9's
/// `FoldUniformMask` pass computed it as `[1, 1, 1, 1]` (k = 0) or 2 rows (k = 3) instead of
/// `[1, 1, sequence, 1]`; Palisade declutters without that pass.
#[test]
fn a_boolean_mask_over_a_range_keeps_its_shape_and_values() {
    use tract_onnx::pb::{AttributeProto, NodeProto, TensorProto, tensor_shape_proto, type_proto};
    let node = |op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>| NodeProto {
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    };
    let int = |name: &str, i: i64| AttributeProto { name: name.into(), i, r#type: 2, ..Default::default() };
    let ints = |name: &str, dims: Vec<i64>, values: Vec<i64>| TensorProto {
        name: name.into(),
        data_type: 7,
        dims,
        int64_data: values,
        ..Default::default()
    };
    let info = |name: &str, dims: Vec<tensor_shape_proto::dimension::Value>| tract_onnx::pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(tract_onnx::pb::TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: 7,
                shape: Some(tract_onnx::pb::TensorShapeProto {
                    dim: dims
                        .into_iter()
                        .map(|v| tensor_shape_proto::Dimension { value: Some(v), ..Default::default() })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    use tensor_shape_proto::dimension::Value::DimParam;
    for threshold in [0i64, 3] {
        let proto = tract_onnx::pb::ModelProto {
            ir_version: 9,
            opset_import: vec![tract_onnx::pb::OperatorSetIdProto { domain: String::new(), version: 20 }],
            graph: Some(tract_onnx::pb::GraphProto {
                node: vec![
                    node("Shape", &["ids"], "shape", vec![int("start", 1), int("end", 2)]),
                    node("Squeeze", &["shape"], "n", vec![]),
                    node("Range", &["zero", "n", "one"], "range", vec![]),
                    node("Unsqueeze", &["range", "axes"], "column", vec![]),
                    node("GreaterOrEqual", &["column", "threshold"], "ge", vec![]),
                    node("And", &["true", "ge"], "mask", vec![]),
                    node("Cast", &["mask"], "y", vec![int("to", 7)]),
                ],
                initializer: vec![
                    ints("zero", vec![], vec![0]),
                    ints("one", vec![], vec![1]),
                    ints("threshold", vec![], vec![threshold]),
                    ints("axes", vec![3], vec![0, 1, 3]),
                    TensorProto {
                        name: "true".into(),
                        data_type: 9,
                        int32_data: vec![1],
                        ..Default::default()
                    },
                ],
                input: vec![info("ids", vec![DimParam("batch".into()), DimParam("sequence".into())])],
                output: vec![info("y", vec![])],
                ..Default::default()
            }),
            ..Default::default()
        };
        let model = OnnxModel::from_bytes(Path::new("mask.onnx"), &encode(&proto)).unwrap();
        let ids = Tensor::new("ids", vec![1, 8], TensorData::Int64(vec![0; 8])).unwrap();
        let out = model.run(vec![ids]).unwrap();
        assert_eq!(out[0].shape(), &[1, 1, 8, 1], "threshold {threshold}");
        let want: Vec<i64> = (0..8).map(|i| i64::from(i >= threshold)).collect();
        assert_eq!(out[0].data(), &TensorData::Int64(want), "threshold {threshold}");
    }
}
