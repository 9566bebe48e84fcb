//! Redial: a dialed session whose connection drops dials again behind the
//! same handle, with backoff, and gives up after its attempts.

mod common;

use common::*;
use drpc::plugin::BoxFuture;
use drpc::{Addr, Code, Config, Endpoint, Plugin, Redial, Session, SessionState, Status};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A server on its own runtime and thread, which can crash: its runtime is
/// dropped at once, so its connections end without a going-away notice.
struct Crashable {
    addr: Addr,
    crash: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Crashable {
    fn start(listen: String, refuse_first: usize) -> Self {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (crash, crashed) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = own_runtime();
            rt.block_on(async move {
                let ep = Endpoint::builder()
                    .router(test_router())
                    .plugin(RefuseFirst(AtomicUsize::new(refuse_first)))
                    .build()
                    .unwrap();
                addr_tx
                    .send(ep.listen(listen.as_str()).await.unwrap())
                    .unwrap();
                // Wait for the crash without blocking the runtime.
                let _ = tokio::task::spawn_blocking(move || crashed.recv()).await;
            });
            // Dropping the runtime here drops every task and socket at once.
            drop(rt);
        });
        Self {
            addr: addr_rx.recv().unwrap(),
            crash,
            thread,
        }
    }

    fn crash(self) {
        let _ = self.crash.send(());
        self.thread.join().unwrap();
    }
}

/// Refuses the first `n` accepted connections, as an auth plugin might.
struct RefuseFirst(AtomicUsize);

impl Plugin for RefuseFirst {
    fn after_accept<'a>(&'a self, _: &'a Session) -> BoxFuture<'a, Result<(), Status>> {
        let refuse = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        Box::pin(async move {
            if refuse {
                Err(Status::unauthorized("not yet"))
            } else {
                Ok(())
            }
        })
    }
}

/// Records the dial hooks and their redial flags.
#[derive(Default)]
struct Dials(Mutex<Vec<String>>);

impl Plugin for Dials {
    fn before_dial(&self, _: &Addr, is_redial: bool) -> Result<(), Status> {
        self.0
            .lock()
            .unwrap()
            .push(format!("before_dial {is_redial}"));
        Ok(())
    }

    fn after_dial<'a>(
        &'a self,
        _: &'a Session,
        is_redial: bool,
    ) -> BoxFuture<'a, Result<(), Status>> {
        self.0
            .lock()
            .unwrap()
            .push(format!("after_dial {is_redial}"));
        Box::pin(async { Ok(()) })
    }
}

fn client(redial: Redial, dials: Arc<Dials>) -> Endpoint {
    init_tracing();
    Endpoint::builder()
        .config(Config {
            redial,
            ..Config::default()
        })
        .plugin_arc(dials)
        .build()
        .unwrap()
}

fn quick(max_attempts: Option<u32>) -> Redial {
    Redial {
        initial_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        max_attempts,
        ..Redial::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_handle_serves_again_when_the_listener_returns() {
    let first = Crashable::start("tcp://127.0.0.1:0".into(), 0);
    let addr = first.addr.clone();
    let dials = Arc::new(Dials::default());
    let client = client(quick(None), dials.clone());
    let session = client.dial(&addr).await.unwrap();
    session.set_id("the-server").unwrap();
    session.set_value(41u32);
    let sum: i64 = session
        .call("/math/add", &Add { a: 1, b: 1 })
        .await
        .unwrap();
    assert_eq!(sum, 2);

    // A call in flight when the connection breaks fails; it is not re-sent.
    let s = session.clone();
    let in_flight = tokio::spawn(async move { s.call::<_, u64>("/slow", &60_000u64).await });
    within("the call is in flight", async {
        while session.pending_calls() == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    first.crash();
    let err = within("in-flight call", in_flight)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), Code::CONNECTION_CLOSED);
    assert!(err.message().contains("redialing"), "{err}");

    // A call made while the listener is gone waits for the new connection.
    let s = session.clone();
    let waiting = tokio::spawn(async move {
        s.call_with::<_, i64>(
            "/math/add",
            &Add { a: 20, b: 22 },
            drpc::CallOptions::new().timeout(Duration::from_secs(20)),
        )
        .await
    });
    assert_ne!(session.state(), SessionState::Closed);
    let second = Crashable::start(format!("tcp://{}", addr.target()), 0);
    assert_eq!(
        within("call after the redial", waiting)
            .await
            .unwrap()
            .unwrap()
            .value,
        42
    );
    assert_eq!(session.state(), SessionState::Active);
    assert_eq!(&*session.id(), "the-server");
    assert_eq!(session.value::<u32>(), Some(41));
    let log = dials.0.lock().unwrap().clone();
    assert_eq!(&log[..2], ["before_dial false", "after_dial false"]);
    assert!(log.contains(&"before_dial true".to_string()), "{log:?}");
    assert_eq!(log.last().map(String::as_str), Some("after_dial true"));
    client.close().await;
    second.crash();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redial_gives_up_after_its_attempts_and_the_session_closes() {
    let server = Crashable::start("tcp://127.0.0.1:0".into(), 0);
    let dials = Arc::new(Dials::default());
    let client = client(quick(Some(3)), dials.clone());
    let session = client.dial(&server.addr).await.unwrap();
    server.crash();
    within("session gives up", session.closed()).await;
    let reason = session.close_reason().unwrap();
    assert!(
        reason.message().contains("gave up after 3 attempts"),
        "{reason}"
    );
    let redials = dials
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|d| *d == "before_dial true")
        .count();
    assert_eq!(redials, 3);
    let err = session
        .call::<_, i64>("/math/add", &Add { a: 1, b: 1 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::CONNECTION_CLOSED);
    assert_eq!(client.session_count(), 0);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_handshake_is_retried_like_any_failure() {
    let first = Crashable::start("tcp://127.0.0.1:0".into(), 0);
    let addr = first.addr.clone();
    let client = client(quick(None), Arc::new(Dials::default()));
    let session = client.dial(&addr).await.unwrap();
    first.crash();
    // The new server refuses the first two connections. A call that goes
    // out on one of them fails with 102 (it is never re-sent); the session
    // itself redials until a connection is taken. The first call may also
    // go out on the crashed connection, if the client has not yet read its
    // end: one failure per connection, three at most.
    let second = Crashable::start(format!("tcp://{}", addr.target()), 2);
    let mut failures = 0;
    let sum = loop {
        let call = session.call_with::<_, i64>(
            "/math/add",
            &Add { a: 2, b: 3 },
            drpc::CallOptions::new().timeout(Duration::from_secs(20)),
        );
        match within("a call", call).await {
            Ok(reply) => break reply.value,
            Err(e) => {
                assert_eq!(e.code(), Code::CONNECTION_CLOSED, "{e}");
                failures += 1;
                assert!(failures <= 3, "more failures than lost connections: {e}");
            }
        }
    };
    assert_eq!(sum, 5);
    assert_eq!(session.state(), SessionState::Active);
    client.close().await;
    second.crash();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_shuts_down_gracefully_is_not_redialed() {
    let dials = Arc::new(Dials::default());
    let p = pair_from(
        Endpoint::builder().router(test_router()),
        Endpoint::builder()
            .config(Config {
                redial: quick(None),
                ..Config::default()
            })
            .plugin_arc(dials.clone()),
    )
    .await;
    within("server close", p.server.close()).await;
    within("client session closes", p.session.closed()).await;
    assert!(
        !dials.0.lock().unwrap().iter().any(|d| d.ends_with("true")),
        "no redial after a going-away notice"
    );
    p.client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_after_shutdown_a_restarted_endpoint_is_redialed() {
    let first = Endpoint::builder().router(test_router()).build().unwrap();
    let addr = first.listen("tcp://127.0.0.1:0").await.unwrap();
    let client = client(
        Redial {
            after_shutdown: true,
            ..quick(None)
        },
        Arc::new(Dials::default()),
    );
    let session = client.dial(&addr).await.unwrap();
    let sum: i64 = session
        .call("/math/add", &Add { a: 1, b: 1 })
        .await
        .unwrap();
    assert_eq!(sum, 2);

    // Stopped on purpose, and started again on the same address.
    // The client may not have read the notice yet when the close returns;
    // a call made before it does goes out on the old connection and ends
    // with it (102), as calls in flight do. So wait for the notice (on this
    // connection: taken before the close, which replaces it).
    let going_away = session.going_away();
    within("first close", first.close()).await;
    within("the going-away notice", going_away).await;
    let second = Endpoint::builder().router(test_router()).build().unwrap();
    second.listen(addr.to_string().as_str()).await.unwrap();
    let sum = within(
        "served by the restarted endpoint",
        session.call_with::<_, i64>(
            "/math/add",
            &Add { a: 2, b: 2 },
            drpc::CallOptions::new().timeout(Duration::from_secs(20)),
        ),
    )
    .await
    .unwrap()
    .value;
    assert_eq!(sum, 4);
    client.close().await;
    second.close().await;
}
