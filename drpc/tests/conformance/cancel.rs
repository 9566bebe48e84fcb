//! Cancellation carried to the peer (docs/PROTOCOL.md sections 3.2 and
//! 3.3), on every transport: a caller that gives up stops the handler.

use super::common::*;
use drpc::{CallCtx, CallOptions, Code, Router, Session, Status};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What a hanging handler reports: it started, its future was dropped
/// (when), and the work it spawned saw `CallCtx::cancelled`.
enum Seen {
    Started,
    Dropped(Instant),
    CleanedUp,
}

/// Sends [`Seen::Dropped`] when the handler's future is dropped.
struct OnDrop(mpsc::UnboundedSender<Seen>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(Seen::Dropped(Instant::now()));
    }
}

/// A router whose `/hang` handler never finishes on its own.
fn hanging() -> (Router, mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut r = test_router();
    r.call("/hang", move |ctx: CallCtx, _: ()| {
        let tx = tx.clone();
        async move {
            let cleanup = ctx.cancelled();
            let spawned_tx = tx.clone();
            tokio::spawn(async move {
                cleanup.await;
                let _ = spawned_tx.send(Seen::CleanedUp);
            });
            let _guard = OnDrop(tx.clone());
            let _ = tx.send(Seen::Started);
            std::future::pending::<()>().await;
            Ok::<_, Status>(())
        }
    })
    .unwrap();
    (r, rx)
}

/// Waits for the handler's future to be dropped and its spawned work to
/// see the cancel, in either order; returns when it was dropped.
async fn stopped(seen: &mut mpsc::UnboundedReceiver<Seen>) -> Instant {
    let (mut dropped, mut cleaned) = (None, false);
    while dropped.is_none() || !cleaned {
        match within("the handler to stop", seen.recv()).await.unwrap() {
            Seen::Dropped(at) => dropped = Some(at),
            Seen::CleanedUp => cleaned = true,
            Seen::Started => panic!("a second handler started"),
        }
    }
    dropped.unwrap()
}

/// Makes a 30 s call to `/hang` on `session`, drops it once the handler
/// runs, and returns how long the handler took to stop.
async fn drop_a_call(session: &Session, seen: &mut mpsc::UnboundedReceiver<Seen>) -> Duration {
    let s = session.clone();
    let call = tokio::spawn(async move {
        let opts = CallOptions::new().timeout(Duration::from_secs(30));
        s.call_with::<_, ()>("/hang", &(), opts).await
    });
    assert!(matches!(
        within("the handler to start", seen.recv()).await,
        Some(Seen::Started)
    ));
    let gave_up = Instant::now();
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    stopped(seen).await.saturating_duration_since(gave_up)
}

/// A caller that drops its call stops the peer's handler: its future is
/// dropped, the work it spawned sees `cancelled()`, and the session goes
/// on. Twenty times in a row, each way.
pub async fn a_dropped_call_stops_its_handler_at_the_peer(t: Transport) {
    let (server_routes, mut at_server) = hanging();
    let (client_routes, mut at_client) = hanging();
    let p = t.pair(server_routes, client_routes).await;
    let mut took = Vec::new();
    for _ in 0..20 {
        took.push(drop_a_call(&p.session, &mut at_server).await);
    }
    // The acceptor learned from the hello that the dialer takes cancels.
    drop_a_call(&p.accepted, &mut at_client).await;
    within("the server's calls to end", async {
        while p.server.calls_running() > 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let sum: i64 = p
        .session
        .call("/math/add", &Add { a: 1, b: 2 })
        .await
        .unwrap();
    assert_eq!(sum, 3);
    took.sort();
    // Printed, not asserted: a loaded machine may be slow. The promise of
    // 10 ms over TCP is checked by `examples/stream_bench`.
    eprintln!(
        "{}: the handler stopped {:?} (median) and at most {:?} after the drop",
        t.name,
        took[took.len() / 2],
        took[took.len() - 1]
    );
    p.close().await;
}

/// A call whose deadline passes at the caller stops the peer's handler
/// too (by the caller's cancel or the handler's own deadline, which
/// travelled with the call: whichever comes first; `cancel_wire.rs` shows
/// the cancel is sent), and the caller sees 408.
pub async fn a_call_past_its_deadline_stops_its_handler_at_the_peer(t: Transport) {
    let (server_routes, mut at_server) = hanging();
    let p = t.pair(server_routes, Router::new()).await;
    let opts = CallOptions::new().timeout(Duration::from_millis(300));
    let err = p
        .session
        .call_with::<_, ()>("/hang", &(), opts)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DEADLINE_EXCEEDED, "{err}");
    assert!(matches!(at_server.recv().await, Some(Seen::Started)));
    stopped(&mut at_server).await;
    p.close().await;
}
