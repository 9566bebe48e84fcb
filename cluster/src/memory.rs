//! A registry in this process's memory: for tests and for services that
//! find each other inside one process. Leases expire on tokio's clock, so
//! a test on a paused clock sees TTLs pass at once.

use crate::instance::Instance;
use crate::registry::{
    check, sorted, BoxFuture, Registration, Registry, RegistryError, StopRequest, Watch,
};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

/// A registry in memory; clones share it.
///
/// ```
/// use drpc_cluster::{Instance, MemoryRegistry, Registry};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = MemoryRegistry::new();
/// let me = Instance::new("math", "m1", ["tcp://127.0.0.1:9090"]);
/// let registration = registry.register(me, Duration::from_secs(10)).await?;
/// assert_eq!(registry.list("math").await?.len(), 1);
/// registration.deregister().await?;
/// assert!(registry.list("math").await?.is_empty());
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct MemoryRegistry {
    state: Arc<Mutex<State>>,
}

/// Instances and the leases they are under, as etcd keeps them: a lease
/// lives until revoked or no longer kept alive, and takes its keys with it.
#[derive(Default)]
struct State {
    services: HashMap<String, BTreeMap<String, Entry>>,
    watchers: HashMap<String, watch::Sender<Vec<Instance>>>,
    /// Each live lease's expiry.
    leases: HashMap<u64, Instant>,
    next_lease: u64,
}

struct Entry {
    instance: Instance,
    lease: u64,
}

impl State {
    fn instances(&self, service: &str) -> Vec<Instance> {
        let listed = self.services.get(service).into_iter().flatten();
        sorted(listed.map(|(_, e)| e.instance.clone()).collect())
    }

    fn notify(&self, service: &str) {
        if let Some(tx) = self.watchers.get(service) {
            tx.send_replace(self.instances(service));
        }
    }

    /// Puts `instance` under a new lease of `ttl`; returns the lease.
    fn put(&mut self, instance: &Instance, ttl: Duration) -> u64 {
        self.next_lease += 1;
        let lease = self.next_lease;
        self.leases.insert(lease, Instant::now() + ttl);
        let entry = Entry {
            instance: instance.clone(),
            lease,
        };
        let service = instance.service.clone();
        self.services
            .entry(service.clone())
            .or_default()
            .insert(instance.id.clone(), entry);
        self.notify(&service);
        lease
    }

    /// Ends `lease` and removes what is under it.
    fn revoke(&mut self, lease: u64) {
        self.leases.remove(&lease);
        let mut touched = Vec::new();
        for (service, entries) in &mut self.services {
            let before = entries.len();
            entries.retain(|_, e| e.lease != lease);
            if entries.len() != before {
                touched.push(service.clone());
            }
        }
        for service in touched {
            self.notify(&service);
        }
    }

    /// Pushes `lease`'s expiry to `ttl` from now; false if it has ended.
    fn refresh(&mut self, lease: u64, ttl: Duration) -> bool {
        match self.leases.get_mut(&lease) {
            Some(at) => {
                *at = Instant::now() + ttl;
                true
            }
            None => false,
        }
    }
}

impl MemoryRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ends `lease` when it expires (unless kept alive meanwhile).
    fn expire_later(&self, lease: u64) {
        let state = self.state.clone();
        tokio::spawn(async move {
            loop {
                let Some(at) = state.lock().leases.get(&lease).copied() else {
                    return; // revoked
                };
                tokio::time::sleep_until(at).await;
                let mut s = state.lock();
                if s.leases.get(&lease).is_some_and(|at| *at <= Instant::now()) {
                    s.revoke(lease);
                    return;
                }
            }
        });
    }
}

impl Registry for MemoryRegistry {
    fn register(
        &self,
        instance: Instance,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<Registration, RegistryError>> {
        Box::pin(async move {
            check(&instance, ttl)?;
            let lease = self.state.lock().put(&instance, ttl);
            self.expire_later(lease);
            let (stop_tx, mut stop_rx) = oneshot::channel::<StopRequest>();
            let (me, registry) = (instance.clone(), self.clone());
            let task = tokio::spawn(async move {
                let mut lease = lease;
                loop {
                    tokio::select! {
                        req = &mut stop_rx => {
                            registry.state.lock().revoke(lease);
                            if let Ok(done) = req {
                                let _ = done.send(Ok(()));
                            }
                            return;
                        }
                        _ = tokio::time::sleep(ttl / 3) => {
                            if !registry.state.lock().refresh(lease, ttl) {
                                // The lease ended under us: take a new one.
                                lease = registry.state.lock().put(&me, ttl);
                                registry.expire_later(lease);
                            }
                        }
                    }
                }
            });
            Ok(Registration::new(instance, stop_tx, task))
        })
    }

    fn list(&self, service: &str) -> BoxFuture<'_, Result<Vec<Instance>, RegistryError>> {
        let listed = self.state.lock().instances(service);
        Box::pin(async move { Ok(listed) })
    }

    fn watch(&self, service: &str) -> BoxFuture<'_, Result<Watch, RegistryError>> {
        let mut s = self.state.lock();
        let now = s.instances(service);
        let rx = s
            .watchers
            .entry(service.to_string())
            .or_insert_with(|| watch::channel(now).0)
            .subscribe();
        Box::pin(async move { Ok(Watch::new(rx)) })
    }
}
