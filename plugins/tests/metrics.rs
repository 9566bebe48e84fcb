//! The metrics plugin over a real socket, read back through a debugging
//! recorder installed for this test binary.

use drpc::{CallCtx, Endpoint, PushCtx, Router, Status};
use drpc_plugins::Metrics;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::MetricKind;
use std::time::Duration;

async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("did not happen in time")
}

/// (kind, name, sorted labels) → value.
fn snapshot(s: &Snapshotter) -> Vec<(MetricKind, String, Vec<String>, DebugValue)> {
    s.snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (kind, key) = key.into_parts();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            (kind, key.name().to_string(), labels, value)
        })
        .collect()
}

fn counter(
    snap: &[(MetricKind, String, Vec<String>, DebugValue)],
    name: &str,
    labels: &[&str],
) -> u64 {
    snap.iter()
        .find(|(_, n, l, _)| n == name && l.iter().map(String::as_str).eq(labels.iter().copied()))
        .map(|(_, _, _, v)| match v {
            DebugValue::Counter(c) => *c,
            other => panic!("{name} is not a counter: {other:?}"),
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn calls_pushes_sessions_and_latencies_are_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");

    let (tx, mut pushed) = tokio::sync::mpsc::unbounded_channel();
    let mut r = Router::new();
    r.call("/double", |_: CallCtx, x: i64| async move {
        Ok::<_, Status>(x * 2)
    })
    .unwrap();
    r.call("/never", |_: CallCtx, _: ()| async move {
        std::future::pending::<()>().await;
        Ok::<_, Status>(())
    })
    .unwrap();
    r.push("/note", move |_: PushCtx, _: String| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(());
        }
    })
    .unwrap();
    let server = Endpoint::builder()
        .router(r)
        .plugin(Metrics::default())
        .build()
        .unwrap();
    let addr = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let client = Endpoint::builder()
        .plugin(Metrics::default())
        .build()
        .unwrap();
    let s = client.dial(&addr).await.unwrap();
    for i in 0..5 {
        let x: i64 = s.call("/double", &i).await.unwrap();
        assert_eq!(x, i * 2);
    }
    let _ = s.call::<_, ()>("/made/up/1", &()).await.unwrap_err();
    let _ = s.call::<_, ()>("/made/up/2", &()).await.unwrap_err();
    // Ends by its deadline here, with no reply: still a call made.
    let _ = s
        .call_with::<_, ()>(
            "/never",
            &(),
            drpc::CallOptions::new().timeout(Duration::from_millis(20)),
        )
        .await
        .unwrap_err();
    s.push("/note", &"hi").await.unwrap();
    within(pushed.recv()).await.unwrap();

    let snap = snapshot(&snapshotter);
    assert_eq!(
        counter(
            &snap,
            "drpc_calls_handled_total",
            &["method=/double", "status=0"]
        ),
        5
    );
    // Made-up methods share one label, so a peer cannot grow the label set.
    assert_eq!(
        counter(
            &snap,
            "drpc_calls_handled_total",
            &["method=(unrouted)", "status=404"]
        ),
        2
    );
    assert_eq!(
        counter(
            &snap,
            "drpc_calls_made_total",
            &["method=/double", "status=0"]
        ),
        5
    );
    assert_eq!(
        counter(
            &snap,
            "drpc_calls_made_total",
            &["method=/never", "status=408"]
        ),
        1
    );
    assert_eq!(
        counter(&snap, "drpc_pushes_received_total", &["method=/note"]),
        1
    );
    assert_eq!(
        counter(&snap, "drpc_pushes_sent_total", &["method=/note"]),
        1
    );
    assert_eq!(
        counter(&snap, "drpc_sessions_total", &["origin=accepted"]),
        1
    );
    assert_eq!(counter(&snap, "drpc_sessions_total", &["origin=dialed"]), 1);
    assert!(counter(&snap, "drpc_body_bytes_sent_total", &[]) > 0);
    let handle_times = snap
        .iter()
        .find(|(_, n, l, _)| n == "drpc_call_handle_seconds" && l == &["method=/double"])
        .map(|(_, _, _, v)| match v {
            DebugValue::Histogram(h) => h.len(),
            _ => 0,
        });
    assert_eq!(handle_times, Some(5));
    let gauge = |snap: &[(MetricKind, String, Vec<String>, DebugValue)]| {
        snap.iter()
            .find(|(_, n, _, _)| n == "drpc_sessions_open")
            .map(|(_, _, _, v)| match v {
                DebugValue::Gauge(g) => g.into_inner(),
                other => panic!("not a gauge: {other:?}"),
            })
            .unwrap_or(0.0)
    };
    // The debugging recorder reports changes since its last snapshot.
    let opened = gauge(&snap);
    assert_eq!(opened, 2.0, "one per side");

    client.close().await;
    server.close().await;
    let closed = gauge(&snapshot(&snapshotter));
    assert_eq!(opened + closed, 0.0, "both closed, and the gauge pairs up");
}
