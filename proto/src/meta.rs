use bytestring::ByteString;
use std::fmt;

/// String key/value pairs carried by every message, in both directions.
///
/// Keys are case-sensitive and keep their insertion order on the wire. A key
/// may appear once: [`Meta::insert`] replaces an earlier value. An empty
/// `Meta` costs no allocation.
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
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Meta {
    entries: Vec<(ByteString, ByteString)>,
}

impl Meta {
    /// An empty set.
    pub const fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| &**v)
    }

    /// Sets `key` to `value`, replacing and returning any earlier value.
    pub fn insert(
        &mut self,
        key: impl Into<ByteString>,
        value: impl Into<ByteString>,
    ) -> Option<ByteString> {
        let key = key.into();
        let value = value.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => Some(std::mem::replace(v, value)),
            None => {
                self.entries.push((key, value));
                None
            }
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<ByteString> {
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(i).1)
    }

    /// The number of pairs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The pairs in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (&**k, &**v))
    }

    /// Appends a pair without looking for an earlier one with the same key;
    /// decoders use it to keep exactly what was on the wire.
    pub(crate) fn push_raw(&mut self, key: ByteString, value: ByteString) {
        self.entries.push((key, value));
    }

    pub(crate) fn reserve(&mut self, n: usize) {
        self.entries.reserve(n);
    }
}

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
