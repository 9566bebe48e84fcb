//! Plugins that keep state for one call, and plugins of a route group.

mod common;

use common::*;
use drpc::plugin::HandledCall;
use drpc::proto::Message;
use drpc::{CallCtx, CallOptions, Code, Endpoint, Plugin, PushCtx, Router, Session, Status};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Keeps a handled call's `tag` meta (when it has one) and puts it on the
/// call's reply: state for one call, as Compression keeps a call's filters.
struct Tagging {
    ended: mpsc::UnboundedSender<String>,
}

struct Tag {
    tag: String,
    ended: mpsc::UnboundedSender<String>,
}

impl Plugin for Tagging {
    fn handle_call(
        &self,
        _: &Session,
        msg: &Message,
    ) -> Result<Option<Box<dyn HandledCall>>, Status> {
        Ok(msg.header.meta.get("tag").map(|tag| {
            Box::new(Tag {
                tag: tag.to_string(),
                ended: self.ended.clone(),
            }) as Box<dyn HandledCall>
        }))
    }
}

impl HandledCall for Tag {
    fn before_reply(&mut self, reply: &mut Message) -> Result<(), Status> {
        reply.header.meta.insert("tag", self.tag.as_str());
        Ok(())
    }
}

impl Drop for Tag {
    fn drop(&mut self) {
        let _ = self.ended.send(self.tag.clone());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_state_ends_with_it_and_a_redial_cannot_carry_it_to_another() {
    // The client serves the calls (and redials); the server calls it.
    let (ended_tx, mut ended) = mpsc::unbounded_channel();
    let (client_routes, mut gate) = gated_router();
    let mut p = pair_from(
        Endpoint::builder().router(Router::new()),
        Endpoint::builder()
            .router(client_routes)
            .plugin(Tagging { ended: ended_tx }),
    )
    .await;

    // Seq 1 on the first connection: tagged, and held by its handler.
    let first = p.accepted.clone();
    let held = tokio::spawn(async move {
        first
            .call_with::<_, u8>("/wait", &(), CallOptions::new().meta("tag", "old"))
            .await
    });
    within("handler start", gate.started.recv()).await.unwrap();
    assert!(ended.try_recv().is_err(), "the call still runs");

    // The connection drops; the session redials; the call's state ends with
    // its connection.
    p.session
        .disconnect(Status::connection_closed("test: drop the connection"));
    let err = within("the held call", held).await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::CONNECTION_CLOSED, "{err}");
    let second = within("the redialed connection", p.accepts.recv())
        .await
        .unwrap();
    assert_eq!(
        within("the old call's state ends", ended.recv())
            .await
            .as_deref(),
        Some("old")
    );

    // Seq 1 again, on the new connection, untagged: its reply carries no
    // tag from the call that had the same seq before.
    let reply = second
        .call_with::<_, i64>("/math/add", &Add { a: 1, b: 2 }, CallOptions::new())
        .await
        .unwrap();
    assert_eq!(reply.value, 3);
    assert_eq!(reply.meta.get("tag"), None);
    // A tagged call gets its own tag back, and its state ends with it.
    let reply = second
        .call_with::<_, i64>(
            "/math/add",
            &Add { a: 2, b: 2 },
            CallOptions::new().meta("tag", "new"),
        )
        .await
        .unwrap();
    assert_eq!(reply.meta.get("tag"), Some("new"));
    assert_eq!(ended.try_recv().as_deref(), Ok("new"));
    gate.release.send(true).unwrap();
    p.close().await;
}

/// Refuses every call that does not say `role: admin`.
struct AdminOnly {
    seen: Arc<AtomicUsize>,
}

impl Plugin for AdminOnly {
    fn after_read_call_header(&self, _: &Session, m: &mut Message) -> Result<(), Status> {
        self.seen.fetch_add(1, Ordering::SeqCst);
        match m.header.meta.get("role") {
            Some("admin") => Ok(()),
            _ => Err(Status::unauthorized("admins only")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_plugin_runs_only_for_the_routes_of_its_group() {
    let seen = Arc::new(AtomicUsize::new(0));
    let mut routes = test_router();
    routes
        .group("/admin")
        .plugin(AdminOnly { seen: seen.clone() })
        .call("/stop", |_: CallCtx, _: ()| async {
            Ok::<_, Status>("stopping")
        })
        .unwrap();
    let p = pair_with(routes, Router::new(), drpc::Config::default()).await;

    // Outside the group: untouched.
    let sum: i64 = p
        .session
        .call("/math/add", &Add { a: 1, b: 1 })
        .await
        .unwrap();
    assert_eq!(sum, 2);
    assert_eq!(seen.load(Ordering::SeqCst), 0);
    // Inside it: refused without the role, served with it.
    let err = p
        .session
        .call::<_, String>("/admin/stop", &())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::UNAUTHORIZED);
    let ok = p
        .session
        .call_with::<_, String>("/admin/stop", &(), CallOptions::new().meta("role", "admin"))
        .await
        .unwrap();
    assert_eq!(ok.value, "stopping");
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    p.close().await;
}

/// Records how each call this side made ended.
#[derive(Default)]
struct Ends(Mutex<Vec<(String, Code)>>, tokio::sync::Notify);

impl Plugin for Ends {
    fn after_call_end(&self, _: &Session, end: &drpc::plugin::CallEnd<'_>) {
        self.0
            .lock()
            .push((end.service_method.to_string(), end.status.code()));
        self.1.notify_waiters();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_end_hook_runs_once_for_every_call_however_it_ends() {
    let ends = Arc::new(Ends::default());
    let (router, mut gate) = gated_router();
    let p = pair_from(
        Endpoint::builder().router(router),
        Endpoint::builder().plugin_arc(ends.clone()),
    )
    .await;
    let s = &p.session;
    s.call::<_, i64>("/math/add", &Add { a: 1, b: 2 })
        .await
        .unwrap();
    s.call::<_, ()>("/nowhere", &()).await.unwrap_err();
    s.call_with::<_, ()>(
        "/slow",
        &10_000u64,
        drpc::CallOptions::new().timeout(std::time::Duration::from_millis(20)),
    )
    .await
    .unwrap_err();
    // A call whose caller stops waiting: its future is dropped mid-call.
    {
        let waiting = s.call::<_, u8>("/wait", &());
        tokio::pin!(waiting);
        tokio::select! {
            _ = &mut waiting => panic!("the gate is closed"),
            _ = gate.started.recv() => {}
        }
    }
    let seen = ends.0.lock().clone();
    assert_eq!(
        seen,
        vec![
            ("/math/add".to_string(), Code::OK),
            ("/nowhere".to_string(), Code::NOT_FOUND),
            ("/slow".to_string(), Code::DEADLINE_EXCEEDED),
            ("/wait".to_string(), Code::CANCELED),
        ]
    );
    // The abandoned call still runs at the server, which finishes it when
    // the client's stream ends.
    gate.release.send(true).unwrap();
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_see_their_message_as_current_and_push_handlers_end_with_a_hook() {
    /// Copies `request-id` from the handled message onto the calls its
    /// handler makes, and reports finished push handlers.
    struct Carry(mpsc::UnboundedSender<(String, bool)>);
    impl Plugin for Carry {
        fn before_write_call(&self, _: &Session, msg: &mut Message) -> Result<(), Status> {
            let id = drpc::Incoming::with_current(|m| {
                m.and_then(|m| m.meta().get("request-id").map(str::to_string))
            });
            if let Some(id) = id {
                msg.header.meta.insert("request-id", id);
            }
            Ok(())
        }
        fn after_read_push_body(&self, ctx: &PushCtx) -> Result<(), Status> {
            ctx.set_value(7u32);
            Ok(())
        }
        fn after_push_handler(&self, ctx: &PushCtx, _: std::time::Duration) {
            let _ = self.0.send((
                ctx.service_method().to_string(),
                ctx.value::<u32>() == Some(7),
            ));
        }
    }
    let (tx, mut handled) = mpsc::unbounded_channel();
    // The server's `/ask_back` handler calls the client's `/meta` route,
    // which answers with the meta value it was given.
    let mut server_routes = test_router();
    server_routes
        .call("/ask_back", |ctx: CallCtx, _: ()| async move {
            ctx.session()
                .call::<_, String>("/meta", &"request-id")
                .await
        })
        .unwrap();
    server_routes
        .push("/ping", |_: PushCtx, _: ()| async {})
        .unwrap();
    let p = pair_from(
        Endpoint::builder().router(server_routes).plugin(Carry(tx)),
        Endpoint::builder().router(test_router()),
    )
    .await;
    let reply = p
        .session
        .call_with::<_, String>(
            "/ask_back",
            &(),
            drpc::CallOptions::new().meta("request-id", "r-42"),
        )
        .await
        .unwrap();
    assert_eq!(reply.value, "r-42");
    // Outside any handler there is no current message.
    assert!(drpc::Incoming::with_current(|m| m.is_none()));
    p.session.push("/ping", &()).await.unwrap();
    assert_eq!(
        within("the push handler's end", handled.recv()).await,
        Some(("/ping".to_string(), true))
    );
    p.close().await;
}
