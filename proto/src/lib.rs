//! drpc's message model and wire formats.
//!
//! A [`Message`] is a [`Header`] plus a body of bytes already encoded by a
//! codec. A [`Proto`] owns the whole mapping between a byte stream and
//! messages: for every connection it makes a [`Framer`], which appends encoded
//! messages to an output buffer and cuts complete messages out of an input
//! buffer. A framer does no I/O, so it is tested without sockets, and a proto
//! with per-connection state (an HTTP mapping, say) keeps that state in its
//! framer.
//!
//! The built-in proto is [`RawProto`], the compact binary format that
//! `docs/PROTOCOL.md` specifies byte by byte.
//!
//! ```
//! use bytes::BytesMut;
//! use drpc_proto::{FrameLimits, Header, Message, Proto, RawProto};
//!
//! let mut framer = RawProto.framer(&FrameLimits::default());
//! let msg = Message::new(Header::call(7, "/math/add"), &b"\x82\xa1a\x01\xa1b\x02"[..]);
//! let mut wire = BytesMut::new();
//! framer.encode(&msg, &mut wire).unwrap();
//! let back = framer.decode(&mut wire).unwrap().unwrap();
//! assert_eq!(back, msg);
//! assert!(wire.is_empty());
//! ```
#![warn(missing_docs)]

mod message;
mod meta;
mod raw;

pub use bytestring::ByteString;
pub use drpc_codec::CodecId;
pub use message::{flag, Head, Header, Kind, Message};
pub use meta::Meta;
pub use raw::{RawProto, RAW_VERSION};

use bytes::BytesMut;

/// The largest frame any drpc proto accepts by default: 8 MiB.
///
/// Big enough for a 4 MiB body with room to spare, small enough that a peer
/// cannot make the receiver reserve much memory with one forged length.
pub const DEFAULT_MAX_FRAME_LEN: usize = 8 * 1024 * 1024;

/// Bounds a framer enforces on every frame it reads or writes.
///
/// Every limit is inclusive: a value of `n` allows exactly `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FrameLimits {
    /// The largest frame, in bytes, counting everything the proto writes for
    /// one message (for [`RawProto`], the 4-byte length prefix too).
    /// Defaults to [`DEFAULT_MAX_FRAME_LEN`]. A larger frame is fatal to the
    /// stream ([`ProtoError::FrameTooLarge`]).
    pub max_frame_len: usize,
    /// The longest service method, in bytes of UTF-8. Default 1 KiB.
    pub max_method_len: usize,
    /// The most meta, counted as its pairs take on the wire: for each pair,
    /// 4 length bytes plus its key and value. Counting the length bytes
    /// bounds the number of pairs too, so a message's meta never costs more
    /// than this to hold. Default 16 KiB.
    pub max_meta_len: usize,
}

impl FrameLimits {
    /// Limits with `max_frame_len` and the default method and meta limits.
    pub fn new(max_frame_len: usize) -> Self {
        Self {
            max_frame_len,
            ..Self::default()
        }
    }

    /// Sets the method limit.
    pub fn with_method_len(mut self, max: usize) -> Self {
        self.max_method_len = max;
        self
    }

    /// Sets the meta limit.
    pub fn with_meta_len(mut self, max: usize) -> Self {
        self.max_meta_len = max;
        self
    }
}

impl Default for FrameLimits {
    fn default() -> Self {
        Self {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            max_method_len: 1024,
            max_meta_len: 16 * 1024,
        }
    }
}

/// A wire format: makes one [`Framer`] per connection.
pub trait Proto: Send + Sync + 'static {
    /// A short name for logs and errors, such as `raw`.
    fn name(&self) -> &'static str;

    /// A fresh framer for one connection, enforcing `limits`.
    fn framer(&self, limits: &FrameLimits) -> Box<dyn Framer>;
}

/// Writes a message's body straight into the frame being encoded; see
/// [`Framer::encode_with`].
pub type WriteBody<'a> = &'a mut dyn FnMut(&mut BytesMut) -> Result<(), ProtoError>;

/// Converts between messages and the bytes of one connection.
pub trait Framer: Send + 'static {
    /// Appends the encoding of `msg` to `dst`.
    ///
    /// On error nothing is appended.
    fn encode(&mut self, msg: &Message, dst: &mut BytesMut) -> Result<(), ProtoError> {
        let body = &msg.body;
        self.encode_with(
            &msg.header.head(),
            &mut |dst| {
                dst.extend_from_slice(body);
                Ok(())
            },
            dst,
        )
    }

    /// Appends a message whose header is `head` and whose body
    /// `write_body` appends to the buffer it is given, so a sender can
    /// encode a body in place, with no buffer of its own and no copy.
    ///
    /// On error (the body's, or a limit) nothing is appended.
    fn encode_with(
        &mut self,
        head: &Head<'_>,
        write_body: WriteBody<'_>,
        dst: &mut BytesMut,
    ) -> Result<(), ProtoError>;

    /// Appends everything of a frame but its body, for a body of
    /// `body_len` bytes that the caller sends right after, as it is: a
    /// large body is then written from where it lies, not copied. `false`,
    /// with nothing appended, when this framer cannot cut a frame so (it
    /// transforms the frame as a whole): the caller encodes it whole.
    ///
    /// On error (a limit) nothing is appended.
    fn encode_head(
        &mut self,
        head: &Head<'_>,
        body_len: usize,
        dst: &mut BytesMut,
    ) -> Result<bool, ProtoError> {
        let _ = (head, body_len, dst);
        Ok(false)
    }

    /// Cuts the next complete message from the front of `src`.
    ///
    /// Returns `Ok(None)` when `src` holds only part of a message; the caller
    /// reads more bytes into `src` and tries again, sizing the room with
    /// [`Framer::frame_len`] where it can. A framer leaves that room to the
    /// caller, which may reuse its buffers. After an error for
    /// which [`ProtoError::is_fatal`] is true the stream is out of step and
    /// the connection must be closed; after any other error the frame has
    /// been consumed and the next one can be decoded.
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, ProtoError>;

    /// The whole length of the frame at the front of `src`, once enough of
    /// it has arrived to tell and it is within the limits; `None` otherwise,
    /// and by default. A reader uses it after [`Framer::decode`] found only
    /// part of a frame, to make room for the rest at once.
    ///
    /// ```
    /// use drpc_proto::{FrameLimits, Framer, Header, Message, Proto, RawProto};
    /// let mut framer = RawProto.framer(&FrameLimits::default());
    /// let mut wire = bytes::BytesMut::new();
    /// framer.encode(&Message::new(Header::push("/p"), vec![0; 100]), &mut wire)?;
    /// let whole = wire.len();
    /// assert_eq!(framer.frame_len(&wire[..3]), None);
    /// assert_eq!(framer.frame_len(&wire[..10]), Some(whole));
    /// # Ok::<(), drpc_proto::ProtoError>(())
    /// ```
    fn frame_len(&self, src: &[u8]) -> Option<usize> {
        let _ = src;
        None
    }
}

/// Why bytes could not be turned into a message, or a message into bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// A frame is larger than [`FrameLimits::max_frame_len`]. When the frame's
    /// fixed header could be read, `kind` and `seq` say which message it was,
    /// so a call can still be answered with 413.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The frame's declared or computed length.
        len: u64,
        /// The limit in force.
        max: usize,
        /// The kind of the oversize message, when known.
        kind: Option<Kind>,
        /// The seq of the oversize message, when known.
        seq: Option<u32>,
    },
    /// The frame names a protocol version this framer does not speak.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// The frame names a message kind that does not exist.
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    /// The frame names a body codec that does not exist.
    #[error("unknown codec id {0}")]
    UnknownCodec(u8),
    /// The frame is not well formed; the text says how.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A field of an outgoing message does not fit its wire encoding.
    #[error("cannot encode message: {0}")]
    Unencodable(String),
    /// The service method or the meta is over its limit in
    /// [`FrameLimits`]. Not fatal: a decoder has consumed the whole frame,
    /// so a call can be answered with 413 and the stream goes on.
    #[error("{what} is over its limit: {len} bytes, the most is {max}")]
    HeaderTooLarge {
        /// `service method` or `meta`.
        what: &'static str,
        /// Its size, counted as the limit counts it.
        len: usize,
        /// The limit.
        max: usize,
        /// The kind of the message.
        kind: Kind,
        /// Its seq.
        seq: u32,
        /// Its codec, which a 413 reply to it carries.
        codec: CodecId,
    },
}

impl ProtoError {
    /// Whether the stream is out of step after this error, so the
    /// connection must be closed. Only [`ProtoError::HeaderTooLarge`] is
    /// not (and [`ProtoError::Unencodable`], which only encoding returns).
    pub fn is_fatal(&self) -> bool {
        !matches!(self, Self::HeaderTooLarge { .. } | Self::Unencodable(_))
    }
}
