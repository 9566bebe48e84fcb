//! Calls and pushes held while a connection is being established.
//!
//! A connection's reader starts as soon as it connects, so that its
//! connection hooks can talk to the peer; until every hook has passed, no
//! incoming call or push may reach a handler. They wait here, in the order
//! they arrived. A hook may take one out (an auth plugin's credential); the
//! rest run once the hooks pass, or are refused if one refuses.

use drpc_proto::{Kind, Message};
use std::collections::VecDeque;
use std::time::Instant;

/// How many messages are held at most. Past this (or past the byte bound)
/// the reader stops reading until a hook takes one or the hooks end, so a
/// peer that floods a connection before it is established fills only its
/// own socket buffers.
pub(crate) const MAX_HELD: usize = 64;

/// The held messages of one connection.
pub(crate) struct Hold {
    msgs: VecDeque<(Message, Instant)>,
    bytes: usize,
    max_bytes: usize,
}

impl Hold {
    /// Holds at most [`MAX_HELD`] messages and `max_bytes` of bodies (one
    /// message is always taken, so a lone large credential fits).
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self {
            msgs: VecDeque::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// Whether a message with a body of `len` bytes can be held now.
    pub(crate) fn has_room(&self, len: usize) -> bool {
        self.msgs.is_empty() || (self.msgs.len() < MAX_HELD && self.bytes + len <= self.max_bytes)
    }

    /// Holds `msg`, which arrived at `arrived` (its deadline counts from
    /// then). The caller checked [`Hold::has_room`].
    pub(crate) fn push(&mut self, msg: Message, arrived: Instant) {
        self.bytes += msg.body.len();
        self.msgs.push_back((msg, arrived));
    }

    /// The oldest held message for `service_method`.
    pub(crate) fn take(&mut self, service_method: &str) -> Option<Message> {
        let at = self
            .msgs
            .iter()
            .position(|(m, _)| &*m.header.service_method == service_method)?;
        let (msg, _) = self.msgs.remove(at)?;
        self.bytes -= msg.body.len();
        Some(msg)
    }

    /// Drops the held call `seq` (its caller cancelled it).
    pub(crate) fn remove_call(&mut self, seq: u32) {
        let found = self
            .msgs
            .iter()
            .position(|(m, _)| m.header.kind == Kind::Call && m.header.seq == seq);
        if let Some((msg, _)) = found.and_then(|at| self.msgs.remove(at)) {
            self.bytes -= msg.body.len();
        }
    }

    /// Everything held, oldest first, leaving nothing.
    pub(crate) fn drain(&mut self) -> VecDeque<(Message, Instant)> {
        self.bytes = 0;
        std::mem::take(&mut self.msgs)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.msgs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drpc_proto::Header;

    fn push(method: &str, len: usize) -> Message {
        Message::new(Header::push(method), vec![0u8; len])
    }

    #[test]
    fn holds_in_order_up_to_its_bounds_but_always_one() {
        let t = Instant::now();
        let mut h = Hold::new(100);
        assert!(h.has_room(1_000), "an empty hold takes any one message");
        h.push(push("/big", 1_000), t);
        assert!(!h.has_room(1));
        assert_eq!(h.take("/big").unwrap().body.len(), 1_000);
        for i in 0..MAX_HELD {
            assert!(h.has_room(1), "message {i}");
            h.push(push(&format!("/{i}"), 1), t);
        }
        assert!(!h.has_room(0), "no more than MAX_HELD");
        let order: Vec<String> = h
            .drain()
            .into_iter()
            .map(|(m, _)| m.header.service_method.to_string())
            .collect();
        assert_eq!(order[..3], ["/0", "/1", "/2"]);
        assert_eq!(h.len(), 0);
        assert!(h.has_room(100));
    }

    #[test]
    fn take_finds_the_oldest_with_the_method_and_frees_its_room() {
        let t = Instant::now();
        let mut h = Hold::new(10);
        h.push(push("/a", 4), t);
        h.push(push("/auth", 5), t);
        h.push(push("/auth", 6), t);
        assert!(!h.has_room(2));
        assert_eq!(h.take("/auth").unwrap().body.len(), 5);
        assert!(h.has_room(0));
        assert!(h.take("/none").is_none());
        assert_eq!(h.len(), 2);
    }
}
