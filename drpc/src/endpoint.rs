//! The endpoint: configuration, router, plugins, listeners and live sessions.

use crate::driver::{establish, Origin};
use crate::limits::Limiter;
use crate::plugin::{Plugin, Plugins, RouteInfo};
use crate::{Code, Config, Limits, Router, Session, Status};
use drpc_proto::{FrameLimits, Proto, RawProto};
use drpc_socket::{Addr, Listener, SocketError};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Something that names an address: `&str`, `String` or [`Addr`].
pub trait ToAddr {
    /// The parsed address.
    fn to_addr(&self) -> Result<Addr, SocketError>;
}

impl ToAddr for str {
    fn to_addr(&self) -> Result<Addr, SocketError> {
        self.parse()
    }
}

impl ToAddr for String {
    fn to_addr(&self) -> Result<Addr, SocketError> {
        self.parse()
    }
}

impl ToAddr for Addr {
    fn to_addr(&self) -> Result<Addr, SocketError> {
        Ok(self.clone())
    }
}

impl<T: ToAddr + ?Sized> ToAddr for &T {
    fn to_addr(&self) -> Result<Addr, SocketError> {
        (**self).to_addr()
    }
}

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
    inner: Arc<EndpointInner>,
}

pub(crate) struct EndpointInner {
    pub(crate) config: Config,
    pub(crate) proto: Arc<dyn Proto>,
    pub(crate) router: Router,
    pub(crate) plugins: Plugins,
    pub(crate) limiter: Limiter,
    sessions: Mutex<Sessions>,
    /// Every task the endpoint starts, so close can wait for all of them.
    pub(crate) tasks: TaskTracker,
    /// Stops the accept loops (and redials).
    pub(crate) shutdown: CancellationToken,
    /// Cancelled when close has finished.
    closed: CancellationToken,
    /// Cancelled by a second close while the first runs: stop waiting for
    /// handlers and writers, close at once.
    pub(crate) hurry: CancellationToken,
    /// How long a graceful close waits for handlers and writers: the
    /// config's `close_grace`, or what [`Endpoint::shutdown`] was given.
    grace: Mutex<Duration>,
}

struct Sessions {
    by_id: HashMap<Arc<str>, Session>,
    closing: bool,
    next_suffix: u64,
}

/// Builds an [`Endpoint`]; made by [`Endpoint::builder`].
#[must_use]
pub struct EndpointBuilder {
    config: Config,
    proto: Arc<dyn Proto>,
    router: Router,
    plugins: Vec<Arc<dyn Plugin>>,
}

impl EndpointBuilder {
    /// Sets the configuration (default: [`Config::default`]).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Sets the wire format (default: [`RawProto`]).
    pub fn proto(mut self, proto: impl Proto) -> Self {
        self.proto = Arc::new(proto);
        self
    }

    /// Sets the routes this endpoint serves (default: none, so every call is
    /// answered with 404).
    pub fn router(mut self, router: Router) -> Self {
        self.router = router;
        self
    }

    /// Appends a plugin; plugins run in the order they are added.
    pub fn plugin(mut self, plugin: impl Plugin) -> Self {
        self.plugins.push(Arc::new(plugin));
        self
    }

    /// Appends a shared plugin, for a plugin the caller also keeps (to read
    /// its counters, say).
    pub fn plugin_arc(mut self, plugin: Arc<dyn Plugin>) -> Self {
        self.plugins.push(plugin);
        self
    }

    /// Builds the endpoint, running every plugin's
    /// [`after_register`](Plugin::after_register) for each route and then
    /// [`after_build`](Plugin::after_build).
    ///
    /// Errors: a plugin refusing a route; a `Config` that cannot work (a
    /// frame limit too small for any message, a zero write queue).
    pub fn build(self) -> Result<Endpoint, Status> {
        if self.config.max_frame_len < 64 {
            return Err(Status::internal(format!(
                "config.max_frame_len of {} bytes is too small for any message",
                self.config.max_frame_len
            )));
        }
        if self.config.write_queue == 0 {
            return Err(Status::internal("config.write_queue must be at least 1"));
        }
        let mut config = self.config;
        let config_limits = config.limits;
        let config_grace = config.close_grace;
        // A QUIC batch holds whole frames; the transport must accept the
        // largest batch this endpoint's writer can make.
        config.transport.fit_batches(
            config
                .max_frame_len
                .saturating_add(config.write_batch.max(1)),
        );
        let plugins = Plugins::new(self.plugins);
        for (path, kind) in self.router.routes() {
            plugins.try_each(|p| p.after_register(RouteInfo { path, kind }))?;
        }
        let endpoint = Endpoint {
            inner: Arc::new(EndpointInner {
                config,
                proto: self.proto,
                router: self.router,
                plugins,
                limiter: Limiter::new(config_limits),
                sessions: Mutex::new(Sessions {
                    by_id: HashMap::new(),
                    closing: false,
                    next_suffix: 1,
                }),
                tasks: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                closed: CancellationToken::new(),
                hurry: CancellationToken::new(),
                grace: Mutex::new(config_grace),
            }),
        };
        endpoint.inner.plugins.each(|p| p.after_build(&endpoint));
        Ok(endpoint)
    }
}

impl Endpoint {
    /// A builder with the default config, the raw proto, no routes and no plugins.
    pub fn builder() -> EndpointBuilder {
        EndpointBuilder {
            config: Config::default(),
            proto: Arc::new(RawProto),
            router: Router::new(),
            plugins: Vec::new(),
        }
    }

    pub(crate) fn from_inner(inner: Arc<EndpointInner>) -> Self {
        Self { inner }
    }

    /// The endpoint's configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Starts accepting sessions on `addr` and returns the bound address
    /// (with the real port when `addr` asked for port 0). An endpoint can
    /// listen on several addresses.
    pub async fn listen(&self, addr: impl ToAddr) -> Result<Addr, Status> {
        self.check_open()?;
        let addr = addr
            .to_addr()
            .map_err(|e| Status::new(Code::UNKNOWN, e.to_string()).with_cause(e))?;
        let mut listener = Listener::bind(&addr, &self.inner.config.transport)
            .await
            .map_err(|e| Status::new(Code::UNKNOWN, e.to_string()).with_cause(e))?;
        let local = listener.local_addr().clone();
        self.inner.plugins.each(|p| p.after_listen(&local));
        let inner = self.inner.clone();
        self.inner.tasks.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = inner.shutdown.cancelled() => break,
                    r = listener.accept() => r,
                };
                match accepted {
                    Ok(accepting) => {
                        let ep = inner.clone();
                        inner.tasks.spawn(async move {
                            // The handshake runs here, off the accept loop, so
                            // a slow peer delays only itself.
                            let socket = tokio::select! {
                                _ = ep.shutdown.cancelled() => return,
                                r = accepting.finish() => match r {
                                    Ok(socket) => socket,
                                    Err(e) => {
                                        tracing::debug!(error = %e, "accepted connection failed its handshake");
                                        return;
                                    }
                                },
                            };
                            if let Err(status) = establish(&ep, socket, Origin::Accepted, None).await {
                                tracing::debug!(%status, "accepted connection refused");
                            }
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off
                        // briefly instead of spinning, and keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::select! {
                            _ = inner.shutdown.cancelled() => break,
                            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                        }
                    }
                }
            }
            tracing::debug!(addr = %listener.local_addr(), "listener stopped");
        });
        Ok(local)
    }

    /// Connects to the endpoint listening at `addr` and returns the session.
    /// If its connection later breaks, the session dials `addr` again (see
    /// [`Config::redial`]).
    ///
    /// Errors: 105 when the address is bad, the connection fails or takes
    /// longer than [`Config::dial_timeout`]; a plugin's status when a
    /// connection hook refuses; 102 when this endpoint is closed, or when the
    /// session closed before the dial returned (the peer refused it at once,
    /// say; a session that closes a moment later is reported by
    /// [`Session::closed`] instead).
    pub async fn dial(&self, addr: impl ToAddr) -> Result<Session, Status> {
        self.check_open()?;
        let addr = addr
            .to_addr()
            .map_err(|e| Status::dial_failed(e.to_string()).with_cause(e))?;
        let result = async {
            self.inner
                .plugins
                .try_each(|p| p.before_dial(&addr, false))?;
            let socket = match tokio::time::timeout(
                self.inner.config.dial_timeout,
                drpc_socket::dial(&addr, &self.inner.config.transport),
            )
            .await
            {
                Ok(Ok(socket)) => socket,
                Ok(Err(e)) => return Err(Status::dial_failed(e.to_string()).with_cause(e)),
                Err(_) => {
                    return Err(Status::dial_failed(format!(
                        "dial {addr}: no connection within {:?}",
                        self.inner.config.dial_timeout
                    )))
                }
            };
            establish(&self.inner, socket, Origin::Dialed, Some(addr.clone())).await
        }
        .await;
        if let Err(status) = &result {
            self.inner
                .plugins
                .each(|p| p.after_dial_fail(&addr, status, false));
        }
        result
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
        self.inner.sessions.lock().by_id.get(id).cloned()
    }

    /// How many sessions are live.
    pub fn session_count(&self) -> usize {
        self.inner.sessions.lock().by_id.len()
    }

    /// A snapshot of the live sessions.
    pub fn sessions(&self) -> Vec<Session> {
        self.inner.sessions.lock().by_id.values().cloned().collect()
    }

    /// Runs `f` on every live session (on a snapshot, so `f` may close
    /// sessions or open new ones).
    pub fn for_each_session(&self, mut f: impl FnMut(&Session)) {
        for s in self.sessions() {
            f(&s);
        }
    }

    /// Closes the endpoint gracefully, waiting up to [`Config::close_grace`]:
    /// see [`Endpoint::shutdown`].
    pub async fn close(&self) {
        self.shutdown(self.inner.config.close_grace).await
    }

    /// Shuts the endpoint down gracefully, within `grace`:
    ///
    /// 1. stops accepting;
    /// 2. tells every connected peer it is going away (a connection notice,
    ///    docs/PROTOCOL.md section 3.1), so peers stop starting calls on
    ///    these sessions at once instead of finding out later;
    /// 3. lets running handlers finish and sends their replies;
    /// 4. closes every session and waits until every task the endpoint
    ///    started has ended.
    ///
    /// When `grace` runs out, handlers still running are cancelled and the
    /// close completes. Calling `close` or `shutdown` again while this runs
    /// closes at once the same way; once it has finished, they return at
    /// once. Further listens and dials fail with 102.
    pub async fn shutdown(&self, grace: Duration) {
        let first = {
            let mut sessions = self.inner.sessions.lock();
            !std::mem::replace(&mut sessions.closing, true)
        };
        if !first {
            self.inner.hurry.cancel();
            self.inner.closed.cancelled().await;
            return;
        }
        *self.inner.grace.lock() = grace;
        self.inner.plugins.each(|p| p.before_close(self));
        self.inner.shutdown.cancel();
        let sessions = self.sessions();
        futures_util::future::join_all(sessions.iter().map(Session::close)).await;
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.inner.plugins.each(|p| p.after_close(self));
        self.inner.closed.cancel();
    }

    /// Whether [`Endpoint::close`] has begun.
    pub fn is_closed(&self) -> bool {
        self.inner.sessions.lock().closing
    }

    fn check_open(&self) -> Result<(), Status> {
        if self.is_closed() {
            Err(Status::connection_closed("the endpoint is closed"))
        } else {
            Ok(())
        }
    }
}

impl EndpointInner {
    /// How long a graceful close waits now.
    pub(crate) fn grace(&self) -> Duration {
        *self.grace.lock()
    }

    pub(crate) fn frame_limits(&self) -> FrameLimits {
        FrameLimits::new(self.config.max_frame_len)
            .with_method_len(self.config.max_method_len)
            .with_meta_len(self.config.max_meta_len)
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
