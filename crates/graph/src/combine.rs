//! Built-in combiners: AVERAGE_COMBINER, MAJORITY_VOTE, CONCAT_COMBINER.

use palisade_bundle::graph::Implementation;
use palisade_core::{Dim, Tensor, TensorData, TensorSpec};

use crate::GraphError;
use crate::builtin::{as_f64, concat_last, from_f64};
use crate::fit::{check_feeds, shape_text};
use crate::params::Params;

/// A configured combiner.
#[derive(Debug, Clone, PartialEq)]
pub enum Combiner {
    /// The element-wise mean of the floating-point tensors every child answers (Seldon's
    /// AVERAGE_COMBINER), or of the listed ones.
    Average(Option<Vec<String>>),
    /// Per row, the label most children answered in `tensor`; a tie goes to the label of
    /// the earliest child among the tied.
    MajorityVote(Option<String>),
    /// Every child's tensor joined along the last axis, in child order (all shared tensors,
    /// or the listed ones).
    Concat(Option<Vec<String>>),
}

impl Combiner {
    pub(crate) fn configure(
        implementation: Implementation,
        path: &str,
        params: &mut Params<'_>,
    ) -> Result<Combiner, GraphError> {
        match implementation {
            Implementation::AverageCombiner => Ok(Combiner::Average(params.names("tensors")?)),
            Implementation::MajorityVote => {
                Ok(Combiner::MajorityVote(params.text("tensor").map(str::to_owned)))
            }
            Implementation::ConcatCombiner => Ok(Combiner::Concat(params.names("tensors")?)),
            other => Err(GraphError::new(
                format!("{path}.implementation"),
                format!("{} is not a combiner", other.as_str()),
            )),
        }
    }

    pub(crate) fn known(implementation: Implementation) -> &'static str {
        match implementation {
            Implementation::MajorityVote => "`tensor`",
            _ => "`tensors`",
        }
    }

    /// The tensors combined, given the children's answers; or why they cannot be.
    fn names(&self, children: &[Vec<TensorSpec>]) -> Result<Vec<String>, String> {
        let first = &children[0];
        let shared = |spec: &TensorSpec| children.iter().all(|c| c.iter().any(|t| t.name == spec.name));
        let names: Vec<String> = match self {
            Combiner::Average(Some(list)) | Combiner::Concat(Some(list)) => list.clone(),
            Combiner::Average(None) => {
                first.iter().filter(|t| t.datatype.is_float() && shared(t)).map(|t| t.name.clone()).collect()
            }
            Combiner::Concat(None) => first.iter().filter(|t| shared(t)).map(|t| t.name.clone()).collect(),
            Combiner::MajorityVote(Some(name)) => vec![name.clone()],
            Combiner::MajorityVote(None) => {
                let labels: Vec<&TensorSpec> =
                    first.iter().filter(|t| !t.datatype.is_float() && shared(t)).collect();
                match labels.as_slice() {
                    [one] => vec![one.name.clone()],
                    _ => {
                        return Err(format!(
                            "name the label tensor with parameter `tensor`: the children share {} non-floating-point tensors",
                            labels.len()
                        ));
                    }
                }
            }
        };
        if names.is_empty() {
            return Err("the children share no tensor to combine".to_owned());
        }
        Ok(names)
    }

    /// What the combiner answers for its children's answers.
    pub(crate) fn output_specs(&self, children: &[Vec<TensorSpec>]) -> Result<Vec<TensorSpec>, String> {
        let names = self.names(children)?;
        let mut out = Vec::new();
        for name in &names {
            let Some(first) = children[0].iter().find(|t| &t.name == name) else {
                return Err(format!("the first child does not answer `{name}`"));
            };
            for (i, child) in children.iter().enumerate().skip(1) {
                let want = std::slice::from_ref(first);
                if matches!(self, Combiner::Concat(_)) {
                    let have = child
                        .iter()
                        .find(|t| &t.name == name)
                        .ok_or_else(|| format!("child {i} does not answer `{name}`"))?;
                    if have.datatype != first.datatype || have.shape.len() != first.shape.len() {
                        return Err(format!(
                            "child {i} answers `{name}` as {} {}, child 0 as {} {}",
                            have.datatype,
                            shape_text(&have.shape),
                            first.datatype,
                            shape_text(&first.shape)
                        ));
                    }
                } else {
                    check_feeds(child, want, &format!("child {i}"))
                        .map_err(|e| format!("the children's answers differ: {e}"))?;
                }
            }
            let mut spec = first.clone();
            match self {
                Combiner::Average(_) if !first.datatype.is_float() => {
                    return Err(format!(
                        "AVERAGE_COMBINER averages floating-point tensors; `{name}` is {}",
                        first.datatype
                    ));
                }
                Combiner::MajorityVote(_) => {
                    if first.shape.iter().skip(1).any(|d| *d != Dim::Fixed(1)) {
                        return Err(format!(
                            "MAJORITY_VOTE takes one label per row; `{name}` is {}",
                            shape_text(&first.shape)
                        ));
                    }
                }
                Combiner::Concat(_) => {
                    let rank = first.shape.len();
                    if rank == 0 {
                        return Err(format!("`{name}` is a scalar"));
                    }
                    let total = children.iter().try_fold(0u64, |sum, c| {
                        match c.iter().find(|t| &t.name == name).map(|t| t.shape[rank - 1]) {
                            Some(Dim::Fixed(n)) => Some(sum + n),
                            _ => None,
                        }
                    });
                    spec.shape[rank - 1] = total.map_or(Dim::Dynamic, Dim::Fixed);
                    spec.labels = None;
                }
                Combiner::Average(_) => {}
            }
            out.push(spec);
        }
        Ok(out)
    }

    /// Combines the children's answers (in child order).
    pub(crate) fn apply(&self, children: Vec<Vec<Tensor>>) -> Result<Vec<Tensor>, String> {
        let specs: Vec<Vec<TensorSpec>> = children
            .iter()
            .map(|c| {
                c.iter()
                    .map(|t| TensorSpec {
                        name: t.name().to_owned(),
                        datatype: t.datatype(),
                        shape: t.shape().iter().map(|&d| Dim::Fixed(d as u64)).collect(),
                        allow_nan: false,
                        labels: None,
                    })
                    .collect()
            })
            .collect();
        let names = self.names(&specs)?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let parts: Vec<&Tensor> = children
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    c.iter()
                        .find(|t| t.name() == name)
                        .ok_or_else(|| format!("child {i} did not answer `{name}`"))
                })
                .collect::<Result<_, _>>()?;
            let first = parts[0];
            if !matches!(self, Combiner::Concat(_))
                && parts.iter().any(|p| p.shape() != first.shape() || p.datatype() != first.datatype())
            {
                return Err(format!("the children answered `{name}` with different shapes or datatypes"));
            }
            out.push(match self {
                Combiner::Average(_) => average(&parts)?,
                Combiner::MajorityVote(_) => vote(&parts)?,
                Combiner::Concat(_) => concat_last(&parts.into_iter().cloned().collect::<Vec<_>>(), &name)?,
            });
        }
        Ok(out)
    }
}

fn average(parts: &[&Tensor]) -> Result<Tensor, String> {
    let first = parts[0];
    let n = parts.len() as f64;
    // Summed in f64 in child order, then rounded once to the datatype.
    let mut sum = vec![0.0f64; first.data().len()];
    for part in parts {
        let values = as_f64(part.data()).ok_or("BYTES cannot be averaged")?;
        sum.iter_mut().zip(values).for_each(|(s, v)| *s += v);
    }
    let mean = sum.into_iter().map(|s| s / n).collect();
    let data = from_f64(mean, first.datatype()).ok_or("cannot average this datatype")?;
    Tensor::new(first.name(), first.shape().to_vec(), data).map_err(|e| e.to_string())
}

fn vote(parts: &[&Tensor]) -> Result<Tensor, String> {
    let first = parts[0];
    let rows = first.data().len();
    let winner = |row: usize| -> usize {
        let mut best = (0usize, 0usize);
        for (i, part) in parts.iter().enumerate() {
            let votes = parts.iter().filter(|p| same_element(p.data(), part.data(), row)).count();
            if votes > best.1 {
                best = (i, votes);
            }
        }
        best.0
    };
    macro_rules! pick {
        ($variant:ident) => {{
            let mut out = Vec::with_capacity(rows);
            for row in 0..rows {
                let TensorData::$variant(v) = parts[winner(row)].data() else {
                    return Err("mixed datatypes".to_owned());
                };
                out.push(v[row].clone());
            }
            TensorData::$variant(out)
        }};
    }
    let data = match first.data() {
        TensorData::Bool(_) => pick!(Bool),
        TensorData::Uint8(_) => pick!(Uint8),
        TensorData::Uint16(_) => pick!(Uint16),
        TensorData::Uint32(_) => pick!(Uint32),
        TensorData::Uint64(_) => pick!(Uint64),
        TensorData::Int8(_) => pick!(Int8),
        TensorData::Int16(_) => pick!(Int16),
        TensorData::Int32(_) => pick!(Int32),
        TensorData::Int64(_) => pick!(Int64),
        TensorData::Bytes(_) => pick!(Bytes),
        other => {
            return Err(format!("MAJORITY_VOTE counts labels; {} values are not labels", other.datatype()));
        }
    };
    Tensor::new(first.name(), first.shape().to_vec(), data).map_err(|e| e.to_string())
}

fn same_element(a: &TensorData, b: &TensorData, i: usize) -> bool {
    match (a, b) {
        (TensorData::Bool(x), TensorData::Bool(y)) => x[i] == y[i],
        (TensorData::Uint8(x), TensorData::Uint8(y)) => x[i] == y[i],
        (TensorData::Uint16(x), TensorData::Uint16(y)) => x[i] == y[i],
        (TensorData::Uint32(x), TensorData::Uint32(y)) => x[i] == y[i],
        (TensorData::Uint64(x), TensorData::Uint64(y)) => x[i] == y[i],
        (TensorData::Int8(x), TensorData::Int8(y)) => x[i] == y[i],
        (TensorData::Int16(x), TensorData::Int16(y)) => x[i] == y[i],
        (TensorData::Int32(x), TensorData::Int32(y)) => x[i] == y[i],
        (TensorData::Int64(x), TensorData::Int64(y)) => x[i] == y[i],
        (TensorData::Bytes(x), TensorData::Bytes(y)) => x[i] == y[i],
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn combiners_compute() {
        let p = |v: Vec<f32>| {
            vec![
                Tensor::new("p", vec![1, 2], TensorData::Fp32(v)).unwrap(),
                Tensor::new("label", vec![1], TensorData::Int64(vec![0])).unwrap(),
            ]
        };
        let out = Combiner::Average(None)
            .apply(vec![p(vec![0.2, 0.8]), p(vec![0.4, 0.6]), p(vec![0.3, 0.7])])
            .unwrap();
        assert_eq!(out.len(), 1);
        let TensorData::Fp32(v) = out[0].data() else { panic!() };
        assert!((v[0] - 0.3).abs() < 1e-6 && (v[1] - 0.7).abs() < 1e-6, "{v:?}");
        let l = |v: Vec<i64>| vec![Tensor::new("label", vec![v.len()], TensorData::Int64(v)).unwrap()];
        let out = Combiner::MajorityVote(None)
            .apply(vec![l(vec![1, 2, 0]), l(vec![2, 2, 1]), l(vec![2, 0, 2])])
            .unwrap();
        assert_eq!(out[0].data(), &TensorData::Int64(vec![2, 2, 0]));
        let out = Combiner::Concat(Some(vec!["p".into()]))
            .apply(vec![p(vec![1.0, 2.0]), p(vec![3.0, 4.0])])
            .unwrap();
        assert_eq!(out[0].shape(), &[1, 4]);
    }
}
