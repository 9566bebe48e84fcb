//! Tracing a chain of calls across three endpoints with the `Tracing`
//! plugin:
//!
//! ```text
//! cargo run --example trace_chain
//! ```
//!
//! A calls B, whose handler calls C and pushes to it. Every endpoint has
//! the plugin; the `tracing` subscriber prints each span as it closes,
//! with its trace id (the same on every line: one trace), its own span id,
//! its parent's, its status and the time taken.

use drpc::{CallCtx, Endpoint, PushCtx, Router, Status};
use drpc_plugins::Tracing;
use std::sync::Arc;
use tracing_subscriber::fmt::format::FmtSpan;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter("drpc=info")
        .with_span_events(FmtSpan::CLOSE)
        .with_target(false)
        .init();

    // C: the leaf.
    let mut c_routes = Router::new();
    c_routes.call("/price", |_: CallCtx, item: String| async move {
        Ok::<_, Status>(item.len() as u64 * 100)
    })?;
    c_routes.push("/audit", |_: PushCtx, _: String| async {})?;
    let c = Endpoint::builder()
        .router(c_routes)
        .plugin(Tracing::new())
        .build()?;
    let c_addr = c.listen("tcp://127.0.0.1:0").await?;

    // B: answers A by asking C; it listens and dials on one endpoint.
    let to_c: Arc<tokio::sync::OnceCell<drpc::Session>> = Arc::default();
    let mut b_routes = Router::new();
    let c_session = to_c.clone();
    b_routes.call("/quote", move |_: CallCtx, item: String| {
        let c_session = c_session.clone();
        async move {
            let c = c_session.get().expect("dialed at start");
            c.push("/audit", &item).await?;
            let price: u64 = c.call("/price", &item).await?;
            Ok::<_, Status>(format!("{item}: {price}"))
        }
    })?;
    let b = Endpoint::builder()
        .router(b_routes)
        .plugin(Tracing::new())
        .build()?;
    let b_addr = b.listen("tcp://127.0.0.1:0").await?;
    let _ = to_c.set(b.dial(&c_addr).await?);

    // A: the client, where the trace starts.
    let a = Endpoint::builder().plugin(Tracing::new()).build()?;
    let session = a.dial(&b_addr).await?;
    let quote: String = session.call("/quote", &"teapot").await?;
    println!("A got: {quote}");

    a.close().await;
    b.close().await;
    c.close().await;
    Ok(())
}
