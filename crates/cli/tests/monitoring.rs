//! `palisade build` with `monitoring:`: the reference files are read and checked against the
//! signature, the Mahalanobis parameters (scipy's oracle) and the drift reference are stored
//! in the bundle under its digest, the IsolationForest model is copied in, and bad
//! references are refused naming file, field and fix.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::*;

/// A model directory with the iris classifier, `reference` as `name`, the fixture forest as
/// iforest.onnx, and `monitoring` (YAML lines under `monitoring:`).
fn model_dir(tmp: &Path, monitoring: &str, name: &str, reference: &[u8]) -> PathBuf {
    let dir = tmp.join("model");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(repo().join("fixtures/models/iris_lr_nozipmap.onnx"), dir.join("model.onnx")).unwrap();
    std::fs::copy(repo().join("fixtures/monitoring/iforest.onnx"), dir.join("iforest.onnx")).unwrap();
    std::fs::write(dir.join(name), reference).unwrap();
    std::fs::write(
        dir.join("palisade.yaml"),
        format!(
            "name: m\nversion: \"1.0.0\"\nowners: [alice@example.com]\nmodel:\n  path: model.onnx\n  format: onnx\nmonitoring:\n{monitoring}"
        ),
    )
    .unwrap();
    dir
}

fn bundle_dir(home: &Path, out: &Output) -> PathBuf {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let built: Value = serde_json::from_slice(&out.stdout).unwrap();
    home.join("bundles").join(built["digest"].as_str().unwrap().trim_start_matches("sha256:"))
}

fn indexed(bundle: &Path, file: &str) -> bool {
    let index: Value = serde_json::from_slice(&std::fs::read(bundle.join("bundle.json")).unwrap()).unwrap();
    index["files"].as_array().unwrap().iter().any(|f| f["path"] == file)
}

#[test]
fn the_build_stores_the_fitted_scorer_and_the_sorted_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = std::fs::read(repo().join("fixtures/monitoring/reference.csv")).unwrap();
    let dir = model_dir(
        tmp.path(),
        "  outliers: {method: mahalanobis, reference: ref.csv}\n  drift: {reference: ref.csv, window: 50}\n",
        "ref.csv",
        &reference,
    );
    let home = tmp.path().join("home");
    let out = build_json(&home, &dir);
    let bundle = bundle_dir(&home, &out);
    assert!(indexed(&bundle, "monitoring.json"), "covered by the digest");
    assert!(!indexed(&bundle, "ref.csv"), "the reference is not copied");
    let record: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("monitoring.json")).unwrap()).unwrap();
    assert_eq!(
        record["features"],
        serde_json::json!(["sepal_length", "sepal_width", "petal_length", "petal_width"])
    );
    let oracle: Value =
        serde_json::from_slice(&std::fs::read(repo().join("fixtures/monitoring/oracle.json")).unwrap())
            .unwrap();
    let threshold = record["outliers"]["threshold"].as_f64().unwrap();
    let want = oracle["mahalanobis_threshold_q99"].as_f64().unwrap();
    assert!((threshold - want).abs() < 1e-9 * want, "threshold {threshold} vs numpy {want}");
    assert_eq!(record["outliers"]["referenceRows"], 150);
    let columns = record["drift"]["columns"].as_array().unwrap();
    assert_eq!(columns.len(), 4);
    let first: Vec<f64> = columns[0].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(first.len(), 150);
    assert!(first.windows(2).all(|w| w[0] <= w[1]), "sorted");
    assert_eq!(record["drift"]["window"], 50);
    let built: Value = serde_json::from_slice(&out.stdout).unwrap();
    let notes = built["notes"].to_string();
    assert!(notes.contains("outliers: Mahalanobis over 150 reference rows"), "{notes}");

    // The forest is copied into the bundle and covered by the digest.
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_dir(
        tmp.path(),
        "  outliers: {method: isolation_forest, model: iforest.onnx}\n",
        "unused.csv",
        b"",
    );
    let home = tmp.path().join("home");
    let bundle = bundle_dir(&home, &build_json(&home, &dir));
    assert!(indexed(&bundle, "iforest.onnx") && indexed(&bundle, "monitoring.json"));
}

fn refused(monitoring: &str, name: &str, reference: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let dir = model_dir(tmp.path(), monitoring, name, reference.as_bytes());
    let out = build_json(&tmp.path().join("home"), &dir);
    assert_eq!(out.status.code(), Some(64), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(!tmp.path().join("home/models/m").exists(), "nothing was stored");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_references_are_refused_naming_file_field_and_fix() {
    let mahal = "  outliers: {method: mahalanobis, reference: ref.csv}\n";
    let drift = "  drift: {reference: ref.csv}\n";
    let err = refused(mahal, "ref.csv", "a,b,c\n1,2,3\n4,5,6\n");
    assert!(err.contains("field `monitoring.outliers.reference`") && err.contains("ref.csv:"), "{err}");
    assert!(err.contains("it has 3 features (a, b, c), but the model's input `X` takes 4"), "{err}");
    assert!(err.contains("hint:") && err.contains("docs/monitoring.md"), "{err}");
    let err = refused(drift, "ref.csv", "a,b,c,d\n1,2,3,4\n1,2,x,4\n");
    assert!(err.contains("field `monitoring.drift.reference`"), "{err}");
    assert!(err.contains("line 3, column 3 (`c`): `x` is not a number"), "{err}");
    let err = refused(drift, "ref.csv", "");
    assert!(err.contains("it is empty"), "{err}");
    let err = refused(drift, "ref.csv", "a,b,c,d\n");
    assert!(err.contains("it has no rows"), "{err}");
    let err = refused(mahal, "ref.csv", "a,b,c,d\n1,2,,4\n5,6,7,8\n");
    assert!(err.contains("row 1, feature `c` is missing (NaN)"), "{err}");
    let err = refused("  drift: {reference: ref.npy}\n", "ref.npy", "a,b,c,d\n1,2,3,4\n");
    assert!(err.contains("not a .npy file"), "{err}");
    let err = refused("  drift: {reference: missing.csv}\n", "ref.csv", "a,b,c,d\n1,2,3,4\n");
    assert!(err.contains("monitoring.drift.reference") && err.contains("missing.csv"), "{err}");
    let err = refused("  outliers: {method: isolation_forest, model: model.onnx}\n", "ref.csv", "");
    assert!(err.contains("monitoring.outliers.model") && err.contains("a file of the model itself"), "{err}");
    // An empty file is no ONNX model.
    let err = refused("  outliers: {method: isolation_forest, model: forest.onnx}\n", "forest.onnx", "");
    assert!(err.contains("field `monitoring.outliers.model`") && err.contains("skl2onnx"), "{err}");
    let err = refused("  drift: {reference: ref.csv, window: 20000}\n", "ref.csv", "a,b,c,d\n1,2,3,4\n");
    assert!(err.contains("monitoring.drift.window") && err.contains("1 to 10000"), "{err}");
}

#[test]
fn a_changed_monitoring_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = std::fs::read(repo().join("fixtures/monitoring/reference.csv")).unwrap();
    let dir = model_dir(
        tmp.path(),
        "  outliers: {method: mahalanobis, reference: ref.csv}\n",
        "ref.csv",
        &reference,
    );
    let home = tmp.path().join("home");
    let bundle = bundle_dir(&home, &build_json(&home, &dir));
    let file = bundle.join("monitoring.json");
    let mut record: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    record["outliers"]["threshold"] = serde_json::json!(1e9);
    std::fs::write(&file, serde_json::to_vec(&record).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .arg("--home")
        .arg(&home)
        .args(["models", "show", "m"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("was modified and is refused: file `monitoring.json`"), "{err}");
}
