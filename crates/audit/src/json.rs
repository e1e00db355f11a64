//! Compact JSON for audit records, byte for byte what `serde_json::to_writer` writes, with
//! strings checked eight bytes at a time for what needs escaping.
//!
//! Almost nothing in a record needs escaping (keys, hex digests, ids, timestamps, names),
//! and `serde_json` looks every byte of every string up in its escape table. Here a string
//! is copied as it is when no byte of it is a control character, `"` or `\`, which a word
//! test finds for eight bytes at once; otherwise it is escaped byte by byte exactly as
//! `serde_json` does. Numbers are written by `serde_json` itself. A unit test compares
//! the two serializers on records and on arbitrary JSON values.

use serde::ser::{self, Serialize};

/// An error from a value's `Serialize` implementation (or a map key that is not a string).
#[derive(Debug)]
pub(crate) struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error(e.to_string())
    }
}

/// Appends `value` as compact JSON to `out`.
pub(crate) fn to_writer<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), Error> {
    value.serialize(&mut Writer { out })
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether some byte of `word` is below 0x20, or is `"` or `\`.
#[inline]
fn word_needs_escape(word: u64) -> bool {
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS != 0;
    word.wrapping_sub(ONES * 0x20) & !word & HIGHS != 0
        || has_zero(word ^ (ONES * u64::from(b'"')))
        || has_zero(word ^ (ONES * u64::from(b'\\')))
}

#[inline]
fn byte_needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

fn needs_escape(s: &[u8]) -> bool {
    let mut words = s.chunks_exact(8);
    let any_word = words
        .by_ref()
        .any(|w| word_needs_escape(u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]])));
    any_word || words.remainder().iter().any(|&b| byte_needs_escape(b))
}

/// `s` as a JSON string, escaped as `serde_json` escapes it.
fn write_str(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    if !needs_escape(s.as_bytes()) {
        out.extend_from_slice(s.as_bytes());
    } else {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for &b in s.as_bytes() {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x0c => out.extend_from_slice(b"\\f"),
                b if b < 0x20 => {
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 0xf)]);
                }
                b => out.push(b),
            }
        }
    }
    out.push(b'"');
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl Writer<'_> {
    /// A number or other scalar, written by `serde_json`.
    fn json<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        Ok(serde_json::to_writer(&mut *self.out, v)?)
    }
}

/// A sequence, map or struct under way: whether an element was written yet, and what
/// closes it (a variant's form closes with `]}` or `}}`).
pub(crate) struct Compound<'w, 'a> {
    writer: &'w mut Writer<'a>,
    first: bool,
    close: &'static [u8],
}

impl Compound<'_, '_> {
    fn comma(&mut self) {
        if !std::mem::replace(&mut self.first, false) {
            self.writer.out.push(b',');
        }
    }

    fn end(self) -> Result<(), Error> {
        self.writer.out.extend_from_slice(self.close);
        Ok(())
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Error> {
        self.comma();
        write_str(self.writer.out, key);
        self.writer.out.push(b':');
        value.serialize(&mut *self.writer)
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.comma();
        value.serialize(&mut *self.writer)
    }
}

impl<'w, 'a> Writer<'a> {
    fn open(&'w mut self, open: &[u8], close: &'static [u8]) -> Compound<'w, 'a> {
        self.out.extend_from_slice(open);
        Compound { writer: self, first: true, close }
    }

    /// `{"variant":` before a variant's content.
    fn variant_open(&mut self, variant: &str) {
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.push(b':');
    }
}

impl<'w, 'a> ser::Serializer for &'w mut Writer<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'w, 'a>;
    type SerializeTuple = Compound<'w, 'a>;
    type SerializeTupleStruct = Compound<'w, 'a>;
    type SerializeTupleVariant = Compound<'w, 'a>;
    type SerializeMap = Compound<'w, 'a>;
    type SerializeStruct = Compound<'w, 'a>;
    type SerializeStructVariant = Compound<'w, 'a>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out.extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.json(&v)
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.json(&v)
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.json(&v)
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.json(&v)
    }
    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        self.json(&v)
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.json(&v)
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.json(&v)
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.json(&v)
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        self.json(&v)
    }
    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        self.json(&v)
    }
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.json(&v)
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        self.json(&v)
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        write_str(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        write_str(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        self.json(v)
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.variant_open(variant);
        value.serialize(&mut *self)?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'w, 'a>, Error> {
        Ok(self.open(b"[", b"]"))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Compound<'w, 'a>, Error> {
        Ok(self.open(b"[", b"]"))
    }
    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Compound<'w, 'a>, Error> {
        Ok(self.open(b"[", b"]"))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'w, 'a>, Error> {
        self.variant_open(variant);
        Ok(self.open(b"[", b"]}"))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'w, 'a>, Error> {
        Ok(self.open(b"{", b"}"))
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Compound<'w, 'a>, Error> {
        Ok(self.open(b"{", b"}"))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'w, 'a>, Error> {
        self.variant_open(variant);
        Ok(self.open(b"{", b"}}"))
    }
}

impl ser::SerializeSeq for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

impl ser::SerializeTuple for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

impl ser::SerializeTupleStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

impl ser::SerializeTupleVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.comma();
        // serde_json's text of the key, quoted when it is a number or a bool as serde_json
        // quotes map keys (records' maps have string keys; this path is not hot).
        let text = serde_json::to_string(key)?;
        let quote = !text.starts_with('"');
        let out = &mut *self.writer.out;
        if quote {
            out.push(b'"');
        }
        out.extend_from_slice(text.as_bytes());
        if quote {
            out.push(b'"');
        }
        out.push(b':');
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        value.serialize(&mut *self.writer)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

impl ser::SerializeStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Error> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

impl ser::SerializeStructVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Error> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Serialize;
    use serde_json::Value;
    use std::collections::BTreeMap;

    fn ours<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
        let mut out = Vec::new();
        to_writer(&mut out, value).unwrap();
        out
    }

    #[test]
    fn a_full_record_is_what_serde_json_writes() {
        let line = include_str!("../SCHEMA.md");
        let start = line.find("{\"schema\":\"palisade.audit/v1\",\"seq\":0,\"kind\":\"request\"").unwrap();
        let end = start + line[start..].find("\n```").unwrap();
        let record: crate::AuditRecord = serde_json::from_str(&line[start..end].replace('\n', "")).unwrap();
        assert!(record.jwt.is_some() && record.authz.is_some() && !record.groups.is_empty());
        assert_eq!(String::from_utf8(ours(&record)).unwrap(), serde_json::to_string(&record).unwrap());
    }

    #[derive(Serialize)]
    struct Unit;
    #[derive(Serialize)]
    struct Pair(i8, &'static str);
    #[derive(Serialize)]
    struct Wrapped(u16);
    #[derive(Serialize)]
    enum Shapes {
        Plain,
        New(f32),
        Tuple(u8, char),
        Named { a: Option<u32>, b: Vec<bool> },
    }
    #[derive(Serialize)]
    struct Everything {
        unit: Unit,
        pair: Pair,
        wrapped: Wrapped,
        shapes: Vec<Shapes>,
        ints: BTreeMap<i64, &'static str>,
        bools: BTreeMap<bool, u8>,
        bytes: &'static [u8],
        extremes: (i128, u128, i64, u64, f64, f64, f64),
        unit_value: (),
        nothing: Option<String>,
    }

    #[test]
    fn every_serde_shape_is_what_serde_json_writes() {
        let value = Everything {
            unit: Unit,
            pair: Pair(-7, "x\"y"),
            wrapped: Wrapped(65535),
            shapes: vec![
                Shapes::Plain,
                Shapes::New(1.5),
                Shapes::Tuple(3, '\u{7}'),
                Shapes::Named { a: Some(9), b: vec![true, false] },
                Shapes::Named { a: None, b: vec![] },
            ],
            ints: BTreeMap::from([(-1, "minus"), (42, "forty-two")]),
            bools: BTreeMap::from([(false, 0), (true, 1)]),
            bytes: b"\x00\xff",
            extremes: (i128::MIN, u128::MAX, i64::MIN, u64::MAX, f64::NAN, -0.0, 1e300),
            unit_value: (),
            nothing: None,
        };
        assert_eq!(String::from_utf8(ours(&value)).unwrap(), serde_json::to_string(&value).unwrap());
    }

    #[test]
    fn every_byte_that_needs_escaping_is_escaped_at_every_offset() {
        for b in (0u8..0x80).chain([0xc3]) {
            for at in 0..17 {
                let mut s = "a".repeat(at);
                s.push(if b == 0xc3 { 'é' } else { char::from(b) });
                s.push_str("bcdefghij");
                assert_eq!(ours(&s), serde_json::to_vec(&s).unwrap(), "byte {b:#x} at {at}");
            }
        }
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".*".prop_map(Value::String),
            "[\\x00-\\x7f]{0,40}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::btree_map("[\\x00-\\x7f]{0,12}|.{0,6}", inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_json_value_is_what_serde_json_writes(v in value()) {
            prop_assert_eq!(ours(&v), serde_json::to_vec(&v).unwrap());
        }
    }
}
