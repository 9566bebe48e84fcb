//! The renewal notice on the wire (docs/PROTOCOL.md section 3.1): its
//! bytes, and what a dialer does when a peer written from the spec sends
//! it with a call crossing it.

mod common;

use common::*;
use drpc::proto::{FrameLimits, Header, Message, Proto, RawProto};
use drpc::{Config, Endpoint};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn encode(msg: &Message) -> Vec<u8> {
    let mut wire = bytes::BytesMut::new();
    RawProto
        .framer(&FrameLimits::default())
        .encode(msg, &mut wire)
        .unwrap();
    wire.to_vec()
}

/// The hex of section 3.1's renewal notice: the block's lines of hex
/// pairs, without the lines that label them.
fn spec_notice() -> String {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md"))
        .unwrap();
    let section = spec
        .split("**Leaving one connection, not going away.**")
        .nth(1)
        .expect("section 3.1's renewal");
    let block = section.split("```text\n").nth(1).unwrap();
    let block = block.split("```").next().unwrap();
    let is_pair = |w: &str| w.len() == 2 && w.chars().all(|c| c.is_ascii_hexdigit());
    block
        .lines()
        .filter(|line| line.split_whitespace().all(is_pair))
        .flat_map(str::split_whitespace)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads until the peer ends its stream; false when it did not within
/// [`WAIT`].
async fn ends(raw: &mut TcpStream) -> bool {
    let mut sink = [0u8; 1024];
    let read_all = async {
        for _ in 0..10_000 {
            if raw.read(&mut sink).await.unwrap_or(0) == 0 {
                return;
            }
        }
    };
    tokio::time::timeout(WAIT, read_all).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_at_its_maximum_age_sends_the_spec_s_notice() {
    let config = Config {
        max_session_age: Some(Duration::from_millis(200)),
        ..Config::default()
    };
    let server = Endpoint::builder().config(config).build().unwrap();
    let addr = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let mut raw = TcpStream::connect(addr.target()).await.unwrap();
    let notice = read_frame(&mut raw).await;
    assert_eq!(hex(&encode(&notice)), spec_notice());
    // Owing the server nothing, the peer ends its stream; so does the
    // server, and the session is gone.
    raw.shutdown().await.unwrap();
    assert!(ends(&mut raw).await, "the server did not end its stream");
    within("the session's removal", async {
        while server.session_count() > 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_crossing_a_renewal_notice_is_made_again_on_the_new_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // A server written from the spec: on its first connection it answers
    // the first call with the renewal notice and "not run"; on its second,
    // it echoes.
    let server = tokio::spawn(async move {
        let (mut first, _) = listener.accept().await.unwrap();
        let call = read_past_hello(&mut first).await;
        let mut out = hex_bytes(&spec_notice());
        let mut not_run = Header::reply(call.header.seq);
        not_run.status_code = 102;
        not_run.status_message = "the call was not run".into();
        out.extend(encode(&Message::new(not_run, bytes::Bytes::new())));
        first.write_all(&out).await.unwrap();
        // The dialer owes nothing: it ends its stream without waiting.
        assert!(ends(&mut first).await, "the dialer did not end its stream");
        first.shutdown().await.unwrap();
        let (mut second, _) = listener.accept().await.unwrap();
        let again = read_past_hello(&mut second).await;
        assert_eq!(again.header.service_method, call.header.service_method);
        assert_eq!(again.body, call.body);
        let mut reply = Header::reply(again.header.seq);
        reply.codec = again.header.codec;
        second
            .write_all(&encode(&Message::new(reply, again.body.clone())))
            .await
            .unwrap();
        let remaining = again.header.timeout.unwrap();
        assert!(remaining <= call.header.timeout.unwrap());
        second.shutdown().await.unwrap();
        ends(&mut second).await;
    });
    // Redial after a shutdown is off: the notice's reason alone moves it.
    let client = Endpoint::builder().build().unwrap();
    let session = within("dial", client.dial(format!("tcp://127.0.0.1:{port}")))
        .await
        .unwrap();
    let value: i64 = within("the call", session.call("/echo", &42))
        .await
        .unwrap();
    assert_eq!(value, 42);
    client.close().await;
    within("the server", server).await.unwrap();
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    hex.split(' ')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_s_own_102_is_not_sent_as_not_run() {
    // 102 on the wire means "not run": a caller may make the call again.
    // A handler whose own connection closed may have done work.
    let mut router = drpc::Router::new();
    router
        .call("/upstream_gone", |_: drpc::CallCtx, _: ()| async move {
            Err::<(), _>(drpc::Status::connection_closed("the upstream closed"))
        })
        .unwrap();
    let p = pair_with(router, drpc::Router::new(), Config::default()).await;
    let err = p
        .session
        .call::<_, ()>("/upstream_gone", &())
        .await
        .unwrap_err();
    assert_eq!(err.code(), drpc::Code::INTERNAL, "{err}");
    assert!(!err.never_ran());
    assert!(err.message().contains("the upstream closed"), "{err}");
    p.close().await;
}
