//! Pins the raw proto to the bytes `docs/PROTOCOL.md` shows, and checks that
//! hostile input is refused cleanly.

use bytes::{BufMut, Bytes, BytesMut};
use drpc_proto::{
    CodecId, FrameLimits, Framer, Header, Kind, Message, Meta, Proto, ProtoError, RawProto,
};
use proptest::prelude::*;
use std::time::Duration;

fn framer() -> Box<dyn Framer> {
    RawProto.framer(&FrameLimits::default())
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn unhex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn encode(msg: &Message) -> Vec<u8> {
    let mut out = BytesMut::new();
    framer().encode(msg, &mut out).unwrap();
    out.to_vec()
}

/// The call of the worked example in docs/PROTOCOL.md: `/math/add` with
/// `{"a":1,"b":2}` in MessagePack, seq 1, 5 s timeout, meta `k=v`.
fn example_call() -> Message {
    let mut h = Header::call(1, "/math/add");
    h.timeout = Some(Duration::from_secs(5));
    h.meta.insert("k", "v");
    Message::new(h, unhex("82 a1 61 01 a1 62 02"))
}

const EXAMPLE_CALL_HEX: &str = "00 00 00 2d 01 01 01 00 00 00 00 01 00 00 13 88 00 00 00 00 \
     00 09 2f 6d 61 74 68 2f 61 64 64 00 00 00 00 01 00 01 6b 00 01 76 \
     82 a1 61 01 a1 62 02";

const EXAMPLE_REPLY_HEX: &str =
    "00 00 00 18 01 02 01 00 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 03";

const EXAMPLE_ERROR_HEX: &str = "00 00 00 20 01 02 01 00 00 00 00 02 00 00 00 00 00 00 01 94 \
     00 00 00 09 6e 6f 74 20 66 6f 75 6e 64 00 00 00";

#[test]
fn golden_call_bytes() {
    let bytes = encode(&example_call());
    assert_eq!(hex(&bytes), hex(&unhex(EXAMPLE_CALL_HEX)));
    let back = framer()
        .decode(&mut BytesMut::from(&bytes[..]))
        .unwrap()
        .unwrap();
    assert_eq!(back, example_call());
}

#[test]
fn golden_reply_bytes() {
    let reply = Message::new(Header::reply(1), vec![0x03]);
    assert_eq!(hex(&encode(&reply)), hex(&unhex(EXAMPLE_REPLY_HEX)));
}

#[test]
fn golden_error_reply_bytes() {
    let mut h = Header::reply(2);
    h.status_code = 404;
    h.status_message = "not found".into();
    let reply = Message::new(h, Bytes::new());
    assert_eq!(hex(&encode(&reply)), hex(&unhex(EXAMPLE_ERROR_HEX)));
}

/// docs/PROTOCOL.md section 3.1: the notice that refuses a connection.
#[test]
fn golden_refusal_notice_bytes() {
    let mut h = Header::reply(0);
    h.status_code = 503;
    h.status_message = "full".into();
    let notice = Message::new(h, Bytes::new());
    assert_eq!(
        hex(&encode(&notice)),
        hex(&unhex(
            "00 00 00 1b 01 02 01 00 00 00 00 00 00 00 00 00 00 00 01 f7 \
             00 00 00 04 66 75 6c 6c 00 00 00"
        ))
    );
}

#[test]
fn golden_push_bytes() {
    let mut h = Header::push("/hello");
    h.codec = CodecId::TEXT;
    let push = Message::new(h, &b"hi"[..]);
    assert_eq!(
        hex(&encode(&push)),
        "00 00 00 1f 01 03 04 00 00 00 00 00 00 00 00 00 00 00 00 00 \
         00 06 2f 68 65 6c 6c 6f 00 00 00 00 00 68 69"
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    );
}

#[test]
fn decodes_a_frame_that_arrives_byte_by_byte() {
    let bytes = encode(&example_call());
    let mut f = framer();
    let mut buf = BytesMut::new();
    for (i, b) in bytes.iter().enumerate() {
        let room = buf.capacity();
        assert_eq!(
            f.decode(&mut buf).unwrap(),
            None,
            "complete too early at {i}"
        );
        // Room for the rest is the reader's to size (it pools its buffers).
        assert_eq!(buf.capacity(), room, "a partial frame reserves nothing");
        buf.put_u8(*b);
    }
    assert_eq!(f.decode(&mut buf).unwrap(), Some(example_call()));
    assert!(buf.is_empty());
}

#[test]
fn decodes_back_to_back_frames() {
    let mut buf = BytesMut::new();
    let mut f = framer();
    for seq in 0..3 {
        let mut m = example_call();
        m.header.seq = seq;
        f.encode(&m, &mut buf).unwrap();
    }
    for seq in 0..3 {
        assert_eq!(f.decode(&mut buf).unwrap().unwrap().header.seq, seq);
    }
    assert_eq!(f.decode(&mut buf).unwrap(), None);
}

#[test]
fn huge_declared_length_is_refused_before_allocation() {
    let mut buf = BytesMut::from(&unhex("ff ff ff ff 01 01 01 00 00 00 00 09")[..]);
    let cap = buf.capacity();
    let err = framer().decode(&mut buf).unwrap_err();
    assert_eq!(
        err,
        ProtoError::FrameTooLarge {
            len: 4 + u32::MAX as u64,
            max: drpc_proto::DEFAULT_MAX_FRAME_LEN,
            kind: Some(Kind::Call),
            seq: Some(9),
        }
    );
    assert_eq!(
        buf.capacity(),
        cap,
        "nothing may be reserved for a refused frame"
    );
}

#[test]
fn outgoing_frames_over_the_limit_are_refused() {
    let mut f = RawProto.framer(&FrameLimits::new(64));
    let msg = Message::new(Header::call(3, "/x"), vec![0u8; 64]);
    let mut out = BytesMut::new();
    let err = f.encode(&msg, &mut out).unwrap_err();
    assert!(
        matches!(err, ProtoError::FrameTooLarge { seq: Some(3), .. }),
        "{err}"
    );
    assert!(out.is_empty());
}

#[test]
fn oversize_fields_are_unencodable() {
    let msg = Message::new(Header::call(1, "x".repeat(70_000)), Bytes::new());
    let err = framer().encode(&msg, &mut BytesMut::new()).unwrap_err();
    assert!(matches!(err, ProtoError::Unencodable(_)), "{err}");
}

#[test]
fn bad_fields_are_named() {
    let good = encode(&example_call());
    let cases: [(usize, u8, ProtoError); 3] = [
        (4, 2, ProtoError::UnsupportedVersion(2)),
        (5, 9, ProtoError::UnknownKind(9)),
        (6, 0, ProtoError::UnknownCodec(0)),
    ];
    for (at, value, want) in cases {
        let mut bad = good.clone();
        bad[at] = value;
        assert_eq!(framer().decode(&mut BytesMut::from(&bad[..])), Err(want));
    }
    // Any other codec id frames: whether it is known is the receiver's
    // business (it answers a call in an unknown codec with 400).
    let mut custom = good.clone();
    custom[6] = 200;
    let msg = framer()
        .decode(&mut BytesMut::from(&custom[..]))
        .unwrap()
        .unwrap();
    assert_eq!(msg.header.codec.as_u8(), 200);
    let mut bad = good.clone();
    bad[7] = 1;
    assert!(matches!(
        framer().decode(&mut BytesMut::from(&bad[..])),
        Err(ProtoError::Malformed(_))
    ));
    // A service method length that runs past the end of the frame.
    let mut bad = good.clone();
    bad[20] = 0xff;
    assert!(matches!(
        framer().decode(&mut BytesMut::from(&bad[..])),
        Err(ProtoError::Malformed(_))
    ));
    // Invalid UTF-8 in the service method.
    let mut bad = good;
    bad[22] = 0xff;
    assert!(matches!(
        framer().decode(&mut BytesMut::from(&bad[..])),
        Err(ProtoError::Malformed(_))
    ));
}

/// A call frame for `/m` (seq 5) with `pairs` empty meta pairs.
fn call_with_empty_pairs(pairs: u16) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[1, 1, 1, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0]);
    f.extend_from_slice(&[0, 2, b'/', b'm', 0, 0, 0]);
    f.extend_from_slice(&pairs.to_be_bytes());
    for _ in 0..pairs {
        f.extend_from_slice(&[0, 0, 0, 0]);
    }
    let mut frame = (f.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&f);
    frame
}

#[test]
fn meta_counts_its_length_bytes_and_over_the_limit_is_not_fatal() {
    // 65,535 empty pairs: no key or value bytes, but 262,140 bytes of
    // lengths, far over the 16 KiB default.
    let mut buf = BytesMut::from(&call_with_empty_pairs(u16::MAX)[..]);
    buf.extend_from_slice(&encode(&example_call()));
    let mut f = framer();
    let err = f.decode(&mut buf).unwrap_err();
    assert_eq!(
        err,
        ProtoError::HeaderTooLarge {
            what: "meta",
            len: 4 * u16::MAX as usize,
            max: 16 * 1024,
            kind: Kind::Call,
            seq: 5,
            codec: CodecId::MSGPACK,
        }
    );
    assert!(!err.is_fatal());
    // The frame was consumed: the next one decodes.
    assert_eq!(f.decode(&mut buf).unwrap().unwrap(), example_call());

    // The limit is inclusive: 4,096 empty pairs are exactly 16 KiB.
    let mut buf = BytesMut::from(&call_with_empty_pairs(4096)[..]);
    let msg = f.decode(&mut buf).unwrap().unwrap();
    assert_eq!(msg.header.meta.len(), 4096);
    assert_eq!(msg.header.meta.wire_len(), 16 * 1024);
    let mut buf = BytesMut::from(&call_with_empty_pairs(4097)[..]);
    assert!(matches!(
        f.decode(&mut buf),
        Err(ProtoError::HeaderTooLarge { what: "meta", .. })
    ));
}

#[test]
fn the_method_limit_holds_both_ways_and_is_inclusive() {
    let limits = FrameLimits::default().with_method_len(4);
    let mut f = RawProto.framer(&limits);
    let mut out = BytesMut::new();
    f.encode(&Message::new(Header::push("/abc"), Bytes::new()), &mut out)
        .unwrap();
    assert!(f.decode(&mut out).unwrap().is_some());
    let long = Message::new(Header::call(2, "/abcd"), Bytes::new());
    let err = f.encode(&long, &mut out).unwrap_err();
    assert!(
        matches!(
            err,
            ProtoError::HeaderTooLarge {
                what: "service method",
                len: 5,
                max: 4,
                seq: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(out.is_empty(), "nothing is written for a refused message");
    // Written by a peer with a larger limit, it is refused on reading.
    let mut wire = BytesMut::from(&encode(&long)[..]);
    assert!(matches!(
        f.decode(&mut wire),
        Err(ProtoError::HeaderTooLarge {
            kind: Kind::Call,
            seq: 2,
            ..
        })
    ));
    assert!(wire.is_empty());
}

#[test]
fn received_meta_stays_in_the_frame_and_encodes_unchanged() {
    let bytes = encode(&example_call());
    let msg = framer()
        .decode(&mut BytesMut::from(&bytes[..]))
        .unwrap()
        .unwrap();
    assert_eq!(msg.header.meta.get("k"), Some("v"));
    // Forwarded as it came, byte for byte.
    assert_eq!(encode(&msg), bytes);
}

#[test]
fn short_length_is_malformed() {
    let mut buf = BytesMut::from(&unhex("00 00 00 05 01 01 01 00 00")[..]);
    assert!(matches!(
        framer().decode(&mut buf),
        Err(ProtoError::Malformed(_))
    ));
}

/// The frames of the first hex block after `heading` in docs/PROTOCOL.md:
/// its lines of hex pairs, one frame per run of them between blank lines.
fn spec_frames(heading: &str) -> Vec<Vec<u8>> {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md"))
        .unwrap();
    let section = spec.split(heading).nth(1).expect("the section");
    let block = section.split("```text\n").nth(1).unwrap();
    let block = block.split("```").next().unwrap();
    let is_pair = |w: &str| w.len() == 2 && w.chars().all(|c| c.is_ascii_hexdigit());
    block
        .split("\n\n")
        .map(|frame| {
            let hex: Vec<&str> = frame
                .lines()
                .filter(|line| line.split_whitespace().all(is_pair))
                .flat_map(str::split_whitespace)
                .collect();
            unhex(&hex.join(" "))
        })
        .collect()
}

#[test]
fn golden_stream_frames() {
    use drpc_proto::flag::{END, FROM_CALLER};
    let frames = spec_frames("### 3.4 Streams");
    let item = Message::new(
        Header::item(7, 0, 1, CodecId::RAW),
        Bytes::from_static(b"hi"),
    );
    let end = Message::new(Header::items_end(7, 3), Bytes::new());
    assert_eq!(end.header.flags, FROM_CALLER | END);
    let credit = Message::credit(7, FROM_CALLER, 256, 16 << 20);
    let want = [item, end, credit];
    assert_eq!(frames.len(), want.len());
    for (bytes, msg) in frames.iter().zip(&want) {
        assert_eq!(hex(&encode(msg)), hex(bytes));
        let back = framer()
            .decode(&mut BytesMut::from(&bytes[..]))
            .unwrap()
            .unwrap();
        assert_eq!(&back, msg);
    }
    assert_eq!(want[0].header.count(), 1);
    assert_eq!(want[2].credit_bytes(), Some(16 << 20));
}

#[test]
fn flags_are_refused_where_a_kind_does_not_use_them() {
    use drpc_proto::flag::{END, FROM_CALLER};
    let cases = [
        (Kind::Call, FROM_CALLER),
        (Kind::Cancel, FROM_CALLER),
        (Kind::Item, 0x04),
        (Kind::Credit, END),
    ];
    for (kind, flags) in cases {
        let mut bad = encode(&Message::new(
            Header::item(7, 0, 1, CodecId::RAW),
            Bytes::new(),
        ));
        bad[5] = kind as u8;
        bad[7] = flags;
        assert!(
            matches!(
                framer().decode(&mut BytesMut::from(&bad[..])),
                Err(ProtoError::Malformed(_))
            ),
            "{kind:?} with flags {flags:#04x}"
        );
    }
}

fn arb_string() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-z/\\-é]{0,12}").unwrap()
}

fn arb_message() -> impl Strategy<Value = Message> {
    (
        prop_oneof![
            Just(Kind::Call),
            Just(Kind::Reply),
            Just(Kind::Push),
            Just(Kind::Cancel)
        ],
        any::<u32>(),
        arb_string(),
        proptest::option::of(1u64..100_000),
        any::<i32>(),
        arb_string(),
        proptest::sample::select(CodecId::ALL.to_vec()),
        proptest::collection::vec(any::<u8>(), 0..4),
        proptest::collection::vec((arb_string(), arb_string()), 0..4),
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(
            |(kind, seq, method, timeout, code, status, codec, filters, meta, body)| {
                let mut h = Header::call(seq, method);
                h.kind = kind;
                h.timeout = timeout.map(Duration::from_millis);
                h.status_code = code;
                h.status_message = status.into();
                h.codec = codec;
                h.filters = filters.into();
                h.meta = meta.into_iter().collect::<Meta>();
                Message::new(h, body)
            },
        )
}

proptest! {
    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut f = framer();
        let mut buf = BytesMut::from(&bytes[..]);
        // Keep decoding until the decoder wants more bytes or refuses.
        for _ in 0..bytes.len() + 1 {
            match f.decode(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
    }

    #[test]
    fn decoder_never_panics_on_mutated_frames(
        msg in arb_message(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = encode(&msg);
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        let _ = framer().decode(&mut BytesMut::from(&bytes[..]));
    }

    #[test]
    fn every_message_round_trips(msg in arb_message()) {
        let bytes = encode(&msg);
        let back = framer().decode(&mut BytesMut::from(&bytes[..])).unwrap().unwrap();
        prop_assert_eq!(back, msg);
    }
}
