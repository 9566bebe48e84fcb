//! The hello that tells each side what the other understands, and the
//! cancels it allows, both ways (docs/PROTOCOL.md sections 3.2 and 3.3).

use super::{ConnCore, Event};
use crate::core::features::{self, Features, Peer, MAX_PENDING_CANCELS};
use drpc_proto::Header;
use std::collections::VecDeque;

/// Cancels of calls that had not come yet: over a transport whose frames
/// can overtake each other (QUIC, a stream per batch), a cancel may arrive
/// before its call, which is then dropped when it comes rather than run
/// for nothing. Only a cancel newer than every call seen is kept (an older
/// one crossed its call's reply), at most [`MAX_PENDING_CANCELS`].
#[derive(Debug, Default)]
pub(crate) struct EarlyCancels {
    /// The newest call seq seen, in the peer's wrapping order.
    newest: Option<u32>,
    seqs: VecDeque<u32>,
}

/// Whether `seq` comes after `than` in a peer's wrapping count.
fn newer(seq: u32, than: Option<u32>) -> bool {
    than.is_none_or(|than| (seq.wrapping_sub(than) as i32) > 0)
}

impl EarlyCancels {
    fn on_cancel(&mut self, seq: u32) {
        if newer(seq, self.newest) && !self.seqs.contains(&seq) {
            if self.seqs.len() == MAX_PENDING_CANCELS {
                self.seqs.pop_front();
            }
            self.seqs.push_back(seq);
        }
    }

    /// A call came: whether its cancel came first.
    fn on_call(&mut self, seq: u32) -> bool {
        if newer(seq, self.newest) {
            self.newest = Some(seq);
        }
        if self.seqs.is_empty() {
            return false;
        }
        let found = self.seqs.iter().position(|&s| s == seq);
        if let Some(at) = found {
            self.seqs.remove(at);
        }
        // A cancel still ahead of every call seen waits for its call; one
        // far behind them has no call left to wait for.
        let newest = self.newest;
        self.seqs
            .retain(|&s| newer(s, newest) || newest.is_none_or(|n| n.wrapping_sub(s) < 1 << 20));
        found.is_some()
    }
}

impl<W> ConnCore<W> {
    /// Sends this side's hello, as a dialer does first: the peer's answer
    /// says what it understands. Returns the writer to wake.
    pub(crate) fn start_hello(&mut self) -> Option<W> {
        let seq = self.calls.reserve();
        self.peer = Peer::Asked {
            seq,
            cancels: Vec::new(),
        };
        self.force(&features::hello_call(seq, Features::ALL))
    }

    /// Whether a reply with `seq` answers this side's hello.
    pub(super) fn answers_hello(&self, seq: u32) -> bool {
        matches!(self.peer, Peer::Asked { seq: s, .. } if s == seq)
    }

    /// The answer to this side's hello: the peer's features are known, and
    /// the cancels that waited for them go out if it takes them.
    pub(super) fn on_hello_reply(&mut self, h: &Header) -> Event<W> {
        let theirs = features::peer_features(h).and(Features::ALL);
        self.calls.unreserve();
        let cancels = match std::mem::replace(&mut self.peer, Peer::Known(theirs)) {
            Peer::Asked { cancels, .. } => cancels,
            _ => Vec::new(),
        };
        if !theirs.cancel || cancels.is_empty() {
            return Event::Hello(None);
        }
        for seq in cancels {
            let _ = self.out.push(&features::cancel(seq));
        }
        Event::Hello(self.writer_to_wake())
    }

    /// Whether a call is the peer's hello, answered here rather than
    /// routed: the first one only, so a later call of that name is the
    /// application's (and finds no handler).
    pub(super) fn is_hello(&self, h: &Header) -> bool {
        !self.hello_answered && &*h.service_method == features::HELLO
    }

    /// Answers the peer's hello with this side's features and records the
    /// peer's, which this side may now use.
    pub(super) fn on_hello_call(&mut self, h: &Header) -> Event<W> {
        self.hello_answered = true;
        let theirs = features::peer_features(h).and(Features::ALL);
        if let Peer::Asked { cancels, .. } = &mut self.peer {
            // Both sides said hello: the peer's call says as much as the
            // answer to ours will.
            let waiting = std::mem::take(cancels);
            if theirs.cancel {
                for seq in waiting {
                    let _ = self.out.push(&features::cancel(seq));
                }
            }
        }
        self.peer = Peer::Known(theirs);
        let reply = features::hello_reply(h.seq, h.codec, Features::ALL);
        Event::Hello(self.force(&reply))
    }

    /// Whether this side said hello and waits for the answer.
    pub(crate) fn hello_pending(&self) -> bool {
        matches!(self.peer, Peer::Asked { .. })
    }

    /// Whether this side has said what it takes (its hello, or its answer
    /// to the peer's): kinds after 3 may come only then.
    pub(super) fn said_hello(&self) -> bool {
        self.hello_answered || !matches!(self.peer, Peer::Unknown)
    }

    /// What the peer said it understands; `None` until it has.
    #[cfg(test)]
    pub(crate) fn peer_features(&self) -> Option<Features> {
        match self.peer {
            Peer::Known(f) => Some(f),
            _ => None,
        }
    }

    /// This side gave up on its call `seq` (dropped, or past its deadline)
    /// and forgot it: tells the peer, if the peer takes cancels, so its
    /// handler stops; before the hello is answered, the cancel waits for
    /// the answer. Returns the writer to wake.
    pub(crate) fn cancel(&mut self, seq: u32) -> Option<W> {
        match &mut self.peer {
            Peer::Known(f) if f.cancel => self.force(&features::cancel(seq)),
            Peer::Asked { cancels, .. } if cancels.len() < MAX_PENDING_CANCELS => {
                cancels.push(seq);
                None
            }
            _ => None,
        }
    }

    /// Says whether frames of this connection arrive in the order sent;
    /// where they can overtake each other (QUIC), a cancel may come before
    /// its call.
    pub(crate) fn ordered(mut self, ordered: bool) -> Self {
        self.early_cancels = (!ordered).then(EarlyCancels::default);
        self
    }

    /// Whether the peer's call `seq` was cancelled before it came.
    pub(super) fn cancelled_early(&mut self, seq: u32) -> bool {
        self.early_cancels
            .as_mut()
            .is_some_and(|early| early.on_call(seq))
    }

    /// The peer cancelled its call `seq`: it is no longer handled, and no
    /// reply is sent for it (one already queued still goes). A held call
    /// is dropped from the hold.
    pub(super) fn on_cancel(&mut self, seq: u32) -> Event<W> {
        if !self.handling.remove(&seq) {
            if let Some(early) = self.early_cancels.as_mut() {
                early.on_cancel(seq);
            }
            return Event::Dropped("a cancel of a call not being handled");
        }
        if !self.established {
            self.hold.remove_call(seq);
        }
        Event::Cancelled(seq)
    }
}
