//! One call over every transport, with the settings each needs:
//!
//! ```text
//! cargo run --example transports
//! ```
//!
//! TLS and QUIC need a certificate; this makes a private CA and a server
//! certificate for 127.0.0.1 at start-up (with rcgen, in `support/certs.rs`,
//! which the bench shares), so nothing is read
//! from disk. In production, load PEM files with
//! `drpc::socket::tls::read_pem_file` instead.

#[path = "support/certs.rs"]
mod certs;

use drpc::{CallCtx, Config, Endpoint, Router, Status};
use serde::{Deserialize, Serialize};
use std::time::Instant;

#[derive(Serialize, Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config {
        transport: certs::transport_config()?,
        ..Config::default()
    };
    let mut router = Router::new();
    router.call("/math/add", |_: CallCtx, x: Add| async move {
        Ok::<_, Status>(x.a + x.b)
    })?;
    let server = Endpoint::builder()
        .config(config.clone())
        .router(router)
        .build()?;
    let client = Endpoint::builder().config(config).build()?;

    let sock = std::env::temp_dir().join(format!("drpc-transports-{}.sock", std::process::id()));
    let addrs = [
        "tcp://127.0.0.1:0".to_string(),
        format!("unix://{}", sock.display()),
        "tls://127.0.0.1:0".to_string(),
        "quic://127.0.0.1:0".to_string(),
        "kcp://127.0.0.1:0".to_string(),
        "ws://127.0.0.1:0/drpc".to_string(),
        "wss://127.0.0.1:0/drpc".to_string(),
    ];
    for addr in addrs {
        let bound = server.listen(addr.as_str()).await?;
        let session = client.dial(&bound).await?;
        let started = Instant::now();
        let sum: i64 = session.call("/math/add", &Add { a: 2, b: 40 }).await?;
        println!(
            "{:<6} {bound:<44} 2 + 40 = {sum}  (first call: {:?})",
            bound.scheme().as_str(),
            started.elapsed()
        );
        session.close().await;
    }
    client.close().await;
    server.close().await;
    Ok(())
}
