//! drpc's metrics in the Prometheus text format:
//!
//! ```text
//! cargo run --example metrics
//! ```
//!
//! Installs the Prometheus exporter (any `metrics` recorder works), serves
//! it over HTTP on loopback, makes some calls between two endpoints that use
//! the `Metrics` plugin, then fetches `/metrics` the way Prometheus would
//! and prints drpc's lines. In a real service the exporter keeps serving
//! for Prometheus to scrape.

use drpc::{CallCtx, Endpoint, Router, Status};
use drpc_plugins::Metrics;
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A free loopback port for the exporter's HTTP listener.
    let http = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    PrometheusBuilder::new()
        .with_http_listener(http)
        .install()?;

    let mut router = Router::new();
    router.call("/math/add", |_: CallCtx, (a, b): (i64, i64)| async move {
        Ok::<_, Status>(a + b)
    })?;
    let server = Endpoint::builder()
        .router(router)
        .plugin(Metrics::default())
        .build()?;
    let addr = server.listen("tcp://127.0.0.1:0").await?;
    let client = Endpoint::builder().plugin(Metrics::default()).build()?;
    let session = client.dial(&addr).await?;
    for i in 0..100 {
        let _: i64 = session.call("/math/add", &(i, i)).await?;
    }
    let _ = session.call::<_, ()>("/math/sub", &()).await;

    // What a Prometheus scrape of the exporter returns.
    let mut scrape = tokio::net::TcpStream::connect(http).await?;
    scrape
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut page = String::new();
    scrape.read_to_string(&mut page).await?;
    println!("GET http://{http}/metrics (drpc's lines):");
    for line in page.lines().filter(|l| l.starts_with("drpc_")) {
        println!("  {line}");
    }
    client.close().await;
    server.close().await;
    Ok(())
}
