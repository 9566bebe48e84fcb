//! A server to poke at: listens on the address given as the first argument
//! (default `tcp://127.0.0.1:9090`) until killed, and serves
//!
//! - `/echo`: returns its argument unchanged, in whatever codec it came;
//! - `/math/add`: `{"a": i64, "b": i64}` -> their sum;
//! - `/slow`: a number of milliseconds -> sleeps that long, then returns it;
//!
//! and pushes `/hello` with a greeting string to every session that connects.
//!
//! ```text
//! cargo run --example echo_server -- tcp://127.0.0.1:9090
//! ```

use drpc::plugin::BoxFuture;
use drpc::{CallCtx, Endpoint, Plugin, Router, Session, Status};
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
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tcp://127.0.0.1:9090".to_string());

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

    let counters = Arc::new(Counters::default());
    let endpoint = Endpoint::builder()
        .router(router)
        .plugin(Greeter)
        .plugin_arc(counters.clone())
        .build()?;
    let bound = endpoint.listen(&addr).await?;
    println!("echo_server listening on {bound}; Ctrl-C to stop");

    tokio::signal::ctrl_c().await?;
    println!("shutting down: {:?}", counters.snapshot());
    endpoint.close().await;
    Ok(())
}
