//! The hook points: the pairing of accept and close hooks, and the effect
//! of an error from each hook (their order is in `hook_order.rs`).

mod common;
#[path = "common/recorder.rs"]
mod recorder;

use common::*;
use drpc::plugin::{BoxFuture, RouteInfo};
use drpc::proto::{Header, Message};
use drpc::{Addr, CallCtx, Code, Endpoint, Plugin, PushCtx, Router, Session, Status};
use recorder::Recorder;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Counts accept, dial and close hooks, refusing every `refuse_every`-th accept.
struct Counter {
    opened: AtomicUsize,
    closed: AtomicUsize,
    refuse_every: usize,
}

impl Plugin for Counter {
    fn name(&self) -> &str {
        "counter"
    }
    fn after_accept<'a>(&'a self, _: &'a Session) -> BoxFuture<'a, Result<(), Status>> {
        let n = self.opened.fetch_add(1, Ordering::SeqCst) + 1;
        let refuse = self.refuse_every > 0 && n % self.refuse_every == 0;
        Box::pin(async move {
            if refuse {
                Err(Status::unauthorized("refused by the counter"))
            } else {
                Ok(())
            }
        })
    }
    fn after_dial<'a>(&'a self, _: &'a Session, _: bool) -> BoxFuture<'a, Result<(), Status>> {
        self.opened.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }
    fn after_session_close(&self, _: &Session) {
        self.closed.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_and_close_hooks_always_pair() {
    init_tracing();
    let counter = |refuse_every| {
        Arc::new(Counter {
            opened: AtomicUsize::new(0),
            closed: AtomicUsize::new(0),
            refuse_every,
        })
    };
    // The first plugin refuses every third session; the second never runs
    // its accept hook for those, so it must not see their close either.
    let (first, second, dialer) = (counter(3), counter(0), counter(0));
    let server = Endpoint::builder()
        .router(test_router())
        .plugin_arc(first.clone())
        .plugin_arc(second.clone())
        .build()
        .unwrap();
    let addr = server.listen("tcp://127.0.0.1:0").await.unwrap();
    // Without redial: a refused session would dial again (tests/redial.rs),
    // and here each dial is counted once.
    let client = Endpoint::builder()
        .config(no_redial())
        .plugin_arc(dialer.clone())
        .build()
        .unwrap();
    let mut kept = Vec::new();
    for i in 0..12 {
        // A refused session ends: the dial itself may already report it, or
        // the first call does. The others serve calls.
        let s = match client.dial(&addr).await {
            Ok(s) => s,
            Err(e) => {
                assert_eq!(e.code(), Code::CONNECTION_CLOSED, "{e}");
                continue;
            }
        };
        // A call that reached a refused session before the refusal is
        // answered with it (401); one that came later finds it closed.
        match s.call::<_, i64>("/math/add", &Add { a: i, b: 0 }).await {
            Ok(v) => {
                assert_eq!(v, i);
                kept.push(s);
            }
            Err(e) => assert!(
                [Code::CONNECTION_CLOSED, Code::UNAUTHORIZED].contains(&e.code()),
                "{e}"
            ),
        }
    }
    assert_eq!(kept.len(), 8);
    within("client close", client.close()).await;
    within("server close", server.close()).await;
    for (name, c, opened) in [("first", &first, 12), ("second", &second, 8)] {
        assert_eq!(c.opened.load(Ordering::SeqCst), opened, "{name} opened");
        assert_eq!(c.closed.load(Ordering::SeqCst), opened, "{name} closed");
    }
    // A refused connection can be over before the dialer's hook starts (the
    // dialer reads while its hooks run, and sees the close); then the hook
    // does not run at all. Either way its hooks pair.
    let dialed = dialer.opened.load(Ordering::SeqCst);
    assert!((8..=12).contains(&dialed), "dialer opened {dialed}");
    assert_eq!(
        dialer.closed.load(Ordering::SeqCst),
        dialed,
        "dialer closed"
    );
}

/// Refuses at one named hook with 1001.
struct Refuse(&'static str);

impl Refuse {
    fn check(&self, hook: &str) -> Result<(), Status> {
        if self.0 == hook {
            Err(Status::new(Code(1001), format!("refused at {hook}")))
        } else {
            Ok(())
        }
    }
}

impl Plugin for Refuse {
    fn name(&self) -> &str {
        "refuse"
    }
    fn after_register(&self, _: RouteInfo<'_>) -> Result<(), Status> {
        self.check("after_register")
    }
    fn before_dial(&self, _: &Addr, _: bool) -> Result<(), Status> {
        self.check("before_dial")
    }
    fn after_dial<'a>(&'a self, _: &'a Session, _: bool) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move { self.check("after_dial") })
    }
    fn before_write_call(&self, _: &Session, _: &mut Message) -> Result<(), Status> {
        self.check("before_write_call")
    }
    fn before_write_reply(&self, _: &Session, _: &mut Message) -> Result<(), Status> {
        self.check("before_write_reply")
    }
    fn before_write_push(&self, _: &Session, _: &mut Message) -> Result<(), Status> {
        self.check("before_write_push")
    }
    fn after_read_call_header(&self, _: &Session, _: &mut Message) -> Result<(), Status> {
        self.check("after_read_call_header")
    }
    fn after_read_call_body(&self, _: &CallCtx) -> Result<(), Status> {
        self.check("after_read_call_body")
    }
    fn after_read_reply_header(&self, _: &Session, _: &mut Message) -> Result<(), Status> {
        self.check("after_read_reply_header")
    }
    fn after_read_reply_body(&self, _: &Session, _: &Header) -> Result<(), Status> {
        self.check("after_read_reply_body")
    }
    fn after_read_push_header(&self, _: &Session, _: &mut Message) -> Result<(), Status> {
        self.check("after_read_push_header")
    }
    fn after_read_push_body(&self, _: &PushCtx) -> Result<(), Status> {
        self.check("after_read_push_body")
    }
}

/// A server whose `/count` handler counts its runs and whose `/seen` push
/// handler reports to a channel; the plugin sits on `side`.
async fn refusing_pair(
    hook: &'static str,
    on_server: bool,
) -> (
    Pair,
    Arc<AtomicUsize>,
    mpsc::UnboundedReceiver<(String, String)>,
) {
    init_tracing();
    let runs = Arc::new(AtomicUsize::new(0));
    let mut routes = Router::new();
    let r = runs.clone();
    routes
        .call("/count", move |_: CallCtx, _: ()| {
            let r = r.clone();
            async move { Ok::<_, Status>(r.fetch_add(1, Ordering::SeqCst) + 1) }
        })
        .unwrap();
    let pushes = forward_pushes(&mut routes, "/seen");
    let mut server = Endpoint::builder().router(routes);
    let mut client = Endpoint::builder();
    if on_server {
        server = server.plugin(Refuse(hook));
    } else {
        client = client.plugin(Refuse(hook));
    }
    let pair = pair_from(server, client).await;
    (pair, runs, pushes)
}

#[tokio::test]
async fn a_refusing_call_hook_answers_with_its_status_and_skips_the_handler() {
    for (hook, on_server) in [
        ("before_write_call", false),
        ("after_read_call_header", true),
        ("after_read_call_body", true),
        ("before_write_reply", true),
        ("after_read_reply_header", false),
        ("after_read_reply_body", false),
    ] {
        let (p, runs, _) = refusing_pair(hook, on_server).await;
        let err = p.session.call::<_, usize>("/count", &()).await.unwrap_err();
        assert_eq!(
            err,
            Status::new(Code(1001), format!("refused at {hook}")),
            "{hook}"
        );
        let handler_ran = runs.load(Ordering::SeqCst) == 1;
        let should_run = matches!(
            hook,
            "before_write_reply" | "after_read_reply_header" | "after_read_reply_body"
        );
        assert_eq!(handler_ran, should_run, "{hook}: handler ran");
        assert_eq!(p.session.pending_calls(), 0, "{hook}");
        assert!(
            p.session.is_healthy(),
            "{hook}: a refusal never closes the session"
        );
        p.close().await;
    }
}

#[tokio::test]
async fn a_refusing_push_hook_drops_the_push() {
    for (hook, on_server) in [
        ("before_write_push", false),
        ("after_read_push_header", true),
        ("after_read_push_body", true),
    ] {
        let (p, _, mut pushes) = refusing_pair(hook, on_server).await;
        let sent = p.session.push("/seen", "first").await;
        if hook == "before_write_push" {
            assert_eq!(sent.unwrap_err().code(), Code(1001));
        } else {
            sent.unwrap();
        }
        // A later call on the same session proves the push was processed
        // (messages are read in order); the handler never saw it.
        p.session.call::<_, usize>("/count", &()).await.unwrap();
        p.close().await;
        assert!(
            pushes.recv().await.is_none(),
            "{hook}: the push handler must not run"
        );
    }
}

#[tokio::test]
async fn refusing_endpoint_and_dial_hooks() {
    init_tracing();
    let mut routes = Router::new();
    routes
        .call("/x", |_: CallCtx, _: ()| async move { Ok::<_, Status>(()) })
        .unwrap();
    let err = Endpoint::builder()
        .router(routes)
        .plugin(Refuse("after_register"))
        .build()
        .unwrap_err();
    assert_eq!(err.code(), Code(1001));

    let server = Endpoint::builder().build().unwrap();
    let addr = server.listen("tcp://127.0.0.1:0").await.unwrap();
    for hook in ["before_dial", "after_dial"] {
        let rec = Arc::new(Recorder::default());
        let client = Endpoint::builder()
            .plugin(Refuse(hook))
            .plugin_arc(rec.clone())
            .build()
            .unwrap();
        let err = client.dial(&addr).await.unwrap_err();
        assert_eq!(err.code(), Code(1001), "{hook}");
        assert_eq!(client.session_count(), 0);
        let log = rec.take();
        assert_eq!(
            log.last().map(String::as_str),
            Some("after_dial_fail 1001"),
            "{hook}: {log:?}"
        );
        client.close().await;
    }
    server.close().await;
}

#[tokio::test]
async fn a_refused_accept_closes_the_session_with_its_reason() {
    init_tracing();
    struct RefuseAccept(mpsc::UnboundedSender<Session>);
    impl Plugin for RefuseAccept {
        fn name(&self) -> &str {
            "refuse-accept"
        }
        fn after_accept<'a>(&'a self, s: &'a Session) -> BoxFuture<'a, Result<(), Status>> {
            let _ = self.0.send(s.clone());
            Box::pin(async { Err(Status::unauthorized("no entry")) })
        }
    }
    let (tx, mut accepts) = mpsc::unbounded_channel();
    let server = Endpoint::builder()
        .router(test_router())
        .plugin(RefuseAccept(tx))
        .build()
        .unwrap();
    let addr = server.listen("tcp://127.0.0.1:0").await.unwrap();
    // Without redial: a dialed session would retry the refused handshake
    // (tests/redial.rs shows that); here the close itself is the point.
    let client = Endpoint::builder().config(no_redial()).build().unwrap();
    let dialed = client.dial(&addr).await;
    let refused = within("accept", accepts.recv()).await.unwrap();
    within("refused session closes", refused.closed()).await;
    assert_eq!(
        refused.close_reason(),
        Some(Status::unauthorized("no entry"))
    );
    // The dialer sees the close, in its dial or right after it.
    match dialed {
        Ok(session) => within("the dialer sees the close", session.closed()).await,
        Err(status) => assert_eq!(status.code(), Code::CONNECTION_CLOSED, "{status}"),
    }
    assert_eq!(server.session_count(), 0);
    client.close().await;
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_may_close_its_own_session_without_deadlock() {
    init_tracing();
    struct CloseOnAccept;
    impl Plugin for CloseOnAccept {
        fn name(&self) -> &str {
            "close-on-accept"
        }
        fn after_accept<'a>(&'a self, s: &'a Session) -> BoxFuture<'a, Result<(), Status>> {
            Box::pin(async move {
                s.close().await;
                Ok(())
            })
        }
    }
    // A counting plugin after the closing one: its accept hook must not
    // start on a closed session, so its counts stay paired (at zero).
    let after = Arc::new(Counter {
        opened: AtomicUsize::new(0),
        closed: AtomicUsize::new(0),
        refuse_every: 0,
    });
    let server = Endpoint::builder()
        .plugin(CloseOnAccept)
        .plugin_arc(after.clone())
        .build()
        .unwrap();
    let addr = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let client = Endpoint::builder().build().unwrap();
    // The dialer either sees the session close, or (if the close wins the
    // race with its own setup) a dial that fails with 102.
    match within("dial", client.dial(&addr)).await {
        Ok(session) => within("the dialer sees the close", session.closed()).await,
        Err(status) => assert_eq!(status.code(), Code::CONNECTION_CLOSED, "{status}"),
    }
    within("client close", client.close()).await;
    within("server close", server.close()).await;
    assert_eq!(server.session_count(), 0);
    assert_eq!(after.opened.load(Ordering::SeqCst), 0);
    assert_eq!(after.closed.load(Ordering::SeqCst), 0);
}
