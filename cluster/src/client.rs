//! Calling a service by name: a client that follows the registry, dials
//! instances lazily (one shared session each), and picks one per call.

use crate::breaker::{counts_against, Breaker, BreakerConfig, BreakerState};
use crate::budget::RetryBudget;
use crate::instance::Instance;
use crate::registry::{Registry, RegistryError};
use crate::selector::{Candidate, PowerOfTwo, Selector};
use drpc::service::Caller;
use drpc::{CallOptions, Code, Endpoint, PushOptions, Reply, Session, Status};
use parking_lot::{Mutex, RwLock};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long an instance whose dial failed is left out before it is tried
/// again; doubles with each failure up to [`DOWN_MAX`].
const DOWN_MIN: Duration = Duration::from_millis(250);
const DOWN_MAX: Duration = Duration::from_secs(5);

/// How a [`Cluster`] picks, breaks and retries; [`Default`] is the power of
/// two choices, [`BreakerConfig::default`] and [`RetryBudget::default`].
pub struct ClusterOptions {
    /// Picks an instance per call.
    pub selector: Arc<dyn Selector>,
    /// When an instance's breaker opens and for how long.
    pub breaker: BreakerConfig,
    /// How many retries the client may make.
    pub retry_budget: RetryBudget,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            selector: Arc::new(PowerOfTwo),
            breaker: BreakerConfig::default(),
            retry_budget: RetryBudget::default(),
        }
    }
}

/// A client of every instance of one service: cheap to clone, and a
/// [`Caller`], so a typed service's client works over it unchanged.
///
/// ```no_run
/// use drpc::Status;
/// use drpc_cluster::{Cluster, EtcdRegistry};
///
/// #[drpc::service]
/// trait Math {
///     async fn add(&self, a: i64, b: i64) -> Result<i64, Status>;
/// }
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = EtcdRegistry::connect(["127.0.0.1:2379"]).await?;
/// let endpoint = drpc::Endpoint::builder().build()?;
/// let cluster = Cluster::new(endpoint, &registry, "math").await?;
/// // Each call goes to one of the registered instances of `math`.
/// let math = MathClient::new(cluster);
/// assert_eq!(math.add(1, 2).await?, 3);
/// # Ok(()) }
/// ```
///
/// An instance is picked among those that can take a call now: never
/// dialed yet, or connected with no going-away notice from it. One whose
/// connection is lost or that is going away is left out at once, without
/// waiting for the registry; one whose dial fails is left out for a while
/// (250 ms, doubling to 5 s) and the call goes to another.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
    /// The caller's key, for selectors that keep a key on one instance.
    key: Option<Arc<str>>,
    /// Whether the caller said its calls may run twice.
    idempotent: bool,
}

struct Inner {
    endpoint: Endpoint,
    service: String,
    selector: Arc<dyn Selector>,
    budget: RetryBudget,
    breaker: BreakerConfig,
    nodes: RwLock<Vec<Arc<Node>>>,
    /// The instances after each update of `nodes`, for [`Cluster::wait_for`].
    updates: tokio::sync::watch::Sender<Vec<Instance>>,
    follow: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.follow.abort();
    }
}

/// One instance and this client's connection to it.
struct Node {
    instance: Instance,
    session: tokio::sync::Mutex<Option<Session>>,
    /// A copy of the session for picking without the async lock.
    ready: Mutex<Option<Session>>,
    in_flight: AtomicUsize,
    /// Left out until then after a failed dial, and for how long next time.
    down: Mutex<(Option<Instant>, Duration)>,
    breaker: Mutex<Breaker>,
}

impl Node {
    fn new(instance: Instance, breaker: &BreakerConfig) -> Self {
        Self {
            instance,
            session: tokio::sync::Mutex::new(None),
            ready: Mutex::new(None),
            in_flight: AtomicUsize::new(0),
            down: Mutex::new((None, DOWN_MIN)),
            breaker: Mutex::new(Breaker::new(breaker.clone(), Instant::now())),
        }
    }

    /// Whether a call may go here now.
    fn usable(&self) -> bool {
        if !self.breaker.lock().admits(Instant::now()) {
            return false;
        }
        if let (Some(until), _) = *self.down.lock() {
            if Instant::now() < until {
                return false;
            }
        }
        match &*self.ready.lock() {
            None => true,
            // Going away, lost (redialing) or closed: not now.
            Some(s) => s.is_healthy() || s.state() == drpc::SessionState::Closed,
        }
    }

    /// The session to this instance, dialing it if needed.
    async fn session(&self, endpoint: &Endpoint) -> Result<Session, Status> {
        let mut slot = self.session.lock().await;
        if let Some(s) = slot.as_ref() {
            if s.state() != drpc::SessionState::Closed {
                return Ok(s.clone());
            }
        }
        let mut last = Status::dial_failed("the instance has no address");
        for addr in &self.instance.addrs {
            match endpoint.dial(addr.as_str()).await {
                Ok(s) => {
                    *self.down.lock() = (None, DOWN_MIN);
                    *slot = Some(s.clone());
                    *self.ready.lock() = Some(s.clone());
                    return Ok(s);
                }
                Err(status) => last = status,
            }
        }
        let mut down = self.down.lock();
        down.0 = Some(Instant::now() + down.1);
        down.1 = (down.1 * 2).min(DOWN_MAX);
        Err(last)
    }
}

impl Cluster {
    /// A client of `service`, following `registry`, dialing through
    /// `endpoint` (whose config, plugins and router its sessions use), with
    /// the power-of-two-choices selector.
    ///
    /// Errors: the registry could not list the service.
    pub async fn new(
        endpoint: Endpoint,
        registry: &dyn Registry,
        service: &str,
    ) -> Result<Self, RegistryError> {
        Self::with_options(endpoint, registry, service, ClusterOptions::default()).await
    }

    /// As [`Cluster::new`], picking with `selector`.
    ///
    /// Errors: the registry could not list the service.
    pub async fn with_selector(
        endpoint: Endpoint,
        registry: &dyn Registry,
        service: &str,
        selector: impl Selector,
    ) -> Result<Self, RegistryError> {
        let options = ClusterOptions {
            selector: Arc::new(selector),
            ..ClusterOptions::default()
        };
        Self::with_options(endpoint, registry, service, options).await
    }

    /// As [`Cluster::new`], with `options`.
    ///
    /// Errors: the registry could not list the service.
    pub async fn with_options(
        endpoint: Endpoint,
        registry: &dyn Registry,
        service: &str,
        options: ClusterOptions,
    ) -> Result<Self, RegistryError> {
        let mut watch = registry.watch(service).await?;
        let listed = watch.current();
        let breaker = options.breaker;
        let first: Vec<Arc<Node>> = listed
            .iter()
            .cloned()
            .map(|i| Arc::new(Node::new(i, &breaker)))
            .collect();
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
            let weak = weak.clone();
            let follow = tokio::spawn(async move {
                while let Ok(now) = watch.changed().await {
                    let Some(inner) = weak.upgrade() else { return };
                    inner.update(now);
                }
            });
            Inner {
                endpoint,
                service: service.to_string(),
                selector: options.selector,
                budget: options.retry_budget,
                breaker,
                nodes: RwLock::new(first),
                updates: tokio::sync::watch::channel(listed).0,
                follow,
            }
        });
        Ok(Self {
            inner,
            key: None,
            idempotent: false,
        })
    }

    /// A copy whose calls carry `key` for the selector: with
    /// [`ConsistentHash`](crate::selector::ConsistentHash), one key's calls
    /// and pushes reach one instance.
    pub fn keyed(&self, key: impl Into<Arc<str>>) -> Self {
        Self {
            key: Some(key.into()),
            ..self.clone()
        }
    }

    /// A copy whose calls may run twice: besides the calls that reached no
    /// handler, it retries (on another instance, within the deadline and
    /// the retry budget) those whose connection was lost or whose write
    /// failed, which may have run.
    pub fn idempotent(&self) -> Self {
        Self {
            idempotent: true,
            ..self.clone()
        }
    }

    /// Whether a call that failed with `status` may be made again.
    fn may_retry(&self, status: &Status) -> bool {
        let code = status.code();
        let refused = status.never_ran()
            && [Code::CONNECTION_CLOSED, Code::OVERLOADED, Code::DIAL_FAILED].contains(&code);
        let lost = self.idempotent && [Code::CONNECTION_CLOSED, Code::WRITE_FAILED].contains(&code);
        refused || lost
    }

    /// The instances known now.
    pub fn instances(&self) -> Vec<Instance> {
        let nodes = self.inner.nodes.read();
        nodes.iter().map(|n| n.instance.clone()).collect()
    }

    /// Waits (up to `limit`) until the instances this client knows satisfy
    /// `pred`; returns them, or `None` when the time ran out first.
    pub async fn wait_for(
        &self,
        limit: Duration,
        mut pred: impl FnMut(&[Instance]) -> bool,
    ) -> Option<Vec<Instance>> {
        let mut rx = self.inner.updates.subscribe();
        let found = tokio::time::timeout(limit, rx.wait_for(|v| pred(v))).await;
        // Bound before it is returned: the borrow of `rx` ends first.
        #[allow(clippy::let_and_return)]
        let instances = match found {
            Ok(Ok(v)) => Some(v.clone()),
            _ => None,
        };
        instances
    }

    /// Picks an instance and returns its session (dialing it if needed),
    /// trying others while dials fail. For calls outside [`Caller`], such as
    /// raw ones; `what` names the call in errors.
    ///
    /// Errors: 503 when no instance is known or available; the last dial's
    /// status when every available instance failed to dial.
    pub async fn session_for(&self, what: &str) -> Result<Session, Status> {
        Ok(self.pick(what, Vec::new()).await?.1)
    }

    async fn pick(
        &self,
        what: &str,
        mut tried: Vec<Arc<Node>>,
    ) -> Result<(Arc<Node>, Session), Status> {
        let mut last = None;
        loop {
            let node = {
                let nodes = self.inner.nodes.read();
                let open: Vec<&Arc<Node>> = nodes
                    .iter()
                    .filter(|n| n.usable() && !tried.iter().any(|t| Arc::ptr_eq(t, n)))
                    .collect();
                if open.is_empty() {
                    let known = nodes.len();
                    return Err(last.unwrap_or_else(|| {
                        Status::overloaded(format!(
                            "{what}: no instance of {} can take a call ({known} registered)",
                            self.inner.service
                        ))
                    }));
                }
                let candidates: Vec<Candidate<'_>> = open
                    .iter()
                    .map(|n| Candidate {
                        instance: &n.instance,
                        in_flight: n.in_flight.load(Ordering::Relaxed),
                    })
                    .collect();
                let at = self.inner.selector.pick(&candidates, self.key.as_deref());
                open[at.min(open.len() - 1)].clone()
            };
            let (allowed, moved) = node.breaker.lock().enter(Instant::now());
            self.breaker_moved(&node, moved);
            if !allowed {
                // Another call took the half-open probe first.
                tried.push(node);
                continue;
            }
            metrics::counter!("drpc_cluster_picks_total", "service" => self.inner.service.clone(), "instance" => node.instance.id.clone()).increment(1);
            match node.session(&self.inner.endpoint).await {
                Ok(session) => return Ok((node, session)),
                // A failed dial reached no handler: another instance may.
                Err(status) => {
                    self.record(&node, Err(&status));
                    tracing::debug!(service = %self.inner.service, id = %node.instance.id, %status, "dial failed; trying another instance");
                    last = Some(status);
                    tried.push(node);
                }
            }
        }
    }
}

impl Cluster {
    /// Tells `node`'s breaker how a call went.
    fn record(&self, node: &Node, outcome: Result<(), &Status>) {
        let failed = outcome.err().is_some_and(counts_against);
        let moved = node.breaker.lock().record(failed, Instant::now());
        self.breaker_moved(node, moved);
    }

    fn breaker_moved(&self, node: &Node, moved: Option<BreakerState>) {
        if let Some(state) = moved {
            tracing::info!(service = %self.inner.service, id = %node.instance.id, state = state.name(), "circuit breaker");
            metrics::counter!(
                "drpc_cluster_breaker_transitions_total",
                "service" => self.inner.service.clone(),
                "instance" => node.instance.id.clone(),
                "state" => state.name()
            )
            .increment(1);
        }
    }
}

impl Inner {
    /// Takes the registry's new list, keeping the nodes (and sessions) of
    /// instances still there.
    fn update(&self, now: Vec<Instance>) {
        let mut nodes = self.nodes.write();
        let next = now
            .into_iter()
            .map(|i| match nodes.iter().find(|n| n.instance == i) {
                Some(n) => n.clone(),
                None => Arc::new(Node::new(i, &self.breaker)),
            })
            .collect::<Vec<Arc<Node>>>();
        let listed = next.iter().map(|n| n.instance.clone()).collect();
        *nodes = next;
        self.updates.send_replace(listed);
    }
}

/// Counts a call in flight on a node while it lives.
struct InFlight(Arc<Node>);

impl InFlight {
    fn new(node: Arc<Node>) -> Self {
        node.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(node)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Caller for Cluster {
    async fn call_with<A, R>(
        &self,
        service_method: &str,
        arg: &A,
        opts: CallOptions,
    ) -> Result<Reply<R>, Status>
    where
        A: Serialize + Sync + ?Sized,
        R: DeserializeOwned + Send,
    {
        let timeout = opts
            .requested_timeout()
            .unwrap_or(self.inner.endpoint.config().default_timeout);
        let deadline = Instant::now() + timeout;
        self.inner.budget.call();
        let mut tried = Vec::new();
        let mut failed: Option<Status> = None;
        loop {
            let picked = self.pick(service_method, tried.clone()).await;
            let (node, session) = match (picked, failed) {
                (Ok(p), _) => p,
                // Nowhere else to go: the call's own failure says more.
                (Err(_), Some(status)) => return Err(status),
                (Err(status), None) => return Err(status),
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let result = {
                let _counted = InFlight::new(node.clone());
                let attempt = opts.clone().timeout(left);
                session.call_with(service_method, arg, attempt).await
            };
            self.record(&node, result.as_ref().map(|_| ()));
            match result {
                Err(status) if self.may_retry(&status) && Instant::now() < deadline => {
                    let service = self.inner.service.clone();
                    if !self.inner.budget.try_retry() {
                        metrics::counter!("drpc_cluster_retries_denied_total", "service" => service).increment(1);
                        return Err(status);
                    }
                    let code = status.code().0.to_string();
                    metrics::counter!("drpc_cluster_retries_total", "service" => service, "code" => code).increment(1);
                    tracing::debug!(service = %self.inner.service, id = %node.instance.id, %status, "retrying on another instance");
                    tried.push(node);
                    failed = Some(status);
                }
                other => return other,
            }
        }
    }

    async fn push_with<A>(
        &self,
        service_method: &str,
        arg: &A,
        opts: PushOptions,
    ) -> Result<(), Status>
    where
        A: Serialize + Sync + ?Sized,
    {
        let (node, session) = self.pick(service_method, Vec::new()).await?;
        let result = session.push_with(service_method, arg, opts).await;
        self.record(&node, result.as_ref().map(|_| ()));
        result
    }

    /// A stream goes to one instance, picked as a call's first try is; it
    /// is not retried elsewhere (its items cannot be replayed), nor counted
    /// in the instance's calls in flight.
    async fn stream_session(&self, service_method: &str) -> Result<Session, Status> {
        let (_, session) = self.pick(service_method, Vec::new()).await?;
        Ok(session)
    }
}
