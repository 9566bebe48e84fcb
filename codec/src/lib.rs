//! Body codecs for drpc.
//!
//! A codec turns a body value into bytes and back. Every drpc message records
//! the codec of its body in one byte ([`CodecId`]), so the receiver always
//! knows how to decode it and a reply can answer in the codec of its request.
//!
//! | id | codec | [`CodecId`] | what it carries |
//! |---:|---|---|---|
//! | 1 | MessagePack ([`MsgPack`]) | `CodecId::MSGPACK` | any serde value, compact; the default |
//! | 2 | JSON ([`Json`]) | `CodecId::JSON` | any serde value, human-readable |
//! | 3 | raw bytes ([`Raw`]) | `CodecId::RAW` | byte buffers and strings, unchanged |
//! | 4 | plain text ([`Text`]) | `CodecId::TEXT` | strings, numbers, booleans as UTF-8 text |
//! | 5 | protobuf (`Protobuf`, feature `protobuf`) | `CodecId::PROTOBUF` | one protobuf message, encoded by prost |
//!
//! An application adds codecs of its own under ids 128 to 255 in a
//! [`Codecs`] registry, which drpc keeps on each endpoint (its
//! `Config::codecs`); ids 6 to 127 are kept for drpc. A receiver that does
//! not know a body's codec answers a call with status 400 and keeps the
//! connection open; id 0 is never valid.
//!
//! ```
//! use drpc_codec::CodecId;
//!
//! let bytes = CodecId::JSON.encode(&vec![1, 2, 3]).unwrap();
//! assert_eq!(bytes, b"[1,2,3]");
//! let back: Vec<i32> = CodecId::JSON.decode(&bytes).unwrap();
//! assert_eq!(back, vec![1, 2, 3]);
//! ```
#![warn(missing_docs)]

mod blob;
#[cfg(feature = "protobuf")]
mod protobuf;
mod raw;
mod registry;

pub use blob::Blob;
/// The erased-serde [`DynCodec`] is built on.
pub use erased_serde;
/// The prost this crate's [`Protobuf`] is built on, for deriving messages
/// with the same version.
#[cfg(feature = "protobuf")]
pub use prost;
#[cfg(feature = "protobuf")]
pub use protobuf::Protobuf;
pub use registry::{Codecs, DynCodec, ErasedDecode};

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
/// [`CodecId`] recorded in each message. A codec of the application's own
/// implements [`DynCodec`] instead and is registered in [`Codecs`].
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
    const ID: CodecId = CodecId::MSGPACK;

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
    const ID: CodecId = CodecId::JSON;

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
    const ID: CodecId = CodecId::RAW;

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
    const ID: CodecId = CodecId::TEXT;

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

/// The codec of a message body, as recorded in its header: one byte.
///
/// | ids | what |
/// |---|---|
/// | 0 | never valid: a frame naming it is malformed |
/// | 1 to 4 | the built-in codecs: [`MSGPACK`](Self::MSGPACK), [`JSON`](Self::JSON), [`RAW`](Self::RAW), [`TEXT`](Self::TEXT) |
/// | 5 | [`PROTOBUF`](Self::PROTOBUF): one protobuf message (feature `protobuf`, see `Protobuf`) |
/// | 6 to 127 | reserved for codecs drpc may assign later |
/// | 128 to 255 | the application's own: [`CodecId::custom`], registered in a [`Codecs`] |
///
/// A receiver that does not know a body's codec answers a call with 400
/// and keeps the connection (docs/PROTOCOL.md section 4).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CodecId(u8);

/// As [`Display`](fmt::Display): `msgpack`, `json`, ..., or `codec 200`.
impl fmt::Debug for CodecId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Default for CodecId {
    fn default() -> Self {
        Self::MSGPACK
    }
}

impl CodecId {
    /// MessagePack, the default ([`MsgPack`]).
    pub const MSGPACK: CodecId = CodecId(1);
    /// JSON ([`Json`]).
    pub const JSON: CodecId = CodecId(2);
    /// Raw bytes ([`Raw`]).
    pub const RAW: CodecId = CodecId(3);
    /// Plain text ([`Text`]).
    pub const TEXT: CodecId = CodecId(4);
    /// One protobuf message, encoded by prost: the body is the message's
    /// bytes. Values sent with it are `Protobuf`
    /// wrappers (or plain bytes).
    pub const PROTOBUF: CodecId = CodecId(5);

    /// The codecs every endpoint knows, in id order.
    pub const ALL: [CodecId; 4] = [CodecId::MSGPACK, CodecId::JSON, CodecId::RAW, CodecId::TEXT];

    /// The first id of the range applications assign their own codecs in.
    pub const FIRST_CUSTOM: u8 = 128;

    /// The id a wire byte names, or `None` for 0, which names nothing.
    /// Whether a codec is registered under it is the receiver's to check.
    pub fn from_u8(id: u8) -> Option<Self> {
        (id != 0).then_some(Self(id))
    }

    /// An id for an application's own codec: 128 to 255. `None` below 128,
    /// which drpc keeps for its own codecs.
    ///
    /// ```
    /// use drpc_codec::CodecId;
    ///
    /// assert_eq!(CodecId::custom(200).map(CodecId::as_u8), Some(200));
    /// assert_eq!(CodecId::custom(7), None);
    /// ```
    pub const fn custom(id: u8) -> Option<Self> {
        if id >= Self::FIRST_CUSTOM {
            Some(Self(id))
        } else {
            None
        }
    }

    /// The wire byte of this codec.
    pub fn as_u8(self) -> u8 {
        self.0
    }

    /// Whether every endpoint knows this codec without registering it
    /// (ids 1 to 4, and 5 when built with the `protobuf` feature).
    pub fn is_built_in(self) -> bool {
        matches!(self.0, 1..=4) || (cfg!(feature = "protobuf") && self == Self::PROTOBUF)
    }

    /// A short lower-case name: `msgpack`, `json`, `raw`, `text`,
    /// `protobuf`; `custom` for any other id.
    pub fn name(self) -> &'static str {
        match self {
            Self::MSGPACK => "msgpack",
            Self::JSON => "json",
            Self::RAW => "raw",
            Self::TEXT => "text",
            Self::PROTOBUF => "protobuf",
            _ => "custom",
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
    ///
    /// Only the built-in codecs encode here; an application's own codec
    /// encodes through the [`Codecs`] it is registered in.
    pub fn encode_into<T: Serialize + ?Sized, W: io::Write>(
        self,
        value: &T,
        out: W,
    ) -> Result<(), CodecError> {
        match self {
            Self::MSGPACK => MsgPack::encode_into(value, out),
            Self::JSON => Json::encode_into(value, out),
            Self::RAW => Raw::encode_into(value, out),
            Self::TEXT => Text::encode_into(value, out),
            #[cfg(feature = "protobuf")]
            Self::PROTOBUF => protobuf::ProtobufCodec::encode_into(value, out),
            other => Err(other.not_built_in()),
        }
    }

    /// Decodes a value from a received body with this codec, so that every
    /// [`Blob`] in it is a slice of `body` rather than a copy.
    pub fn decode_shared<T: DeserializeOwned>(self, body: &Bytes) -> Result<T, CodecError> {
        blob::with_source(body, || self.decode(body))
    }

    /// Decodes a value from `bytes` with this codec; only the built-in
    /// codecs decode here (see [`CodecId::encode_into`]).
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, CodecError> {
        match self {
            Self::MSGPACK => MsgPack::decode(bytes),
            Self::JSON => Json::decode(bytes),
            Self::RAW => Raw::decode(bytes),
            Self::TEXT => Text::decode(bytes),
            #[cfg(feature = "protobuf")]
            Self::PROTOBUF => protobuf::ProtobufCodec::decode(bytes),
            other => Err(other.not_built_in()),
        }
    }

    fn not_built_in(self) -> CodecError {
        CodecError::new(
            "codec",
            format!(
                "codec {} is not built in; it is used through the Codecs it is registered in",
                self.0
            ),
        )
    }
}

impl fmt::Display for CodecId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            "custom" => write!(f, "codec {}", self.0),
            name => f.write_str(name),
        }
    }
}

impl std::str::FromStr for CodecId {
    type Err = CodecError;

    /// A built-in codec's name (`msgpack`, `json`, `raw`, `text`,
    /// `protobuf`), or an id from 1 to 255.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(id) = s.parse::<u8>().ok().and_then(Self::from_u8) {
            return Ok(id);
        }
        Self::ALL
            .into_iter()
            .chain([Self::PROTOBUF])
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| CodecError::new("codec", format!("unknown codec name {s:?}")))
    }
}

#[cfg(test)]
mod tests;
