//! The session handle and the per-connection state behind it.

use crate::conn::Conn;
use crate::context::decode_body;
use crate::driver::check_sizes;
use crate::endpoint::EndpointInner;
use crate::outbox::SendError;
use crate::pending::{Outcome, Pending};
use crate::plugin::{CallEnd, Plugins};
use crate::storage::Storage;
use crate::{CallCtx, CallOptions, Code, Endpoint, PushCtx, PushOptions, Reply, Status};
use bytes::Bytes;
use drpc_codec::CodecId;
use drpc_proto::{Header, Message, Meta};
use drpc_socket::Addr;
use parking_lot::{Mutex, RwLock};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};
use tokio::time::{timeout_at, Instant};
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
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
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

/// A message for the writer task.
pub(crate) enum Outbound {
    Msg(Message),
    /// Write everything queued before this, shut the write half down, stop.
    Shutdown,
}

pub(crate) struct SessionShared {
    pub(crate) ep: Arc<EndpointInner>,
    /// Changed only under the endpoint's session-map lock, so the map and
    /// the id never disagree.
    pub(crate) id: Mutex<Arc<str>>,
    /// Where a dialed session dials (and redials); `None` when accepted.
    dial_target: Option<Addr>,
    storage: Mutex<Storage>,
    /// The live connection; `None` while a dialed session redials.
    conn: RwLock<Option<Arc<Conn>>>,
    /// Wakes calls waiting for a connection when it changes.
    pub(crate) conn_changed: Notify,
    /// The addresses of the latest connection, kept through a redial.
    addrs: Mutex<(Addr, Addr)>,
    /// This side's calls waiting for replies. It outlives a connection: a
    /// lost connection fails the calls in it, and new ones go on after a
    /// redial.
    pub(crate) pending: Pending,
    /// Asks the session's driver for a graceful close.
    pub(crate) close_requested: CancellationToken,
    /// Asks the session's driver to close at once, for `abort_reason`.
    pub(crate) abort_requested: CancellationToken,
    abort_reason: OnceLock<Status>,
    /// Cancelled once the session is fully closed.
    pub(crate) closed: CancellationToken,
    pub(crate) close_reason: OnceLock<Status>,
    state: AtomicU8,
    /// How many plugins ran their accept or dial hook, so exactly those get
    /// a close hook.
    pub(crate) hooked: AtomicUsize,
    /// Calls whose handlers run now (see `Limits::max_calls_per_session`).
    pub(crate) calls_running: AtomicUsize,
}

/// Set in `hooked` when the session has closed.
const HOOKS_SEALED: usize = 1 << (usize::BITS - 1);

const ACTIVE: u8 = 0;
const CLOSING: u8 = 1;
const CLOSED: u8 = 2;
const REDIALING: u8 = 3;

tokio::task_local! {
    /// The handler running on this task: its session, so that `close`
    /// called from a handler does not wait for itself, and the message it
    /// handles, for [`Incoming::with_current`](crate::Incoming::with_current).
    pub(crate) static HANDLER_OF: Handling;
}

tokio::task_local! {
    /// Set while a connection hook runs: its calls and pushes may use a
    /// connection that is not yet established (they are how it gets
    /// established); everyone else's wait until it is.
    pub(crate) static IN_CONNECT_HOOK: ();
}

/// What [`HANDLER_OF`] holds.
#[derive(Clone)]
pub(crate) struct Handling {
    /// The session's address.
    pub(crate) session: usize,
    pub(crate) incoming: Option<Handled>,
}

/// The message a handler handles.
#[derive(Clone)]
pub(crate) enum Handled {
    Call(CallCtx),
    Push(PushCtx),
}

impl Handled {
    pub(crate) fn incoming(&self) -> &crate::Incoming {
        match self {
            Self::Call(c) => c,
            Self::Push(p) => p,
        }
    }
}

impl Session {
    pub(crate) fn new(ep: Arc<EndpointInner>, conn: Arc<Conn>, dial_target: Option<Addr>) -> Self {
        Self {
            shared: Arc::new(SessionShared {
                ep,
                id: Mutex::new(Arc::from("")),
                dial_target,
                storage: Mutex::new(Storage::default()),
                addrs: Mutex::new((conn.local.clone(), conn.peer.clone())),
                conn: RwLock::new(Some(conn)),
                conn_changed: Notify::new(),
                pending: Pending::new(),
                close_requested: CancellationToken::new(),
                abort_requested: CancellationToken::new(),
                abort_reason: OnceLock::new(),
                closed: CancellationToken::new(),
                close_reason: OnceLock::new(),
                state: AtomicU8::new(ACTIVE),
                hooked: AtomicUsize::new(0),
                calls_running: AtomicUsize::new(0),
            }),
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
        self.shared.addrs.lock().0.clone()
    }

    /// The other end's address (of the latest connection).
    pub fn peer_addr(&self) -> Addr {
        self.shared.addrs.lock().1.clone()
    }

    /// Whether this end dialed the session (as opposed to accepting it).
    pub fn is_dialed(&self) -> bool {
        self.shared.dial_target.is_some()
    }

    /// The address a dialed session dials, and redials after losing its
    /// connection.
    pub(crate) fn dial_target(&self) -> Option<&Addr> {
        self.shared.dial_target.as_ref()
    }

    /// The live connection, if there is one.
    pub(crate) fn conn(&self) -> Option<Arc<Conn>> {
        self.shared.conn.read().clone()
    }

    /// Installs a new connection (after a redial), or none (while redialing),
    /// and wakes calls waiting for one.
    pub(crate) fn set_conn(&self, conn: Option<Arc<Conn>>) {
        if let Some(c) = &conn {
            *self.shared.addrs.lock() = (c.local.clone(), c.peer.clone());
        }
        *self.shared.conn.write() = conn;
        self.shared.conn_changed.notify_waiters();
    }

    /// The live connection, waiting up to `deadline` while the session
    /// redials. Fails with 102 once the session is closing or closed.
    async fn live_conn(&self, deadline: Instant, what: &str) -> Result<Arc<Conn>, Status> {
        // The common case, with no waiter registered: a live connection.
        if let Some(conn) = self.usable_conn()? {
            return Ok(conn);
        }
        loop {
            let changed = self.shared.conn_changed.notified();
            tokio::pin!(changed);
            // Registered before looking again, so a change in between is
            // not missed.
            changed.as_mut().enable();
            if let Some(conn) = self.usable_conn()? {
                return Ok(conn);
            }
            tokio::select! {
                _ = &mut changed => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(Status::deadline_exceeded(format!(
                        "{what}: the session had no usable connection before the deadline (it was redialing, or its connection hooks were still running)"
                    )));
                }
            }
        }
    }

    /// The connection calls may use now: `Some` when there is one whose
    /// connection hooks have passed (or, for the hooks themselves, one
    /// still running them), `None` while redialing or establishing, an
    /// error once closing or closed.
    fn usable_conn(&self) -> Result<Option<Arc<Conn>>, Status> {
        match self.shared.state.load(Ordering::Acquire) {
            ACTIVE | REDIALING => Ok(self.conn().filter(|c| {
                // A redialed connection is not used before its hooks pass
                // (an auth plugin's credential must go first).
                let ready =
                    c.early.established.is_cancelled() || IN_CONNECT_HOOK.try_with(|_| ()).is_ok();
                // A connection the peer is shutting down, when a redial will
                // follow: wait for the next one rather than fail.
                let leaving = c
                    .notice
                    .get()
                    .is_some_and(|n| n.code() == Code::CONNECTION_CLOSED)
                    && self.redials_after_shutdown();
                ready && !leaving
            })),
            _ => Err(self.closed_status()),
        }
    }

    fn redials_after_shutdown(&self) -> bool {
        let redial = &self.shared.ep.config.redial;
        self.is_dialed() && redial.enabled && redial.after_shutdown
    }

    /// Marks the session as redialing (its connection is gone) or active
    /// again; false if it is closing or closed.
    pub(crate) fn set_redialing(&self, redialing: bool) -> bool {
        let (from, to) = if redialing {
            (ACTIVE, REDIALING)
        } else {
            (REDIALING, ACTIVE)
        };
        let ok = self
            .shared
            .state
            .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        self.shared.conn_changed.notify_waiters();
        ok
    }

    /// The endpoint that owns the session.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::from_inner(self.shared.ep.clone())
    }

    /// Where the session is in its life.
    pub fn state(&self) -> SessionState {
        match self.shared.state.load(Ordering::Acquire) {
            ACTIVE => SessionState::Active,
            REDIALING => SessionState::Redialing,
            CLOSING => SessionState::Closing,
            _ => SessionState::Closed,
        }
    }

    /// Whether calls and pushes can start on the session now: it is
    /// active, and the peer has not said it is shutting down.
    pub fn is_healthy(&self) -> bool {
        self.state() == SessionState::Active
            && self.conn().is_some_and(|c| c.notice.get().is_none())
    }

    /// Completes when the peer has said its end of the current connection
    /// is shutting down (from then on, new calls and pushes fail at once
    /// with 102, while replies to running calls still arrive), or when the
    /// session has closed.
    pub fn going_away(&self) -> impl Future<Output = ()> + Send + 'static {
        let away = self.conn().map(|c| c.notice_signal.clone());
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

    /// Records the peer's notice about `conn`.
    pub(crate) fn peer_notice(&self, conn: &Conn, status: Status) {
        tracing::debug!(session = %self.id(), %status, "notice from the peer");
        let _ = conn.notice.set(status);
        conn.notice_signal.cancel();
    }

    /// Fails fast when the peer said this connection is going away.
    fn check_notice(conn: &Conn) -> Result<(), Status> {
        match conn.notice.get() {
            Some(status) => Err(status.clone()),
            None => Ok(()),
        }
    }

    /// Why the session closed, once it has.
    pub fn close_reason(&self) -> Option<Status> {
        self.shared.close_reason.get().cloned()
    }

    /// Completes when the session has closed (immediately if it has).
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        self.shared.closed.clone().cancelled_owned()
    }

    /// How many of this side's calls are waiting for a reply.
    pub fn pending_calls(&self) -> usize {
        self.shared.pending.len()
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
    /// there is none. Atomic, so hooks running at once on the reader and
    /// the writer agree on one value (a plugin's per-session table, say).
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
        let own = HANDLER_OF
            .try_with(|h| h.session == Arc::as_ptr(&self.shared) as usize)
            .unwrap_or(false);
        if !own {
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
    }

    /// Drops the current connection at once, as if it had broken, with
    /// `reason`: a dialed session then redials (see [`Redial`](crate::Redial)),
    /// while an accepted one closes with `reason`. For a peer that has
    /// stopped answering (the heartbeat plugin uses it). Pending calls fail
    /// with 102 carrying `reason`. Does nothing while no connection is up.
    pub fn disconnect(&self, reason: Status) {
        if let Some(conn) = self.conn() {
            let _ = conn.drop_reason.set(reason);
            conn.drop_requested.cancel();
        }
    }

    pub(crate) fn abort_status(&self) -> Status {
        self.shared
            .abort_reason
            .get()
            .cloned()
            .unwrap_or_else(|| Status::connection_closed("aborted"))
    }

    /// Calls `service_method` with `arg` and the default options, and decodes
    /// the reply as `R`.
    pub async fn call<A, R>(&self, service_method: &str, arg: &A) -> Result<R, Status>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.call_with(service_method, arg, CallOptions::default())
            .await
            .map(|reply| reply.value)
    }

    /// Calls `service_method` with `arg` and `opts`; the [`Reply`] carries the
    /// decoded value and the reply's meta.
    ///
    /// Errors: the peer's status; 408 when the deadline passes first; 102 when
    /// the session closes first; 104 when the call could not be written; 413
    /// when the message exceeds the frame limit; 400 when the argument cannot
    /// be encoded or the reply decoded. Dropping the returned future abandons
    /// the call and frees its entry.
    pub async fn call_with<A, R>(
        &self,
        service_method: &str,
        arg: &A,
        opts: CallOptions,
    ) -> Result<Reply<R>, Status>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let codec = opts.codec.unwrap_or(self.shared.ep.config.default_codec);
        let body = encode_arg(codec, arg, service_method)?;
        let mut header = Header::call(0, service_method);
        header.codec = codec;
        header.meta = opts.meta;
        let timeout = opts
            .timeout
            .unwrap_or(self.shared.ep.config.default_timeout);
        let reply = self
            .call_message(service_method, Message::new(header, body), timeout)
            .await?;
        let value = decode_body(reply.header.codec, &reply.body, service_method)?;
        self.plugins()
            .try_each(|p| p.after_read_reply_body(self, &reply.header))?;
        Ok(Reply {
            value,
            meta: reply.header.meta,
            codec: reply.header.codec,
        })
    }

    /// Calls `service_method` with a body that is already encoded, and
    /// returns the reply's body as it came, undecoded: the codec in `opts`
    /// (or the default) is only recorded in the call, and the reply says
    /// which codec its body is in. For pass-through, such as a proxy.
    ///
    /// Errors: as [`Session::call_with`]; the peer's status comes back with
    /// its code and message unchanged.
    pub async fn call_raw(
        &self,
        service_method: &str,
        body: Bytes,
        opts: CallOptions,
    ) -> Result<Reply<Bytes>, Status> {
        let config = &self.shared.ep.config;
        let mut header = Header::call(0, service_method);
        header.codec = opts.codec.unwrap_or(config.default_codec);
        header.meta = opts.meta;
        let timeout = opts.timeout.unwrap_or(config.default_timeout);
        let reply = self
            .call_message(service_method, Message::new(header, body), timeout)
            .await?;
        self.plugins()
            .try_each(|p| p.after_read_reply_body(self, &reply.header))?;
        Ok(Reply {
            value: reply.body,
            meta: reply.header.meta,
            codec: reply.header.codec,
        })
    }

    /// Sends `msg` (a call header and encoded body for `method`; its seq is
    /// assigned here) and waits up to `timeout` for a successful reply.
    pub(crate) async fn call_message(
        &self,
        method: &str,
        mut msg: Message,
        timeout: Duration,
    ) -> Result<Message, Status> {
        let deadline = deadline_after(timeout);
        let conn = self.live_conn(deadline, method).await?;
        Self::check_notice(&conn)?;
        msg.header.timeout = Some(timeout);
        let (tx, rx) = oneshot::channel();
        let seq = self.shared.pending.register(tx, deadline)?;
        msg.header.seq = seq;
        // Frees the entry however this future ends: error, deadline or drop.
        let mut entry = PendingEntry {
            session: self,
            seq,
            answered: false,
            method,
            // No clock reading when no plugin would see it.
            started: (!self.plugins().is_empty()).then(Instant::now),
            ended: false,
        };
        let result = async {
            self.plugins()
                .try_each(|p| p.before_write_call(self, &mut msg))?;
            check_sizes(&msg.header, &self.shared.ep.config)?;
            self.enqueue(&conn, Outbound::Msg(msg), deadline, method)
                .await?;
            let outcome = rx.await;
            // Whatever ended the wait already removed the entry.
            entry.answered = true;
            let reply = match outcome {
                Ok(Outcome::Reply(reply)) => reply,
                Ok(Outcome::Failed(status)) => return Err(status),
                Ok(Outcome::Expired) => {
                    return Err(Status::deadline_exceeded(format!(
                        "no reply to {method} within {timeout:?}"
                    )))
                }
                Err(_) => return Err(self.closed_status()),
            };
            if reply.header.status_code != Code::OK.0 {
                return Err(Status::new(
                    Code(reply.header.status_code),
                    reply.header.status_message.to_string(),
                ));
            }
            Ok(reply)
        }
        .await;
        let ok = Status::ok();
        entry.end(match &result {
            Ok(_) => &ok,
            Err(status) => status,
        });
        result
    }

    /// Pushes `arg` to the peer's handler for `service_method`, with the
    /// default options.
    pub async fn push<A: Serialize + ?Sized>(
        &self,
        service_method: &str,
        arg: &A,
    ) -> Result<(), Status> {
        self.push_with(service_method, arg, PushOptions::default())
            .await
    }

    /// Pushes `arg` with `opts`. Returns once the push is queued for writing:
    /// a push has no reply, so success means "handed to the connection".
    ///
    /// Errors: 102 when the session is closed, 408 when the write queue stays
    /// full past the timeout, 413 when the body exceeds the frame limit, 400
    /// when `arg` cannot be encoded, or a plugin's status.
    pub async fn push_with<A: Serialize + ?Sized>(
        &self,
        service_method: &str,
        arg: &A,
        opts: PushOptions,
    ) -> Result<(), Status> {
        let codec = opts.codec.unwrap_or(self.shared.ep.config.default_codec);
        let body = encode_arg(codec, arg, service_method)?;
        self.push_raw(service_method, body, opts.codec(codec)).await
    }

    /// Pushes a body that is already encoded, as it is: the codec in `opts`
    /// (or the default) is only recorded in the message, for the receiver
    /// to decode with. For pass-through, such as a proxy.
    ///
    /// Errors: as [`Session::push_with`].
    pub async fn push_raw(
        &self,
        service_method: &str,
        body: Bytes,
        opts: PushOptions,
    ) -> Result<(), Status> {
        let config = &self.shared.ep.config;
        let codec = opts.codec.unwrap_or(config.default_codec);
        if body.len() >= config.max_frame_len {
            return Err(Status::message_too_large(format!(
                "push body of {} bytes exceeds the frame limit of {} bytes",
                body.len(),
                config.max_frame_len
            )));
        }
        let deadline = deadline_after(opts.timeout.unwrap_or(config.default_timeout));
        let conn = self.live_conn(deadline, service_method).await?;
        Self::check_notice(&conn)?;
        let mut header = Header::push(service_method);
        header.codec = codec;
        header.meta = opts.meta;
        let mut msg = Message::new(header, body);
        self.plugins()
            .try_each(|p| p.before_write_push(self, &mut msg))?;
        check_sizes(&msg.header, config)?;
        self.enqueue(&conn, Outbound::Msg(msg), deadline, service_method)
            .await
    }

    /// Queues a reply (an encoded body or a status) without waiting: when
    /// the write queue is full, a tracked task waits for room instead, so the
    /// reader never blocks on a slow writer.
    pub(crate) fn queue_reply(
        &self,
        conn: &Arc<Conn>,
        seq: u32,
        call_codec: CodecId,
        reply_codec: CodecId,
        meta: Meta,
        out: Result<Bytes, Status>,
    ) {
        let mut msg = match out {
            Ok(body) => {
                let mut h = Header::reply(seq);
                h.codec = reply_codec;
                h.meta = meta;
                Message::new(h, body)
            }
            Err(status) => error_reply(seq, call_codec, &status),
        };
        if let Err(status) = self
            .plugins()
            .try_each(|p| p.before_write_reply(self, &mut msg))
        {
            msg = error_reply(seq, call_codec, &status);
        }
        match conn.outbox.try_send(Outbound::Msg(msg)) {
            Ok(()) => {}
            Err(SendError::Full(out)) => {
                let (s, c) = (self.clone(), conn.clone());
                self.spawn_handler(conn, None, async move {
                    if c.outbox.send(out).await.is_err() {
                        tracing::debug!(session = %s.id(), seq, "reply not sent: the session closed");
                    }
                });
            }
            Err(SendError::Closed) => {
                tracing::debug!(session = %self.id(), seq, "reply not sent: the session closed");
            }
        }
    }

    /// Runs `fut` on its own task as part of this session's handlers:
    /// tracked so a graceful close waits for it, and cancelled when the
    /// session aborts its handlers.
    pub(crate) fn spawn_handler(
        &self,
        conn: &Conn,
        handled: Option<Handled>,
        fut: impl Future<Output = ()> + Send + 'static,
    ) {
        let abort = conn.abort_handlers.clone();
        let me = Handling {
            session: Arc::as_ptr(&self.shared) as usize,
            incoming: handled,
        };
        let task = conn.handlers.track_future(HANDLER_OF.scope(me, async move {
            tokio::select! {
                biased;
                _ = abort.cancelled() => {}
                _ = fut => {}
            }
        }));
        tokio::spawn(task);
    }

    pub(crate) fn plugins(&self) -> &Plugins {
        &self.shared.ep.plugins
    }

    /// Waits, up to `deadline`, for room in the write queue.
    async fn enqueue(
        &self,
        conn: &Conn,
        out: Outbound,
        deadline: Instant,
        what: &str,
    ) -> Result<(), Status> {
        // The queue almost always has room; only a full one needs a timer.
        let out = match conn.outbox.try_send(out) {
            Ok(()) => return Ok(()),
            Err(SendError::Closed) => return Err(self.closed_status()),
            Err(SendError::Full(out)) => out,
        };
        match timeout_at(deadline, conn.outbox.send(out)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(self.closed_status()),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "{what}: deadline passed while waiting for room in the write queue"
            ))),
        }
    }

    /// Ends the waiting call `seq` with `status`, if it is still waiting.
    pub(crate) fn fail_call(&self, seq: u32, status: Status) {
        self.shared.pending.fail(seq, status);
    }

    pub(crate) fn closed_status(&self) -> Status {
        self.shared
            .pending
            .closed_status()
            .unwrap_or_else(|| Status::connection_closed("session closed"))
    }

    /// Starts closing: no new calls or pushes start, and every waiting call
    /// fails with 102 (carrying `reason`).
    pub(crate) fn begin_close(&self, reason: &Status) {
        let _ = self
            .shared
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                matches!(s, ACTIVE | REDIALING).then_some(CLOSING)
            });
        self.shared.conn_changed.notify_waiters();
        let status = match reason.code() {
            Code::CONNECTION_CLOSED => Status::connection_closed(reason.message().to_string()),
            _ => Status::connection_closed(format!("session closed: {reason}")),
        };
        self.shared.pending.close(status);
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

    pub(crate) fn mark_closed(&self, reason: Status) {
        let _ = self.shared.close_reason.set(reason);
        self.shared.state.store(CLOSED, Ordering::Release);
    }
}

/// Now plus `timeout`, capped a year ahead so an effectively unlimited
/// timeout (`Duration::MAX`) cannot overflow the clock.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    Instant::now() + timeout.min(MAX_DEADLINE_AHEAD)
}

/// The furthest ahead any deadline is set.
pub(crate) const MAX_DEADLINE_AHEAD: Duration = Duration::from_secs(365 * 24 * 3600);

fn encode_arg<A: Serialize + ?Sized>(codec: CodecId, arg: &A, what: &str) -> Result<Bytes, Status> {
    codec.encode(arg).map(Bytes::from).map_err(|e| {
        Status::bad_message(format!(
            "cannot encode the argument of {what} as {codec}: {e}"
        ))
        .with_cause(e)
    })
}

/// The longest status message put on the wire; longer ones are cut at a
/// character boundary so a verbose error never makes a reply unencodable.
const MAX_STATUS_MESSAGE: usize = 4096;

pub(crate) fn error_reply(seq: u32, codec: CodecId, status: &Status) -> Message {
    let mut h = Header::reply(seq);
    h.codec = codec;
    h.status_code = if status.code() == Code::OK {
        Code::UNKNOWN.0
    } else {
        status.code().0
    };
    let mut text = status.message();
    if text.len() > MAX_STATUS_MESSAGE {
        let mut cut = MAX_STATUS_MESSAGE;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text = &text[..cut];
    }
    h.status_message = text.into();
    Message::new(h, Bytes::new())
}

/// Removes a call's entry from the pending table when the call ends
/// without a reply (error, deadline or drop).
struct PendingEntry<'a> {
    session: &'a Session,
    seq: u32,
    answered: bool,
    method: &'a str,
    started: Option<Instant>,
    /// Whether the call-end hooks ran.
    ended: bool,
}

impl PendingEntry<'_> {
    /// Runs the call-end hooks, once.
    fn end(&mut self, status: &Status) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let Some(started) = self.started else {
            return;
        };
        let end = CallEnd {
            seq: self.seq,
            service_method: self.method,
            status,
            elapsed: started.elapsed(),
        };
        self.session
            .plugins()
            .each(|p| p.after_call_end(self.session, &end));
    }
}

impl Drop for PendingEntry<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.session.shared.pending.remove(self.seq);
        }
        if !self.ended {
            self.end(&Status::canceled("the caller stopped waiting for the call"));
        }
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
