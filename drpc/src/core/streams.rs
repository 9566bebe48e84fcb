//! The streams of one connection, as plain data (docs/PROTOCOL.md section
//! 3.4): each stream's items waiting to be read, in number order, the
//! credit each side gave, and who waits for what.
//!
//! A receiver holds at most what it allowed: an item past its credit
//! breaks the protocol. So a slow reader bounds its peer's sender, and the
//! memory here is bounded by the windows granted.

use crate::values::Status;
use drpc_proto::Message;
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, VecDeque};

/// This side's part in the call a stream belongs to: the key of a stream
/// is the call's seq and this role (each side numbers its own calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Role {
    Caller,
    Callee,
}

/// How much a receiver lets a sender have outstanding: items, and body
/// bytes in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) items: u32,
    pub(crate) bytes: u64,
}

impl Window {
    /// drpc's default per stream: 256 items, 16 MiB.
    pub(crate) const DEFAULT: Self = Self {
        items: 256,
        bytes: 16 << 20,
    };

    /// Reads the `drpc-window` value `<items>,<bytes>`.
    pub(crate) fn parse(value: &str) -> Option<Self> {
        let (items, bytes) = value.split_once(',')?;
        Some(Self {
            items: items.trim().parse().ok()?,
            bytes: bytes.trim().parse().ok()?,
        })
    }

    /// The `drpc-window` value.
    pub(crate) fn value(self) -> String {
        format!("{},{}", self.items, self.bytes)
    }
}

/// What a reader of a stream finds.
#[derive(Debug)]
pub(crate) enum Next<W> {
    /// The next item, and the credit to send for it, if any is due.
    Item(Message, Option<Window>),
    /// Every item came, and the sender's direction ended (with a status
    /// when it failed).
    End(Option<Status>),
    /// Nothing yet: the waiter was kept.
    Wait(Option<W>),
    /// The stream is not known (closed, or never opened).
    Gone,
}

/// Why an item cannot go now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SendRefused {
    /// No credit for it: the waiter is woken when credit comes.
    NoCredit,
    /// The stream is not known, or this side's direction ended.
    Gone,
}

/// One stream's state.
#[derive(Debug)]
struct Stream<W> {
    rx: Option<Rx<W>>,
    tx: Option<Tx<W>>,
}

#[derive(Debug)]
struct Rx<W> {
    window: Window,
    /// The number of the next item to read (one past `u32::MAX` once the
    /// last possible item is in).
    next: u64,
    ready: VecDeque<Message>,
    /// Items that came before the ones numbered below them.
    ahead: BTreeMap<u32, Message>,
    received_bytes: u64,
    consumed: (u32, u64),
    granted: (u32, u64),
    /// How many items the sender says it sent, and how its direction ended.
    end: Option<(u32, Option<Status>)>,
    /// The connection ended: what was read is still read, then this.
    broken: Option<Status>,
    waiter: Option<W>,
}

#[derive(Debug)]
struct Tx<W> {
    sent: (u32, u64),
    allowed: (u32, u64),
    /// The receiver has granted credit: it knows the stream, so the end of
    /// this direction may go (a caller's end sent before would find no
    /// stream at a callee that has not started handling the call).
    credited: bool,
    ended: bool,
    /// The end of this direction, asked for before any credit came: sent
    /// with the first credit.
    end_due: Option<Option<Status>>,
    waiter: Option<W>,
}

/// An end of a direction that waited for credit: the items sent, and the
/// status that fails it (none when it ended well).
pub(crate) type DueEnd = (u32, Option<Status>);

/// What ending this side's direction of a stream calls for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum EndSend {
    /// Send the end now: this many items were sent.
    Now(u32),
    /// Kept until the first credit comes.
    Later,
    /// The direction was over already, or the stream is not known.
    Over,
}

/// The streams of one connection.
#[derive(Debug)]
pub(crate) struct Streams<W> {
    map: FxHashMap<(Role, u32), Stream<W>>,
}

impl<W> Default for Streams<W> {
    fn default() -> Self {
        Self {
            map: FxHashMap::default(),
        }
    }
}

impl<W> Streams<W> {
    /// Opens the stream of call `seq`: this side reads items under
    /// `receive` (its window, granted from the start), sends under `send`
    /// (the peer's first grant), or both.
    pub(crate) fn open(
        &mut self,
        role: Role,
        seq: u32,
        receive: Option<Window>,
        send: Option<Window>,
    ) {
        let rx = receive.map(|window| Rx {
            window,
            next: 1,
            ready: VecDeque::new(),
            ahead: BTreeMap::new(),
            received_bytes: 0,
            consumed: (0, 0),
            granted: (window.items, window.bytes),
            end: None,
            broken: None,
            waiter: None,
        });
        let tx = send.map(|w| Tx {
            sent: (0, 0),
            allowed: (w.items, w.bytes),
            credited: w.items > 0 || w.bytes > 0,
            ended: false,
            end_due: None,
            waiter: None,
        });
        self.map.insert((role, seq), Stream { rx, tx });
    }

    pub(crate) fn is_open(&self, role: Role, seq: u32) -> bool {
        self.map.contains_key(&(role, seq))
    }

    /// Forgets the stream; returns its waiters to wake.
    pub(crate) fn close(&mut self, role: Role, seq: u32) -> Vec<W> {
        self.map
            .remove(&(role, seq))
            .map(Stream::waiters)
            .unwrap_or_default()
    }

    /// The connection ended with `status`: readers still get the items
    /// that came, then `status` unless every item came; senders find
    /// their direction over. Returns the waiters.
    pub(crate) fn break_all(&mut self, status: &Status) -> Vec<W> {
        let mut woken = Vec::new();
        for stream in self.map.values_mut() {
            if let Some(rx) = stream.rx.as_mut() {
                rx.broken.get_or_insert_with(|| status.clone());
                woken.extend(rx.waiter.take());
            }
            if let Some(tx) = stream.tx.as_mut() {
                tx.ended = true;
                woken.extend(tx.waiter.take());
            }
        }
        woken
    }

    /// An item (or, with `end`, the end of the sender's direction after
    /// `number` items, failed with `status`) for the stream `role` reads.
    /// An item for no known stream is dropped (`Ok(None)`); one past the
    /// credit, out of its numbers, or for a stream that reads none, is the
    /// peer breaking the protocol (`Err`).
    pub(crate) fn on_item(
        &mut self,
        role: Role,
        number: u32,
        end: Option<Option<Status>>,
        msg: Message,
    ) -> Result<Option<W>, String> {
        let Some(stream) = self.map.get_mut(&(role, msg.header.seq)) else {
            return Ok(None);
        };
        let Some(rx) = stream.rx.as_mut() else {
            return Err(format!(
                "an item for call {}, whose stream carries none that way",
                msg.header.seq
            ));
        };
        if let Some(status) = end {
            if number > rx.granted.0 {
                return Err(format!(
                    "call {} ends after {number} items, more than the {} allowed",
                    msg.header.seq, rx.granted.0
                ));
            }
            rx.end.get_or_insert((number, status));
            return Ok(rx.waiter.take());
        }
        let len = msg.body.len() as u64;
        if u64::from(number) < rx.next || number > rx.granted.0 || rx.ahead.contains_key(&number) {
            return Err(format!(
                "item {number} of call {}: expected {} to {} once each",
                msg.header.seq, rx.next, rx.granted.0
            ));
        }
        if rx.received_bytes + len > rx.granted.1 {
            return Err(format!(
                "item {number} of call {} goes past the {} bytes allowed",
                msg.header.seq, rx.granted.1
            ));
        }
        rx.received_bytes += len;
        rx.ahead.insert(number, msg);
        while let Some(msg) = u32::try_from(rx.next)
            .ok()
            .and_then(|next| rx.ahead.remove(&next))
        {
            rx.ready.push_back(msg);
            rx.next += 1;
        }
        Ok(rx.waiter.take())
    }

    /// The end of the peer's direction of a stream this side reads, from
    /// outside the items (a callee's reply): `items` were sent.
    pub(crate) fn on_end(
        &mut self,
        role: Role,
        seq: u32,
        items: u32,
        status: Option<Status>,
    ) -> Option<W> {
        let rx = self.map.get_mut(&(role, seq))?.rx.as_mut()?;
        // A count past what was allowed could never be read.
        let end = match items > rx.granted.0 {
            true => (
                0,
                Some(Status::bad_message(format!(
                    "the reply says {items} items were sent, more than the {} allowed",
                    rx.granted.0
                ))),
            ),
            false => (items, status),
        };
        rx.end.get_or_insert(end);
        rx.waiter.take()
    }

    /// Credit from the peer: running totals, so the larger is kept.
    /// Returns the waiter, and the end of this direction to send now (the
    /// items sent, and the status) when it was asked for before any credit.
    pub(crate) fn on_credit(
        &mut self,
        role: Role,
        seq: u32,
        items: u32,
        bytes: u64,
    ) -> (Option<W>, Option<DueEnd>) {
        let Some(tx) = self.map.get_mut(&(role, seq)).and_then(|s| s.tx.as_mut()) else {
            return (None, None);
        };
        tx.allowed = (tx.allowed.0.max(items), tx.allowed.1.max(bytes));
        tx.credited = true;
        let end = tx.end_due.take().map(|status| (tx.sent.0, status));
        (tx.waiter.take(), end)
    }

    /// Ends this side's direction of a stream (failed with `status`): no
    /// item goes after it. Returns what to send, and the waiter to wake.
    pub(crate) fn end_send(
        &mut self,
        role: Role,
        seq: u32,
        status: Option<Status>,
    ) -> (EndSend, Option<W>) {
        let Some(tx) = self.map.get_mut(&(role, seq)).and_then(|s| s.tx.as_mut()) else {
            return (EndSend::Over, None);
        };
        if tx.ended {
            return (EndSend::Over, tx.waiter.take());
        }
        tx.ended = true;
        let end = match tx.credited {
            true => EndSend::Now(tx.sent.0),
            false => {
                tx.end_due = Some(status);
                EndSend::Later
            }
        };
        (end, tx.waiter.take())
    }

    /// The receiver stopped reading this side's direction (a callee's
    /// reply ends the call): nothing more goes. Returns the waiter.
    pub(crate) fn stop_sending(&mut self, role: Role, seq: u32) -> Option<W> {
        let tx = self.map.get_mut(&(role, seq))?.tx.as_mut()?;
        tx.ended = true;
        tx.end_due = None;
        tx.waiter.take()
    }

    /// The next item to read, if one is there.
    pub(crate) fn next(&mut self, role: Role, seq: u32, waiter: impl FnOnce() -> W) -> Next<W> {
        let Some(rx) = self.map.get_mut(&(role, seq)).and_then(|s| s.rx.as_mut()) else {
            return Next::Gone;
        };
        if let Some(msg) = rx.ready.pop_front() {
            rx.consumed.0 += 1;
            rx.consumed.1 += msg.body.len() as u64;
            return Next::Item(msg, rx.grant());
        }
        match (&rx.end, &rx.broken) {
            // Every item it said it sent has been read.
            (Some((items, status)), _) if rx.next > u64::from(*items) => Next::End(status.clone()),
            (_, Some(broken)) => Next::End(Some(broken.clone())),
            _ => Next::Wait(rx.waiter.replace(waiter())),
        }
    }

    /// Takes the credit for an item of `len` bytes and returns its number;
    /// without credit, keeps `waiter` to wake when some comes.
    pub(crate) fn take_credit(
        &mut self,
        role: Role,
        seq: u32,
        len: usize,
        waiter: impl FnOnce() -> W,
    ) -> Result<u32, SendRefused> {
        let Some(tx) = self.map.get_mut(&(role, seq)).and_then(|s| s.tx.as_mut()) else {
            return Err(SendRefused::Gone);
        };
        if tx.ended {
            return Err(SendRefused::Gone);
        }
        let len = len as u64;
        if tx.sent.0 >= tx.allowed.0 || tx.sent.1 + len > tx.allowed.1 || tx.sent.0 == u32::MAX {
            tx.waiter = Some(waiter());
            return Err(SendRefused::NoCredit);
        }
        tx.sent = (tx.sent.0 + 1, tx.sent.1 + len);
        Ok(tx.sent.0)
    }

    /// Gives back the credit of an item that could not be queued (its
    /// number goes to the next).
    pub(crate) fn untake_credit(&mut self, role: Role, seq: u32, len: usize) {
        if let Some(tx) = self.map.get_mut(&(role, seq)).and_then(|s| s.tx.as_mut()) {
            tx.sent = (
                tx.sent.0.saturating_sub(1),
                tx.sent.1.saturating_sub(len as u64),
            );
        }
    }

    /// How many items this side sent on the stream.
    pub(crate) fn sent(&self, role: Role, seq: u32) -> u32 {
        self.map
            .get(&(role, seq))
            .and_then(|s| s.tx.as_ref())
            .map_or(0, |tx| tx.sent.0)
    }
}

impl<W> Stream<W> {
    fn waiters(self) -> Vec<W> {
        let rx = self.rx.and_then(|rx| rx.waiter);
        let tx = self.tx.and_then(|tx| tx.waiter);
        rx.into_iter().chain(tx).collect()
    }
}

impl<W> Rx<W> {
    /// New credit once half of either window is used up: the window again
    /// ahead of what was read.
    fn grant(&mut self) -> Option<Window> {
        let items_left = self.granted.0.saturating_sub(self.consumed.0);
        let bytes_left = self.granted.1.saturating_sub(self.consumed.1);
        if items_left > self.window.items / 2 && bytes_left > self.window.bytes / 2 {
            return None;
        }
        self.granted = (
            self.consumed.0.saturating_add(self.window.items),
            self.consumed.1.saturating_add(self.window.bytes),
        );
        Some(Window {
            items: self.granted.0,
            bytes: self.granted.1,
        })
    }
}

#[cfg(test)]
mod tests;
