//! A server to poke at: listens on every address given as an argument
//! (default `tcp://127.0.0.1:9090`), any transport, the HTTP gateway
//! included, until Ctrl-C or SIGTERM, and serves
//!
//! - `/echo`: returns its argument unchanged, in whatever codec it came;
//! - `/math/add`: `{"a": i64, "b": i64}` -> their sum;
//! - `/slow`: a number of milliseconds -> sleeps that long, then returns it;
//! - `/log` (a push): prints the line it carries;
//!
//! and pushes `/hello` with a greeting string to every session that connects.
//!
//! ```text
//! cargo run --example echo_server -- tcp://127.0.0.1:9090 ws://127.0.0.1:9092/drpc http://127.0.0.1:9091
//! curl -d '{"a":1,"b":2}' http://127.0.0.1:9091/math/add
//! ```
//!
//! Ctrl-C or SIGTERM shuts it down gracefully: peers are told it is going
//! away, running calls finish (within 10 s). A second signal ends it at once.

use drpc::plugin::BoxFuture;
use drpc::{CallCtx, Endpoint, Plugin, PushCtx, Router, Session, Status};
use drpc_plugins::Counters;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

#[derive(Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

/// Greets every session as soon as it connects.
struct Greeter;

impl Plugin for Greeter {
    fn name(&self) -> &str {
        "greeter"
    }

    fn after_accept<'a>(&'a self, session: &'a Session) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move {
            let greeting = format!("hello {}, this is drpc's echo server", session.peer_addr());
            // A failed greeting is logged, not a reason to refuse the session.
            if let Err(status) = session.push("/hello", &greeting).await {
                eprintln!("could not greet {}: {status}", session.peer_addr());
            }
            Ok(())
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut addrs: Vec<String> = std::env::args().skip(1).collect();
    if addrs.is_empty() {
        addrs.push("tcp://127.0.0.1:9090".to_string());
    }

    let mut router = Router::new();
    router.call_raw(
        "/echo",
        |ctx: CallCtx| async move { Ok(ctx.body().clone()) },
    )?;
    router
        .group("/math")
        .call("/add", |_: CallCtx, x: Add| async move {
            x.a.checked_add(x.b)
                .ok_or_else(|| Status::bad_message("the sum overflows an i64"))
        })?;
    router.call("/slow", |_: CallCtx, ms: u64| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, Status>(ms)
    })?;
    router.push("/log", |ctx: PushCtx, line: String| async move {
        println!("log from {}: {line}", ctx.session().peer_addr());
    })?;

    let counters = Arc::new(Counters::default());
    let endpoint = Endpoint::builder()
        .router(router)
        .plugin(Greeter)
        .plugin_arc(counters.clone())
        .build()?;
    for addr in &addrs {
        let bound = endpoint.listen(addr).await?;
        println!("echo_server listening on {bound}");
    }
    println!("Ctrl-C or SIGTERM to stop");

    // SIGTERM or Ctrl-C: a graceful shutdown; a second one, at once.
    let mut first = true;
    endpoint
        .close_on_signal(|signal| {
            if std::mem::take(&mut first) {
                println!("{signal}: shutting down gracefully; again to stop at once");
            } else {
                println!("{signal}: closing at once");
            }
        })
        .await?;
    println!("stopped: {:?}", counters.snapshot());
    Ok(())
}
