//! Property tests: whatever the attributes, building a linear model returns `Ok` or `Err`
//! without panicking; a built model evaluates any rows of its width (NaN and infinities
//! included) without panicking, and refuses other widths; normalizers take any rows.

// Helpers outside #[test] functions count as library code for clippy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use palisade_onnx_ml::{
    ClassLabels, LinearClassifier, LinearClassifierAttributes, LinearRegressor, LinearRegressorAttributes,
    Norm, Normalizer, OnnxMlError, PostTransform,
};
use proptest::collection::vec;
use proptest::prelude::*;

fn value() -> impl Strategy<Value = f32> {
    prop_oneof![8 => -4.0f32..4.0, 1 => Just(f32::NAN), 1 => Just(f32::INFINITY), 1 => any::<f32>()]
}

fn post_transform() -> impl Strategy<Value = PostTransform> {
    prop_oneof![
        Just(PostTransform::None),
        Just(PostTransform::Softmax),
        Just(PostTransform::Logistic),
        Just(PostTransform::SoftmaxZero),
        Just(PostTransform::Probit),
    ]
}

fn norm() -> impl Strategy<Value = Norm> {
    prop_oneof![Just(Norm::Max), Just(Norm::L1), Just(Norm::L2)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn classifier_construction_and_evaluation_never_panic(
        coefficients in vec(value(), 0..40),
        intercepts in vec(value(), 0..6),
        n_labels in 0usize..7,
        strings in any::<bool>(),
        post_transform in post_transform(),
        rows in vec(value(), 0..200),
        n_rows in 0usize..12,
    ) {
        let class_labels = if strings {
            ClassLabels::Strings((0..n_labels).map(|c| format!("c{c}")).collect())
        } else {
            ClassLabels::Int64((0..n_labels as i64).collect())
        };
        let built = LinearClassifier::new(LinearClassifierAttributes {
            coefficients, intercepts, class_labels, post_transform,
        });
        if let Ok(model) = built {
            let width = model.n_features();
            let x: Vec<f32> = rows.iter().copied().cycle().take(width * n_rows).collect();
            if rows.is_empty() && n_rows > 0 {
                return Ok(());
            }
            let out = model.predict(&x, n_rows, width).unwrap();
            prop_assert_eq!(out.scores.len(), n_rows * model.n_classes());
            prop_assert!(out.labels.iter().all(|&l| l < model.n_classes()));
            if n_rows > 0 {
                let wider = width + 1;
                let x: Vec<f32> = vec![0.5; wider * n_rows];
                prop_assert_eq!(
                    model.predict(&x, n_rows, wider).unwrap_err(),
                    OnnxMlError::FeatureCount { expected: width, actual: wider }
                );
            }
        }
    }

    #[test]
    fn regressor_construction_and_evaluation_never_panic(
        coefficients in vec(value(), 0..40),
        intercepts in vec(value(), 0..6),
        targets in prop_oneof![8 => 1i64..6, 1 => any::<i64>()],
        post_transform in post_transform(),
        rows in vec(value(), 1..200),
        n_rows in 0usize..12,
    ) {
        let built = LinearRegressor::new(LinearRegressorAttributes {
            coefficients, intercepts, targets, post_transform,
        });
        if let Ok(model) = built {
            let width = model.n_features();
            let x: Vec<f32> = rows.iter().copied().cycle().take(width * n_rows).collect();
            let out = model.predict(&x, n_rows, width).unwrap();
            prop_assert_eq!(out.len(), n_rows * model.n_targets());
            prop_assert!(model.predict(&x, n_rows + 1, width).is_err());
        }
    }

    #[test]
    fn valid_linear_models_always_build(
        n_targets in 1usize..6,
        n_features in 1usize..20,
        post_transform in post_transform(),
        seed in vec(value(), 1..8),
    ) {
        let coefficients: Vec<f32> = seed.iter().copied().cycle().take(n_targets * n_features).collect();
        let intercepts: Vec<f32> = seed.iter().copied().cycle().take(n_targets).collect();
        let n_labels = if n_targets == 1 { 2 } else { n_targets };
        let classifier = LinearClassifier::new(LinearClassifierAttributes {
            coefficients: coefficients.clone(),
            intercepts: intercepts.clone(),
            class_labels: ClassLabels::Int64((0..n_labels as i64).collect()),
            post_transform,
        }).unwrap();
        prop_assert_eq!((classifier.n_features(), classifier.n_classes()), (n_features, n_labels));
        let regressor = LinearRegressor::new(LinearRegressorAttributes {
            coefficients, intercepts, targets: n_targets as i64, post_transform,
        }).unwrap();
        prop_assert_eq!((regressor.n_features(), regressor.n_targets()), (n_features, n_targets));
    }

    #[test]
    fn normalizers_never_panic(
        norm in norm(),
        values in vec(value(), 0..60),
        ints in vec(any::<i64>(), 0..60),
        n_columns in 0usize..8,
    ) {
        let normalizer = Normalizer::new(norm);
        let n_rows = values.len().checked_div(n_columns).unwrap_or(0);
        let used = n_rows * n_columns;
        let mut out = vec![0.0f32; used];
        normalizer.normalize_into(&values[..used], n_rows, n_columns, &mut out).unwrap();
        let mut in_place = values[..used].to_vec();
        normalizer.normalize_in_place(&mut in_place, n_rows, n_columns).unwrap();
        for (a, b) in out.iter().zip(&in_place) {
            prop_assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
        }
        if n_columns > 0 {
            prop_assert!(normalizer.normalize_in_place(&mut in_place, n_rows + 1, n_columns).is_err());
        }
        let n_rows = ints.len().checked_div(n_columns).unwrap_or(0);
        let used = n_rows * n_columns;
        let mut out = vec![0.0f32; used];
        normalizer.normalize_into(&ints[..used], n_rows, n_columns, &mut out).unwrap();
        let as_i32: Vec<i32> = ints[..used].iter().map(|&v| v as i32).collect();
        normalizer.normalize_into(&as_i32, n_rows, n_columns, &mut out).unwrap();
        normalizer.normalize_into(&ints[..used].iter().map(|&v| v as f64).collect::<Vec<_>>(), n_rows, n_columns, &mut out).unwrap();
    }
}
