//! The README's export recipes, as `fixtures/generate.sh` ran them word for word
//! (`fixtures/models/readme/<recipe>/`: the files the recipe wrote and the README's
//! palisade.yaml): each directory builds as `palisade build` builds it (self-test, engines
//! compared where onnxruntime is), and the model answers what the framework itself
//! predicted in Python (`expected.json`: scikit-learn's `predict`/`predict_proba`,
//! PyTorch's forward pass), at batch sizes 1, 2 and 7.
//!
//! Tolerances: labels equal; FP32 within `1e-5 + 1e-5 * |expected|`; FP64 within
//! `1e-7 + 1e-6 * |expected|`: skl2onnx joins the DataFrame's columns with ONNX-ML's
//! `FeatureVectorizer`, whose output is `float` by definition, so the exported graph itself
//! rounds the float64 features to float32 once (seen: 3e-9 on 0.98) before computing in
//! float64.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use palisade_bundle::store::BuiltEngine;
use palisade_core::{Tensor, TensorData};
use serde_json::Value;

mod common;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name != "expected.json" {
            std::fs::copy(entry.path(), to.join(name)).unwrap();
        }
    }
}

fn inputs(doc: &Value, start: usize, size: usize) -> Vec<Tensor> {
    doc["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|input| {
            let width: usize = input["shape"].as_array().unwrap()[1..]
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .product();
            let values = &input["data"].as_array().unwrap()[start * width..(start + size) * width];
            let data = match input["datatype"].as_str().unwrap() {
                "FP64" => TensorData::Fp64(values.iter().map(|v| v.as_f64().unwrap()).collect()),
                "FP32" => TensorData::Fp32(values.iter().map(|v| v.as_f64().unwrap() as f32).collect()),
                other => panic!("datatype {other}"),
            };
            Tensor::new(input["name"].as_str().unwrap(), vec![size, width], data).unwrap()
        })
        .collect()
}

#[test]
fn readme_recipes_build_and_answer_what_the_framework_predicted() {
    let ort = common::onnxruntime().is_some();
    let recipes = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/readme");
    let tmp = tempfile::tempdir().unwrap();
    for recipe in ["sklearn", "pytorch"] {
        let dir = tmp.path().join(recipe);
        copy_dir(&recipes.join(recipe), &dir);
        let doc: Value = serde_json::from_str(
            &std::fs::read_to_string(recipes.join(recipe).join("expected.json")).unwrap(),
        )
        .unwrap();
        let store = palisade_bundle::Store::open(&tmp.path().join(format!("home-{recipe}"))).unwrap();
        let staged = store.stage(&dir).unwrap_or_else(|e| panic!("{recipe}: {e}"));
        let built =
            palisade_runtime::selftest::build(staged.manifest(), &staged.model_path(), &Default::default())
                .unwrap_or_else(|e| panic!("{recipe}: {e}"));
        assert_eq!(built.engine, Some(BuiltEngine::Tract), "{recipe}");
        eprintln!(
            "{recipe}: self-test {:?}, compared: {}, notes: {:?}",
            built.self_test, built.compared, built.notes
        );
        if ort && recipe == "pytorch" {
            assert!(built.compared, "{recipe}: {:?}", built.notes);
        }
        let palisade_runtime::Runnable::InProcess(model) = built.runnable else { panic!("{recipe}") };
        for (start, size) in [(0, 1), (1, 2), (3, 7), (10, 1)] {
            let outputs = model.run(inputs(&doc, start, size)).unwrap_or_else(|e| panic!("{recipe}: {e}"));
            for (name, expected) in doc["outputs"].as_object().unwrap() {
                let got = outputs
                    .iter()
                    .find(|t| t.name() == name)
                    .unwrap_or_else(|| panic!("{recipe}: no {name}"));
                let width: usize = expected["shape"].as_array().unwrap()[1..]
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .product();
                let want = &expected["data"].as_array().unwrap()[start * width..(start + size) * width];
                let (got, (abs, rel)): (Vec<f64>, _) = match got.data() {
                    TensorData::Int64(v) => (v.iter().map(|&x| x as f64).collect(), (0.0, 0.0)),
                    TensorData::Fp64(v) => (v.clone(), (1e-7, 1e-6)),
                    TensorData::Fp32(v) => (v.iter().map(|&x| f64::from(x)).collect(), (1e-5, 1e-5)),
                    other => panic!("{recipe}: {name} is {:?}", other.datatype()),
                };
                assert_eq!(got.len(), want.len(), "{recipe}: {name}");
                for (i, (g, w)) in got.iter().zip(want).enumerate() {
                    let w = w.as_f64().unwrap();
                    assert!((g - w).abs() <= abs + rel * w.abs(), "{recipe}: {name}[{i}] = {g}, Python {w}");
                }
            }
        }
    }
}
