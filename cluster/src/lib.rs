//! drpc beyond one machine: a registry where instances of a service are
//! found (etcd v3 behind the `etcd` feature, or in memory), registered
//! under leases that expire when their process dies, and watched as they
//! come and go.
//!
//! ```
//! use drpc_cluster::{Instance, MemoryRegistry, Registry};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let registry = MemoryRegistry::new();
//! let mut watch = registry.watch("math").await?;
//! let one = registry
//!     .register(Instance::new("math", "m1", ["tcp://10.0.0.5:9090"]), Duration::from_secs(10))
//!     .await?;
//! let now = watch.changed().await?;
//! assert_eq!(now[0].id, "m1");
//! one.deregister().await?;
//! assert!(watch.changed().await?.is_empty());
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod announce;
pub mod breaker;
mod budget;
mod client;
#[cfg(feature = "etcd")]
mod etcd;
mod instance;
mod memory;
mod registry;
pub mod selector;

pub use announce::Announce;
pub use budget::RetryBudget;
pub use client::{Cluster, ClusterOptions};
#[cfg(feature = "etcd")]
pub use etcd::EtcdRegistry;
pub use instance::{Instance, KeyLayout, DEFAULT_ROOT, DEFAULT_WEIGHT};
pub use memory::MemoryRegistry;
pub use registry::{BoxFuture, Registration, Registry, RegistryError, Watch, DEFAULT_TTL};
