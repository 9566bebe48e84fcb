//! Server streams (docs/PROTOCOL.md section 3.4), on every transport:
//! items in order under credit, the reply's trailers, errors, and a
//! reader that stops holding its sender back.

use super::common::*;
use drpc::{CallCtx, CallOptions, Code, ItemSink, Router, Status};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `/count` sends 0..n, then replies with meta `done=yes`; `/fail_after`
/// sends n items, then fails; `/flood` sends until the deadline, counting
/// what it sent in `sent`.
fn streaming(sent: Arc<AtomicU64>) -> Router {
    let mut r = test_router();
    r.server_stream(
        "/count",
        |ctx: CallCtx, n: u64, mut out: ItemSink<u64>| async move {
            for i in 0..n {
                out.send(&i).await?;
            }
            ctx.set_reply_meta("done", "yes");
            Ok::<_, Status>(())
        },
    )
    .unwrap();
    r.server_stream(
        "/fail_after",
        |_: CallCtx, n: u64, mut out: ItemSink<u64>| async move {
            for i in 0..n {
                out.send(&i).await?;
            }
            Err::<(), _>(Status::new(Code(1234), "the source ran dry"))
        },
    )
    .unwrap();
    r.server_stream(
        "/flood",
        move |_: CallCtx, _: (), mut out: ItemSink<Vec<u8>>| {
            let sent = sent.clone();
            async move {
                let chunk = vec![7u8; 1024];
                for _ in 0..1_000_000u64 {
                    out.send(&chunk).await?;
                    sent.fetch_add(1, Ordering::SeqCst);
                }
                Ok::<_, Status>(())
            }
        },
    )
    .unwrap();
    r
}

/// A thousand items arrive in order, then the end with the trailers.
pub async fn a_server_stream_delivers_every_item_in_order(t: Transport) {
    let p = t.pair(streaming(Arc::default()), Router::new()).await;
    let mut items = p
        .session
        .stream::<_, u64>("/count", &1000u64, CallOptions::new())
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Some(item) = within("an item", items.next()).await {
        got.push(item.unwrap());
    }
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
    let trailers = items.trailers().unwrap();
    assert_eq!(trailers.get("done"), Some("yes"));
    assert_eq!(trailers.get("drpc-items"), Some("1000"));
    // The session goes on.
    let sum: i64 = p
        .session
        .call("/math/add", &Add { a: 1, b: 2 })
        .await
        .unwrap();
    assert_eq!(sum, 3);
    p.close().await;
}

/// A handler's error comes after the items it sent.
pub async fn a_failed_stream_ends_with_its_status_after_its_items(t: Transport) {
    let p = t.pair(streaming(Arc::default()), Router::new()).await;
    let mut items = p
        .session
        .stream::<_, u64>("/fail_after", &3u64, CallOptions::new())
        .await
        .unwrap();
    for want in 0..3 {
        assert_eq!(
            within("an item", items.next()).await.unwrap().unwrap(),
            want
        );
    }
    let err = within("the end", items.next()).await.unwrap().unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code(1234), "the source ran dry")
    );
    assert!(items.next().await.is_none());
    // A stream call to a plain route is refused, and a plain call to a
    // stream route.
    let mut wrong = p
        .session
        .stream::<_, i64>("/math/add", &Add { a: 1, b: 2 }, CallOptions::new())
        .await
        .unwrap();
    let err = within("the refusal", wrong.next())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), Code::BAD_MESSAGE, "{err}");
    // A plain call to a stream route is refused.
    let err = p.session.call::<_, ()>("/count", &1u64).await.unwrap_err();
    assert_eq!(err.code(), Code::BAD_MESSAGE, "{err}");
    p.close().await;
}

/// A reader that stops reading stops its sender within one window (256
/// items), and holds up no call beside it; dropping the stream cancels the
/// handler.
pub async fn a_reader_that_stops_holds_its_sender_back(t: Transport) {
    let sent = Arc::new(AtomicU64::new(0));
    let p = t.pair(streaming(sent.clone()), Router::new()).await;
    let opts = CallOptions::new().timeout(Duration::from_secs(60));
    let mut items = p
        .session
        .stream::<_, Vec<u8>>("/flood", &(), opts)
        .await
        .unwrap();
    for _ in 0..10 {
        within("an item", items.next()).await.unwrap().unwrap();
    }
    // The sender fills the window and waits: the count stops growing.
    let stalled = until_stalled(&sent, 256).await;
    assert!(stalled <= 10 + 256, "{stalled} items sent for 10 read");
    // The stalled stream holds up nothing else on the session.
    let sum: i64 = within("a call beside the stalled stream", async {
        p.session.call("/math/add", &Add { a: 2, b: 3 }).await
    })
    .await
    .unwrap();
    assert_eq!(sum, 5);
    drop(items);
    within("the handler to stop", async {
        while p.server.calls_running() > 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    p.close().await;
}
