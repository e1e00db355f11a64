//! Kolmogorov-Smirnov statistics and p-values against scipy.stats.ks_2samp, and the window.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::needless_range_loop, missing_docs)]

use std::path::PathBuf;

use palisade_explain::{DriftMonitor, ExplainError, ks_2samp};
use serde_json::Value;

fn column(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn statistics_and_p_values_match_scipy() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/explain/ks.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut worst = 0.0f64;
    for case in fixture["cases"].as_array().unwrap() {
        let (a, b) = (column(&case["a"]), column(&case["b"]));
        let r = ks_2samp(&a, &b).unwrap();
        let (d, p) = (case["statistic"].as_f64().unwrap(), case["pvalue"].as_f64().unwrap());
        assert!(
            (r.statistic - d).abs() < 1e-12,
            "n = {}, {}: statistic {} vs {d}",
            a.len(),
            b.len(),
            r.statistic
        );
        let err = (r.p_value - p).abs();
        assert!(err < 1e-6, "n = {}, {}: p {} vs {p}", a.len(), b.len(), r.p_value);
        assert!(r.exact);
        // Symmetric in its samples.
        let s = ks_2samp(&b, &a).unwrap();
        assert!((s.p_value - r.p_value).abs() < 1e-12 && s.statistic == r.statistic);
        worst = worst.max(err);
    }
    println!("largest |p - scipy's p| {worst:.2e}");
}

#[test]
fn known_small_cases() {
    // Completely separated samples of 3 and 3: only 2 of the 20 interleavings reach D = 1.
    let r = ks_2samp(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
    assert_eq!(r.statistic, 1.0);
    assert!((r.p_value - 0.1).abs() < 1e-15);
    // Identical samples.
    let r = ks_2samp(&[1.0, 1.0, 2.0], &[1.0, 2.0, 1.0]).unwrap();
    assert_eq!((r.statistic, r.p_value), (0.0, 1.0));
    assert!(ks_2samp(&[], &[1.0]).is_err());
    assert!(ks_2samp(&[f64::NAN], &[1.0]).is_err());
    // Past the exact sizes: an approximation, flagged.
    let a: Vec<f64> = (0..10_001).map(|i| f64::from(i) / 10_001.0).collect();
    let b: Vec<f64> = (0..50).map(|i| f64::from(i) / 50.0 + 0.1).collect();
    let r = ks_2samp(&a, &b).unwrap();
    assert!(!r.exact && (0.0..=1.0).contains(&r.p_value));
}

#[test]
fn window_is_bounded_and_bonferroni_corrected() {
    let reference: Vec<f32> = (0..400).map(|i| ((i * 37) % 200) as f32 / 200.0).collect();
    let mut monitor = DriftMonitor::new(&reference, 200, 2, 50).unwrap();
    assert!(monitor.push(&[1.0; 3], 2).is_err());
    // 80 rows pushed into a window of 50: the 50 most recent stay.
    let mut rows = Vec::new();
    for i in 0..80 {
        rows.push(if i < 30 { 5.0 } else { (i % 10) as f32 / 10.0 });
        rows.push((i % 7) as f32 / 7.0 + 0.5);
    }
    monitor.push(&rows, 80).unwrap();
    assert_eq!(monitor.window_rows(), 50);
    let report = monitor.report(0.05).unwrap();
    // Feature 0 window: the last 50 rows only (none of the 5.0 outliers).
    let kept: Vec<f64> = rows.chunks(2).skip(30).map(|r| f64::from(r[0])).collect();
    let ref0: Vec<f64> = reference.chunks(2).map(|r| f64::from(r[0])).collect();
    let direct = ks_2samp(&kept, &ref0).unwrap();
    assert_eq!(report.features[0].test, direct);
    for d in &report.features {
        assert_eq!(d.corrected_p_value, (d.test.p_value * 2.0).min(1.0));
        assert_eq!(d.drifted, d.corrected_p_value < 0.05);
    }
    // Feature 1 is shifted by 0.5: drift.
    assert!(report.features[1].drifted && report.drift);
    // Bounds.
    assert!(matches!(DriftMonitor::new(&reference, 200, 2, 0), Err(ExplainError::InvalidArgument { .. })));
    assert!(DriftMonitor::new(&reference, 200, 2, 10_001).is_err());
    assert!(DriftMonitor::new(&[0.0; 20_002], 10_001, 2, 10).is_err());
    assert!(monitor.report(2.0).is_err());
}
