//! Full-size read buffers kept for reuse while a connection is busy.
//!
//! A message cut from a read buffer shares its memory, so a buffer lives
//! until its last message is dropped. When reads run at full size (a large
//! transfer), each read used to take a fresh buffer, and the allocator
//! gave the freed ones back to the system between bursts: the next burst
//! faulted every page in again, which cost more than the copy itself
//! (about 170,000 page faults per GiB). The pool keeps the buffers a
//! connection moved on from, and a read takes back the oldest whose
//! messages are all gone.
//!
//! What it holds beyond what messages hold is bounded twice: it never keeps
//! more than [`LENT_MOST`] buffers, and its reader forgets them all once
//! reads have been quiet for [`QUIET`] (see `Inbound::arm_timer`) or the
//! connection stops, so an idle connection holds none.

use bytes::BytesMut;
use std::collections::VecDeque;
use std::time::Duration;

/// The size of a pooled buffer: the reader's largest read.
pub(crate) const POOLED: usize = 256 * 1024;

/// The most buffers kept: 4 MiB of them. A reader that keeps pace holds a
/// few at a time, and a window's worth (16 MiB by default) would cost as
/// much again for each busy connection; in `stream_bench` 16 take the page
/// faults as low as 64 do.
pub(crate) const LENT_MOST: usize = 16;

/// How long reads may pause before the pool is given back.
pub(crate) const QUIET: Duration = Duration::from_millis(100);

/// Buffers of [`POOLED`] bytes a connection read into and moved on from.
#[derive(Default)]
pub(crate) struct ReadPool {
    /// Oldest first: messages are mostly dropped in the order they came.
    lent: VecDeque<BytesMut>,
}

impl ReadPool {
    /// A buffer of [`POOLED`] bytes, empty: one given back whose messages
    /// are all gone, or a new one.
    pub(crate) fn take(&mut self) -> BytesMut {
        // A buffer still shared with a message fails to reclaim.
        match self.lent.iter_mut().position(|b| b.try_reclaim(POOLED)) {
            Some(i) => self.lent.remove(i).expect("a position in the queue"),
            None => BytesMut::with_capacity(POOLED),
        }
    }

    /// Where the memory of `buf`, a buffer [`ReadPool::take`] gave, ends:
    /// the same when it comes back unless it was reallocated (then it is
    /// not one to keep).
    pub(crate) fn end_of(buf: &BytesMut) -> usize {
        buf.as_ptr() as usize + buf.capacity()
    }

    /// Keeps `buf`, a buffer [`ReadPool::take`] gave, whose unread bytes
    /// (if any) were copied elsewhere; the oldest kept goes when there are
    /// more than [`LENT_MOST`].
    pub(crate) fn lend(&mut self, mut buf: BytesMut) {
        buf.clear();
        self.lent.push_back(buf);
        if self.lent.len() > LENT_MOST {
            self.lent.pop_front();
        }
    }

    /// Forgets every buffer, each freed as its last message goes.
    pub(crate) fn forget(&mut self) {
        self.lent = VecDeque::new();
    }

    /// Whether it keeps no buffer.
    pub(crate) fn is_empty(&self) -> bool {
        self.lent.is_empty()
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
    /// messages, which the caller holds.
    fn read_and_cut(pool: &mut ReadPool, n: usize) -> (BytesMut, bytes::Bytes) {
        let mut buf = pool.take();
        buf.put_bytes(7, n);
        let msg = buf.split_to(n).freeze();
        (buf, msg)
    }

    #[test]
    fn a_buffer_is_reused_once_its_messages_are_gone_and_not_before() {
        let mut pool = ReadPool::default();
        let (buf, msg) = read_and_cut(&mut pool, 1000);
        let memory = msg.as_ptr();
        pool.lend(buf);
        let other = pool.take();
        assert_ne!(other.as_ptr(), memory, "its message still holds it");
        assert_eq!(pool.len(), 1, "and it stays in the pool");
        drop(msg);
        let again = pool.take();
        assert_eq!(again.as_ptr(), memory, "the same memory, from its start");
        assert_eq!((again.len(), again.capacity()), (0, POOLED));
        assert_eq!(pool.len(), 0);
    }

    #[test]
    fn the_oldest_free_buffer_is_taken_first() {
        let mut pool = ReadPool::default();
        let (a, held) = read_and_cut(&mut pool, 10);
        let (b, b_msg) = read_and_cut(&mut pool, 10);
        let (c, c_msg) = read_and_cut(&mut pool, 10);
        let (b_at, c_at) = (b_msg.as_ptr(), c_msg.as_ptr());
        for buf in [a, b, c] {
            pool.lend(buf);
        }
        drop((c_msg, b_msg));
        assert_eq!(
            pool.take().as_ptr(),
            b_at,
            "the first free one, past one held"
        );
        assert_eq!(pool.take().as_ptr(), c_at);
        assert_eq!(pool.len(), 1, "the held one waits");
        drop(held);
    }

    #[test]
    fn it_keeps_a_bounded_number_and_forgets_them_when_told() {
        let mut pool = ReadPool::default();
        for _ in 0..LENT_MOST + 5 {
            let buf = pool.take();
            pool.lend(buf);
            assert!(pool.len() <= 1, "a free buffer is reused, not added");
        }
        let held: Vec<_> = (0..LENT_MOST + 5)
            .map(|_| {
                let (buf, msg) = read_and_cut(&mut pool, 10);
                pool.lend(buf);
                msg
            })
            .collect();
        assert_eq!(pool.len(), LENT_MOST, "the oldest held ones went");
        pool.forget();
        assert!(pool.is_empty());
        drop(held);
    }

    #[test]
    fn a_buffer_keeps_its_end_unless_reallocated() {
        let mut pool = ReadPool::default();
        let (mut buf, msg) = read_and_cut(&mut pool, 100);
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
