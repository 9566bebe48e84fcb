//! The hello, the cancel and streams on the wire (docs/PROTOCOL.md
//! sections 3.2 to 3.4): their bytes, read from the spec, against peers
//! written from the spec alone (bare TCP sockets) on either side.

mod common;

use bytes::BytesMut;
use common::*;
use drpc::proto::{flag, FrameLimits, Framer, Header, Kind, Message, Proto, RawProto};
use drpc::{CallCtx, CallOptions, CodecId, Endpoint, ItemSink, Status};
use std::future::Future;
use std::task::{Context, Waker};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

fn encode(msg: &Message) -> Vec<u8> {
    let mut wire = BytesMut::new();
    RawProto
        .framer(&FrameLimits::default())
        .encode(msg, &mut wire)
        .unwrap();
    wire.to_vec()
}

fn unhex(hex: &str) -> Vec<u8> {
    hex.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

/// The frames of the first hex block after `heading` in the spec: its
/// lines of hex pairs (lines that label them are left out), one frame per
/// run of lines between blank ones.
fn spec_frames(heading: &str) -> Vec<String> {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md"))
        .unwrap();
    let section = spec.split(heading).nth(1).expect("the section");
    let block = section.split("```text\n").nth(1).unwrap();
    let block = block.split("```").next().unwrap();
    let is_pair = |w: &str| w.len() == 2 && w.chars().all(|c| c.is_ascii_hexdigit());
    block
        .split("\n\n")
        .map(|frame| {
            frame
                .lines()
                .filter(|line| line.split_whitespace().all(is_pair))
                .flat_map(str::split_whitespace)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Section 3.2's hello and its answer.
fn spec_hello() -> (String, String) {
    let frames = spec_frames("### 3.2 Hello");
    assert_eq!(frames.len(), 2, "{frames:?}");
    (frames[0].clone(), frames[1].clone())
}

/// A peer written from the spec: whole frames from a buffer kept across
/// reads.
struct Raw {
    sock: TcpStream,
    framer: Box<dyn Framer>,
    buf: BytesMut,
}

impl Raw {
    fn new(sock: TcpStream) -> Self {
        Self {
            sock,
            framer: RawProto.framer(&FrameLimits::default()),
            buf: BytesMut::new(),
        }
    }

    async fn read(&mut self) -> Message {
        loop {
            if let Some(m) = self.framer.decode(&mut self.buf).unwrap() {
                return m;
            }
            let n = within("a frame", self.sock.read_buf(&mut self.buf))
                .await
                .unwrap();
            assert!(n > 0, "the connection closed before a whole frame");
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).await.unwrap();
    }
}

const SECS_10: Duration = Duration::from_secs(10);

/// A stream call as a peer written from the spec makes it: `drpc-stream`
/// set to `kind`, and `drpc-window` when the caller reads items.
fn stream_call(
    seq: u32,
    method: &str,
    kind: &str,
    window: Option<&str>,
    timeout: Duration,
) -> Header {
    let mut call = Header::call(seq, method);
    call.timeout = Some(timeout);
    call.meta.insert("drpc-stream", kind);
    if let Some(window) = window {
        call.meta.insert("drpc-window", window);
    }
    call
}

/// A drpc server for `routes` and a peer written from the spec dialing
/// it, which has said the spec's hello and had the spec's answer.
async fn hello_from_a_raw_peer(routes: drpc::Router) -> (Endpoint, Raw) {
    let (hello, answer) = spec_hello();
    let server = Endpoint::builder().router(routes).build().unwrap();
    let addr = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let mut raw = Raw::new(TcpStream::connect(addr.target()).await.unwrap());
    raw.write(&unhex(&hello)).await;
    assert_eq!(hex(&encode(&raw.read().await)), answer);
    (server, raw)
}

/// A drpc client dialing a peer written from the spec: the client, its
/// dial still under way (the peer has the hello to answer), and the peer.
async fn dial_a_raw_peer() -> (
    Endpoint,
    tokio::task::JoinHandle<Result<drpc::Session, Status>>,
    Raw,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("tcp://{}", listener.local_addr().unwrap());
    let client = Endpoint::builder().build().unwrap();
    let dial = tokio::spawn({
        let client = client.clone();
        async move { client.dial(addr.as_str()).await }
    });
    let (sock, _) = within("accept", listener.accept()).await.unwrap();
    (client, dial, Raw::new(sock))
}

#[test]
fn the_spec_s_cancel_is_what_drpc_writes() {
    let frames = spec_frames("### 3.3 Cancel");
    assert_eq!(frames.len(), 1);
    let cancel = Message::new(Header::cancel(5), bytes::Bytes::new());
    assert_eq!(hex(&encode(&cancel)), frames[0]);
}

/// A dialer says the spec's hello first; once the answer names `cancel`,
/// a call it drops is cancelled with the spec's frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialer_says_hello_and_cancels_a_dropped_call() {
    let (hello, answer) = spec_hello();
    let (client, dial, mut raw) = dial_a_raw_peer().await;
    let first = raw.read().await;
    assert_eq!(hex(&encode(&first)), hello);
    raw.write(&unhex(&answer)).await;
    let session = within("dial", dial).await.unwrap().unwrap();
    let call = tokio::spawn({
        let s = session.clone();
        async move { s.call::<_, ()>("/slow", &()).await }
    });
    let sent = raw.read().await;
    assert_eq!(sent.header.service_method, "/slow");
    call.abort();
    let cancel = raw.read().await;
    assert_eq!(cancel.header, Header::cancel(sent.header.seq));
    assert!(cancel.body.is_empty());
    client.close().await;
}

/// A peer that answers the hello with 404 (written before it) is never
/// sent a cancel: the frame after a dropped call is the next message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_predates_the_hello_is_sent_no_cancel() {
    let (client, dial, raw) = dial_a_raw_peer().await;
    let mut sock = raw.sock;
    let session = within("dial", dial).await.unwrap().unwrap();
    let call = tokio::spawn({
        let s = session.clone();
        async move { s.call::<_, ()>("/slow", &()).await }
    });
    // Whether the 404 reaches the client before it drops the call or
    // after (the cancel then waits for it, and is not sent), no cancel
    // goes out.
    let sent = read_past_hello(&mut sock).await;
    assert_eq!(sent.header.service_method, "/slow");
    call.abort();
    let _ = call.await;
    session.push("/marker", &()).await.unwrap();
    let next = read_frame(&mut sock).await;
    assert_eq!(
        (next.header.kind, &*next.header.service_method),
        (Kind::Push, "/marker")
    );
    client.close().await;
}

/// An acceptor answers the spec's hello with the spec's answer, and the
/// spec's cancel stops the handler with no reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acceptor_answers_the_hello_and_takes_a_cancel() {
    let (dropped_tx, mut dropped) = mpsc::unbounded_channel();
    let mut routes = test_router();
    routes
        .call("/hang", move |_: CallCtx, _: ()| {
            let guard = DropSignal(dropped_tx.clone());
            async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                Ok::<_, Status>(())
            }
        })
        .unwrap();
    let (server, mut raw) = hello_from_a_raw_peer(routes).await;
    let mut hang = Header::call(2, "/hang");
    hang.timeout = Some(Duration::from_secs(30));
    raw.write(&encode(&Message::new(hang, unhex("c0")))).await;
    raw.write(&encode(&Message::new(
        Header::cancel(2),
        bytes::Bytes::new(),
    )))
    .await;
    within("the handler to be dropped", dropped.recv())
        .await
        .unwrap();
    // No reply for seq 2: the next frame answers the next call.
    let mut echo = Header::call(3, "/echo");
    echo.timeout = Some(Duration::from_secs(5));
    raw.write(&encode(&Message::new(echo, unhex("01")))).await;
    let reply = raw.read().await;
    assert_eq!((reply.header.kind, reply.header.seq), (Kind::Reply, 3));
    server.close().await;
}

/// A deadline that passes at the caller sends the cancel too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_deadline_is_cancelled() {
    let (hello, answer) = spec_hello();
    let (client, dial, mut raw) = dial_a_raw_peer().await;
    assert_eq!(hex(&encode(&raw.read().await)), hello);
    raw.write(&unhex(&answer)).await;
    let session = within("dial", dial).await.unwrap().unwrap();
    let opts = CallOptions::new().timeout(Duration::from_millis(100));
    let call = session.call_with::<_, ()>("/slow", &(), opts);
    let (result, sent) = tokio::join!(call, raw.read());
    assert_eq!(result.unwrap_err().code(), drpc::Code::DEADLINE_EXCEEDED);
    let cancel = raw.read().await;
    assert_eq!(cancel.header, Header::cancel(sent.header.seq));
    client.close().await;
}

/// Signals when dropped: a handler's future was dropped.
struct DropSignal(mpsc::UnboundedSender<()>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_hello_is_an_ordinary_call() {
    let (server, mut raw) = hello_from_a_raw_peer(drpc::Router::new()).await;
    raw.write(&unhex(&spec_hello().0)).await;
    let second = raw.read().await;
    assert_eq!(second.header.status_code, 404, "{:?}", second.header);
    server.close().await;
}

/// A server stream against a dialer written from the spec: items numbered
/// from 1 under the window its call gave, no more until its credit, then
/// the reply with `drpc-items`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stream_goes_under_the_callers_credit() {
    let mut routes = test_router();
    routes
        .server_stream(
            "/count",
            |_: CallCtx, n: u8, mut out: ItemSink<u8>| async move {
                for i in 0..n {
                    out.send(&i).await?;
                }
                Ok::<_, Status>(())
            },
        )
        .unwrap();
    let (server, mut raw) = hello_from_a_raw_peer(routes).await;
    // Four items wanted, two allowed at first.
    let call = stream_call(2, "/count", "server", Some("2,1000"), SECS_10);
    raw.write(&encode(&Message::new(call, unhex("04")))).await;
    for n in 1..=2u32 {
        let item = raw.read().await;
        assert_eq!(item.header, Header::item(2, 0, n, CodecId::MSGPACK));
        assert_eq!(item.body[..], [n as u8 - 1]);
    }
    // Item 3 waits for credit: a call made now is answered first.
    let mut echo = Header::call(3, "/echo");
    echo.timeout = Some(Duration::from_secs(5));
    raw.write(&encode(&Message::new(echo, unhex("01")))).await;
    let reply = raw.read().await;
    assert_eq!((reply.header.kind, reply.header.seq), (Kind::Reply, 3));
    raw.write(&encode(&Message::credit(2, flag::FROM_CALLER, 4, 2000)))
        .await;
    for n in 3..=4u32 {
        let item = raw.read().await;
        assert_eq!(item.header, Header::item(2, 0, n, CodecId::MSGPACK));
    }
    let end = raw.read().await;
    assert_eq!(
        (end.header.kind, end.header.seq, end.header.status_code),
        (Kind::Reply, 2, 0)
    );
    assert_eq!(end.header.meta.get("drpc-items"), Some("4"));
    // A stream with no items is its reply alone.
    let over = stream_call(4, "/count", "server", Some("1,1000"), SECS_10);
    raw.write(&encode(&Message::new(over, unhex("00")))).await;
    let end = raw.read().await;
    assert_eq!((end.header.kind, end.header.seq), (Kind::Reply, 4));
    assert_eq!(end.header.meta.get("drpc-items"), Some("0"));
    server.close().await;
}

/// A client stream from a caller written from the spec: the callee grants
/// its first credit as it starts (256 items, 16 MiB), reads the items and
/// the spec's end of the caller's direction (call 7, 3 items), and
/// answers once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stream_from_the_spec_is_read_to_its_end() {
    let mut routes = test_router();
    routes
        .client_stream(
            "/sum",
            |_: CallCtx, _: (), mut items: drpc::Items<u8>| async move {
                let mut sum = 0u8;
                while let Some(n) = items.next().await {
                    sum += n?;
                }
                Ok::<_, Status>(sum)
            },
        )
        .unwrap();
    let (server, mut raw) = hello_from_a_raw_peer(routes).await;
    let call = stream_call(7, "/sum", "client", None, SECS_10);
    raw.write(&encode(&Message::new(call, unhex("c0")))).await;
    let credit = raw.read().await;
    assert_eq!(
        credit,
        Message::credit(7, 0, 256, 16 << 20),
        "no FROM_CALLER"
    );
    for n in 1..=3u32 {
        let item = Header::item(7, flag::FROM_CALLER, n, CodecId::MSGPACK);
        raw.write(&encode(&Message::new(item, vec![n as u8]))).await;
    }
    let end = &spec_frames("### 3.4 Streams")[1];
    raw.write(&unhex(end)).await;
    let reply = raw.read().await;
    assert_eq!((reply.header.kind, reply.header.seq), (Kind::Reply, 7));
    assert_eq!((reply.header.status_code, &reply.body[..]), (0, &[6u8][..]));
    assert_eq!(reply.header.meta.get("drpc-items"), Some("0"));
    server.close().await;
}

/// A drpc client stream against a callee written from the spec: no item
/// before the callee's credit, then items under it, then the end with its
/// count, as the spec's bytes say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stream_waits_for_the_callees_first_credit() {
    let (client, dial, mut raw) = dial_a_raw_peer().await;
    let (hello, answer) = spec_hello();
    assert_eq!(hex(&encode(&raw.read().await)), hello);
    raw.write(&unhex(&answer)).await;
    let session = within("the dial", dial).await.unwrap().unwrap();
    let (mut sink, reply) = session
        .client_stream::<_, u8, u8>("/sum", &(), CallOptions::new())
        .await
        .unwrap();
    let call = raw.read().await;
    assert_eq!(call.header.meta.get("drpc-stream"), Some("client"));
    assert_eq!(
        call.header.meta.get("drpc-window"),
        None,
        "it reads no item"
    );
    let seq = call.header.seq;
    let mut first = Box::pin(sink.send(&1));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(first.as_mut().poll(&mut cx).is_pending(), "no credit");
    // A call made now is the next frame: the item was not sent.
    let mut ping = Header::call(1, "/nothing");
    ping.timeout = Some(Duration::from_secs(5));
    raw.write(&encode(&Message::new(ping, Vec::new()))).await;
    let refused = raw.read().await;
    assert_eq!((refused.header.kind, refused.header.seq), (Kind::Reply, 1));
    raw.write(&encode(&Message::credit(seq, 0, 1, 100))).await;
    within("the send", first).await.unwrap();
    let item = raw.read().await;
    assert_eq!(
        item.header,
        Header::item(seq, flag::FROM_CALLER, 1, CodecId::MSGPACK)
    );
    sink.end();
    let end = raw.read().await;
    assert_eq!(
        encode(&end),
        encode(&Message::new(Header::items_end(seq, 1), Vec::new()))
    );
    let mut answer = Header::reply(seq);
    answer.meta.insert("drpc-items", "0");
    raw.write(&encode(&Message::new(answer, vec![42u8]))).await;
    assert_eq!(within("the answer", reply).await.unwrap().value, 42);
    client.close().await;
}

/// A stream that fails counts its items on the failed reply too, whether
/// its handler returned an error or was cut at its deadline (408), so a
/// caller can wait for items still on their way (docs/PROTOCOL.md 3.4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_streams_reply_counts_its_items() {
    let mut routes = test_router();
    routes
        .server_stream(
            "/fail_after",
            |_: CallCtx, n: u8, mut out: ItemSink<u8>| async move {
                for i in 0..n {
                    out.send(&i).await?;
                }
                if n == 1 {
                    std::future::pending::<()>().await;
                }
                Err::<(), _>(Status::new(drpc::Code(1234), "dry"))
            },
        )
        .unwrap();
    let (server, mut raw) = hello_from_a_raw_peer(routes).await;
    for (seq, n, timeout, status) in [(2, 2u8, 10_000, 1234), (3, 1, 300, 408)] {
        let timeout = Duration::from_millis(timeout);
        let call = stream_call(seq, "/fail_after", "server", Some("16,1000"), timeout);
        raw.write(&encode(&Message::new(call, vec![n]))).await;
        for _ in 0..n {
            assert_eq!(raw.read().await.header.kind, Kind::Item);
        }
        let end = raw.read().await;
        assert_eq!(
            (end.header.kind, end.header.seq, end.header.status_code),
            (Kind::Reply, seq, status)
        );
        assert_eq!(
            end.header.meta.get("drpc-items"),
            Some(n.to_string().as_str())
        );
    }
    server.close().await;
}
