//! Graceful shutdown: peers hear of it at once, running calls are answered,
//! and the grace period or a second call ends it.

mod common;

use common::*;
use drpc::{Code, Router};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_hear_of_a_shutdown_and_running_calls_are_answered() {
    let (routes, mut gate) = gated_router();
    let p = pair_with(routes, Router::new(), drpc::Config::default()).await;
    let running = call_waiting(&p.session, &mut gate).await;

    let server = p.server.clone();
    let shutdown = tokio::spawn(async move { server.shutdown(Duration::from_secs(30)).await });
    // The client hears at once, not when a deadline passes.
    within("going-away notice", p.session.going_away()).await;
    assert!(!p.session.is_healthy());
    let err = p
        .session
        .call::<_, i64>("/math/add", &Add { a: 1, b: 1 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::CONNECTION_CLOSED);
    assert!(err.message().contains("shutting down"), "{err}");
    let err = p.session.push("/x", &()).await.unwrap_err();
    assert_eq!(err.code(), Code::CONNECTION_CLOSED);

    // The running call still gets its answer, then everything closes.
    gate.release.send(true).unwrap();
    assert_eq!(within("running call", running).await.unwrap().unwrap(), 7);
    within("shutdown", shutdown).await.unwrap();
    within("client session closes", p.session.closed()).await;
    let reason = p.session.close_reason().unwrap();
    assert_eq!(reason.code(), Code::CONNECTION_CLOSED);
    assert!(reason.message().contains("shutting down"), "{reason}");
    within("client close", p.client.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_period_ends_a_shutdown() {
    let (routes, mut gate) = gated_router();
    let p = pair_with(routes, Router::new(), drpc::Config::default()).await;
    let stuck = call_waiting(&p.session, &mut gate).await;
    within("shutdown", p.server.shutdown(Duration::from_millis(200))).await;
    let err = within("stuck call", stuck).await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::CONNECTION_CLOSED, "{err}");
    within("client close", p.client.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_close_ends_a_shutdown_at_once() {
    let (routes, mut gate) = gated_router();
    let p = pair_with(routes, Router::new(), drpc::Config::default()).await;
    let stuck = call_waiting(&p.session, &mut gate).await;
    let server = p.server.clone();
    let first = tokio::spawn(async move { server.shutdown(Duration::from_secs(3600)).await });
    within("going-away notice", p.session.going_away()).await;
    // An hour of grace, cut short by the second call.
    within("second close", p.server.close()).await;
    within("first shutdown returns too", first).await.unwrap();
    let err = within("stuck call", stuck).await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::CONNECTION_CLOSED, "{err}");
    within("client close", p.client.close()).await;
}
