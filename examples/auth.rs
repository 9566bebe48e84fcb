//! Authentication with the `Auth` plugin:
//!
//! ```text
//! cargo run --example auth
//! ```
//!
//! A server checks tokens with an async checker and gives handlers the
//! caller's identity. Alice's token is accepted; Mallory's dial is refused
//! with 401 and the reason; a client with no credential at all gets 401
//! for the call it tried, and no handler ever ran for it.

use drpc::{CallCtx, Config, Endpoint, Router, Status};
use drpc_plugins::{Auth, Authenticated};
use std::time::Duration;

#[derive(Clone, Debug)]
struct User {
    name: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut routes = Router::new();
    routes.call("/whoami", |ctx: CallCtx, _: ()| async move {
        let user = ctx
            .session()
            .value::<Authenticated<User>>()
            .ok_or_else(|| Status::internal("no identity"))?;
        Ok::<_, Status>(format!("you are {}", user.name))
    })?;
    // The checker is async: a real one would ask a database or an identity
    // provider. Its error is the reason the peer gets with 401.
    let auth =
        Auth::new()
            .timeout(Duration::from_secs(2))
            .checker(|_session, token: String| async move {
                match token.as_str() {
                    "alice-token" => Ok(User {
                        name: "alice".into(),
                    }),
                    _ => Err("unknown token".to_string()),
                }
            });
    let server = Endpoint::builder().router(routes).plugin(auth).build()?;
    let addr = server.listen("tcp://127.0.0.1:0").await?;
    println!("server on {addr}");

    let alice = Endpoint::builder()
        .plugin(Auth::new().credential("alice-token"))
        .build()?;
    let session = alice.dial(&addr).await?;
    let answer: String = session.call("/whoami", &()).await?;
    println!("alice:   {answer}");

    let mallory = Endpoint::builder()
        .plugin(Auth::new().credential("guessed-token"))
        .build()?;
    match mallory.dial(&addr).await {
        Ok(_) => println!("mallory: let in (wrong!)"),
        Err(status) => println!("mallory: dial refused: {status}"),
    }

    // No `Auth` plugin: the dial completes, but the server holds the call
    // and answers it with 401 once it gives up waiting for a credential.
    let mut no_redial = Config::default();
    no_redial.redial.enabled = false;
    let anonymous = Endpoint::builder().config(no_redial).build()?;
    let session = anonymous.dial(&addr).await?;
    match session.call::<_, String>("/whoami", &()).await {
        Ok(answer) => println!("anonymous: {answer} (wrong!)"),
        Err(status) => println!("anonymous: call refused: {status}"),
    }

    alice.close().await;
    mallory.close().await;
    anonymous.close().await;
    server.close().await;
    Ok(())
}
