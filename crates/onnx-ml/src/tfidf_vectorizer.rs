//! `TfIdfVectorizer` (ONNX opset 9).

use std::collections::HashMap;
use std::hash::Hash;

use crate::OnnxMlError;

/// The weighting a [`TfIdfVectorizer`] applies (`mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TfIdfMode {
    /// `TF`: the counts.
    Tf,
    /// `IDF`: 1 (or the n-gram's weight) where the count is positive.
    Idf,
    /// `TFIDF`: the counts times the n-gram's weight.
    TfIdf,
}

impl std::str::FromStr for TfIdfMode {
    type Err = OnnxMlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "TF" => Ok(TfIdfMode::Tf),
            "IDF" => Ok(TfIdfMode::Idf),
            "TFIDF" => Ok(TfIdfMode::TfIdf),
            other => Err(OnnxMlError::unknown_value("mode", other)),
        }
    }
}

/// The n-grams of a [`TfIdfVectorizer`]: `pool_strings` or `pool_int64s`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NgramPool {
    /// `pool_strings`.
    Strings(Vec<String>),
    /// `pool_int64s`.
    Int64(Vec<i64>),
}

/// The attributes of a `TfIdfVectorizer` node.
#[derive(Debug, Clone, PartialEq)]
pub struct TfIdfVectorizerAttributes {
    /// `mode`.
    pub mode: TfIdfMode,
    /// `min_gram_length` (at least 1).
    pub min_gram_length: i64,
    /// `max_gram_length` (at least `min_gram_length`).
    pub max_gram_length: i64,
    /// `max_skip_count`: items an n-gram may skip between its elements.
    pub max_skip_count: i64,
    /// `ngram_counts`: where the 1-grams, 2-grams, ... start in the pool.
    pub ngram_counts: Vec<i64>,
    /// `ngram_indexes`: the output column of each n-gram of the pool.
    pub ngram_indexes: Vec<i64>,
    /// `weights`: per n-gram of the pool, for `IDF` and `TFIDF` (empty: 1).
    pub weights: Vec<f32>,
    /// The pool.
    pub pool: NgramPool,
}

/// A node of the n-gram trie: its id (0: no n-gram ends here) and its continuations.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Trie<K: Hash + Eq> {
    id: usize,
    next: HashMap<K, Trie<K>>,
}

impl<K: Hash + Eq> Trie<K> {
    fn new() -> Self {
        Trie { id: 0, next: HashMap::new() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Grams {
    Strings(Trie<String>),
    Int64(Trie<i64>),
}

/// The items of one input row.
#[derive(Debug, Clone, Copy)]
pub enum TfIdfInput<'a> {
    /// String items.
    Strings(&'a [String]),
    /// `int64` items.
    Int64(&'a [i64]),
    /// `int32` items.
    Int32(&'a [i32]),
}

impl TfIdfInput<'_> {
    fn len(&self) -> usize {
        match self {
            TfIdfInput::Strings(v) => v.len(),
            TfIdfInput::Int64(v) => v.len(),
            TfIdfInput::Int32(v) => v.len(),
        }
    }
}

/// A compiled `TfIdfVectorizer` with onnxruntime's semantics.
///
/// Each row of the input (`[C]` is one row, `[B, C]` is B rows) is scanned for the
/// pool's n-grams of `min_gram_length..=max_gram_length` items, with up to
/// `max_skip_count` items skipped between consecutive elements (1-grams are counted
/// once, whatever the skip). The pool's i-th n-gram lands in output column
/// `ngram_indexes[i]`: `TF` counts its occurrences; with `weights`, `TFIDF` adds its
/// weight `weights[i]` per occurrence and `IDF` sets the column to it (where several
/// n-grams share a column, the last found wins); without weights, `TFIDF` counts and
/// `IDF` writes 1 where the count is positive. `[C]` gives `[columns]`, `[B, C]` gives
/// `[B, columns]`, where `columns` is the largest index + 1.
///
/// Deliberate difference: every n-gram of the pool must have an output column
/// (`ngram_indexes` at least as long as the pool's n-grams); onnxruntime reads past
/// `ngram_indexes` and may crash otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct TfIdfVectorizer {
    mode: TfIdfMode,
    min_gram_length: usize,
    max_gram_length: usize,
    max_skip_count: usize,
    ngram_indexes: Vec<usize>,
    weights: Vec<f32>,
    columns: usize,
    grams: Grams,
}

impl TfIdfVectorizer {
    /// Validates the attributes and builds the n-gram trie.
    pub fn new(attributes: TfIdfVectorizerAttributes) -> Result<Self, OnnxMlError> {
        let TfIdfVectorizerAttributes {
            mode,
            min_gram_length,
            max_gram_length,
            max_skip_count,
            ngram_counts,
            ngram_indexes,
            weights,
            pool,
        } = attributes;
        let positive = |attribute: &'static str, v: i64, min: i64| match usize::try_from(v) {
            Ok(n) if v >= min => Ok(n),
            _ => Err(OnnxMlError::InvalidAttribute {
                attribute,
                reason: format!("must be at least {min}, got {v}"),
            }),
        };
        let min_gram = positive("min_gram_length", min_gram_length, 1)?;
        let max_gram = positive("max_gram_length", max_gram_length, min_gram_length.max(1))?;
        let max_skip = positive("max_skip_count", max_skip_count, 0)?;
        if ngram_counts.is_empty() || max_gram > ngram_counts.len() {
            return Err(OnnxMlError::InvalidAttribute {
                attribute: "ngram_counts",
                reason: format!(
                    "{} entries, but n-grams up to length {max_gram} need one start per length",
                    ngram_counts.len()
                ),
            });
        }
        let mut indexes = Vec::with_capacity(ngram_indexes.len());
        for (index, &i) in ngram_indexes.iter().enumerate() {
            match usize::try_from(i) {
                Ok(i) if i < crate::MAX_ELEMENTS => indexes.push(i),
                _ => {
                    return Err(OnnxMlError::InvalidEntry {
                        attribute: "ngram_indexes",
                        index,
                        value: i,
                        reason: "must be a non-negative output column",
                    });
                }
            }
        }
        let columns = indexes.iter().max().map(|m| m + 1).ok_or_else(|| OnnxMlError::InvalidAttribute {
            attribute: "ngram_indexes",
            reason: "must not be empty".into(),
        })?;
        if !weights.is_empty() && weights.len() != indexes.len() {
            return Err(OnnxMlError::LengthMismatch {
                attribute: "weights",
                actual: weights.len(),
                reference: "ngram_indexes",
                expected: indexes.len(),
            });
        }
        let total = match &pool {
            NgramPool::Strings(v) => v.len(),
            NgramPool::Int64(v) => v.len(),
        };
        if total == 0 {
            return Err(OnnxMlError::InvalidAttribute {
                attribute: "pool_strings",
                reason: "the pool is empty".into(),
            });
        }
        // Ids count every n-gram of the pool from 1, loaded or not; id i is ngram_indexes[i - 1].
        let mut strings = Trie::new();
        let mut ints = Trie::new();
        let mut id = 1usize;
        for (i, &start) in ngram_counts.iter().enumerate() {
            let size = i + 1;
            let end = ngram_counts.get(i + 1).copied().unwrap_or(total as i64);
            let (start, end) = match (usize::try_from(start), usize::try_from(end)) {
                (Ok(s), Ok(e)) if s <= e && e <= total => (s, e),
                _ => {
                    return Err(OnnxMlError::InvalidEntry {
                        attribute: "ngram_counts",
                        index: i,
                        value: start,
                        reason: "n-gram starts must be ascending and within the pool",
                    });
                }
            };
            let items = end - start;
            if items % size != 0 {
                return Err(OnnxMlError::InvalidEntry {
                    attribute: "ngram_counts",
                    index: i,
                    value: start as i64,
                    reason: "the items of n-grams of this length are not a whole number of n-grams",
                });
            }
            let n = items / size;
            if size < min_gram || size > max_gram {
                id += n;
                continue;
            }
            for g in 0..n {
                let at = start + g * size;
                let fresh = match &pool {
                    NgramPool::Strings(v) => insert(&mut strings, &v[at..at + size], id),
                    NgramPool::Int64(v) => insert(&mut ints, &v[at..at + size], id),
                };
                if !fresh {
                    return Err(OnnxMlError::InvalidAttribute {
                        attribute: "pool_strings",
                        reason: format!("n-gram {id} (of {size} items) appears twice"),
                    });
                }
                if id > indexes.len() {
                    return Err(OnnxMlError::LengthMismatch {
                        attribute: "ngram_indexes",
                        actual: indexes.len(),
                        reference: "pool_strings",
                        expected: id,
                    });
                }
                id += 1;
            }
        }
        let grams = match pool {
            NgramPool::Strings(_) => Grams::Strings(strings),
            NgramPool::Int64(_) => Grams::Int64(ints),
        };
        Ok(TfIdfVectorizer {
            mode,
            min_gram_length: min_gram,
            max_gram_length: max_gram,
            max_skip_count: max_skip,
            ngram_indexes: indexes,
            weights,
            columns,
            grams,
        })
    }

    /// Number of output columns.
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// Whether the pool holds strings (else integers).
    pub fn takes_strings(&self) -> bool {
        matches!(self.grams, Grams::Strings(_))
    }

    /// Vectorizes an input of `shape` (`[]`, `[C]` or `[B, C]` with `B > 0`): the output
    /// shape and values.
    pub fn vectorize(
        &self,
        shape: &[usize],
        input: TfIdfInput<'_>,
    ) -> Result<(Vec<usize>, Vec<f32>), OnnxMlError> {
        let (rows, width, out_shape) = match *shape {
            [] => (1, 1, vec![self.columns]),
            [c] => (1, c, vec![self.columns]),
            [b, c] if b > 0 => (b, c, vec![b, self.columns]),
            _ => {
                return Err(OnnxMlError::InvalidInput(format!(
                    "TfIdfVectorizer takes an input of shape [C] or [B, C] with B > 0, got {shape:?}"
                )));
            }
        };
        if rows.checked_mul(width) != Some(input.len()) {
            return Err(OnnxMlError::InputSize {
                n_rows: rows,
                n_features: width,
                expected: rows.saturating_mul(width),
                actual: input.len(),
            });
        }
        let mut values = crate::filled(crate::alloc::product(rows, self.columns)?, 0.0f32)?;
        let mut counts = crate::filled(self.columns, 0u32)?;
        for (r, out) in values.chunks_exact_mut(self.columns).enumerate() {
            let range = r * width..(r + 1) * width;
            counts.fill(0);
            let mut hit = |id: usize| self.record(id, out, &mut counts);
            match (&self.grams, input) {
                (Grams::Strings(trie), TfIdfInput::Strings(items)) => {
                    self.scan(trie, &items[range], &mut hit)
                }
                (Grams::Int64(trie), TfIdfInput::Int64(items)) => self.scan(trie, &items[range], &mut hit),
                (Grams::Int64(trie), TfIdfInput::Int32(items)) => {
                    let wide: Vec<i64> = items[range].iter().map(|&x| i64::from(x)).collect();
                    self.scan(trie, &wide, &mut hit);
                }
                // onnxruntime finds no n-gram when the input's type is not the pool's.
                _ => {}
            }
            if self.mode == TfIdfMode::Tf || self.weights.is_empty() {
                for (v, &c) in out.iter_mut().zip(counts.iter()) {
                    *v = match self.mode {
                        TfIdfMode::Idf => {
                            if c > 0 {
                                1.0
                            } else {
                                0.0
                            }
                        }
                        TfIdfMode::Tf | TfIdfMode::TfIdf => c as f32,
                    };
                }
            }
        }
        Ok((out_shape, values))
    }

    /// Records one occurrence of n-gram `id` (0-based): counts for `TF` (and unweighted
    /// modes), and with weights, `TFIDF` adds the n-gram's weight to its column and `IDF`
    /// sets the column to it (the last occurrence in scan order wins), as onnxruntime does.
    fn record(&self, id: usize, out: &mut [f32], counts: &mut [u32]) {
        let Some(&column) = self.ngram_indexes.get(id) else { return };
        if let Some(c) = counts.get_mut(column) {
            *c = c.saturating_add(1);
        }
        let (Some(&weight), Some(slot)) = (self.weights.get(id), out.get_mut(column)) else { return };
        match self.mode {
            TfIdfMode::TfIdf => *slot += weight,
            TfIdfMode::Idf => *slot = weight,
            TfIdfMode::Tf => {}
        }
    }

    /// Finds the n-grams of one row in onnxruntime's order: 1-grams item by item, then
    /// for each skip distance, from each start item, n-grams of increasing length.
    fn scan<K, Q>(&self, trie: &Trie<K>, row: &[Q], hit: &mut impl FnMut(usize))
    where
        K: Hash + Eq + std::borrow::Borrow<Q>,
        Q: Hash + Eq,
    {
        if trie.next.is_empty() {
            return;
        }
        let mut start_size = self.min_gram_length;
        if start_size == 1 {
            for item in row {
                if let Some(node) = trie.next.get(item)
                    && node.id != 0
                {
                    hit(node.id - 1);
                }
            }
            start_size = 2;
            if start_size > self.max_gram_length {
                return;
            }
        }
        for skip in 1..=self.max_skip_count + 1 {
            for begin in 0..row.len() {
                if begin + skip * (start_size - 1) >= row.len() {
                    break;
                }
                let mut node = trie;
                let mut at = begin;
                let mut size = 1;
                while size <= self.max_gram_length && at < row.len() {
                    let Some(next) = node.next.get(&row[at]) else { break };
                    if size >= start_size && next.id != 0 {
                        hit(next.id - 1);
                    }
                    node = next;
                    size += 1;
                    at += skip;
                }
            }
        }
    }
}

/// Inserts an n-gram with `id`; false when the same n-gram already has an id.
fn insert<K: Hash + Eq + Clone>(trie: &mut Trie<K>, gram: &[K], id: usize) -> bool {
    let mut node = trie;
    for item in gram {
        node = node.next.entry(item.clone()).or_insert_with(Trie::new);
    }
    if node.id != 0 {
        return false;
    }
    node.id = id;
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn vectorizer(mode: TfIdfMode, indexes: &[i64], weights: &[f32]) -> TfIdfVectorizer {
        TfIdfVectorizer::new(TfIdfVectorizerAttributes {
            mode,
            min_gram_length: 1,
            max_gram_length: 1,
            max_skip_count: 0,
            ngram_counts: vec![0],
            ngram_indexes: indexes.to_vec(),
            weights: weights.to_vec(),
            pool: NgramPool::Strings(vec!["A".into(), "B".into(), "C".into()]),
        })
        .unwrap()
    }

    fn run(v: &TfIdfVectorizer, rows: &[&[&str]]) -> Vec<f32> {
        let items: Vec<String> = rows.iter().flat_map(|r| r.iter().map(|s| s.to_string())).collect();
        v.vectorize(&[rows.len(), rows[0].len()], TfIdfInput::Strings(&items)).unwrap().1
    }

    /// Answers onnxruntime 1.32 gave for the same attributes and rows.
    #[test]
    fn weights_belong_to_ngrams_like_onnxruntime() {
        let rows: &[&[&str]] = &[&["A", "B", "C"], &["A", "A", "x"]];
        let idf = vectorizer(TfIdfMode::Idf, &[2, 0, 1], &[10.0, 20.0, 30.0]);
        assert_eq!(run(&idf, rows), vec![20.0, 30.0, 10.0, 0.0, 0.0, 10.0]);
        let tfidf = vectorizer(TfIdfMode::TfIdf, &[2, 0, 1], &[10.0, 20.0, 30.0]);
        assert_eq!(run(&tfidf, rows), vec![20.0, 30.0, 10.0, 0.0, 0.0, 20.0]);
        let rows: &[&[&str]] = &[&["A", "B", "C"], &["B", "A", "x"], &["A", "A", "x"]];
        let shared = vectorizer(TfIdfMode::TfIdf, &[1, 1, 3], &[10.0, 20.0, 30.0]);
        assert_eq!(run(&shared, rows), vec![0., 30., 0., 30., 0., 30., 0., 0., 0., 20., 0., 0.]);
        let shared = vectorizer(TfIdfMode::Idf, &[1, 1, 3], &[10.0, 20.0, 30.0]);
        assert_eq!(run(&shared, rows), vec![0., 20., 0., 30., 0., 10., 0., 0., 0., 10., 0., 0.]);
    }

    #[test]
    fn one_dimensional_and_empty_inputs() {
        let tf = vectorizer(TfIdfMode::Tf, &[0, 1, 2], &[]);
        let items: Vec<String> = ["A", "A", "C"].iter().map(|s| s.to_string()).collect();
        assert_eq!(tf.vectorize(&[3], TfIdfInput::Strings(&items)).unwrap(), (vec![3], vec![2.0, 0.0, 1.0]));
        assert_eq!(tf.vectorize(&[2, 0], TfIdfInput::Strings(&[])).unwrap(), (vec![2, 3], vec![0.0; 6]));
        assert!(tf.vectorize(&[0, 2], TfIdfInput::Strings(&[])).is_err());
        assert_eq!(tf.vectorize(&[2], TfIdfInput::Int64(&[1, 2])).unwrap().1, vec![0.0; 3]);
    }

    #[test]
    fn bad_pools_are_errors() {
        let build = |counts: Vec<i64>, indexes: Vec<i64>, pool: Vec<&str>| {
            TfIdfVectorizer::new(TfIdfVectorizerAttributes {
                mode: TfIdfMode::Tf,
                min_gram_length: 1,
                max_gram_length: 2,
                max_skip_count: 0,
                ngram_counts: counts,
                ngram_indexes: indexes,
                weights: vec![],
                pool: NgramPool::Strings(pool.into_iter().map(str::to_owned).collect()),
            })
        };
        assert!(build(vec![0, 2], vec![0, 1, 2], vec!["a", "b", "a", "b"]).is_ok());
        assert!(build(vec![0, 2], vec![0, 1, 2], vec!["a", "a", "a", "b"]).is_err(), "duplicate 1-gram");
        assert!(build(vec![0, 2], vec![0, 1, 2], vec!["a", "b", "a"]).is_err(), "half a 2-gram");
        assert!(build(vec![0, 2], vec![0, 1], vec!["a", "b", "a", "b"]).is_err(), "n-gram without a column");
        assert!(build(vec![0], vec![0, 1], vec!["a", "b"]).is_err(), "2-grams without a start");
        assert!(build(vec![0, 2], vec![-1, 1, 2], vec!["a", "b", "a", "b"]).is_err());
    }
}
