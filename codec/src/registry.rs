//! Codecs an application adds, and the registry an endpoint keeps them in.

use crate::{blob, CodecError, CodecId};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::Arc;

/// What [`DynCodec::decode`] hands its deserializer to: it deserializes
/// the caller's value from it.
pub type ErasedDecode<'a, 'de> =
    &'a mut dyn FnMut(&mut dyn erased_serde::Deserializer<'de>) -> Result<(), erased_serde::Error>;

/// A codec of the application's own, registered in [`Codecs`] under an id
/// from 128 to 255.
///
/// It is object-safe (serde's traits are generic, so values cross it
/// type-erased through [`erased_serde`]), which lets one registry hold any
/// codec. Any serde format fits in a few lines:
///
/// ```
/// use drpc_codec::{CodecError, CodecId, Codecs, DynCodec, ErasedDecode};
///
/// /// JSON with indentation, for humans reading a capture.
/// struct PrettyJson;
///
/// impl DynCodec for PrettyJson {
///     fn name(&self) -> &str {
///         "pretty-json"
///     }
///
///     fn encode(
///         &self,
///         value: &dyn erased_serde::Serialize,
///         out: &mut dyn std::io::Write,
///     ) -> Result<(), CodecError> {
///         serde_json::to_writer_pretty(out, value).map_err(|e| CodecError::new("pretty-json", e))
///     }
///
///     fn decode<'de>(&self, bytes: &'de [u8], visit: ErasedDecode<'_, 'de>) -> Result<(), CodecError> {
///         let mut de = serde_json::Deserializer::from_slice(bytes);
///         visit(&mut <dyn erased_serde::Deserializer>::erase(&mut de))
///             .map_err(|e| CodecError::new("pretty-json", e))?;
///         de.end().map_err(|e| CodecError::new("pretty-json", e))
///     }
/// }
///
/// let pretty = CodecId::custom(200).unwrap();
/// let mut codecs = Codecs::new();
/// codecs.register(pretty, PrettyJson).unwrap();
/// let bytes = codecs.encode(pretty, &vec![1, 2]).unwrap();
/// assert_eq!(bytes, b"[\n  1,\n  2\n]");
/// let back: Vec<i32> = codecs.decode(pretty, &bytes).unwrap();
/// assert_eq!(back, [1, 2]);
/// ```
pub trait DynCodec: Send + Sync + 'static {
    /// A short name for errors and logs.
    fn name(&self) -> &str;

    /// Writes the encoding of `value` to `out`.
    fn encode(
        &self,
        value: &dyn erased_serde::Serialize,
        out: &mut dyn io::Write,
    ) -> Result<(), CodecError>;

    /// Makes a deserializer over the whole of `bytes` and hands it to
    /// `visit`, which deserializes the caller's value; then checks that
    /// nothing is left over, as the format defines it.
    fn decode<'de>(&self, bytes: &'de [u8], visit: ErasedDecode<'_, 'de>)
        -> Result<(), CodecError>;
}

/// The codecs an endpoint knows: the built-in ones (always) and the
/// application's own, by id.
///
/// Encoding and decoding with a built-in codec goes straight to it, with
/// no dynamic dispatch; a registered codec is reached through
/// [`DynCodec`].
#[derive(Clone, Default)]
pub struct Codecs {
    custom: BTreeMap<u8, Arc<dyn DynCodec>>,
}

impl Codecs {
    /// The built-in codecs only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `codec` under `id`, which must be an application's id
    /// ([`CodecId::custom`]: 128 to 255). Returns whether it replaced a
    /// codec registered there before.
    ///
    /// Errors: an id below 128, which drpc keeps for its own codecs.
    pub fn register(&mut self, id: CodecId, codec: impl DynCodec) -> Result<bool, CodecError> {
        self.register_arc(id, Arc::new(codec))
    }

    /// [`register`](Self::register) for a codec the caller shares.
    pub fn register_arc(
        &mut self,
        id: CodecId,
        codec: Arc<dyn DynCodec>,
    ) -> Result<bool, CodecError> {
        if id.as_u8() < CodecId::FIRST_CUSTOM {
            return Err(CodecError::new(
                "codec",
                format!(
                    "id {} is drpc's; register an application's codec under 128 to 255",
                    id.as_u8()
                ),
            ));
        }
        Ok(self.custom.insert(id.as_u8(), codec).is_some())
    }

    /// Whether `id` names a codec this registry can encode and decode.
    pub fn knows(&self, id: CodecId) -> bool {
        id.is_built_in() || self.custom.contains_key(&id.as_u8())
    }

    /// A name for `id`: a built-in codec's, a registered one's, or
    /// `codec N`.
    pub fn name(&self, id: CodecId) -> String {
        match self.custom.get(&id.as_u8()) {
            Some(c) if !id.is_built_in() => c.name().to_string(),
            _ => id.to_string(),
        }
    }

    /// Every codec known, as `name (id)`, for error messages.
    pub fn describe(&self) -> String {
        let built_in = CodecId::ALL
            .into_iter()
            .chain(CodecId::PROTOBUF.is_built_in().then_some(CodecId::PROTOBUF));
        let custom = self
            .custom
            .keys()
            .map(|&id| CodecId::from_u8(id).expect("non-zero"));
        built_in
            .chain(custom)
            .map(|id| format!("{} ({})", self.name(id), id.as_u8()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn registered(&self, id: CodecId) -> Result<&Arc<dyn DynCodec>, CodecError> {
        self.custom.get(&id.as_u8()).ok_or_else(|| {
            CodecError::new(
                "codec",
                format!(
                    "codec {} is not known here; this endpoint knows {}",
                    id.as_u8(),
                    self.describe()
                ),
            )
        })
    }

    /// Writes the encoding of `value` with codec `id` to `out`.
    pub fn encode_into<T: Serialize + ?Sized, W: io::Write>(
        &self,
        id: CodecId,
        value: &T,
        mut out: W,
    ) -> Result<(), CodecError> {
        if id.is_built_in() {
            return id.encode_into(value, out);
        }
        self.registered(id)?.encode(&value, &mut out)
    }

    /// Encodes `value` with codec `id` into a new buffer.
    pub fn encode<T: Serialize + ?Sized>(
        &self,
        id: CodecId,
        value: &T,
    ) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::new();
        self.encode_into(id, value, &mut out)?;
        Ok(out)
    }

    /// Decodes a value from `bytes` with codec `id`.
    pub fn decode<T: DeserializeOwned>(&self, id: CodecId, bytes: &[u8]) -> Result<T, CodecError> {
        if id.is_built_in() {
            return id.decode(bytes);
        }
        let codec = self.registered(id)?;
        let mut value = None;
        codec.decode(bytes, &mut |de| {
            value = Some(erased_serde::deserialize::<T>(de)?);
            Ok(())
        })?;
        value.ok_or_else(|| {
            CodecError::new("codec", format!("codec {} decoded no value", codec.name()))
        })
    }

    /// Decodes a value from a received body with codec `id`, so that every
    /// [`Blob`](crate::Blob) in it is a slice of `body` rather than a copy.
    pub fn decode_shared<T: DeserializeOwned>(
        &self,
        id: CodecId,
        body: &Bytes,
    ) -> Result<T, CodecError> {
        blob::with_source(body, || self.decode(id, body))
    }
}

impl fmt::Debug for Codecs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Codecs[")?;
        f.write_str(&self.describe())?;
        f.write_str("]")
    }
}
