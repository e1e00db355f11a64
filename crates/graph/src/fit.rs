//! Whether tensors fit: what one node answers against what the next one takes.

use palisade_core::{Dim, TensorSpec};

/// Whether two dims can hold the same size.
pub(crate) fn dims_compatible(a: Dim, b: Dim) -> bool {
    match (a, b) {
        (Dim::Fixed(x), Dim::Fixed(y)) => x == y,
        _ => true,
    }
}

/// Whether two shapes can hold the same tensor.
pub(crate) fn shapes_compatible(a: &[Dim], b: &[Dim]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| dims_compatible(*x, *y))
}

/// The more specific of two compatible shapes.
pub(crate) fn narrower(a: &[Dim], b: &[Dim]) -> Vec<Dim> {
    a.iter().zip(b).map(|(x, y)| if matches!(x, Dim::Fixed(_)) { *x } else { *y }).collect()
}

/// A shape as written in manifests: `[-1, 4]`.
pub(crate) fn shape_text(shape: &[Dim]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.as_i64().to_string()).collect();
    format!("[{}]", dims.join(", "))
}

/// Checks that `incoming` holds every tensor `wanted` names, with its datatype and a
/// compatible shape. `what` names the receiver in the message.
pub(crate) fn check_feeds(incoming: &[TensorSpec], wanted: &[TensorSpec], what: &str) -> Result<(), String> {
    for want in wanted {
        let Some(have) = incoming.iter().find(|t| t.name == want.name) else {
            let names: Vec<&str> = incoming.iter().map(|t| t.name.as_str()).collect();
            return Err(format!(
                "{what} takes tensor `{}`, but its input has only {names:?}; rename with a RENAME transformer or pick another model",
                want.name
            ));
        };
        if have.datatype != want.datatype {
            return Err(format!(
                "{what} takes `{}` as {}, but gets {}; convert it with a CAST transformer",
                want.name, want.datatype, have.datatype
            ));
        }
        if !shapes_compatible(&have.shape, &want.shape) {
            return Err(format!(
                "{what} takes `{}` of shape {}, but gets shape {}",
                want.name,
                shape_text(&want.shape),
                shape_text(&have.shape)
            ));
        }
    }
    Ok(())
}

/// Checks that two answers have the same tensors (names, datatypes, compatible shapes),
/// for a router's children, which must be interchangeable.
pub(crate) fn check_same(a: &[TensorSpec], b: &[TensorSpec], what: &str) -> Result<(), String> {
    let names = |s: &[TensorSpec]| {
        let mut n: Vec<String> = s.iter().map(|t| t.name.clone()).collect();
        n.sort();
        n
    };
    if names(a) != names(b) {
        return Err(format!("{what}: answers {:?} and {:?} differ", names(a), names(b)));
    }
    check_feeds(a, b, what)
}

/// Merges two requirements on the same input (from two children): same datatype, compatible
/// shapes, the narrower shape kept.
pub(crate) fn merge_needs(into: &mut Vec<TensorSpec>, more: &[TensorSpec]) -> Result<(), String> {
    for spec in more {
        match into.iter_mut().find(|t| t.name == spec.name) {
            None => into.push(spec.clone()),
            Some(have) => {
                if have.datatype != spec.datatype || !shapes_compatible(&have.shape, &spec.shape) {
                    return Err(format!(
                        "two nodes take input `{}` differently ({} {} and {} {})",
                        spec.name,
                        have.datatype,
                        shape_text(&have.shape),
                        spec.datatype,
                        shape_text(&spec.shape)
                    ));
                }
                have.shape = narrower(&have.shape, &spec.shape);
                have.allow_nan &= spec.allow_nan;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use palisade_core::DataType;

    use super::*;

    fn spec(name: &str, datatype: DataType, shape: &[i64]) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            datatype,
            shape: shape.iter().map(|&d| if d < 0 { Dim::Dynamic } else { Dim::Fixed(d as u64) }).collect(),
            allow_nan: false,
            labels: None,
        }
    }

    #[test]
    fn feeds_are_checked_by_name_datatype_and_shape() {
        let have = [spec("X", DataType::Fp32, &[-1, 4])];
        assert!(check_feeds(&have, &[spec("X", DataType::Fp32, &[1, 4])], "m").is_ok());
        let e = check_feeds(&have, &[spec("Y", DataType::Fp32, &[-1, 4])], "m").unwrap_err();
        assert!(e.contains("takes tensor `Y`"), "{e}");
        let e = check_feeds(&have, &[spec("X", DataType::Fp64, &[-1, 4])], "m").unwrap_err();
        assert!(e.contains("CAST"), "{e}");
        let e = check_feeds(&have, &[spec("X", DataType::Fp32, &[-1, 3])], "m").unwrap_err();
        assert!(e.contains("[-1, 3]"), "{e}");
    }

    #[test]
    fn needs_merge_to_the_narrower_shape() {
        let mut needs = vec![spec("X", DataType::Fp32, &[-1, -1])];
        merge_needs(&mut needs, &[spec("X", DataType::Fp32, &[-1, 4])]).unwrap();
        assert_eq!(needs[0].shape, vec![Dim::Dynamic, Dim::Fixed(4)]);
        assert!(merge_needs(&mut needs, &[spec("X", DataType::Int64, &[-1, 4])]).is_err());
    }
}
