//! The queue between a session's senders and its writer task.
//!
//! A plain unbounded channel carries the messages; the bound is an atomic
//! count of queued messages. Senders reserve a slot with one atomic add and
//! the writer releases a whole batch with one atomic subtraction, which
//! keeps the per-message cost to a few atomics (a bounded tokio channel
//! takes a lock per message, which measurably slowed the hot path). Only a
//! sender that finds the queue full waits, for a wake-up from the writer.

use crate::session::Outbound;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{mpsc, Notify};

pub(crate) struct Outbox {
    tx: mpsc::UnboundedSender<Outbound>,
    queued: AtomicUsize,
    limit: usize,
    room: Notify,
}

/// Why a message could not be queued.
pub(crate) enum SendError {
    /// The queue holds `limit` messages; the message is handed back.
    Full(Outbound),
    /// The writer is gone.
    Closed,
}

// A full queue hands the message back by value, as tokio's channels do;
// boxing it to shrink the error would cost an allocation on every send.
#[allow(clippy::result_large_err)]
impl Outbox {
    pub(crate) fn new(limit: usize) -> (Self, mpsc::UnboundedReceiver<Outbound>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let outbox = Self {
            tx,
            queued: AtomicUsize::new(0),
            limit: limit.max(1),
            room: Notify::new(),
        };
        (outbox, rx)
    }

    /// Queues `msg` if there is room.
    pub(crate) fn try_send(&self, msg: Outbound) -> Result<(), SendError> {
        // Reserve first, so concurrent senders can never overshoot the limit.
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.limit {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(SendError::Full(msg));
        }
        self.send_reserved(msg)
    }

    /// Queues `msg` even when the queue is full: for the few control
    /// messages (shutdown, a final error reply) that must not wait.
    pub(crate) fn force_send(&self, msg: Outbound) -> Result<(), SendError> {
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.send_reserved(msg)
    }

    fn send_reserved(&self, msg: Outbound) -> Result<(), SendError> {
        self.tx.send(msg).map_err(|_| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            SendError::Closed
        })
    }

    /// Queues `msg`, waiting for room as long as it takes; the caller bounds
    /// the wait. Fails only when the writer is gone.
    pub(crate) async fn send(&self, mut msg: Outbound) -> Result<(), SendError> {
        loop {
            // Registered before the attempt, so a wake-up between a failed
            // attempt and the wait is not lost.
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_send(msg) {
                Err(SendError::Full(back)) => {
                    msg = back;
                    notified.await;
                }
                done => return done,
            }
        }
    }

    /// The writer took `n` messages off the queue.
    pub(crate) fn taken(&self, n: usize) {
        if n > 0 && self.queued.fetch_sub(n, Ordering::AcqRel) >= self.limit {
            self.room.notify_waiters();
        }
    }

    /// The writer stopped: waiting senders retry and find the queue closed.
    pub(crate) fn writer_gone(&self) {
        self.room.notify_waiters();
    }
}
