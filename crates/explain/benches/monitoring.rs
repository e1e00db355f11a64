//! The work monitoring adds to one prediction (docs/monitoring.md), without the server
//! around it: the Mahalanobis score of one iris row (4 features), pushing it into a drift
//! window of 1,000 rows, a drift report over a full window against 150 reference rows, and
//! the IsolationForest score of one row by a forest shaped like fixtures/monitoring's (50
//! complete trees of depth 8 over 4 features; the native scorer's work per row).
//! `cargo bench -p palisade-explain --bench monitoring`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_explain::{DriftMonitor, Inverse, IsolationForest, IsolationNode, IsolationTree, Mahalanobis};

fn reference() -> Vec<f32> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fixtures/monitoring/reference.csv"
    ))
    .unwrap();
    text.lines().skip(1).flat_map(|l| l.split(',').map(|v| v.parse::<f32>().unwrap())).collect()
}

fn bench(c: &mut Criterion) {
    let reference = reference();
    let n = reference.len() / 4;
    let scorer = Mahalanobis::fit(&reference, n, 4, Inverse::default()).unwrap();
    let row = [5.1f32, 3.5, 1.4, 0.2];
    let mut out = [0.0f64];
    c.bench_function("mahalanobis/iris/one_row", |b| {
        b.iter(|| scorer.scores(std::hint::black_box(&row), 1, &mut out).unwrap())
    });
    let mut window = DriftMonitor::new(&reference, n, 4, 1000).unwrap();
    c.bench_function("drift/push_one_row/window_1000", |b| {
        b.iter(|| window.push(std::hint::black_box(&row), 1).unwrap())
    });
    let rows: Vec<f32> = reference.iter().copied().cycle().take(1000 * 4).collect();
    window.push(&rows, 1000).unwrap();
    c.bench_function("drift/report/window_1000_reference_150_features_4", |b| {
        b.iter(|| window.report(0.05).unwrap())
    });
}

/// A complete tree of `depth` levels in preorder, splitting on features in turn.
fn tree(depth: u32, seed: u32) -> IsolationTree {
    fn grow(nodes: &mut Vec<IsolationNode>, depth: u32, level: u32, seed: u32) {
        let at = nodes.len();
        if level == depth {
            nodes.push(IsolationNode::Leaf { path_length: f64::from(level) + 0.5 });
            return;
        }
        let threshold = ((seed.wrapping_mul(2_654_435_761).wrapping_add(at as u32)) % 700) as f32 / 100.0;
        nodes.push(IsolationNode::Split { feature: (at % 4) as u32, threshold, left: 0, right: 0 });
        let left = nodes.len() as u32;
        grow(nodes, depth, level + 1, seed);
        let right = nodes.len() as u32;
        grow(nodes, depth, level + 1, seed);
        if let IsolationNode::Split { left: l, right: r, .. } = &mut nodes[at] {
            *l = left;
            *r = right;
        }
    }
    let mut nodes = Vec::new();
    grow(&mut nodes, depth, 0, seed);
    IsolationTree { nodes }
}

fn forest_bench(c: &mut Criterion) {
    let forest = IsolationForest::new((0..50).map(|t| tree(8, t)).collect(), 4, 50.0 * 9.1755).unwrap();
    let row = [5.1f32, 3.5, 1.4, 0.2];
    let mut out = [0.0f64];
    c.bench_function("isolation_forest/50_trees_depth_8/one_row", |b| {
        b.iter(|| forest.score_samples(std::hint::black_box(&row), 1, &mut out).unwrap())
    });
}

criterion_group!(benches, bench, forest_bench);
criterion_main!(benches);
