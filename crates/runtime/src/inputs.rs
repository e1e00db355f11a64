//! Checking request tensors against a model's signature, before they are queued.

use palisade_core::{ModelSignature, Tensor};

use crate::RuntimeError;

/// Matches request tensors to the model's inputs: every input present once, with the declared
/// datatype and a fitting shape, and no NaN or infinity unless the input allows it.
/// Returns the tensors in signature order.
pub fn check_inputs(signature: &ModelSignature, mut given: Vec<Tensor>) -> Result<Vec<Tensor>, RuntimeError> {
    let bad = |msg: String| Err(RuntimeError::InvalidInput(msg));
    if let Some(unknown) = given.iter().find(|t| signature.input(t.name()).is_none()) {
        let expected: Vec<&str> = signature.inputs.iter().map(|s| s.name.as_str()).collect();
        return bad(format!("unknown input `{}`: the model's inputs are {expected:?}", clip(unknown.name())));
    }
    let mut ordered = Vec::with_capacity(signature.inputs.len());
    for spec in &signature.inputs {
        let Some(pos) = given.iter().position(|t| t.name() == spec.name) else {
            return bad(format!("missing input `{}` ({} {:?})", spec.name, spec.datatype, spec.shape_i64()));
        };
        let tensor = given.swap_remove(pos);
        if tensor.datatype() != spec.datatype {
            return bad(format!(
                "input `{}`: datatype {} does not match the model's {}",
                spec.name,
                tensor.datatype(),
                spec.datatype
            ));
        }
        if !spec.accepts_shape(tensor.shape()) {
            return bad(format!(
                "input `{}`: shape {:?} does not match the model's {:?} (-1 is any size)",
                spec.name,
                tensor.shape(),
                spec.shape_i64()
            ));
        }
        if !spec.allow_nan
            && let Some(index) = tensor.data().first_non_finite()
        {
            return bad(format!(
                "input `{}`: element {index} is NaN or infinite, which this model does not accept",
                spec.name
            ));
        }
        ordered.push(tensor);
    }
    Ok(ordered)
}

fn clip(name: &str) -> String {
    name.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use palisade_core::{DataType, Dim, TensorData, TensorSpec};

    use super::*;

    fn signature(allow_nan: bool) -> ModelSignature {
        ModelSignature {
            inputs: vec![
                TensorSpec {
                    name: "X".into(),
                    datatype: DataType::Fp32,
                    shape: vec![Dim::Dynamic, Dim::Fixed(2)],
                    allow_nan,
                    labels: None,
                },
                TensorSpec {
                    name: "K".into(),
                    datatype: DataType::Int64,
                    shape: vec![Dim::Dynamic],
                    allow_nan: false,
                    labels: None,
                },
            ],
            outputs: vec![],
        }
    }

    fn x(data: Vec<f32>, shape: Vec<usize>) -> Tensor {
        Tensor::new("X", shape, TensorData::Fp32(data)).unwrap()
    }

    fn k() -> Tensor {
        Tensor::new("K", vec![1], TensorData::Int64(vec![3])).unwrap()
    }

    #[test]
    fn orders_by_signature() {
        let out = check_inputs(&signature(false), vec![k(), x(vec![1.0, 2.0], vec![1, 2])]).unwrap();
        assert_eq!(out[0].name(), "X");
        assert_eq!(out[1].name(), "K");
    }

    #[test]
    fn refusals() {
        let sig = signature(false);
        let cases = [
            (vec![x(vec![1.0, 2.0], vec![1, 2])], "missing input `K`"),
            (vec![k(), x(vec![1.0, 2.0, 3.0], vec![1, 3])], "shape [1, 3] does not match"),
            (vec![k(), x(vec![1.0, f32::NAN], vec![1, 2])], "element 1 is NaN"),
            (
                vec![k(), Tensor::new("X", vec![1, 2], TensorData::Fp64(vec![1.0, 2.0])).unwrap()],
                "datatype FP64 does not match the model's FP32",
            ),
            (
                vec![
                    k(),
                    x(vec![1.0, 2.0], vec![1, 2]),
                    Tensor::new("Z", vec![0], TensorData::Bool(vec![])).unwrap(),
                ],
                "unknown input `Z`",
            ),
        ];
        for (inputs, needle) in cases {
            let err = check_inputs(&sig, inputs).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn nan_allowed_when_declared() {
        assert!(check_inputs(&signature(true), vec![k(), x(vec![f32::NAN, 1.0], vec![1, 2])]).is_ok());
    }
}
