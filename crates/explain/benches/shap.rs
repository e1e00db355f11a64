//! TreeSHAP on the wine random forest (100 trees, 13 features, 3 classes) and KernelSHAP
//! with 12 features and 100 background rows, on the rows shap was timed on
//! (fixtures/explain/timing.json, written by fixtures/explain.py). See BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::convert::Infallible;
use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_explain::{KernelShap, KernelShapOptions, TreeEnsemble, TreeShap, covers_from_background};
use palisade_onnx_ml::{
    ClassLabels, ClassifierAttributes, LeafAttributes, NodeAttributes, PostTransform, TreeEnsembleClassifier,
};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../fixtures/explain/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
}

fn floats(v: &Value) -> Vec<f32> {
    fn walk(v: &Value, out: &mut Vec<f32>) {
        match v {
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            x => out.push(x.as_f64().unwrap() as f32),
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out
}

fn wine_rf(table_budget: usize) -> TreeShap {
    let f = fixture("wine_rf");
    let a = &f["attributes"];
    let model = TreeEnsembleClassifier::new(ClassifierAttributes {
        nodes: NodeAttributes {
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
            missing_value_tracks_true: vec![],
        },
        leaves: LeafAttributes {
            tree_ids: ints(&a["leaf_treeids"]),
            node_ids: ints(&a["leaf_nodeids"]),
            ids: ints(&a["leaf_ids"]),
            weights: floats(&a["leaf_weights"]),
        },
        class_labels: ClassLabels::Int64(vec![0, 1, 2]),
        base_values: vec![],
        post_transform: PostTransform::None,
    })
    .unwrap();
    let ensemble = TreeEnsemble::from_classifier(&model).unwrap();
    let background = floats(&f["background"]);
    let covers = covers_from_background(&ensemble, &background, background.len() / 13, 13).unwrap();
    TreeShap::with_table_budget(ensemble, &covers, table_budget).unwrap()
}

/// The polynomial model of fixtures/explain.py (two outputs, the second clipped at 0).
fn poly(model: &Value) -> impl Fn(&[f32], usize) -> Result<Vec<f64>, Infallible> {
    let mat = |v: &Value| -> Vec<Vec<f64>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
            .collect()
    };
    let linear = mat(&model["linear"]);
    let weights = mat(&model["pair_weights"]);
    let pairs: Vec<(usize, usize)> = model["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap() as usize, p[1].as_u64().unwrap() as usize))
        .collect();
    let bias: Vec<f64> = model["bias"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    move |rows: &[f32], n: usize| {
        let m = linear[0].len();
        let mut out = vec![0.0; 2 * n];
        for (r, x) in rows.chunks_exact(m).enumerate() {
            for o in 0..2 {
                let mut v = bias[o];
                for (j, &xj) in x.iter().enumerate() {
                    v += f64::from(xj) * linear[o][j];
                }
                for (&(i, j), &w) in pairs.iter().zip(&weights[o]) {
                    v += w * f64::from(x[i]) * f64::from(x[j]);
                }
                out[2 * r + o] = if o == 0 { v } else { v.max(0.0) };
            }
        }
        Ok(out)
    }
}

fn benches(c: &mut Criterion) {
    let timing = fixture("timing");
    let rows = floats(&timing["tree_rows"]);
    for (name, budget) in [("tables", palisade_explain::MAX_TABLE_ENTRIES), ("recursive", 0)] {
        let shap = wine_rf(budget);
        let mut at = 0usize;
        c.bench_function(&format!("tree_shap/wine_rf_100_trees_13_features/{name}/one_row"), |b| {
            b.iter(|| {
                let row = &rows[at * 13..(at + 1) * 13];
                at = (at + 1) % 100;
                black_box(shap.explain(black_box(row), 1, 13).unwrap())
            })
        });
        c.bench_function(&format!("tree_shap/wine_rf_100_trees_13_features/{name}/100_rows"), |b| {
            b.iter(|| black_box(shap.explain(black_box(&rows), 100, 13).unwrap()))
        });
    }

    let model = poly(&timing["kernel_model"]);
    let background = floats(&timing["kernel_background"]);
    let x = floats(&timing["kernel_rows"]);
    let kernel = KernelShap::new(background, 100, 12, KernelShapOptions::default()).unwrap();
    let mut group = c.benchmark_group("kernel_shap");
    group.sample_size(20);
    group.bench_function("12_features_100_background/one_row", |b| {
        b.iter(|| black_box(kernel.explain(black_box(&x[..12]), 1, &model).unwrap()))
    });
    group.finish();
}

criterion_group!(shap_benches, benches);
criterion_main!(shap_benches);
