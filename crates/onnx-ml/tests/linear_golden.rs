//! Random linear models and normalizers against onnxruntime's outputs, bit for bit.
//!
//! `golden/linear_random.json` is written by `golden/generate_linear.py` (run it with the
//! fixtures virtualenv): 100 random `LinearClassifier`s and `LinearRegressor`s (every
//! post-transform, binary classifiers, int and string labels, 1 to 1100 features) run by
//! onnxruntime on a batch of rows and on the first row alone, and 50 `Normalizer`s on
//! float, double, int64 and int32 rows. Cases marked with a tolerance are those where
//! Palisade knowingly differs by a few ulps (SOFTMAX over five or more scores).

// Helpers outside #[test] functions count as library code for clippy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_onnx_ml::{
    ClassLabels, LinearClassifier, LinearClassifierAttributes, LinearRegressor, LinearRegressorAttributes,
    Norm, Normalizer,
};
use serde_json::Value;

fn ints(case: &Value, key: &str) -> Vec<i64> {
    case[key].as_array().unwrap_or_else(|| panic!("{key}")).iter().map(|v| v.as_i64().unwrap()).collect()
}

/// f32 values stored as bit patterns.
fn floats(case: &Value, key: &str) -> Vec<f32> {
    ints(case, key).into_iter().map(|b| f32::from_bits(u32::try_from(b).unwrap())).collect()
}

fn text(case: &Value, key: &str) -> String {
    case[key].as_str().unwrap_or_else(|| panic!("{key}")).to_owned()
}

/// Asserts equal bits (NaN matching NaN), or values within `tolerance` when given;
/// returns the largest difference.
#[track_caller]
fn assert_matches(case: usize, what: &str, actual: &[f32], expected: &[f32], tolerance: Option<f32>) -> f32 {
    assert_eq!(actual.len(), expected.len(), "case {case}: {what} length");
    let mut max = 0.0f32;
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let same = a.to_bits() == e.to_bits() || (a.is_nan() && e.is_nan());
        let close = tolerance.is_some_and(|t| (a - e).abs() <= t);
        assert!(same || close, "case {case}: {what}[{i}] is {a:e}, onnxruntime gave {e:e}");
        if !same {
            max = max.max((a - e).abs());
        }
    }
    max
}

fn cases() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/linear_random.json");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    json["cases"].as_array().unwrap().clone()
}

#[test]
fn random_linear_models_match_onnxruntime_bit_for_bit() {
    let (mut classifiers, mut regressors, mut exact) = (0, 0, 0);
    let mut max_deviation = 0.0f32;
    for (k, case) in cases().iter().enumerate() {
        let op = text(case, "op");
        if op == "Normalizer" {
            continue;
        }
        let n_features = usize::try_from(case["n_features"].as_u64().unwrap()).unwrap();
        let rows = floats(case, "rows");
        let n_rows = rows.len() / n_features;
        let post_transform = text(case, "post_transform").parse().unwrap();
        let tolerance = case["tolerance"].as_f64().map(|t| t as f32);
        exact += usize::from(tolerance.is_none());
        let runs = [("batch", &rows[..], n_rows), ("single", &rows[..n_features], 1)];
        if op == "LinearClassifier" {
            let labels = case["class_labels"].as_array().unwrap();
            let class_labels = if case["strings"].as_bool().unwrap() {
                ClassLabels::Strings(labels.iter().map(|l| l.as_str().unwrap().to_owned()).collect())
            } else {
                ClassLabels::Int64(labels.iter().map(|l| l.as_i64().unwrap()).collect())
            };
            let model = LinearClassifier::new(LinearClassifierAttributes {
                coefficients: floats(case, "coefficients"),
                intercepts: floats(case, "intercepts"),
                class_labels,
                post_transform,
            })
            .unwrap_or_else(|e| panic!("case {k}: {e}"));
            for (run, x, n) in runs {
                let out = model.predict(x, n, n_features).unwrap_or_else(|e| panic!("case {k}: {e}"));
                let expected: Vec<usize> = ints(case, &format!("{run}_labels"))
                    .into_iter()
                    .map(|l| usize::try_from(l).unwrap())
                    .collect();
                assert_eq!(out.labels, expected, "case {k}: {run} labels");
                let scores = floats(case, &format!("{run}_scores"));
                max_deviation = max_deviation.max(assert_matches(k, run, &out.scores, &scores, tolerance));
            }
            classifiers += 1;
        } else {
            let model = LinearRegressor::new(LinearRegressorAttributes {
                coefficients: floats(case, "coefficients"),
                intercepts: floats(case, "intercepts"),
                targets: case["targets"].as_i64().unwrap(),
                post_transform,
            })
            .unwrap_or_else(|e| panic!("case {k}: {e}"));
            for (run, x, n) in runs {
                let out = model.predict(x, n, n_features).unwrap_or_else(|e| panic!("case {k}: {e}"));
                let values = floats(case, &format!("{run}_scores"));
                max_deviation = max_deviation.max(assert_matches(k, run, &out, &values, tolerance));
            }
            regressors += 1;
        }
    }
    assert!(classifiers >= 40 && regressors >= 40, "{classifiers} classifiers, {regressors} regressors");
    assert!(exact >= 80, "only {exact} cases compared bit for bit");
    eprintln!("{exact} cases bit for bit; largest difference in the others: {max_deviation:e}");
}

#[test]
fn random_normalizers_match_onnxruntime_bit_for_bit() {
    let mut seen = 0;
    for (k, case) in cases().iter().enumerate() {
        if case["op"] != "Normalizer" {
            continue;
        }
        let normalizer = Normalizer::new(text(case, "norm").parse::<Norm>().unwrap());
        let n_columns = usize::try_from(case["n_columns"].as_u64().unwrap()).unwrap();
        let expected = floats(case, "expected");
        let n_rows = expected.len() / n_columns;
        let mut out = vec![0.0f32; expected.len()];
        let values = case["rows"].as_array().unwrap();
        match text(case, "dtype").as_str() {
            "float" => {
                let x = floats(case, "rows");
                normalizer.normalize_into(&x, n_rows, n_columns, &mut out).unwrap();
                let mut in_place = x.clone();
                normalizer.normalize_in_place(&mut in_place, n_rows, n_columns).unwrap();
                assert_matches(k, "in place", &in_place, &expected, None);
            }
            "double" => {
                let x: Vec<f64> = values.iter().map(|v| f64::from_bits(v.as_u64().unwrap())).collect();
                normalizer.normalize_into(&x, n_rows, n_columns, &mut out).unwrap();
            }
            "int64" => normalizer.normalize_into(&ints(case, "rows"), n_rows, n_columns, &mut out).unwrap(),
            "int32" => {
                let x: Vec<i32> = ints(case, "rows").into_iter().map(|v| i32::try_from(v).unwrap()).collect();
                normalizer.normalize_into(&x, n_rows, n_columns, &mut out).unwrap();
            }
            other => panic!("case {k}: dtype {other}"),
        }
        assert_matches(k, "normalized", &out, &expected, None);
        seen += 1;
    }
    assert!(seen >= 40, "only {seen} normalizers");
}
