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
//! more than [`LENT_MOST`] buffers, and it forgets them all once reads have
//! been quiet for [`QUIET`], so an idle connection holds none.

use bytes::BytesMut;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

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
    /// When the pool is forgotten unless a read uses it again.
    until: Option<Instant>,
}

impl ReadPool {
    /// A buffer of [`POOLED`] bytes, empty: one given back whose messages
    /// are all gone, or a new one. `now` is the time of the latest read.
    pub(crate) fn take(&mut self, now: Instant) -> BytesMut {
        self.until = Some(now + QUIET);
        // A buffer still shared with a message fails to reclaim; one
        // reclaimed larger (a framer grew it) is not the size kept.
        while let Some(i) = self.lent.iter_mut().position(|b| b.try_reclaim(POOLED)) {
            let buf = self.lent.remove(i).expect("a position in the queue");
            if buf.capacity() == POOLED {
                return buf;
            }
        }
        BytesMut::with_capacity(POOLED)
    }

    /// Keeps `buf`, a buffer [`ReadPool::take`] gave, whose unread bytes
    /// (if any) were copied elsewhere; the oldest kept goes when there are
    /// more than [`LENT_MOST`].
    pub(crate) fn lend(&mut self, mut buf: BytesMut, now: Instant) {
        buf.clear();
        self.lent.push_back(buf);
        if self.lent.len() > LENT_MOST {
            self.lent.pop_front();
        }
        self.until = Some(now + QUIET);
    }

    /// When the pool is to be forgotten, if it gave or took a buffer since
    /// it last was: a timer must fire then.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.until
    }

    /// Forgets every buffer when reads have been quiet since the deadline
    /// (each is freed as its last message goes); true when it did, and a
    /// buffer taken earlier is not to come back.
    pub(crate) fn on_timer(&mut self, now: Instant) -> bool {
        let quiet = self.until.is_some_and(|t| t <= now);
        if quiet {
            self.lent = VecDeque::new();
            self.until = None;
        }
        quiet
    }

    /// Whether it keeps no buffer.
    #[cfg(test)]
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
    fn read_and_cut(pool: &mut ReadPool, n: usize, now: Instant) -> (BytesMut, bytes::Bytes) {
        let mut buf = pool.take(now);
        buf.put_bytes(7, n);
        let msg = buf.split_to(n).freeze();
        (buf, msg)
    }

    #[test]
    fn a_buffer_is_reused_once_its_messages_are_gone_and_not_before() {
        let t = Instant::now();
        let mut pool = ReadPool::default();
        let (buf, msg) = read_and_cut(&mut pool, 1000, t);
        let memory = msg.as_ptr();
        pool.lend(buf, t);
        let other = pool.take(t);
        assert_ne!(other.as_ptr(), memory, "its message still holds it");
        assert_eq!(pool.len(), 1, "and it stays in the pool");
        drop(msg);
        let again = pool.take(t);
        assert_eq!(again.as_ptr(), memory, "the same memory, from its start");
        assert_eq!((again.len(), again.capacity()), (0, POOLED));
        assert_eq!(pool.len(), 0);
    }

    #[test]
    fn the_oldest_free_buffer_is_taken_first() {
        let t = Instant::now();
        let mut pool = ReadPool::default();
        let (a, held) = read_and_cut(&mut pool, 10, t);
        let (b, b_msg) = read_and_cut(&mut pool, 10, t);
        let (c, c_msg) = read_and_cut(&mut pool, 10, t);
        let (b_at, c_at) = (b_msg.as_ptr(), c_msg.as_ptr());
        for buf in [a, b, c] {
            pool.lend(buf, t);
        }
        drop((c_msg, b_msg));
        assert_eq!(
            pool.take(t).as_ptr(),
            b_at,
            "the first free one, past one held"
        );
        assert_eq!(pool.take(t).as_ptr(), c_at);
        assert_eq!(pool.len(), 1, "the held one waits");
        drop(held);
    }

    #[test]
    fn it_keeps_a_bounded_number_and_forgets_them_after_a_quiet_time() {
        let t = Instant::now();
        let mut pool = ReadPool::default();
        assert_eq!(pool.deadline(), None, "an unused pool needs no timer");
        for _ in 0..LENT_MOST + 5 {
            let buf = pool.take(t);
            pool.lend(buf, t);
            assert!(pool.len() <= 1, "a free buffer is reused, not added");
        }
        let held: Vec<_> = (0..LENT_MOST + 5)
            .map(|_| {
                let (buf, msg) = read_and_cut(&mut pool, 10, t);
                pool.lend(buf, t);
                msg
            })
            .collect();
        assert_eq!(pool.len(), LENT_MOST);
        let later = t + Duration::from_millis(30);
        pool.take(later);
        assert_eq!(pool.deadline(), Some(later + QUIET), "a read moves it on");
        assert!(!pool.on_timer(later + QUIET - Duration::from_millis(1)));
        assert_eq!(pool.len(), LENT_MOST);
        assert!(pool.on_timer(later + QUIET));
        assert!(pool.is_empty(), "quiet: all forgotten");
        assert_eq!(pool.deadline(), None);
        drop(held);
    }
}
