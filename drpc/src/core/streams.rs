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
    ended: bool,
    waiter: Option<W>,
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
            ended: false,
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
    pub(crate) fn on_credit(&mut self, role: Role, seq: u32, items: u32, bytes: u64) -> Option<W> {
        let tx = self.map.get_mut(&(role, seq))?.tx.as_mut()?;
        tx.allowed = (tx.allowed.0.max(items), tx.allowed.1.max(bytes));
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
mod tests {
    use super::*;
    use drpc_codec::CodecId;
    use drpc_proto::Header;

    fn item(seq: u32, number: u32, body: &[u8]) -> Message {
        Message::new(Header::item(seq, 0, number, CodecId::RAW), body.to_vec())
    }

    fn small() -> Window {
        Window {
            items: 4,
            bytes: 100,
        }
    }

    #[test]
    fn items_are_read_in_number_order_whatever_order_they_came_in() {
        let mut s = Streams::<u32>::default();
        s.open(Role::Caller, 7, Some(small()), None);
        for n in [2, 1, 3] {
            s.on_item(Role::Caller, n, None, item(7, n, &[n as u8]))
                .unwrap();
        }
        let mut got = Vec::new();
        while let Next::Item(m, _) = s.next(Role::Caller, 7, || 0) {
            got.push(m.body[0]);
        }
        assert_eq!(got, [1, 2, 3]);
        assert!(
            s.on_end(Role::Caller, 7, 4, None).is_some(),
            "the reader waits"
        );
        assert!(
            matches!(s.next(Role::Caller, 7, || 0), Next::Wait(_)),
            "item 4 is due"
        );
        s.on_item(Role::Caller, 4, None, item(7, 4, b"")).unwrap();
        assert!(matches!(s.next(Role::Caller, 7, || 0), Next::Item(..)));
        assert!(matches!(s.next(Role::Caller, 7, || 0), Next::End(None)));
    }

    #[test]
    fn an_item_past_the_credit_or_twice_breaks_the_protocol() {
        let mut s = Streams::<u32>::default();
        s.open(Role::Caller, 7, Some(small()), None);
        assert!(
            s.on_item(Role::Caller, 5, None, item(7, 5, b"")).is_err(),
            "4 items allowed"
        );
        s.on_item(Role::Caller, 1, None, item(7, 1, &[0; 60]))
            .unwrap();
        assert!(
            s.on_item(Role::Caller, 1, None, item(7, 1, b"")).is_err(),
            "twice"
        );
        assert!(
            s.on_item(Role::Caller, 2, None, item(7, 2, &[0; 41]))
                .is_err(),
            "101 bytes"
        );
        // A stream never opened, or closed: dropped, not an error.
        assert!(matches!(
            s.on_item(Role::Callee, 1, None, item(7, 1, b"")),
            Ok(None)
        ));
    }

    #[test]
    fn reading_half_the_window_grants_it_again() {
        let mut s = Streams::<u32>::default();
        s.open(Role::Caller, 7, Some(small()), None);
        for n in 1..=4 {
            s.on_item(Role::Caller, n, None, item(7, n, &[0; 10]))
                .unwrap();
        }
        let grants: Vec<_> = (0..4)
            .map(|_| match s.next(Role::Caller, 7, || 0) {
                Next::Item(_, grant) => grant,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(grants[0], None);
        assert_eq!(
            grants[1],
            Some(Window {
                items: 6,
                bytes: 120
            }),
            "2 read + 4"
        );
        assert_eq!(grants[2], None);
        assert_eq!(
            grants[3],
            Some(Window {
                items: 8,
                bytes: 140
            })
        );
        // Item 8 now fits; 9 does not.
        for n in 5..=8 {
            s.on_item(Role::Caller, n, None, item(7, n, b"")).unwrap();
        }
        assert!(s.on_item(Role::Caller, 9, None, item(7, 9, b"")).is_err());
    }

    #[test]
    fn a_sender_waits_for_credit_and_keeps_the_largest_grant() {
        let mut s = Streams::<u32>::default();
        s.open(
            Role::Callee,
            3,
            None,
            Some(Window {
                items: 2,
                bytes: 10,
            }),
        );
        assert_eq!(s.take_credit(Role::Callee, 3, 4, || 1), Ok(1));
        assert_eq!(
            s.take_credit(Role::Callee, 3, 7, || 1),
            Err(SendRefused::NoCredit),
            "11 bytes"
        );
        assert_eq!(s.take_credit(Role::Callee, 3, 6, || 1), Ok(2));
        assert_eq!(
            s.take_credit(Role::Callee, 3, 0, || 2),
            Err(SendRefused::NoCredit),
            "2 items"
        );
        assert_eq!(
            s.on_credit(Role::Callee, 3, 4, 40),
            Some(2),
            "the waiter wakes"
        );
        assert_eq!(
            s.on_credit(Role::Callee, 3, 3, 20),
            None,
            "an older grant changes nothing"
        );
        assert_eq!(s.take_credit(Role::Callee, 3, 30, || 3), Ok(3));
        s.untake_credit(Role::Callee, 3, 30);
        assert_eq!(
            s.take_credit(Role::Callee, 3, 30, || 3),
            Ok(3),
            "given back"
        );
        assert_eq!(s.sent(Role::Callee, 3), 3);
        // The connection ends: the sender's direction is over.
        assert_eq!(
            s.break_all(&Status::connection_closed("gone")),
            Vec::<u32>::new()
        );
        assert_eq!(
            s.take_credit(Role::Callee, 3, 0, || 3),
            Err(SendRefused::Gone)
        );
        assert_eq!(s.close(Role::Callee, 3), Vec::<u32>::new());
        assert!(!s.is_open(Role::Callee, 3));
    }

    #[test]
    fn a_failed_end_is_read_after_the_items() {
        let mut s = Streams::<u32>::default();
        s.open(Role::Callee, 1, Some(small()), None);
        s.on_item(Role::Callee, 1, None, item(1, 1, b"a")).unwrap();
        let failed = Some(Status::internal("gave up"));
        s.on_item(Role::Callee, 1, Some(failed), item(1, 1, b""))
            .unwrap();
        assert!(matches!(s.next(Role::Callee, 1, || 0), Next::Item(..)));
        assert!(matches!(s.next(Role::Callee, 1, || 0), Next::End(Some(_))));
        assert!(matches!(s.next(Role::Callee, 9, || 0), Next::Gone));
    }

    #[test]
    fn a_broken_connection_still_hands_over_what_came_then_fails() {
        let mut s = Streams::<u32>::default();
        s.open(Role::Caller, 7, Some(small()), None);
        s.on_item(Role::Caller, 1, None, item(7, 1, b"a")).unwrap();
        s.break_all(&Status::connection_closed("gone"));
        assert!(matches!(s.next(Role::Caller, 7, || 0), Next::Item(..)));
        assert!(matches!(s.next(Role::Caller, 7, || 0), Next::End(Some(_))));
        // A count past the credit fails the stream rather than waits.
        s.open(Role::Caller, 8, Some(small()), None);
        s.on_end(Role::Caller, 8, 99, None);
        assert!(matches!(s.next(Role::Caller, 8, || 0), Next::End(Some(_))));
        let end = Some(None);
        assert!(s.on_item(Role::Caller, 99, end, item(8, 99, b"")).is_err());
    }

    #[test]
    fn windows_read_and_write_as_the_spec_says() {
        assert_eq!(Window::DEFAULT.value(), "256,16777216");
        assert_eq!(Window::parse("4, 100"), Some(small()));
        assert_eq!(Window::parse("4"), None);
        assert_eq!(Window::parse("-1,5"), None);
    }
}
