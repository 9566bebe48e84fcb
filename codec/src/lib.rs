//! Body codecs for drpc.
//!
//! A codec turns a body value into bytes and back. Every drpc message records
//! the codec of its body in one byte ([`CodecId`]), so the receiver always
//! knows how to decode it and a reply can answer in the codec of its request.
//!
//! | id | codec | [`CodecId`] | what it carries |
//! |---:|---|---|---|
//! | 1 | MessagePack ([`MsgPack`]) | `CodecId::MsgPack` | any serde value, compact; the default |
//! | 2 | JSON ([`Json`]) | `CodecId::Json` | any serde value, human-readable |
//! | 3 | raw bytes ([`Raw`]) | `CodecId::Raw` | byte buffers and strings, unchanged |
//! | 4 | plain text ([`Text`]) | `CodecId::Text` | strings, numbers, booleans as UTF-8 text |
//!
//! Ids 0 and 5..=255 are not assigned; a peer that receives one treats the
//! message as malformed.
//!
//! ```
//! use drpc_codec::CodecId;
//!
//! let bytes = CodecId::Json.encode(&vec![1, 2, 3]).unwrap();
//! assert_eq!(bytes, b"[1,2,3]");
//! let back: Vec<i32> = CodecId::Json.decode(&bytes).unwrap();
//! assert_eq!(back, vec![1, 2, 3]);
//! ```
#![warn(missing_docs)]

mod blob;
mod raw;

pub use blob::Blob;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::io;

/// Why a body could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("{codec} codec: {message}")]
pub struct CodecError {
    codec: &'static str,
    message: String,
}

impl CodecError {
    /// A new error for the codec named `codec`.
    pub fn new(codec: &'static str, message: impl fmt::Display) -> Self {
        Self {
            codec,
            message: message.to_string(),
        }
    }

    /// The name of the codec that failed.
    pub fn codec(&self) -> &'static str {
        self.codec
    }
}

/// A body codec: serde values to bytes and back.
///
/// Implementations are stateless unit types; the runtime selects one by the
/// [`CodecId`] recorded in each message.
pub trait Codec {
    /// The byte that names this codec on the wire.
    const ID: CodecId;

    /// Writes the encoding of `value` to `out` (a `Vec<u8>`, or a
    /// `BytesMut` through `BufMut::writer`, say).
    fn encode_into<T: Serialize + ?Sized, W: io::Write>(
        value: &T,
        out: W,
    ) -> Result<(), CodecError>;

    /// Decodes a value from the whole of `bytes`.
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError>;
}

/// MessagePack through `rmp-serde`, structs encoded as maps so that fields
/// can be added without breaking older peers.
#[derive(Debug, Clone, Copy, Default)]
pub struct MsgPack;

impl Codec for MsgPack {
    const ID: CodecId = CodecId::MsgPack;

    fn encode_into<T: Serialize + ?Sized, W: io::Write>(
        value: &T,
        out: W,
    ) -> Result<(), CodecError> {
        let mut ser = rmp_serde::Serializer::new(out).with_struct_map();
        value
            .serialize(&mut ser)
            .map_err(|e| CodecError::new("msgpack", e))
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        rmp_serde::from_slice(bytes).map_err(|e| CodecError::new("msgpack", e))
    }
}

/// JSON through `serde_json`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl Codec for Json {
    const ID: CodecId = CodecId::Json;

    fn encode_into<T: Serialize + ?Sized, W: io::Write>(
        value: &T,
        out: W,
    ) -> Result<(), CodecError> {
        serde_json::to_writer(out, value).map_err(|e| CodecError::new("json", e))
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        serde_json::from_slice(bytes).map_err(|e| CodecError::new("json", e))
    }
}

/// Raw bytes: no serialization at all.
///
/// Encodes byte buffers (`Vec<u8>`, `bytes::Bytes`, `serde_bytes::ByteBuf`,
/// `&[u8]`), strings (as their UTF-8 bytes) and `()` (as nothing). Decodes
/// into the same types; a `String` target requires valid UTF-8. Any other
/// value is an error, so a struct never silently becomes garbage.
#[derive(Debug, Clone, Copy, Default)]
pub struct Raw;

impl Codec for Raw {
    const ID: CodecId = CodecId::Raw;

    fn encode_into<T: Serialize + ?Sized, W: io::Write>(
        value: &T,
        mut out: W,
    ) -> Result<(), CodecError> {
        value
            .serialize(raw::RawSerializer { out: &mut out })
            .map_err(|e| CodecError::new("raw", e))
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        T::deserialize(raw::RawDeserializer { input: bytes }).map_err(|e| CodecError::new("raw", e))
    }
}

/// Plain UTF-8 text through `serde_plain`: strings, numbers, booleans, chars
/// and unit-only enums, written as their text (`42`, `true`, `hello`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Text;

impl Codec for Text {
    const ID: CodecId = CodecId::Text;

    fn encode_into<T: Serialize + ?Sized, W: io::Write>(
        value: &T,
        mut out: W,
    ) -> Result<(), CodecError> {
        let s = value
            .serialize(serde_plain::Serializer)
            .map_err(|e| CodecError::new("text", e))?;
        out.write_all(s.as_bytes())
            .map_err(|e| CodecError::new("text", e))
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        let s = std::str::from_utf8(bytes).map_err(|e| CodecError::new("text", e))?;
        serde_plain::from_str(s).map_err(|e| CodecError::new("text", e))
    }
}

/// The codec of a message body, as recorded in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum CodecId {
    /// MessagePack, the default ([`MsgPack`]).
    #[default]
    MsgPack = 1,
    /// JSON ([`Json`]).
    Json = 2,
    /// Raw bytes ([`Raw`]).
    Raw = 3,
    /// Plain text ([`Text`]).
    Text = 4,
}

impl CodecId {
    /// Every built-in codec, in id order.
    pub const ALL: [CodecId; 4] = [CodecId::MsgPack, CodecId::Json, CodecId::Raw, CodecId::Text];

    /// The codec named by a wire byte, or `None` if no codec has that id.
    pub fn from_u8(id: u8) -> Option<Self> {
        match id {
            1 => Some(Self::MsgPack),
            2 => Some(Self::Json),
            3 => Some(Self::Raw),
            4 => Some(Self::Text),
            _ => None,
        }
    }

    /// The wire byte of this codec.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// A short lower-case name: `msgpack`, `json`, `raw`, `text`.
    pub fn name(self) -> &'static str {
        match self {
            Self::MsgPack => "msgpack",
            Self::Json => "json",
            Self::Raw => "raw",
            Self::Text => "text",
        }
    }

    /// Encodes `value` with this codec into a new buffer.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::new();
        self.encode_into(value, &mut out)?;
        Ok(out)
    }

    /// Writes the encoding of `value` with this codec to `out`: a
    /// `&mut Vec<u8>`, or a `BytesMut` through `BufMut::writer`, so a body
    /// can be encoded straight into a frame.
    pub fn encode_into<T: Serialize + ?Sized, W: io::Write>(
        self,
        value: &T,
        out: W,
    ) -> Result<(), CodecError> {
        match self {
            Self::MsgPack => MsgPack::encode_into(value, out),
            Self::Json => Json::encode_into(value, out),
            Self::Raw => Raw::encode_into(value, out),
            Self::Text => Text::encode_into(value, out),
        }
    }

    /// Decodes a value from a received body with this codec, so that every
    /// [`Blob`] in it is a slice of `body` rather than a copy.
    pub fn decode_shared<T: DeserializeOwned>(self, body: &Bytes) -> Result<T, CodecError> {
        blob::with_source(body, || self.decode(body))
    }

    /// Decodes a value from `bytes` with this codec.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, CodecError> {
        match self {
            Self::MsgPack => MsgPack::decode(bytes),
            Self::Json => Json::decode(bytes),
            Self::Raw => Raw::decode(bytes),
            Self::Text => Text::decode(bytes),
        }
    }
}

impl fmt::Display for CodecId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for CodecId {
    type Err = CodecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| CodecError::new("codec", format!("unknown codec name {s:?}")))
    }
}

#[cfg(test)]
mod tests;
