//! What a connection holds before its hooks pass (an `Auth` plugin's
//! credential check, say): dispatching it once they do, handing a message
//! to a hook, or refusing it all.

use super::ConnCore;
use crate::core::wire;
use crate::values::Status;
use drpc_proto::{Kind, Message};
use std::time::Instant;

impl<W> ConnCore<W> {
    /// The connection's hooks passed: what was held is dispatched now, in
    /// the order it came (calls are already recorded as handled).
    pub(crate) fn establish(&mut self) -> Vec<(Message, Instant)> {
        self.established = true;
        self.hold.drain().into()
    }

    pub(crate) fn is_established(&self) -> bool {
        self.established
    }

    /// The oldest held message for `service_method`, for a connection hook.
    pub(crate) fn take_held(&mut self, service_method: &str) -> Option<Message> {
        self.hold.take(service_method)
    }

    /// The connection will never be established: the held calls are
    /// answered with `status` (pushes are dropped); returns how many pushes
    /// were dropped, and the writer to wake.
    pub(crate) fn refuse_held(&mut self, status: &Status) -> (usize, Option<W>) {
        let mut dropped = 0;
        for (msg, _) in self.hold.drain() {
            let h = &msg.header;
            if h.kind == Kind::Call {
                self.handling.remove(&h.seq);
                let reply = wire::error_reply(h.seq, h.codec, status);
                self.force(&reply);
            } else {
                dropped += 1;
            }
        }
        (dropped, self.writer_to_wake())
    }
}
