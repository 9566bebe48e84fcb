//! The hook points run in the documented order on both peers.

mod common;
#[path = "common/recorder.rs"]
mod recorder;

use common::*;
use drpc::{CallCtx, Endpoint, Router, Status};
use recorder::Recorder;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Removes `hook` from `hooks`, checking that it ran once and after `after`.
fn remove_after(hooks: &mut Vec<String>, hook: &str, after: &str) {
    let at = hooks.iter().position(|h| h == hook);
    let before = hooks.iter().position(|h| h == after);
    match (before, at) {
        (Some(before), Some(at)) if before < at => {
            hooks.remove(at);
        }
        _ => panic!("{hook} must run once, after {after}: {hooks:?}"),
    }
    assert!(
        !hooks.iter().any(|h| h == hook),
        "{hook} ran twice: {hooks:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_run_in_the_documented_order_on_both_peers() {
    init_tracing();
    let server_rec = Arc::new(Recorder::default());
    let client_rec = Arc::new(Recorder::default());
    let (tx, mut accepts) = mpsc::unbounded_channel();

    let mut routes = Router::new();
    routes
        .group("/math")
        .call("/add", |_: CallCtx, x: Add| async move {
            Ok::<_, Status>(x.a + x.b)
        })
        .unwrap();
    let server = Endpoint::builder()
        .router(routes)
        .plugin_arc(server_rec.clone())
        .plugin(AcceptNotify(tx))
        .build()
        .unwrap();
    let addr = server.listen("tcp://127.0.0.1:0").await.unwrap();

    let mut client_routes = Router::new();
    let mut pushes = forward_pushes(&mut client_routes, "/hello");
    let client = Endpoint::builder()
        .router(client_routes)
        .plugin_arc(client_rec.clone())
        .build()
        .unwrap();
    let session = client.dial(&addr).await.unwrap();
    let accepted = within("accept", accepts.recv()).await.unwrap();

    let sum: i64 = session
        .call("/math/add", &Add { a: 1, b: 2 })
        .await
        .unwrap();
    assert_eq!(sum, 3);
    accepted.push("/hello", "hi").await.unwrap();
    within("push", pushes.recv()).await.unwrap();

    within("client close", client.close()).await;
    within("server session close", accepted.closed()).await;
    within("server close", server.close()).await;

    // `after_write_call` runs in the caller's task once the call is in the
    // write buffer; the writer may already have sent it and the reader read
    // the reply by then, so it comes after `before_write_call` and is
    // otherwise unordered with the reading hooks.
    let mut client_hooks = client_rec.take();
    remove_after(
        &mut client_hooks,
        "after_write_call /math/add",
        "before_write_call /math/add",
    );
    // The answer to the hello (PROTOCOL.md 3.2) is a frame, not a reply any
    // plugin sees, and it may arrive at any time after the dial: its
    // header's hook is the first of the reading hooks.
    let first_read = client_hooks.iter().position(|h| h == "before_read_header");
    let dialed = client_hooks
        .iter()
        .position(|h| h == "before_dial redial=false");
    assert!(first_read > dialed, "{client_hooks:?}");
    client_hooks.remove(first_read.unwrap());
    assert_eq!(
        client_hooks,
        [
            "after_register /hello",
            // Every endpoint serves the health check (PROTOCOL.md 10.4).
            "after_register /_drpc/health",
            "after_build",
            "before_dial redial=false",
            "after_dial redial=false",
            // the call and its reply
            "before_write_call /math/add",
            "before_read_header",
            "after_read_reply_header",
            "after_read_reply_body",
            // the push from the server
            "before_read_header",
            "after_read_push_header /hello",
            "after_read_push_body /hello",
            "before_close",
            "before_going_away",
            "after_session_close",
            "after_close",
        ]
    );
    // Likewise the handler's task may run `after_write_reply` after the
    // client has its reply and the test has started the push.
    let mut server_hooks = server_rec.take();
    remove_after(&mut server_hooks, "after_write_reply", "before_write_reply");
    // The client's hello, answered by the core, is the first frame read;
    // the reader may read it while the accept hooks still run.
    let first_read = server_hooks.iter().position(|h| h == "before_read_header");
    let listened = server_hooks.iter().position(|h| h == "after_listen");
    assert!(first_read > listened, "{server_hooks:?}");
    server_hooks.remove(first_read.unwrap());
    assert_eq!(
        server_hooks,
        [
            "after_register /math/add",
            // Every endpoint serves the health check (PROTOCOL.md 10.4).
            "after_register /_drpc/health",
            "after_build",
            "after_listen",
            "after_accept",
            // the call and its reply
            "before_read_header",
            "after_read_call_header /math/add",
            "after_read_call_body /math/add",
            "before_write_reply",
            // the push to the client
            "before_write_push /hello",
            "after_write_push /hello",
            // the client's going-away notice: its first bytes are announced
            // like any frame's, and nothing more (it is not a message)
            "before_read_header",
            // the client left
            "after_session_close",
            "before_close",
            "before_going_away",
            "after_close",
        ]
    );
}
