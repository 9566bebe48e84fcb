//! What an endpoint's sessions share: its settings, routes, plugins and
//! limits, its registry of live sessions, and the handle [`Endpoint`]
//! (whose listening, dialing and shutdown live in `endpoint.rs`).

use crate::core::lifecycle::Renewal;
use crate::plugin::Plugins;
use crate::router::Router;
use crate::runtime::admission::Limiter;
use crate::session::Session;
use crate::values::{Code, Config, Health, Limits, Status};
use drpc_proto::{FrameLimits, Proto};
use drpc_socket::{Addr, Socket, SocketError};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The runtime object a process owns: it listens and dials at the same time,
/// and every connection, either way, becomes a symmetric [`Session`].
///
/// An `Endpoint` is a cheap, cloneable handle. It must be used inside a
/// tokio runtime, and it serves until [`Endpoint::close`] is called (or the
/// runtime shuts down): dropping the handle does not close it.
///
/// ```no_run
/// # async fn demo() -> Result<(), drpc::Status> {
/// use drpc::{CallCtx, Endpoint, Router, Status};
///
/// let mut router = Router::new();
/// router
///     .call("/echo", |_: CallCtx, s: String| async move { Ok::<_, Status>(s) })
///     .unwrap();
/// let server = Endpoint::builder().router(router).build()?;
/// let addr = server.listen("tcp://127.0.0.1:0").await?;
///
/// let client = Endpoint::builder().build()?;
/// let session = client.dial(&addr).await?;
/// let back: String = session.call("/echo", "hi").await?;
/// assert_eq!(back, "hi");
/// client.close().await;
/// server.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Endpoint {
    pub(crate) inner: Arc<EndpointShared>,
}

/// How an endpoint turns an address into a connected socket: the seam
/// through which every dial and redial goes. The default dials with the
/// transport the address names ([`drpc_socket::dial`]); a test can
/// substitute in-memory sockets (see [`EndpointBuilder::dialer`]).
///
/// [`EndpointBuilder::dialer`]: crate::EndpointBuilder::dialer
pub trait Dialer: Send + Sync + 'static {
    /// Connects to `addr`. Bounded by the caller's dial timeout.
    fn dial<'a>(
        &'a self,
        addr: &'a Addr,
        config: &'a Config,
    ) -> Pin<Box<dyn Future<Output = Result<Socket, SocketError>> + Send + 'a>>;
}

/// The transports of `drpc-socket`, picked by the address scheme.
pub(crate) struct SocketDialer;

impl Dialer for SocketDialer {
    fn dial<'a>(
        &'a self,
        addr: &'a Addr,
        config: &'a Config,
    ) -> Pin<Box<dyn Future<Output = Result<Socket, SocketError>> + Send + 'a>> {
        Box::pin(drpc_socket::dial(addr, &config.transport))
    }
}

/// An endpoint's shared state.
pub(crate) struct EndpointShared {
    pub(crate) config: Config,
    pub(crate) proto: Arc<dyn Proto>,
    pub(crate) router: Router,
    pub(crate) plugins: Plugins,
    pub(crate) limiter: Arc<Limiter>,
    pub(crate) dialer: Arc<dyn Dialer>,
    sessions: Mutex<Sessions>,
    /// Every task the endpoint starts, so close can wait for all of them.
    pub(crate) tasks: TaskTracker,
    /// Stops the accept loops and redials.
    pub(crate) shutdown: CancellationToken,
    /// Cancelled when close has finished.
    pub(crate) closed: CancellationToken,
    /// Cancelled by a second close while the first runs: stop waiting for
    /// handlers and writers, close at once.
    pub(crate) hurry: CancellationToken,
    /// How long a graceful close waits: the config's `close_grace`, or what
    /// [`Endpoint::shutdown`] was given.
    grace: Mutex<Duration>,
    /// Woken when the last session leaves the registry.
    emptied: Notify,
    /// What `/_drpc/health` answers, as `Health::to_u8`.
    health: AtomicU8,
    /// Why it is closing, when its going-away notices should say so (a
    /// restart: peers redial at once).
    pub(crate) leaving: OnceLock<Renewal>,
    /// Each listener's accept loop, asked for a copy of its socket (for a
    /// restart) through these.
    pub(crate) hand_offs: Mutex<Vec<HandOffs>>,
}

/// Asks a listener's accept loop for a copy of its socket.
#[cfg(unix)]
pub(crate) type HandOffs = tokio::sync::mpsc::UnboundedSender<HandOff>;

/// Where an accept loop sends the copy of its socket, with its address.
#[cfg(unix)]
pub(crate) type HandOff =
    tokio::sync::oneshot::Sender<Result<(Addr, std::os::fd::OwnedFd), SocketError>>;
#[cfg(not(unix))]
pub(crate) type HandOffs = ();

struct Sessions {
    by_id: HashMap<Arc<str>, Session>,
    closing: bool,
    next_suffix: u64,
}

impl EndpointShared {
    pub(crate) fn new(
        config: Config,
        proto: Arc<dyn Proto>,
        router: Router,
        plugins: Plugins,
        dialer: Arc<dyn Dialer>,
    ) -> Self {
        let grace = config.close_grace;
        let limits = config.limits;
        Self {
            config,
            proto,
            router,
            plugins,
            limiter: Arc::new(Limiter::new(limits)),
            dialer,
            sessions: Mutex::new(Sessions {
                by_id: HashMap::new(),
                closing: false,
                next_suffix: 1,
            }),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            closed: CancellationToken::new(),
            hurry: CancellationToken::new(),
            grace: Mutex::new(grace),
            emptied: Notify::new(),
            health: AtomicU8::new(Health::Serving.to_u8()),
            leaving: OnceLock::new(),
            hand_offs: Mutex::new(Vec::new()),
        }
    }

    /// How long a graceful close waits now.
    pub(crate) fn grace(&self) -> Duration {
        *self.grace.lock()
    }

    pub(crate) fn set_grace(&self, grace: Duration) {
        *self.grace.lock() = grace;
    }

    /// The limits every framer of this endpoint enforces.
    pub(crate) fn frame_limits(&self) -> FrameLimits {
        FrameLimits::new(self.config.max_frame_len)
            .with_method_len(self.config.max_method_len)
            .with_meta_len(self.config.max_meta_len)
    }

    /// Marks the endpoint closing; true the first time.
    pub(crate) fn begin_closing(&self) -> bool {
        !std::mem::replace(&mut self.sessions.lock().closing, true)
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.sessions.lock().closing
    }

    /// Registers a new session under its peer address (suffixed if taken).
    pub(crate) fn add_session(&self, session: &Session) -> Result<(), Status> {
        let mut sessions = self.sessions.lock();
        if sessions.closing {
            return Err(Status::connection_closed("the endpoint is closing"));
        }
        let max = self.limiter.max_sessions();
        if sessions.by_id.len() >= max {
            return Err(Status::overloaded(format!(
                "the endpoint already serves {max} sessions (Limits::max_sessions)"
            )));
        }
        let base = session.peer_addr().to_string();
        let mut id: Arc<str> = Arc::from(base.as_str());
        while sessions.by_id.contains_key(&id) {
            let n = sessions.next_suffix;
            sessions.next_suffix += 1;
            id = Arc::from(format!("{base}#{n}"));
        }
        *session.shared.id.lock() = id.clone();
        sessions.by_id.insert(id, session.clone());
        Ok(())
    }

    pub(crate) fn rename_session(&self, session: &Session, new_id: Arc<str>) -> Result<(), Status> {
        let mut sessions = self.sessions.lock();
        let mut id = session.shared.id.lock();
        if *id == new_id {
            return Ok(());
        }
        match sessions.by_id.get(&*id) {
            Some(s) if s == session => {}
            _ => return Err(Status::connection_closed("cannot rename a closed session")),
        }
        if sessions.by_id.contains_key(&new_id) {
            return Err(Status::new(
                Code::WRONG_CONNECTION,
                format!("session id {new_id:?} is already in use on this endpoint"),
            ));
        }
        sessions.by_id.remove(&*id);
        sessions.by_id.insert(new_id.clone(), session.clone());
        *id = new_id;
        Ok(())
    }

    pub(crate) fn remove_session(&self, session: &Session) {
        let mut sessions = self.sessions.lock();
        let id = session.shared.id.lock().clone();
        if sessions.by_id.get(&id).is_some_and(|s| s == session) {
            sessions.by_id.remove(&id);
        }
        if sessions.by_id.is_empty() {
            self.emptied.notify_waiters();
        }
    }

    /// Completes once the endpoint is closing and has no session left.
    pub(crate) async fn sessions_gone(&self) {
        loop {
            let emptied = self.emptied.notified();
            tokio::pin!(emptied);
            emptied.as_mut().enable();
            {
                let sessions = self.sessions.lock();
                if sessions.closing && sessions.by_id.is_empty() {
                    return;
                }
            }
            emptied.await;
        }
    }

    pub(crate) fn session(&self, id: &str) -> Option<Session> {
        self.sessions.lock().by_id.get(id).cloned()
    }

    pub(crate) fn session_count(&self) -> usize {
        self.sessions.lock().by_id.len()
    }

    pub(crate) fn sessions(&self) -> Vec<Session> {
        self.sessions.lock().by_id.values().cloned().collect()
    }
}

impl Endpoint {
    /// The endpoint's configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The overload limits in force.
    pub fn limits(&self) -> Limits {
        self.inner.limiter.get()
    }

    /// Changes the overload limits while running. Lower limits apply to new
    /// sessions and calls; nothing running is cut short.
    pub fn set_limits(&self, limits: Limits) {
        self.inner.limiter.set(limits);
    }

    /// How many calls this endpoint's handlers are running now.
    pub fn calls_running(&self) -> usize {
        self.inner.limiter.running()
    }

    /// The live session with `id`.
    pub fn session(&self, id: &str) -> Option<Session> {
        self.inner.session(id)
    }

    /// How many sessions are live.
    pub fn session_count(&self) -> usize {
        self.inner.session_count()
    }

    /// A snapshot of the live sessions.
    pub fn sessions(&self) -> Vec<Session> {
        self.inner.sessions()
    }

    /// Runs `f` on every live session (on a snapshot, so `f` may close
    /// sessions or open new ones).
    pub fn for_each_session(&self, mut f: impl FnMut(&Session)) {
        for s in self.sessions() {
            f(&s);
        }
    }

    /// Whether [`Endpoint::close`] has begun.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closing()
    }

    /// Completes once the endpoint has closed, whoever closed it (a
    /// signal, the control channel's stop): every session and task of it
    /// has ended.
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        self.inner.closed.clone().cancelled_owned()
    }

    /// What `/_drpc/health` answers now: [`Health::Serving`] until set
    /// otherwise or until shutdown begins ([`Health::Draining`]).
    pub fn health(&self) -> Health {
        Health::from_u8(self.inner.health.load(Ordering::Acquire))
    }

    /// Sets what `/_drpc/health` answers: [`Health::NotServing`] while a
    /// dependency is down, say, and [`Health::Serving`] once it is back.
    /// Once shutdown has begun the endpoint stays
    /// [`Health::Draining`].
    pub fn set_health(&self, health: Health) {
        let draining = Health::Draining.to_u8();
        let _ = self
            .inner
            .health
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (now != draining).then_some(health.to_u8())
            });
    }

    pub(crate) fn start_draining(&self) {
        self.inner
            .health
            .store(Health::Draining.to_u8(), Ordering::Release);
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("sessions", &self.session_count())
            .field("proto", &self.inner.proto.name())
            .field("closed", &self.is_closed())
            .finish()
    }
}
