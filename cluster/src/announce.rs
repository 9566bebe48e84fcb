//! An endpoint that registers itself: the addresses it listens on, under a
//! service name, deregistered before its peers hear it is going away.

use crate::instance::Instance;
use crate::registry::{Registration, Registry, RegistryError, DEFAULT_TTL};
use drpc::plugin::BoxFuture;
use drpc::{Addr, Endpoint, Plugin};
use std::sync::Arc;
use std::time::Duration;

/// Registers an endpoint in a registry, as a plugin on it. Add it to the
/// endpoint, listen, then [`Announce::register`]; a graceful shutdown of
/// the endpoint deregisters it first, before its peers are told it is
/// going away, so no caller picks it while it drains. If the process dies,
/// the lease expires after its TTL ([`DEFAULT_TTL`] unless set).
///
/// ```
/// use drpc_cluster::{Announce, Instance, MemoryRegistry, Registry};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = MemoryRegistry::new();
/// // No addresses given: the ones the endpoint listens on are used.
/// let announce = Announce::new(registry.clone(), Instance::new("math", "math-1", Vec::<String>::new()));
/// let endpoint = drpc::Endpoint::builder().plugin(announce.clone()).build()?;
/// let addr = endpoint.listen("tcp://127.0.0.1:0").await?;
/// announce.register().await?;
/// assert_eq!(registry.list("math").await?[0].addrs, [addr.to_string()]);
///
/// endpoint.close().await; // deregisters, then tells its peers
/// assert!(registry.list("math").await?.is_empty());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Announce {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Arc<dyn Registry>,
    instance: Instance,
    ttl: Duration,
    /// The addresses the endpoint listens on, as it bound them.
    listening: parking_lot::Mutex<Vec<String>>,
    registration: tokio::sync::Mutex<Option<Registration>>,
}

impl Announce {
    /// Will register `instance` in `registry`; an instance without
    /// addresses gets those its endpoint listens on (which must then be
    /// reachable by callers: listen on a routable address, not 0.0.0.0).
    pub fn new(registry: impl Registry, instance: Instance) -> Self {
        Self::with_ttl(registry, instance, DEFAULT_TTL)
    }

    /// As [`Announce::new`], with a lease of `ttl`.
    pub fn with_ttl(registry: impl Registry, instance: Instance, ttl: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                registry: Arc::new(registry),
                instance,
                ttl,
                listening: parking_lot::Mutex::new(Vec::new()),
                registration: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// Registers the instance now (again, if it was: the new registration
    /// replaces the old).
    ///
    /// Errors: the registry refused it or could not be reached; or the
    /// instance has no address and the endpoint listens nowhere yet.
    pub async fn register(&self) -> Result<(), RegistryError> {
        let mut me = self.inner.instance.clone();
        if me.addrs.is_empty() {
            me.addrs = self.inner.listening.lock().clone();
        }
        let mut slot = self.inner.registration.lock().await;
        let registration = self.inner.registry.register(me, self.inner.ttl).await?;
        if let Some(old) = slot.replace(registration) {
            drop(old.deregister().await);
        }
        Ok(())
    }

    /// Removes the instance from the registry now; the endpoint's shutdown
    /// does it too.
    ///
    /// Errors: the registry could not be told (the lease then expires).
    pub async fn deregister(&self) -> Result<(), RegistryError> {
        match self.inner.registration.lock().await.take() {
            Some(registration) => registration.deregister().await,
            None => Ok(()),
        }
    }

    /// What is registered now, if anything.
    pub async fn registered(&self) -> Option<Instance> {
        let slot = self.inner.registration.lock().await;
        slot.as_ref().map(|r| r.instance().clone())
    }
}

impl Plugin for Announce {
    fn name(&self) -> &str {
        "drpc_cluster::Announce"
    }

    fn after_listen(&self, addr: &Addr) {
        self.inner.listening.lock().push(addr.to_string());
    }

    fn before_going_away<'a>(&'a self, _: &'a Endpoint) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(e) = self.deregister().await {
                let me = &self.inner.instance;
                tracing::warn!(service = %me.service, id = %me.id, %e, "deregistering failed; the lease will expire");
            }
        })
    }
}
