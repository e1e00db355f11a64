//! The categories the build's self-test feeds to categorical inputs
//! (`palisade_runtime::onnx::input_vocabularies`), read from corpus models.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use palisade_runtime::onnx::{Vocabulary, input_vocabularies};

fn corpus(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models/corpus").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn strings(values: &[&str]) -> Vocabulary {
    Vocabulary::Strings(values.iter().map(|s| s.as_bytes().to_vec()).collect())
}

#[test]
fn a_column_transformer_gives_each_categorical_column_its_categories() {
    let found = input_vocabularies(&corpus("column_transformer.onnx"));
    // One OneHotEncoder per string column, read directly; the integer column through a
    // Gather and a Cast.
    assert_eq!(found.get("city"), Some(&strings(&["lille", "lyon", "nice", "paris"])), "{found:?}");
    assert_eq!(found.get("plan"), Some(&strings(&["basic", "pro"])), "{found:?}");
    assert_eq!(found.get("visits"), Some(&Vocabulary::Ints((0..10).collect())), "{found:?}");
    assert!(!found.contains_key("age") && !found.contains_key("income"), "{found:?}");
}

#[test]
fn a_file_that_is_not_onnx_has_none() {
    assert!(input_vocabularies(b"not a model").is_empty());
}
