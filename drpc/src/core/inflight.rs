//! The calls this side made that wait for a reply, as plain data.
//!
//! Each entry is a call's seq, its deadline, and either the waiter to wake
//! (whatever the runtime keeps for that: a task's waker) or the outcome
//! that ended the wait. An outcome stays in the entry until the caller
//! collects it, so its seq is not reused while anyone could still mistake a
//! reply for it, and no channel or allocation is needed per call.
//!
//! Deadlines need no timer per call: the table remembers a time at or
//! before its earliest deadline, and the runtime runs [`InFlight::expire`]
//! when that time comes. A new call moves that time only when its deadline
//! is earlier, which calls that share a timeout never are.

use crate::values::Status;
use drpc_proto::Message;
use rustc_hash::FxHashMap;
use std::time::Instant;

/// How a call's wait ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The peer replied (with any status). Boxed: the table's entries stay
    /// small, and the reply travels to its caller as a pointer.
    Reply(Box<Message>),
    /// The call failed on this side: its connection was lost, its bytes
    /// could not be written, a plugin refused its reply.
    Failed(Status),
    /// Its deadline passed first.
    Expired,
}

enum Entry<W> {
    Waiting {
        waiter: Option<W>,
        deadline: Instant,
    },
    Done(Outcome),
}

/// What [`InFlight::complete`] did.
pub(crate) enum Completed<W> {
    /// The call was waiting: wake this (if it registered a waiter).
    Wake(Option<W>),
    /// No call waits for that seq (it gave up, or never was): the outcome
    /// is dropped.
    NotWaiting,
}

/// The table of waiting calls of one session.
pub(crate) struct InFlight<W> {
    calls: FxHashMap<u32, Entry<W>>,
    next_seq: u32,
    /// A seq no call may take (see [`InFlight::reserve`]).
    reserved: Option<u32>,
    /// At or before the earliest deadline of a waiting call: when the
    /// runtime's timer must next run [`InFlight::expire`].
    wake_at: Option<Instant>,
}

impl<W> Default for InFlight<W> {
    fn default() -> Self {
        Self {
            calls: FxHashMap::default(),
            next_seq: 1,
            reserved: None,
            wake_at: None,
        }
    }
}

impl<W> InFlight<W> {
    /// Registers a call that waits until `deadline` and returns its seq,
    /// and whether the timer must be set earlier for it.
    pub(crate) fn start(&mut self, deadline: Instant) -> (u32, bool) {
        let seq = self.next_free();
        (seq, self.insert(seq, deadline))
    }

    /// The seq the next call gets, without registering it.
    ///
    /// Seq 0 is never used (a reply with seq 0 is a notice); after the
    /// count wraps, seqs still in the table are skipped, so a late reply
    /// can never reach another call.
    pub(crate) fn next_free(&mut self) -> u32 {
        loop {
            let seq = self.next_seq;
            if seq != 0 && !self.calls.contains_key(&seq) && self.reserved != Some(seq) {
                return seq;
            }
            self.next_seq = self.next_seq.wrapping_add(1);
        }
    }

    /// A seq for a call whose answer is not waited for here (the hello):
    /// it is not registered, and no call gets it until
    /// [`InFlight::unreserve`], even after the count wraps.
    pub(crate) fn reserve(&mut self) -> u32 {
        let seq = self.next_free();
        self.next_seq = seq.wrapping_add(1);
        self.reserved = Some(seq);
        seq
    }

    /// The reserved seq's answer came: it may be used again.
    pub(crate) fn unreserve(&mut self) {
        self.reserved = None;
    }

    /// Registers call `seq` (from [`InFlight::next_free`]), waiting until
    /// `deadline`; true when the timer must be set earlier for it.
    pub(crate) fn insert(&mut self, seq: u32, deadline: Instant) -> bool {
        self.next_seq = seq.wrapping_add(1);
        self.calls.insert(
            seq,
            Entry::Waiting {
                waiter: None,
                deadline,
            },
        );
        let earlier = self.wake_at.is_none_or(|at| deadline < at);
        if earlier {
            self.wake_at = Some(deadline);
        }
        earlier
    }

    /// The outcome of call `seq` if its wait has ended (the entry is then
    /// gone); otherwise `register` may store or refresh its waiter.
    pub(crate) fn poll(
        &mut self,
        seq: u32,
        register: impl FnOnce(&mut Option<W>),
    ) -> Option<Outcome> {
        match self.calls.get_mut(&seq)? {
            Entry::Waiting { waiter, .. } => {
                register(waiter);
                None
            }
            Entry::Done(_) => match self.calls.remove(&seq) {
                Some(Entry::Done(outcome)) => Some(outcome),
                _ => unreachable!("matched Done above"),
            },
        }
    }

    /// Ends the wait of call `seq` with `outcome`.
    pub(crate) fn complete(&mut self, seq: u32, outcome: Outcome) -> Completed<W> {
        match self.calls.get_mut(&seq) {
            Some(entry @ Entry::Waiting { .. }) => {
                let Entry::Waiting { waiter, .. } = std::mem::replace(entry, Entry::Done(outcome))
                else {
                    unreachable!("matched Waiting above")
                };
                Completed::Wake(waiter)
            }
            _ => Completed::NotWaiting,
        }
    }

    /// Forgets call `seq`, however far it got: its caller stopped waiting.
    pub(crate) fn forget(&mut self, seq: u32) {
        self.calls.remove(&seq);
    }

    /// Ends every waiting call with `status` (their connection is lost);
    /// returns the waiters to wake.
    pub(crate) fn fail_all(&mut self, status: &Status) -> Vec<W> {
        let mut woken = Vec::new();
        for entry in self.calls.values_mut() {
            if let Entry::Waiting { waiter, .. } = entry {
                woken.extend(waiter.take());
                *entry = Entry::Done(Outcome::Failed(status.clone()));
            }
        }
        self.wake_at = None;
        woken
    }

    /// Ends the calls whose deadline is at or before `now`; returns their
    /// waiters.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<W> {
        let mut woken = Vec::new();
        let mut next: Option<Instant> = None;
        for entry in self.calls.values_mut() {
            if let Entry::Waiting { waiter, deadline } = entry {
                if *deadline <= now {
                    woken.extend(waiter.take());
                    *entry = Entry::Done(Outcome::Expired);
                } else {
                    next = Some(next.map_or(*deadline, |n| n.min(*deadline)));
                }
            }
        }
        self.wake_at = next;
        woken
    }

    /// When [`InFlight::expire`] must next run, if any call waits.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.wake_at
    }

    /// Whether call `seq` has an entry (waiting, or its outcome not yet
    /// collected).
    pub(crate) fn contains(&self, seq: u32) -> bool {
        self.calls.contains_key(&seq)
    }

    /// Calls still waiting for their outcome.
    pub(crate) fn waiting(&self) -> usize {
        self.calls
            .values()
            .filter(|e| matches!(e, Entry::Waiting { .. }))
            .count()
    }

    /// Entries, waiting or not yet collected.
    pub(crate) fn len(&self) -> usize {
        self.calls.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drpc_proto::Header;
    use std::time::Duration;

    fn t0() -> Instant {
        // One reading, as the base of a virtual clock; nothing waits on it.
        Instant::now()
    }

    fn reply(seq: u32) -> Outcome {
        Outcome::Reply(Box::new(Message::new(Header::reply(seq), Vec::new())))
    }

    #[test]
    fn seqs_count_from_one_skip_zero_and_those_in_use() {
        let t = t0();
        let mut f: InFlight<u8> = InFlight::default();
        assert_eq!(f.start(t).0, 1);
        assert_eq!(f.start(t).0, 2);
        f.next_seq = u32::MAX;
        assert_eq!(f.start(t).0, u32::MAX);
        // Wraps past 0, and past 1 and 2, still waiting.
        assert_eq!(f.start(t).0, 3);
    }

    #[test]
    fn a_reply_wakes_the_waiter_and_is_collected_once() {
        let t = t0();
        let mut f: InFlight<&str> = InFlight::default();
        let (seq, _) = f.start(t + Duration::from_secs(1));
        assert!(f.poll(seq, |w| *w = Some("task")).is_none());
        match f.complete(seq, reply(seq)) {
            Completed::Wake(Some("task")) => {}
            _ => panic!("the registered waiter is woken"),
        }
        assert!(matches!(f.poll(seq, |_| {}), Some(Outcome::Reply(_))));
        assert!(f.poll(seq, |_| {}).is_none(), "collected once");
        assert_eq!(f.len(), 0);
    }

    #[test]
    fn a_late_reply_to_a_forgotten_call_finds_no_one() {
        let t = t0();
        let mut f: InFlight<u8> = InFlight::default();
        let (seq, _) = f.start(t);
        f.forget(seq);
        assert!(matches!(f.complete(seq, reply(seq)), Completed::NotWaiting));
        // A second reply to an answered call is handed back too.
        let (seq, _) = f.start(t);
        assert!(matches!(f.complete(seq, reply(seq)), Completed::Wake(None)));
        assert!(matches!(f.complete(seq, reply(seq)), Completed::NotWaiting));
    }

    #[test]
    fn deadlines_expire_in_time_and_the_timer_follows_the_earliest() {
        let t = t0();
        let s = Duration::from_secs(1);
        let mut f: InFlight<u32> = InFlight::default();
        let (a, earlier) = f.start(t + 3 * s);
        assert!(earlier);
        let (b, earlier) = f.start(t + 5 * s);
        assert!(!earlier, "a later deadline leaves the timer alone");
        let (c, earlier) = f.start(t + s);
        assert!(earlier);
        for seq in [a, b, c] {
            f.poll(seq, |w| *w = Some(seq));
        }
        assert_eq!(f.next_deadline(), Some(t + s));
        assert!(f.expire(t).is_empty());
        let mut woken = f.expire(t + 3 * s);
        woken.sort_unstable();
        assert_eq!(woken, vec![a, c]);
        assert_eq!(f.next_deadline(), Some(t + 5 * s));
        assert!(matches!(f.poll(a, |_| {}), Some(Outcome::Expired)));
        assert!(f.poll(b, |_| {}).is_none());
    }

    #[test]
    fn a_lost_connection_fails_every_waiting_call_but_not_collected_ones() {
        let t = t0();
        let mut f: InFlight<u32> = InFlight::default();
        let (a, _) = f.start(t);
        let (b, _) = f.start(t);
        f.poll(a, |w| *w = Some(a));
        f.complete(b, reply(b));
        let woken = f.fail_all(&Status::connection_closed("lost"));
        assert_eq!(woken, vec![a]);
        assert!(matches!(f.poll(a, |_| {}), Some(Outcome::Failed(s)) if s.message() == "lost"));
        assert!(
            matches!(f.poll(b, |_| {}), Some(Outcome::Reply(_))),
            "a reply that arrived first is kept"
        );
        assert_eq!(f.next_deadline(), None);
    }
}
