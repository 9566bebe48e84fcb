//! The reading side of a connection, without the reading: the buffer bytes
//! land in, how much room to offer the next read, the frame timer, and
//! cutting whole frames out with the proto's framer.
//!
//! The buffer is released whenever it holds no partial frame and the socket
//! has nothing more to give, so an idle session keeps no read buffer beyond
//! [`KEEP`] bytes; the next read makes a new one. Buffers of full-size
//! reads and of large frames come from the connection's [`ReadPool`] and go
//! back to it, until it is given back (idle, or the connection stops).

use super::read_pool::{ReadPool, LENT_BYTES, POOLED, QUIET};
use crate::values::Status;
use bytes::BytesMut;
use drpc_codec::CodecId;
use drpc_proto::{Framer, Kind, Message, ProtoError};
use std::time::{Duration, Instant};

/// What the buffer held next.
#[derive(Debug)]
pub(crate) enum Frame {
    /// A whole message. Boxed: it passes through several hands on its way
    /// to a handler or a caller, as a pointer rather than a copy of its
    /// header each time.
    Message(Box<Message>),
    /// A whole frame whose method or meta is over its limit: a call is
    /// answered with this status, anything else is dropped.
    Oversize {
        kind: Kind,
        seq: u32,
        codec: CodecId,
        status: Status,
    },
}

/// The most a drained read buffer keeps for the next read to reuse: a
/// lone call or its reply of a few hundred bytes then allocates nothing,
/// and an idle session holds no more (as its write side's spare).
pub(crate) const KEEP: usize = 1024;

/// One connection's incoming bytes.
pub(crate) struct Inbound {
    framer: Box<dyn Framer>,
    buf: BytesMut,
    /// The size of the buffer's memory as of its last reserve: one drained
    /// by cutting frames out has no capacity left, yet holds that memory
    /// (to reuse) until it is released.
    reserved: usize,
    /// The last read filled all the room it was offered: more may wait, so
    /// the next read offers what the sizer says, not the kept buffer.
    last_full: bool,
    sizer: ReadSizer,
    /// The buffer came from the pool (see [`ReadPool`]), and goes back to
    /// it when reads move on if its memory still ends where it did: that
    /// end, and its size.
    pooled: Option<(usize, usize)>,
    pool: ReadPool,
    /// The read timer was last armed for the pool's quiet time too: only
    /// then may a buffer join the pool, or nothing would forget it.
    pool_timed: bool,
    /// When a read last went into a buffer just taken from the pool, or
    /// one went back to it.
    pool_used: Instant,
    /// A buffer was taken from the pool since the latest read.
    took: bool,
    /// When the first bytes of the frame being read arrived.
    started: Option<Instant>,
    /// When the latest bytes arrived; incoming deadlines count from here
    /// (one clock reading per read, not per message).
    arrived: Instant,
    frame_timeout: Duration,
}

impl Inbound {
    /// Reads start with room for `read_chunk` bytes; a frame must be whole
    /// within `frame_timeout` of its first byte.
    pub(crate) fn new(
        framer: Box<dyn Framer>,
        read_chunk: usize,
        frame_timeout: Duration,
        now: Instant,
    ) -> Self {
        Self {
            framer,
            buf: BytesMut::new(),
            reserved: 0,
            last_full: false,
            sizer: ReadSizer::new(read_chunk),
            pooled: None,
            pool: ReadPool::default(),
            pool_timed: false,
            pool_used: now,
            took: false,
            started: None,
            arrived: now,
            frame_timeout,
        }
    }

    /// The buffer to read into, with room for the next read (a new one when
    /// it was released), and how much room that is.
    pub(crate) fn room(&mut self) -> (&mut BytesMut, usize) {
        let next = self.sizer.next;
        let frame = self.framer.frame_len(&self.buf).unwrap_or(0);
        if frame > POOLED {
            // A frame larger than any read: room for all of it, once.
            if frame > self.buf.capacity() {
                self.move_to_pooled(frame);
            }
        } else if self.buf.capacity() - self.buf.len() < next / 2 {
            // Full-size reads take a pooled buffer, and so does a read after
            // one (a large frame's buffer goes back, not astray): one that
            // holds the frame under way whole, if its length is known.
            if next == POOLED || self.pooled.is_some() {
                self.move_to_pooled(frame.max(self.buf.len() + next / 2));
            } else {
                self.buf.reserve(next);
                self.pooled = None;
            }
        }
        // What it offers may leave out memory it holds (bytes cut from its
        // front): never lower, only a new buffer resets it.
        self.reserved = self.reserved.max(self.buf.len() + self.buf.capacity());
        let offered = self.buf.capacity() - self.buf.len();
        (&mut self.buf, offered)
    }

    /// Reads go on in a buffer of the pool's of at least `least` bytes,
    /// with the partial frame (if any) moved to its front, once.
    fn move_to_pooled(&mut self, least: usize) {
        let (mut fresh, size) = self.pool.take(least);
        fresh.extend_from_slice(&self.buf);
        let used = std::mem::replace(&mut self.buf, fresh);
        self.give_back(used);
        // One larger than the pool keeps is not counted as its own.
        self.pooled = (size <= LENT_BYTES).then(|| (ReadPool::end_of(&self.buf), size));
        // Stamped again by the read into it: taken before that read, the
        // time of the one before could be long past.
        self.took = true;
        self.pool_used = self.arrived;
        self.reserved = size;
    }

    /// Done with `buf`, the buffer reads used so far: to the pool if it
    /// came from there whole and the timer that forgets the pool is set.
    fn give_back(&mut self, buf: BytesMut) {
        if let Some((end, size)) = self.pooled.take() {
            if end == ReadPool::end_of(&buf) && self.pool_timed {
                self.pool.lend(buf, size);
                self.pool_used = self.arrived;
            }
        }
    }

    /// When the connection's read timer must fire next, which the caller
    /// arms before each read: the frame under way must be whole, or the
    /// pool is to be given back, [`QUIET`] after it was last used (small
    /// reads since do not keep it).
    pub(crate) fn arm_timer(&mut self) -> Option<Instant> {
        self.pool_timed = self.pooled.is_some() || !self.pool.is_empty();
        let quiet = self.pool_timed.then(|| self.pool_used + QUIET);
        match (self.frame_deadline(), quiet) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The read timer fired at `now`: gives the pool back if it went
    /// unused for [`QUIET`], and says whether the frame under way ran out
    /// of time.
    pub(crate) fn on_timer(&mut self, now: Instant) -> bool {
        if self.pool_used + QUIET <= now {
            self.forget_pool();
        }
        self.frame_deadline().is_some_and(|d| d <= now)
    }

    /// Gives the pool back, and keeps no buffer from now on until the
    /// timer is armed again: for a connection that stops, whose reads no
    /// longer arm it.
    pub(crate) fn forget_pool(&mut self) {
        self.pool.forget();
        self.pooled = None;
        self.pool_timed = false;
    }

    /// How much room a read should offer when the buffer was released and
    /// that room is at most `most`; `None` when reading into the buffer
    /// itself is the way (it holds a partial frame, or reads are larger).
    /// The reader then reads into space of its own, and only bytes that
    /// came make a buffer: a read that finds nothing allocates nothing.
    pub(crate) fn released_offer(&self, most: usize) -> Option<usize> {
        (self.buf.capacity() == 0 && self.sizer.next <= most).then_some(self.sizer.next)
    }

    /// The small buffer kept from earlier reads (see [`KEEP`]), to read
    /// straight into, and the room it offers; `None` when there is none, or
    /// when a message cut from it is still held somewhere (it would cost a
    /// new buffer: reading into the reader's own space is better then).
    pub(crate) fn kept_room(&mut self) -> Option<(&mut BytesMut, usize)> {
        if !self.buf.is_empty() || self.last_full || self.reserved == 0 || self.reserved > KEEP {
            return None;
        }
        if !self.buf.try_reclaim(self.reserved) {
            return None;
        }
        if self.buf.capacity() > KEEP {
            // It held more than it was counted for: not one to keep.
            self.buf = BytesMut::new();
            self.reserved = 0;
            return None;
        }
        let offered = self.buf.capacity();
        Some((&mut self.buf, offered))
    }

    /// `bytes` were read, into space of the reader's own that offered
    /// `offered` (see [`Inbound::released_offer`]), at `now`.
    pub(crate) fn filled_from(&mut self, offered: usize, bytes: &[u8], now: Instant) {
        // As large as what came (whole frames leave it empty, and a partial
        // one grows it on the next read), but a small one as large as may
        // be kept: the next read goes straight into it, and finds room to
        // spare, which tells the socket it is drained.
        if self.pooled.is_some() {
            // Used up to its end: back to the pool, not astray.
            let used = std::mem::take(&mut self.buf);
            self.give_back(used);
        }
        self.buf.reserve(bytes.len().max(KEEP));
        self.reserved = self.buf.len() + self.buf.capacity();
        self.buf.extend_from_slice(bytes);
        self.filled(offered, bytes.len(), now);
    }

    /// `n` bytes were read into the buffer, which offered `offered`, at `now`.
    pub(crate) fn filled(&mut self, offered: usize, n: usize, now: Instant) {
        self.sizer.record(offered, n);
        self.last_full = n >= offered;
        self.arrived = now;
        if std::mem::take(&mut self.took) {
            self.pool_used = now;
        }
        if n > 0 && self.started.is_none() {
            self.started = Some(now);
        }
    }

    /// Whether bytes read are still to be decoded (whole frames or part of
    /// one).
    pub(crate) fn has_buffered(&self) -> bool {
        !self.buf.is_empty()
    }

    /// When the bytes decoded last arrived.
    pub(crate) fn arrived(&self) -> Instant {
        self.arrived
    }

    /// The next whole frame, if the buffer holds one. A fatal error means
    /// the stream is out of step: the connection must end.
    pub(crate) fn next(&mut self) -> Result<Option<Frame>, ProtoError> {
        let frame = match self.framer.decode(&mut self.buf) {
            Ok(None) => return Ok(None),
            Ok(Some(msg)) => Frame::Message(Box::new(msg)),
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) => match e {
                ProtoError::HeaderTooLarge {
                    kind, seq, codec, ..
                } => Frame::Oversize {
                    kind,
                    seq,
                    codec,
                    status: Status::message_too_large(e.to_string()),
                },
                other => return Err(other),
            },
        };
        // The rest of the buffer, if any, came in the latest read.
        self.started = (!self.buf.is_empty()).then_some(self.arrived);
        Ok(Some(frame))
    }

    /// When the frame being read must be whole, if one is under way.
    pub(crate) fn frame_deadline(&self) -> Option<Instant> {
        self.started.map(|t| t + self.frame_timeout)
    }

    /// The status that ends a connection whose frame timer ran out.
    pub(crate) fn frame_timed_out(&self) -> Status {
        Status::deadline_exceeded(format!(
            "the peer sent {} bytes of a frame and not the rest within {:?}",
            self.buf.len(),
            self.frame_timeout
        ))
    }

    /// What the end of the peer's stream means here: `Ok` between frames
    /// (a clean end), an error in the middle of one.
    pub(crate) fn end_of_stream(&self) -> Result<(), Status> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Status::bad_message(format!(
                "the peer closed the connection in the middle of a frame ({} bytes unread)",
                self.buf.len()
            )))
        }
    }

    /// Gives the buffer back when it holds nothing and more than [`KEEP`]
    /// bytes: the socket has nothing more for now, and an idle connection
    /// should hold no buffer.
    pub(crate) fn release_if_empty(&mut self) {
        if self.buf.is_empty() && self.reserved > KEEP {
            let drained = std::mem::take(&mut self.buf);
            self.give_back(drained);
            self.reserved = 0;
        }
    }

    /// The bytes the buffer holds now, drained or not.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.reserved
    }
}

/// How much room the reader offers the socket: it doubles while reads fill
/// the room (a busy session then needs fewer system calls) and halves when
/// they use little of it.
struct ReadSizer {
    min: usize,
    next: usize,
}

impl ReadSizer {
    const MAX: usize = POOLED;

    fn new(min: usize) -> Self {
        let min = min.clamp(64, Self::MAX);
        Self { min, next: min }
    }

    fn record(&mut self, offered: usize, read: usize) {
        if read >= offered {
            self.next = (self.next * 2).min(Self::MAX);
        } else if read < self.next / 4 {
            self.next = (self.next / 2).max(self.min);
        }
    }
}

#[cfg(test)]
mod tests;
