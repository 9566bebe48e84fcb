//! The endpoint on top of everything: building one, listening, dialing,
//! serving a connection the application already has, shutting down.

use crate::context::CallCtx;
use crate::engine::establish::{establish, Origin};
use crate::plugin::{Plugin, Plugins, RouteInfo};
use crate::router::Router;
use crate::session::Session;
use crate::shared::{Dialer, Endpoint, EndpointShared, SocketDialer};
use crate::values::{Code, Config, Status, HEALTH_METHOD};
use drpc_proto::{Proto, RawProto};
use drpc_socket::{Addr, Listener, Socket, SocketError};
use std::sync::Arc;
use std::time::Duration;

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

/// Builds an [`Endpoint`]; made by [`Endpoint::builder`].
#[must_use]
pub struct EndpointBuilder {
    config: Config,
    proto: Arc<dyn Proto>,
    router: Router,
    plugins: Vec<Arc<dyn Plugin>>,
    dialer: Arc<dyn Dialer>,
}

impl EndpointBuilder {
    /// Sets the configuration (default: [`Config::default`]).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Sets the wire format of every session (default: [`RawProto`]);
    /// [`Endpoint::listen_with`] and [`Endpoint::dial_with`] choose another
    /// for one listener or one dial.
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

    /// Sets how addresses become connections, for every dial and redial
    /// (default: the transport the address scheme names). A test can hand
    /// out in-memory sockets here, and serve their other ends with
    /// [`Endpoint::serve`], to run sessions, redials included, on tokio's
    /// paused clock.
    pub fn dialer(mut self, dialer: impl Dialer) -> Self {
        self.dialer = Arc::new(dialer);
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
        config.transport.max_frame_len = config.max_frame_len;
        // A QUIC batch holds whole frames; the transport must accept the
        // largest batch this endpoint's writer can make.
        config.transport.fit_batches(
            config
                .max_frame_len
                .saturating_add(config.write_batch.max(1)),
        );
        let mut router = self.router;
        if router.routes().all(|(path, _)| path != HEALTH_METHOD) {
            // The standard health check (PROTOCOL.md 10.4), unless the
            // application answers it itself. Its body is ignored.
            router
                .call_raw(HEALTH_METHOD, |ctx: CallCtx| async move {
                    let health = ctx.session().endpoint().health();
                    ctx.session()
                        .endpoint()
                        .config()
                        .codecs
                        .encode(ctx.codec(), health.as_str())
                        .map(bytes::Bytes::from)
                        .map_err(|e| Status::bad_message(e.to_string()))
                })
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        let plugins = Plugins::new(self.plugins);
        for (path, kind) in router.routes() {
            plugins.try_each(|p| p.after_register(RouteInfo { path, kind }))?;
            for p in router.group_plugins() {
                p.after_register(RouteInfo { path, kind })?;
            }
        }
        let endpoint = Endpoint {
            inner: Arc::new(EndpointShared::new(
                config,
                self.proto,
                router.seal(),
                plugins,
                self.dialer,
            )),
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
            dialer: Arc::new(SocketDialer),
        }
    }

    /// Starts accepting sessions on `addr` and returns the bound address
    /// (with the real port when `addr` asked for port 0). An endpoint can
    /// listen on several addresses. Sessions speak the endpoint's wire
    /// format ([`EndpointBuilder::proto`]); see [`Endpoint::listen_with`]
    /// for another.
    pub async fn listen(&self, addr: impl ToAddr) -> Result<Addr, Status> {
        self.listen_as(addr, self.inner.proto.clone()).await
    }

    /// [`Endpoint::listen`] with the wire format `proto` for the sessions
    /// accepted here, so that one endpoint serves its own format on one
    /// address and another format (a peer's legacy framing, say) on the
    /// next. Routes, plugins and limits are the endpoint's, whatever the
    /// format.
    pub async fn listen_with(&self, addr: impl ToAddr, proto: impl Proto) -> Result<Addr, Status> {
        self.listen_as(addr, Arc::new(proto)).await
    }

    async fn listen_as(&self, addr: impl ToAddr, proto: Arc<dyn Proto>) -> Result<Addr, Status> {
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
        let mut hand_offs = hand_off_requests(&self.inner);
        self.inner.tasks.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    // Nothing is accepted once shutdown has begun.
                    biased;
                    _ = inner.shutdown.cancelled() => break,
                    Some(asked) = hand_offs.recv() => {
                        // A restart's new process takes over the address.
                        #[cfg(unix)]
                        let _ = asked.send(
                            listener.hand_off().map(|fd| (listener.local_addr().clone(), fd)),
                        );
                        #[cfg(not(unix))]
                        let () = asked;
                        continue;
                    }
                    r = listener.accept() => r,
                };
                match accepted {
                    Ok(accepting) => {
                        let ep = inner.clone();
                        let proto = proto.clone();
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
                            if let Err(status) = establish(&ep, socket, Origin::Accepted, None, proto).await {
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
            // The transport's own close (QUIC's close frames, KCP's last
            // datagrams) runs on the listener's socket: it must outlive the
            // sessions it accepted, and finish before close returns.
            let grace = inner.grace();
            tokio::select! {
                _ = async {
                    inner.sessions_gone().await;
                    listener.close().await;
                } => {}
                _ = tokio::time::sleep(grace) => {}
                _ = inner.hurry.cancelled() => {}
            }
        });
        Ok(local)
    }

    /// Serves a connection the application already has (an accepted socket
    /// from elsewhere, one end of an in-memory pipe; any byte stream through
    /// [`Socket::from_stream`]): it becomes a session of this endpoint
    /// exactly as an accepted one does, accept hooks included. Returns the
    /// session once the hooks pass.
    ///
    /// Errors: the refusing hook's status, 503 past the session limit, 102
    /// when the endpoint is closed.
    pub async fn serve(&self, socket: Socket) -> Result<Session, Status> {
        self.check_open()?;
        let proto = self.inner.proto.clone();
        establish(&self.inner, socket, Origin::Accepted, None, proto).await
    }

    /// Makes a connection the application already has the dialing end of
    /// a session, as [`Endpoint::dial`] would: the peer serves it (with
    /// [`Endpoint::serve`], or by accepting it), the dial hooks run, and
    /// the session is returned once they pass. With no address to dial
    /// again, it does not redial when the connection ends.
    ///
    /// ```
    /// use drpc::{socket::Socket, CallCtx, Endpoint, Router, Status};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Status> {
    /// let mut routes = Router::new();
    /// routes.call("/echo", |_: CallCtx, s: String| async move { Ok::<_, Status>(s) }).unwrap();
    /// let server = Endpoint::builder().router(routes).build()?;
    /// let client = Endpoint::builder().build()?;
    ///
    /// // Any AsyncRead + AsyncWrite will do: here, an in-memory pipe.
    /// let (a, b) = tokio::io::duplex(64 * 1024);
    /// let (ca, sa) = ("mem://client".parse().unwrap(), "mem://server".parse().unwrap());
    /// let served = Socket::from_stream(b, sa, ca);
    /// let (ca, sa) = ("mem://client".parse().unwrap(), "mem://server".parse().unwrap());
    /// let (session, _) = tokio::try_join!(
    ///     client.connect(Socket::from_stream(a, ca, sa)),
    ///     server.serve(served),
    /// )?;
    /// assert_eq!(session.call::<_, String>("/echo", "hi").await?, "hi");
    /// client.close().await;
    /// server.close().await;
    /// # Ok(()) }
    /// ```
    ///
    /// Errors: the refusing hook's status, 503 past the session limit, 102
    /// when the endpoint is closed.
    pub async fn connect(&self, socket: Socket) -> Result<Session, Status> {
        self.check_open()?;
        let proto = self.inner.proto.clone();
        establish(&self.inner, socket, Origin::Dialed, None, proto).await
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
        self.dial_as(addr, self.inner.proto.clone()).await
    }

    /// [`Endpoint::dial`] with the wire format `proto` for this session and
    /// its redials, to reach a peer that speaks another format than this
    /// endpoint's.
    pub async fn dial_with(&self, addr: impl ToAddr, proto: impl Proto) -> Result<Session, Status> {
        self.dial_as(addr, Arc::new(proto)).await
    }

    async fn dial_as(&self, addr: impl ToAddr, proto: Arc<dyn Proto>) -> Result<Session, Status> {
        self.check_open()?;
        let addr = addr
            .to_addr()
            .map_err(|e| Status::dial_failed(e.to_string()).with_cause(e))?;
        let inner = &self.inner;
        let result = async {
            inner.plugins.try_each(|p| p.before_dial(&addr, false))?;
            let dial = inner.dialer.dial(&addr, &inner.config);
            let socket = match tokio::time::timeout(inner.config.dial_timeout, dial).await {
                Ok(Ok(socket)) => socket,
                Ok(Err(e)) => return Err(Status::dial_failed(e.to_string()).with_cause(e)),
                Err(_) => {
                    return Err(Status::dial_failed(format!(
                        "dial {addr}: no connection within {:?}",
                        inner.config.dial_timeout
                    )))
                }
            };
            establish(inner, socket, Origin::Dialed, Some(addr.clone()), proto).await
        }
        .await;
        if let Err(status) = &result {
            inner
                .plugins
                .each(|p| p.after_dial_fail(&addr, status, false));
        }
        result
    }

    /// Closes the endpoint gracefully, waiting up to [`Config::close_grace`]:
    /// see [`Endpoint::shutdown`].
    pub async fn close(&self) {
        self.shutdown(self.inner.config.close_grace).await
    }

    /// Shuts the endpoint down gracefully, within `grace`:
    ///
    /// 1. runs every plugin's [`Plugin::before_going_away`] (deregistering
    ///    from a service registry, say), while it still serves;
    /// 2. stops accepting;
    /// 3. tells every connected peer it is going away (a connection notice,
    ///    docs/PROTOCOL.md section 3.1), so peers stop starting calls on
    ///    these sessions at once instead of finding out later; a call that
    ///    crosses the notice is answered with 102;
    /// 4. lets running handlers finish and sends their replies;
    /// 5. ends every connection's stream and waits until each transport has
    ///    finished its own close (a QUIC close sent and drained, KCP end
    ///    markers acknowledged), and until every task the endpoint started
    ///    has ended.
    ///
    /// When it returns, nothing of the endpoint runs any more: a process
    /// may exit at once. When `grace` runs out, handlers still running are
    /// cancelled and the close completes. Calling `close` or `shutdown`
    /// again while this runs closes at once the same way; once it has
    /// finished, they return at once. Further listens and dials fail with
    /// 102.
    pub async fn shutdown(&self, grace: Duration) {
        if !self.inner.begin_closing() {
            self.inner.hurry.cancel();
            self.inner.closed.cancelled().await;
            return;
        }
        self.inner.set_grace(grace);
        // Load balancers asking from now on hear it is going away.
        self.start_draining();
        self.inner.plugins.each(|p| p.before_close(self));
        // Deregistering and the like, before peers hear of it; bounded by
        // the grace and cut short by a second close.
        let plugins = &self.inner.plugins;
        let announced =
            futures_util::future::join_all(plugins.iter().map(|p| p.before_going_away(self)));
        let began = tokio::time::Instant::now();
        tokio::select! {
            _ = announced => {}
            _ = tokio::time::sleep(grace) => {}
            _ = self.inner.hurry.cancelled() => {}
        }
        // What is left of the grace is the drain's.
        self.inner.set_grace(grace.saturating_sub(began.elapsed()));
        self.inner.shutdown.cancel();
        let sessions = self.sessions();
        futures_util::future::join_all(sessions.iter().map(Session::close)).await;
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.inner.plugins.each(|p| p.after_close(self));
        self.inner.closed.cancel();
    }

    fn check_open(&self) -> Result<(), Status> {
        if self.is_closed() {
            Err(Status::connection_closed("the endpoint is closed"))
        } else {
            Ok(())
        }
    }
}

/// Registers a listener's accept loop for hand-off requests (see
/// [`crate::restart`]); the loop answers them between accepts.
#[cfg(unix)]
fn hand_off_requests(
    ep: &EndpointShared,
) -> tokio::sync::mpsc::UnboundedReceiver<crate::shared::HandOff> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    ep.hand_offs.lock().push(tx);
    rx
}

#[cfg(not(unix))]
fn hand_off_requests(_: &EndpointShared) -> tokio::sync::mpsc::UnboundedReceiver<()> {
    tokio::sync::mpsc::unbounded_channel().1
}
