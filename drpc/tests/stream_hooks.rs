//! Plugins see a stream as the call it is: on the caller's side its write
//! hooks as it opens and `after_call_end` once when it ends, however it
//! ends; on the callee's, a handled call's state from open to close.

mod common;

use common::*;
use drpc::plugin::{CallEnd, HandledCall, MadeCall};
use drpc::proto::Message;
use drpc::{
    CallCtx, CallOptions, Code, Endpoint, ItemSink, Items, Plugin, Router, Session, Status,
};
use parking_lot::Mutex;
use std::sync::Arc;

/// The caller's plugin: tags each call's meta, refuses `/refused`, and
/// records what its call state and `after_call_end` saw.
#[derive(Default)]
struct Caller(Mutex<Vec<String>>);

struct Made(Arc<Caller>, String);

impl Plugin for Caller {
    fn before_write_call(&self, _: &Session, msg: &mut Message) -> Result<(), Status> {
        if msg.header.service_method == "/refused" {
            return Err(Status::new(Code(1500), "refused by a plugin"));
        }
        msg.header.meta.insert("tagged", "yes");
        Ok(())
    }

    fn after_call_end(&self, _: &Session, end: &CallEnd<'_>) {
        self.0.lock().push(format!(
            "end {} {}",
            end.service_method,
            end.status.code().0
        ));
    }
}

/// Gives each call a [`Made`], through the shared record.
struct MakesState(Arc<Caller>);

impl Plugin for MakesState {
    fn before_write_call(&self, s: &Session, msg: &mut Message) -> Result<(), Status> {
        self.0.before_write_call(s, msg)
    }

    fn make_call(
        &self,
        _: &Session,
        msg: &mut Message,
    ) -> Result<Option<Box<dyn MadeCall>>, Status> {
        let method = msg.header.service_method.to_string();
        Ok(Some(Box::new(Made(self.0.clone(), method))))
    }

    fn after_call_end(&self, s: &Session, end: &CallEnd<'_>) {
        self.0.after_call_end(s, end)
    }
}

impl MadeCall for Made {
    fn on_reply(&mut self, reply: &mut Message) -> Result<(), Status> {
        let items = reply.header.meta.get("drpc-items").unwrap_or("-");
        self.0 .0.lock().push(format!("reply {} {items}", self.1));
        Ok(())
    }

    fn end(self: Box<Self>, end: &CallEnd<'_>) {
        let code = end.status.code().0;
        self.0 .0.lock().push(format!("state {} {code}", self.1));
    }
}

/// The callee's plugin: a handled call's state, opened and closed.
#[derive(Default)]
struct Callee(Arc<Mutex<Vec<String>>>);

struct Handled(Arc<Mutex<Vec<String>>>, String);

impl Plugin for Callee {
    fn handle_call(
        &self,
        _: &Session,
        msg: &Message,
    ) -> Result<Option<Box<dyn HandledCall>>, Status> {
        let Some(kind) = msg.header.meta.get("drpc-stream") else {
            return Ok(None);
        };
        let what = format!("{} {kind}", msg.header.service_method);
        self.0.lock().push(format!("open {what}"));
        Ok(Some(Box::new(Handled(self.0.clone(), what))))
    }
}

impl HandledCall for Handled {}

impl Drop for Handled {
    fn drop(&mut self) {
        self.0.lock().push(format!("close {}", self.1));
    }
}

fn routes() -> Router {
    let mut r = test_router();
    r.server_stream(
        "/count",
        |ctx: CallCtx, n: u32, mut out: ItemSink<u32>| async move {
            assert_eq!(ctx.meta().get("tagged"), Some("yes"), "the hook's meta");
            for i in 0..n {
                out.send(&i).await?;
            }
            Ok::<_, Status>(())
        },
    )
    .unwrap();
    r.client_stream(
        "/sum",
        |_: CallCtx, _: (), mut items: Items<u32>| async move {
            let mut sum = 0;
            while let Some(n) = items.next().await {
                sum += n?;
            }
            Ok::<_, Status>(sum)
        },
    )
    .unwrap();
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_see_every_stream_open_and_end_once() {
    let caller = Arc::new(Caller::default());
    let callee = Callee::default();
    let handled = callee.0.clone();
    let p = pair_from(
        Endpoint::builder().router(routes()).plugin(callee),
        Endpoint::builder().plugin(MakesState(caller.clone())),
    )
    .await;
    let s = &p.session;
    // Read to its end.
    let mut items = s
        .stream::<_, u32>("/count", &3u32, CallOptions::new())
        .await
        .unwrap();
    while let Some(item) = within("an item", items.next()).await {
        item.unwrap();
    }
    // A client stream, answered.
    let (mut sink, reply) = s
        .client_stream::<_, u32, u32>("/sum", &(), CallOptions::new())
        .await
        .unwrap();
    sink.send(&2).await.unwrap();
    sink.end();
    assert_eq!(within("the answer", reply).await.unwrap().value, 2);
    // Dropped half way: cancelled.
    let mut items = s
        .stream::<_, u32>("/count", &1000u32, CallOptions::new())
        .await
        .unwrap();
    within("an item", items.next()).await.unwrap().unwrap();
    drop(items);
    // No route, and refused before it was sent.
    let mut items = s
        .stream::<_, u32>("/nowhere", &(), CallOptions::new())
        .await
        .unwrap();
    let err = within("the refusal", items.next())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), Code::NOT_FOUND);
    let err = s
        .stream::<_, u32>("/refused", &(), CallOptions::new())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code(1500));
    let seen = caller.0.lock().clone();
    assert_eq!(
        seen,
        [
            "reply /count 3",
            "state /count 0",
            "end /count 0",
            "reply /sum 0",
            "state /sum 0",
            "end /sum 0",
            "state /count 499",
            "end /count 499",
            "reply /nowhere -",
            "state /nowhere 404",
            "end /nowhere 404",
            "end /refused 1500",
        ]
    );
    // The callee's state for each stream call opened and closed once (a
    // cancelled one closes when its handler is dropped, which may come
    // after the next call's).
    within("every handled state to close", async {
        while handled.lock().len() < 8 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let mut seen = handled.lock().clone();
    assert_eq!(
        seen[..4],
        [
            "open /count server",
            "close /count server",
            "open /sum client",
            "close /sum client",
        ]
    );
    seen.sort();
    assert_eq!(
        seen,
        [
            "close /count server",
            "close /count server",
            "close /nowhere server",
            "close /sum client",
            "open /count server",
            "open /count server",
            "open /nowhere server",
            "open /sum client",
        ]
    );
    p.close().await;
}
