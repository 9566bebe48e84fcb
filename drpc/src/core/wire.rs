//! The messages the session makes up itself: error replies and connection
//! notices (docs/PROTOCOL.md sections 3 and 3.1), and the statuses that
//! wire errors map to.

use super::lifecycle::Renewal;
use crate::values::{Code, Status};
use bytes::Bytes;
use drpc_codec::CodecId;
use drpc_proto::{Header, Kind, Message, ProtoError};

/// The longest status message put on the wire; a longer one is cut at a
/// character boundary so a verbose error never makes a reply unencodable.
pub(crate) const MAX_STATUS_MESSAGE: usize = 4096;

/// A reply to call `seq` with `status` and an empty body, in `codec` (the
/// call's: the body is empty, but a peer may look at the byte).
pub(crate) fn error_reply(seq: u32, codec: CodecId, status: &Status) -> Message {
    let mut h = Header::reply(seq);
    h.codec = codec;
    h.status_code = if status.code() == Code::OK {
        Code::UNKNOWN.0
    } else {
        status.code().0
    };
    h.status_message = truncate(status.message()).into();
    Message::new(h, Bytes::new())
}

fn truncate(text: &str) -> &str {
    if text.len() <= MAX_STATUS_MESSAGE {
        return text;
    }
    let mut cut = MAX_STATUS_MESSAGE;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

/// A connection notice (a reply with seq 0) with `status`, codec 1.
pub(crate) fn notice(status: &Status) -> Message {
    error_reply(0, CodecId::MSGPACK, status)
}

/// The notice that tells the peer this side is shutting down: it takes no
/// new calls, answers the running ones, then closes.
pub(crate) fn going_away_notice() -> Message {
    notice(&Status::connection_closed(
        "shutting down: no new calls; running calls are still answered",
    ))
}

/// The meta key of a going-away notice that says why the sender leaves
/// this connection (docs/PROTOCOL.md section 3.1).
pub(crate) const NOTICE_REASON: &str = "reason";

/// The going-away notice that asks the peer for a new connection: the
/// session expired here (its maximum age, or its idle timeout).
pub(crate) fn renew_notice(renewal: Renewal) -> Message {
    let why = match renewal {
        Renewal::MaxAge => "renewing the connection: the session reached its maximum age",
        Renewal::Idle => "closing the connection: the session was idle",
        Renewal::Restart => {
            "restarting: a new process serves this address; running calls are still answered"
        }
    };
    let mut msg = notice(&Status::connection_closed(why));
    msg.header.meta.insert(NOTICE_REASON, renewal.reason());
    msg
}

/// The renewal a going-away notice asks for, if it names one.
pub(crate) fn notice_renewal(header: &Header) -> Option<Renewal> {
    let reason = header.meta.get(NOTICE_REASON)?;
    (header.status_code == Code::CONNECTION_CLOSED.0)
        .then(|| Renewal::from_reason(reason))
        .flatten()
}

/// What a notice from the peer says, or `None` for one that asks nothing
/// (status 0).
pub(crate) fn notice_status(header: &Header) -> Option<Status> {
    (header.status_code != Code::OK.0).then(|| {
        Status::new(
            Code(header.status_code),
            format!("notice from the peer: {}", header.status_message),
        )
    })
}

/// Whether a notice status means "going away" (as opposed to a refusal).
pub(crate) fn is_going_away(status: &Status) -> bool {
    status.code() == Code::CONNECTION_CLOSED
}

/// The status for a message this side could not encode.
pub(crate) fn encode_status(err: &ProtoError) -> Status {
    match err {
        ProtoError::FrameTooLarge { .. } | ProtoError::HeaderTooLarge { .. } => {
            Status::message_too_large(err.to_string())
        }
        _ => Status::bad_message(err.to_string()),
    }
}

/// The status that ends a connection whose peer sent bytes that break the
/// protocol, and the 413 reply owed first when the frame was an oversize
/// call whose seq could be read (its codec could not be: codec 1).
pub(crate) fn fatal_input(err: &ProtoError) -> (Status, Option<Message>) {
    let status = match err {
        ProtoError::FrameTooLarge { .. } => Status::message_too_large(err.to_string()),
        _ => Status::bad_message(format!("bad input from the peer: {err}")),
    };
    let reply = match err {
        ProtoError::FrameTooLarge {
            kind: Some(Kind::Call),
            seq: Some(seq),
            ..
        } if *seq != 0 => Some(error_reply(*seq, CodecId::MSGPACK, &status)),
        _ => None,
    };
    (status, reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_replies_carry_the_status_and_never_say_ok() {
        let r = error_reply(7, CodecId::JSON, &Status::not_found("no /x"));
        assert_eq!(
            (r.header.kind, r.header.seq, r.header.status_code),
            (Kind::Reply, 7, 404)
        );
        assert_eq!(r.header.codec, CodecId::JSON);
        assert_eq!(r.header.status_message, "no /x");
        assert!(r.body.is_empty());
        let r = error_reply(1, CodecId::MSGPACK, &Status::ok());
        assert_eq!(r.header.status_code, -1, "an error reply is never OK");
    }

    #[test]
    fn long_status_messages_are_cut_at_a_character_boundary() {
        let text = "é".repeat(MAX_STATUS_MESSAGE);
        let r = error_reply(1, CodecId::MSGPACK, &Status::internal(text));
        assert!(r.header.status_message.len() <= MAX_STATUS_MESSAGE);
        assert!(r.header.status_message.len() >= MAX_STATUS_MESSAGE - 1);
    }

    #[test]
    fn notices_are_replies_with_seq_zero() {
        let n = going_away_notice();
        assert_eq!(
            (n.header.kind, n.header.seq, n.header.status_code),
            (Kind::Reply, 0, 102)
        );
        let s = notice_status(&n.header).unwrap();
        assert!(is_going_away(&s));
        assert!(s
            .message()
            .starts_with("notice from the peer: shutting down"));
        assert!(notice_status(&Header::reply(0)).is_none());
        let refused = notice(&Status::overloaded("full"));
        assert!(!is_going_away(&notice_status(&refused.header).unwrap()));
    }

    #[test]
    fn a_renewal_notice_is_a_going_away_notice_that_says_why() {
        for r in [Renewal::MaxAge, Renewal::Idle] {
            let n = renew_notice(r);
            assert!(is_going_away(&notice_status(&n.header).unwrap()));
            assert_eq!(notice_renewal(&n.header), Some(r));
        }
        assert_eq!(notice_renewal(&going_away_notice().header), None);
        // A refusal that carries the key is still a refusal.
        let mut refused = notice(&Status::overloaded("full"));
        refused.header.meta.insert(NOTICE_REASON, "idle");
        assert_eq!(notice_renewal(&refused.header), None);
    }

    #[test]
    fn an_oversize_call_is_owed_a_413_before_the_connection_ends() {
        let err = ProtoError::FrameTooLarge {
            len: 10,
            max: 5,
            kind: Some(Kind::Call),
            seq: Some(4),
        };
        let (status, reply) = fatal_input(&err);
        assert_eq!(status.code(), Code::MESSAGE_TOO_LARGE);
        assert_eq!(reply.unwrap().header.seq, 4);
        let push = ProtoError::FrameTooLarge {
            len: 10,
            max: 5,
            kind: Some(Kind::Push),
            seq: Some(0),
        };
        assert!(fatal_input(&push).1.is_none());
        let (status, reply) = fatal_input(&ProtoError::UnknownKind(9));
        assert_eq!(status.code(), Code::BAD_MESSAGE);
        assert!(reply.is_none());
    }
}
