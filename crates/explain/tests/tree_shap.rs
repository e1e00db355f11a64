//! TreeSHAP against shap.TreeExplainer (path-dependent) on the very trees of skl2onnx
//! exports, with the same background-derived covers (fixtures/explain.py), and additivity.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::needless_range_loop, missing_docs)]

use std::path::PathBuf;

use palisade_explain::{Covers, TreeEnsemble, TreeShap, covers_from_background};
use palisade_onnx_ml::{
    ClassLabels, ClassifierAttributes, LeafAttributes, NodeAttributes, PostTransform, RegressorAttributes,
    TreeEnsembleClassifier, TreeEnsembleRegressor,
};
use serde_json::Value;

const FIXTURES: [&str; 6] =
    ["wine_rf", "iris_gb", "iris_binary_rf", "cancer_gb", "diabetes_rf", "diabetes_gb"];

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../fixtures/explain/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().map_or(f32::NAN, |f| f as f32)).collect()
}

fn rows(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().flat_map(floats).collect()
}

/// Scores of `n_rows` rows of `n_features`.
type Scores = Box<dyn Fn(&[f32], usize, usize) -> Vec<f32>>;

/// The model of a fixture: (ensemble, onnx-ml's own scores with post_transform NONE).
struct Model {
    ensemble: TreeEnsemble,
    scores_none: Scores,
}

fn model(a: &Value) -> Model {
    let nodes = NodeAttributes {
        tree_ids: ints(&a["nodes_treeids"]),
        node_ids: ints(&a["nodes_nodeids"]),
        feature_ids: ints(&a["nodes_featureids"]),
        values: floats(&a["nodes_values"]),
        modes: a["nodes_modes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().parse().unwrap())
            .collect(),
        true_node_ids: ints(&a["nodes_truenodeids"]),
        false_node_ids: ints(&a["nodes_falsenodeids"]),
        missing_value_tracks_true: ints(&a["nodes_missing_value_tracks_true"])
            .iter()
            .map(|&v| v == 1)
            .collect(),
    };
    let leaves = LeafAttributes {
        tree_ids: ints(&a["leaf_treeids"]),
        node_ids: ints(&a["leaf_nodeids"]),
        ids: ints(&a["leaf_ids"]),
        weights: floats(&a["leaf_weights"]),
    };
    let base_values = floats(&a["base_values"]);
    let post_transform: PostTransform = a["post_transform"].as_str().unwrap().parse().unwrap();
    if a["kind"] == "classifier" {
        let n = a["n_classes"].as_u64().unwrap() as i64;
        let attrs = ClassifierAttributes {
            nodes,
            leaves,
            class_labels: ClassLabels::Int64((0..n).collect()),
            base_values,
            post_transform,
        };
        let model = TreeEnsembleClassifier::new(attrs.clone()).unwrap();
        let none = TreeEnsembleClassifier::new(ClassifierAttributes {
            post_transform: PostTransform::None,
            ..attrs
        })
        .unwrap();
        Model {
            ensemble: TreeEnsemble::from_classifier(&model).unwrap(),
            scores_none: Box::new(move |x, r, f| none.predict(x, r, f).unwrap().scores),
        }
    } else {
        let attrs = RegressorAttributes {
            nodes,
            leaves,
            n_targets: a["n_targets"].as_i64().unwrap(),
            base_values,
            post_transform,
            aggregate_function: a["aggregate_function"].as_str().unwrap().parse().unwrap(),
        };
        let model = TreeEnsembleRegressor::new(attrs).unwrap();
        let ensemble = TreeEnsemble::from_regressor(&model).unwrap();
        Model { ensemble, scores_none: Box::new(move |x, r, f| model.predict(x, r, f).unwrap()) }
    }
}

#[test]
fn covers_match_the_oracle_routing_exactly() {
    for name in FIXTURES {
        let f = fixture(name);
        let m = model(&f["attributes"]);
        let n_features = f["n_features"].as_u64().unwrap() as usize;
        let background = rows(&f["background"]);
        let covers =
            covers_from_background(&m.ensemble, &background, background.len() / n_features, n_features)
                .unwrap();
        let expected: Vec<f64> =
            f["covers"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(covers.counts(), expected.as_slice(), "{name}");
        // Stored covers load back, and edited ones are refused.
        Covers::from_counts(&m.ensemble, expected.clone()).unwrap();
        let mut edited = expected.clone();
        edited[1] += 1.0;
        assert!(Covers::from_counts(&m.ensemble, edited).is_err(), "{name}");
        assert!(Covers::from_counts(&m.ensemble, expected[1..].to_vec()).is_err(), "{name}");
    }
}

#[test]
fn shap_values_match_shap_tree_explainer_and_add_up() {
    for name in FIXTURES {
        let f = fixture(name);
        let m = model(&f["attributes"]);
        let n_features = f["n_features"].as_u64().unwrap() as usize;
        let background = rows(&f["background"]);
        let covers =
            covers_from_background(&m.ensemble, &background, background.len() / n_features, n_features)
                .unwrap();
        let x = rows(&f["rows"]);
        let n_rows = x.len() / n_features;
        // Per-leaf tables, some trees tabled, and the recursive walk alone.
        for budget in [palisade_explain::MAX_TABLE_ENTRIES, 3000, 0] {
            let shap = TreeShap::with_table_budget(m.ensemble.clone(), &covers, budget).unwrap();
            let e = shap.explain(&x, n_rows, n_features).unwrap();
            let oracle = f["shap_values"].as_array().unwrap();
            let expected: Vec<f64> =
                f["expected_value"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert_eq!(e.n_outputs, oracle.len(), "{name}");
            let mut worst = 0.0f64;
            for (o, per_output) in oracle.iter().enumerate() {
                assert!((e.expected_value[o] - expected[o]).abs() < 1e-6, "{name} expected {o}");
                for (r, per_row) in per_output.as_array().unwrap().iter().enumerate() {
                    for (j, v) in per_row.as_array().unwrap().iter().enumerate() {
                        let got = e.value(o, r, j).unwrap();
                        worst = worst.max((got - v.as_f64().unwrap()).abs());
                    }
                }
            }
            assert!(worst < 1e-6, "{name}: largest difference from shap {worst:e}");

            // Additivity: expected + sum of values = the margin, to 1e-6.
            let ort = rows(&f["onnxruntime_raw_margins"]);
            let onnx_ml = (m.scores_none)(&x, n_rows, n_features);
            for r in 0..n_rows {
                for o in 0..e.n_outputs {
                    let sum: f64 =
                        (0..n_features).map(|j| e.value(o, r, j).unwrap()).sum::<f64>() + e.expected_value[o];
                    let margin = e.margins[r * e.n_outputs + o];
                    assert!((sum - margin).abs() < 1e-6, "{name} row {r} output {o}: {sum} vs {margin}");
                    // The f64 margin is onnxruntime's f32 score with post_transform NONE, and
                    // onnx-ml's, up to f32 rounding of the sums.
                    let tolerance = 1e-5 * margin.abs().max(1.0);
                    assert!(
                        (margin - f64::from(ort[r * e.n_outputs + o])).abs() < tolerance,
                        "{name} ort {r} {o}"
                    );
                    assert!(
                        (margin - f64::from(onnx_ml[r * e.n_outputs + o])).abs() < tolerance,
                        "{name} onnx-ml {r} {o}"
                    );
                }
            }
            println!(
                "{name} (table budget {budget}): {} outputs, largest |TreeSHAP - shap| {worst:.2e}",
                e.n_outputs
            );
        }
    }
}

#[test]
fn expected_value_is_the_mean_margin_over_the_background() {
    for name in FIXTURES {
        let f = fixture(name);
        let m = model(&f["attributes"]);
        let n_features = f["n_features"].as_u64().unwrap() as usize;
        let background = rows(&f["background"]);
        let n = background.len() / n_features;
        let covers = covers_from_background(&m.ensemble, &background, n, n_features).unwrap();
        let shap = TreeShap::new(m.ensemble.clone(), &covers).unwrap();
        let mut mean = vec![0.0; m.ensemble.n_outputs()];
        let mut out = vec![0.0; m.ensemble.n_outputs()];
        for row in background.chunks_exact(n_features) {
            m.ensemble.margin(row, &mut out).unwrap();
            for (a, b) in mean.iter_mut().zip(&out) {
                *a += b / n as f64;
            }
        }
        for (a, b) in mean.iter().zip(shap.expected_value()) {
            assert!((a - b).abs() < 1e-9, "{name}: {a} vs {b}");
        }
    }
}

#[test]
fn bad_inputs_are_errors() {
    let f = fixture("iris_gb");
    let m = model(&f["attributes"]);
    assert!(covers_from_background(&m.ensemble, &[], 0, 4).is_err());
    assert!(covers_from_background(&m.ensemble, &[1.0; 7], 2, 4).is_err());
    assert!(covers_from_background(&m.ensemble, &[1.0; 6], 2, 3).is_err());
    let covers = covers_from_background(&m.ensemble, &[1.0; 8], 2, 4).unwrap();
    let shap = TreeShap::new(m.ensemble.clone(), &covers).unwrap();
    assert!(shap.explain(&[1.0; 7], 2, 4).is_err());
    assert!(shap.explain(&[1.0; 3], 1, 3).is_err());
    assert!(shap.explain(&[], usize::MAX, 0).is_err());
    assert!(shap.explain(&[], 3, 0).is_err());
    assert!(covers_from_background(&m.ensemble, &[], 3, 0).is_err());
    // A node no background row reaches still gives finite, additive values.
    let e = shap.explain(&[7.0, 3.0, 6.0, 2.0, f32::NAN, 1.0, 1.0, 0.1], 2, 4).unwrap();
    for r in 0..2 {
        for o in 0..3 {
            let s: f64 = (0..4).map(|j| e.value(o, r, j).unwrap()).sum::<f64>() + e.expected_value[o];
            assert!((s - e.margins[r * 3 + o]).abs() < 1e-9);
        }
    }
}

/// A fixed amount of work for `perf stat -e cycles:u` comparisons (run by hand with
/// `--ignored`; cycles count only this process, unlike wall time on a shared machine).
#[test]
#[ignore]
fn wine_rf_explains_2000_rows() {
    let f = fixture("wine_rf");
    let m = model(&f["attributes"]);
    let background = rows(&f["background"]);
    let covers = covers_from_background(&m.ensemble, &background, background.len() / 13, 13).unwrap();
    let budget =
        std::env::var("TABLE_BUDGET").map_or(palisade_explain::MAX_TABLE_ENTRIES, |v| v.parse().unwrap());
    let shap = TreeShap::with_table_budget(m.ensemble, &covers, budget).unwrap();
    let x: Vec<f32> = background.iter().cycle().take(100 * 13).copied().collect();
    // LOOPS=0 measures the setup alone.
    let loops = std::env::var("LOOPS").map_or(20, |v| v.parse().unwrap());
    for _ in 0..loops {
        std::hint::black_box(shap.explain(&x, 100, 13).unwrap());
    }
}
