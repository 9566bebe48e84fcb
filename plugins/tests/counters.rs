use drpc::{CallCtx, Endpoint, PushCtx, Router, Status};
use drpc_plugins::{Counters, CountersSnapshot};
use std::sync::Arc;
use std::time::Duration;

async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("did not happen in time")
}

#[tokio::test]
async fn counts_what_flows_both_ways_over_a_real_socket() {
    let server_counts = Arc::new(Counters::default());
    let client_counts = Arc::new(Counters::default());
    let (tx, mut pushed) = tokio::sync::mpsc::unbounded_channel();
    let mut routes = Router::new();
    routes
        .call("/double", |_: CallCtx, x: i64| async move {
            Ok::<_, Status>(x * 2)
        })
        .unwrap();
    routes
        .push("/note", move |_: PushCtx, s: String| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(s);
            }
        })
        .unwrap();
    let server = Endpoint::builder()
        .router(routes)
        .plugin_arc(server_counts.clone())
        .build()
        .unwrap();
    let addr = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let client = Endpoint::builder()
        .plugin_arc(client_counts.clone())
        .build()
        .unwrap();
    let session = client.dial(&addr).await.unwrap();

    for i in 0..3 {
        assert_eq!(session.call::<_, i64>("/double", &i).await.unwrap(), i * 2);
    }
    assert!(session.call::<_, ()>("/missing", &()).await.is_err());
    session.push("/note", "n").await.unwrap();
    within(pushed.recv()).await.unwrap();
    assert_eq!(client_counts.snapshot().sessions_live(), 1);

    within(client.close()).await;
    within(server.close()).await;

    assert_eq!(
        client_counts.snapshot(),
        CountersSnapshot {
            sessions_opened: 1,
            sessions_closed: 1,
            calls_sent: 4,
            replies_received: 4,
            pushes_sent: 1,
            ..Default::default()
        }
    );
    assert_eq!(
        server_counts.snapshot(),
        CountersSnapshot {
            sessions_opened: 1,
            sessions_closed: 1,
            calls_received: 4,
            replies_sent: 4,
            error_replies_sent: 1,
            pushes_received: 1,
            ..Default::default()
        }
    );
}
