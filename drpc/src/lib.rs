//! drpc: peer-to-peer, session-oriented RPC for Rust.
//!
//! Every process embeds an [`Endpoint`]. An endpoint listens and dials at
//! the same time; each connection, whichever side opened it, is a symmetric
//! [`Session`] on which either side can [call](Session::call) the other
//! (request and reply, matched by seq) or [push](Session::push) to it
//! (one-way). Handlers are plain async functions registered on a
//! [`Router`]; [`Plugin`]s act at hook points along the life of every
//! session and message.
//!
//! ```
//! use drpc::{CallCtx, Endpoint, PushCtx, Router, Status};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Add { a: i64, b: i64 }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut router = Router::new();
//! router.call("/math/add", |ctx: CallCtx, x: Add| async move {
//!     // Either side can push on the session; here the server greets its caller.
//!     ctx.session().push("/hello", "welcome").await?;
//!     Ok::<_, Status>(x.a + x.b)
//! })?;
//! let server = Endpoint::builder().router(router).build()?;
//! let addr = server.listen("tcp://127.0.0.1:0").await?;
//!
//! let (tx, mut rx) = tokio::sync::mpsc::channel(1);
//! let mut client_routes = Router::new();
//! client_routes.push("/hello", move |_: PushCtx, text: String| {
//!     let tx = tx.clone();
//!     async move { let _ = tx.send(text).await; }
//! })?;
//! let client = Endpoint::builder().router(client_routes).build()?;
//! let session = client.dial(&addr).await?;
//!
//! let sum: i64 = session.call("/math/add", &Add { a: 2, b: 3 }).await?;
//! assert_eq!(sum, 5);
//! assert_eq!(rx.recv().await.as_deref(), Some("welcome"));
//!
//! client.close().await;
//! server.close().await;
//! # Ok(()) }
//! ```
//!
//! The address scheme picks the transport: `tcp://` and `unix://` (default
//! features), `tls://`, `quic://`, `kcp://`, `ws://` and `wss://` (features
//! `tls`, `quic`, `kcp`, `ws`, `wss`), and the HTTP gateway `http://`
//! (feature `http`: `POST /math/add` reaches the `/math/add` handler).
//! Transports are registered by scheme in [`Config::transport`], with their
//! settings (certificates, QUIC and KCP tuning); an application registers
//! its own the same way ([`socket::Transport`]), and every transport passes
//! the same conformance suite. Body codecs are a registry too
//! ([`Config::codecs`]), and each listener or dial may use its own wire
//! format ([`Endpoint::listen_with`], [`Endpoint::dial_with`]).
//!
//! The crates behind it are re-exported: [`proto`] (message model and wire
//! formats), [`codec`] (body codecs) and [`socket`] (transports).
#![warn(missing_docs)]

// Layers, imports one way (drpc/tests/layers.rs checks it): `values` at the
// bottom; `core`, the protocol logic without I/O; `runtime`, the tokio
// pieces of one connection; the public types (session, context, handler,
// plugin, router, service, shared); `engine`, the only code that spawns tasks and touches
// sockets; `endpoint` on top.
mod context;
mod core;
mod endpoint;
mod engine;
mod handler;
pub mod memory;
pub mod plugin;
#[cfg(all(feature = "restart", unix))]
pub mod restart;
mod router;
mod runtime;
pub mod service;
mod session;
mod shared;
#[cfg(feature = "signals")]
mod signals;
mod streaming;
mod values;

pub use context::{CallCtx, Incoming, PushCtx};
pub use endpoint::{EndpointBuilder, ToAddr};
pub use plugin::Plugin;
pub use router::{Group, RouteError, Router};
pub use session::{HandshakeMessage, Session, SessionState};
pub use shared::{Dialer, Endpoint};
#[cfg(feature = "signals")]
pub use signals::Signal;
pub use streaming::{ItemSink, Items, StreamReply};
pub use values::{
    CallOptions, Code, Config, Health, Limits, PushOptions, Rate, Redial, Reply, Status,
    HEALTH_METHOD,
};

pub use drpc_codec as codec;
pub use drpc_proto as proto;
pub use drpc_socket as socket;

pub use drpc_codec::{Blob, CodecId};
pub use drpc_proto::Meta;
pub use drpc_socket::Addr;

pub use drpc_macros::service;

/// What the code `#[drpc::service]` generates refers to; not an API.
#[doc(hidden)]
pub mod __private {
    pub use serde;
}
