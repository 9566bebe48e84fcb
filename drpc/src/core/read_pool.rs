//! Read buffers kept for reuse while a connection is busy.
//!
//! A message cut from a read buffer shares its memory, so a buffer lives
//! until its last message is dropped. When reads run at full size (a large
//! transfer), each read used to take a fresh buffer, and the allocator
//! gave the freed ones back to the system between bursts: the next burst
//! faulted every page in again, which cost more than the copy itself
//! (60,000 to 100,000 page faults per GiB moved). The pool keeps the
//! buffers a connection moved on from, and a read takes back the smallest
//! that fits whose messages are all gone. Buffers come in multiples of
//! [`POOLED`] bytes: a frame larger than a read gets one large enough for
//! all of it.
//!
//! What it holds beyond what messages hold is bounded twice: it never keeps
//! more than [`LENT_BYTES`], and its reader forgets it all [`QUIET`] after
//! it last used it (see `Inbound::arm_timer`) or when the connection stops,
//! so an idle connection holds none.

use bytes::BytesMut;
use std::collections::VecDeque;
use std::time::Duration;

/// The size of a full-size read's buffer, and the unit of the others.
pub(crate) const POOLED: usize = 256 * 1024;

/// The most bytes of buffers kept: 16 MiB, what a stream's default window
/// may hold at once (what it keeps free is bounded more tightly: see
/// [`ReadPool::take`]). In `stream_bench`, 4 MiB left twice the page
/// faults of 16.
pub(crate) const LENT_BYTES: usize = 16 << 20;

/// How long after its last use the pool is given back.
pub(crate) const QUIET: Duration = Duration::from_millis(100);

/// Buffers a connection read into and moved on from, each with its size.
#[derive(Default)]
pub(crate) struct ReadPool {
    /// Oldest first: messages are mostly dropped in the order they came.
    lent: VecDeque<(BytesMut, usize)>,
    /// The sizes of those, added up.
    bytes: usize,
}

impl ReadPool {
    /// An empty buffer of at least `least` bytes, and its size: the
    /// smallest given back whose messages are all gone (the oldest of
    /// those), or a new one of the next multiple of [`POOLED`] bytes.
    ///
    /// A new one is made only when none free is large enough, and the free
    /// ones (all too small) go then: so what the pool keeps free is never
    /// more than what its connection's messages held at once (besides the
    /// buffer being read into).
    pub(crate) fn take(&mut self, least: usize) -> (BytesMut, usize) {
        // (position, size)
        let mut best: Option<(usize, usize)> = None;
        for (i, (buf, size)) in self.lent.iter_mut().enumerate() {
            // A buffer still shared with a message fails to reclaim; one
            // reclaimed stays so, whole, if it is not the one taken.
            if buf.try_reclaim(*size) && *size >= least && best.is_none_or(|(_, b)| b > *size) {
                best = Some((i, *size));
            }
        }
        if let Some((i, _)) = best {
            return self.remove(i);
        }
        // Every free one is too small: reclaimed above, so this finds them
        // without a uniqueness check.
        self.lent.retain_mut(|(buf, size)| !buf.try_reclaim(*size));
        self.bytes = self.lent.iter().map(|(_, size)| size).sum();
        let buf = BytesMut::with_capacity(least.max(1).div_ceil(POOLED) * POOLED);
        let size = buf.capacity();
        (buf, size)
    }

    fn remove(&mut self, i: usize) -> (BytesMut, usize) {
        let (buf, size) = self.lent.remove(i).expect("a position in the queue");
        self.bytes -= size;
        (buf, size)
    }

    /// Where the memory of `buf`, a buffer [`ReadPool::take`] gave, ends:
    /// the same when it comes back unless it was reallocated (then it is
    /// not one to keep).
    pub(crate) fn end_of(buf: &BytesMut) -> usize {
        buf.as_ptr() as usize + buf.capacity()
    }

    /// Keeps `buf`, a buffer of `size` bytes [`ReadPool::take`] gave, whose
    /// unread bytes (if any) were copied elsewhere; the oldest kept go
    /// while there are more than [`LENT_BYTES`], and one larger than that
    /// is not kept at all.
    pub(crate) fn lend(&mut self, mut buf: BytesMut, size: usize) {
        if size > LENT_BYTES {
            return;
        }
        buf.clear();
        self.lent.push_back((buf, size));
        self.bytes += size;
        while self.bytes > LENT_BYTES {
            let (_, size) = self.lent.pop_front().expect("bytes kept");
            self.bytes -= size;
        }
    }

    /// Forgets every buffer, each freed as its last message goes.
    pub(crate) fn forget(&mut self) {
        self.lent = VecDeque::new();
        self.bytes = 0;
    }

    /// Whether it keeps no buffer.
    pub(crate) fn is_empty(&self) -> bool {
        self.lent.is_empty()
    }

    /// How many bytes of buffers are kept.
    #[cfg(test)]
    pub(crate) fn kept(&self) -> usize {
        self.bytes
    }

    /// How many buffers are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    /// A pooled buffer that read `n` bytes and had them all cut out as
    /// messages, which the caller holds; the buffer, its size, the message.
    fn read_and_cut(pool: &mut ReadPool, n: usize) -> (BytesMut, usize, bytes::Bytes) {
        let (mut buf, size) = pool.take(POOLED);
        buf.put_bytes(7, n);
        let msg = buf.split_to(n).freeze();
        (buf, size, msg)
    }

    #[test]
    fn a_buffer_is_reused_once_its_messages_are_gone_and_not_before() {
        let mut pool = ReadPool::default();
        let (buf, size, msg) = read_and_cut(&mut pool, 1000);
        assert_eq!(size, POOLED);
        let memory = msg.as_ptr();
        pool.lend(buf, size);
        let (other, _) = pool.take(POOLED);
        assert_ne!(other.as_ptr(), memory, "its message still holds it");
        assert_eq!(pool.len(), 1, "and it stays in the pool");
        drop(msg);
        let (again, size) = pool.take(POOLED);
        assert_eq!(again.as_ptr(), memory, "the same memory, from its start");
        assert_eq!((again.len(), again.capacity(), size), (0, POOLED, POOLED));
        assert_eq!(pool.len(), 0);
    }

    #[test]
    fn the_smallest_free_buffer_large_enough_is_taken_the_oldest_first() {
        let mut pool = ReadPool::default();
        let (a, a_size, held) = read_and_cut(&mut pool, 10);
        let (b, b_size, b_msg) = read_and_cut(&mut pool, 10);
        let (c, c_size, c_msg) = read_and_cut(&mut pool, 10);
        let (b_at, c_at) = (b_msg.as_ptr(), c_msg.as_ptr());
        let (big, big_size) = pool.take(POOLED + 1);
        assert_eq!((big.capacity(), big_size), (2 * POOLED, 2 * POOLED));
        let big_at = big.as_ptr();
        pool.lend(big, big_size);
        pool.lend(a, a_size);
        pool.lend(b, b_size);
        pool.lend(c, c_size);
        drop((c_msg, b_msg));
        let (b, _) = pool.take(10);
        assert_eq!(b.as_ptr(), b_at, "past the older larger one, and one held");
        let (big, _) = pool.take(POOLED + 1);
        assert_eq!(big.as_ptr(), big_at, "past one too small");
        assert_eq!(pool.take(10).0.as_ptr(), c_at);
        assert_eq!(pool.len(), 1, "the held one waits");
        drop(held);
    }

    #[test]
    fn a_new_buffer_is_made_only_when_every_free_one_is_too_small_which_go() {
        let mut pool = ReadPool::default();
        let (a, a_size, held) = read_and_cut(&mut pool, 10);
        let (b, b_size) = pool.take(POOLED);
        pool.lend(a, a_size);
        pool.lend(b, b_size);
        let (large, size) = pool.take(3 * POOLED);
        assert_eq!(size, 3 * POOLED);
        assert_eq!(
            pool.len(),
            1,
            "the free one too small went; the held one stays"
        );
        // One larger than all the pool may keep is not kept.
        pool.lend(BytesMut::with_capacity(LENT_BYTES + 1), LENT_BYTES + 1);
        pool.lend(large, size);
        assert_eq!(pool.len(), 2);
        drop(held);
    }

    #[test]
    fn it_keeps_a_bounded_size_and_forgets_it_when_told() {
        let mut pool = ReadPool::default();
        for _ in 0..100 {
            let (buf, size) = pool.take(POOLED);
            pool.lend(buf, size);
            assert!(pool.len() <= 1, "a free buffer is reused, not added");
        }
        let most = LENT_BYTES / POOLED;
        let held: Vec<_> = (0..most + 5)
            .map(|_| {
                let (buf, size, msg) = read_and_cut(&mut pool, 10);
                pool.lend(buf, size);
                msg
            })
            .collect();
        assert_eq!(pool.len(), most, "the oldest held ones went");
        let (buf, size) = pool.take(8 * POOLED);
        pool.lend(buf, size);
        assert_eq!(pool.len(), most - 7, "by size, not count");
        pool.forget();
        assert!(pool.is_empty());
        drop(held);
    }

    #[test]
    fn a_buffer_keeps_its_end_unless_reallocated() {
        let mut pool = ReadPool::default();
        let (mut buf, _, msg) = read_and_cut(&mut pool, 100);
        let end = ReadPool::end_of(&buf);
        buf.put_bytes(1, 50);
        let _ = buf.split_to(50);
        buf.clear();
        assert_eq!(
            ReadPool::end_of(&buf),
            end,
            "cut and cleared: the same memory"
        );
        buf.reserve(POOLED);
        assert_ne!(ReadPool::end_of(&buf), end, "grown: other memory");
        drop(msg);
    }
}
