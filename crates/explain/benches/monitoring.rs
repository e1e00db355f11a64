//! The work monitoring adds to one prediction (docs/monitoring.md), without the server
//! around it: the Mahalanobis score of one iris row (4 features), pushing it into a drift
//! window of 1,000 rows, and a drift report over a full window against 150 reference rows.
//! `cargo bench -p palisade-explain --bench monitoring`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_explain::{DriftMonitor, Inverse, Mahalanobis};

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

criterion_group!(benches, bench);
criterion_main!(benches);
