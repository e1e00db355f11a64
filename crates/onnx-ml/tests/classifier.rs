//! `TreeEnsembleClassifier` against onnxruntime 1.32's outputs for small hand-built trees.

// Helpers outside #[test] functions count as library code for clippy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_same, leaves, ort, stump};
use palisade_onnx_ml::{
    ClassLabels, ClassifierAttributes, LeafAttributes, OnnxMlError, PostTransform, TreeEnsembleClassifier,
};

/// The rows of most tests: one reaches leaf 1, the other leaf 2 of [`stump`].
const ROWS: [f32; 2] = [0.0, 1.0];

fn classifier(
    leaves: LeafAttributes,
    labels: &[i64],
    base_values: &[f32],
    post_transform: PostTransform,
) -> TreeEnsembleClassifier {
    TreeEnsembleClassifier::new(ClassifierAttributes {
        nodes: stump(),
        leaves,
        class_labels: ClassLabels::Int64(labels.to_vec()),
        base_values: base_values.to_vec(),
        post_transform,
    })
    .unwrap()
}

#[track_caller]
fn check(model: &TreeEnsembleClassifier, rows: &[f32], labels: &[usize], scores: &[f64]) {
    let out = model.predict(rows, rows.len(), 1).unwrap();
    assert_eq!(out.labels, labels, "labels");
    assert_same(&out.scores, &ort(scores));
}

// ----- more than two classes -----

#[test]
fn multiclass_sums_weights_and_takes_the_first_maximum() {
    // Leaf 1 votes 0.7 for classes 0 and 2 (a tie), leaf 2 0.5 for class 1.
    let m = classifier(
        leaves(&[0, 0, 0], &[1, 1, 2], &[0, 2, 1], &[0.7, 0.7, 0.5]),
        &[0, 1, 2],
        &[],
        PostTransform::None,
    );
    check(&m, &ROWS, &[0, 1], &[0.7, 0.0, 0.7, 0.0, 0.5, 0.0]);
}

#[test]
fn multiclass_label_ignores_unscored_classes() {
    let m = classifier(
        leaves(&[0, 0, 0], &[1, 1, 2], &[0, 2, 1], &[-0.7, -0.2, 0.5]),
        &[0, 1, 2],
        &[],
        PostTransform::None,
    );
    // Class 1 is unscored in row 0: it outputs 0 but the label is class 2 (-0.2).
    check(&m, &ROWS[..1], &[2], &[-0.699999988079071, 0.0, -0.20000000298023224]);
}

#[test]
fn multiclass_base_values_score_every_class() {
    let m = classifier(
        leaves(&[0, 0], &[1, 1], &[0, 2], &[0.7, 0.3]),
        &[0, 1, 2],
        &[0.0, 0.0, 0.0],
        PostTransform::None,
    );
    // Row 1 reaches a leaf without weights: only the base values score it.
    check(&m, &ROWS, &[0, 0], &[0.699999988079071, 0.0, 0.30000001192092896, 0.0, 0.0, 0.0]);
}

#[test]
fn multiclass_row_without_any_score_fails_like_onnxruntime() {
    let m = classifier(leaves(&[0, 0], &[1, 1], &[0, 2], &[0.7, 0.3]), &[0, 1, 2], &[], PostTransform::None);
    assert_eq!(m.predict(&ROWS, 2, 1), Err(OnnxMlError::NoScore { row: 1 }));
}

#[test]
fn multiclass_softmax_counts_unscored_classes_as_zero() {
    let m =
        classifier(leaves(&[0, 0], &[1, 1], &[0, 2], &[0.7, 0.3]), &[0, 1, 2], &[], PostTransform::Softmax);
    check(&m, &ROWS[..1], &[0], &[0.46148762106895447, 0.22916796803474426, 0.3093443810939789]);
}

#[test]
fn multiclass_logistic_adds_repeated_classes() {
    let m = classifier(
        leaves(&[0, 0, 0], &[1, 1, 1], &[0, 2, 0], &[0.7, 0.3, 0.5]),
        &[0, 1, 2],
        &[],
        PostTransform::Logistic,
    );
    check(&m, &ROWS[..1], &[0], &[0.7685248255729675, 0.5, 0.5744425058364868]);
}

#[test]
fn multiclass_softmax_zero_and_probit() {
    let weights = leaves(&[0, 0, 0, 0], &[1, 1, 1, 2], &[0, 1, 2, 1], &[0.1, 0.0, -0.1, 0.5]);
    let m = classifier(weights.clone(), &[0, 1, 2], &[], PostTransform::SoftmaxZero);
    check(&m, &ROWS[..1], &[0], &[0.5498339533805847, 0.0, 0.4501659870147705]);
    let m = classifier(weights, &[0, 1, 2], &[], PostTransform::Probit);
    check(&m, &ROWS[..1], &[0], &[-1.2817128896713257, f64::NEG_INFINITY, f64::NAN]);
}

#[test]
fn string_labels_are_indexed() {
    let m = TreeEnsembleClassifier::new(ClassifierAttributes {
        nodes: stump(),
        leaves: leaves(&[0, 0, 0, 0], &[1, 1, 1, 2], &[0, 1, 2, 1], &[0.1, 0.0, -0.1, 0.5]),
        class_labels: ClassLabels::Strings(vec!["a".into(), "b".into(), "c".into()]),
        base_values: vec![],
        post_transform: PostTransform::None,
    })
    .unwrap();
    let out = m.predict(&ROWS, 2, 1).unwrap();
    assert_eq!(out.labels, [0, 1]);
    assert_eq!(m.class_labels(), &ClassLabels::Strings(vec!["a".into(), "b".into(), "c".into()]));
}

// ----- two classes, both carrying weights ("binary as multiclass") -----

#[test]
fn two_classes_label_is_class_1_whenever_its_score_is_positive() {
    // Row 0 has class 0 ahead (0.7 vs 0.3) yet onnxruntime labels it 1.
    let w = leaves(&[0, 0, 0, 0], &[1, 1, 2, 2], &[0, 1, 0, 1], &[0.7, 0.3, 0.2, 0.8]);
    let m = classifier(w.clone(), &[0, 1], &[], PostTransform::None);
    check(
        &m,
        &ROWS,
        &[1, 1],
        &[0.699999988079071, 0.30000001192092896, 0.20000000298023224, 0.800000011920929],
    );
    // With other labels onnxruntime returns the literal 1; Palisade returns index 1.
    let m = classifier(w, &[3, 7], &[], PostTransform::None);
    assert_eq!(m.predict(&ROWS, 2, 1).unwrap().labels, [1, 1]);
}

#[test]
fn two_classes_with_two_base_values_mirror_class_1() {
    let w = leaves(&[0, 0, 0, 0], &[1, 1, 2, 2], &[0, 1, 0, 1], &[0.7, 0.3, 0.2, 0.8]);
    let m = classifier(w, &[0, 1], &[0.1, 0.2], PostTransform::None);
    // Class 1 becomes base[1] + (class 0's sum); class 0 its opposite.
    check(
        &m,
        &ROWS,
        &[1, 1],
        &[-0.8999999761581421, 0.8999999761581421, -0.4000000059604645, 0.4000000059604645],
    );
}

#[test]
fn two_classes_row_without_class_1_keeps_one_score() {
    // Leaf 2 only weights class 0.
    let w = leaves(&[0, 0, 0], &[1, 1, 2], &[0, 1, 0], &[0.7, 0.3, 0.2]);
    let m = classifier(w, &[0, 1], &[0.1], PostTransform::None);
    // Row 1: one score, written alone (onnxruntime leaves column 1 unset; Palisade 0).
    check(&m, &ROWS, &[1, 1], &[0.800000011920929, 0.30000001192092896, 0.30000001192092896, 0.0]);
}

#[test]
fn two_classes_unscored_rows_by_number_of_base_values() {
    // Leaf 2 carries no weights at all.
    let w = leaves(&[0, 0], &[1, 1], &[0, 1], &[0.7, 0.3]);
    let m = classifier(w.clone(), &[4, 9], &[0.1], PostTransform::None);
    check(&m, &ROWS, &[1, 0], &[0.800000011920929, 0.30000001192092896, 0.0, 0.0]);
    let m = classifier(w.clone(), &[4, 9], &[], PostTransform::None);
    check(&m, &ROWS, &[1, 0], &[0.699999988079071, 0.30000001192092896, 0.0, 0.0]);
    let m = classifier(w.clone(), &[4, 9], &[0.1, 0.2], PostTransform::None);
    check(&m, &ROWS, &[1, 0], &[-0.8999999761581421, 0.8999999761581421, 0.0, 0.0]);
    let m = classifier(w, &[4, 9], &[0.1, 0.2], PostTransform::Softmax);
    check(&m, &ROWS, &[1, 0], &[0.14185106754302979, 0.8581488728523254, 0.5, 0.5]);
}

// ----- two classes, one class id carrying all weights (binary_case) -----

#[test]
fn binary_positive_weights_are_the_positive_probability() {
    let w = leaves(&[0, 0], &[1, 2], &[0, 0], &[0.7, 0.3]);
    let m = classifier(w, &[4, 9], &[], PostTransform::None);
    check(
        &m,
        &ROWS,
        &[1, 0],
        &[0.30000001192092896, 0.699999988079071, 0.699999988079071, 0.30000001192092896],
    );
}

#[test]
fn binary_positive_weights_with_one_base_value() {
    let w = leaves(&[0, 0], &[1, 2], &[0, 0], &[0.3, 0.8]);
    let m = classifier(w, &[0, 1], &[0.1], PostTransform::None);
    check(
        &m,
        &ROWS,
        &[0, 1],
        &[0.6000000238418579, 0.4000000059604645, 0.09999996423721313, 0.9000000357627869],
    );
}

#[test]
fn binary_on_class_1_writes_both_columns() {
    let w = leaves(&[0, 0], &[1, 2], &[1, 1], &[0.7, 0.3]);
    let m = classifier(w, &[4, 9], &[], PostTransform::None);
    check(&m, &ROWS, &[1, 0], &[0.0, 0.699999988079071, 0.0, 0.30000001192092896]);
    let w = leaves(&[0, 0], &[1, 2], &[1, 1], &[-0.7, 0.3]);
    let m = classifier(w, &[4, 9], &[], PostTransform::Logistic);
    check(&m, &ROWS, &[0, 1], &[0.5, 0.3318122625350952, 0.5, 0.5744425058364868]);
    let w = leaves(&[0, 0], &[1, 2], &[1, 1], &[0.3, 0.8]);
    let m = classifier(w, &[0, 1], &[0.1, 0.2], PostTransform::None);
    check(&m, &ROWS, &[0, 0], &[0.0, 0.20000000298023224, 0.0, 0.20000000298023224]);
}

#[test]
fn binary_with_two_base_values_as_multiclass() {
    let w = leaves(&[0, 0], &[1, 2], &[0, 0], &[0.7, 0.3]);
    let m = classifier(w.clone(), &[4, 9], &[0.1, 0.2], PostTransform::None);
    check(&m, &ROWS, &[1, 0], &[0.800000011920929, 0.0, 0.4000000059604645, 0.0]);
    let m = classifier(w, &[4, 9], &[0.1, 0.2], PostTransform::Logistic);
    check(&m, &ROWS, &[1, 0], &[0.6899744868278503, 0.5, 0.5986876487731934, 0.5]);
}

#[test]
fn binary_signed_weights_logistic_and_others() {
    let w = leaves(&[0, 0], &[1, 2], &[0, 0], &[-0.3, 0.8]);
    let m = classifier(w.clone(), &[0, 1], &[], PostTransform::Logistic);
    check(
        &m,
        &ROWS,
        &[0, 1],
        &[0.5744425058364868, 0.4255574941635132, 0.31002551317214966, 0.6899744868278503],
    );
    // Any other transform is skipped: the row is written [-s, s].
    let m = classifier(w, &[0, 1], &[], PostTransform::Softmax);
    check(
        &m,
        &ROWS,
        &[0, 1],
        &[0.30000001192092896, -0.30000001192092896, -0.800000011920929, 0.800000011920929],
    );
}

#[test]
fn binary_probit_writes_one_column() {
    let w = leaves(&[0, 0], &[1, 2], &[0, 0], &[0.3, 0.8]);
    let m = classifier(w.clone(), &[0, 1], &[], PostTransform::Probit);
    check(&m, &ROWS, &[0, 1], &[-0.5244458913803101, 0.0, 0.8417561054229736, 0.0]);
    let w = leaves(&[0, 0], &[1, 2], &[0, 0], &[0.7, 0.3]);
    let m = classifier(w, &[4, 9], &[0.1], PostTransform::Probit);
    check(&m, &ROWS, &[1, 0], &[0.8417561054229736, 0.0, -0.2533535063266754, 0.0]);
}

// ----- buffers -----

#[test]
fn predict_into_checks_every_buffer() {
    let m = classifier(leaves(&[0, 0], &[1, 2], &[0, 0], &[0.7, 0.3]), &[0, 1], &[], PostTransform::None);
    let (mut labels, mut scores) = (vec![0; 2], vec![0.0; 4]);
    assert!(matches!(
        m.predict_into(&[0.0; 3], 2, 1, &mut labels, &mut scores),
        Err(OnnxMlError::InputSize { expected: 2, actual: 3, .. })
    ));
    assert!(matches!(
        m.predict_into(&[0.0; 2], 2, 1, &mut labels[..1], &mut scores),
        Err(OnnxMlError::OutputSize { output: "labels", .. })
    ));
    assert!(matches!(
        m.predict_into(&[0.0; 2], 2, 1, &mut labels, &mut scores[..3]),
        Err(OnnxMlError::OutputSize { output: "scores", .. })
    ));
    assert_eq!(m.predict(&[], 0, 1).unwrap().labels, Vec::<usize>::new());
    // Wider rows are fine: feature 0 is read.
    assert_eq!(m.predict(&[0.0, 9.0, 1.0, 9.0], 2, 2).unwrap().labels, [1, 0]);
}

#[test]
fn narrow_rows_are_an_error_not_a_panic() {
    let m = classifier(leaves(&[0, 0], &[1, 2], &[0, 0], &[0.7, 0.3]), &[0, 1], &[], PostTransform::None);
    assert_eq!(m.predict(&[], 1, 0), Err(OnnxMlError::MissingFeature { feature: 0, n_features: 0 }));
}
