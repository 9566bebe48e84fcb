//! The writing side of a connection, without the writing: messages are
//! encoded as they are sent, into batches the writer hands to the socket
//! one system call (and, on QUIC, one stream) each.
//!
//! A batch grows until it holds `batch` bytes; a message whose body alone
//! is that large goes in a batch of its own, so the small messages queued
//! before it do not wait for all of its bytes. When the writer has taken
//! everything, the buffer goes with the batch; once written, a small one
//! comes back ([`Outbound::recycle`]) for the next, so a connection that
//! sends a message at a time allocates nothing, and an idle one holds at
//! most that small buffer.

use bytes::{Bytes, BytesMut};
use drpc_proto::{Framer, Head, Kind, Message, ProtoError, WriteBody};
use std::collections::VecDeque;

/// Bytes ready for one write, and the calls whose frames they hold.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) bytes: Bytes,
    /// A large body written right after `bytes` from where it lies (its
    /// frame's head is the end of `bytes`); usually empty.
    pub(crate) tail: Bytes,
    /// Seqs of the calls in it: if the write fails, they fail with 104
    /// (their bytes never left).
    pub(crate) calls: Vec<u32>,
}

/// One connection's outgoing bytes.
pub(crate) struct Outbound {
    framer: Box<dyn Framer>,
    batch: usize,
    /// The batch being gathered.
    buf: BytesMut,
    buf_calls: Vec<u32>,
    /// Batches already cut, oldest first.
    sealed: VecDeque<Batch>,
    /// Messages encoded and not yet taken by the writer.
    queued: usize,
    limit: usize,
    /// A written batch's buffer, emptied, for the next batch.
    spare: Option<(BytesMut, Vec<u32>)>,
    /// The size of the latest batch cut from `buf`: a new buffer starts
    /// with room for about as much, so a busy connection's batches do not
    /// grow by doubling (and copying) every time.
    last_batch: usize,
}

impl Outbound {
    /// Batches of about `batch` bytes; at most `limit` messages wait for
    /// the writer (past that, [`Outbound::has_room`] is false and senders
    /// wait, so a peer that stops reading slows its callers rather than
    /// growing memory).
    pub(crate) fn new(framer: Box<dyn Framer>, batch: usize, limit: usize) -> Self {
        Self {
            framer,
            batch: batch.max(1),
            buf: BytesMut::new(),
            buf_calls: Vec::new(),
            sealed: VecDeque::new(),
            queued: 0,
            limit: limit.max(1),
            spare: None,
            last_batch: 0,
        }
    }

    /// Whether another message may be queued now.
    pub(crate) fn has_room(&self) -> bool {
        self.queued < self.limit
    }

    /// Encodes `msg` after everything queued, whether or not there is room
    /// (senders check [`Outbound::has_room`] first; replies and notices,
    /// which must not wait, do not). Nothing is queued on error.
    pub(crate) fn push(&mut self, msg: &Message) -> Result<(), ProtoError> {
        if msg.body.len() >= self.batch {
            // A batch of its own, after what is gathered so far; the body
            // goes out from where it lies when the framer allows.
            let mut own = BytesMut::new();
            let tail =
                match self
                    .framer
                    .encode_head(&msg.header.head(), msg.body.len(), &mut own)?
                {
                    true => msg.body.clone(),
                    false => {
                        self.framer.encode(msg, &mut own)?;
                        Bytes::new()
                    }
                };
            self.seal();
            self.sealed.push_back(Batch {
                bytes: own.freeze(),
                tail,
                calls: calls_of(msg.header.kind, msg.header.seq)
                    .into_iter()
                    .collect(),
            });
            self.queued += 1;
            return Ok(());
        }
        let body = &msg.body;
        self.push_with(&msg.header.head(), &mut |dst| {
            dst.extend_from_slice(body);
            Ok(())
        })
    }

    /// Encodes a message whose body `write_body` writes in place, after
    /// everything queued. A frame that turns out at least a batch long is
    /// cut into a batch of its own, as in [`Outbound::push`].
    pub(crate) fn push_with(
        &mut self,
        head: &Head<'_>,
        write_body: WriteBody<'_>,
    ) -> Result<(), ProtoError> {
        if self.buf.capacity() == 0 {
            // Small while messages go one at a time (an allocation the
            // allocator serves from its per-thread cache, or the spare);
            // half as much again as the last batch when they come in
            // batches.
            let room = (self.last_batch + self.last_batch / 2)
                .clamp(self.batch.min(FIRST_ROOM), self.batch.max(FIRST_ROOM));
            match self.spare.take() {
                Some((buf, calls)) if buf.capacity() >= room => {
                    (self.buf, self.buf_calls) = (buf, calls)
                }
                _ => self.buf.reserve(room),
            }
        }
        let start = self.buf.len();
        // A body writer that panics (a user's `Serialize`) must not leave
        // half a frame behind: the stream would be out of step.
        let guard = Truncate {
            buf: &mut self.buf,
            to: start,
        };
        self.framer.encode_with(head, write_body, guard.buf)?;
        std::mem::forget(guard);
        let calls = calls_of(head.kind, head.seq);
        if start > 0 && self.buf.len() - start >= self.batch {
            let own = self.buf.split_off(start);
            self.seal();
            self.sealed.push_back(Batch {
                bytes: own.freeze(),
                tail: Bytes::new(),
                calls: calls.into_iter().collect(),
            });
        } else {
            self.buf_calls.extend(calls);
            if self.buf.len() >= self.batch {
                self.seal();
            }
        }
        self.queued += 1;
        Ok(())
    }

    /// Cuts what is gathered into a batch of its own.
    fn seal(&mut self) {
        if !self.buf.is_empty() {
            let batch = self.cut();
            self.sealed.push_back(batch);
        }
    }

    /// What is gathered, as a batch. (Split rather than taken whole: the
    /// buffer is then shared-kind once and for all, and its trips through
    /// `recycle` allocate nothing.)
    fn cut(&mut self) -> Batch {
        self.last_batch = self.buf.len();
        Batch {
            bytes: self.buf.split().freeze(),
            tail: Bytes::new(),
            calls: std::mem::take(&mut self.buf_calls),
        }
    }

    /// The next batch to write, oldest first.
    pub(crate) fn next_batch(&mut self) -> Option<Batch> {
        let batch = match self.sealed.pop_front() {
            Some(b) => b,
            None if self.buf.is_empty() => return None,
            None => self.cut(),
        };
        if self.sealed.is_empty() && self.buf.is_empty() {
            // Everything is taken: the writer's room is the space for new
            // senders, and a drained connection holds no buffer of its own.
            self.queued = 0;
            self.buf = BytesMut::new();
            if self.sealed.capacity() > 8 {
                // Grown by a run of large bodies (a stream's window of
                // them: 20 KiB of queue), which an idle connection keeps
                // no more than a buffer.
                self.sealed = VecDeque::new();
            }
        }
        Some(batch)
    }

    /// Takes back the buffer of a batch that has been written, for the next
    /// batch, if it is small (at most [`FIRST_ROOM`]) and nothing else
    /// holds it; a larger one is freed, so an idle connection keeps little.
    pub(crate) fn recycle(&mut self, batch: Batch) {
        if self.spare.is_some() || batch.bytes.len() > FIRST_ROOM {
            return;
        }
        let Ok(mut buf) = batch.bytes.try_into_mut() else {
            return;
        };
        if buf.capacity() <= FIRST_ROOM {
            buf.clear();
            let mut calls = batch.calls;
            calls.clear();
            self.spare = Some((buf, calls));
        }
    }

    /// Messages queued and not yet taken.
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// Whether nothing waits for the writer.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.sealed.is_empty() && self.buf.is_empty()
    }

    /// The bytes of buffer held now.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        let spare = self.spare.as_ref().map_or(0, |(b, _)| b.capacity());
        spare
            + self.buf.capacity()
            + self
                .sealed
                .iter()
                .map(|b| b.bytes.len() + b.tail.len())
                .sum::<usize>()
    }
}

/// The room a new batch starts with: a small message's frame fits, and
/// allocations this small are the cheapest (glibc serves up to 1,032
/// bytes from a per-thread cache).
const FIRST_ROOM: usize = 1024;

/// Cuts a buffer back to where a frame started, unless forgotten.
struct Truncate<'a> {
    buf: &'a mut BytesMut,
    to: usize,
}

impl Drop for Truncate<'_> {
    fn drop(&mut self) {
        self.buf.truncate(self.to);
    }
}

/// The seq to fail if the frame's bytes never leave: calls only.
fn calls_of(kind: Kind, seq: u32) -> Option<u32> {
    (kind == Kind::Call).then_some(seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use drpc_proto::{FrameLimits, Header, Proto, RawProto};

    fn outbound(batch: usize, limit: usize) -> Outbound {
        Outbound::new(RawProto.framer(&FrameLimits::default()), batch, limit)
    }

    fn decode_all(bytes: &[u8]) -> Vec<Message> {
        let mut f = RawProto.framer(&FrameLimits::default());
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = f.decode(&mut buf).unwrap() {
            out.push(m);
        }
        assert!(buf.is_empty());
        out
    }

    #[test]
    fn small_messages_share_a_batch_and_the_order_is_kept() {
        let mut o = outbound(1024, 100);
        o.push(&Message::new(Header::call(1, "/a"), vec![1; 10]))
            .unwrap();
        o.push(&Message::new(Header::push("/p"), vec![2; 10]))
            .unwrap();
        o.push(&Message::new(Header::call(2, "/a"), vec![3; 10]))
            .unwrap();
        assert_eq!(o.queued(), 3);
        let b = o.next_batch().unwrap();
        assert_eq!(b.calls, vec![1, 2]);
        let msgs = decode_all(&b.bytes);
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[1].header.service_method, "/p");
        assert!(o.next_batch().is_none());
        assert_eq!(o.queued(), 0);
        assert_eq!(o.capacity(), 0, "a drained connection holds no buffer");
    }

    #[test]
    fn a_written_small_buffer_serves_the_next_batch() {
        let mut o = outbound(64 * 1024, 100);
        o.push(&Message::new(Header::call(1, "/a"), vec![1; 600]))
            .unwrap();
        let first = o.next_batch().unwrap();
        let at = first.bytes.as_ptr();
        o.recycle(first);
        assert!(o.capacity() > 0, "the buffer came back");
        o.push(&Message::new(Header::call(2, "/a"), vec![2; 600]))
            .unwrap();
        let second = o.next_batch().unwrap();
        assert_eq!(second.bytes.as_ptr(), at, "the same buffer, not a new one");
        assert_eq!(second.calls, vec![2]);
        assert_eq!(decode_all(&second.bytes)[0].header.seq, 2);
    }

    #[test]
    fn a_busy_connections_next_buffer_starts_as_large_as_its_last_batch() {
        let mut o = outbound(64 * 1024, 1000);
        for seq in 1..=20 {
            o.push(&Message::new(Header::call(seq, "/m"), vec![0; 600]))
                .unwrap();
        }
        let busy = o.next_batch().unwrap().bytes.len();
        assert!(busy > 12_000);
        o.push(&Message::new(Header::call(21, "/m"), vec![0; 600]))
            .unwrap();
        // Another batch as large fits without growing (and copying).
        assert!(o.buf.capacity() >= busy, "{} < {busy}", o.buf.capacity());
        // One message at a time again: the room shrinks back to small.
        o.next_batch().unwrap();
        o.push(&Message::new(Header::call(22, "/m"), vec![0; 600]))
            .unwrap();
        o.next_batch().unwrap();
        o.push(&Message::new(Header::call(23, "/m"), vec![0; 600]))
            .unwrap();
        assert_eq!(o.buf.capacity(), FIRST_ROOM);
    }

    #[test]
    fn a_large_body_goes_alone_after_what_came_before() {
        let mut o = outbound(100, 100);
        o.push(&Message::new(Header::push("/small"), vec![0; 5]))
            .unwrap();
        o.push(&Message::new(Header::call(7, "/big"), vec![0; 500]))
            .unwrap();
        o.push(&Message::new(Header::push("/after"), vec![0; 5]))
            .unwrap();
        let batches: Vec<Batch> = std::iter::from_fn(|| o.next_batch()).collect();
        // The large body is written from where it lies, after its head.
        assert_eq!(batches[1].tail.len(), 500);
        let sizes: Vec<(usize, Vec<u32>)> = batches
            .into_iter()
            .map(|b| {
                let whole = [&b.bytes[..], &b.tail[..]].concat();
                (decode_all(&whole).len(), b.calls)
            })
            .collect();
        assert_eq!(sizes, vec![(1, vec![]), (1, vec![7]), (1, vec![])]);
    }

    #[test]
    fn batches_are_cut_at_the_batch_size() {
        let mut o = outbound(200, 1000);
        for seq in 1..=20 {
            o.push(&Message::new(Header::call(seq, "/m"), vec![0; 40]))
                .unwrap();
        }
        let batches: Vec<Batch> = std::iter::from_fn(|| o.next_batch()).collect();
        assert!(batches.len() > 1);
        for b in &batches[..batches.len() - 1] {
            // Cut once a frame takes it to the size: at most one frame over.
            assert!(b.bytes.len() >= 200 && b.bytes.len() < 200 + 70);
        }
        let calls: Vec<u32> = batches.iter().flat_map(|b| b.calls.clone()).collect();
        assert_eq!(calls, (1..=20).collect::<Vec<_>>());
    }

    #[test]
    fn a_drained_connection_gives_back_a_queue_large_bodies_grew() {
        let mut o = outbound(100, 1000);
        for _ in 0..100 {
            o.push(&Message::new(Header::push("/item"), vec![0; 500]))
                .unwrap();
        }
        assert!(o.sealed.capacity() >= 100);
        while o.next_batch().is_some() {}
        assert!(o.sealed.capacity() <= 8, "{}", o.sealed.capacity());
    }

    #[test]
    fn the_limit_counts_messages_until_the_writer_takes_them() {
        let mut o = outbound(1024, 2);
        let m = Message::new(Header::push("/p"), vec![]);
        o.push(&m).unwrap();
        assert!(o.has_room());
        o.push(&m).unwrap();
        assert!(!o.has_room());
        // A notice or a reply may still be forced in.
        o.push(&m).unwrap();
        o.next_batch().unwrap();
        assert!(o.has_room());
    }

    #[test]
    fn a_message_that_cannot_be_encoded_queues_nothing() {
        let mut o = Outbound::new(RawProto.framer(&FrameLimits::new(64)), 1024, 10);
        let err = o
            .push(&Message::new(Header::call(1, "/m"), vec![0; 100]))
            .unwrap_err();
        assert!(matches!(err, ProtoError::FrameTooLarge { .. }));
        assert!(o.is_empty());
        assert_eq!(o.queued(), 0);
    }
}
