//! [`Blob`]: a byte string that a decoder hands out as a slice of the
//! received body instead of copying it.

use bytes::Bytes;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::cell::RefCell;
use std::fmt;
use std::ops::Deref;

/// A byte string in a message body, as a cheap, cloneable [`Bytes`].
///
/// It serializes as a byte string (MessagePack `bin`, the raw bytes of the
/// raw codec, an array of numbers in JSON). Decoded with
/// [`CodecId::decode_shared`](crate::CodecId::decode_shared), which drpc uses
/// for every body it receives, a `Blob` is a slice of the received frame: a
/// large byte payload costs no copy and no allocation, wherever it sits in
/// the value (a field of a struct, an element of a list). Decoded any other
/// way, it copies.
///
/// ```
/// use bytes::Bytes;
/// use drpc_codec::{Blob, CodecId};
///
/// let body = Bytes::from(CodecId::MSGPACK.encode(&Blob::from(vec![7u8; 1000])).unwrap());
/// let blob: Blob = CodecId::MSGPACK.decode_shared(&body).unwrap();
/// assert_eq!(blob.len(), 1000);
/// // The bytes are the body's own: no copy was made.
/// assert!(body.as_ptr_range().contains(&blob.as_ptr()));
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Blob(pub Bytes);

impl Blob {
    /// The bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl Deref for Blob {
    type Target = Bytes;

    fn deref(&self) -> &Bytes {
        &self.0
    }
}

impl From<Bytes> for Blob {
    fn from(b: Bytes) -> Self {
        Self(b)
    }
}

impl From<Vec<u8>> for Blob {
    fn from(v: Vec<u8>) -> Self {
        Self(Bytes::from(v))
    }
}

impl From<&'static [u8]> for Blob {
    fn from(s: &'static [u8]) -> Self {
        Self(Bytes::from_static(s))
    }
}

impl From<Blob> for Bytes {
    fn from(b: Blob) -> Self {
        b.0
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({} bytes)", self.0.len())
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

thread_local! {
    /// The body being decoded by [`with_source`] on this thread, if any.
    ///
    /// A decode is synchronous and a deserializer gives a visitor only a
    /// borrowed `&[u8]`, not the `Bytes` it came from; this is how a `Blob`
    /// finds the body it may slice. It is set only for the length of one
    /// decode call and restored after it (nested decodes included), so no
    /// state outlives the call that set it.
    static SOURCE: RefCell<Option<Bytes>> = const { RefCell::new(None) };
}

/// Runs `decode` with `body` as the source that [`Blob`]s slice.
pub(crate) fn with_source<T>(body: &Bytes, decode: impl FnOnce() -> T) -> T {
    struct Restore(Option<Bytes>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            SOURCE.with(|s| *s.borrow_mut() = previous);
        }
    }
    let previous = SOURCE.with(|s| s.borrow_mut().replace(body.clone()));
    let _restore = Restore(previous);
    decode()
}

/// `bytes` as a slice of the source body when it lies inside it, else a copy.
fn shared(bytes: &[u8]) -> Bytes {
    SOURCE.with(|s| {
        let source = s.borrow();
        match source.as_ref() {
            Some(src) if !bytes.is_empty() && src.as_ptr_range().contains(&bytes.as_ptr()) => {
                // `slice_ref` requires `bytes` to lie wholly inside `src`.
                let end = bytes.as_ptr() as usize + bytes.len();
                if end <= src.as_ptr() as usize + src.len() {
                    return src.slice_ref(bytes);
                }
                Bytes::copy_from_slice(bytes)
            }
            _ => Bytes::copy_from_slice(bytes),
        }
    })
}

struct BlobVisitor;

impl<'de> Visitor<'de> for BlobVisitor {
    type Value = Blob;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Blob, E> {
        Ok(Blob(shared(v)))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Blob, E> {
        Ok(Blob(Bytes::copy_from_slice(v)))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Blob, E> {
        Ok(Blob(Bytes::from(v)))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Blob, E> {
        Ok(Blob(shared(v.as_bytes())))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Blob, E> {
        Ok(Blob(Bytes::copy_from_slice(v.as_bytes())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Blob, A::Error> {
        // A byte string as a list of numbers (JSON): at most what the body
        // holds, so a forged size hint cannot reserve more.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(Blob(Bytes::from(out)))
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Blob, D::Error> {
        d.deserialize_bytes(BlobVisitor)
    }
}
