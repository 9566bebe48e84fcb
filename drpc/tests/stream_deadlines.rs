//! A stream's deadline (docs/PROTOCOL.md 3.4), on tokio's paused clock
//! over in-memory pipes: the call's deadline bounds the whole stream, and
//! a stream made with `CallOptions::no_deadline` outlives any default.

mod common;

use common::*;
use drpc::memory::MemoryNet;
use drpc::{CallCtx, CallOptions, Code, Config, Endpoint, ItemSink, Router, Session, Status};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

const SERVER: &str = "mem://server";
/// Both sides' default timeout: a stream with no deadline outlives it.
const DEFAULT: Duration = Duration::from_secs(1);

/// `/two` sends item 0, waits for `go`, sends item 1 and ends; it records
/// the deadline its context had.
fn routes(go: Arc<Notify>, deadline: Arc<std::sync::Mutex<Option<Duration>>>) -> Router {
    let mut r = test_router();
    r.server_stream(
        "/two",
        move |ctx: CallCtx, _: (), mut out: ItemSink<u32>| {
            let (go, deadline) = (go.clone(), deadline.clone());
            async move {
                let left = ctx.deadline() - std::time::Instant::now();
                *deadline.lock().unwrap() = Some(left);
                out.send(&0).await?;
                go.notified().await;
                out.send(&1).await?;
                Ok::<_, Status>(())
            }
        },
    )
    .unwrap();
    r
}

async fn pair(routes: Router) -> (Endpoint, Endpoint, Session, MemoryNet) {
    let config = || Config {
        default_timeout: DEFAULT,
        ..Config::default()
    };
    let net = MemoryNet::new();
    let server = Endpoint::builder()
        .config(config())
        .router(routes)
        .build()
        .unwrap();
    net.serve(SERVER, &server);
    let client = Endpoint::builder()
        .config(config())
        .dialer(net.dialer())
        .build()
        .unwrap();
    let session = client.dial(SERVER).await.unwrap();
    (server, client, session, net)
}

#[tokio::test(start_paused = true)]
async fn a_stream_with_no_deadline_outlives_every_default() {
    let go = Arc::new(Notify::new());
    let deadline = Arc::default();
    let (server, client, session, _net) = pair(routes(go.clone(), Arc::clone(&deadline))).await;
    let opts = CallOptions::new().timeout(DEFAULT).no_deadline();
    let mut items = session.stream::<_, u32>("/two", &(), opts).await.unwrap();
    assert_eq!(items.next().await.unwrap().unwrap(), 0);
    let left = deadline.lock().unwrap().unwrap();
    assert!(left > Duration::from_secs(300 * 24 * 3600), "{left:?}");
    // An hour passes: neither side's default of a second ends it.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    go.notify_one();
    assert_eq!(items.next().await.unwrap().unwrap(), 1);
    assert!(items.next().await.is_none());
    // A plain call refuses it: a reply must have a bound.
    let err = session
        .call_with::<_, i64>(
            "/math/add",
            &Add { a: 1, b: 2 },
            CallOptions::new().no_deadline(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::BAD_MESSAGE, "{err}");
    client.close().await;
    server.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_streams_deadline_bounds_all_of_it() {
    let go = Arc::new(Notify::new());
    let deadline = Arc::default();
    let (server, client, session, _net) = pair(routes(go, Arc::clone(&deadline))).await;
    let started = tokio::time::Instant::now();
    let opts = CallOptions::new().timeout(Duration::from_secs(5));
    let mut items = session.stream::<_, u32>("/two", &(), opts).await.unwrap();
    assert_eq!(items.next().await.unwrap().unwrap(), 0);
    let err = items.next().await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::DEADLINE_EXCEEDED, "{err}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(6),
        "{took:?}"
    );
    assert!(items.next().await.is_none());
    // The handler was stopped at the same deadline.
    // (Looked at each paused-clock tenth of a second, for a minute.)
    for _ in 0..600 {
        if server.calls_running() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(server.calls_running(), 0, "the handler stops");
    client.close().await;
    server.close().await;
}
