//! Decoding JSON tensor data (nested or flat arrays) straight into typed vectors,
//! and encoding typed vectors back to JSON.

use std::fmt;

use half::{bf16, f16};
use palisade_core::{DataType, TensorData};
use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};

/// Why one element could not be decoded; the caller adds the tensor name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ElementError {
    pub index: usize,
    pub message: String,
}

/// Receives elements of one datatype, checking each.
trait Sink {
    fn len(&self) -> usize;
    fn push_bool(&mut self, _v: bool) -> Result<(), String> {
        Err("expected a number, found a boolean".to_owned())
    }
    fn push_i64(&mut self, v: i64) -> Result<(), String>;
    fn push_u64(&mut self, v: u64) -> Result<(), String>;
    fn push_f64(&mut self, v: f64) -> Result<(), String>;
    fn push_str(&mut self, _v: &str) -> Result<(), String> {
        Err("expected a number, found a string".to_owned())
    }
}

struct BoolSink(Vec<bool>);

impl Sink for BoolSink {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn push_bool(&mut self, v: bool) -> Result<(), String> {
        self.0.push(v);
        Ok(())
    }
    fn push_i64(&mut self, v: i64) -> Result<(), String> {
        Err(format!("expected true or false, found {v}"))
    }
    fn push_u64(&mut self, v: u64) -> Result<(), String> {
        Err(format!("expected true or false, found {v}"))
    }
    fn push_f64(&mut self, v: f64) -> Result<(), String> {
        Err(format!("expected true or false, found {v}"))
    }
    fn push_str(&mut self, _v: &str) -> Result<(), String> {
        Err("expected true or false, found a string".to_owned())
    }
}

struct IntSink<T>(Vec<T>, &'static str);

macro_rules! int_sink {
    ($t:ty) => {
        impl Sink for IntSink<$t> {
            fn len(&self) -> usize {
                self.0.len()
            }
            fn push_i64(&mut self, v: i64) -> Result<(), String> {
                let v = <$t>::try_from(v).map_err(|_| format!("{v} is out of range for {}", self.1))?;
                self.0.push(v);
                Ok(())
            }
            fn push_u64(&mut self, v: u64) -> Result<(), String> {
                let v = <$t>::try_from(v).map_err(|_| format!("{v} is out of range for {}", self.1))?;
                self.0.push(v);
                Ok(())
            }
            fn push_f64(&mut self, v: f64) -> Result<(), String> {
                Err(format!("expected an integer for {}, found {v}", self.1))
            }
        }
    };
}

int_sink!(u8);
int_sink!(u16);
int_sink!(u32);
int_sink!(u64);
int_sink!(i8);
int_sink!(i16);
int_sink!(i32);
int_sink!(i64);

struct FloatSink<T>(Vec<T>, fn(f64) -> T);

impl<T> Sink for FloatSink<T> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn push_i64(&mut self, v: i64) -> Result<(), String> {
        self.0.push((self.1)(v as f64));
        Ok(())
    }
    fn push_u64(&mut self, v: u64) -> Result<(), String> {
        self.0.push((self.1)(v as f64));
        Ok(())
    }
    fn push_f64(&mut self, v: f64) -> Result<(), String> {
        self.0.push((self.1)(v));
        Ok(())
    }
    /// JSON has no NaN or infinity: they are sent as the strings `"NaN"`, `"Infinity"` and
    /// `"-Infinity"` (as JavaScript's and Python's JSON writers name them). Whether an input
    /// accepts them is the model's signature's business (`allow_nan`), checked later.
    fn push_str(&mut self, v: &str) -> Result<(), String> {
        let value = match v {
            "NaN" => f64::NAN,
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            _ => {
                return Err(
                    "expected a number, found a string (only \"NaN\", \"Infinity\" and \"-Infinity\" stand for numbers)"
                        .to_owned(),
                );
            }
        };
        self.0.push((self.1)(value));
        Ok(())
    }
}

struct BytesSink(Vec<Vec<u8>>);

impl Sink for BytesSink {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn push_bool(&mut self, _v: bool) -> Result<(), String> {
        Err("expected a string, found a boolean".to_owned())
    }
    fn push_i64(&mut self, v: i64) -> Result<(), String> {
        Err(format!("expected a string, found {v}"))
    }
    fn push_u64(&mut self, v: u64) -> Result<(), String> {
        Err(format!("expected a string, found {v}"))
    }
    fn push_f64(&mut self, v: f64) -> Result<(), String> {
        Err(format!("expected a string, found {v}"))
    }
    fn push_str(&mut self, v: &str) -> Result<(), String> {
        self.0.push(v.as_bytes().to_vec());
        Ok(())
    }
}

/// Visits a (possibly nested) JSON array, pushing scalars into the sink in row-major order.
struct Flatten<'s, S> {
    sink: &'s mut S,
    error: &'s mut Option<ElementError>,
}

impl<'de, S: Sink> DeserializeSeed<'de> for Flatten<'_, S> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<S: Sink> Flatten<'_, S> {
    fn record<E: serde::de::Error>(self, r: Result<(), String>) -> Result<(), E> {
        r.map_err(|message| {
            let index = self.sink.len();
            *self.error = Some(ElementError { index, message: message.clone() });
            E::custom(message)
        })
    }
}

impl<'de, S: Sink> Visitor<'de> for Flatten<'_, S> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of tensor elements")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Flatten { sink: &mut *self.sink, error: &mut *self.error })?.is_some() {}
        Ok(())
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        let r = self.sink.push_bool(v);
        self.record(r)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        let r = self.sink.push_i64(v);
        self.record(r)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        let r = self.sink.push_u64(v);
        self.record(r)
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        let r = self.sink.push_f64(v);
        self.record(r)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        let r = self.sink.push_str(v);
        self.record(r)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.record(Err("null is not a tensor element".to_owned()))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, _map: A) -> Result<(), A::Error> {
        self.record(Err("an object is not a tensor element".to_owned()))
    }
}

fn decode_into<S: Sink>(json: &str, mut sink: S) -> Result<S, ElementError> {
    let mut error = None;
    let mut de = serde_json::Deserializer::from_str(json);
    let result = Flatten { sink: &mut sink, error: &mut error }.deserialize(&mut de).and_then(|()| de.end());
    match (result, error) {
        (Ok(()), _) => Ok(sink),
        (Err(_), Some(e)) => Err(e),
        (Err(e), None) => Err(ElementError { index: sink.len(), message: e.to_string() }),
    }
}

/// Decodes JSON tensor data of a datatype, flattening nested arrays.
pub(crate) fn decode_json(datatype: DataType, json: &str) -> Result<TensorData, ElementError> {
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(decode_into(json, BoolSink(Vec::new()))?.0),
        DataType::Uint8 => TensorData::Uint8(decode_into(json, IntSink(Vec::new(), "UINT8"))?.0),
        DataType::Uint16 => TensorData::Uint16(decode_into(json, IntSink(Vec::new(), "UINT16"))?.0),
        DataType::Uint32 => TensorData::Uint32(decode_into(json, IntSink(Vec::new(), "UINT32"))?.0),
        DataType::Uint64 => TensorData::Uint64(decode_into(json, IntSink(Vec::new(), "UINT64"))?.0),
        DataType::Int8 => TensorData::Int8(decode_into(json, IntSink(Vec::new(), "INT8"))?.0),
        DataType::Int16 => TensorData::Int16(decode_into(json, IntSink(Vec::new(), "INT16"))?.0),
        DataType::Int32 => TensorData::Int32(decode_into(json, IntSink(Vec::new(), "INT32"))?.0),
        DataType::Int64 => TensorData::Int64(decode_into(json, IntSink(Vec::new(), "INT64"))?.0),
        DataType::Fp16 => TensorData::Fp16(decode_into(json, FloatSink(Vec::new(), f16::from_f64))?.0),
        DataType::Fp32 => TensorData::Fp32(decode_into(json, FloatSink(Vec::new(), |v| v as f32))?.0),
        DataType::Fp64 => TensorData::Fp64(decode_into(json, FloatSink(Vec::new(), |v| v))?.0),
        DataType::Bf16 => TensorData::Bf16(decode_into(json, FloatSink(Vec::new(), bf16::from_f64))?.0),
        DataType::Bytes => TensorData::Bytes(decode_into(json, BytesSink(Vec::new()))?.0),
    })
}

/// Decodes the raw little-endian bytes of Triton's binary tensor extension.
pub(crate) fn decode_binary(datatype: DataType, bytes: &[u8]) -> Result<TensorData, String> {
    fn fixed<T, const N: usize>(bytes: &[u8], f: fn([u8; N]) -> T, name: &str) -> Result<Vec<T>, String> {
        if !bytes.len().is_multiple_of(N) {
            return Err(format!(
                "{} bytes is not a whole number of {name} elements ({N} bytes each)",
                bytes.len()
            ));
        }
        Ok(bytes
            .chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                f(a)
            })
            .collect())
    }
    Ok(match datatype {
        DataType::Bool => TensorData::Bool(
            bytes
                .iter()
                .map(|&b| match b {
                    0 => Ok(false),
                    1 => Ok(true),
                    other => Err(format!("byte {other} is not a BOOL (0 or 1)")),
                })
                .collect::<Result<_, _>>()?,
        ),
        DataType::Uint8 => TensorData::Uint8(bytes.to_vec()),
        DataType::Int8 => TensorData::Int8(bytes.iter().map(|&b| b as i8).collect()),
        DataType::Uint16 => TensorData::Uint16(fixed(bytes, u16::from_le_bytes, "UINT16")?),
        DataType::Uint32 => TensorData::Uint32(fixed(bytes, u32::from_le_bytes, "UINT32")?),
        DataType::Uint64 => TensorData::Uint64(fixed(bytes, u64::from_le_bytes, "UINT64")?),
        DataType::Int16 => TensorData::Int16(fixed(bytes, i16::from_le_bytes, "INT16")?),
        DataType::Int32 => TensorData::Int32(fixed(bytes, i32::from_le_bytes, "INT32")?),
        DataType::Int64 => TensorData::Int64(fixed(bytes, i64::from_le_bytes, "INT64")?),
        DataType::Fp16 => TensorData::Fp16(fixed(bytes, f16::from_le_bytes, "FP16")?),
        DataType::Fp32 => TensorData::Fp32(fixed(bytes, f32::from_le_bytes, "FP32")?),
        DataType::Fp64 => TensorData::Fp64(fixed(bytes, f64::from_le_bytes, "FP64")?),
        DataType::Bf16 => TensorData::Bf16(fixed(bytes, bf16::from_le_bytes, "BF16")?),
        DataType::Bytes => {
            let mut out = Vec::new();
            let mut rest = bytes;
            while !rest.is_empty() {
                let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                    return Err("BYTES element is missing its 4-byte length prefix".to_owned());
                };
                let len = u32::from_le_bytes(*len) as usize;
                if tail.len() < len {
                    return Err(format!("BYTES element declares {len} bytes but only {} remain", tail.len()));
                }
                out.push(tail[..len].to_vec());
                rest = &tail[len..];
            }
            TensorData::Bytes(out)
        }
    })
}

/// Appends the raw little-endian bytes of tensor data (Triton's binary extension).
pub(crate) fn encode_binary(data: &TensorData, out: &mut Vec<u8>) {
    match data {
        TensorData::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        TensorData::Uint8(v) => out.extend_from_slice(v),
        TensorData::Int8(v) => out.extend(v.iter().map(|&b| b as u8)),
        TensorData::Uint16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::Uint32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::Uint64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::Int16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::Int32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::Int64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::Fp16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::Fp32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::Fp64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::Bf16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::Bytes(v) => v.iter().for_each(|x| {
            out.extend_from_slice(&(x.len() as u32).to_le_bytes());
            out.extend_from_slice(x);
        }),
    }
}

/// Serializes tensor data as a flat JSON array; BYTES become strings (lossy for non-UTF-8).
pub(crate) struct JsonData<'a>(pub &'a TensorData);

impl serde::Serialize for JsonData<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        fn all<S: serde::Serializer, T: serde::Serialize>(s: S, items: &[T]) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(items.len()))?;
            for item in items {
                seq.serialize_element(item)?;
            }
            seq.end()
        }
        match self.0 {
            TensorData::Bool(v) => all(s, v),
            TensorData::Uint8(v) => all(s, v),
            TensorData::Uint16(v) => all(s, v),
            TensorData::Uint32(v) => all(s, v),
            TensorData::Uint64(v) => all(s, v),
            TensorData::Int8(v) => all(s, v),
            TensorData::Int16(v) => all(s, v),
            TensorData::Int32(v) => all(s, v),
            TensorData::Int64(v) => all(s, v),
            TensorData::Fp16(v) => all(s, &v.iter().map(|x| x.to_f32()).collect::<Vec<_>>()),
            TensorData::Fp32(v) => all(s, v),
            TensorData::Fp64(v) => all(s, v),
            TensorData::Bf16(v) => all(s, &v.iter().map(|x| x.to_f32()).collect::<Vec<_>>()),
            TensorData::Bytes(v) => {
                let mut seq = s.serialize_seq(Some(v.len()))?;
                for item in v {
                    seq.serialize_element(&String::from_utf8_lossy(item))?;
                }
                seq.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_and_flat_give_the_same_elements() {
        let flat = decode_json(DataType::Fp32, "[1, 2.5, 3, 4]").unwrap();
        let nested = decode_json(DataType::Fp32, "[[1, 2.5], [3, 4]]").unwrap();
        assert_eq!(flat, nested);
        assert_eq!(flat, TensorData::Fp32(vec![1.0, 2.5, 3.0, 4.0]));
    }

    #[test]
    fn every_datatype_decodes() {
        assert_eq!(decode_json(DataType::Bool, "[true,false]").unwrap(), TensorData::Bool(vec![true, false]));
        assert_eq!(decode_json(DataType::Uint8, "[0,255]").unwrap(), TensorData::Uint8(vec![0, 255]));
        assert_eq!(decode_json(DataType::Int8, "[-128,127]").unwrap(), TensorData::Int8(vec![-128, 127]));
        assert_eq!(
            decode_json(DataType::Uint64, "[18446744073709551615]").unwrap(),
            TensorData::Uint64(vec![u64::MAX])
        );
        assert_eq!(
            decode_json(DataType::Int64, "[-9223372036854775808]").unwrap(),
            TensorData::Int64(vec![i64::MIN])
        );
        assert_eq!(decode_json(DataType::Fp16, "[1.5]").unwrap(), TensorData::Fp16(vec![f16::from_f32(1.5)]));
        assert_eq!(decode_json(DataType::Bf16, "[2]").unwrap(), TensorData::Bf16(vec![bf16::from_f32(2.0)]));
        assert_eq!(decode_json(DataType::Fp64, "[0.1]").unwrap(), TensorData::Fp64(vec![0.1]));
        assert_eq!(
            decode_json(DataType::Bytes, "[\"héllo\"]").unwrap(),
            TensorData::Bytes(vec!["héllo".into()])
        );
    }

    #[test]
    fn nan_and_infinities_are_strings() {
        let TensorData::Fp32(v) =
            decode_json(DataType::Fp32, r#"[1, "NaN", "Infinity", "-Infinity"]"#).unwrap()
        else {
            panic!("not FP32")
        };
        assert_eq!(v[0], 1.0);
        assert!(v[1].is_nan());
        assert_eq!(v[2], f32::INFINITY);
        assert_eq!(v[3], f32::NEG_INFINITY);
        let TensorData::Fp64(v) = decode_json(DataType::Fp64, r#"[["NaN"], [-0.5]]"#).unwrap() else {
            panic!("not FP64")
        };
        assert!(v[0].is_nan() && v[1] == -0.5);
        let TensorData::Fp16(v) = decode_json(DataType::Fp16, r#"["-Infinity"]"#).unwrap() else { panic!() };
        assert_eq!(v[0], f16::NEG_INFINITY);
        let TensorData::Bf16(v) = decode_json(DataType::Bf16, r#"["NaN"]"#).unwrap() else { panic!() };
        assert!(v[0].is_nan());
        for bad in [r#"["nan"]"#, r#"["inf"]"#, r#"["+Infinity"]"#, r#"["1.5"]"#] {
            let err = decode_json(DataType::Fp32, bad).unwrap_err();
            assert!(err.message.contains("only \"NaN\""), "{bad}: {}", err.message);
        }
        // Integers take no such strings.
        assert!(decode_json(DataType::Int64, r#"["NaN"]"#).is_err());
    }

    #[test]
    fn bad_elements_are_located() {
        let cases = [
            (DataType::Uint8, "[1, 256]", 1, "out of range"),
            (DataType::Int8, "[[1], [-129]]", 1, "out of range"),
            (DataType::Int32, "[1.5]", 0, "expected an integer"),
            (DataType::Bool, "[1]", 0, "true or false"),
            (DataType::Fp32, "[1, \"2\"]", 1, "found a string"),
            (DataType::Fp32, "[1, null]", 1, "null"),
            (DataType::Bytes, "[1]", 0, "expected a string"),
            (DataType::Fp32, "[{\"a\": 1}]", 0, "object"),
        ];
        for (dt, json, index, needle) in cases {
            let err = decode_json(dt, json).unwrap_err();
            assert_eq!(err.index, index, "{json}");
            assert!(err.message.contains(needle), "{json}: {}", err.message);
        }
    }

    #[test]
    fn binary_round_trips() {
        let samples = [
            TensorData::Bool(vec![true, false]),
            TensorData::Int8(vec![-1, 2]),
            TensorData::Uint16(vec![1, 65535]),
            TensorData::Int64(vec![i64::MIN, 7]),
            TensorData::Fp16(vec![f16::from_f32(0.5)]),
            TensorData::Bf16(vec![bf16::from_f32(-3.0)]),
            TensorData::Fp32(vec![1.25, f32::NAN.abs()]),
            TensorData::Fp64(vec![1e300]),
            TensorData::Bytes(vec![b"ab".to_vec(), vec![], vec![0xff]]),
        ];
        for data in samples {
            let mut bytes = Vec::new();
            encode_binary(&data, &mut bytes);
            let back = decode_binary(data.datatype(), &bytes).unwrap();
            // NaN != NaN, so compare encodings.
            let mut again = Vec::new();
            encode_binary(&back, &mut again);
            assert_eq!(bytes, again, "{data:?}");
        }
    }

    #[test]
    fn binary_rejects_ragged_input() {
        assert!(decode_binary(DataType::Fp32, &[0, 0, 0]).is_err());
        assert!(decode_binary(DataType::Bool, &[2]).is_err());
        assert!(decode_binary(DataType::Bytes, &[5, 0, 0, 0, b'a']).is_err());
        assert!(decode_binary(DataType::Bytes, &[1, 0]).is_err());
    }
}
