//! Writing your own plugin: one that needs a tenant on every call, tags
//! replies with it, and logs slow calls. Run it with:
//!
//! ```text
//! cargo run --example my_plugin
//! ```
//!
//! It uses four kinds of hook: a connection hook (async, once per session),
//! a read hook that refuses cheaply before the body is decoded, a write hook
//! that changes an outgoing message, and per-session storage to carry state
//! from one hook to the next. docs/PLUGINS.md explains each hook point.

use drpc::plugin::BoxFuture;
use drpc::proto::Message;
use drpc::{CallCtx, CallOptions, Endpoint, Plugin, Router, Session, Status};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Calls under way on one session: when each started, and its tenant.
#[derive(Default)]
struct Started(Mutex<HashMap<u32, (Instant, String)>>);

struct Tenancy {
    slow: Duration,
}

impl Plugin for Tenancy {
    fn name(&self) -> &str {
        "tenancy"
    }

    // Once per session, before any message: make the session's state here,
    // so the reader and the writer never race to make it.
    fn after_accept<'a>(&'a self, session: &'a Session) -> BoxFuture<'a, Result<(), Status>> {
        session.set_value(Arc::new(Started::default()));
        Box::pin(async { Ok(()) })
    }

    // On the reader, before the body is decoded: refusing here is cheap.
    // An error answers the call with that status; no handler runs.
    fn after_read_call_header(&self, session: &Session, msg: &mut Message) -> Result<(), Status> {
        let tenant = msg
            .header
            .meta
            .get("tenant")
            .ok_or_else(|| Status::unauthorized("a tenant meta entry is required"))?
            .to_string();
        if let Some(started) = session.value::<Arc<Started>>() {
            started
                .0
                .lock()
                .unwrap()
                .insert(msg.header.seq, (Instant::now(), tenant));
        }
        Ok(())
    }

    // Every reply passes here before it is written: tag it, time it.
    fn before_write_reply(&self, session: &Session, msg: &mut Message) -> Result<(), Status> {
        let Some(started) = session.value::<Arc<Started>>() else {
            return Ok(());
        };
        let Some((at, tenant)) = started.0.lock().unwrap().remove(&msg.header.seq) else {
            return Ok(());
        };
        msg.header.meta.insert("tenant", tenant.as_str());
        if at.elapsed() > self.slow {
            println!(
                "[tenancy] slow call for {tenant}: seq {} took {:?}",
                msg.header.seq,
                at.elapsed()
            );
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut router = Router::new();
    router.call("/work", |_: CallCtx, ms: u64| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, Status>(ms)
    })?;
    let server = Endpoint::builder()
        .router(router)
        .plugin(Tenancy {
            slow: Duration::from_millis(50),
        })
        .build()?;
    let addr = server.listen("tcp://127.0.0.1:0").await?;
    let client = Endpoint::builder().build()?;
    let session = client.dial(&addr).await?;

    let err = session.call::<_, u64>("/work", &1u64).await.unwrap_err();
    println!("without a tenant: {err}");
    for ms in [1u64, 80] {
        let reply = session
            .call_with::<_, u64>("/work", &ms, CallOptions::new().meta("tenant", "acme"))
            .await?;
        println!(
            "with a tenant: {} ms, reply tagged tenant={:?}",
            reply.value,
            reply.meta.get("tenant")
        );
    }
    client.close().await;
    server.close().await;
    Ok(())
}
