//! The stream state's rules, one connection's worth, without I/O.

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
        (Some(2), None),
        "the waiter wakes"
    );
    assert_eq!(
        s.on_credit(Role::Callee, 3, 3, 20),
        (None, None),
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

#[test]
fn a_callers_end_waits_for_the_first_credit() {
    let mut s = Streams::<u32>::default();
    let nothing = Window { items: 0, bytes: 0 };
    s.open(Role::Caller, 5, None, Some(nothing));
    assert_eq!(
        s.take_credit(Role::Caller, 5, 0, || 1),
        Err(SendRefused::NoCredit),
        "nothing goes before the callee's first credit"
    );
    let failed = Some(Status::canceled("dropped"));
    assert_eq!(
        s.end_send(Role::Caller, 5, failed.clone()),
        (EndSend::Later, Some(1)),
        "the waiting send wakes and finds the direction over"
    );
    assert_eq!(
        s.take_credit(Role::Caller, 5, 0, || 1),
        Err(SendRefused::Gone)
    );
    assert_eq!(
        s.on_credit(Role::Caller, 5, 256, 1 << 20),
        (None, Some((0, failed))),
        "the end goes with the first credit"
    );
    assert_eq!(
        s.on_credit(Role::Caller, 5, 512, 2 << 20),
        (None, None),
        "and only once"
    );
    assert_eq!(s.end_send(Role::Caller, 5, None), (EndSend::Over, None));
}

#[test]
fn an_end_after_credit_goes_at_once_and_a_reply_stops_the_sender() {
    let mut s = Streams::<u32>::default();
    s.open(Role::Caller, 6, None, Some(Window { items: 0, bytes: 0 }));
    s.on_credit(Role::Caller, 6, 4, 100);
    assert_eq!(s.take_credit(Role::Caller, 6, 10, || 1), Ok(1));
    assert_eq!(s.end_send(Role::Caller, 6, None), (EndSend::Now(1), None));
    s.open(Role::Caller, 7, None, Some(Window { items: 0, bytes: 0 }));
    s.on_credit(Role::Caller, 7, 1, 100);
    s.take_credit(Role::Caller, 7, 1, || 1).unwrap();
    assert_eq!(
        s.take_credit(Role::Caller, 7, 1, || 2),
        Err(SendRefused::NoCredit)
    );
    assert_eq!(s.stop_sending(Role::Caller, 7), Some(2), "the sender wakes");
    assert_eq!(
        s.take_credit(Role::Caller, 7, 1, || 2),
        Err(SendRefused::Gone)
    );
    assert_eq!(
        s.end_send(Role::Caller, 7, None),
        (EndSend::Over, None),
        "no end after the reply"
    );
}
