use bytes::{Buf, Bytes};
use bytestring::ByteString;
use std::fmt;

/// String key/value pairs carried by every message, in both directions.
///
/// Keys are case-sensitive and keep their insertion order on the wire. A key
/// may appear once: [`Meta::insert`] replaces an earlier value. An empty
/// `Meta` costs no allocation.
///
/// Meta that arrived in a frame stays in its wire form, a slice of the
/// frame, until it is changed: reading it ([`Meta::get`], [`Meta::iter`])
/// parses the pairs in place, so a received message holds no memory for its
/// meta beyond the frame's own bytes, however many pairs it carries.
///
/// ```
/// use drpc_proto::Meta;
///
/// let mut meta = Meta::new();
/// meta.insert("trace-id", "abc");
/// meta.insert("trace-id", "def");
/// assert_eq!(meta.get("trace-id"), Some("def"));
/// assert_eq!(meta.len(), 1);
/// ```
#[derive(Clone, Default)]
pub struct Meta {
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    /// Pairs as they were on the wire (`key length u16, key, value length
    /// u16, value`, repeated `count` times), checked when decoded: every
    /// length fits and every string is UTF-8.
    Wire {
        bytes: Bytes,
        count: u16,
    },
    Owned(Vec<(ByteString, ByteString)>),
}

impl Default for Repr {
    fn default() -> Self {
        Repr::Owned(Vec::new())
    }
}

/// Walks the pairs of a checked wire region.
struct WirePairs<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for WirePairs<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let key = take_str(&mut self.rest)?;
        let value = take_str(&mut self.rest)?;
        Some((key, value))
    }
}

/// One length-prefixed string from `rest`; `None` only if the region was
/// not checked (which [`Meta::from_wire`] rules out).
fn take_str<'a>(rest: &mut &'a [u8]) -> Option<&'a str> {
    let (len, tail) = rest.split_first_chunk::<2>()?;
    let len = u16::from_be_bytes(*len) as usize;
    let (s, tail) = tail.split_at_checked(len)?;
    *rest = tail;
    std::str::from_utf8(s).ok()
}

impl Meta {
    /// An empty set.
    pub const fn new() -> Self {
        Self {
            repr: Repr::Owned(Vec::new()),
        }
    }

    /// Meta in its wire form: `count` pairs, each `u16` key length, key,
    /// `u16` value length, value, filling `bytes` exactly. Checks every
    /// length and that every string is UTF-8; on error says what is wrong.
    pub(crate) fn from_wire(bytes: Bytes, count: u16) -> Result<Self, String> {
        let mut rest = &bytes[..];
        for i in 0..count {
            for what in ["key", "value"] {
                if rest.len() < 2 {
                    return Err(format!("meta {what} {i} runs past the end of the frame"));
                }
                let len = rest.get_u16() as usize;
                if rest.len() < len {
                    return Err(format!(
                        "meta {what} {i} needs {len} bytes but the frame has {} left",
                        rest.len()
                    ));
                }
                if std::str::from_utf8(&rest[..len]).is_err() {
                    return Err(format!("meta {what} {i} is not UTF-8"));
                }
                rest = &rest[len..];
            }
        }
        if !rest.is_empty() {
            return Err("meta pairs do not fill their region".into());
        }
        Ok(if count == 0 {
            Self::new()
        } else {
            Self {
                repr: Repr::Wire { bytes, count },
            }
        })
    }

    /// The pairs, owned, so they can be changed.
    fn owned(&mut self) -> &mut Vec<(ByteString, ByteString)> {
        if let Repr::Wire { .. } = self.repr {
            let pairs = self
                .iter()
                .map(|(k, v)| (ByteString::from(k), ByteString::from(v)))
                .collect();
            self.repr = Repr::Owned(pairs);
        }
        match &mut self.repr {
            Repr::Owned(pairs) => pairs,
            Repr::Wire { .. } => unreachable!("converted above"),
        }
    }

    /// The value of `key`, if present (the first pair with it, when a peer
    /// sent it twice).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Sets `key` to `value`, replacing and returning any earlier value.
    pub fn insert(
        &mut self,
        key: impl Into<ByteString>,
        value: impl Into<ByteString>,
    ) -> Option<ByteString> {
        let key = key.into();
        let value = value.into();
        let pairs = self.owned();
        match pairs.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => Some(std::mem::replace(v, value)),
            None => {
                pairs.push((key, value));
                None
            }
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<ByteString> {
        self.get(key)?;
        let pairs = self.owned();
        let i = pairs.iter().position(|(k, _)| k == key)?;
        Some(pairs.remove(i).1)
    }

    /// The number of pairs.
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Wire { count, .. } => usize::from(*count),
            Repr::Owned(pairs) => pairs.len(),
        }
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pairs in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let (wire, owned): (&[u8], &[(ByteString, ByteString)]) = match &self.repr {
            Repr::Wire { bytes, .. } => (bytes, &[]),
            Repr::Owned(pairs) => (&[], pairs),
        };
        WirePairs { rest: wire }.chain(owned.iter().map(|(k, v)| (&**k, &**v)))
    }

    /// The bytes the pairs take on the wire after the count: 4 length bytes
    /// per pair plus its key and value. What [`FrameLimits::max_meta_len`]
    /// counts.
    ///
    /// [`FrameLimits::max_meta_len`]: crate::FrameLimits::max_meta_len
    pub fn wire_len(&self) -> usize {
        match &self.repr {
            Repr::Wire { bytes, .. } => bytes.len(),
            Repr::Owned(pairs) => pairs.iter().map(|(k, v)| 4 + k.len() + v.len()).sum(),
        }
    }

    /// The checked wire bytes, when the meta is still as it arrived: the
    /// encoder copies them as they are.
    pub(crate) fn as_wire(&self) -> Option<&Bytes> {
        match &self.repr {
            Repr::Wire { bytes, .. } => Some(bytes),
            Repr::Owned(_) => None,
        }
    }
}

impl PartialEq for Meta {
    /// Equal when they hold the same pairs in the same order, whatever
    /// their form.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Meta {}

impl fmt::Debug for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Into<ByteString>, V: Into<ByteString>> FromIterator<(K, V)> for Meta {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut meta = Meta::new();
        for (k, v) in iter {
            meta.insert(k, v);
        }
        meta
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(pairs: &[(&str, &str)]) -> Bytes {
        let mut out = Vec::new();
        for (k, v) in pairs {
            out.extend_from_slice(&(k.len() as u16).to_be_bytes());
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(&(v.len() as u16).to_be_bytes());
            out.extend_from_slice(v.as_bytes());
        }
        out.into()
    }

    #[test]
    fn wire_meta_reads_in_place_and_changes_like_owned() {
        let bytes = wire(&[("a", "1"), ("b", "2"), ("a", "3")]);
        let mut m = Meta::from_wire(bytes.clone(), 3).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m.get("a"), Some("1"), "the first pair wins");
        assert_eq!(m.wire_len(), bytes.len());
        assert!(m.as_wire().is_some());
        assert_eq!(m.insert("b", "9").as_deref(), Some("2"));
        assert!(m.as_wire().is_none());
        assert_eq!(
            m.iter().collect::<Vec<_>>(),
            vec![("a", "1"), ("b", "9"), ("a", "3")]
        );
        assert_eq!(m.remove("a").as_deref(), Some("1"));
        assert_eq!(m.get("a"), Some("3"));
    }

    #[test]
    fn bad_wire_meta_is_named() {
        let err = |b: &[u8], n| Meta::from_wire(Bytes::copy_from_slice(b), n).unwrap_err();
        assert!(err(&[0], 1).contains("key 0 runs past"));
        assert!(err(&[0, 5, b'a'], 1).contains("key 0 needs 5 bytes"));
        assert!(err(&[0, 1, 0xff, 0, 0], 1).contains("key 0 is not UTF-8"));
        assert!(err(&[0, 0, 0, 0, 1], 1).contains("do not fill"));
        assert_eq!(Meta::from_wire(Bytes::new(), 0).unwrap(), Meta::new());
    }

    #[test]
    fn forms_compare_by_their_pairs() {
        let wire = Meta::from_wire(wire(&[("k", "v")]), 1).unwrap();
        let owned: Meta = [("k", "v")].into_iter().collect();
        assert_eq!(wire, owned);
        assert_ne!(wire, Meta::new());
    }
}
