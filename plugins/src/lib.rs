//! Built-in plugins for drpc.
//!
//! Every plugin here is written against drpc's public [`Plugin`](drpc::Plugin)
//! hook API only, so anything they do, an application's own plugin can do.
//!
//! | plugin | what it does |
//! |---|---|
//! | [`Auth`] | dialers present a credential, acceptors check it before any handler runs |
//! | [`Compression`] | gzip and zstd transfer filters (features `gzip`, `zstd`) |
//! | [`Counters`] | counts sessions, calls, replies and pushes in each direction |
//! | [`Heartbeat`] | pings idle sessions and closes ones silent too long |
//! | [`Metrics`] | calls, pushes, latencies, sessions and bytes through the `metrics` facade |
//! | [`Proxy`] | forwards calls and pushes with no route to another endpoint, answers unchanged |
//! | [`Tracing`] | a `tracing` span per call and push on both sides, W3C `traceparent` in meta so chains are one trace |
//! | [`IgnoreCase`] | routes calls and pushes whatever the case of their service method |
#![warn(missing_docs)]

mod admin;
mod auth;
#[cfg(any(feature = "gzip", feature = "zstd"))]
mod compression;
mod counters;
mod heartbeat;
mod ignore_case;
mod metrics;
mod proxy;
mod route_stats;
mod trace;

pub use self::metrics::Metrics;
pub use admin::{Admin, LimitsChange, LimitsView, SessionInfo, Stats, ADMIN_PREFIX};
pub use auth::{Auth, Authenticated, AUTH_METHOD};
#[cfg(any(feature = "gzip", feature = "zstd"))]
pub use compression::{Compression, Filter};
pub use counters::{Counters, CountersSnapshot};
pub use heartbeat::Heartbeat;
pub use ignore_case::IgnoreCase;
pub use proxy::Proxy;
pub use route_stats::{RouteFigures, RouteStats};
pub use trace::{TraceContext, Tracing, TRACEPARENT};
