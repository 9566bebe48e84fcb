//! The registry interface: register an instance under a lease, list a
//! service's instances, watch them change.

use crate::instance::Instance;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// A boxed future, for the registry's object-safe methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The TTL of a registration's lease unless it says otherwise: how long the
/// instances of a process that died stay listed. Callers stop picking a dead
/// instance sooner, when its connection fails; the TTL only bounds how long
/// a store that nobody tells keeps it. 10 s keeps keep-alives rare (one
/// every TTL / 3) and a crashed instance out of new clients' lists within
/// seconds.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// What can go wrong with a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The store could not be reached or refused the request.
    #[error("the registry's store: {0}")]
    Store(String),
    /// The request itself is wrong (an empty service name, a zero TTL).
    #[error("{0}")]
    Invalid(String),
    /// The registration had already ended.
    #[error("the registration has ended")]
    Ended,
}

/// Where services' instances are found, under leases: the interface the
/// etcd and in-memory registries implement (and that a Consul or ZooKeeper
/// one would).
pub trait Registry: Send + Sync + 'static {
    /// Registers `instance` under a lease of `ttl`, kept alive in the
    /// background until [`Registration::deregister`] (which removes it at
    /// once) or until the [`Registration`] is dropped (then the lease
    /// expires after `ttl`, as when the process dies). A lease lost while
    /// the store was unreachable is taken again when it is back.
    ///
    /// Errors: the store is unreachable, or `ttl` is under a second or the
    /// instance has no service, id or address.
    fn register(
        &self,
        instance: Instance,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<Registration, RegistryError>>;

    /// The instances of `service` now.
    ///
    /// Errors: the store is unreachable.
    fn list(&self, service: &str) -> BoxFuture<'_, Result<Vec<Instance>, RegistryError>>;

    /// Watches `service`: the [`Watch`] holds its instances and is updated
    /// on every change. After a lost connection to the store it lists them
    /// again and resumes, so no change is missed for good.
    ///
    /// Errors: the store is unreachable for the first list.
    fn watch(&self, service: &str) -> BoxFuture<'_, Result<Watch, RegistryError>>;
}

/// Checks what every backend refuses alike.
pub(crate) fn check(instance: &Instance, ttl: Duration) -> Result<(), RegistryError> {
    let valid_name = |s: &str| !s.is_empty() && !s.contains('/');
    if !valid_name(&instance.service) || !valid_name(&instance.id) {
        return Err(RegistryError::Invalid(format!(
            "a service name and an instance id are non-empty and hold no `/` (got {:?} and {:?})",
            instance.service, instance.id
        )));
    }
    if instance.addrs.is_empty() {
        return Err(RegistryError::Invalid(format!(
            "instance {} of {} has no address",
            instance.id, instance.service
        )));
    }
    if ttl < Duration::from_secs(1) {
        return Err(RegistryError::Invalid(format!(
            "a lease's TTL is at least 1 s (got {ttl:?})"
        )));
    }
    Ok(())
}

/// How a backend's keep-alive task is asked to deregister.
pub(crate) type StopRequest = oneshot::Sender<Result<(), RegistryError>>;

/// A registered instance whose lease is kept alive in the background.
/// [`Registration::deregister`] removes it at once; dropping it stops the
/// keep-alive, so the lease expires after its TTL (as for a process that
/// died).
#[derive(Debug)]
pub struct Registration {
    instance: Instance,
    stop: Option<oneshot::Sender<StopRequest>>,
    task: tokio::task::JoinHandle<()>,
}

impl Registration {
    /// A registration kept alive by `task`, which deregisters when asked on
    /// the other end of `stop`.
    pub(crate) fn new(
        instance: Instance,
        stop: oneshot::Sender<StopRequest>,
        task: tokio::task::JoinHandle<()>,
    ) -> Self {
        Self {
            instance,
            stop: Some(stop),
            task,
        }
    }

    /// The registered instance.
    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    /// Removes the instance from the registry now (revoking its lease).
    ///
    /// Errors: the store could not be told; the lease then expires after
    /// its TTL.
    pub async fn deregister(mut self) -> Result<(), RegistryError> {
        let stop = self.stop.take().ok_or(RegistryError::Ended)?;
        let (done, result) = oneshot::channel();
        stop.send(done).map_err(|_| RegistryError::Ended)?;
        result.await.unwrap_or(Err(RegistryError::Ended))
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.stop.is_some() {
            // Not deregistered: stop keeping the lease alive, so that it
            // expires as a dead process's would.
            self.task.abort();
        }
    }
}

/// The instances of one service, kept up to date by the registry.
#[derive(Debug, Clone)]
pub struct Watch {
    rx: watch::Receiver<Vec<Instance>>,
}

impl Watch {
    /// A watch that reads `rx`, which a backend's task updates.
    pub(crate) fn new(rx: watch::Receiver<Vec<Instance>>) -> Self {
        Self { rx }
    }

    /// The instances now, by id.
    pub fn current(&self) -> Vec<Instance> {
        self.rx.borrow().clone()
    }

    /// Waits for the next change and returns the instances after it.
    ///
    /// Errors: [`RegistryError::Ended`] when the registry stopped watching
    /// (it was dropped).
    pub async fn changed(&mut self) -> Result<Vec<Instance>, RegistryError> {
        self.rx.changed().await.map_err(|_| RegistryError::Ended)?;
        Ok(self.rx.borrow_and_update().clone())
    }

    /// Waits (up to `limit`) until `pred` holds for the instances; returns
    /// them, or `None` when the time ran out first.
    pub async fn wait_for(
        &mut self,
        limit: Duration,
        mut pred: impl FnMut(&[Instance]) -> bool,
    ) -> Option<Vec<Instance>> {
        let found = self.rx.wait_for(|v| pred(v));
        match tokio::time::timeout(limit, found).await {
            Ok(Ok(v)) => Some(v.clone()),
            _ => None,
        }
    }
}

/// Sorts by id, the order every backend reports instances in.
pub(crate) fn sorted(mut v: Vec<Instance>) -> Vec<Instance> {
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v
}
