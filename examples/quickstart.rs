//! Two endpoints on loopback: one listens, one dials. Each calls the other,
//! and the listener pushes to the dialer. Run it with:
//!
//! ```text
//! cargo run --example quickstart
//! ```

use drpc::{CallCtx, CallOptions, Endpoint, PushCtx, Router, Status};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Serialize, Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

async fn add(ctx: CallCtx, args: Add) -> Result<i64, Status> {
    println!(
        "[server] {} called /math/add({}, {}) with {} ms left before its deadline",
        ctx.session().peer_addr(),
        args.a,
        args.b,
        ctx.remaining().as_millis()
    );
    ctx.set_reply_meta("served-by", "quickstart-server");
    Ok(args.a + args.b)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();

    // The listening side serves /math/add.
    let mut server_routes = Router::new();
    server_routes.group("/math").call("/add", add)?;
    let server = Endpoint::builder().router(server_routes).build()?;
    let addr = server.listen("tcp://127.0.0.1:0").await?;
    println!("[server] listening on {addr}");

    // The dialing side serves calls too, and takes pushes.
    let (pushed_tx, mut pushed) = tokio::sync::mpsc::channel(4);
    let mut client_routes = Router::new();
    client_routes.call("/client/name", |_: CallCtx, _: ()| async move {
        Ok::<_, Status>("the quickstart client")
    })?;
    client_routes.push("/hello", move |ctx: PushCtx, greeting: String| {
        let pushed_tx = pushed_tx.clone();
        async move {
            println!(
                "[client] push {} from the server: {greeting:?}",
                ctx.service_method()
            );
            let _ = pushed_tx.send(greeting).await;
        }
    })?;
    let client = Endpoint::builder().router(client_routes).build()?;
    let session = client.dial(&addr).await?;
    println!(
        "[client] connected as {} to {}",
        session.local_addr(),
        session.peer_addr()
    );

    // Client -> server.
    let reply = session
        .call_with::<_, i64>(
            "/math/add",
            &Add { a: 20, b: 22 },
            CallOptions::new()
                .timeout(Duration::from_secs(2))
                .meta("caller", "quickstart"),
        )
        .await?;
    println!(
        "[client] /math/add(20, 22) = {} (reply meta {:?})",
        reply.value, reply.meta
    );

    // Server -> client, on the session the server accepted.
    let accepted = server
        .sessions()
        .into_iter()
        .next()
        .ok_or("the server has no session")?;
    let name: String = accepted.call("/client/name", &()).await?;
    println!("[server] asked the client its name: {name:?}");
    accepted.push("/hello", "welcome to drpc").await?;
    let greeting = tokio::time::timeout(Duration::from_secs(5), pushed.recv())
        .await?
        .ok_or("push channel closed")?;

    // An unknown route is a clear status, not a hang.
    let err = session.call::<_, ()>("/math/div", &()).await.unwrap_err();
    println!("[client] /math/div -> {err}");

    client.close().await;
    server.close().await;
    println!(
        "done: sum {}, name {name:?}, greeting {greeting:?}; both endpoints closed",
        reply.value
    );
    Ok(())
}
