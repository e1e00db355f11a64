//! `palisade build` with `explainer:`: the background is read and checked against the
//! signature, TreeSHAP's covers (shap's oracle fixtures) or KernelSHAP's rows are stored
//! in the bundle under its digest, and bad backgrounds are refused naming file, field and fix.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::*;

fn fixture(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(repo().join(format!("fixtures/explain/{name}.json"))).unwrap())
        .unwrap()
}

fn csv(features: &[String], rows: &[Value]) -> String {
    let mut text = features.join(",") + "\n";
    for row in rows {
        let cells: Vec<String> =
            row.as_array().unwrap().iter().map(|v| format!("{}", v.as_f64().unwrap())).collect();
        text += &(cells.join(",") + "\n");
    }
    text
}

/// A model directory with `model` (copied from `onnx`), `background` and an explainer.
fn model_dir(tmp: &Path, onnx: &Path, kind: &str, background_name: &str, background: &[u8]) -> PathBuf {
    let dir = tmp.join("model");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(onnx, dir.join("model.onnx")).unwrap();
    std::fs::write(dir.join(background_name), background).unwrap();
    std::fs::write(
        dir.join("palisade.yaml"),
        format!(
            "name: m\nversion: \"1.0.0\"\nowners: [alice@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\nexplainer:\n  type: {kind}\n  background: {background_name}\n"
        ),
    )
    .unwrap();
    dir
}

fn stored_record(home: &Path, out: &Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let built: Value = serde_json::from_slice(&out.stdout).unwrap();
    let digest = built["digest"].as_str().unwrap().trim_start_matches("sha256:");
    let bundle = home.join("bundles").join(digest);
    let index: Value = serde_json::from_slice(&std::fs::read(bundle.join("bundle.json")).unwrap()).unwrap();
    assert!(
        index["files"].as_array().unwrap().iter().any(|f| f["path"] == "explainer.json"),
        "the explainer file is covered by the digest: {index}"
    );
    serde_json::from_slice(&std::fs::read(bundle.join("explainer.json")).unwrap()).unwrap()
}

#[test]
fn tree_shap_covers_match_the_oracle_for_a_classifier_and_a_regressor() {
    // The pipelines' covers count the background after their Imputer and Scaler.
    for name in ["wine_rf", "diabetes_gb", "wine_imputed_rf", "diabetes_scaled_gb"] {
        let tmp = tempfile::tempdir().unwrap();
        let oracle = fixture(name);
        let n = oracle["n_features"].as_u64().unwrap() as usize;
        let features: Vec<String> = (0..n).map(|i| format!("f{i}")).collect();
        let text = csv(&features, oracle["background"].as_array().unwrap());
        let onnx = repo().join(format!("fixtures/explain/{name}.onnx"));
        let dir = model_dir(tmp.path(), &onnx, "TreeShap", "background.csv", text.as_bytes());
        let home = tmp.path().join("home");
        let record = stored_record(&home, &build_json(&home, &dir));
        assert_eq!(record["type"], "TreeShap");
        assert_eq!(record["features"].as_array().unwrap().len(), n);
        assert_eq!(record["backgroundRows"], oracle["background"].as_array().unwrap().len());
        assert_eq!(record["covers"], oracle["covers"], "{name}");
    }
}

#[test]
fn kernel_shap_stores_the_rows_and_npy_works() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = [[5.1f64, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]];
    let mut header = String::from("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy.extend_from_slice(header.as_bytes());
    npy.extend(rows.iter().flatten().flat_map(|v| v.to_le_bytes()));
    let onnx = repo().join("fixtures/models/iris_lr_nozipmap.onnx");
    let dir = model_dir(tmp.path(), &onnx, "KernelShap", "bg.npy", &npy);
    let home = tmp.path().join("home");
    let record = stored_record(&home, &build_json(&home, &dir));
    assert_eq!(record["type"], "KernelShap");
    assert_eq!(record["features"], serde_json::json!(["x0", "x1", "x2", "x3"]));
    let stored: Vec<f32> =
        record["rows"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    let expected: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
    assert_eq!(stored, expected);
}

fn refused(onnx: &str, kind: &str, name: &str, background: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_dir(tmp.path(), &repo().join(onnx), kind, name, background.as_bytes());
    let out = build_json(&tmp.path().join("home"), &dir);
    assert_eq!(out.status.code(), Some(64), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(!tmp.path().join("home/models/m").exists(), "nothing was stored");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_backgrounds_and_models_are_refused_naming_file_field_and_fix() {
    let iris = "fixtures/models/iris_rf_nozipmap.onnx";
    let err = refused(iris, "TreeShap", "bg.csv", "a,b,c\n1,2,3\n");
    assert!(err.contains("field `explainer.background`") && err.contains("bg.csv"), "{err}");
    assert!(err.contains("it has 3 features (a, b, c), but the model's input `X` takes 4"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    let err = refused(iris, "TreeShap", "bg.csv", "a,b,c,d\n1,2,3,x\n");
    assert!(err.contains("line 2, column 4 (`d`): `x` is not a number"), "{err}");
    let err = refused(iris, "TreeShap", "bg.csv", "1,2,3,4\n1,2,3,4\n");
    assert!(err.contains("header"), "{err}");
    let err = refused(iris, "TreeShap", "bg.csv", "a,b,c,d\n1,2,,4\n");
    assert!(err.contains("row 1, feature `c` is missing (NaN)"), "{err}");
    let err = refused(iris, "TreeShap", "bg.npy", "a,b,c,d\n1,2,3,4\n");
    assert!(err.contains("not a .npy file"), "{err}");
    let err =
        refused("fixtures/models/corpus/scaler_logreg.onnx", "TreeShap", "bg.csv", "a,b,c,d\n1,2,3,4\n");
    assert!(err.contains("field `explainer.type`") && err.contains("no TreeEnsembleClassifier"), "{err}");
    assert!(err.contains("KernelShap"), "{err}");
    let err =
        refused("fixtures/models/corpus/lightgbm_binary.onnx", "TreeShap", "bg.csv", "a,b,c,d\n1,2,3,4\n");
    assert!(err.contains("runs `Mul` besides its trees"), "{err}");
    let err = refused(
        "fixtures/models/corpus/tree_ensemble_v5_rf.onnx",
        "TreeShap",
        "bg.csv",
        "a,b,c,d\n1,2,3,4\n",
    );
    assert!(err.contains("it has 4 features (a, b, c, d), but the model's input `X` takes 3"), "{err}");
    let mut many = String::from("a,b,c,d\n");
    for _ in 0..1001 {
        many += "1,2,3,4\n";
    }
    let err = refused(iris, "KernelShap", "bg.csv", &many);
    assert!(err.contains("1001 rows; KernelShap keeps at most 1000"), "{err}");
    let err = refused(iris, "KernelShap", "../bg.csv", "a,b,c,d\n1,2,3,4\n");
    assert!(err.contains("explainer.background"), "{err}");
}

#[test]
fn a_changed_explainer_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let oracle = fixture("diabetes_gb");
    let features: Vec<String> = (0..10).map(|i| format!("f{i}")).collect();
    let text = csv(&features, oracle["background"].as_array().unwrap());
    let dir = model_dir(
        tmp.path(),
        &repo().join("fixtures/explain/diabetes_gb.onnx"),
        "TreeShap",
        "bg.csv",
        text.as_bytes(),
    );
    let home = tmp.path().join("home");
    let out = build_json(&home, &dir);
    let record = stored_record(&home, &out);
    let built: Value = serde_json::from_slice(&out.stdout).unwrap();
    let digest = built["digest"].as_str().unwrap().trim_start_matches("sha256:");
    let file = home.join("bundles").join(digest).join("explainer.json");
    let mut changed = record.clone();
    changed["covers"][0] = serde_json::json!(1e9);
    std::fs::write(&file, serde_json::to_vec(&changed).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .arg("--home")
        .arg(&home)
        .args(["models", "show", "m"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("was modified and is refused: file `explainer.json`"), "{err}");
}

#[test]
fn an_opset_5_tree_ensemble_builds_with_tree_shap() {
    let tmp = tempfile::tempdir().unwrap();
    let onnx = repo().join("fixtures/models/corpus/tree_ensemble_v5_rf.onnx");
    let background = b"a,b,c\n0.1,0.2,0.3\n0.5,0.5,0.5\n0.9,0.1,0.7\n";
    let dir = model_dir(tmp.path(), &onnx, "TreeShap", "bg.csv", background);
    let home = tmp.path().join("home");
    let record = stored_record(&home, &build_json(&home, &dir));
    assert_eq!(record["type"], "TreeShap");
    let covers: Vec<f64> = record["covers"].as_array().unwrap().iter().map(|c| c.as_f64().unwrap()).collect();
    // Every tree's root sees the three background rows.
    assert!(
        covers.iter().filter(|&&c| c == 3.0).count() >= 1 && covers.iter().all(|&c| c <= 3.0),
        "{covers:?}"
    );
}
