//! `LinearClassifier`, `LinearRegressor` and `Normalizer` on small hand-built models.
//!
//! Expected values were printed by onnxruntime 1.32 (CPU, one thread) for the same
//! attributes and inputs, as f64 reprs of its f32 outputs.

// Helpers outside #[test] functions count as library code for clippy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_same, ort};
use palisade_onnx_ml::{
    ClassLabels, LinearClassifier, LinearClassifierAttributes, LinearRegressor, LinearRegressorAttributes,
    Norm, Normalizer, OnnxMlError, PostTransform,
};

/// Three rows of two features.
const X: [f32; 6] = [1.0, 2.0, -1.5, 0.5, 0.25, -3.0];

fn three_classes(post_transform: PostTransform) -> LinearClassifier {
    LinearClassifier::new(LinearClassifierAttributes {
        coefficients: vec![0.5, -1.0, 1.5, 0.25, -0.75, 2.0],
        intercepts: vec![0.1, -0.2, 0.3],
        class_labels: ClassLabels::Int64(vec![10, 20, 30]),
        post_transform,
    })
    .unwrap()
}

fn binary(coefficients: Vec<f32>, intercept: f32, post_transform: PostTransform) -> LinearClassifier {
    LinearClassifier::new(LinearClassifierAttributes {
        coefficients,
        intercepts: vec![intercept],
        class_labels: ClassLabels::Strings(vec!["no".into(), "yes".into()]),
        post_transform,
    })
    .unwrap()
}

fn regressor(
    coefficients: Vec<f32>,
    intercepts: Vec<f32>,
    targets: i64,
    post: PostTransform,
) -> LinearRegressor {
    LinearRegressor::new(LinearRegressorAttributes {
        coefficients,
        intercepts,
        targets,
        post_transform: post,
    })
    .unwrap()
}

#[test]
fn multiclass_scores_and_labels() {
    let m = three_classes(PostTransform::None);
    assert_eq!((m.n_classes(), m.n_targets(), m.n_features()), (3, 3, 2));
    let out = m.predict(&X, 3, 2).unwrap();
    assert_eq!(out.labels, [2, 2, 0]);
    assert_same(
        &out.scores,
        &ort(&[
            -1.399999976158142,
            1.7999999523162842,
            3.549999952316284,
            -1.149999976158142,
            -2.325000047683716,
            2.424999952316284,
            3.2249999046325684,
            -0.574999988079071,
            -5.887499809265137,
        ]),
    );
}

#[test]
fn multiclass_post_transforms() {
    let softmax = ort(&[
        0.005998531356453896,
        0.1471591293811798,
        0.8468422889709473,
        0.027024520561099052,
        0.008345683105289936,
        0.9646298289299011,
        0.9780132174491882,
        0.021878911182284355,
        0.00010785408085212111,
    ]);
    for post in [PostTransform::Softmax, PostTransform::SoftmaxZero] {
        let out = three_classes(post).predict(&X, 3, 2).unwrap();
        assert_eq!(out.labels, [2, 2, 0]);
        assert_same(&out.scores, &softmax);
        // One row alone: another summation order, the same values here.
        assert_same(&three_classes(post).predict(&X[..2], 1, 2).unwrap().scores, &softmax[..3]);
    }
    // MLAS's logistic, not 1 / (1 + exp(-x)).
    let out = three_classes(PostTransform::Logistic).predict(&X, 3, 2).unwrap();
    assert_same(
        &out.scores,
        &ort(&[
            0.19781610369682312,
            0.8581489324569702,
            0.972077488899231,
            0.24048909544944763,
            0.08907347917556763,
            0.9187139272689819,
            0.9617643356323242,
            0.3600839078426361,
            0.0027662813663482666,
        ]),
    );
}

#[test]
fn the_first_maximum_wins_and_nan_never_does() {
    let m = LinearClassifier::new(LinearClassifierAttributes {
        coefficients: vec![1.0, 0.0, 1.0, 0.0, 0.0, 1.0],
        intercepts: vec![0.0; 3],
        class_labels: ClassLabels::Int64(vec![1, 2, 3]),
        post_transform: PostTransform::None,
    })
    .unwrap();
    let out = m.predict(&[2.0, 2.0, f32::NAN, 1.0, 1.0, 3.0], 3, 2).unwrap();
    assert_eq!(out.labels, [0, 0, 2]);
    assert!(out.scores[3..6].iter().all(|s| s.is_nan()));
}

#[test]
fn a_binary_classifier_expands_its_single_score() {
    let coefficients = vec![0.5, -0.25];
    for post in [PostTransform::None, PostTransform::Softmax, PostTransform::SoftmaxZero] {
        let out = binary(coefficients.clone(), 0.1, post).predict(&X, 3, 2).unwrap();
        assert_eq!(out.labels, [1, 0, 1]);
        assert_same(
            &out.scores,
            &ort(&[
                0.8999999761581421,
                0.10000000149011612,
                1.774999976158142,
                -0.7749999761581421,
                0.02499997615814209,
                0.9750000238418579,
            ]),
        );
    }
    let out = binary(coefficients, 0.1, PostTransform::Logistic).predict(&X, 3, 2).unwrap();
    assert_eq!(out.labels, [1, 0, 1]);
    assert_same(
        &out.scores,
        &ort(&[
            0.4750208258628845,
            0.5249791741371155,
            0.6846014857292175,
            0.31539851427078247,
            0.27388501167297363,
            0.7261149883270264,
        ]),
    );
    // onnxruntime leaves the second probit column uninitialized; Palisade writes 0.
    let out = binary(vec![0.05, -0.025], 0.6, PostTransform::Probit).predict(&X[..2], 1, 2).unwrap();
    assert_same(&out.scores, &ort(&[0.2533535063266754, 0.0]));
}

#[test]
fn regressor_transforms() {
    let x: Vec<f32> = X.iter().map(|v| v * 0.1).collect();
    let plain = ort(&[0.10000000149011612, 0.012499995529651642, 0.1875]);
    // With one target, only PROBIT applies.
    for post in [PostTransform::None, PostTransform::Logistic, PostTransform::Softmax] {
        let m = regressor(vec![0.5, -0.25], vec![0.1], 1, post);
        assert_same(&m.predict(&x, 3, 2).unwrap(), &plain);
    }
    let m = regressor(vec![0.5, -0.25], vec![0.1], 1, PostTransform::Probit);
    assert_same(
        &m.predict(&x, 3, 2).unwrap(),
        &ort(&[-1.2817128896713257, -2.239494800567627, -0.8872939944267273]),
    );

    let m = regressor(vec![0.5, -0.25, 1.0, 2.0], vec![], 2, PostTransform::None);
    assert_same(&m.predict(&X, 3, 2).unwrap(), &[0.0, 5.0, -0.875, -0.5, 0.875, -5.75]);
    assert_same(&m.predict(&X[..2], 1, 2).unwrap(), &[0.0, 5.0]);
    let m = regressor(vec![0.5, -0.25, 1.0, 2.0], vec![0.5, -0.5], 2, PostTransform::Logistic);
    assert_same(
        &m.predict(&X, 3, 2).unwrap(),
        &ort(&[
            0.6224592924118042,
            0.9890130758285522,
            0.4073334038257599,
            0.2689414322376251,
            0.7981867790222168,
            0.0019267499446868896,
        ]),
    );
}

#[test]
fn inputs_and_buffers_are_checked() {
    let m = three_classes(PostTransform::None);
    assert_eq!(
        m.predict(&X, 2, 2).unwrap_err(),
        OnnxMlError::InputSize { n_rows: 2, n_features: 2, expected: 4, actual: 6 }
    );
    assert_eq!(m.predict(&X, 2, 3).unwrap_err(), OnnxMlError::FeatureCount { expected: 2, actual: 3 });
    let mut labels = [0; 3];
    let mut scores = [0.0; 8];
    let err = m.predict_into(&X, 3, 2, &mut labels, &mut scores).unwrap_err();
    assert_eq!(err, OnnxMlError::OutputSize { output: "scores", expected: 9, actual: 8 });
    // No rows: nothing to check the width of.
    assert!(m.predict(&[], 0, 5).unwrap().labels.is_empty());
    let r = regressor(vec![1.0, 2.0], vec![], 1, PostTransform::None);
    assert!(matches!(r.predict(&[1.0], 1, 1), Err(OnnxMlError::FeatureCount { expected: 2, actual: 1 })));
}

#[test]
fn normalizer_norms() {
    let x = [1.0, -2.0, 3.0, 0.0, 0.0, 0.0, -1.0, -2.0, -4.0, f32::NAN, 1.0, 2.0];
    let cases = [
        (
            Norm::Max,
            vec![
                0.3333333432674408,
                -0.6666666865348816,
                1.0,
                0.0,
                0.0,
                0.0,
                1.0,
                2.0,
                4.0,
                f64::NAN,
                0.5,
                1.0,
            ],
        ),
        (
            Norm::L1,
            vec![
                0.1666666716337204,
                -0.3333333432674408,
                0.5,
                0.0,
                0.0,
                0.0,
                -0.1428571492433548,
                -0.2857142984867096,
                -0.5714285969734192,
                f64::NAN,
                f64::NAN,
                f64::NAN,
            ],
        ),
        (
            Norm::L2,
            vec![
                0.26726123690605164,
                -0.5345224738121033,
                0.8017837405204773,
                0.0,
                0.0,
                0.0,
                -0.2182178944349289,
                -0.4364357888698578,
                -0.8728715777397156,
                f64::NAN,
                f64::NAN,
                f64::NAN,
            ],
        ),
    ];
    for (norm, expected) in cases {
        let n = Normalizer::new(norm);
        let mut out = [0.0; 12];
        n.normalize_into(&x, 4, 3, &mut out).unwrap();
        assert_same(&out, &ort(&expected));
        let mut in_place = x;
        n.normalize_in_place(&mut in_place, 4, 3).unwrap();
        assert_same(&in_place, &ort(&expected));
    }
    // L2 squares in the input type: f64 and f32 inputs differ in the last bit.
    let mut out = [0.0; 3];
    Normalizer::new(Norm::L2).normalize_into(&[0.1f64, -0.2, 0.3], 1, 3, &mut out).unwrap();
    assert_same(&out, &ort(&[0.26726123690605164, -0.5345224738121033, 0.8017837405204773]));
    Normalizer::new(Norm::L2).normalize_into(&[0.1f32, -0.2, 0.3], 1, 3, &mut out).unwrap();
    assert_same(&out, &ort(&[0.26726123690605164, -0.5345224738121033, 0.8017836809158325]));
    Normalizer::new(Norm::L2).normalize_into(&[1i64, -2, 3], 1, 3, &mut out).unwrap();
    assert_same(&out, &ort(&[0.26726123690605164, -0.5345224738121033, 0.8017837405204773]));
    assert_eq!(Normalizer::default().norm(), Norm::Max);
    let err = Normalizer::default().normalize_into(&[1.0f32; 4], 1, 3, &mut [0.0; 4]).unwrap_err();
    assert!(matches!(err, OnnxMlError::InputSize { .. }));
    let err = Normalizer::default().normalize_into(&[1.0f32; 3], 1, 3, &mut [0.0; 4]).unwrap_err();
    assert!(matches!(err, OnnxMlError::OutputSize { .. }));
}

fn classifier(
    coefficients: Vec<f32>,
    intercepts: Vec<f32>,
    labels: ClassLabels,
) -> Result<LinearClassifier, OnnxMlError> {
    LinearClassifier::new(LinearClassifierAttributes {
        coefficients,
        intercepts,
        class_labels: labels,
        post_transform: PostTransform::None,
    })
}

fn attribute(err: OnnxMlError) -> &'static str {
    match err {
        OnnxMlError::InvalidAttribute { attribute, .. } | OnnxMlError::UnknownValue { attribute, .. } => {
            attribute
        }
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn construction_names_the_attribute_at_fault() {
    let ints = |n: i64| ClassLabels::Int64((0..n).collect());
    assert_eq!(attribute(classifier(vec![1.0], vec![], ints(2)).unwrap_err()), "intercepts");
    assert_eq!(attribute(classifier(vec![], vec![0.0], ints(2)).unwrap_err()), "coefficients");
    assert_eq!(attribute(classifier(vec![1.0; 3], vec![0.0; 2], ints(2)).unwrap_err()), "coefficients");
    // A binary classifier needs exactly two labels; otherwise one per intercept.
    assert_eq!(attribute(classifier(vec![1.0; 2], vec![0.0], ints(3)).unwrap_err()), "classlabels_ints");
    assert_eq!(attribute(classifier(vec![1.0; 2], vec![0.0], ints(1)).unwrap_err()), "classlabels_ints");
    let strings = ClassLabels::Strings(vec!["a".into()]);
    assert_eq!(
        attribute(classifier(vec![1.0; 4], vec![0.0; 2], strings).unwrap_err()),
        "classlabels_strings"
    );
    assert_eq!(attribute(classifier(vec![1.0; 4], vec![0.0; 2], ints(3)).unwrap_err()), "classlabels_ints");
    let err = classifier(vec![1.0; 4], vec![0.0; 2], ints(0)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "attribute `classlabels_ints`: 0 labels for 2 intercepts; expected 2, one per intercept"
    );
    classifier(vec![1.0; 4], vec![0.0; 2], ints(2)).unwrap();
    classifier(vec![1.0; 4], vec![0.0], ints(2)).unwrap();

    let reg = |coefficients: Vec<f32>, intercepts: Vec<f32>, targets: i64| {
        LinearRegressor::new(LinearRegressorAttributes {
            coefficients,
            intercepts,
            targets,
            post_transform: PostTransform::None,
        })
    };
    assert_eq!(attribute(reg(vec![1.0], vec![], 0).unwrap_err()), "targets");
    assert_eq!(attribute(reg(vec![1.0], vec![], -3).unwrap_err()), "targets");
    assert_eq!(attribute(reg(vec![1.0; 3], vec![], 2).unwrap_err()), "coefficients");
    assert_eq!(attribute(reg(vec![], vec![], 1).unwrap_err()), "coefficients");
    assert_eq!(attribute(reg(vec![1.0; 4], vec![0.5], 2).unwrap_err()), "intercepts");
    assert_eq!(reg(vec![1.0; 6], vec![0.5, 0.5], 2).unwrap().n_features(), 3);

    assert_eq!(attribute("L3".parse::<Norm>().unwrap_err()), "norm");
    assert_eq!("L2".parse::<Norm>().unwrap(), Norm::L2);
}
