//! What a peer says it understands beyond the first three kinds
//! (docs/PROTOCOL.md section 3.2): the hello that asks, the answer, and
//! the cancel message the answer allows.
//!
//! A peer that predates a kind closes the connection when it receives one
//! (section 2.1), so nothing here is sent before the peer said it knows it.

use crate::values::Status;
use bytes::Bytes;
use drpc_codec::CodecId;
use drpc_proto::{Header, Message};
use std::time::Duration;

/// The service method of the hello call.
pub(crate) const HELLO: &str = "/_drpc/hello";

/// The meta key, on the hello call and its reply, that lists what the
/// sender understands.
pub(crate) const FEATURES_KEY: &str = "drpc-features";

/// The timeout the hello carries. Nothing waits for its answer (a call
/// goes out meanwhile, and a cancel waits for it, bounded by
/// [`MAX_PENDING_CANCELS`]); a compliant peer answers every call.
pub(crate) const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The most cancels kept while the peer has not answered the hello yet;
/// past it, a cancel is not sent (the peer's deadline still ends the call).
pub(crate) const MAX_PENDING_CANCELS: usize = 1024;

/// What one side understands beyond calls, replies and pushes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Features {
    /// Kind 4: a caller's cancel of its call.
    pub(crate) cancel: bool,
    /// Kinds 5 and 6: streams of items under credit.
    pub(crate) stream: bool,
}

impl Features {
    /// Everything this build of drpc understands.
    pub(crate) const ALL: Self = Self {
        cancel: true,
        stream: true,
    };

    /// Reads a `drpc-features` value: names separated by commas, unknown
    /// ones ignored (a newer peer lists more than this side knows).
    pub(crate) fn parse(value: &str) -> Self {
        let mut f = Self::default();
        for name in value.split(',').map(str::trim) {
            match name {
                "cancel" => f.cancel = true,
                "stream" => f.stream = true,
                _ => {}
            }
        }
        f
    }

    /// The `drpc-features` value that lists these features.
    pub(crate) fn value(self) -> &'static str {
        match (self.cancel, self.stream) {
            (true, true) => "cancel,stream",
            (true, false) => "cancel",
            (false, true) => "stream",
            (false, false) => "",
        }
    }

    /// What both sides understand.
    pub(crate) fn and(self, other: Self) -> Self {
        Self {
            cancel: self.cancel && other.cancel,
            stream: self.stream && other.stream,
        }
    }
}

/// What this side knows of the peer's features.
#[derive(Debug, Default)]
pub(crate) enum Peer {
    /// Nothing yet: nothing beyond the first three kinds is sent.
    #[default]
    Unknown,
    /// This side sent its hello as call `seq` and waits for the answer;
    /// cancels made meanwhile wait for it too.
    Asked { seq: u32, cancels: Vec<u32> },
    /// The peer said (or an error answer to the hello said: nothing).
    Known(Features),
}

/// The hello call a dialer sends first: codec raw, an empty body, the
/// features in its meta.
pub(crate) fn hello_call(seq: u32, ours: Features) -> Message {
    let mut h = Header::call(seq, HELLO);
    h.codec = CodecId::RAW;
    h.timeout = Some(HELLO_TIMEOUT);
    h.meta.insert(FEATURES_KEY, ours.value());
    Message::new(h, Bytes::new())
}

/// The answer to a hello: status 0, the call's codec, an empty body, this
/// side's features in the meta.
pub(crate) fn hello_reply(seq: u32, codec: CodecId, ours: Features) -> Message {
    let mut h = Header::reply(seq);
    h.codec = codec;
    h.meta.insert(FEATURES_KEY, ours.value());
    Message::new(h, Bytes::new())
}

/// What a hello call, or the answer to this side's, says the peer knows.
/// An error answer (404 from a peer that predates the hello) says nothing.
pub(crate) fn peer_features(header: &Header) -> Features {
    match header.status_code {
        0 => header
            .meta
            .get(FEATURES_KEY)
            .map(Features::parse)
            .unwrap_or_default(),
        _ => Features::default(),
    }
}

/// The cancel of this side's call `seq` (kind 4, status 499).
pub(crate) fn cancel(seq: u32) -> Message {
    Message::new(Header::cancel(seq), Bytes::new())
}

/// The status a handler's cancelled call ends with, for plugins and logs
/// (nothing is sent).
pub(crate) fn cancelled_status() -> Status {
    Status::canceled("the caller cancelled the call")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_read_leniently_and_written_plainly() {
        assert!(Features::parse("cancel").cancel);
        assert!(Features::parse("stream/9, cancel ,x").cancel);
        assert!(!Features::parse("").cancel);
        assert!(!Features::parse("cancelled").cancel);
        assert_eq!(Features::ALL.value(), "cancel,stream");
        assert_eq!(Features::parse(Features::ALL.value()), Features::ALL);
    }

    #[test]
    fn an_error_answer_to_the_hello_means_no_features() {
        let mut old = Header::reply(1);
        old.status_code = 404;
        old.meta.insert(FEATURES_KEY, "cancel");
        assert_eq!(peer_features(&old), Features::default());
        let new = hello_reply(1, CodecId::RAW, Features::ALL);
        assert_eq!(peer_features(&new.header), Features::ALL);
        let call = hello_call(1, Features::ALL);
        assert_eq!(peer_features(&call.header), Features::ALL);
        assert_eq!(call.header.service_method, HELLO);
    }
}
