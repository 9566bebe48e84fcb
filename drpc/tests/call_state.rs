//! Plugins that keep state for one call, and plugins of a route group.

mod common;

use common::*;
use drpc::plugin::HandledCall;
use drpc::proto::Message;
use drpc::{CallCtx, CallOptions, Code, Endpoint, Plugin, Router, Session, Status};
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
