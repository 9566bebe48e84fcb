//! The table of this side's calls that wait for a reply, and the deadline
//! reaper that ends the ones whose deadline passes.
//!
//! One reaper per session replaces a timer per call: a call only records its
//! deadline here, and the reaper sleeps until the earliest one. A new call
//! wakes the reaper only when its deadline is earlier than every pending
//! one, which calls sharing a timeout never are.

use crate::Status;
use drpc_proto::Message;
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use std::collections::hash_map::Entry;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

/// How a waiting call ends.
pub(crate) enum Outcome {
    /// The peer replied (the reply may carry an error status).
    Reply(Message),
    /// The call failed on this side: a hook refused the reply, the write
    /// failed, or the session closed.
    Failed(Status),
    /// The deadline passed.
    Expired,
}

pub(crate) type Waiter = oneshot::Sender<Outcome>;

struct Call {
    waiter: Waiter,
    deadline: Instant,
}

struct Table {
    calls: FxHashMap<u32, Call>,
    next_seq: u32,
    /// Set when the session starts closing; new calls fail with it.
    closed: Option<Status>,
    /// The deadline the reaper sleeps toward, if any.
    reaper_wake: Option<Instant>,
}

pub(crate) struct Pending {
    table: Mutex<Table>,
    earlier_deadline: Notify,
}

impl Pending {
    pub(crate) fn new() -> Self {
        Self {
            table: Mutex::new(Table {
                calls: FxHashMap::default(),
                next_seq: 1,
                closed: None,
                reaper_wake: None,
            }),
            earlier_deadline: Notify::new(),
        }
    }

    /// Records a waiting call and returns its seq, or the close status if
    /// the session is closing.
    pub(crate) fn register(&self, waiter: Waiter, deadline: Instant) -> Result<u32, Status> {
        let mut t = self.table.lock();
        if let Some(status) = &t.closed {
            return Err(status.clone());
        }
        // Seq 0 is never used by a call; after wrapping, seqs still in use
        // are skipped so a late reply can never reach the wrong call.
        let seq = loop {
            let seq = t.next_seq;
            t.next_seq = t.next_seq.wrapping_add(1);
            if seq == 0 {
                continue;
            }
            if let Entry::Vacant(e) = t.calls.entry(seq) {
                e.insert(Call { waiter, deadline });
                break seq;
            }
        };
        if t.reaper_wake.is_none_or(|wake| deadline < wake) {
            t.reaper_wake = Some(deadline);
            drop(t);
            self.earlier_deadline.notify_one();
        }
        Ok(seq)
    }

    /// Takes the waiter of call `seq`, if it still waits.
    pub(crate) fn take(&self, seq: u32) -> Option<Waiter> {
        self.table.lock().calls.remove(&seq).map(|e| e.waiter)
    }

    /// Forgets call `seq` (its caller gave up).
    pub(crate) fn remove(&self, seq: u32) {
        self.table.lock().calls.remove(&seq);
    }

    /// Ends call `seq` with `status`, if it still waits.
    pub(crate) fn fail(&self, seq: u32, status: Status) {
        if let Some(w) = self.take(seq) {
            let _ = w.send(Outcome::Failed(status));
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.table.lock().calls.len()
    }

    /// The status new calls fail with, once closing has begun.
    pub(crate) fn closed_status(&self) -> Option<Status> {
        self.table.lock().closed.clone()
    }

    /// Refuses new calls with `status` and fails every waiting one with it.
    pub(crate) fn close(&self, status: Status) {
        let waiters: Vec<Waiter> = {
            let mut t = self.table.lock();
            if t.closed.is_none() {
                t.closed = Some(status.clone());
            }
            t.calls.drain().map(|(_, e)| e.waiter).collect()
        };
        for w in waiters {
            let _ = w.send(Outcome::Failed(status.clone()));
        }
    }

    /// Fails every waiting call with `status` but stays open for new ones:
    /// the connection they went out on is lost, the session is not.
    pub(crate) fn fail_all(&self, status: Status) {
        let waiters: Vec<Waiter> = self
            .table
            .lock()
            .calls
            .drain()
            .map(|(_, e)| e.waiter)
            .collect();
        for w in waiters {
            let _ = w.send(Outcome::Failed(status.clone()));
        }
    }

    /// Ends calls whose deadline has passed, for as long as the session lives.
    pub(crate) async fn reap(&self) {
        loop {
            let wake = self.table.lock().reaper_wake;
            match wake {
                None => self.earlier_deadline.notified().await,
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = self.earlier_deadline.notified() => {}
                    }
                }
            }
            self.expire(Instant::now());
        }
    }

    fn expire(&self, now: Instant) {
        let expired: Vec<Waiter> = {
            let mut t = self.table.lock();
            let mut due = Vec::new();
            let mut next: Option<Instant> = None;
            for (seq, e) in &t.calls {
                if e.deadline <= now {
                    due.push(*seq);
                } else {
                    next = Some(next.map_or(e.deadline, |n| n.min(e.deadline)));
                }
            }
            t.reaper_wake = next;
            due.iter()
                .filter_map(|seq| t.calls.remove(seq).map(|e| e.waiter))
                .collect()
        };
        for w in expired {
            let _ = w.send(Outcome::Expired);
        }
    }
}
