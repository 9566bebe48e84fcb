//! The hello and the cancels it allows, between two cores
//! (docs/PROTOCOL.md sections 3.2 and 3.3).

use super::*;

use crate::core::features::{Features, HELLO, MAX_PENDING_CANCELS};
use crate::core::wire;
use drpc_codec::CodecId;

/// A dialer `a` that said hello and an acceptor `b`, established, with the
/// hello still on its way.
fn hello_pair() -> (Clock, Side, Side) {
    let (clock, mut a, b) = established_pair();
    assert!(a.core.start_hello().is_none(), "no writer waits yet");
    (clock, a, b)
}

#[test]
fn a_hello_tells_each_side_what_the_other_takes() {
    let (clock, mut a, mut b) = hello_pair();
    let at_b = a.send_to(&mut b, clock.now());
    assert!(matches!(at_b[..], [Event::Hello(_)]), "{at_b:?}");
    assert_eq!(b.core.peer_features(), Some(Features::ALL));
    assert_eq!(a.core.peer_features(), None, "not before the answer");
    a.send_to(&mut b, clock.now());
    let at_a = b.send_to(&mut a, clock.now());
    assert!(matches!(at_a[..], [Event::Hello(None)]), "{at_a:?}");
    assert_eq!(a.core.peer_features(), Some(Features::ALL));
    // The hello is not a call in flight, and its seq is not reused.
    assert_eq!(a.core.calls.len(), 0);
    assert_eq!(a.call("/m", b"", SEC, clock.now()), 2);
}

#[test]
fn a_cancel_stops_the_peer_s_call_and_its_reply() {
    let (clock, mut a, mut b) = hello_pair();
    let seq = a.call("/slow", b"", SEC, clock.now());
    let at_b = a.send_to(&mut b, clock.now());
    let call = match &at_b[..] {
        [Event::Hello(_), Event::Call(call)] => call.clone(),
        other => panic!("expected the hello's answer and the call, got {other:?}"),
    };
    // Given up before the answer to the hello: the cancel waits for it.
    a.core.calls.forget(seq);
    assert!(a.core.cancel(seq).is_none());
    assert!(matches!(a.core.next_write(|| 99), WriteStep::Wait));
    let at_a = b.send_to(&mut a, clock.now());
    assert!(matches!(at_a[..], [Event::Hello(Some(_))]), "{at_a:?}");
    let at_b = a.send_to(&mut b, clock.now());
    assert!(
        matches!(at_b[..], [Event::Cancelled(s)] if s == seq),
        "{at_b:?}"
    );
    assert_eq!(b.core.handling(), 0, "b owes no answer any more");
    // The handler's late answer is not sent.
    assert!(matches!(b.answer(&call, b"late"), ReplyWrite::Writer(None)));
    assert!(b.send_to(&mut a, clock.now()).is_empty());
    // A second cancel, for a call no longer handled, is ignored.
    a.core.cancel(seq);
    let at_b = a.send_to(&mut b, clock.now());
    assert!(
        at_b.iter().all(|e| matches!(e, Event::Dropped(_))),
        "{at_b:?}"
    );
}

#[test]
fn a_peer_that_answers_the_hello_with_an_error_is_sent_no_cancel() {
    let (clock, mut a, _) = hello_pair();
    let seq = a.call("/slow", b"", SEC, clock.now());
    a.core.calls.forget(seq);
    a.core.cancel(seq);
    // A peer written before the hello: 404, like any unknown method.
    let old = wire::error_reply(1, CodecId::RAW, &Status::not_found("no handler"));
    let event = a.core.on_frame(Frame::Message(Box::new(old)), clock.now());
    assert!(matches!(event, Event::Hello(None)), "{event:?}");
    assert_eq!(a.core.peer_features(), Some(Features::default()));
    a.core.cancel(seq);
    let mut kinds = Vec::new();
    while let WriteStep::Batch(batch, _) = a.core.next_write(|| 99) {
        kinds.extend(frames(&batch.bytes).into_iter().map(|m| m.header.kind));
    }
    assert_eq!(
        kinds,
        [Kind::Call, Kind::Call],
        "the hello and the call only"
    );
}

#[test]
fn a_held_call_that_is_cancelled_never_runs() {
    let clock = Clock::new();
    let mut a = Side::established(clock.now());
    let mut b = Side::new(clock.now(), 1024);
    a.core.start_hello();
    let seq = a.call("/slow", b"", SEC, clock.now());
    let at_b = a.send_to(&mut b, clock.now());
    assert!(
        matches!(at_b[..], [Event::Hello(_), Event::Held]),
        "{at_b:?}"
    );
    b.send_to(&mut a, clock.now());
    a.core.calls.forget(seq);
    a.core.cancel(seq);
    let at_b = a.send_to(&mut b, clock.now());
    assert!(matches!(at_b[..], [Event::Cancelled(_)]), "{at_b:?}");
    assert!(b.core.establish().is_empty());
}

#[test]
fn only_the_first_hello_is_answered_by_the_core() {
    let (clock, mut a, mut b) = hello_pair();
    a.send_to(&mut b, clock.now());
    a.call(HELLO, b"", SEC, clock.now());
    let at_b = a.send_to(&mut b, clock.now());
    assert!(matches!(at_b[..], [Event::Call(_)]), "{at_b:?}");
}

#[test]
fn cancels_waiting_for_the_hello_are_bounded() {
    let (clock, mut a, mut b) = hello_pair();
    a.send_to(&mut b, clock.now());
    for seq in 1000..1000 + MAX_PENDING_CANCELS as u32 + 10 {
        a.core.cancel(seq);
    }
    b.send_to(&mut a, clock.now());
    let cancelled = a
        .send_to(&mut b, clock.now())
        .into_iter()
        .filter(|e| matches!(e, Event::Dropped(_)))
        .count();
    assert_eq!(cancelled, MAX_PENDING_CANCELS);
}

/// The messages in a written batch.
fn frames(bytes: &[u8]) -> Vec<Message> {
    let mut inbound = Inbound::new(
        RawProto.framer(&limits()),
        1024,
        Duration::from_secs(30),
        Instant::now(),
    );
    let (buf, offered) = inbound.room();
    buf.put_slice(bytes);
    inbound.filled(offered, bytes.len(), Instant::now());
    let mut out = Vec::new();
    while let Some(Frame::Message(m)) = inbound.next().expect("well-formed frames") {
        out.push(*m);
    }
    out
}

#[test]
fn a_cancel_before_any_hello_breaks_the_protocol() {
    let (clock, _, mut b) = established_pair();
    let cancel = crate::core::features::cancel(1);
    let event = b
        .core
        .on_frame(Frame::Message(Box::new(cancel)), clock.now());
    assert!(matches!(event, Event::Fatal(_)), "{event:?}");
}

#[test]
fn stream_frames_need_both_sides_to_take_streams() {
    let (clock, mut a, mut b) = hello_pair();
    a.send_to(&mut b, clock.now());
    // Both take streams: an item for no open stream is dropped.
    let item = || Message::new(Header::item(1, 0, 1, CodecId::RAW), b"x".to_vec());
    let event = b
        .core
        .on_frame(Frame::Message(Box::new(item())), clock.now());
    assert!(matches!(event, Event::Answered(None)), "{event:?}");
    // A dialer that said only `cancel`: an item breaks the protocol.
    let (clock, _, mut c) = established_pair();
    let mut hello = Header::call(1, HELLO);
    hello
        .meta
        .insert(crate::core::features::FEATURES_KEY, "cancel");
    c.core.on_frame(
        Frame::Message(Box::new(Message::new(hello, Vec::new()))),
        clock.now(),
    );
    let event = c
        .core
        .on_frame(Frame::Message(Box::new(item())), clock.now());
    assert!(matches!(event, Event::Fatal(_)), "{event:?}");
}

/// A frame as the reader would hand it over.
fn frame(header: Header) -> Frame {
    Frame::Message(Box::new(Message::new(header, Vec::new())))
}

fn call_header(seq: u32) -> Header {
    let mut h = Header::call(seq, "/slow");
    h.timeout = Some(SEC);
    h
}

#[test]
fn over_an_unordered_transport_a_cancel_may_come_before_its_call() {
    let (clock, mut a, mut b) = hello_pair();
    a.send_to(&mut b, clock.now());
    let placeholder = ConnCore::new(
        Outbound::new(RawProto.framer(&limits()), 4096, 16),
        Hold::new(1024),
    );
    let ordered = std::mem::replace(&mut b.core, placeholder);
    b.core = ordered.ordered(false);
    let now = clock.now();
    // Call 7's cancel overtook it: the call is dropped when it comes.
    let early = b.core.on_frame(frame(Header::cancel(7)), now);
    assert!(matches!(early, Event::Dropped(_)), "{early:?}");
    let late = b.core.on_frame(frame(call_header(7)), now);
    assert!(matches!(late, Event::Dropped(_)), "{late:?}");
    assert_eq!(b.core.handling(), 0, "nothing is owed for it");
    // The next call runs, and a cancel older than every call seen (one
    // that crossed its call's reply) is not kept for a call to come.
    let next = b.core.on_frame(frame(call_header(8)), now);
    assert!(matches!(next, Event::Call(_)), "{next:?}");
    b.core.on_frame(frame(Header::cancel(8)), now);
    b.core.on_frame(frame(Header::cancel(5)), now);
    let next = b.core.on_frame(frame(call_header(9)), now);
    assert!(matches!(next, Event::Call(_)), "{next:?}");
    // A cancel that overtook several calls waits for its own.
    b.core.on_frame(frame(Header::cancel(14)), now);
    for seq in 10..14 {
        let call = b.core.on_frame(frame(call_header(seq)), now);
        assert!(matches!(call, Event::Call(_)), "{seq}: {call:?}");
    }
    let late = b.core.on_frame(frame(call_header(14)), now);
    assert!(matches!(late, Event::Dropped(_)), "{late:?}");
}

#[test]
fn over_an_ordered_transport_a_cancel_of_no_call_is_forgotten() {
    let (clock, mut a, mut b) = hello_pair();
    a.send_to(&mut b, clock.now());
    let now = clock.now();
    b.core.on_frame(frame(Header::cancel(7)), now);
    let call = b.core.on_frame(frame(call_header(7)), now);
    assert!(matches!(call, Event::Call(_)), "{call:?}");
}
