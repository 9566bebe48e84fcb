//! The "raw" proto: drpc's compact binary wire format, version 1.
//!
//! Every message is one frame; all integers are big-endian:
//!
//! ```text
//! offset  size  field
//!      0     4  frame length L: the number of bytes after this field (u32)
//!      4     1  version, 1
//!      5     1  kind: 1 call, 2 reply, 3 push, 4 cancel, 5 item, 6 credit
//!      6     1  codec: 1 msgpack, 2 json, 3 raw, 4 text
//!      7     1  flags: 0, but on kinds 5 and 6 (a receiver refuses others)
//!      8     4  seq (u32)
//!     12     4  timeout in milliseconds, 0 = none (u32)
//!     16     4  status code (i32)
//!     20     2  service method length M (u16), then M bytes of UTF-8
//!      .     2  status message length S (u16), then S bytes of UTF-8
//!      .     1  filter count F (u8), then F filter ids, one byte each
//!      .     2  meta count N (u16), then N times:
//!                 key length (u16), key (UTF-8), value length (u16), value (UTF-8)
//!      .     .  body: every remaining byte of the frame
//! ```
//!
//! `docs/PROTOCOL.md` is the normative description.

use crate::{
    flag, FrameLimits, Framer, Head, Header, Kind, Message, Meta, Proto, ProtoError, WriteBody,
};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;
use drpc_codec::CodecId;
use std::time::Duration;

/// The protocol version the raw proto writes and accepts.
pub const RAW_VERSION: u8 = 1;

/// Size of the length prefix.
const PREFIX: usize = 4;
/// Bytes from the version byte up to and including the service method length.
const FIXED: usize = 18;
/// The smallest legal value of L: the fixed part plus empty strings, no
/// filters and no meta.
const MIN_BODY_OF_FRAME: usize = FIXED + 2 + 1 + 2;

/// drpc's default binary wire format; see the module docs and
/// `docs/PROTOCOL.md`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawProto;

impl Proto for RawProto {
    fn name(&self) -> &'static str {
        "raw"
    }

    fn framer(&self, limits: &FrameLimits) -> Box<dyn Framer> {
        Box::new(RawFramer { limits: *limits })
    }
}

struct RawFramer {
    limits: FrameLimits,
}

fn too_long(what: &str, len: usize, max: usize) -> ProtoError {
    ProtoError::Unencodable(format!("{what} is {len} bytes, the most is {max}"))
}

fn u16_len(what: &str, len: usize) -> Result<u16, ProtoError> {
    u16::try_from(len).map_err(|_| too_long(what, len, u16::MAX as usize))
}

fn timeout_to_ms(t: Option<Duration>) -> u32 {
    match t {
        None => 0,
        // Round up so a deadline a fraction of a millisecond away is not
        // mistaken for "no deadline".
        Some(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000);
            u32::try_from(ms).unwrap_or(u32::MAX).max(1)
        }
    }
}

impl Framer for RawFramer {
    fn encode(&mut self, msg: &Message, dst: &mut BytesMut) -> Result<(), ProtoError> {
        // A body over the limit is refused before it is copied.
        let h = &msg.header;
        let least = (PREFIX + MIN_BODY_OF_FRAME) as u64 + msg.body.len() as u64;
        if least > self.limits.max_frame_len as u64 {
            return Err(ProtoError::FrameTooLarge {
                len: least + (h.service_method.len() + h.meta.wire_len()) as u64,
                max: self.limits.max_frame_len,
                kind: Some(h.kind),
                seq: Some(h.seq),
            });
        }
        let body = &msg.body;
        self.encode_with(
            &h.head(),
            &mut |dst| {
                dst.extend_from_slice(body);
                Ok(())
            },
            dst,
        )
    }

    fn encode_with(
        &mut self,
        h: &Head<'_>,
        write_body: WriteBody<'_>,
        dst: &mut BytesMut,
    ) -> Result<(), ProtoError> {
        let method_len = u16_len("service method", h.service_method.len())?;
        let status_len = u16_len("status message", h.status_message.len())?;
        let filter_count = u8::try_from(h.filters.len())
            .map_err(|_| too_long("filter list", h.filters.len(), u8::MAX as usize))?;
        let meta_count = u16_len("meta count", h.meta.len())?;
        if h.meta.as_wire().is_none() {
            for (k, v) in h.meta.iter() {
                u16_len("meta key", k.len())?;
                u16_len("meta value", v.len())?;
            }
        }
        let meta_bytes = h.meta.wire_len();
        self.check_header(h.kind, h.seq, h.codec, h.service_method.len(), meta_bytes)?;
        let head_len = PREFIX
            + MIN_BODY_OF_FRAME
            + h.service_method.len()
            + h.status_message.len()
            + h.filters.len()
            + meta_bytes;
        let too_large = |len: u64| ProtoError::FrameTooLarge {
            len,
            max: self.limits.max_frame_len,
            kind: Some(h.kind),
            seq: Some(h.seq),
        };
        if head_len > self.limits.max_frame_len {
            return Err(too_large(head_len as u64));
        }
        let start = dst.len();
        dst.reserve(head_len);
        if head_len <= SMALL_HEAD {
            // Assembled on the stack and appended at once: a `put_*` per
            // field costs a call and a copy each.
            let mut head = [0u8; SMALL_HEAD];
            let n = write_head(&mut head, h, meta_count);
            debug_assert_eq!(n, head_len);
            dst.extend_from_slice(&head[..n]);
        } else {
            // The length is patched in once the body is written.
            dst.put_u32(0);
            dst.put_u8(RAW_VERSION);
            dst.put_u8(h.kind as u8);
            dst.put_u8(h.codec.as_u8());
            dst.put_u8(h.flags);
            dst.put_u32(h.seq);
            dst.put_u32(timeout_to_ms(h.timeout));
            dst.put_i32(h.status_code);
            dst.put_u16(method_len);
            dst.put_slice(h.service_method.as_bytes());
            dst.put_u16(status_len);
            dst.put_slice(h.status_message.as_bytes());
            dst.put_u8(filter_count);
            dst.put_slice(h.filters);
            dst.put_u16(meta_count);
            match h.meta.as_wire() {
                Some(wire) => dst.put_slice(wire),
                None => {
                    for (k, v) in h.meta.iter() {
                        dst.put_u16(k.len() as u16);
                        dst.put_slice(k.as_bytes());
                        dst.put_u16(v.len() as u16);
                        dst.put_slice(v.as_bytes());
                    }
                }
            }
        }
        if let Err(e) = write_body(dst) {
            dst.truncate(start);
            return Err(e);
        }
        let frame_len = dst.len() - start;
        if frame_len > self.limits.max_frame_len || frame_len - PREFIX > u32::MAX as usize {
            dst.truncate(start);
            return Err(too_large(frame_len as u64));
        }
        dst[start..start + PREFIX].copy_from_slice(&((frame_len - PREFIX) as u32).to_be_bytes());
        Ok(())
    }

    fn encode_head(
        &mut self,
        h: &Head<'_>,
        body_len: usize,
        dst: &mut BytesMut,
    ) -> Result<bool, ProtoError> {
        let start = dst.len();
        self.encode_with(h, &mut |_| Ok(()), dst)?;
        let frame_len = dst.len() - start + body_len;
        if frame_len > self.limits.max_frame_len || frame_len - PREFIX > u32::MAX as usize {
            dst.truncate(start);
            return Err(ProtoError::FrameTooLarge {
                len: frame_len as u64,
                max: self.limits.max_frame_len,
                kind: Some(h.kind),
                seq: Some(h.seq),
            });
        }
        dst[start..start + PREFIX].copy_from_slice(&((frame_len - PREFIX) as u32).to_be_bytes());
        Ok(true)
    }

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, ProtoError> {
        if src.len() < PREFIX {
            return Ok(None);
        }
        let declared = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        // Checked before anything is reserved, so a forged length costs nothing.
        let total = PREFIX as u64 + declared as u64;
        if total > self.limits.max_frame_len as u64 {
            let (kind, seq) = peek_identity(src);
            return Err(ProtoError::FrameTooLarge {
                len: total,
                max: self.limits.max_frame_len,
                kind,
                seq,
            });
        }
        if declared < MIN_BODY_OF_FRAME {
            return Err(ProtoError::Malformed(format!(
                "frame length {declared} is below the minimum of {MIN_BODY_OF_FRAME}"
            )));
        }
        if src.len() > PREFIX && src[PREFIX] != RAW_VERSION {
            return Err(ProtoError::UnsupportedVersion(src[PREFIX]));
        }
        let total = total as usize;
        if src.len() < total {
            // The room for the rest is the reader's to make (see
            // `frame_len`): it knows its buffers, and reserving here too
            // would move a partial frame twice.
            return Ok(None);
        }
        let mut frame = src.split_to(total).freeze();
        frame.advance(PREFIX);
        let msg = parse_frame(frame)?;
        let h = &msg.header;
        self.check_header(
            h.kind,
            h.seq,
            h.codec,
            h.service_method.len(),
            h.meta.wire_len(),
        )?;
        Ok(Some(msg))
    }

    fn frame_len(&self, src: &[u8]) -> Option<usize> {
        let prefix: [u8; PREFIX] = src.get(..PREFIX)?.try_into().ok()?;
        let total = PREFIX as u64 + u64::from(u32::from_be_bytes(prefix));
        usize::try_from(total)
            .ok()
            .filter(|&t| t <= self.limits.max_frame_len)
    }
}

impl RawFramer {
    /// The method and meta limits, the same both ways.
    fn check_header(
        &self,
        kind: Kind,
        seq: u32,
        codec: CodecId,
        method: usize,
        meta: usize,
    ) -> Result<(), ProtoError> {
        let over = |what, len, max| ProtoError::HeaderTooLarge {
            what,
            len,
            max,
            kind,
            seq,
            codec,
        };
        if method > self.limits.max_method_len {
            return Err(over("service method", method, self.limits.max_method_len));
        }
        if meta > self.limits.max_meta_len {
            return Err(over("meta", meta, self.limits.max_meta_len));
        }
        Ok(())
    }
}

/// Heads up to this long are assembled on the stack.
const SMALL_HEAD: usize = 256;

/// Writes everything of a frame before its body into `out` (the length
/// left 0, patched later); returns how many bytes. The caller checked that
/// it fits and that every length fits its field.
fn write_head(out: &mut [u8; SMALL_HEAD], h: &Head<'_>, meta_count: u16) -> usize {
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        out[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(&[
        0,
        0,
        0,
        0,
        RAW_VERSION,
        h.kind as u8,
        h.codec.as_u8(),
        h.flags,
    ]);
    put(&h.seq.to_be_bytes());
    put(&timeout_to_ms(h.timeout).to_be_bytes());
    put(&h.status_code.to_be_bytes());
    put(&(h.service_method.len() as u16).to_be_bytes());
    put(h.service_method.as_bytes());
    put(&(h.status_message.len() as u16).to_be_bytes());
    put(h.status_message.as_bytes());
    put(&[h.filters.len() as u8]);
    put(h.filters);
    put(&meta_count.to_be_bytes());
    match h.meta.as_wire() {
        Some(wire) => put(wire),
        None => {
            for (k, v) in h.meta.iter() {
                put(&(k.len() as u16).to_be_bytes());
                put(k.as_bytes());
                put(&(v.len() as u16).to_be_bytes());
                put(v.as_bytes());
            }
        }
    }
    at
}

/// The kind and seq of a frame whose fixed header is already buffered.
fn peek_identity(src: &[u8]) -> (Option<Kind>, Option<u32>) {
    if src.len() < PREFIX + 8 || src[PREFIX] != RAW_VERSION {
        return (None, None);
    }
    let kind = Kind::from_u8(src[PREFIX + 1]);
    let seq = u32::from_be_bytes([src[8], src[9], src[10], src[11]]);
    (kind, kind.map(|_| seq))
}

/// Reads fields from the body of one frame, checking every length against
/// what is left.
struct Cursor {
    buf: Bytes,
}

impl Cursor {
    fn need(&self, n: usize, what: &str) -> Result<(), ProtoError> {
        if self.buf.remaining() < n {
            Err(ProtoError::Malformed(format!(
                "{what} needs {n} bytes but the frame has {} left",
                self.buf.remaining()
            )))
        } else {
            Ok(())
        }
    }

    fn u8(&mut self, what: &str) -> Result<u8, ProtoError> {
        self.need(1, what)?;
        Ok(self.buf.get_u8())
    }

    fn u16(&mut self, what: &str) -> Result<u16, ProtoError> {
        self.need(2, what)?;
        Ok(self.buf.get_u16())
    }

    fn bytes(&mut self, n: usize, what: &str) -> Result<Bytes, ProtoError> {
        self.need(n, what)?;
        Ok(self.buf.split_to(n))
    }

    fn string(&mut self, what: &str) -> Result<ByteString, ProtoError> {
        let n = self.u16(what)? as usize;
        let raw = self.bytes(n, what)?;
        ByteString::try_from(raw).map_err(|_| ProtoError::Malformed(format!("{what} is not UTF-8")))
    }
}

fn parse_frame(frame: Bytes) -> Result<Message, ProtoError> {
    let mut c = Cursor { buf: frame };
    // The fixed part is guaranteed by the minimum length check.
    let version = c.buf.get_u8();
    if version != RAW_VERSION {
        return Err(ProtoError::UnsupportedVersion(version));
    }
    let kind_byte = c.buf.get_u8();
    let kind = Kind::from_u8(kind_byte).ok_or(ProtoError::UnknownKind(kind_byte))?;
    let codec_byte = c.buf.get_u8();
    let codec = CodecId::from_u8(codec_byte).ok_or(ProtoError::UnknownCodec(codec_byte))?;
    let flags = c.buf.get_u8();
    if flags & !flag::allowed(kind) != 0 {
        return Err(ProtoError::Malformed(format!(
            "flags byte {flags:#04x} has bits a {} frame does not use",
            kind.name()
        )));
    }
    let seq = c.buf.get_u32();
    let timeout_ms = c.buf.get_u32();
    let status_code = c.buf.get_i32();
    let service_method = c.string("service method")?;
    let status_message = c.string("status message")?;
    let filter_count = c.u8("filter count")? as usize;
    let filters = c.bytes(filter_count, "filter list")?;
    let meta_count = c.u16("meta count")?;
    // The pairs stay in their wire form, a slice of the frame: find where
    // they end, then check them in place.
    let mut end = 0usize;
    for _ in 0..2 * u32::from(meta_count) {
        let len = c
            .buf
            .get(end..end + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
            .ok_or_else(|| ProtoError::Malformed("meta runs past the end of the frame".into()))?;
        end += 2 + len;
        if end > c.buf.len() {
            return Err(ProtoError::Malformed(
                "meta runs past the end of the frame".into(),
            ));
        }
    }
    let meta = Meta::from_wire(c.buf.split_to(end), meta_count).map_err(ProtoError::Malformed)?;
    Ok(Message {
        header: Header {
            kind,
            flags,
            seq,
            service_method,
            timeout: (timeout_ms != 0).then(|| Duration::from_millis(timeout_ms.into())),
            status_code,
            status_message,
            codec,
            filters,
            meta,
        },
        body: c.buf,
    })
}
