//! `LabelEncoder` (ai.onnx.ml opsets 1, 2 and 4), evaluated by
//! [`palisade_onnx_ml::LabelEncoder`].
//!
//! Opset 1 (`classes_strings`) maps strings to class indices or back, chosen by the
//! input type; opsets 2 and 4 map `keys_*` (or `keys_tensor`) to `values_*` (or
//! `values_tensor`) of int64, string, float or double.

use palisade_onnx_ml::{LabelColumn, LabelEncoder};
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::{NodeProto, TensorProto};
use tract_onnx::tract_hir::internal::*;

use super::kernel::{Kernel, expansion, tensor};

/// Name of the typed op in optimized models.
pub const LABEL_ENCODER_OP: &str = "PalisadeLabelEncoder";

fn strings(node: &NodeProto, name: &str) -> TractResult<Option<Vec<String>>> {
    Ok(node.get_attr_opt_tvec::<&str>(name)?.map(|v| v.iter().map(|s| s.to_string()).collect()))
}

/// A column from the list attributes `<prefix>_int64s|_strings|_floats` or `<prefix>_tensor`.
fn column(ctx: &ParsingContext, node: &NodeProto, prefix: &str) -> TractResult<Option<LabelColumn>> {
    if let Some(v) = node.get_attr_opt_slice::<i64>(&format!("{prefix}_int64s"))? {
        return Ok(Some(LabelColumn::Int64(v.to_vec())));
    }
    if let Some(v) = strings(node, &format!("{prefix}_strings"))? {
        return Ok(Some(LabelColumn::Strings(v)));
    }
    if let Some(v) = node.get_attr_opt_slice::<f32>(&format!("{prefix}_floats"))? {
        return Ok(Some(LabelColumn::Floats(v.to_vec())));
    }
    match node.get_attr_opt::<&TensorProto>(&format!("{prefix}_tensor"))? {
        Some(proto) => Ok(Some(tensor_column(&ctx.load_tensor(proto)?)?)),
        None => Ok(None),
    }
}

fn tensor_column(t: &Tensor) -> TractResult<LabelColumn> {
    let plain = t.try_as_plain_ram()?;
    Ok(match t.datum_type() {
        DatumType::I64 => LabelColumn::Int64(plain.as_slice::<i64>()?.to_vec()),
        DatumType::String => LabelColumn::Strings(plain.as_slice::<String>()?.to_vec()),
        DatumType::F32 => LabelColumn::Floats(plain.as_slice::<f32>()?.to_vec()),
        DatumType::F64 => LabelColumn::Doubles(plain.as_slice::<f64>()?.to_vec()),
        other => bail!("LabelEncoder tensors of {other:?} are not supported"),
    })
}

/// The default for values of `values`' type: `default_tensor`, else the typed default
/// attribute, else onnxruntime's (-1, `"_Unused"`, -0.0).
fn default(ctx: &ParsingContext, node: &NodeProto, values: &LabelColumn) -> TractResult<LabelColumn> {
    if let Some(proto) = node.get_attr_opt::<&TensorProto>("default_tensor")? {
        return tensor_column(&ctx.load_tensor(proto)?);
    }
    Ok(match values {
        LabelColumn::Int64(_) => {
            LabelColumn::Int64(vec![node.get_attr_opt::<i64>("default_int64")?.unwrap_or(-1)])
        }
        LabelColumn::Strings(_) => LabelColumn::Strings(vec![
            node.get_attr_opt::<&str>("default_string")?.unwrap_or("_Unused").to_owned(),
        ]),
        LabelColumn::Floats(_) => {
            LabelColumn::Floats(vec![node.get_attr_opt::<f32>("default_float")?.unwrap_or(-0.0)])
        }
        LabelColumn::Doubles(_) => {
            LabelColumn::Doubles(vec![f64::from(node.get_attr_opt::<f32>("default_float")?.unwrap_or(-0.0))])
        }
    })
}

/// Builds the encoder from an ONNX node.
pub(super) fn label_encoder(
    ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    if let Some(classes) = strings(node, "classes_strings")? {
        let default_int = node.get_attr_opt::<i64>("default_int64")?.unwrap_or(-1);
        let default_string = node.get_attr_opt::<&str>("default_string")?.unwrap_or("_Unused").to_owned();
        let forward = LabelEncoder::classes(classes.clone(), true, default_int, default_string.clone())?;
        let backward = LabelEncoder::classes(classes, false, default_int, default_string)?;
        return Ok((expansion(LabelKernel { encoders: vec![forward, backward] }), vec![]));
    }
    let ml_opset = ctx.model.opset_import.iter().find(|o| o.domain == "ai.onnx.ml").map_or(1, |o| o.version);
    let keys = column(ctx, node, "keys")?.context("LabelEncoder needs `keys_*` or `classes_strings`")?;
    let values = column(ctx, node, "values")?.context("LabelEncoder needs `values_*`")?;
    let default = default(ctx, node, &values)?;
    let encoder = LabelEncoder::new(keys, values, default, ml_opset >= 4)?;
    Ok((expansion(LabelKernel { encoders: vec![encoder] }), vec![]))
}

#[derive(Debug, Clone, PartialEq)]
struct LabelKernel {
    /// One encoder per key type the node accepts.
    encoders: Vec<LabelEncoder>,
}

fn datum(kind: &str) -> DatumType {
    match kind {
        "int64" => DatumType::I64,
        "string" => DatumType::String,
        "float" => DatumType::F32,
        _ => DatumType::F64,
    }
}

fn value_type(values: &LabelColumn) -> DatumType {
    match values {
        LabelColumn::Int64(_) => DatumType::I64,
        LabelColumn::Strings(_) => DatumType::String,
        LabelColumn::Floats(_) => DatumType::F32,
        LabelColumn::Doubles(_) => DatumType::F64,
    }
}

impl LabelKernel {
    fn encoder(&self, input: DatumType) -> TractResult<&LabelEncoder> {
        let input = if input == DatumType::TDim { DatumType::I64 } else { input };
        self.encoders
            .iter()
            .find(|e| datum(e.key_type()) == input)
            .with_context(|| format!("LabelEncoder maps {} keys, not {input:?}", self.encoders[0].key_type()))
    }
}

impl Kernel for LabelKernel {
    fn onnx_name(&self) -> &'static str {
        "LabelEncoder"
    }

    fn typed_name(&self) -> &'static str {
        LABEL_ENCODER_OP
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        s.equals(&outputs[0].shape, &inputs[0].shape)?;
        if let [only] = self.encoders.as_slice() {
            // int64 keys may arrive typed as TDim (tract's integer index type).
            if only.key_type() != "int64" {
                s.equals(&inputs[0].datum_type, datum(only.key_type()))?;
            }
            s.equals(&outputs[0].datum_type, value_type(only.values()))?;
        } else {
            s.given(&inputs[0].datum_type, move |s, dt| {
                if let Ok(e) = self.encoder(dt) {
                    s.equals(&outputs[0].datum_type, value_type(e.values()))?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let encoder = self.encoder(inputs[0].datum_type)?;
        Ok(tvec!(value_type(encoder.values()).fact(inputs[0].shape.clone())))
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let encoder = self.encoder(x.datum_type())?;
        let input = if x.datum_type() == DatumType::TDim {
            tensor_column(&*x.cast_to::<i64>()?)?
        } else {
            tensor_column(&x)?
        };
        let shape = x.shape();
        let out = match encoder.map(&input)? {
            LabelColumn::Int64(v) => tensor(shape, v)?,
            LabelColumn::Strings(v) => tensor(shape, v)?,
            LabelColumn::Floats(v) => tensor(shape, v)?,
            LabelColumn::Doubles(v) => tensor(shape, v)?,
        };
        Ok(tvec!(out.into_tvalue()))
    }
}
