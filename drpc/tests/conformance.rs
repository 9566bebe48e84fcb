//! One suite, run on every transport: what a user may rely on whichever
//! scheme their address names. Adding a transport is one line in the
//! `conformance!` list at the bottom (and its address and config in
//! `Transport::named`); `pipe` is a transport written outside the crate
//! (`common/pipe.rs`), registered on the config as a user's would be.

#[path = "conformance/cancel.rs"]
mod cancel;
#[path = "conformance/closing.rs"]
mod closing;
mod common;
#[path = "conformance/streams.rs"]
mod streams;
#[path = "conformance/two_way.rs"]
mod two_way;

use common::*;
use drpc::{CallOptions, Code, Config, Endpoint, PushOptions, Router, Status};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Calls and pushes, each way, on one session.
async fn calls_and_pushes_both_ways(t: Transport) {
    let mut server_routes = test_router();
    let mut server_pushes = forward_pushes(&mut server_routes, "/note");
    let mut client_routes = Router::new();
    client_routes
        .call("/whoami", |_: drpc::CallCtx, _: ()| async move {
            Ok::<_, Status>("client".to_string())
        })
        .unwrap();
    let mut client_pushes = forward_pushes(&mut client_routes, "/note");
    let p = t.pair(server_routes, client_routes).await;

    let sum: i64 = p
        .session
        .call("/math/add", &Add { a: 20, b: 22 })
        .await
        .unwrap();
    assert_eq!(sum, 42);
    let who: String = p.accepted.call("/whoami", &()).await.unwrap();
    assert_eq!(who, "client");

    p.session.push("/note", &"up").await.unwrap();
    p.accepted.push("/note", &"down").await.unwrap();
    let (m, body) = within("push to server", server_pushes.recv())
        .await
        .unwrap();
    assert_eq!((m.as_str(), body.as_str()), ("/note", "up"));
    let (m, body) = within("push to client", client_pushes.recv())
        .await
        .unwrap();
    assert_eq!((m.as_str(), body.as_str()), ("/note", "down"));

    let err = p.session.call::<_, ()>("/nowhere", &()).await.unwrap_err();
    assert_eq!(err.code(), Code::NOT_FOUND);
    p.close().await;
}

/// A thousand calls in flight at once on one session, each answered with
/// its own result.
async fn a_thousand_calls_in_flight(t: Transport) {
    let p = t.pair(test_router(), Router::new()).await;
    let calls = (0..1000i64).map(|i| {
        let s = p.session.clone();
        async move { s.call::<_, i64>("/math/add", &Add { a: i, b: 1 }).await }
    });
    let results = within("1000 calls", futures_util::future::join_all(calls)).await;
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap(), i as i64 + 1);
    }
    p.close().await;
}

/// A 4 MiB body each way, byte for byte.
async fn a_four_mib_body(t: Transport) {
    let p = t.pair(test_router(), test_router()).await;
    let body: Vec<u8> = (0..4 * 1024 * 1024u32)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let body = serde_bytes::ByteBuf::from(body);
    let back: serde_bytes::ByteBuf =
        within("4 MiB to the server", p.session.call("/echo_bytes", &body))
            .await
            .unwrap();
    assert!(back == body, "the server's echo differs");
    let back: serde_bytes::ByteBuf =
        within("4 MiB to the client", p.accepted.call("/echo_bytes", &body))
            .await
            .unwrap();
    assert!(back == body, "the client's echo differs");
    p.close().await;
}

/// Meta goes with the call, and the handler's reply meta comes back.
async fn meta_both_ways(t: Transport) {
    let p = t.pair(test_router(), Router::new()).await;
    let reply = p
        .session
        .call_with::<_, Option<String>>(
            "/meta",
            &"trace",
            CallOptions::new().meta("trace", "abc-123"),
        )
        .await
        .unwrap();
    assert_eq!(reply.value.as_deref(), Some("abc-123"));
    assert_eq!(reply.meta.get("seen"), Some("abc-123"));
    p.close().await;
}

/// A call past its deadline fails with 408, and the session stays usable.
async fn deadlines_expire(t: Transport) {
    let p = t.pair(test_router(), Router::new()).await;
    let started = Instant::now();
    let err = p
        .session
        .call_with::<_, u64>(
            "/slow",
            &10_000u64,
            CallOptions::new().timeout(Duration::from_millis(200)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DEADLINE_EXCEEDED, "{err}");
    assert!(started.elapsed() >= Duration::from_millis(200));
    let sum: i64 = p
        .session
        .call("/math/add", &Add { a: 1, b: 1 })
        .await
        .unwrap();
    assert_eq!(sum, 2);
    p.close().await;
}

/// When the peer closes, pending calls end with "connection closed" within
/// a second of it, and the session's close future completes.
async fn a_closing_peer_ends_pending_calls(t: Transport) {
    let mut routes = Router::new();
    let mut started = hold_route(&mut routes);
    let t = t.with(|c| c.close_grace = Duration::from_millis(100));
    let p = t.pair(routes, Router::new()).await;
    let s = p.session.clone();
    let call = tokio::spawn(async move { s.call::<_, ()>("/hold", &()).await });
    within("handler start", started.recv()).await.unwrap();

    within("server close", p.server.close()).await;
    let closed_at = Instant::now();
    let err = within("pending call", call).await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::CONNECTION_CLOSED, "{err}");
    within("close future", p.session.closed()).await;
    let took = closed_at.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "{}: the client noticed the close after {took:?}",
        t.name
    );
    assert_eq!(p.client.session_count(), 0);
    within("client close", p.client.close()).await;
}

/// A server on its own runtime and thread that can be frozen: its thread
/// blocks, so every task of its runtime stops. The endpoint is still there,
/// but as silent as a machine that lost power: it reads, writes and
/// acknowledges nothing.
struct Freezable {
    addr: drpc::Addr,
    freeze: Option<tokio::sync::oneshot::Sender<()>>,
    frozen: Option<tokio::sync::oneshot::Receiver<()>>,
    thaw: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Freezable {
    async fn start(t: &Transport, router: Router) -> Self {
        init_tracing();
        let (addr_tx, mut addr_rx) = mpsc::unbounded_channel();
        let (freeze, freeze_rx) = tokio::sync::oneshot::channel::<()>();
        let (frozen_tx, frozen) = tokio::sync::oneshot::channel::<()>();
        let (thaw, thaw_rx) = std::sync::mpsc::channel::<()>();
        let t = t.clone();
        let thread = std::thread::spawn(move || {
            let rt = own_runtime();
            rt.block_on(async move {
                let ep = Endpoint::builder()
                    .config(t.config.clone())
                    .router(router)
                    .build()
                    .unwrap();
                addr_tx
                    .send(ep.listen(t.listen.as_str()).await.unwrap())
                    .unwrap();
                let _ = freeze_rx.await;
                let _ = frozen_tx.send(());
                let _ = thaw_rx.recv_timeout(Duration::from_secs(60));
                ep.close().await;
            });
        });
        let addr = within("server up", addr_rx.recv()).await.unwrap();
        Self {
            addr,
            freeze: Some(freeze),
            frozen: Some(frozen),
            thaw,
            thread,
        }
    }

    /// Freezes the server and returns once it is frozen.
    async fn freeze(&mut self) {
        self.freeze.take().unwrap().send(()).unwrap();
        within("server frozen", self.frozen.take().unwrap())
            .await
            .unwrap();
    }

    fn thaw_and_stop(self) {
        self.thaw.send(()).unwrap();
        self.thread.join().unwrap();
    }
}

/// A peer that vanishes without closing (frozen here) is found at the
/// latest when the pending calls' deadlines pass: they fail with 408 and
/// never hang.
async fn a_vanished_peer_is_found_by_deadlines(t: Transport) {
    // Closing a session whose peer is frozen waits out the grace (the
    // transport's close cannot finish): keep it short.
    let t = t.with(|c| c.close_grace = Duration::from_millis(500));
    let mut server = Freezable::start(&t, test_router()).await;
    let client = Endpoint::builder()
        .config(t.config.clone())
        .build()
        .unwrap();
    let session = within("dial", client.dial(&server.addr)).await.unwrap();
    let sum: i64 = session
        .call("/math/add", &Add { a: 1, b: 2 })
        .await
        .unwrap();
    assert_eq!(sum, 3);

    server.freeze().await;
    let timeout = Duration::from_millis(500);
    let started = Instant::now();
    let calls = (0..3).map(|_| {
        session.call_with::<_, i64>(
            "/math/add",
            &Add { a: 1, b: 1 },
            CallOptions::new().timeout(timeout),
        )
    });
    let results = within(
        "calls to a vanished peer",
        futures_util::future::join_all(calls),
    )
    .await;
    for r in results {
        let err = r.unwrap_err();
        assert!(
            err.code() == Code::DEADLINE_EXCEEDED || err.code() == Code::CONNECTION_CLOSED,
            "{err}"
        );
    }
    assert!(started.elapsed() < WAIT);
    within("client close", client.close()).await;
    server.thaw_and_stop();
}

/// Closing an endpoint ends its sessions on both sides, and it stops
/// accepting.
async fn endpoint_close_ends_everything(t: Transport) {
    let p = t.pair(test_router(), Router::new()).await;
    let second = within("second dial", p.client.dial(&p.addr)).await.unwrap();
    within("client close", p.client.close()).await;
    assert_eq!(p.client.session_count(), 0);
    within("first ends on the server", p.accepted.closed()).await;
    within("second ends", second.closed()).await;
    let err = p
        .session
        .call::<_, i64>("/math/add", &Add { a: 1, b: 1 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::CONNECTION_CLOSED);

    within("server close", p.server.close()).await;
    let other = Endpoint::builder()
        .config(t.config.clone())
        .build()
        .unwrap();
    let redial = tokio::time::timeout(Duration::from_secs(2), other.dial(&p.addr)).await;
    match redial {
        Ok(Ok(s)) => {
            // A datagram transport cannot always tell at once; the session
            // must not serve calls.
            let err = s
                .call_with::<_, i64>(
                    "/math/add",
                    &Add { a: 1, b: 1 },
                    CallOptions::new().timeout(Duration::from_millis(300)),
                )
                .await
                .unwrap_err();
            assert_ne!(err.code(), Code::OK);
        }
        Ok(Err(e)) => assert_eq!(e.code(), Code::DIAL_FAILED, "{e}"),
        Err(_) => {}
    }
    other.close().await;
}

/// Pushes sent in a row arrive, all of them.
async fn many_pushes_arrive(t: Transport) {
    let mut routes = Router::new();
    let mut got = forward_pushes(&mut routes, "/note");
    let p = t.pair(routes, Router::new()).await;
    for i in 0..500 {
        p.session
            .push_with("/note", &i.to_string(), PushOptions::new())
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..500 {
        let (_, body) = within("push", got.recv()).await.unwrap();
        seen.push(body.parse::<i32>().unwrap());
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..500).collect::<Vec<_>>());
    p.close().await;
}

/// A peer that stops reading (frozen) cannot make the sender's memory grow:
/// once the transport's buffers are full, sends wait for room in the write
/// queue and then fail with 408.
async fn a_peer_that_stops_reading_makes_sends_fail(t: Transport) {
    let t = t.with(|c| c.close_grace = Duration::from_millis(500));
    let mut server = Freezable::start(&t, Router::new()).await;
    let client = Endpoint::builder()
        .config(drpc::Config {
            write_queue: 4,
            close_grace: Duration::from_millis(300),
            ..t.config.clone()
        })
        .build()
        .unwrap();
    let session = within("dial", client.dial(&server.addr)).await.unwrap();
    server.freeze().await;

    let big = serde_bytes::ByteBuf::from(vec![1u8; 256 * 1024]);
    let opts = PushOptions::new()
        .codec(drpc::CodecId::RAW)
        .timeout(Duration::from_millis(300));
    let mut refused = None;
    // The transport's buffers absorb some megabytes; then the queue fills.
    for sent in 0..2_000 {
        if let Err(e) = within("a push", session.push_with("/sink", &big, opts.clone())).await {
            refused = Some((sent, e));
            break;
        }
    }
    let (_, err) = refused.expect("sends to a peer that never reads must stop succeeding");
    assert_eq!(err.code(), Code::DEADLINE_EXCEEDED, "{}: {err}", t.name);
    assert!(err.message().contains("write queue"), "{err}");
    within("client close", client.close()).await;
    server.thaw_and_stop();
}

macro_rules! conformance {
    ($($transport:ident),* $(,)?) => {$(
        mod $transport {
            use super::*;

            fn t() -> Transport {
                Transport::named(stringify!($transport))
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn calls_and_pushes_both_ways() {
                super::calls_and_pushes_both_ways(t()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_thousand_calls_in_flight() {
                super::a_thousand_calls_in_flight(t()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_four_mib_body() {
                super::a_four_mib_body(t()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn meta_both_ways() {
                super::meta_both_ways(t()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn deadlines_expire() {
                super::deadlines_expire(t()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_closing_peer_ends_pending_calls() {
                super::a_closing_peer_ends_pending_calls(t()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_vanished_peer_is_found_by_deadlines() {
                super::a_vanished_peer_is_found_by_deadlines(t()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn endpoint_close_ends_everything() {
                super::endpoint_close_ends_everything(t()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn many_pushes_arrive() {
                super::many_pushes_arrive(t()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_peer_that_stops_reading_makes_sends_fail() {
                super::a_peer_that_stops_reading_makes_sends_fail(t()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_server_stream_delivers_every_item_in_order() {
                streams::a_server_stream_delivers_every_item_in_order(t()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_failed_stream_ends_with_its_status_after_its_items() {
                streams::a_failed_stream_ends_with_its_status_after_its_items(t()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_reader_that_stops_holds_its_sender_back() {
                streams::a_reader_that_stops_holds_its_sender_back(t()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_client_stream_sends_every_item_and_gets_one_answer() {
                two_way::a_client_stream_sends_every_item_and_gets_one_answer(t()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_client_stream_may_be_answered_before_its_end() {
                two_way::a_client_stream_may_be_answered_before_its_end(t()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_bidi_stream_runs_both_ways_in_step() {
                two_way::a_bidi_stream_runs_both_ways_in_step(t()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_handler_that_stops_reading_holds_its_caller_back() {
                two_way::a_handler_that_stops_reading_holds_its_caller_back(t()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn many_streams_share_a_session_with_calls_and_pushes() {
                two_way::many_streams_share_a_session_with_calls_and_pushes(t()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_dropped_call_stops_its_handler_at_the_peer() {
                cancel::a_dropped_call_stops_its_handler_at_the_peer(t()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_call_past_its_deadline_stops_its_handler_at_the_peer() {
                cancel::a_call_past_its_deadline_stops_its_handler_at_the_peer(t()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn an_end_of_stream_is_a_graceful_end() {
                closing::an_end_of_stream_is_a_graceful_end(t()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_call_crossing_the_going_away_notice_is_answered_102() {
                closing::a_call_crossing_the_going_away_notice_is_answered_102(t()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn shutdown_returns_once_the_transport_has_closed() {
                closing::shutdown_returns_once_the_transport_has_closed(t()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_renewed_connection_loses_no_call() {
                closing::a_renewed_connection_loses_no_call(t()).await
            }
        }
    )*};
}

conformance!(tcp, unix, tls, quic, quic_single, kcp, ws, wss, pipe);
