//! The etcd v3 registry: instances are keys under leases, in the layout of
//! [`KeyLayout`] (docs/REGISTRY.md), so that services in other languages can
//! register beside drpc ones.

use crate::instance::{Instance, KeyLayout};
use crate::registry::{
    check, sorted, BoxFuture, Registration, Registry, RegistryError, StopRequest, Watch,
};
use etcd_client::{Client, EventType, GetOptions, PutOptions, WatchOptions};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// How long to wait before trying the store again after it failed; doubles
/// up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

fn store(e: etcd_client::Error) -> RegistryError {
    RegistryError::Store(e.to_string())
}

/// A registry in etcd (v3 API).
///
/// ```no_run
/// use drpc_cluster::{EtcdRegistry, Instance, Registry};
/// use std::time::Duration;
///
/// # async fn demo() -> Result<(), drpc_cluster::RegistryError> {
/// let registry = EtcdRegistry::connect(["127.0.0.1:2379"]).await?;
/// let me = Instance::new("math", "math-1", ["tcp://10.0.0.5:9090"]);
/// let registration = registry.register(me, Duration::from_secs(10)).await?;
/// // ... serve ...
/// registration.deregister().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct EtcdRegistry {
    client: Client,
    layout: KeyLayout,
}

impl EtcdRegistry {
    /// Connects to etcd at `endpoints` (`host:port`), with the default key
    /// layout.
    ///
    /// Errors: no endpoint could be reached.
    pub async fn connect<E: AsRef<str>>(endpoints: impl AsRef<[E]>) -> Result<Self, RegistryError> {
        let client = Client::connect(endpoints, None).await.map_err(store)?;
        Ok(Self::from_client(client))
    }

    /// A registry over a client the caller configured (TLS, auth,
    /// timeouts).
    pub fn from_client(client: Client) -> Self {
        Self {
            client,
            layout: KeyLayout::default(),
        }
    }

    /// With keys under `layout` instead of the default root.
    pub fn with_layout(mut self, layout: KeyLayout) -> Self {
        self.layout = layout;
        self
    }

    /// Grants a lease of `ttl` and puts `instance` under it.
    async fn put(&self, instance: &Instance, ttl: Duration) -> Result<i64, RegistryError> {
        let mut client = self.client.clone();
        let secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX).max(1);
        let lease = client.lease_grant(secs, None).await.map_err(store)?.id();
        let key = self.layout.key(instance);
        let opts = PutOptions::new().with_lease(lease);
        client
            .put(key, instance.to_value(), Some(opts))
            .await
            .map_err(store)?;
        Ok(lease)
    }

    /// Keeps `lease` alive until asked to stop; takes a new one when it is
    /// lost (the store was away longer than the TTL).
    async fn keep_alive(
        self,
        instance: Instance,
        ttl: Duration,
        mut lease: i64,
        mut stop: oneshot::Receiver<StopRequest>,
    ) {
        let mut retry = RETRY_MIN;
        loop {
            let kept = tokio::select! {
                req = &mut stop => {
                    let result = self.client.clone().lease_revoke(lease).await.map(|_| ()).map_err(store);
                    if let Ok(done) = req {
                        let _ = done.send(result);
                    }
                    return;
                }
                kept = self.keep_until_lost(lease, ttl) => kept,
            };
            tracing::debug!(service = %instance.service, id = %instance.id, ?kept, "lease lost; registering again");
            tokio::select! {
                req = &mut stop => {
                    // Nothing is registered now; there is nothing to revoke.
                    if let Ok(done) = req {
                        let _ = done.send(Ok(()));
                    }
                    return;
                }
                put = self.put(&instance, ttl) => match put {
                    Ok(new) => {
                        lease = new;
                        retry = RETRY_MIN;
                    }
                    Err(e) => {
                        tracing::debug!(%e, "registering again failed; retrying");
                        tokio::time::sleep(retry).await;
                        retry = (retry * 2).min(RETRY_MAX);
                    }
                }
            }
        }
    }

    /// Sends keep-alives every TTL / 3 until the lease is gone or the store
    /// fails; returns why.
    async fn keep_until_lost(&self, lease: i64, ttl: Duration) -> Result<(), RegistryError> {
        let mut client = self.client.clone();
        let (mut keeper, mut answers) = client.lease_keep_alive(lease).await.map_err(store)?;
        loop {
            keeper.keep_alive().await.map_err(store)?;
            match answers.message().await.map_err(store)? {
                Some(answer) if answer.ttl() > 0 => {}
                _ => return Ok(()), // expired or revoked elsewhere
            }
            tokio::time::sleep(ttl / 3).await;
        }
    }

    /// The instances of `service` and the store's revision they were read at.
    async fn snapshot(
        &self,
        service: &str,
    ) -> Result<(BTreeMap<String, Instance>, i64), RegistryError> {
        let prefix = self.layout.prefix(service);
        let got = self
            .client
            .clone()
            .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(store)?;
        let revision = got.header().map_or(0, |h| h.revision());
        let mut out = BTreeMap::new();
        for kv in got.kvs() {
            if let Some(me) = decode(service, kv.key(), kv.value()) {
                out.insert(me.id.clone(), me);
            }
        }
        Ok((out, revision))
    }

    /// Follows `service` from `revision` on, updating `tx`, until the store
    /// fails or every watcher is gone.
    async fn follow(
        &self,
        service: &str,
        mut now: BTreeMap<String, Instance>,
        revision: i64,
        tx: &watch::Sender<Vec<Instance>>,
    ) -> Result<(), RegistryError> {
        let prefix = self.layout.prefix(service);
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let mut stream = self
            .client
            .clone()
            .watch(prefix.as_str(), Some(opts))
            .await
            .map_err(store)?;
        loop {
            let message = tokio::select! {
                m = stream.message() => m.map_err(store)?,
                _ = tx.closed() => return Ok(()),
            };
            let Some(resp) = message else {
                return Err(RegistryError::Store("the watch ended".into()));
            };
            if resp.canceled() {
                return Err(RegistryError::Store(format!(
                    "the watch was cancelled: {}",
                    resp.cancel_reason()
                )));
            }
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                let id = String::from_utf8_lossy(kv.key())
                    .trim_start_matches(&prefix)
                    .to_string();
                match event.event_type() {
                    EventType::Put => {
                        if let Some(me) = decode(service, kv.key(), kv.value()) {
                            now.insert(me.id.clone(), me);
                        }
                    }
                    EventType::Delete => {
                        now.remove(&id);
                    }
                }
            }
            publish(tx, now.values().cloned().collect());
        }
    }
}

/// Tells watchers of `instances` if they differ from what they have.
fn publish(tx: &watch::Sender<Vec<Instance>>, instances: Vec<Instance>) {
    tx.send_if_modified(|current| {
        let changed = *current != instances;
        if changed {
            *current = instances;
        }
        changed
    });
}

/// An instance from a stored value; a value that is not one is logged and
/// skipped (another program may share the prefix).
fn decode(service: &str, key: &[u8], value: &[u8]) -> Option<Instance> {
    match Instance::from_value(service, value) {
        Ok(me) => Some(me),
        Err(e) => {
            let key = String::from_utf8_lossy(key);
            tracing::warn!(%key, %e, "not an instance; skipped");
            None
        }
    }
}

impl Registry for EtcdRegistry {
    fn register(
        &self,
        instance: Instance,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<Registration, RegistryError>> {
        Box::pin(async move {
            check(&instance, ttl)?;
            let lease = self.put(&instance, ttl).await?;
            let (stop_tx, stop_rx) = oneshot::channel();
            let task = tokio::spawn(
                self.clone()
                    .keep_alive(instance.clone(), ttl, lease, stop_rx),
            );
            Ok(Registration::new(instance, stop_tx, task))
        })
    }

    fn list(&self, service: &str) -> BoxFuture<'_, Result<Vec<Instance>, RegistryError>> {
        let service = service.to_string();
        Box::pin(async move {
            let (now, _) = self.snapshot(&service).await?;
            Ok(sorted(now.into_values().collect()))
        })
    }

    fn watch(&self, service: &str) -> BoxFuture<'_, Result<Watch, RegistryError>> {
        let service = service.to_string();
        Box::pin(async move {
            let (now, revision) = self.snapshot(&service).await?;
            let (tx, rx) = watch::channel(now.values().cloned().collect());
            let me = self.clone();
            tokio::spawn(async move {
                let (mut now, mut revision) = (now, revision);
                let mut retry = RETRY_MIN;
                loop {
                    match me.follow(&service, now, revision, &tx).await {
                        Ok(()) => return, // nobody watches any more
                        Err(e) => tracing::debug!(%service, %e, "watch lost; resuming"),
                    }
                    // List again: whatever changed meanwhile shows at once.
                    loop {
                        tokio::select! {
                            _ = tx.closed() => return,
                            _ = tokio::time::sleep(retry) => {}
                        }
                        retry = (retry * 2).min(RETRY_MAX);
                        if let Ok(snap) = me.snapshot(&service).await {
                            (now, revision) = snap;
                            publish(&tx, now.values().cloned().collect());
                            retry = RETRY_MIN;
                            break;
                        }
                    }
                }
            });
            Ok(Watch::new(rx))
        })
    }
}
