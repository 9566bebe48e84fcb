use crate::Meta;
use bytes::Bytes;
use bytestring::ByteString;
use drpc_codec::CodecId;
use std::time::Duration;

/// What a message is.
///
/// Kinds after [`Kind::Push`] are sent only to a peer that said it knows
/// them (docs/PROTOCOL.md section 3.2): one that does not closes the
/// connection on an unknown kind. More may come, so a `match` needs a
/// wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum Kind {
    /// A request that expects a [`Kind::Reply`] with the same seq.
    Call = 1,
    /// The answer to a call.
    Reply = 2,
    /// A one-way message; nothing is sent back.
    Push = 3,
    /// The caller gave up on its call with the same seq: the callee stops
    /// handling it and sends no reply.
    Cancel = 4,
    /// An item of a stream (docs/PROTOCOL.md section 3.4, a draft): the
    /// call's seq, the item's number in [`Header::count`], the item as the
    /// body; or, with [`flag::END`], the end of the sender's direction.
    Item = 5,
    /// Credit for a stream's items: how many, and how many body bytes,
    /// the receiver allows in all.
    Credit = 6,
}

/// The bits of the flags byte, which kinds 5 and 6 use (0 on the others).
pub mod flag {
    /// The sender made the call the seq names (the seq is its own); clear
    /// when the sender is that call's callee.
    pub const FROM_CALLER: u8 = 0x01;
    /// On an item: the sender's direction ends here; no item is carried.
    pub const END: u8 = 0x02;

    /// The bits `kind` may carry.
    pub fn allowed(kind: super::Kind) -> u8 {
        match kind {
            super::Kind::Item => FROM_CALLER | END,
            super::Kind::Credit => FROM_CALLER,
            _ => 0,
        }
    }
}

impl Kind {
    /// The kind named by a wire byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Call),
            2 => Some(Self::Reply),
            3 => Some(Self::Push),
            4 => Some(Self::Cancel),
            5 => Some(Self::Item),
            6 => Some(Self::Credit),
            _ => None,
        }
    }

    /// Lower-case name: `call`, `reply`, `push`, `cancel`, `item`, `credit`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Call => "call",
            Self::Reply => "reply",
            Self::Push => "push",
            Self::Cancel => "cancel",
            Self::Item => "item",
            Self::Credit => "credit",
        }
    }
}

/// Everything about a message except its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Call, reply or push.
    pub kind: Kind,
    /// The flags byte: 0 except on kinds 5 and 6 (see [`flag`]).
    pub flags: u8,
    /// Matches a reply to its call; chosen by the caller, unique among its
    /// calls in flight on one connection. Pushes carry 0.
    pub seq: u32,
    /// The route, such as `/math/add`. Replies carry an empty string.
    pub service_method: ByteString,
    /// For a call: the time the callee has left, measured when the call was
    /// written; the wire carries whole milliseconds. `None` on other kinds.
    /// Kinds 5 and 6 use the same four bytes for a count instead: read it
    /// with [`Header::count`].
    pub timeout: Option<Duration>,
    /// For a reply: the status code, 0 for OK. 0 on other kinds.
    pub status_code: i32,
    /// For a reply: the status message, empty for OK.
    pub status_message: ByteString,
    /// The codec of the body.
    pub codec: CodecId,
    /// Transfer filter ids applied to the body, in the order they were
    /// applied; the receiver reverses them last to first.
    pub filters: Bytes,
    /// Application key/value pairs.
    pub meta: Meta,
}

impl Header {
    fn new(kind: Kind, seq: u32, service_method: ByteString) -> Self {
        Self {
            kind,
            flags: 0,
            seq,
            service_method,
            timeout: None,
            status_code: 0,
            status_message: ByteString::new(),
            codec: CodecId::default(),
            filters: Bytes::new(),
            meta: Meta::new(),
        }
    }

    /// A call header for `service_method` with the default codec.
    pub fn call(seq: u32, service_method: impl Into<ByteString>) -> Self {
        Self::new(Kind::Call, seq, service_method.into())
    }

    /// A successful reply header for the call with `seq`.
    pub fn reply(seq: u32) -> Self {
        Self::new(Kind::Reply, seq, ByteString::new())
    }

    /// A push header for `service_method` with the default codec.
    pub fn push(service_method: impl Into<ByteString>) -> Self {
        Self::new(Kind::Push, 0, service_method.into())
    }

    /// The cancel of this side's call `seq`: status 499 and nothing else.
    pub fn cancel(seq: u32) -> Self {
        let mut h = Self::new(Kind::Cancel, seq, ByteString::new());
        h.status_code = 499;
        h
    }

    /// Item number `number` of the stream of call `seq`, in `codec`;
    /// `flags` says who sends it ([`flag::FROM_CALLER`]).
    pub fn item(seq: u32, flags: u8, number: u32, codec: CodecId) -> Self {
        let mut h = Self::new(Kind::Item, seq, ByteString::new());
        h.flags = flags;
        h.codec = codec;
        h.set_count(number);
        h
    }

    /// The end of the caller's direction of the stream of call `seq`,
    /// after `items` items: flags [`flag::FROM_CALLER`] and [`flag::END`],
    /// no body. Its status is 0 when the direction ended well; set
    /// `status_code` (and `status_message`) to fail it.
    pub fn items_end(seq: u32, items: u32) -> Self {
        let mut h = Self::new(Kind::Item, seq, ByteString::new());
        h.flags = flag::FROM_CALLER | flag::END;
        h.set_count(items);
        h
    }

    /// Credit for the stream of call `seq`: `items` allowed in all; the
    /// bytes allowed go in the body ([`Message::credit`] makes both).
    pub fn credit(seq: u32, flags: u8, items: u32) -> Self {
        let mut h = Self::new(Kind::Credit, seq, ByteString::new());
        h.flags = flags;
        h.codec = CodecId::RAW;
        h.set_count(items);
        h
    }

    /// The count that kinds 5 and 6 carry where a call carries its
    /// timeout: an item's number, the items an end says were sent, or the
    /// items a credit allows.
    pub fn count(&self) -> u32 {
        self.timeout
            .map_or(0, |t| u32::try_from(t.as_millis()).unwrap_or(u32::MAX))
    }

    /// Sets the count of [`Header::count`].
    pub fn set_count(&mut self, count: u32) {
        self.timeout = (count != 0).then(|| Duration::from_millis(count.into()));
    }
}

impl Header {
    /// The header as a borrowed [`Head`].
    pub fn head(&self) -> Head<'_> {
        Head {
            kind: self.kind,
            flags: self.flags,
            seq: self.seq,
            service_method: &self.service_method,
            timeout: self.timeout,
            status_code: self.status_code,
            status_message: &self.status_message,
            codec: self.codec,
            filters: &self.filters,
            meta: &self.meta,
        }
    }
}

/// A header's fields, borrowed: what an encoder needs, without building a
/// [`Header`] (whose strings would be copied into shared buffers first).
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    /// Call, reply or push.
    pub kind: Kind,
    /// As [`Header::flags`].
    pub flags: u8,
    /// As [`Header::seq`].
    pub seq: u32,
    /// As [`Header::service_method`].
    pub service_method: &'a str,
    /// As [`Header::timeout`].
    pub timeout: Option<Duration>,
    /// As [`Header::status_code`].
    pub status_code: i32,
    /// As [`Header::status_message`].
    pub status_message: &'a str,
    /// As [`Header::codec`].
    pub codec: CodecId,
    /// As [`Header::filters`].
    pub filters: &'a [u8],
    /// As [`Header::meta`].
    pub meta: &'a Meta,
}

/// A header and a body already encoded by the header's codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Everything but the body.
    pub header: Header,
    /// The encoded body; a slice of the read buffer on receipt.
    pub body: Bytes,
}

impl Message {
    /// A credit frame (kind 6): `items` and `bytes` allowed in all, for the
    /// stream of call `seq`.
    pub fn credit(seq: u32, flags: u8, items: u32, bytes: u64) -> Self {
        Self::new(
            Header::credit(seq, flags, items),
            Bytes::copy_from_slice(&bytes.to_be_bytes()),
        )
    }

    /// The bytes a credit frame allows: its 8-byte body; `None` when the
    /// body is not 8 bytes long.
    pub fn credit_bytes(&self) -> Option<u64> {
        let b: [u8; 8] = self.body.as_ref().try_into().ok()?;
        Some(u64::from_be_bytes(b))
    }

    /// A message from its parts.
    pub fn new(header: Header, body: impl Into<Bytes>) -> Self {
        Self {
            header,
            body: body.into(),
        }
    }
}
