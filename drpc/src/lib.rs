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
//! features), `tls://`, `quic://` and `kcp://` (features `tls`, `quic`,
//! `kcp`). Their settings (certificates, QUIC and KCP tuning) live in
//! [`Config::transport`]; every transport passes the same conformance suite.
//!
//! The crates behind it are re-exported: [`proto`] (message model and wire
//! formats), [`codec`] (body codecs) and [`socket`] (transports).
#![warn(missing_docs)]

mod config;
mod conn;
mod context;
mod driver;
mod early;
mod endpoint;
mod limits;
mod options;
mod outbox;
mod pending;
pub mod plugin;
mod redial;
mod router;
mod session;
mod status;
mod storage;

pub use config::Config;
pub use context::{CallCtx, Incoming, PushCtx};
pub use early::HandshakeMessage;
pub use endpoint::{Endpoint, EndpointBuilder, ToAddr};
pub use limits::{Limits, Rate};
pub use options::{CallOptions, PushOptions, Reply};
pub use plugin::Plugin;
pub use redial::Redial;
pub use router::{Group, RouteError, Router};
pub use session::{Session, SessionState};
pub use status::{Code, Status};

pub use drpc_codec as codec;
pub use drpc_proto as proto;
pub use drpc_socket as socket;

pub use drpc_codec::CodecId;
pub use drpc_proto::Meta;
pub use drpc_socket::Addr;
