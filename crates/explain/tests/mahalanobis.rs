//! Mahalanobis scores against scipy.spatial.distance.mahalanobis (fixtures/explain.py).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::needless_range_loop, missing_docs)]

use std::path::PathBuf;

use palisade_explain::{ExplainError, Inverse, Mahalanobis};
use serde_json::Value;

fn flat(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32))
        .collect()
}

#[test]
fn scores_and_thresholds_match_scipy_and_numpy() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/explain/mahalanobis.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for case in fixture["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let reference = flat(&case["reference"]);
        let f = case["reference"][0].as_array().unwrap().len();
        let n = reference.len() / f;
        let parameter = case["parameter"].as_f64().unwrap();
        let inverse = match case["inverse"].as_str().unwrap() {
            "pseudo" => Inverse::Pseudo { rtol: parameter },
            _ => Inverse::Ridge { lambda: parameter },
        };
        let scorer = Mahalanobis::fit(&reference, n, f, inverse).unwrap();
        let queries = flat(&case["queries"]);
        let mut worst = 0.0f64;
        for (row, want) in queries.chunks_exact(f).zip(case["distances"].as_array().unwrap()) {
            let want = want.as_f64().unwrap();
            let got = scorer.score(row).unwrap();
            let err = (got - want).abs() / want.max(1.0);
            worst = worst.max(err);
        }
        assert!(worst < 1e-6, "{name}: relative difference {worst:e}");
        for (q, want) in case["quantiles"].as_object().unwrap() {
            let got = scorer.quantile_of_reference(&reference, n, q.parse().unwrap()).unwrap();
            let want = want.as_f64().unwrap();
            assert!((got - want).abs() / want.max(1.0) < 1e-6, "{name} quantile {q}: {got} vs {want}");
        }
        // Stored parts give the same scores.
        let loaded =
            Mahalanobis::from_parts(scorer.mean().to_vec(), scorer.inverse_covariance().to_vec()).unwrap();
        assert_eq!(loaded.score(&queries[..f]).unwrap(), scorer.score(&queries[..f]).unwrap());
        println!("{name}: largest relative difference from scipy {worst:.2e}");
    }
}

#[test]
fn bad_inputs_are_errors() {
    let ok = Inverse::default();
    assert!(matches!(Mahalanobis::fit(&[1.0, 2.0], 1, 2, ok), Err(ExplainError::TooFewRows { .. })));
    assert!(matches!(Mahalanobis::fit(&[1.0; 5], 2, 2, ok), Err(ExplainError::Shape { .. })));
    assert!(matches!(
        Mahalanobis::fit(&[1.0, f32::NAN, 2.0, 3.0], 2, 2, ok),
        Err(ExplainError::NotFinite { .. })
    ));
    assert!(Mahalanobis::fit(&[1.0; 4], 2, 2, Inverse::Ridge { lambda: 0.0 }).is_err());
    assert!(Mahalanobis::fit(&[1.0; 4], 2, 2, Inverse::Pseudo { rtol: f64::NAN }).is_err());
    assert!(Mahalanobis::fit(&[], usize::MAX, 2, ok).is_err());
    // A NaN feature is never an inlier.
    let s = Mahalanobis::fit(&[0.0, 1.0, 1.0, 0.0, 2.0, 2.0], 3, 2, ok).unwrap();
    assert!(s.score(&[f32::NAN, 1.0]).unwrap().is_nan());
    assert!(s.quantile_of_reference(&[0.0, f32::NAN], 1, 0.5).is_err());
    assert!(
        s.score(&[f32::INFINITY, 1.0]).unwrap().is_infinite()
            || s.score(&[f32::INFINITY, 1.0]).unwrap().is_nan()
    );
    // A constant reference: every direction dropped, every score 0.
    let s = Mahalanobis::fit(&[1.0; 6], 3, 2, ok).unwrap();
    assert_eq!(s.score(&[5.0, -3.0]).unwrap(), 0.0);
    assert!(s.score(&[1.0]).is_err());
    assert!(s.quantile_of_reference(&[1.0; 6], 3, 1.5).is_err());
    assert!(Mahalanobis::from_parts(vec![0.0; 2], vec![1.0, 2.0, 3.0, 1.0]).is_err());
    assert!(Mahalanobis::from_parts(vec![0.0; 2], vec![1.0; 3]).is_err());
}
