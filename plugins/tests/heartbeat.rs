//! The heartbeat plugin over real sockets: a stalled peer is found and
//! closed, an idle live session is kept, a busy one sends no pings.

use drpc::{CallCtx, Code, Endpoint, Router, Status};
use drpc_plugins::Heartbeat;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("did not happen in time")
}

/// A router that answers pings and counts them.
fn counting_pings() -> (Router, Arc<AtomicUsize>) {
    let pings = Arc::new(AtomicUsize::new(0));
    let mut r = Router::new();
    let n = pings.clone();
    r.call(Heartbeat::METHOD, move |_: CallCtx, _: ()| {
        n.fetch_add(1, Ordering::Relaxed);
        async { Ok::<_, Status>(()) }
    })
    .unwrap();
    r.call(
        "/echo",
        |_: CallCtx, x: u32| async move { Ok::<_, Status>(x) },
    )
    .unwrap();
    (r, pings)
}

#[tokio::test]
async fn a_stalled_peer_is_found_and_its_session_closed_within_the_bound() {
    let (tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    let server = Endpoint::builder()
        .plugin(Heartbeat::new(Duration::from_millis(100)).misses(3))
        .plugin(Accepts(tx))
        .build()
        .unwrap();
    let addr = server.listen("tcp://127.0.0.1:0").await.unwrap();
    // A peer that connects and then never reads or answers: not closed,
    // just stuck, as a hung process or a dead link looks.
    let _stalled = tokio::net::TcpStream::connect(addr.target()).await.unwrap();
    let session = within(accepted.recv()).await.unwrap();
    within(session.closed()).await;
    let reason = session.close_reason().unwrap();
    assert_eq!(reason.code(), Code::DEADLINE_EXCEEDED, "{reason}");
    assert!(
        reason.message().contains("nothing heard from the peer"),
        "{reason}"
    );
    assert_eq!(server.session_count(), 0);
    server.close().await;
}

#[tokio::test]
async fn a_dialed_session_to_a_stalled_peer_redials() {
    // A listener that accepts and then never reads or answers; it counts
    // the connections it gets.
    let stalled = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("tcp://{}", stalled.local_addr().unwrap());
    let (conn_tx, mut conns) = tokio::sync::mpsc::unbounded_channel();
    let keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = stalled.accept().await {
            held.push(socket);
            let _ = conn_tx.send(());
        }
    });
    let client = Endpoint::builder()
        .config(drpc::Config {
            redial: drpc::Redial {
                initial_delay: Duration::from_millis(10),
                ..Default::default()
            },
            ..Default::default()
        })
        .plugin(Heartbeat::new(Duration::from_millis(100)).misses(3))
        .build()
        .unwrap();
    let session = client.dial(addr.as_str()).await.unwrap();
    within(conns.recv()).await.unwrap();
    // Found silent, the connection is dropped and dialed again.
    within(conns.recv()).await.unwrap();
    assert!(session.state() != drpc::SessionState::Closed);
    client.close().await;
    keep.abort();
}

/// Sends every accepted session to a channel.
struct Accepts(tokio::sync::mpsc::UnboundedSender<drpc::Session>);

impl drpc::Plugin for Accepts {
    fn after_accept<'a>(
        &'a self,
        session: &'a drpc::Session,
    ) -> drpc::plugin::BoxFuture<'a, Result<(), Status>> {
        let _ = self.0.send(session.clone());
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn an_idle_live_session_is_pinged_and_kept() {
    let (routes, pings) = counting_pings();
    let beat = || Heartbeat::new(Duration::from_millis(100)).misses(5);
    let server = Endpoint::builder()
        .router(routes)
        .plugin(beat())
        .build()
        .unwrap();
    let addr = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let client = Endpoint::builder().plugin(beat()).build().unwrap();
    let session = client.dial(&addr).await.unwrap();
    // Idle for ten intervals: the pings keep it alive on both sides.
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(1000)) => {}
        _ = session.closed() => panic!("closed: {:?}", session.close_reason()),
    }
    assert!(pings.load(Ordering::Relaxed) >= 2, "the idle client pinged");
    let x: u32 = session.call("/echo", &7u32).await.unwrap();
    assert_eq!(x, 7);
    assert_eq!(server.session_count(), 1);
    client.close().await;
    server.close().await;
}

#[tokio::test]
async fn a_busy_session_sends_no_pings() {
    let (routes, pings) = counting_pings();
    let server = Endpoint::builder().router(routes).build().unwrap();
    let addr = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let client = Endpoint::builder()
        .plugin(Heartbeat::new(Duration::from_millis(250)))
        .build()
        .unwrap();
    let session = client.dial(&addr).await.unwrap();
    // Calls back to back for three intervals: always something heard.
    let until = tokio::time::Instant::now() + Duration::from_millis(750);
    while tokio::time::Instant::now() < until {
        let _: u32 = session.call("/echo", &1u32).await.unwrap();
    }
    assert_eq!(pings.load(Ordering::Relaxed), 0);
    client.close().await;
    server.close().await;
}

/// On tokio's paused clock, over an in-memory pipe: exact times, no waiting.
mod paused {
    use super::*;
    use drpc::memory::MemoryNet;
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_is_dropped_when_the_bound_passes() {
        let server = Endpoint::builder()
            .plugin(Heartbeat::new(Duration::from_secs(1)).misses(3))
            .build()
            .unwrap();
        // A peer that never answers.
        let (ours, _silent) = drpc::socket::memory::pipe("server", "silent", 64 * 1024);
        let started = Instant::now();
        let session = server.serve(ours).await.unwrap();
        session.closed().await;
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        let reason = session.close_reason().unwrap();
        assert_eq!(reason.code(), Code::DEADLINE_EXCEEDED, "{reason}");
        assert!(reason.message().contains("heartbeat"), "{reason}");
        server.close().await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_live_peer_is_pinged_once_an_interval_and_kept() {
        let net = MemoryNet::new();
        let (routes, pings) = counting_pings();
        let server = Endpoint::builder().router(routes).build().unwrap();
        net.serve("mem://server", &server);
        let client = Endpoint::builder()
            .dialer(net.dialer())
            .plugin(Heartbeat::new(Duration::from_secs(1)).misses(3))
            .build()
            .unwrap();
        let session = client.dial("mem://server").await.unwrap();
        tokio::time::sleep(Duration::from_millis(10_500)).await;
        // An idle session pings at 1 s, 2 s, ... and every answer is traffic.
        assert_eq!(pings.load(Ordering::Relaxed), 10);
        assert!(session.is_healthy());
        client.close().await;
        server.close().await;
    }
}
