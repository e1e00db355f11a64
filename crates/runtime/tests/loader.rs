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
