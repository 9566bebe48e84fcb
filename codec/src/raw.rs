//! The raw codec's serde plumbing: a serializer that accepts only bytes,
//! strings and unit, and a deserializer that hands out the input bytes.

use serde::de::{self, DeserializeSeed, IntoDeserializer, SeqAccess, Visitor};
use serde::ser::{self, Impossible, Serialize};
use std::fmt;
use std::io::Write;

/// The error both halves report; the codec wraps it in a `CodecError`.
#[derive(Debug)]
pub(crate) struct RawError(String);

impl fmt::Display for RawError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RawError {}

impl ser::Error for RawError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        RawError(msg.to_string())
    }
}

impl de::Error for RawError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        RawError(msg.to_string())
    }
}

fn unsupported(what: &str) -> RawError {
    RawError(format!(
        "raw codec carries only bytes, strings or unit, not {what}"
    ))
}

pub(crate) struct RawSerializer<'a, W: Write> {
    pub(crate) out: &'a mut W,
}

fn write(out: &mut impl Write, bytes: &[u8]) -> Result<(), RawError> {
    out.write_all(bytes)
        .map_err(|e| RawError(format!("writing the body failed: {e}")))
}

/// Collects a sequence whose every element is a `u8` (how `Vec<u8>` serializes).
pub(crate) struct ByteSeq<'a, W: Write> {
    out: &'a mut W,
}

impl<W: Write> ser::SerializeSeq for ByteSeq<'_, W> {
    type Ok = ();
    type Error = RawError;

    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), RawError> {
        write(self.out, &[value.serialize(ByteElem)?])
    }

    fn end(self) -> Result<(), RawError> {
        Ok(())
    }
}

/// Accepts exactly one `u8`.
struct ByteElem;

macro_rules! reject {
    ($($name:ident($($arg:ty),*) => $what:expr;)*) => {
        $(fn $name(self, $(_: $arg),*) -> Result<Self::Ok, RawError> { Err(unsupported($what)) })*
    };
}

impl ser::Serializer for ByteElem {
    type Ok = u8;
    type Error = RawError;
    type SerializeSeq = Impossible<u8, RawError>;
    type SerializeTuple = Impossible<u8, RawError>;
    type SerializeTupleStruct = Impossible<u8, RawError>;
    type SerializeTupleVariant = Impossible<u8, RawError>;
    type SerializeMap = Impossible<u8, RawError>;
    type SerializeStruct = Impossible<u8, RawError>;
    type SerializeStructVariant = Impossible<u8, RawError>;

    fn serialize_u8(self, v: u8) -> Result<u8, RawError> {
        Ok(v)
    }

    reject! {
        serialize_bool(bool) => "a sequence of booleans";
        serialize_i8(i8) => "a sequence of i8";
        serialize_i16(i16) => "a sequence of i16";
        serialize_i32(i32) => "a sequence of i32";
        serialize_i64(i64) => "a sequence of i64";
        serialize_u16(u16) => "a sequence of u16";
        serialize_u32(u32) => "a sequence of u32";
        serialize_u64(u64) => "a sequence of u64";
        serialize_f32(f32) => "a sequence of f32";
        serialize_f64(f64) => "a sequence of f64";
        serialize_char(char) => "a sequence of chars";
        serialize_str(&str) => "a sequence of strings";
        serialize_bytes(&[u8]) => "a sequence of byte strings";
        serialize_none() => "a sequence of options";
        serialize_unit() => "a sequence of units";
        serialize_unit_struct(&'static str) => "a sequence of unit structs";
        serialize_unit_variant(&'static str, u32, &'static str) => "a sequence of enums";
    }

    fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<u8, RawError> {
        Err(unsupported("a sequence of options"))
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<u8, RawError> {
        Err(unsupported("a sequence of structs"))
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<u8, RawError> {
        Err(unsupported("a sequence of enums"))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, RawError> {
        Err(unsupported("nested sequences"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, RawError> {
        Err(unsupported("nested tuples"))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, RawError> {
        Err(unsupported("nested tuples"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, RawError> {
        Err(unsupported("nested enums"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, RawError> {
        Err(unsupported("nested maps"))
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, RawError> {
        Err(unsupported("nested structs"))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, RawError> {
        Err(unsupported("nested enums"))
    }
}

impl<'a, W: Write> ser::Serializer for RawSerializer<'a, W> {
    type Ok = ();
    type Error = RawError;
    type SerializeSeq = ByteSeq<'a, W>;
    type SerializeTuple = Impossible<(), RawError>;
    type SerializeTupleStruct = Impossible<(), RawError>;
    type SerializeTupleVariant = Impossible<(), RawError>;
    type SerializeMap = Impossible<(), RawError>;
    type SerializeStruct = Impossible<(), RawError>;
    type SerializeStructVariant = Impossible<(), RawError>;

    fn serialize_bytes(self, v: &[u8]) -> Result<(), RawError> {
        write(self.out, v)
    }
    fn serialize_str(self, v: &str) -> Result<(), RawError> {
        write(self.out, v.as_bytes())
    }
    fn serialize_unit(self) -> Result<(), RawError> {
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<ByteSeq<'a, W>, RawError> {
        Ok(ByteSeq { out: self.out })
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), RawError> {
        value.serialize(self)
    }

    reject! {
        serialize_bool(bool) => "a boolean";
        serialize_i8(i8) => "a number";
        serialize_i16(i16) => "a number";
        serialize_i32(i32) => "a number";
        serialize_i64(i64) => "a number";
        serialize_u8(u8) => "a number";
        serialize_u16(u16) => "a number";
        serialize_u32(u32) => "a number";
        serialize_u64(u64) => "a number";
        serialize_f32(f32) => "a number";
        serialize_f64(f64) => "a number";
        serialize_char(char) => "a char";
        serialize_none() => "an option";
        serialize_unit_struct(&'static str) => "a unit struct";
        serialize_unit_variant(&'static str, u32, &'static str) => "an enum";
    }

    fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<(), RawError> {
        Err(unsupported("an option"))
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), RawError> {
        Err(unsupported("an enum"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, RawError> {
        Err(unsupported("a tuple"))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, RawError> {
        Err(unsupported("a tuple struct"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, RawError> {
        Err(unsupported("an enum"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, RawError> {
        Err(unsupported("a map"))
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, RawError> {
        Err(unsupported("a struct"))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, RawError> {
        Err(unsupported("an enum"))
    }
}

pub(crate) struct RawDeserializer<'de> {
    pub(crate) input: &'de [u8],
}

/// Yields the input bytes one at a time, for targets that ask for a sequence.
struct ByteSeqAccess<'de> {
    rest: &'de [u8],
}

impl<'de> SeqAccess<'de> for ByteSeqAccess<'de> {
    type Error = RawError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, RawError> {
        match self.rest.split_first() {
            Some((first, rest)) => {
                self.rest = rest;
                seed.deserialize(first.into_deserializer()).map(Some)
            }
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.rest.len())
    }
}

impl<'de> de::Deserializer<'de> for RawDeserializer<'de> {
    type Error = RawError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        visitor.visit_borrowed_bytes(self.input)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        visitor.visit_borrowed_bytes(self.input)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        visitor.visit_byte_buf(self.input.to_vec())
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        let s = std::str::from_utf8(self.input)
            .map_err(|e| RawError(format!("body is not UTF-8: {e}")))?;
        visitor.visit_borrowed_str(s)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        visitor.visit_seq(ByteSeqAccess { rest: self.input })
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        if self.input.is_empty() {
            visitor.visit_unit()
        } else {
            Err(RawError(format!(
                "expected an empty body for unit, found {} bytes",
                self.input.len()
            )))
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, RawError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, RawError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char
        option unit_struct tuple tuple_struct map struct enum identifier
    }
}
