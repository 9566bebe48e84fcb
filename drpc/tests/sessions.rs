//! Session identity, lookup, storage, health and close.

mod common;

use common::*;
use drpc::{CallCtx, Code, Config, Endpoint, Router, SessionState, Status};
use std::time::Duration;
use tokio::sync::mpsc;

#[tokio::test]
async fn sessions_are_found_by_id_counted_and_visited() {
    let mut p = pair().await;
    assert_eq!(p.server.session_count(), 1);
    let id = p.accepted.id();
    assert_eq!(&*id, p.accepted.peer_addr().to_string());
    assert_eq!(p.server.session(&id), Some(p.accepted.clone()));

    let second = p.client.dial(&p.addr).await.unwrap();
    let accepted2 = within("second accept", p.accepts.recv()).await.unwrap();
    assert_eq!(p.server.session_count(), 2);
    assert_eq!(p.client.session_count(), 2);

    accepted2.set_id("alice").unwrap();
    assert_eq!(p.server.session("alice"), Some(accepted2.clone()));
    assert!(p.server.session(&second.local_addr().to_string()).is_none());

    // Taking an id in use is an error and leaves both sessions alone.
    let err = p.accepted.set_id("alice").unwrap_err();
    assert_eq!(err.code(), Code::WRONG_CONNECTION);
    assert_eq!(p.accepted.id(), id);
    assert!(p.accepted.is_healthy() && accepted2.is_healthy());

    let mut seen = Vec::new();
    p.server.for_each_session(|s| seen.push(s.id().to_string()));
    seen.sort();
    let mut want = vec!["alice".to_string(), id.to_string()];
    want.sort();
    assert_eq!(seen, want);
    p.close().await;
}

#[tokio::test]
async fn addresses_are_reported_from_both_sides() {
    let p = pair().await;
    assert_eq!(p.session.peer_addr(), p.addr);
    assert_eq!(p.accepted.local_addr(), p.addr);
    assert_eq!(p.session.local_addr(), p.accepted.peer_addr());
    assert!(p.session.is_dialed() && !p.accepted.is_dialed());
    p.close().await;
}

#[tokio::test]
async fn typed_storage_lives_on_the_session() {
    #[derive(Clone, Debug, PartialEq)]
    struct User(String);
    let mut routes = Router::new();
    routes
        .call("/login", |ctx: CallCtx, name: String| async move {
            ctx.session().set_value(User(name));
            Ok::<_, Status>(())
        })
        .unwrap();
    routes
        .call("/me", |ctx: CallCtx, _: ()| async move {
            Ok::<_, Status>(ctx.session().value::<User>().map(|u| u.0))
        })
        .unwrap();
    let p = pair_with(routes, Router::new(), Config::default()).await;
    assert_eq!(
        p.session
            .call::<_, Option<String>>("/me", &())
            .await
            .unwrap(),
        None
    );
    p.session.call::<_, ()>("/login", "bob").await.unwrap();
    assert_eq!(
        p.session
            .call::<_, Option<String>>("/me", &())
            .await
            .unwrap()
            .as_deref(),
        Some("bob")
    );
    assert_eq!(p.accepted.value::<User>(), Some(User("bob".into())));
    assert_eq!(
        p.accepted
            .with_value(|u: Option<&User>| u.map(|u| u.0.len())),
        Some(3)
    );
    assert_eq!(p.accepted.remove_value::<User>(), Some(User("bob".into())));
    assert_eq!(p.accepted.value::<User>(), None);
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_peer_closes_pending_calls_fail_and_closed_completes() {
    let mut routes = Router::new();
    let mut started = hold_route(&mut routes);
    let config = Config {
        close_grace: Duration::from_millis(100),
        ..Config::default()
    };
    let p = pair_with(routes, Router::new(), config).await;
    let s = p.session.clone();
    let call = tokio::spawn(async move { s.call::<_, ()>("/hold", &()).await });
    within("handler start", started.recv()).await.unwrap();

    // The server goes away (its handler is cut short by the short grace).
    within("server close", p.server.close()).await;
    let err = within("pending call", call).await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::CONNECTION_CLOSED);
    within("client's close future", p.session.closed()).await;
    assert_eq!(p.session.state(), SessionState::Closed);
    assert!(!p.session.is_healthy());
    assert_eq!(
        p.session.close_reason().unwrap().code(),
        Code::CONNECTION_CLOSED
    );
    assert_eq!(p.client.session_count(), 0);

    let err = p.session.call::<_, ()>("/hold", &()).await.unwrap_err();
    assert_eq!(err.code(), Code::CONNECTION_CLOSED);
    let err = p.session.push("/x", &()).await.unwrap_err();
    assert_eq!(err.code(), Code::CONNECTION_CLOSED);
    within("client close", p.client.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_close_lets_running_handlers_reply() {
    let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
    let mut routes = Router::new();
    routes
        .call("/work", move |_: CallCtx, ms: u64| {
            let started_tx = started_tx.clone();
            async move {
                let _ = started_tx.send(());
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok::<_, Status>(ms)
            }
        })
        .unwrap();
    let p = pair_with(routes, Router::new(), Config::default()).await;
    let s = p.session.clone();
    let call = tokio::spawn(async move { s.call::<_, u64>("/work", &300u64).await });
    within("handler start", started.recv()).await.unwrap();

    // The server closes while the handler runs: the reply still arrives.
    within("server close", p.server.close()).await;
    assert_eq!(within("call", call).await.unwrap().unwrap(), 300);
    assert!(p.server.is_closed());
    let err = p.server.dial(&p.addr).await.unwrap_err();
    assert_eq!(err.code(), Code::CONNECTION_CLOSED);
    within("client sees the close", p.session.closed()).await;
    within("client close", p.client.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_session_from_its_own_handler_does_not_deadlock() {
    let mut routes = Router::new();
    routes
        .call("/bye", |ctx: CallCtx, _: ()| async move {
            ctx.session().close().await;
            Ok::<_, Status>("bye")
        })
        .unwrap();
    let p = pair_with(routes, Router::new(), Config::default()).await;
    let reply: String = within("call", p.session.call("/bye", &())).await.unwrap();
    assert_eq!(
        reply, "bye",
        "the handler's reply is flushed before the close"
    );
    within("server session closed", p.accepted.closed()).await;
    within("client session closed", p.session.closed()).await;
    p.close().await;
}

#[tokio::test]
async fn endpoint_close_ends_every_session_and_is_idempotent() {
    let p = pair().await;
    let (server, client) = (p.server.clone(), p.client.clone());
    within("close", client.close()).await;
    within("close again", client.close()).await;
    assert_eq!(client.session_count(), 0);
    within("server sees it", p.accepted.closed()).await;
    assert_eq!(server.session_count(), 0);
    within("server close", server.close()).await;
    let err = server.listen("tcp://127.0.0.1:0").await.unwrap_err();
    assert_eq!(err.code(), Code::CONNECTION_CLOSED);
}

#[tokio::test]
async fn dial_failures_are_105_with_the_reason() {
    let ep = Endpoint::builder().build().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = ep
        .dial(format!("tcp://127.0.0.1:{port}"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DIAL_FAILED);
    assert!(err.message().contains(&port.to_string()), "{err}");
    let err = ep.dial("127.0.0.1:1").await.unwrap_err();
    assert_eq!(err.code(), Code::DIAL_FAILED);
    ep.close().await;
}

#[cfg(unix)]
#[tokio::test]
async fn unix_sockets_carry_sessions_too() {
    init_tracing();
    let path = std::env::temp_dir().join(format!("drpc-sessions-{}.sock", std::process::id()));
    let server = Endpoint::builder().router(test_router()).build().unwrap();
    let addr = server
        .listen(format!("unix://{}", path.display()))
        .await
        .unwrap();
    let client = Endpoint::builder().build().unwrap();
    let a = client.dial(&addr).await.unwrap();
    let b = client.dial(&addr).await.unwrap();
    assert_ne!(a.id(), b.id(), "ids stay unique when peer addresses repeat");
    let sum: i64 = a.call("/math/add", &Add { a: 2, b: 2 }).await.unwrap();
    assert_eq!(sum, 4);
    client.close().await;
    server.close().await;
    assert!(!path.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_makes_sends_wait_then_fail() {
    init_tracing();
    let (tx, mut accepts) = mpsc::unbounded_channel();
    let config = Config {
        write_queue: 4,
        // The writer never drains to this peer, so close waits out the grace.
        close_grace: Duration::from_millis(300),
        ..Config::default()
    };
    let server = Endpoint::builder()
        .config(config)
        .plugin(AcceptNotify(tx))
        .build()
        .unwrap();
    let addr = server.listen("tcp://127.0.0.1:0").await.unwrap();
    // A peer that connects and then never reads a byte.
    let _stalled = tokio::net::TcpStream::connect(addr.target()).await.unwrap();
    let session = within("accept", accepts.recv()).await.unwrap();

    let big = serde_bytes::ByteBuf::from(vec![1u8; 256 * 1024]);
    let opts = drpc::PushOptions::new()
        .codec(drpc::CodecId::RAW)
        .timeout(Duration::from_millis(200));
    let mut refused = None;
    // Socket buffers absorb some megabytes; after that the queue fills.
    for sent in 0..2_000 {
        if let Err(e) = session.push_with("/sink", &big, opts.clone()).await {
            refused = Some((sent, e));
            break;
        }
    }
    let (sent, err) = refused.expect("sends to a peer that never reads must stop succeeding");
    assert_eq!(err.code(), Code::DEADLINE_EXCEEDED, "{err}");
    assert!(err.message().contains("write queue"), "{err}");
    assert!(sent < 2_000);
    assert!(session.is_healthy(), "a full queue is not a broken session");
    within("close", server.close()).await;
}

#[tokio::test]
async fn one_endpoint_listens_on_several_addresses() {
    init_tracing();
    let server = Endpoint::builder().router(test_router()).build().unwrap();
    let a = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let b = server.listen("tcp://[::1]:0").await;
    let client = Endpoint::builder().build().unwrap();
    let mut addrs = vec![a];
    // IPv6 loopback may be missing in some sandboxes; use it where it exists.
    if let Ok(b) = b {
        addrs.push(b);
    }
    #[cfg(unix)]
    {
        let path = std::env::temp_dir().join(format!("drpc-multi-{}.sock", std::process::id()));
        addrs.push(
            server
                .listen(format!("unix://{}", path.display()))
                .await
                .unwrap(),
        );
    }
    for addr in &addrs {
        let s = client.dial(addr).await.unwrap();
        let sum: i64 = s.call("/math/add", &Add { a: 1, b: 2 }).await.unwrap();
        assert_eq!(sum, 3, "{addr}");
    }
    assert_eq!(client.session_count(), addrs.len());
    within("client close", client.close()).await;
    within("server close", server.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_closes_at_once_with_the_reason_given() {
    let mut routes = Router::new();
    let mut started = hold_route(&mut routes);
    // The server cannot tell an abort from an end of stream: it lets the
    // running call finish, within its grace.
    let config = Config {
        close_grace: std::time::Duration::from_millis(200),
        ..Config::default()
    };
    let p = pair_with(routes, Router::new(), config).await;
    let s = p.session.clone();
    let call = tokio::spawn(async move { s.call::<_, ()>("/hold", &()).await });
    within("handler start", started.recv()).await.unwrap();
    p.session.abort(Status::new(
        Code(1234),
        "the application gave up on this peer",
    ));
    within("aborted session closes", p.session.closed()).await;
    let reason = p.session.close_reason().unwrap();
    assert_eq!(reason.code(), Code(1234));
    let err = within("pending call", call).await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::CONNECTION_CLOSED);
    assert!(err.message().contains("gave up on this peer"), "{err}");
    within("the peer sees the end", p.accepted.closed()).await;
    p.close().await;
}
