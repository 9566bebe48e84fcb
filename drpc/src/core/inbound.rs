//! The reading side of a connection, without the reading: the buffer bytes
//! land in, how much room to offer the next read, the frame timer, and
//! cutting whole frames out with the proto's framer.
//!
//! The buffer is released whenever it holds no partial frame and the socket
//! has nothing more to give, so an idle session keeps no read buffer beyond
//! [`KEEP`] bytes; the next read makes a new one. Full-size buffers go to
//! the connection's [`ReadPool`] instead, until reads are quiet.

use super::read_pool::{ReadPool, POOLED};
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
    /// it when reads move on.
    pooled: bool,
    pool: ReadPool,
    /// The read timer was last armed for the pool's deadline too: only
    /// then may a buffer join the pool, or nothing would forget it.
    pool_timed: bool,
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
            pooled: false,
            pool: ReadPool::default(),
            pool_timed: false,
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
        if frame > POOLED && frame > self.buf.capacity() {
            // A frame larger than any read: room for all of it, at once.
            self.buf.reserve(frame - self.buf.len());
            self.pooled = false;
        } else if self.buf.capacity() - self.buf.len() < next / 2 {
            if next == POOLED && self.buf.len() <= POOLED / 2 {
                // Full-size reads: a pooled buffer, with the partial frame
                // (if any) moved to its front, once.
                let mut fresh = self.pool.take(self.arrived);
                fresh.extend_from_slice(&self.buf);
                let used = std::mem::replace(&mut self.buf, fresh);
                self.give_back(used);
                self.pooled = true;
                self.reserved = POOLED;
            } else {
                self.buf.reserve(next);
                // It may be new memory, of any size: not one to pool.
                self.pooled = false;
            }
        }
        // What it offers may leave out memory it holds (bytes cut from its
        // front): never lower, only a new buffer resets it.
        self.reserved = self.reserved.max(self.buf.len() + self.buf.capacity());
        let offered = self.buf.capacity() - self.buf.len();
        (&mut self.buf, offered)
    }

    /// Done with `buf`, the buffer reads used so far: to the pool if it
    /// came from there and the timer that forgets the pool is set.
    fn give_back(&mut self, buf: BytesMut) {
        if std::mem::take(&mut self.pooled) && self.pool_timed {
            self.pool.lend(buf, self.arrived);
        }
    }

    /// When the connection's read timer must fire next, which the caller
    /// arms before each read: the frame under way must be whole, or the
    /// pool is to be given back.
    pub(crate) fn arm_timer(&mut self) -> Option<Instant> {
        self.pool_timed = self.pool.deadline().is_some();
        match (self.frame_deadline(), self.pool.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The read timer fired at `now`: gives the pool back if reads were
    /// quiet, and says whether the frame under way ran out of time.
    pub(crate) fn on_timer(&mut self, now: Instant) -> bool {
        if self.pool.on_timer(now) {
            // Its deadline is gone: freed when done with, not kept.
            self.pooled = false;
        }
        self.frame_deadline().is_some_and(|d| d <= now)
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
        self.buf.reserve(bytes.len().max(KEEP));
        self.pooled = false;
        self.reserved = self.buf.len() + self.buf.capacity();
        self.buf.extend_from_slice(bytes);
        self.filled(offered, bytes.len(), now);
    }

    /// `n` bytes were read into the buffer, which offered `offered`, at `now`.
    pub(crate) fn filled(&mut self, offered: usize, n: usize, now: Instant) {
        self.sizer.record(offered, n);
        self.last_full = n >= offered;
        self.arrived = now;
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
mod tests {
    use super::*;
    use crate::core::read_pool::QUIET;
    use bytes::BufMut;
    use drpc_proto::{FrameLimits, Header, Proto, RawProto};

    fn inbound(now: Instant) -> Inbound {
        Inbound::new(
            RawProto.framer(&FrameLimits::default().with_meta_len(64)),
            1024,
            Duration::from_secs(30),
            now,
        )
    }

    fn wire(msgs: &[Message]) -> Vec<u8> {
        let mut f = RawProto.framer(&FrameLimits::default().with_meta_len(usize::MAX));
        let mut out = BytesMut::new();
        for m in msgs {
            f.encode(m, &mut out).unwrap();
        }
        out.to_vec()
    }

    /// Feeds `bytes` as one read at `now`.
    fn feed(i: &mut Inbound, bytes: &[u8], now: Instant) {
        let (buf, offered) = i.room();
        buf.put_slice(bytes);
        i.filled(offered, bytes.len(), now);
    }

    #[test]
    fn frames_are_cut_whole_and_the_timer_runs_only_mid_frame() {
        let t = Instant::now();
        let mut i = inbound(t);
        let bytes = wire(&[
            Message::new(Header::push("/a"), vec![1]),
            Message::new(Header::push("/b"), vec![2]),
        ]);
        assert_eq!(i.frame_deadline(), None);
        feed(&mut i, &bytes[..10], t);
        assert!(i.next().unwrap().is_none());
        assert_eq!(i.frame_deadline(), Some(t + Duration::from_secs(30)));
        let later = t + Duration::from_secs(1);
        feed(&mut i, &bytes[10..], later);
        assert!(matches!(i.next().unwrap(), Some(Frame::Message(m)) if m.body[..] == [1]));
        assert!(matches!(i.next().unwrap(), Some(Frame::Message(m)) if m.body[..] == [2]));
        assert!(i.next().unwrap().is_none());
        assert_eq!(i.frame_deadline(), None, "between frames there is no timer");
        assert_eq!(i.arrived(), later);
        assert!(i.end_of_stream().is_ok());
    }

    #[test]
    fn a_stream_ending_mid_frame_and_a_stalled_frame_are_named() {
        let t = Instant::now();
        let mut i = inbound(t);
        feed(
            &mut i,
            &wire(&[Message::new(Header::push("/a"), vec![])])[..7],
            t,
        );
        assert!(i.next().unwrap().is_none());
        let err = i.end_of_stream().unwrap_err();
        assert!(err.message().contains("7 bytes unread"), "{err}");
        assert!(i.frame_timed_out().message().contains("7 bytes of a frame"));
    }

    #[test]
    fn oversize_meta_is_a_frame_of_its_own_and_reading_goes_on() {
        let t = Instant::now();
        let mut i = inbound(t);
        let mut big = Header::call(9, "/m");
        big.meta.insert("k", "v".repeat(100));
        let bytes = wire(&[
            Message::new(big, vec![]),
            Message::new(Header::push("/ok"), vec![]),
        ]);
        feed(&mut i, &bytes, t);
        match i.next().unwrap() {
            Some(Frame::Oversize {
                kind, seq, status, ..
            }) => {
                assert_eq!((kind, seq), (Kind::Call, 9));
                assert_eq!(status.code(), crate::values::Code::MESSAGE_TOO_LARGE);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(i.next().unwrap(), Some(Frame::Message(_))));
    }

    #[test]
    fn garbage_is_fatal() {
        let t = Instant::now();
        let mut i = inbound(t);
        feed(&mut i, &[0, 0, 0, 30, 9, 9, 9, 9], t);
        assert!(i.next().unwrap_err().is_fatal());
    }

    #[test]
    fn the_buffer_is_released_when_empty_and_read_room_grows_with_full_reads() {
        let t = Instant::now();
        let mut i = inbound(t);
        assert_eq!(i.capacity(), 0, "nothing is held before the first read");
        let (_, offered) = i.room();
        assert_eq!(offered, KEEP);
        i.filled(offered, offered, t);
        i.release_if_empty();
        assert_eq!(i.capacity(), KEEP, "a small buffer is kept to reuse");
        let (_, again) = i.room();
        i.filled(again, again, t);
        let (_, more) = i.room();
        assert!(more >= 2048, "full reads grow the next offer");
        i.release_if_empty();
        assert_eq!(i.capacity(), 0, "a larger buffer is released");
        // A partial frame is kept.
        feed(&mut i, &[0, 0], t);
        i.release_if_empty();
        assert!(i.capacity() > 0);
    }

    #[test]
    fn a_read_without_a_buffer_allocates_only_for_what_came() {
        let t = Instant::now();
        let mut i = inbound(t);
        assert_eq!(
            i.released_offer(512),
            None,
            "an offer over the reader's space"
        );
        let offered = i.released_offer(16 * 1024).expect("no buffer yet");
        assert_eq!(offered, 1024);
        let bytes = wire(&[
            Message::new(Header::push("/a"), vec![1]),
            Message::new(Header::push("/b"), vec![2; 2000]),
        ]);
        let cut = 200;
        i.filled_from(offered, &bytes[..cut], t);
        assert_eq!(i.capacity(), KEEP, "a small read: as much as may be kept");
        assert!(matches!(i.next(), Ok(Some(Frame::Message(m))) if m.body[..] == [1]));
        assert!(matches!(i.next(), Ok(None)));
        assert_eq!(
            i.released_offer(16 * 1024),
            None,
            "a partial frame is read into its buffer"
        );
        assert!(i.kept_room().is_none(), "nor is it reused as drained");
        feed(&mut i, &bytes[cut..], t);
        assert!(matches!(i.next(), Ok(Some(Frame::Message(m))) if m.body.len() == 2000));
        i.release_if_empty();
        assert_eq!(i.capacity(), 0, "a large one goes");
        assert!(i.released_offer(16 * 1024).is_some());
    }

    #[test]
    fn a_buffer_drained_by_its_frames_is_released_unless_small() {
        let t = Instant::now();
        let mut i = inbound(t);
        for (body, kept) in [(KEEP, 0), (100, KEEP)] {
            let bytes = wire(&[Message::new(Header::push("/a"), vec![1; body])]);
            i.filled_from(16 * 1024, &bytes, t);
            assert!(matches!(i.next(), Ok(Some(Frame::Message(_)))));
            assert!(matches!(i.next(), Ok(None)));
            i.release_if_empty();
            assert_eq!(i.capacity(), kept, "{body}-byte body");
        }
    }

    /// Reads `bytes` in reads of what the buffer offers, at `now`, and
    /// keeps every message they make; the buffers read into, by address.
    fn read_all(
        i: &mut Inbound,
        mut bytes: &[u8],
        now: Instant,
        msgs: &mut Vec<Frame>,
    ) -> Vec<usize> {
        let mut buffers = Vec::new();
        while !bytes.is_empty() {
            // As the connection does before each read.
            i.arm_timer();
            let (buf, offered) = i.room();
            let n = offered.min(bytes.len());
            buf.put_slice(&bytes[..n]);
            buffers.push(buf.as_ptr() as usize);
            i.filled(offered, n, now);
            bytes = &bytes[n..];
            while let Some(frame) = i.next().unwrap() {
                msgs.push(frame);
            }
        }
        buffers
    }

    #[test]
    fn full_size_reads_take_back_buffers_their_messages_left_until_reads_are_quiet() {
        let t = Instant::now();
        let mut i = inbound(t);
        while i.sizer.next < POOLED {
            let (_, offered) = i.room();
            i.filled(offered, offered, t);
        }
        i.release_if_empty();
        let big = |n| Message::new(Header::push("/a"), vec![n; 100_000]);
        let bytes = wire(&[big(1), big(2), big(3), big(4), big(5), big(6)]);
        let mut held = Vec::new();
        let first = read_all(&mut i, &bytes, t, &mut held);
        assert_eq!(held.len(), 6, "each frame whole, across buffers");
        assert!(matches!(&held[5], Frame::Message(m) if m.body[..] == [6; 100_000][..]));
        let later = t + Duration::from_millis(10);
        let again = read_all(&mut i, &bytes, later, &mut held);
        assert!(
            again.iter().all(|b| !first.contains(b)),
            "messages hold the first buffers: none is read into again"
        );
        held.clear();
        let kept = i.pool.len();
        let third = read_all(&mut i, &bytes, later, &mut held);
        assert!(
            third.iter().all(|b| first.contains(b) || again.contains(b)),
            "their messages gone, the same buffers take the next reads"
        );
        assert_eq!(i.pool.len(), kept, "each taken back, none new");
        assert_eq!(held.len(), 6);

        i.release_if_empty();
        assert_eq!(i.frame_deadline(), None);
        assert_eq!(i.arm_timer(), Some(later + QUIET), "the pool's time");
        assert!(!i.on_timer(later + QUIET - Duration::from_millis(1)));
        assert!(!i.pool.is_empty(), "not yet quiet");
        assert!(!i.on_timer(later + QUIET));
        assert!(i.pool.is_empty(), "quiet: the pool is given back");
        assert_eq!(i.arm_timer(), None, "and needs no timer");
        // A read that finds nothing then: with no timer set to forget it,
        // its buffer is freed, not kept.
        i.room();
        i.release_if_empty();
        assert!(i.pool.is_empty());
        drop(held);
    }

    #[test]
    fn a_frame_larger_than_any_read_gets_room_for_all_of_it_at_once() {
        let t = Instant::now();
        let mut i = inbound(t);
        let bytes = wire(&[Message::new(Header::push("/a"), vec![3; 600_000])]);
        let mut held = Vec::new();
        let buffers = read_all(&mut i, &bytes, t, &mut held);
        assert!(matches!(&held[..], [Frame::Message(m)] if m.body.len() == 600_000));
        assert!(
            buffers[1..].iter().all(|b| *b == buffers[1]),
            "one buffer from the second read on, never moved"
        );
    }

    #[test]
    fn a_kept_buffer_is_read_into_once_nothing_holds_its_frames() {
        let t = Instant::now();
        let mut i = inbound(t);
        let bytes = wire(&[Message::new(Header::push("/a"), vec![1; 100])]);
        i.filled_from(16 * 1024, &bytes, t);
        let Ok(Some(Frame::Message(held))) = i.next() else {
            panic!("a whole frame")
        };
        assert!(
            i.kept_room().is_none(),
            "its message still holds the buffer: reusing it would copy"
        );
        drop(held);
        let (buf, room) = i.kept_room().expect("the buffer is free again");
        assert_eq!(room, KEEP);
        buf.put_slice(&bytes);
        i.filled(room, bytes.len(), t);
        assert!(matches!(i.next(), Ok(Some(Frame::Message(m))) if m.body.len() == 100));
        let (buf, room) = i.kept_room().expect("free again");
        buf.put_slice(&vec![0; room]);
        i.filled(room, room, t);
        i.buf.clear();
        assert!(
            i.kept_room().is_none(),
            "after a full read more may wait: the sizer's offer, not 1 KiB"
        );
    }
}
