//! Protobuf bodies (id 5): one prost message per body.

use crate::{Codec, CodecError};
use prost::Message;
use serde::de::{DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use std::io;

/// A protobuf message as a body: serialized as its protobuf encoding, so
/// with [`CodecId::PROTOBUF`](crate::CodecId::PROTOBUF) the body on the
/// wire is exactly the message's bytes, which any protobuf library reads.
///
/// Use it as the argument and result of calls and handlers, typed service
/// methods included (a method with one argument sends that argument as the
/// body):
///
/// ```
/// use drpc_codec::{CodecId, Protobuf};
///
/// #[derive(Clone, PartialEq, prost::Message)]
/// struct Add {
///     #[prost(int64, tag = "1")]
///     a: i64,
///     #[prost(int64, tag = "2")]
///     b: i64,
/// }
///
/// let body = CodecId::PROTOBUF.encode(&Protobuf(Add { a: 1, b: 2 })).unwrap();
/// assert_eq!(body, [0x08, 0x01, 0x10, 0x02]); // field 1 = 1, field 2 = 2
/// let back: Protobuf<Add> = CodecId::PROTOBUF.decode(&body).unwrap();
/// assert_eq!(back.0, Add { a: 1, b: 2 });
/// ```
///
/// With another codec it is a byte string holding the same encoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Protobuf<M>(pub M);

impl<M: Message> Serialize for Protobuf<M> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0.encode_to_vec())
    }
}

impl<'de, M: Message + Default> Deserialize<'de> for Protobuf<M> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(d)?;
        M::decode(bytes.as_slice())
            .map(Protobuf)
            .map_err(serde::de::Error::custom)
    }
}

/// The codec: the body is the bytes a [`Protobuf`] serializes to. Like the
/// raw codec it takes byte strings only, so a value that is not one (a
/// struct, a map of several arguments) is a clear error, not garbage.
pub(crate) struct ProtobufCodec;

impl ProtobufCodec {
    pub(crate) fn encode_into<T: Serialize + ?Sized, W: io::Write>(
        value: &T,
        out: W,
    ) -> Result<(), CodecError> {
        crate::Raw::encode_into(value, out).map_err(hint)
    }

    pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        crate::Raw::decode(bytes).map_err(hint)
    }
}

fn hint(e: CodecError) -> CodecError {
    CodecError::new(
        "protobuf",
        format!("a protobuf body is one message, a drpc::codec::Protobuf<M>: {e}"),
    )
}
