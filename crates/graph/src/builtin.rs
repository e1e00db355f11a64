//! Built-in transformers: SELECT, RENAME, CONCAT, CAST, SCALE. Each knows what it answers
//! for a given input (checked at build time) and computes it (at request time).

use half::{bf16, f16};
use palisade_bundle::graph::Implementation;
use palisade_core::{DataType, Dim, Tensor, TensorData, TensorSpec};

use crate::GraphError;
use crate::fit::{dims_compatible, shape_text};
use crate::params::Params;

/// A configured built-in transformer.
#[derive(Debug, Clone, PartialEq)]
pub enum Builtin {
    /// Keeps these tensors, in this order.
    Select(Vec<String>),
    /// Renames tensors (from, to).
    Rename(Vec<(String, String)>),
    /// Concatenates these tensors along their last axis into `output`.
    Concat {
        /// The tensors, in order.
        tensors: Vec<String>,
        /// The new tensor's name.
        output: String,
    },
    /// Converts tensors (all numeric ones when `None`) to a datatype.
    Cast {
        /// The datatype.
        to: DataType,
        /// Which tensors.
        tensors: Option<Vec<String>>,
    },
    /// `x * scale + offset` on tensors (all floating-point ones when `None`).
    Scale {
        /// Multiplier.
        scale: f64,
        /// Addend.
        offset: f64,
        /// Which tensors.
        tensors: Option<Vec<String>>,
    },
}

impl Builtin {
    /// Reads a transformer built-in's parameters.
    pub(crate) fn configure(
        implementation: Implementation,
        path: &str,
        params: &mut Params<'_>,
    ) -> Result<Builtin, GraphError> {
        let required = |what: Option<Vec<String>>, name: &str| {
            what.ok_or_else(|| {
                GraphError::new(
                    format!("{path}.parameters"),
                    format!("{} needs parameter `{name}`", implementation.as_str()),
                )
            })
        };
        match implementation {
            Implementation::Select => Ok(Builtin::Select(required(params.names("tensors")?, "tensors")?)),
            Implementation::Rename => {
                let pairs = params.pairs();
                if pairs.is_empty() {
                    return Err(GraphError::new(
                        format!("{path}.parameters"),
                        "RENAME takes one parameter per tensor: `{name: FROM, value: TO}`",
                    ));
                }
                Ok(Builtin::Rename(pairs))
            }
            Implementation::Concat => {
                let tensors = required(params.names("tensors")?, "tensors")?;
                let output = params.text("output").map(str::to_owned);
                let output = required(output.map(|o| vec![o]), "output")?.remove(0);
                Ok(Builtin::Concat { tensors, output })
            }
            Implementation::Cast => {
                let to = params.text("datatype").ok_or_else(|| {
                    GraphError::new(
                        format!("{path}.parameters"),
                        "CAST needs parameter `datatype` (FP32, INT64, ...)",
                    )
                })?;
                let to = DataType::parse(to)
                    .map_err(|e| GraphError::new(format!("{path}.parameters"), e.to_string()))?;
                if to == DataType::Bytes {
                    return Err(GraphError::new(
                        format!("{path}.parameters"),
                        "CAST converts numbers and booleans; BYTES is not one",
                    ));
                }
                Ok(Builtin::Cast { to, tensors: params.names("tensors")? })
            }
            Implementation::Scale => Ok(Builtin::Scale {
                scale: params.number("scale")?.unwrap_or(1.0),
                offset: params.number("offset")?.unwrap_or(0.0),
                tensors: params.names("tensors")?,
            }),
            other => Err(GraphError::new(
                format!("{path}.implementation"),
                format!("{} is not a transformer", other.as_str()),
            )),
        }
    }

    /// The parameters the built-in reads, for messages.
    pub(crate) fn known(implementation: Implementation) -> &'static str {
        match implementation {
            Implementation::Select => "`tensors`",
            Implementation::Concat => "`tensors` and `output`",
            Implementation::Cast => "`datatype` and `tensors`",
            Implementation::Scale => "`scale`, `offset` and `tensors`",
            _ => "none",
        }
    }

    fn chosen(list: &Option<Vec<String>>, spec: &TensorSpec, default: bool) -> bool {
        match list {
            Some(names) => names.contains(&spec.name),
            None => default,
        }
    }

    /// What the built-in answers for `input`, or why it cannot run on it.
    pub(crate) fn output_specs(&self, input: &[TensorSpec]) -> Result<Vec<TensorSpec>, String> {
        let find = |name: &str| {
            input.iter().find(|t| t.name == name).ok_or_else(|| {
                let names: Vec<&str> = input.iter().map(|t| t.name.as_str()).collect();
                format!("tensor `{name}` is not in the input {names:?}")
            })
        };
        match self {
            Builtin::Select(names) => names.iter().map(|n| find(n).cloned()).collect(),
            Builtin::Rename(pairs) => {
                let mut out = input.to_vec();
                for (from, to) in pairs {
                    find(from)?;
                    if from != to
                        && input.iter().any(|t| &t.name == to)
                        && !pairs.iter().any(|(f, _)| f == to)
                    {
                        return Err(format!(
                            "renaming `{from}` to `{to}` would hide the tensor `{to}` already there"
                        ));
                    }
                }
                for spec in &mut out {
                    if let Some((_, to)) = pairs.iter().find(|(from, _)| *from == spec.name) {
                        spec.name.clone_from(to);
                    }
                }
                Ok(out)
            }
            Builtin::Concat { tensors, output } => {
                let parts: Vec<&TensorSpec> = tensors.iter().map(|n| find(n)).collect::<Result<_, _>>()?;
                let first = parts[0];
                if first.shape.is_empty() {
                    return Err(format!("`{}` is a scalar; CONCAT joins along the last axis", first.name));
                }
                let rank = first.shape.len();
                let mut last = Some(0u64);
                for part in &parts {
                    if part.datatype != first.datatype || part.shape.len() != rank {
                        return Err(format!(
                            "CONCAT needs one datatype and rank: `{}` is {} {} and `{}` is {} {}",
                            first.name,
                            first.datatype,
                            shape_text(&first.shape),
                            part.name,
                            part.datatype,
                            shape_text(&part.shape)
                        ));
                    }
                    if !part.shape[..rank - 1]
                        .iter()
                        .zip(&first.shape[..rank - 1])
                        .all(|(a, b)| dims_compatible(*a, *b))
                    {
                        return Err(format!(
                            "CONCAT joins along the last axis: `{}` {} and `{}` {} differ before it",
                            first.name,
                            shape_text(&first.shape),
                            part.name,
                            shape_text(&part.shape)
                        ));
                    }
                    last = match (last, part.shape[rank - 1]) {
                        (Some(sum), Dim::Fixed(n)) => Some(sum + n),
                        _ => None,
                    };
                }
                let mut shape = first.shape.clone();
                shape[rank - 1] = last.map_or(Dim::Dynamic, Dim::Fixed);
                let mut out: Vec<TensorSpec> =
                    input.iter().filter(|t| !tensors.contains(&t.name)).cloned().collect();
                if out.iter().any(|t| &t.name == output) {
                    return Err(format!("the output name `{output}` is already a tensor of the input"));
                }
                out.push(TensorSpec {
                    name: output.clone(),
                    datatype: first.datatype,
                    shape,
                    allow_nan: false,
                    labels: None,
                });
                Ok(out)
            }
            Builtin::Cast { to, tensors } => {
                if let Some(names) = tensors {
                    names.iter().try_for_each(|n| find(n).map(|_| ()))?;
                }
                input
                    .iter()
                    .map(|spec| {
                        let mut spec = spec.clone();
                        if Builtin::chosen(tensors, &spec, spec.datatype != DataType::Bytes) {
                            if spec.datatype == DataType::Bytes {
                                return Err(format!(
                                    "`{}` is BYTES; CAST converts numbers and booleans",
                                    spec.name
                                ));
                            }
                            spec.datatype = *to;
                        }
                        Ok(spec)
                    })
                    .collect()
            }
            Builtin::Scale { tensors, .. } => {
                if let Some(names) = tensors {
                    for name in names {
                        let spec = find(name)?;
                        if !matches!(spec.datatype, DataType::Fp32 | DataType::Fp64) {
                            return Err(format!(
                                "SCALE works on FP32 and FP64 tensors; `{name}` is {}",
                                spec.datatype
                            ));
                        }
                    }
                }
                Ok(input.to_vec())
            }
        }
    }

    /// Runs the built-in.
    pub(crate) fn apply(&self, input: Vec<Tensor>) -> Result<Vec<Tensor>, String> {
        let take = |input: &mut Vec<Tensor>, name: &str| {
            input
                .iter()
                .position(|t| t.name() == name)
                .map(|i| input.remove(i))
                .ok_or_else(|| format!("tensor `{name}` is missing"))
        };
        match self {
            Builtin::Select(names) => {
                let mut input = input;
                names.iter().map(|n| take(&mut input, n)).collect()
            }
            Builtin::Rename(pairs) => Ok(input
                .into_iter()
                .map(|t| match pairs.iter().find(|(from, _)| from == t.name()) {
                    Some((_, to)) => t.with_name(to.clone()),
                    None => t,
                })
                .collect()),
            Builtin::Concat { tensors, output } => {
                let mut input = input;
                let parts: Vec<Tensor> =
                    tensors.iter().map(|n| take(&mut input, n)).collect::<Result<_, _>>()?;
                input.push(concat_last(&parts, output)?);
                Ok(input)
            }
            Builtin::Cast { to, tensors } => input
                .into_iter()
                .map(|t| {
                    let chosen = match tensors {
                        Some(names) => names.iter().any(|n| n == t.name()),
                        None => t.datatype() != DataType::Bytes,
                    };
                    if chosen { cast(t, *to) } else { Ok(t) }
                })
                .collect(),
            Builtin::Scale { scale, offset, tensors } => input
                .into_iter()
                .map(|t| {
                    let chosen = match tensors {
                        Some(names) => names.iter().any(|n| n == t.name()),
                        None => matches!(t.datatype(), DataType::Fp32 | DataType::Fp64),
                    };
                    if !chosen {
                        return Ok(t);
                    }
                    let (name, shape, data) = t.into_parts();
                    let data = match data {
                        TensorData::Fp32(v) => TensorData::Fp32(
                            v.into_iter().map(|x| (f64::from(x) * scale + offset) as f32).collect(),
                        ),
                        TensorData::Fp64(v) => {
                            TensorData::Fp64(v.into_iter().map(|x| x * scale + offset).collect())
                        }
                        other => {
                            return Err(format!(
                                "SCALE works on FP32 and FP64 tensors; `{name}` is {}",
                                other.datatype()
                            ));
                        }
                    };
                    Tensor::new(name, shape, data).map_err(|e| e.to_string())
                })
                .collect(),
        }
    }
}

/// Joins tensors of one datatype along their last axis.
pub(crate) fn concat_last(parts: &[Tensor], output: &str) -> Result<Tensor, String> {
    let first = parts.first().ok_or("nothing to concatenate")?;
    let rank = first.shape().len();
    if rank == 0 {
        return Err(format!("`{}` is a scalar", first.name()));
    }
    let outer: usize = first.shape()[..rank - 1].iter().product();
    for part in parts {
        if part.datatype() != first.datatype()
            || part.shape().len() != rank
            || part.shape()[..rank - 1] != first.shape()[..rank - 1]
        {
            return Err(format!(
                "`{}` {:?} and `{}` {:?} cannot be joined along the last axis",
                first.name(),
                first.shape(),
                part.name(),
                part.shape()
            ));
        }
    }
    let widths: Vec<usize> = parts.iter().map(|p| p.shape()[rank - 1]).collect();
    let mut shape = first.shape().to_vec();
    shape[rank - 1] = widths.iter().sum();
    macro_rules! join {
        ($variant:ident) => {{
            let mut out = Vec::with_capacity(outer * shape[rank - 1]);
            for row in 0..outer {
                for (part, width) in parts.iter().zip(&widths) {
                    let TensorData::$variant(v) = part.data() else {
                        return Err("mixed datatypes".to_owned());
                    };
                    out.extend_from_slice(&v[row * width..(row + 1) * width]);
                }
            }
            TensorData::$variant(out)
        }};
    }
    let data = match first.data() {
        TensorData::Bool(_) => join!(Bool),
        TensorData::Uint8(_) => join!(Uint8),
        TensorData::Uint16(_) => join!(Uint16),
        TensorData::Uint32(_) => join!(Uint32),
        TensorData::Uint64(_) => join!(Uint64),
        TensorData::Int8(_) => join!(Int8),
        TensorData::Int16(_) => join!(Int16),
        TensorData::Int32(_) => join!(Int32),
        TensorData::Int64(_) => join!(Int64),
        TensorData::Fp16(_) => join!(Fp16),
        TensorData::Fp32(_) => join!(Fp32),
        TensorData::Fp64(_) => join!(Fp64),
        TensorData::Bf16(_) => join!(Bf16),
        TensorData::Bytes(_) => join!(Bytes),
    };
    Tensor::new(output, shape, data).map_err(|e| e.to_string())
}

/// The elements as f64 (booleans as 0 and 1), for casts and combiners.
pub(crate) fn as_f64(data: &TensorData) -> Option<Vec<f64>> {
    Some(match data {
        TensorData::Bool(v) => v.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect(),
        TensorData::Uint8(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::Uint16(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::Uint32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::Uint64(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::Int8(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::Int16(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::Int32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::Int64(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::Fp16(v) => v.iter().map(|x| x.to_f64()).collect(),
        TensorData::Fp32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::Fp64(v) => v.clone(),
        TensorData::Bf16(v) => v.iter().map(|x| x.to_f64()).collect(),
        TensorData::Bytes(_) => return None,
    })
}

/// Elements of `datatype` from f64 values (integers truncated toward zero and saturated,
/// as a Rust `as` cast; NaN becomes 0; booleans are `x != 0`).
pub(crate) fn from_f64(values: Vec<f64>, datatype: DataType) -> Option<TensorData> {
    Some(match datatype {
        DataType::Bool => TensorData::Bool(values.into_iter().map(|x| x != 0.0).collect()),
        DataType::Uint8 => TensorData::Uint8(values.into_iter().map(|x| x as u8).collect()),
        DataType::Uint16 => TensorData::Uint16(values.into_iter().map(|x| x as u16).collect()),
        DataType::Uint32 => TensorData::Uint32(values.into_iter().map(|x| x as u32).collect()),
        DataType::Uint64 => TensorData::Uint64(values.into_iter().map(|x| x as u64).collect()),
        DataType::Int8 => TensorData::Int8(values.into_iter().map(|x| x as i8).collect()),
        DataType::Int16 => TensorData::Int16(values.into_iter().map(|x| x as i16).collect()),
        DataType::Int32 => TensorData::Int32(values.into_iter().map(|x| x as i32).collect()),
        DataType::Int64 => TensorData::Int64(values.into_iter().map(|x| x as i64).collect()),
        DataType::Fp16 => TensorData::Fp16(values.into_iter().map(f16::from_f64).collect()),
        DataType::Fp32 => TensorData::Fp32(values.into_iter().map(|x| x as f32).collect()),
        DataType::Fp64 => TensorData::Fp64(values),
        DataType::Bf16 => TensorData::Bf16(values.into_iter().map(bf16::from_f64).collect()),
        DataType::Bytes => return None,
    })
}

fn cast(tensor: Tensor, to: DataType) -> Result<Tensor, String> {
    if tensor.datatype() == to {
        return Ok(tensor);
    }
    let (name, shape, data) = tensor.into_parts();
    let values = as_f64(&data).ok_or_else(|| format!("`{name}` is BYTES; CAST converts numbers"))?;
    let data = from_f64(values, to).ok_or_else(|| format!("cannot cast `{name}` to {to}"))?;
    Tensor::new(name, shape, data).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn t(name: &str, shape: Vec<usize>, v: Vec<f32>) -> Tensor {
        Tensor::new(name, shape, TensorData::Fp32(v)).unwrap()
    }

    #[test]
    fn transformers_compute() {
        let input = vec![t("a", vec![2, 1], vec![1.0, 2.0]), t("b", vec![2, 2], vec![3.0, 4.0, 5.0, 6.0])];
        let out = Builtin::Concat { tensors: vec!["a".into(), "b".into()], output: "x".into() }
            .apply(input.clone())
            .unwrap();
        assert_eq!(out[0].shape(), &[2, 3]);
        assert_eq!(out[0].data(), &TensorData::Fp32(vec![1.0, 3.0, 4.0, 2.0, 5.0, 6.0]));
        let out = Builtin::Select(vec!["b".into()]).apply(input.clone()).unwrap();
        assert_eq!(out.len(), 1);
        let out = Builtin::Rename(vec![("a".into(), "c".into())]).apply(input.clone()).unwrap();
        assert_eq!(out[0].name(), "c");
        let out = Builtin::Cast { to: DataType::Int64, tensors: Some(vec!["a".into()]) }
            .apply(input.clone())
            .unwrap();
        assert_eq!(out[0].data(), &TensorData::Int64(vec![1, 2]));
        let out = Builtin::Scale { scale: 2.0, offset: 1.0, tensors: None }.apply(input).unwrap();
        assert_eq!(out[0].data(), &TensorData::Fp32(vec![3.0, 5.0]));
    }
}
