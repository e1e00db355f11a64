//! The preprocessing and SVM operators on hand-made cases: onnxruntime's quirks (default
//! values, duplicate keys, NaN handling) and attribute sizes an attacker controls.
//! (The end-to-end comparison with onnxruntime is `crates/runtime/tests/corpus.rs`.)

use palisade_onnx_ml::{
    Binarizer, ClassLabels, FeatureVectorizer, Imputer, KernelType, LabelColumn, LabelEncoder, MAX_ELEMENTS,
    OneHotEncoder, OnnxMlError, PostTransform, Scaler, SvmClassifier, SvmClassifierAttributes,
    extract_columns,
};

#[test]
fn scaler_per_column_or_broadcast() {
    let s = Scaler::new(vec![1.0, 2.0], vec![2.0, 0.5]).unwrap();
    let mut out = [0.0f32; 4];
    s.transform(&[3.0f32, 4.0, 5.0, 6.0], 2, &mut out).unwrap();
    assert_eq!(out, [4.0, 1.0, 8.0, 2.0]);
    s.transform(&[3i64, 4, 5, 6], 2, &mut out).unwrap();
    assert_eq!(out, [4.0, 1.0, 8.0, 2.0]);
    // Three columns do not fit two scales.
    assert!(s.transform(&[1.0f32, 2.0, 3.0], 3, &mut out[..3]).is_err());
    let one = Scaler::new(vec![1.0], vec![10.0]).unwrap();
    one.transform(&[1.5f64, 2.5, 3.5], 3, &mut out[..3]).unwrap();
    assert_eq!(out[..3], [5.0, 15.0, 25.0]);
    assert!(Scaler::new(vec![1.0], vec![]).is_err());
    assert!(Scaler::new(vec![1.0, 2.0], vec![1.0]).is_err());
}

#[test]
fn imputer_replaces_nan_per_column() {
    let imp = Imputer::new(vec![10.0, 20.0], f32::NAN, vec![], 0).unwrap();
    assert!(imp.replaces_nan());
    let mut x = [f32::NAN, 1.0, 2.0, f32::NAN];
    imp.impute_f32(&mut x, 2).unwrap();
    assert_eq!(x, [10.0, 1.0, 2.0, 20.0]);
    // One value per column is required for per-column imputation; otherwise the first.
    let mut x = [f32::NAN, 1.0, f32::NAN];
    imp.impute_f32(&mut x, 3).unwrap();
    assert_eq!(x, [10.0, 1.0, 10.0]);
    let ints = Imputer::new(vec![], 0.0, vec![7], -1).unwrap();
    let mut x = [-1i64, 3, -1];
    ints.impute_i64(&mut x, 3).unwrap();
    assert_eq!(x, [7, 3, 7]);
    assert!(ints.impute_f32(&mut [1.0], 1).is_err());
    assert!(Imputer::new(vec![1.0], 0.0, vec![1], 0).is_err());
}

#[test]
fn binarizer_refuses_nan_like_onnxruntime() {
    let b = Binarizer::new(0.5);
    let mut x = [0.2f32, 0.5, 0.7];
    b.binarize_in_place(&mut x).unwrap();
    assert_eq!(x, [0.0, 0.0, 1.0]);
    let err = b.binarize_in_place(&mut [1.0f32, f32::NAN]).unwrap_err();
    assert!(err.to_string().contains("input value 1 is NaN"), "{err}");
}

#[test]
fn one_hot_encoder_unknowns_and_sizes() {
    let e = OneHotEncoder::new(vec![], vec!["a".into(), "b".into(), "a".into()], true).unwrap();
    let mut out = vec![0.0f32; 9];
    e.encode_strings(&["a", "b", "zzz"], &mut out).unwrap();
    // A repeated category takes its last position.
    assert_eq!(out, [0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
    let strict = OneHotEncoder::new(vec![3, 5], vec![], false).unwrap();
    let mut out = vec![0.0f32; 4];
    strict.encode_floats([5.9f64, 3.0].into_iter(), &mut out).unwrap();
    assert_eq!(out, [0.0, 1.0, 1.0, 0.0]);
    assert!(strict.encode_ints([Some(4)].into_iter(), &mut out[..2]).is_err());
    assert!(strict.encode_floats([f64::NAN].into_iter(), &mut out[..2]).is_err());
    // The error names the first unknown value by position, never by value.
    let mut out = vec![0.0f32; 6];
    assert_eq!(
        strict.encode_ints([Some(3), Some(7), Some(8)].into_iter(), &mut out),
        Err(OnnxMlError::UnknownCategory { index: 1, categories: 2 })
    );
    let strict = OneHotEncoder::new(vec![], vec!["paris".into(), "lyon".into()], false).unwrap();
    assert_eq!(
        strict.encode_strings(&["lyon", "lyon", "berlin"], &mut out),
        Err(OnnxMlError::UnknownCategory { index: 2, categories: 2 })
    );
    assert!(OneHotEncoder::new(vec![], vec![], true).is_err());
}

#[test]
fn label_encoder_versions() {
    // Opset 1: strings to class index (the last one for a repeated class) and back.
    let fwd =
        LabelEncoder::classes(vec!["x".into(), "y".into(), "x".into()], true, -1, "_Unused".into()).unwrap();
    let out = fwd.map(&LabelColumn::Strings(vec!["x".into(), "y".into(), "q".into()])).unwrap();
    assert_eq!(out, LabelColumn::Int64(vec![2, 1, -1]));
    let back = LabelEncoder::classes(vec!["x".into(), "y".into()], false, -1, "_Unused".into()).unwrap();
    let out = back.map(&LabelColumn::Int64(vec![1, 5])).unwrap();
    assert_eq!(out, LabelColumn::Strings(vec!["y".into(), "_Unused".into()]));
    // Opset 2: the first pair wins for a repeated key; NaN keys never match.
    let enc = LabelEncoder::new(
        LabelColumn::Floats(vec![1.0, 1.0, f32::NAN, -0.0]),
        LabelColumn::Int64(vec![10, 11, 12, 13]),
        LabelColumn::Int64(vec![-1]),
        false,
    )
    .unwrap();
    let out = enc.map(&LabelColumn::Floats(vec![1.0, f32::NAN, 0.0, 2.0])).unwrap();
    assert_eq!(out, LabelColumn::Int64(vec![10, -1, 13, -1]));
    // Opset 4: NaN matches NaN.
    let enc4 = LabelEncoder::new(
        LabelColumn::Doubles(vec![f64::NAN]),
        LabelColumn::Strings(vec!["missing".into()]),
        LabelColumn::Strings(vec!["other".into()]),
        true,
    )
    .unwrap();
    let out = enc4.map(&LabelColumn::Doubles(vec![f64::NAN, 1.0])).unwrap();
    assert_eq!(out, LabelColumn::Strings(vec!["missing".into(), "other".into()]));
    assert!(enc4.map(&LabelColumn::Int64(vec![1])).is_err());
    assert!(
        LabelEncoder::new(
            LabelColumn::Int64(vec![1]),
            LabelColumn::Int64(vec![]),
            LabelColumn::Int64(vec![0]),
            false
        )
        .is_err()
    );
}

#[test]
fn attacker_sizes_are_errors_not_aborts() {
    // inputdimensions that add up past what can be allocated.
    let err = FeatureVectorizer::new(&[i64::MAX, i64::MAX]).unwrap_err();
    assert!(matches!(err, OnnxMlError::TooLarge { .. }), "{err}");
    assert!(FeatureVectorizer::new(&[-1]).is_err());
    assert!(FeatureVectorizer::new(&[(MAX_ELEMENTS + 1) as i64]).is_err());
    // A filled buffer over the limit is refused before any allocation.
    assert!(matches!(palisade_onnx_ml::filled(MAX_ELEMENTS + 1, 0u8), Err(OnnxMlError::TooLarge { .. })));
    // Column indices outside the row.
    assert!(extract_columns(&[1.0f32, 2.0], 2, &[2]).is_err());
    assert!(extract_columns(&[1.0f32, 2.0], 2, &[-1]).is_err());
    assert_eq!(extract_columns(&[1.0f32, 2.0, 3.0, 4.0], 2, &[1]).unwrap(), [2.0, 4.0]);
    // SVM attributes that disagree on the number of vectors.
    let svm = |vectors_per_class: Vec<i64>, support_vectors: Vec<f32>| {
        SvmClassifier::new(SvmClassifierAttributes {
            kernel_type: KernelType::Rbf,
            kernel_params: vec![0.5, 0.0, 3.0],
            vectors_per_class,
            support_vectors,
            coefficients: vec![1.0, -1.0],
            rho: vec![0.0],
            prob_a: vec![],
            prob_b: vec![],
            class_labels: ClassLabels::Int64(vec![0, 1]),
            post_transform: PostTransform::None,
        })
    };
    assert!(svm(vec![1, 1], vec![0.0, 1.0]).is_ok());
    assert!(svm(vec![i64::MAX, 1], vec![0.0, 1.0]).is_err());
    assert!(svm(vec![-1, 3], vec![0.0, 1.0]).is_err());
    assert!(svm(vec![1, 1, 1], vec![0.0, 1.0, 2.0]).is_err());
}

#[test]
fn svm_binary_scores_and_votes() {
    // Two 1-d support vectors, one per class, linear kernel: s = -x0*? + ...
    let svm = SvmClassifier::new(SvmClassifierAttributes {
        kernel_type: KernelType::Linear,
        kernel_params: vec![],
        vectors_per_class: vec![1, 1],
        support_vectors: vec![-1.0, 1.0],
        coefficients: vec![-1.0, 1.0],
        rho: vec![0.0],
        prob_a: vec![],
        prob_b: vec![],
        class_labels: ClassLabels::Int64(vec![7, 9]),
        post_transform: PostTransform::None,
    })
    .unwrap();
    assert_eq!(svm.score_columns(), 2);
    // s = coef[0][0] * k(x, sv0) + coef[0][1] * k(x, sv1) = x + x = 2x; s > 0 votes class 0.
    let out = svm.predict(&[2.0, -3.0], 2).unwrap();
    assert_eq!(out.labels, [0, 1]);
    assert_eq!(out.scores, [-4.0, 4.0, 6.0, -6.0]);
}
