//! Bytes from a hostile or broken peer close only that peer's session, with
//! a reason; the endpoint keeps serving everyone else. Also a client that
//! speaks the wire format from docs/PROTOCOL.md by hand.

mod common;

use bytes::BytesMut;
use common::*;
use drpc::proto::{FrameLimits, Kind, Proto, RawProto};
use drpc::{Code, Session, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn unhex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

/// The worked example of docs/PROTOCOL.md: a call of `/math/add` with
/// `{"a":1,"b":2}`, seq 1, 5 s timeout, meta `k=v`.
const CALL: &str = "00 00 00 2d 01 01 01 00 00 00 00 01 00 00 13 88 00 00 00 00 \
    00 09 2f 6d 61 74 68 2f 61 64 64 00 00 00 00 01 00 01 6b 00 01 76 \
    82 a1 61 01 a1 62 02";
/// Its reply: seq 1, OK, msgpack body `3`.
const REPLY: &str =
    "00 00 00 18 01 02 01 00 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 03";

/// Connects a raw socket to the pair's server, writes `bytes`, and returns
/// the server's session for it once that session has closed.
async fn send_raw(p: &mut Pair, bytes: &[u8], then_close: bool) -> (Session, TcpStream) {
    let mut raw = TcpStream::connect(p.addr.target()).await.unwrap();
    let session = within("accept", p.accepts.recv()).await.unwrap();
    raw.write_all(bytes).await.unwrap();
    if then_close {
        raw.shutdown().await.unwrap();
    }
    within("hostile session closes", session.closed()).await;
    (session, raw)
}

async fn still_serving(p: &Pair) {
    let sum: i64 = within("call", p.session.call("/math/add", &Add { a: 2, b: 3 }))
        .await
        .unwrap();
    assert_eq!(sum, 5);
    assert_eq!(p.server.session_count(), 1, "only the good session is left");
}

#[tokio::test]
async fn a_client_written_from_the_spec_gets_the_documented_reply() {
    let p = pair().await;
    let mut raw = TcpStream::connect(p.addr.target()).await.unwrap();
    raw.write_all(&unhex(CALL)).await.unwrap();
    let want = unhex(REPLY);
    let mut got = vec![0u8; want.len()];
    within("reply", raw.read_exact(&mut got)).await.unwrap();
    assert_eq!(got, want);
    p.close().await;
}

#[tokio::test]
async fn bad_input_closes_only_that_session_with_a_reason() {
    let good = unhex(CALL);
    let with = |at: usize, value: u8| {
        let mut b = good.clone();
        b[at] = value;
        b
    };
    let cases: Vec<(&str, Vec<u8>, Code, &str)> = vec![
        (
            "http request",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            Code::MESSAGE_TOO_LARGE,
            "exceeds the limit",
        ),
        (
            "huge declared length",
            unhex("ff ff ff ff 01 03 01 00"),
            Code::MESSAGE_TOO_LARGE,
            "exceeds the limit",
        ),
        (
            "wrong version",
            with(4, 7),
            Code::BAD_MESSAGE,
            "unsupported protocol version 7",
        ),
        (
            "unknown message kind",
            with(5, 9),
            Code::BAD_MESSAGE,
            "unknown message kind 9",
        ),
        // Codec 0 only: any other id frames, and a call in a codec the
        // endpoint does not know is answered 400 (tests/codecs.rs).
        (
            "codec zero",
            with(6, 0),
            Code::BAD_MESSAGE,
            "unknown codec id 0",
        ),
        (
            "length below minimum",
            unhex("00 00 00 02 01 01"),
            Code::BAD_MESSAGE,
            "below the minimum",
        ),
        (
            "string past the frame",
            with(21, 0xff),
            Code::BAD_MESSAGE,
            "service method needs",
        ),
        (
            "truncated frame",
            good[..20].to_vec(),
            Code::BAD_MESSAGE,
            "in the middle of a frame",
        ),
    ];
    let mut p = pair().await;
    for (name, bytes, code, text) in cases {
        let (session, _raw) = send_raw(&mut p, &bytes, true).await;
        let reason = session.close_reason().unwrap();
        assert_eq!(reason.code(), code, "{name}: {reason}");
        assert!(reason.message().contains(text), "{name}: {reason}");
        still_serving(&p).await;
    }
    p.close().await;
}

#[tokio::test]
async fn an_oversize_call_is_answered_413_before_the_session_closes() {
    let mut p = pair().await;
    // A call header declaring a 9 MiB frame, over the default 8 MiB limit.
    let mut frame = unhex(CALL);
    frame[..4].copy_from_slice(&(9u32 * 1024 * 1024).to_be_bytes());
    frame[8..12].copy_from_slice(&5u32.to_be_bytes());
    let (session, mut raw) = send_raw(&mut p, &frame, false).await;
    assert_eq!(
        session.close_reason().unwrap().code(),
        Code::MESSAGE_TOO_LARGE
    );

    let mut got = Vec::new();
    within("read to end", raw.read_to_end(&mut got))
        .await
        .unwrap();
    let mut buf = BytesMut::from(&got[..]);
    let reply = RawProto
        .framer(&FrameLimits::default())
        .decode(&mut buf)
        .unwrap()
        .expect("a complete reply frame");
    assert_eq!(reply.header.kind, Kind::Reply);
    assert_eq!(reply.header.seq, 5);
    assert_eq!(reply.header.status_code, Code::MESSAGE_TOO_LARGE.0);
    assert!(buf.is_empty(), "nothing after the reply");
    still_serving(&p).await;
    p.close().await;
}

#[tokio::test]
async fn a_silent_connection_does_not_stop_others() {
    let mut p = pair().await;
    // Half a frame and then nothing: this session waits, the others go on.
    let mut raw = TcpStream::connect(p.addr.target()).await.unwrap();
    let hostile = within("accept", p.accepts.recv()).await.unwrap();
    raw.write_all(&unhex(CALL)[..10]).await.unwrap();
    let sum: i64 = p
        .session
        .call("/math/add", &Add { a: 1, b: 1 })
        .await
        .unwrap();
    assert_eq!(sum, 2);
    assert!(hostile.is_healthy());
    // When the peer goes away mid-frame, the session says so.
    drop(raw);
    within("hostile session closes", hostile.closed()).await;
    still_serving(&p).await;
    p.close().await;
    assert_eq!(
        hostile.close_reason().map(|s: Status| s.code()),
        Some(Code::BAD_MESSAGE),
        "the peer vanished mid-frame"
    );
}

#[tokio::test]
async fn a_call_with_an_unknown_transfer_filter_is_answered_400() {
    let p = pair().await;
    let mut call = drpc::proto::Message::new(
        drpc::proto::Header::call(9, "/math/add"),
        unhex("82 a1 61 01 a1 62 02"),
    );
    call.header.filters = vec![7u8].into();
    let mut wire = BytesMut::new();
    RawProto
        .framer(&FrameLimits::default())
        .encode(&call, &mut wire)
        .unwrap();
    let mut raw = TcpStream::connect(p.addr.target()).await.unwrap();
    raw.write_all(&wire).await.unwrap();
    let reply = read_frame(&mut raw).await;
    assert_eq!((reply.header.seq, reply.header.status_code), (9, 400));
    assert!(reply.header.status_message.contains("transfer filters [7]"));
    p.close().await;
}

/// Collects what the fmt subscriber writes, for asserting on log lines.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<parking_lot::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// A single-threaded runtime, so every task logs to this thread's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn a_closed_hostile_session_is_logged_with_its_reason() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut p = pair().await;
    let (session, _raw) = send_raw(&mut p, &unhex("00 00 00 40 05 01 01 00"), true).await;
    let log = String::from_utf8(captured.0.lock().clone()).unwrap();
    assert!(
        log.lines().any(|l| l.contains("session closed")
            && l.contains(&*session.id())
            && l.contains("unsupported protocol version 5")),
        "no warning names the session and the reason:\n{log}"
    );
    still_serving(&p).await;
    p.close().await;
}

#[tokio::test]
async fn half_a_frame_then_silence_is_closed_after_the_frame_timeout() {
    let config = drpc::Config {
        frame_timeout: std::time::Duration::from_millis(300),
        ..drpc::Config::default()
    };
    let mut p = pair_with(test_router(), drpc::Router::new(), config).await;
    // Slowloris: the start of a frame, then nothing, the socket held open.
    let (session, _raw) = send_raw(&mut p, &unhex(CALL)[..10], false).await;
    let reason = session.close_reason().unwrap();
    assert_eq!(reason.code(), Code::DEADLINE_EXCEEDED, "{reason}");
    assert!(reason.message().contains("10 bytes of a frame"), "{reason}");
    still_serving(&p).await;
    // A session that is merely quiet between frames is left alone.
    assert!(p.session.is_healthy());
    p.close().await;
}

/// Writes `msg` on a raw connection and reads the reply frame.
async fn raw_call(raw: &mut TcpStream, msg: &drpc::proto::Message) -> drpc::proto::Message {
    let mut wire = BytesMut::new();
    // A peer with no method or meta limits of its own.
    let unlimited = FrameLimits::default()
        .with_method_len(usize::MAX)
        .with_meta_len(usize::MAX);
    RawProto.framer(&unlimited).encode(msg, &mut wire).unwrap();
    raw.write_all(&wire).await.unwrap();
    read_frame(raw).await
}

#[tokio::test]
async fn oversize_service_methods_and_meta_are_refused_with_413() {
    let mut p = pair().await;
    let mut raw = TcpStream::connect(p.addr.target()).await.unwrap();
    let raw_session = within("accept", p.accepts.recv()).await.unwrap();
    let add = unhex("82 a1 61 01 a1 62 02");

    let long = format!("/{}", "x".repeat(2000));
    let call = drpc::proto::Message::new(drpc::proto::Header::call(1, long.as_str()), add.clone());
    let reply = raw_call(&mut raw, &call).await;
    assert_eq!((reply.header.seq, reply.header.status_code), (1, 413));
    assert!(
        reply
            .header
            .status_message
            .contains("service method is over its limit: 2001 bytes, the most is 1024"),
        "{reply:?}"
    );

    let mut call =
        drpc::proto::Message::new(drpc::proto::Header::call(2, "/math/add"), add.clone());
    call.header.meta.insert("blob", "y".repeat(20_000));
    let reply = raw_call(&mut raw, &call).await;
    assert_eq!((reply.header.seq, reply.header.status_code), (2, 413));
    // The meta counts its length bytes: 4 + 4 + 20,000.
    assert!(
        reply
            .header
            .status_message
            .contains("meta is over its limit: 20008 bytes, the most is 16384"),
        "{reply:?}"
    );

    // The session is still there: a proper call on it is answered.
    let call = drpc::proto::Message::new(drpc::proto::Header::call(3, "/math/add"), add);
    let reply = raw_call(&mut raw, &call).await;
    assert_eq!((reply.header.seq, reply.header.status_code), (3, 0));

    // A drpc client refuses to send them at all.
    let err = p
        .session
        .call_with::<_, i64>(
            "/math/add",
            &Add { a: 1, b: 1 },
            drpc::CallOptions::new().meta("blob", &"y".repeat(20_000)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::MESSAGE_TOO_LARGE);
    let err = p.session.push(&long, &()).await.unwrap_err();
    assert_eq!(err.code(), Code::MESSAGE_TOO_LARGE);
    drop(raw);
    within("raw session closes", raw_session.closed()).await;
    still_serving(&p).await;
    p.close().await;
}
