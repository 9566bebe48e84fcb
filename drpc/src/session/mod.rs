//! The session handle: a cheap, cloneable view of one logical connection
//! between two endpoints, surviving redials.

pub(crate) mod calls;
mod expiry;
mod handshake;

pub use handshake::HandshakeMessage;

use crate::core::expiry::ExpiryLimits;
use crate::core::lifecycle::{Admit, Phase, Refused};
use crate::plugin::Plugins;
use crate::runtime::link::Link;
use crate::runtime::scope;
use crate::shared::{Endpoint, EndpointShared};
use crate::values::{Code, Status, Storage};
use drpc_proto::Proto;
use drpc_socket::Addr;
use parking_lot::{Mutex, RwLock};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// One logical connection between two endpoints; either side can call and
/// push on it. A cheap, cloneable handle: every clone is the same session.
///
/// ```no_run
/// # async fn demo(session: drpc::Session) -> Result<(), drpc::Status> {
/// use drpc::CallOptions;
/// use std::time::Duration;
///
/// let sum: i64 = session.call("/math/add", &serde_json::json!({"a": 1, "b": 2})).await?;
/// let reply = session
///     .call_with::<_, i64>("/math/add", &(1, 2), CallOptions::new().timeout(Duration::from_secs(1)))
///     .await?;
/// println!("{sum} {} {:?}", reply.value, reply.meta);
/// session.push("/chat/message", "hello").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Session {
    pub(crate) shared: Arc<SessionShared>,
    /// Set on the handle a connection hook gets: the connection being
    /// established, which this handle (and its clones) may use before the
    /// hooks pass. Every other handle waits for them.
    pub(crate) via: Option<Arc<Link>>,
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionState {
    /// A connection is up and its connection hooks run (seen only from
    /// the hooks themselves, or while a redialed connection is set up).
    Establishing,
    /// Calls and pushes flow both ways.
    Active,
    /// A dialed session lost its connection and is dialing again: new calls
    /// and pushes wait (up to their deadlines) for the new connection.
    Redialing,
    /// A close has begun: no new calls or pushes start; running handlers finish.
    Closing,
    /// Closed; [`Session::close_reason`] says why.
    Closed,
}

pub(crate) struct SessionShared {
    pub(crate) ep: Arc<EndpointShared>,
    /// Changed only under the endpoint's session-map lock, so the map and
    /// the id never disagree.
    pub(crate) id: Mutex<Arc<str>>,
    /// Whether this end dialed (or [connected](crate::Endpoint::connect)).
    dialed: bool,
    /// Where a dialed session redials; `None` when accepted, or when it
    /// was made from a connection the application had.
    dial_target: Option<Addr>,
    /// The wire format of its connections, redialed ones included.
    pub(crate) proto: Arc<dyn Proto>,
    storage: Mutex<Storage>,
    state: RwLock<State>,
    /// Wakes calls waiting for a usable connection when the phase or the
    /// link changes.
    pub(crate) changed: Notify,
    /// Asks the session's supervisor for a graceful close.
    pub(crate) close_requested: CancellationToken,
    /// Asks it to close at once, for `abort_reason`.
    pub(crate) abort_requested: CancellationToken,
    abort_reason: OnceLock<Status>,
    /// Cancelled once the session is fully closed.
    pub(crate) closed: CancellationToken,
    /// How many plugins ran their accept or dial hook, so exactly those get
    /// a close hook.
    hooked: AtomicUsize,
    /// Calls whose handlers run now (see `Limits::max_calls_per_session`).
    pub(crate) calls_running: Arc<AtomicUsize>,
    /// Its age and idle limits, and whether they changed since its
    /// connection last read them.
    expiry: Mutex<ExpiryLimits>,
    expiry_changed: AtomicBool,
    /// Callers waiting for a usable connection, and their wake-up for a
    /// session that redials only when needed.
    wanting: AtomicUsize,
    wanted: Notify,
}

struct State {
    phase: Phase,
    /// The current connection; `None` while a dialed session redials.
    link: Option<Arc<Link>>,
    /// The addresses of the latest connection, kept through a redial.
    addrs: (Addr, Addr),
    /// Why new calls fail, once the session is closing.
    closing: Option<Status>,
    /// Why it closed, once it has.
    close_reason: Option<Status>,
}

/// Set in `hooked` when the session has closed.
const HOOKS_SEALED: usize = 1 << (usize::BITS - 1);

impl Session {
    pub(crate) fn new(
        ep: Arc<EndpointShared>,
        link: Arc<Link>,
        dialed: bool,
        dial_target: Option<Addr>,
        proto: Arc<dyn Proto>,
    ) -> Self {
        let expiry = expiry::default_limits(&ep.config);
        Self {
            shared: Arc::new(SessionShared {
                ep,
                id: Mutex::new(Arc::from("")),
                dialed,
                dial_target,
                proto,
                storage: Mutex::new(Storage::default()),
                state: RwLock::new(State {
                    phase: Phase::Establishing,
                    addrs: (link.local.clone(), link.peer.clone()),
                    link: Some(link),
                    closing: None,
                    close_reason: None,
                }),
                changed: Notify::new(),
                close_requested: CancellationToken::new(),
                abort_requested: CancellationToken::new(),
                abort_reason: OnceLock::new(),
                closed: CancellationToken::new(),
                hooked: AtomicUsize::new(0),
                calls_running: Arc::new(AtomicUsize::new(0)),
                expiry: Mutex::new(expiry),
                expiry_changed: AtomicBool::new(false),
                wanting: AtomicUsize::new(0),
                wanted: Notify::new(),
            }),
            via: None,
        }
    }

    /// A handle that may use `link` before its hooks pass: what connection
    /// hooks get.
    pub(crate) fn privileged(&self, link: &Arc<Link>) -> Session {
        Session {
            shared: self.shared.clone(),
            via: Some(link.clone()),
        }
    }

    /// How many of the peer's calls this session's handlers are running now.
    pub fn calls_running(&self) -> usize {
        self.shared.calls_running.load(Ordering::Relaxed)
    }

    /// The session's id, unique among the live sessions of its endpoint.
    ///
    /// Defaults to the peer's address (`tcp://127.0.0.1:53412`), with `#n`
    /// appended when that is taken (several unnamed Unix peers, say).
    pub fn id(&self) -> Arc<str> {
        self.shared.id.lock().clone()
    }

    /// Gives the session a new id, such as a user name after login, so
    /// [`Endpoint::session`] finds it by that id.
    ///
    /// Fails, changing nothing, if another live session of the endpoint has
    /// the id or this session is closed; it never closes the other session.
    pub fn set_id(&self, id: impl Into<Arc<str>>) -> Result<(), Status> {
        self.shared.ep.rename_session(self, id.into())
    }

    /// This end's address (of the latest connection, for a session that
    /// redialed).
    pub fn local_addr(&self) -> Addr {
        self.shared.state.read().addrs.0.clone()
    }

    /// The other end's address (of the latest connection).
    pub fn peer_addr(&self) -> Addr {
        self.shared.state.read().addrs.1.clone()
    }

    /// Whether this end dialed the session (as opposed to accepting it),
    /// [`Endpoint::connect`](crate::Endpoint::connect) included.
    pub fn is_dialed(&self) -> bool {
        self.shared.dialed
    }

    /// The address a dialed session redials: `None` for an accepted one,
    /// and for one made by [`Endpoint::connect`](crate::Endpoint::connect).
    pub(crate) fn dial_target(&self) -> Option<&Addr> {
        self.shared.dial_target.as_ref()
    }

    /// The endpoint that owns the session.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            inner: self.shared.ep.clone(),
        }
    }

    /// Where the session is in its life.
    pub fn state(&self) -> SessionState {
        match self.phase() {
            Phase::Establishing => SessionState::Establishing,
            Phase::Active => SessionState::Active,
            Phase::Redialing => SessionState::Redialing,
            Phase::Closing => SessionState::Closing,
            Phase::Closed => SessionState::Closed,
        }
    }

    /// Whether calls and pushes can start on the session now: it is
    /// active, and the peer has not said it is going away.
    pub fn is_healthy(&self) -> bool {
        let state = self.shared.state.read();
        state.phase == Phase::Active && state.link.as_ref().is_some_and(|l| l.refusal().is_none())
    }

    /// Completes when the peer has said its end of the current connection
    /// is shutting down (from then on, new calls and pushes fail at once
    /// with 102, while replies to running calls still arrive), or when the
    /// session has closed.
    pub fn going_away(&self) -> impl Future<Output = ()> + Send + 'static {
        let away = self.link().map(|l| l.going_away.clone());
        let closed = self.shared.closed.clone();
        async move {
            match away {
                Some(away) => tokio::select! {
                    _ = away.cancelled() => {}
                    _ = closed.cancelled() => {}
                },
                None => closed.cancelled().await,
            }
        }
    }

    /// Why the session closed, once it has.
    pub fn close_reason(&self) -> Option<Status> {
        self.shared.state.read().close_reason.clone()
    }

    /// Completes when the session has closed (immediately if it has).
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        self.shared.closed.clone().cancelled_owned()
    }

    /// How many of this side's calls are waiting for a reply.
    pub fn pending_calls(&self) -> usize {
        self.link().map_or(0, |l| l.core().calls.waiting())
    }

    /// Stores a value of type `T` on the session, returning the previous one.
    pub fn set_value<T: Send + Sync + 'static>(&self, value: T) -> Option<T> {
        self.shared.storage.lock().insert(value)
    }

    /// A clone of the stored value of type `T`.
    pub fn value<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.shared.storage.lock().get::<T>().cloned()
    }

    /// A clone of the stored value of type `T`, storing `make()` first if
    /// there is none. Atomic, so hooks running at once on two tasks agree
    /// on one value.
    pub fn value_or_insert_with<T: Clone + Send + Sync + 'static>(
        &self,
        make: impl FnOnce() -> T,
    ) -> T {
        let mut storage = self.shared.storage.lock();
        if let Some(v) = storage.get::<T>() {
            return v.clone();
        }
        let v = make();
        storage.insert(v.clone());
        v
    }

    /// Runs `f` on the stored value of type `T` (or `None`) without cloning it.
    pub fn with_value<T: Send + Sync + 'static, O>(&self, f: impl FnOnce(Option<&T>) -> O) -> O {
        f(self.shared.storage.lock().get::<T>())
    }

    /// Removes and returns the stored value of type `T`.
    pub fn remove_value<T: Send + Sync + 'static>(&self) -> Option<T> {
        self.shared.storage.lock().remove()
    }

    /// Closes the session gracefully: no new calls or pushes start, running
    /// handlers finish and their replies are written (for up to
    /// [`Config::close_grace`](crate::Config::close_grace)), this side's
    /// pending calls fail with 102, and the connection is shut down.
    ///
    /// Returns when the session has closed. Called from a handler of this
    /// same session, it starts the close and returns at once (the close
    /// completes when that handler does).
    pub async fn close(&self) {
        self.shared.close_requested.cancel();
        self.wake_reader();
        if !scope::in_session(self.identity()) {
            self.closed().await;
        }
    }

    /// Closes the session at once, with `reason` as its close reason: for a
    /// peer that is stalled or misbehaving, where a graceful close would
    /// wait on it. Running handlers are cancelled, nothing more is written,
    /// and this side's pending calls fail with 102 carrying `reason`.
    ///
    /// Returns at once; [`Session::closed`] completes when the session has
    /// closed. The first reason given wins.
    pub fn abort(&self, reason: Status) {
        let _ = self.shared.abort_reason.set(reason);
        self.shared.abort_requested.cancel();
        self.wake_reader();
    }

    /// Has the current connection's reader look at the session's requests
    /// (a connection that starts later checks them when it starts).
    fn wake_reader(&self) {
        if let Some(link) = self.link() {
            link.reader.notify();
        }
    }

    /// Drops the current connection at once, as if it had broken, with
    /// `reason`: a dialed session then redials (see [`Redial`](crate::Redial)),
    /// while an accepted one closes with `reason`. For a peer that has
    /// stopped answering (the heartbeat plugin uses it). Pending calls fail
    /// with 102 carrying `reason`. Does nothing while no connection is up.
    pub fn disconnect(&self, reason: Status) {
        if let Some(link) = self.link() {
            let _ = link.drop_reason.set(reason);
            link.drop_requested.cancel();
            link.reader.notify();
        }
    }

    // ----- for the engine -----

    /// The session's identity for the handler scope.
    pub(crate) fn identity(&self) -> usize {
        Arc::as_ptr(&self.shared) as usize
    }

    pub(crate) fn abort_status(&self) -> Status {
        self.shared
            .abort_reason
            .get()
            .cloned()
            .unwrap_or_else(|| Status::connection_closed("aborted"))
    }

    pub(crate) fn plugins(&self) -> &Plugins {
        &self.shared.ep.plugins
    }

    pub(crate) fn phase(&self) -> Phase {
        self.shared.state.read().phase
    }

    /// The current connection, if there is one.
    pub(crate) fn link(&self) -> Option<Arc<Link>> {
        self.shared.state.read().link.clone()
    }

    /// Moves the session along its lifecycle and wakes waiting calls.
    pub(crate) fn transition(&self, event: impl FnOnce(Phase) -> Result<Phase, Refused>) {
        let mut state = self.shared.state.write();
        match event(state.phase) {
            Ok(next) => state.phase = next,
            Err(refused) => tracing::debug!(session = %self.id(), %refused, "transition ignored"),
        }
        drop(state);
        self.shared.changed.notify_waiters();
    }

    /// Installs the next connection (after a redial), or none (while
    /// redialing), and wakes waiting calls.
    pub(crate) fn set_link(&self, link: Option<Arc<Link>>) {
        let mut state = self.shared.state.write();
        if let Some(l) = &link {
            state.addrs = (l.local.clone(), l.peer.clone());
        }
        state.link = link;
        drop(state);
        self.shared.changed.notify_waiters();
    }

    /// Starts closing: no new calls or pushes start, and they fail with
    /// 102 carrying `reason`.
    pub(crate) fn begin_close(&self, reason: &Status) {
        let status = match reason.code() {
            Code::CONNECTION_CLOSED => Status::connection_closed(reason.message().to_string()),
            _ => Status::connection_closed(format!("session closed: {reason}")),
        };
        self.shared.state.write().closing.get_or_insert(status);
        self.transition(Phase::close_begun);
    }

    /// The status calls get once the session is closing or closed.
    pub(crate) fn closed_status(&self) -> Status {
        self.shared
            .state
            .read()
            .closing
            .clone()
            .unwrap_or_else(|| Status::connection_closed("session closed"))
    }

    pub(crate) fn mark_closed(&self, reason: Status) {
        self.shared.state.write().close_reason = Some(reason);
        self.transition(Phase::closed);
    }

    /// The connection calls may use now, waiting until `deadline` while the
    /// session establishes or redials. Fails with 102 once closing.
    pub(crate) async fn usable_link(
        &self,
        deadline: Instant,
        what: &str,
    ) -> Result<Arc<Link>, Status> {
        if let Some(via) = &self.via {
            // A connection hook's own handle uses its connection directly.
            return match via.finished.is_cancelled() {
                false => Ok(via.clone()),
                true => Err(Status::connection_closed(
                    "the connection being established has ended",
                )),
            };
        }
        // Almost always usable at once: no waiter registered, no timer, and
        // the waiting below kept out of every call's future.
        if let Some(link) = self.link_now()? {
            return Ok(link);
        }
        Box::pin(self.wait_for_link(deadline, what)).await
    }

    /// Waits until the session has a usable link, or fails as
    /// [`Session::usable_link`] says.
    async fn wait_for_link(&self, deadline: Instant, what: &str) -> Result<Arc<Link>, Status> {
        let _wanting = self.want_connection();
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            // Registered before looking, so a change in between is not lost.
            changed.as_mut().enable();
            if let Some(link) = self.link_now()? {
                return Ok(link);
            }
            tokio::select! {
                _ = &mut changed => {}
                _ = tokio::time::sleep_until(deadline.into()) => {
                    return Err(Status::deadline_exceeded(format!(
                        "{what}: the session had no usable connection before the deadline (it was redialing, or its connection hooks were still running)"
                    )));
                }
            }
        }
    }

    /// The usable link now: `None` to wait, an error to fail.
    fn link_now(&self) -> Result<Option<Arc<Link>>, Status> {
        let state = self.shared.state.read();
        match state.phase.admits_calls() {
            Admit::Refuse => Err(state
                .closing
                .clone()
                .unwrap_or_else(|| Status::connection_closed("session closed"))),
            Admit::Wait => Ok(None),
            Admit::Now => {
                let Some(link) = &state.link else {
                    return Ok(None);
                };
                // The peer is going away and a redial will follow, or the
                // connection is being dropped: wait for what comes next (a
                // new connection, or the close) rather than use this one.
                if self.moves_on_from(link) || link.drop_requested.is_cancelled() {
                    return Ok(None);
                }
                Ok(Some(link.clone()))
            }
        }
    }

    /// Whether the session leaves `link` for a new connection: the peer
    /// said it is going away (or asked for a new connection), and the
    /// session will redial. Calls wait for the new connection meanwhile,
    /// and one the peer refused as "not run" is made again there.
    pub(crate) fn moves_on_from(&self, link: &Link) -> bool {
        let redial = &self.shared.ep.config.redial;
        link.going_away.is_cancelled()
            && self.dial_target().is_some()
            && redial.enabled
            && (redial.after_shutdown || link.renewal().is_some())
    }

    /// Counts one more plugin whose accept or dial hook is about to run;
    /// false once the count is sealed by the close.
    pub(crate) fn count_connect_hook(&self) -> bool {
        let hooked = &self.shared.hooked;
        let mut n = hooked.load(Ordering::Acquire);
        loop {
            if n & HOOKS_SEALED != 0 {
                return false;
            }
            match hooked.compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(now) => n = now,
            }
        }
    }

    /// Seals the count of plugins whose connect hook ran and returns it:
    /// exactly those get a close hook.
    pub(crate) fn seal_connect_hooks(&self) -> usize {
        self.shared.hooked.fetch_or(HOOKS_SEALED, Ordering::AcqRel) & !HOOKS_SEALED
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id())
            .field("local", &self.local_addr())
            .field("peer", &self.peer_addr())
            .field("state", &self.state())
            .finish()
    }
}

impl PartialEq for Session {
    /// Two handles are equal when they are the same session.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl Eq for Session {}
