//! The session's timing rules on tokio's paused clock, over in-memory pipes
//! (`drpc::memory::MemoryNet`, the same dial seam redial uses): no test here
//! waits for real time, and each checks the virtual time things took.

mod common;

use common::*;
use drpc::memory::MemoryNet;
use drpc::plugin::BoxFuture;
use drpc::{
    Addr, CallCtx, CallOptions, Code, Config, Endpoint, Plugin, PushCtx, Router, Session, Status,
};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

const SERVER: &str = "mem://server";

/// A server and a client on one in-memory network; the client dialed.
struct Net {
    net: MemoryNet,
    server: Endpoint,
    client: Endpoint,
    session: Session,
}

async fn net(server_routes: Router, server: Config, client: drpc::EndpointBuilder) -> Net {
    let net = MemoryNet::new();
    let server = Endpoint::builder()
        .config(server)
        .router(server_routes)
        .build()
        .unwrap();
    net.serve(SERVER, &server);
    let client = client.dialer(net.dialer()).build().unwrap();
    let session = client.dial(SERVER).await.unwrap();
    Net {
        net,
        server,
        client,
        session,
    }
}

impl Net {
    async fn close(self) {
        self.client.close().await;
        self.server.close().await;
    }
}

fn sleeping_router() -> Router {
    let mut r = test_router();
    r.call("/sleep_s", |_: CallCtx, secs: u64| async move {
        tokio::time::sleep(Duration::from_secs(secs)).await;
        Ok::<_, Status>(secs)
    })
    .unwrap();
    r
}

#[tokio::test(start_paused = true)]
async fn a_handler_past_its_deadline_is_cancelled_and_answered_408() {
    let n = net(sleeping_router(), Config::default(), Endpoint::builder()).await;
    let started = Instant::now();
    let err = n
        .session
        .call_with::<_, u64>(
            "/sleep_s",
            &60u64,
            CallOptions::new().timeout(Duration::from_secs(2)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DEADLINE_EXCEEDED, "{err}");
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    // The handler is gone: nothing holds the session's call count.
    assert_eq!(n.server.calls_running(), 0);
    n.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_call_the_peer_never_answers_ends_at_its_own_deadline() {
    let client = Endpoint::builder().build().unwrap();
    // A peer that reads nothing and says nothing.
    let (ours, _silent) = drpc_socket::memory::pipe("client", "silent", 64 * 1024);
    let session = client.serve(ours).await.unwrap();
    let started = Instant::now();
    let err = session
        .call_with::<_, ()>(
            "/x",
            &(),
            CallOptions::new().timeout(Duration::from_secs(7)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DEADLINE_EXCEEDED);
    assert!(err.message().contains("no reply to /x within 7s"), "{err}");
    assert_eq!(started.elapsed(), Duration::from_secs(7));
    assert_eq!(session.pending_calls(), 0);
    client.shutdown(Duration::from_millis(10)).await;
}

#[tokio::test(start_paused = true)]
async fn half_a_frame_closes_the_session_at_the_frame_timeout() {
    let server = Endpoint::builder()
        .config(Config {
            frame_timeout: Duration::from_secs(30),
            ..Config::default()
        })
        .build()
        .unwrap();
    let (ours, theirs) = drpc_socket::memory::pipe("server", "slowloris", 64 * 1024);
    let session = server.serve(ours).await.unwrap();
    let parts = theirs.into_parts();
    let (mut slowloris, mut hears) = (parts.write, parts.read);
    let started = Instant::now();
    // The first 10 bytes of a frame, then nothing, the pipe held open.
    slowloris
        .write_all(&[0, 0, 0, 40, 1, 1, 1, 0, 0, 0])
        .await
        .unwrap();
    // The server ends its stream at the timeout...
    let mut rest = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut hears, &mut rest)
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(30));
    // ...and, the peer being silent, closes after its short linger.
    session.closed().await;
    assert_eq!(started.elapsed(), Duration::from_secs(31));
    let reason = session.close_reason().unwrap();
    assert_eq!(reason.code(), Code::DEADLINE_EXCEEDED, "{reason}");
    assert!(reason.message().contains("10 bytes of a frame"), "{reason}");
    server.shutdown(Duration::from_millis(10)).await;
}

/// Records when each dial attempt starts and fails, on the virtual clock.
struct DialTimes(mpsc::UnboundedSender<(&'static str, Instant)>);

impl Plugin for DialTimes {
    fn before_dial(&self, _: &Addr, is_redial: bool) -> Result<(), Status> {
        if is_redial {
            let _ = self.0.send(("attempt", Instant::now()));
        }
        Ok(())
    }
    fn after_dial_fail(&self, _: &Addr, _: &Status, _: bool) {
        let _ = self.0.send(("failed", Instant::now()));
    }
    fn after_dial<'a>(&'a self, _: &'a Session, redial: bool) -> BoxFuture<'a, Result<(), Status>> {
        if redial {
            let _ = self.0.send(("connected", Instant::now()));
        }
        Box::pin(async { Ok(()) })
    }
}

fn backoff(max_attempts: u32) -> Config {
    let mut config = Config::default();
    config.redial.initial_delay = Duration::from_millis(100);
    config.redial.multiplier = 2.0;
    config.redial.max_delay = Duration::from_millis(500);
    config.redial.jitter = 0.0;
    config.redial.max_attempts = Some(max_attempts);
    config
}

#[tokio::test(start_paused = true)]
async fn redial_waits_grow_by_the_backoff_and_give_up_after_the_attempts() {
    let (tx, mut times) = mpsc::unbounded_channel();
    let n = net(
        test_router(),
        Config::default(),
        Endpoint::builder().config(backoff(5)).plugin(DialTimes(tx)),
    )
    .await;
    n.net.unserve(SERVER);
    let lost = Instant::now();
    n.session
        .disconnect(Status::connection_closed("test: the server went away"));
    let mut attempts = Vec::new();
    for _ in 0..5 {
        let (what, at) = times.recv().await.unwrap();
        assert_eq!(what, "attempt");
        attempts.push(at.duration_since(lost).as_millis());
        assert_eq!(times.recv().await.unwrap().0, "failed");
    }
    // 100 ms, then doubling, capped at 500 ms.
    assert_eq!(attempts, [100, 300, 700, 1200, 1700]);
    n.session.closed().await;
    let reason = n.session.close_reason().unwrap();
    assert!(
        reason.message().contains("redial gave up after 5 attempts"),
        "{reason}"
    );
    assert_eq!(lost.elapsed(), Duration::from_millis(1700));
    n.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_redial_reaches_the_server_when_it_serves_again() {
    let (tx, mut times) = mpsc::unbounded_channel();
    let n = net(
        test_router(),
        Config::default(),
        Endpoint::builder()
            .config(backoff(10))
            .plugin(DialTimes(tx)),
    )
    .await;
    n.net.unserve(SERVER);
    let lost = Instant::now();
    n.session
        .disconnect(Status::connection_closed("test: the server went away"));
    // Two attempts fail; then it serves again.
    for _ in 0..2 {
        assert_eq!(times.recv().await.unwrap().0, "attempt");
        assert_eq!(times.recv().await.unwrap().0, "failed");
    }
    n.net.serve(SERVER, &n.server);
    assert_eq!(times.recv().await.unwrap().0, "attempt");
    let (what, at) = times.recv().await.unwrap();
    assert_eq!(what, "connected");
    assert_eq!(at.duration_since(lost), Duration::from_millis(700));
    // The same handle serves.
    let sum: i64 = n
        .session
        .call("/math/add", &Add { a: 2, b: 2 })
        .await
        .unwrap();
    assert_eq!(sum, 4);
    n.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_graceful_close_waits_for_handlers_within_the_grace_and_no_longer() {
    let server_config = Config {
        close_grace: Duration::from_secs(5),
        ..Config::default()
    };
    let (started_tx, mut running) = mpsc::unbounded_channel();
    let mut routes = Router::new();
    routes
        .call("/sleep_s", move |_: CallCtx, secs: u64| {
            let _ = started_tx.send(());
            async move {
                tokio::time::sleep(Duration::from_secs(secs)).await;
                Ok::<_, Status>(secs)
            }
        })
        .unwrap();
    let n = net(routes, server_config, Endpoint::builder()).await;
    let (short, long) = (n.session.clone(), n.session.clone());
    let short = tokio::spawn(async move { short.call::<_, u64>("/sleep_s", &2u64).await });
    let long = tokio::spawn(async move { long.call::<_, u64>("/sleep_s", &60u64).await });
    // Both handlers run before the close starts.
    for _ in 0..2 {
        running.recv().await.unwrap();
    }
    let started = Instant::now();
    n.server.close().await;
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(5),
        "the grace, not the 60 s handler"
    );
    // The handler that finished in time replied; the other was cut short.
    assert_eq!(short.await.unwrap().unwrap(), 2);
    let err = long.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::CONNECTION_CLOSED, "{err}");
    n.client.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_grace_also_bounds_a_connection_the_peer_already_ended() {
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let mut routes = Router::new();
    // A push: its sender cannot cancel it, so only the grace ends it.
    routes
        .push("/hold", move |_: PushCtx, _: ()| {
            let started_tx = started_tx.clone();
            async move {
                let _ = started_tx.send(());
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        })
        .unwrap();
    let n = net(routes, Config::default(), Endpoint::builder()).await;
    n.session.push("/hold", &()).await.unwrap();
    started.recv().await.unwrap();
    // The client's endpoint closes: the server's side of the connection
    // now drains, within the default close grace (10 s).
    n.client.close().await;
    let began = Instant::now();
    n.server.shutdown(Duration::from_millis(200)).await;
    assert_eq!(began.elapsed(), Duration::from_millis(200));
}
