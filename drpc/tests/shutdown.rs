//! Graceful shutdown: peers hear of it at once, running calls are answered,
//! and the grace period or a second call ends it.

mod common;

use common::*;
use drpc::{Code, Router};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_hear_of_a_shutdown_and_running_calls_are_answered() {
    let (routes, mut gate) = gated_router();
    let p = pair_with(routes, Router::new(), drpc::Config::default()).await;
    let running = call_waiting(&p.session, &mut gate).await;

    let server = p.server.clone();
    let shutdown = tokio::spawn(async move { server.shutdown(Duration::from_secs(30)).await });
    // The client hears at once, not when a deadline passes.
    within("going-away notice", p.session.going_away()).await;
    assert!(!p.session.is_healthy());
    let err = p
        .session
        .call::<_, i64>("/math/add", &Add { a: 1, b: 1 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::CONNECTION_CLOSED);
    assert!(err.message().contains("shutting down"), "{err}");
    // Refused before it was sent: it can safely go elsewhere.
    assert!(err.never_ran(), "{err:?}");
    let err = p.session.push("/x", &()).await.unwrap_err();
    assert_eq!(err.code(), Code::CONNECTION_CLOSED);

    // The running call still gets its answer, then everything closes.
    gate.release.send(true).unwrap();
    assert_eq!(within("running call", running).await.unwrap().unwrap(), 7);
    within("shutdown", shutdown).await.unwrap();
    within("client session closes", p.session.closed()).await;
    let reason = p.session.close_reason().unwrap();
    assert_eq!(reason.code(), Code::CONNECTION_CLOSED);
    assert!(reason.message().contains("shutting down"), "{reason}");
    within("client close", p.client.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_period_ends_a_shutdown() {
    let (routes, mut gate) = gated_router();
    let p = pair_with(routes, Router::new(), drpc::Config::default()).await;
    let stuck = call_waiting(&p.session, &mut gate).await;
    within("shutdown", p.server.shutdown(Duration::from_millis(200))).await;
    let err = within("stuck call", stuck).await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::CONNECTION_CLOSED, "{err}");
    // Its handler ran (and was cut): making the call again could run it twice.
    assert!(!err.never_ran(), "{err:?}");
    within("client close", p.client.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_close_ends_a_shutdown_at_once() {
    let (routes, mut gate) = gated_router();
    let p = pair_with(routes, Router::new(), drpc::Config::default()).await;
    let stuck = call_waiting(&p.session, &mut gate).await;
    let server = p.server.clone();
    let first = tokio::spawn(async move { server.shutdown(Duration::from_secs(3600)).await });
    within("going-away notice", p.session.going_away()).await;
    // An hour of grace, cut short by the second call.
    within("second close", p.server.close()).await;
    within("first shutdown returns too", first).await.unwrap();
    let err = within("stuck call", stuck).await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::CONNECTION_CLOSED, "{err}");
    within("client close", p.client.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_crosses_a_servers_notice_is_answered_not_dropped() {
    use drpc::proto::{FrameLimits, Header, Message, Proto, RawProto};
    use tokio::io::AsyncWriteExt;
    let server = drpc::Endpoint::builder()
        .router(test_router())
        .build()
        .unwrap();
    let addr = server.listen("tcp://127.0.0.1:0").await.unwrap();
    // A peer written from PROTOCOL.md, which sends a call without reading.
    let mut raw = tokio::net::TcpStream::connect(addr.target()).await.unwrap();
    let mut framer = RawProto.framer(&FrameLimits::default());
    let ping = Message::new(
        Header::call(1, "/math/add"),
        vec![0x82, 0xa1, 0x61, 1, 0xa1, 0x62, 1],
    );
    let mut wire = bytes::BytesMut::new();
    framer.encode(&ping, &mut wire).unwrap();
    raw.write_all(&wire).await.unwrap();
    assert_eq!(
        read_frame(&mut raw).await.header.seq,
        1,
        "the session is up"
    );

    let closing = tokio::spawn(async move { server.shutdown(Duration::from_secs(10)).await });
    let notice = read_frame(&mut raw).await;
    assert_eq!((notice.header.seq, notice.header.status_code), (0, 102));
    // The peer had sent this before the notice reached it.
    let crossing = Message::new(
        Header::call(2, "/math/add"),
        vec![0x82, 0xa1, 0x61, 1, 0xa1, 0x62, 1],
    );
    let mut wire = bytes::BytesMut::new();
    framer.encode(&crossing, &mut wire).unwrap();
    raw.write_all(&wire).await.unwrap();
    let answer = read_frame(&mut raw).await;
    assert_eq!((answer.header.seq, answer.header.status_code), (2, 102));
    assert!(
        answer.header.status_message.contains("not run"),
        "{:?}",
        answer.header.status_message
    );
    raw.shutdown().await.unwrap();
    within("shutdown", closing).await.unwrap();
}
