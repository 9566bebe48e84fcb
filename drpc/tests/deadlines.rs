//! Every call has a deadline: it travels to the handler, a late handler gets
//! 408, and no pending entry outlives its call.

mod common;

use common::*;
use drpc::{CallCtx, CallOptions, Code, Config, Router, Status};
use std::time::Duration;
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_gets_408_at_its_deadline_and_the_entry_is_freed() {
    let p = pair().await;
    let err = within(
        "timed-out call",
        p.session.call_with::<_, u64>(
            "/slow",
            &60_000u64,
            CallOptions::new().timeout(Duration::from_millis(200)),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::DEADLINE_EXCEEDED);
    assert_eq!(p.session.pending_calls(), 0);
    // The session is unharmed by the late handler.
    let ms: u64 = p.session.call("/slow", &1u64).await.unwrap();
    assert_eq!(ms, 1);
    p.close().await;
}

#[tokio::test]
async fn the_default_timeout_applies_when_a_call_sets_none() {
    let config = Config {
        default_timeout: Duration::from_millis(150),
        ..Config::default()
    };
    let p = pair_with(test_router(), Router::new(), config).await;
    let err = within("call", p.session.call::<_, u64>("/slow", &60_000u64))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DEADLINE_EXCEEDED);
    p.close().await;
}

#[tokio::test]
async fn the_handler_sees_the_callers_deadline() {
    let p = pair().await;
    let left: u64 = p
        .session
        .call_with(
            "/remaining_ms",
            &(),
            CallOptions::new().timeout(Duration::from_secs(7)),
        )
        .await
        .map(|r| r.value)
        .unwrap();
    assert!(left <= 7_000, "{left}");
    assert!(left > 1_000, "the deadline travelled: {left} ms left");
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_past_its_deadline_is_cancelled_and_answered_408() {
    // The handler reports whether it was allowed to finish.
    let (tx, mut finished) = mpsc::unbounded_channel::<()>();
    let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
    let mut routes = Router::new();
    routes
        .call("/stuck", move |_: CallCtx, _: ()| {
            let (tx, started_tx) = (tx.clone(), started_tx.clone());
            async move {
                let _ = started_tx.send(());
                tokio::time::sleep(Duration::from_secs(60)).await;
                let _ = tx.send(());
                Ok::<_, Status>(())
            }
        })
        .unwrap();
    // The caller waits much longer than the deadline it sends, so the 408
    // it sees comes from the peer's cancelled handler.
    let p = pair_with(routes, Router::new(), Config::default()).await;
    let call = {
        let s = p.session.clone();
        tokio::spawn(async move {
            s.call_with::<_, ()>(
                "/stuck",
                &(),
                CallOptions::new().timeout(Duration::from_millis(300)),
            )
            .await
        })
    };
    within("handler start", started.recv()).await.unwrap();
    let err = within("call", call).await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::DEADLINE_EXCEEDED);
    // The server session's handler tracker drains: the handler was cancelled.
    within("server close", p.server.close()).await;
    assert!(
        finished.try_recv().is_err(),
        "the late handler must not run to completion"
    );
    within("client close", p.client.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_call_frees_its_entry() {
    let mut routes = test_router();
    let mut started = hold_route(&mut routes);
    // The abandoned call's handler runs on at the server (nothing tells it
    // yet); its close lets it, within a short grace.
    let config = Config {
        close_grace: std::time::Duration::from_millis(200),
        ..Config::default()
    };
    let p = pair_with(routes, Router::new(), config).await;
    let s = p.session.clone();
    let call = tokio::spawn(async move { s.call::<_, ()>("/hold", &()).await });
    within("handler start", started.recv()).await.unwrap();
    assert_eq!(p.session.pending_calls(), 1);
    call.abort();
    let _ = call.await;
    assert_eq!(
        p.session.pending_calls(),
        0,
        "the abandoned call's entry is gone"
    );
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pending_entry_outlives_its_call() {
    let p = pair().await;
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let s = p.session.clone();
        tasks.push(tokio::spawn(async move {
            // A third succeed, a third time out, a third fail at the peer.
            match i % 3 {
                0 => s
                    .call::<_, i64>("/math/add", &Add { a: 1, b: 1 })
                    .await
                    .map(|_| ()),
                1 => s
                    .call_with::<_, u64>(
                        "/slow",
                        &5_000u64,
                        CallOptions::new().timeout(Duration::from_millis(50)),
                    )
                    .await
                    .map(|_| ()),
                _ => s.call::<_, ()>("/nope", &()).await,
            }
        }));
    }
    let mut codes = std::collections::BTreeMap::new();
    for t in tasks {
        let code = match within("call", t).await.unwrap() {
            Ok(()) => 0,
            Err(e) => e.code().0,
        };
        *codes.entry(code).or_insert(0) += 1;
    }
    assert_eq!(codes.get(&0), Some(&67));
    assert_eq!(codes.get(&408), Some(&67));
    assert_eq!(codes.get(&404), Some(&66));
    assert_eq!(p.session.pending_calls(), 0);
    p.close().await;
}

#[tokio::test]
async fn an_unlimited_timeout_is_accepted() {
    let p = pair().await;
    let sum: i64 = p
        .session
        .call_with(
            "/math/add",
            &Add { a: 1, b: 2 },
            CallOptions::new().timeout(Duration::MAX),
        )
        .await
        .map(|r| r.value)
        .unwrap();
    assert_eq!(sum, 3);
    p.session
        .push_with("/x", &(), drpc::PushOptions::new().timeout(Duration::MAX))
        .await
        .unwrap();
    p.close().await;
}
