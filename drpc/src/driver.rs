//! The tasks behind a session: one reader, one writer, and a driver that
//! owns the session's life and runs its close sequence in one place.

use crate::conn::Conn;
use crate::context::{CallCtx, PushCtx};
use crate::early::Offer;
use crate::endpoint::EndpointInner;
use crate::outbox::Outbox;
use crate::pending::Outcome;
use crate::plugin::BoxFuture;
use crate::redial::Backoff;
use crate::router::CallOutput;
use crate::session::{
    error_reply, Handled, Handling, Outbound, HANDLER_OF, IN_CONNECT_HOOK, MAX_DEADLINE_AHEAD,
};
use crate::{Code, Config, Session, Status};
use bytes::BytesMut;
use drpc_proto::{Framer, Header, Kind, Message, ProtoError};
use drpc_socket::Addr;
use drpc_socket::{ReadHalf, Socket, WriteHalf};
use futures_util::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, timeout_at, Instant};
use tokio_util::sync::CancellationToken;

/// Which side opened the connection.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Accepted,
    Dialed,
}

/// Turns a connected socket into a live session: registers it, runs the
/// accept or dial hooks, then starts reading. On a hook's refusal the session
/// is closed with that status and the status is returned. `dial_target` is
/// the address a dialed session redials.
pub(crate) async fn establish(
    ep: &Arc<EndpointInner>,
    socket: Socket,
    origin: Origin,
    dial_target: Option<Addr>,
) -> Result<Session, Status> {
    let (link, wr) = Link::new(ep, socket);
    let session = Session::new(ep.clone(), link.conn.clone(), dial_target);
    if let Err(status) = ep.add_session(&session) {
        if origin == Origin::Accepted {
            refuse(ep, wr, &status).await;
        }
        return Err(status);
    }

    let link_conn = link.conn.clone();
    let (ready_tx, ready_rx) = oneshot::channel();
    ep.tasks
        .spawn(drive(session.clone(), link, wr, Hooks::Establish(ready_rx)));

    let hooks = run_connect_hooks(&session, origin).await;
    let refused = hooks.as_ref().err().cloned();
    if refused.is_none() {
        // Before the session is handed out, so `take_handshake` on it
        // fails at once (the driver learns of the verdict through
        // `ready_tx`, and marks it too).
        mark_established(&session, &link_conn);
    }
    let _ = ready_tx.send(hooks);
    match refused {
        None if session.is_healthy() => Ok(session),
        // Closed while the hooks ran: the session is not usable.
        None => {
            session.closed().await;
            Err(session
                .close_reason()
                .unwrap_or_else(|| session.closed_status()))
        }
        Some(status) => {
            session.closed().await;
            Err(status)
        }
    }
}

/// One connection's halves and state, before its tasks start.
struct Link {
    conn: Arc<Conn>,
    rd: ReadHalf,
    rx: mpsc::UnboundedReceiver<Outbound>,
}

impl Link {
    fn new(ep: &EndpointInner, socket: Socket) -> (Self, WriteHalf) {
        let (rd, wr, local, peer) = socket.into_parts();
        let (outbox, rx) = Outbox::new(ep.config.write_queue);
        let conn = Arc::new(Conn::new(local, peer, outbox));
        (Self { conn, rd, rx }, wr)
    }
}

/// The connection hooks of a connection: run by `establish` for the first
/// one (the driver waits for their verdict), by the driver itself after a
/// redial.
enum Hooks {
    Establish(oneshot::Receiver<Result<(), Status>>),
    Redial,
}

async fn run_connect_hooks(session: &Session, origin: Origin) -> Result<(), Status> {
    for p in session.plugins().iter() {
        // Counted before the hook runs, so a plugin that refuses still gets
        // its close hook and its counts pair up; once the session has closed
        // (the count is sealed), no further accept hook may start.
        if !session.count_connect_hook() {
            return Err(session.closed_status());
        }
        let verdict = match origin {
            Origin::Accepted => IN_CONNECT_HOOK.scope((), p.after_accept(session)).await,
            Origin::Dialed => {
                IN_CONNECT_HOOK
                    .scope((), p.after_dial(session, false))
                    .await
            }
        };
        if let Err(status) = verdict {
            tracing::debug!(session = %session.id(), plugin = p.name(), %status, "connection refused by a plugin");
            return Err(status);
        }
    }
    Ok(())
}

/// The dial hooks of a redialed connection. They are not counted: the
/// first connection's already were, and the close hooks pair with those.
async fn run_redial_hooks(session: &Session) -> Result<(), Status> {
    for p in session.plugins().iter() {
        if let Err(status) = IN_CONNECT_HOOK.scope((), p.after_dial(session, true)).await {
            tracing::debug!(session = %session.id(), plugin = p.name(), %status, "redialed connection refused by a plugin");
            return Err(status);
        }
    }
    Ok(())
}

/// Every connection hook passed: the reader runs what it held, and calls
/// made meanwhile by others than the hooks may go now.
fn mark_established(session: &Session, conn: &Conn) {
    conn.early.established.cancel();
    session.shared.conn_changed.notify_waiters();
}

/// Why a connection is ending, and how.
enum Ending {
    /// A graceful close: let handlers finish and flush their replies.
    Graceful(Status),
    /// The connection is unusable (or the reader stopped on bad input):
    /// cancel handlers, but still flush what is queued if the writer lives.
    /// A dialed session redials after this one.
    Abrupt(Status),
    /// [`Session::abort`]: cancel handlers and stop writing at once.
    Abort(Status),
    /// [`Session::disconnect`]: like `Abrupt`, but without waiting to
    /// write to a peer that may not be reading.
    Dropped(Status),
}

/// A connection's running tasks, for winding it down.
struct Running {
    conn: Arc<Conn>,
    writer: tokio::task::JoinHandle<Option<Status>>,
    writer_done: bool,
    stop_write: CancellationToken,
    reaper: tokio::task::JoinHandle<()>,
    stop_reaper: CancellationToken,
}

/// Owns the session's life: runs its connection, redials a dialed session
/// that lost one, and runs the close sequence once, in one place.
async fn drive(session: Session, mut link: Link, mut wr: WriteHalf, mut hooks: Hooks) {
    let ep = session.shared.ep.clone();
    let mut backoff = Backoff::new(ep.config.redial);
    // Only a session that was ever established redials: one whose first
    // connection failed its hooks was never handed to anyone.
    let mut ever_established = false;
    let reason = loop {
        let (ending, established, running) = run(&session, link, wr, hooks).await;
        if established {
            // A connection that got through its hooks resets the count.
            backoff = Backoff::new(ep.config.redial);
            ever_established = true;
        }
        let lost = match ending {
            Ending::Abrupt(status) | Ending::Dropped(status)
                if ever_established && may_redial(&session, &running.conn) =>
            {
                status
            }
            ending => {
                let (reason, graceful, flush) = match ending {
                    Ending::Graceful(s) => (s, true, true),
                    Ending::Abrupt(s) => (s, false, true),
                    Ending::Abort(s) | Ending::Dropped(s) => (s, false, false),
                };
                session.begin_close(&reason);
                wind_down(&session, running, graceful, flush).await;
                break reason;
            }
        };
        // The connection is gone, not the session: fail what was in flight
        // on it (it may have run, so it is never re-sent), and dial again.
        tracing::info!(session = %session.id(), reason = %lost, "connection lost; redialing");
        session.set_redialing(true);
        session.set_conn(None);
        session
            .shared
            .pending
            .fail_all(Status::connection_closed(format!(
                "the connection was lost ({lost}); the session is redialing"
            )));
        wind_down(&session, running, false, false).await;
        match redial(&session, &mut backoff, &lost).await {
            Ok((next, next_wr)) => {
                session.set_conn(Some(next.conn.clone()));
                link = next;
                wr = next_wr;
                hooks = Hooks::Redial;
            }
            Err(reason) => {
                session.begin_close(&reason);
                break reason;
            }
        }
    };

    match reason.code() {
        Code::CONNECTION_CLOSED => {
            tracing::debug!(session = %session.id(), %reason, "session closed")
        }
        _ => tracing::warn!(session = %session.id(), %reason, "session closed"),
    }
    session.mark_closed(reason);
    ep.remove_session(&session);
    let hooked = session.seal_connect_hooks();
    for p in session.plugins().iter().take(hooked) {
        p.after_session_close(&session);
    }
    session.shared.closed.cancel();
}

/// Whether a lost connection is redialed: a dialed session, with redial on,
/// on an endpoint still open, whose peer neither refused the connection nor
/// said it was shutting down (unless `Redial::after_shutdown`).
fn may_redial(session: &Session, lost: &Conn) -> bool {
    let ep = &session.shared.ep;
    let redial = &ep.config.redial;
    let notice_allows = match lost.notice.get() {
        None => true,
        Some(n) => n.code() == Code::CONNECTION_CLOSED && redial.after_shutdown,
    };
    session.is_dialed()
        && redial.enabled
        && notice_allows
        && !ep.shutdown.is_cancelled()
        && !session.shared.close_requested.is_cancelled()
        && !session.shared.abort_requested.is_cancelled()
}

/// Dials the session's address again, with backoff, until it connects or
/// the attempts run out (or the session or endpoint is closed meanwhile).
async fn redial(
    session: &Session,
    backoff: &mut Backoff,
    lost: &Status,
) -> Result<(Link, WriteHalf), Status> {
    let ep = session.shared.ep.clone();
    let addr = session
        .dial_target()
        .cloned()
        .expect("only dialed sessions redial");
    let mut last = lost.clone();
    loop {
        let Some(delay) = backoff.next_delay() else {
            return Err(Status::connection_closed(format!(
                "redial gave up after {} attempts; last: {last}",
                backoff.attempts()
            )));
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = session.shared.close_requested.cancelled() => {
                return Err(Status::connection_closed("closed by the local endpoint while redialing"));
            }
            _ = session.shared.abort_requested.cancelled() => return Err(session.abort_status()),
            _ = ep.shutdown.cancelled() => {
                return Err(Status::connection_closed("the endpoint closed while redialing"));
            }
        }
        let attempt = async {
            ep.plugins.try_each(|p| p.before_dial(&addr, true))?;
            match timeout(
                ep.config.dial_timeout,
                drpc_socket::dial(&addr, &ep.config.transport),
            )
            .await
            {
                Ok(Ok(socket)) => Ok(socket),
                Ok(Err(e)) => Err(Status::dial_failed(e.to_string()).with_cause(e)),
                Err(_) => Err(Status::dial_failed(format!(
                    "dial {addr}: no connection within {:?}",
                    ep.config.dial_timeout
                ))),
            }
        };
        match attempt.await {
            Ok(socket) => return Ok(Link::new(&ep, socket)),
            Err(status) => {
                tracing::debug!(session = %session.id(), attempt = backoff.attempts(), %status, "redial failed");
                ep.plugins.each(|p| p.after_dial_fail(&addr, &status, true));
                last = status;
            }
        }
    }
}

/// Runs one connection until it ends: starts its writer and deadline reaper,
/// waits for its connection hooks, then reads. Returns how it ended, whether
/// its hooks passed, and its tasks for winding it down.
async fn run(
    session: &Session,
    link: Link,
    wr: WriteHalf,
    hooks: Hooks,
) -> (Ending, bool, Running) {
    let ep = session.shared.ep.clone();
    let Link { conn, rd, rx } = link;
    let stop_read = CancellationToken::new();
    let stop_write = CancellationToken::new();
    let framer_w = ep.proto.framer(&ep.frame_limits());
    let writer = ep.tasks.spawn(write_loop(
        session.clone(),
        conn.clone(),
        wr,
        framer_w,
        rx,
        stop_write.clone(),
    ));
    let stop_reaper = CancellationToken::new();
    let reaper = {
        let (session, stop) = (session.clone(), stop_reaper.clone());
        ep.tasks.spawn(async move {
            tokio::select! {
                _ = session.shared.pending.reap() => {}
                _ = stop.cancelled() => {}
            }
        })
    };
    let mut running = Running {
        conn: conn.clone(),
        writer,
        writer_done: false,
        stop_write,
        reaper,
        stop_reaper,
    };

    // The reader starts before the hooks run, so they can hear the peer
    // (a reply to a hook's call, say); incoming calls and pushes wait in
    // `conn.early` until the hooks pass.
    let framer_r = ep.proto.framer(&ep.frame_limits());
    let mut reader = ep.tasks.spawn(read_loop(
        session.clone(),
        conn.clone(),
        rd,
        framer_r,
        stop_read.clone(),
    ));
    let verdict = async {
        match hooks {
            Hooks::Establish(ready) => ready
                .await
                .unwrap_or_else(|_| Err(Status::internal("session setup was abandoned"))),
            Hooks::Redial => {
                let verdict = run_redial_hooks(session).await;
                if verdict.is_ok() {
                    session.set_redialing(false);
                }
                verdict
            }
        }
    };
    // A close asked for while the connection hooks still run (by a hook
    // itself, or by the endpoint closing) must not wait for them to finish.
    let refused = tokio::select! {
        v = verdict => v.err().map(|status| (Ending::Abrupt(status.clone()), status)),
        r = &mut reader => {
            let status = joined(r);
            crate::early::refuse_held(session, &conn, &status);
            return (Ending::Abrupt(status), false, running);
        }
        _ = session.shared.close_requested.cancelled() => {
            let status = Status::connection_closed("closed before the session was established");
            let _ = conn.outbox.force_send(Outbound::Msg(going_away_notice()));
            Some((Ending::Graceful(status.clone()), status))
        }
        _ = session.shared.abort_requested.cancelled() => {
            Some((Ending::Abort(session.abort_status()), session.abort_status()))
        }
    };
    if let Some((ending, status)) = refused {
        // Nothing more is taken in; what the peer sent meanwhile is
        // answered with the refusal, and no handler of it runs.
        stop_read.cancel();
        let _ = reader.await;
        crate::early::refuse_held(session, &conn, &status);
        return (ending, false, running);
    }
    mark_established(session, &conn);

    let mut reader_done = false;
    let ending = tokio::select! {
        r = &mut reader => {
            reader_done = true;
            Ending::Abrupt(joined(r))
        }
        w = &mut running.writer => {
            running.writer_done = true;
            Ending::Abrupt(joined(w))
        }
        _ = session.shared.close_requested.cancelled() => {
            Ending::Graceful(Status::connection_closed("closed by the local endpoint"))
        }
        _ = session.shared.abort_requested.cancelled() => {
            Ending::Abort(session.abort_status())
        }
        _ = conn.drop_requested.cancelled() => {
            Ending::Dropped(conn.drop_reason.get().cloned().unwrap_or_else(|| {
                Status::connection_closed("the connection was dropped")
            }))
        }
    };
    if matches!(ending, Ending::Graceful(_)) {
        // Tell the peer first, so it stops starting calls here while the
        // running ones finish (docs/PROTOCOL.md section 3.1).
        let _ = conn.outbox.force_send(Outbound::Msg(going_away_notice()));
    }
    if !reader_done {
        // Stop taking new messages before anything else winds down.
        stop_read.cancel();
        let _ = reader.await;
    }
    (ending, true, running)
}

/// Ends a connection's tasks: its handlers (waited for within the grace
/// period when `graceful`, else cancelled), then its writer (which writes
/// what is queued and shuts the connection down when `flush`).
async fn wind_down(session: &Session, mut running: Running, graceful: bool, flush: bool) {
    let ep = &session.shared.ep;
    running.stop_reaper.cancel();
    let _ = (&mut running.reaper).await;

    let grace = ep.grace();
    let handlers = &running.conn.handlers;
    handlers.close();
    if !graceful || !within_grace(ep, grace, handlers.wait()).await {
        running.conn.abort_handlers.cancel();
        handlers.wait().await;
    }

    if !flush && !running.writer_done {
        // An abort, or a connection already lost, does not wait on a peer
        // that may have stopped reading.
        running.stop_write.cancel();
        let _ = (&mut running.writer).await;
        running.writer_done = true;
    }
    if !running.writer_done {
        // Everything queued before the marker is written, then the write
        // half is shut down so the peer sees a clean end of stream.
        let writer = &mut running.writer;
        let conn = &running.conn;
        let flushed = within_grace(ep, grace, async {
            let _ = conn.outbox.force_send(Outbound::Shutdown);
            let _ = writer.await;
        })
        .await;
        if !flushed {
            running.stop_write.cancel();
            let _ = (&mut running.writer).await;
        }
    }
}

/// Waits for `work` up to `grace`, or until the endpoint is told to close
/// at once; true when `work` finished.
async fn within_grace(ep: &EndpointInner, grace: Duration, work: impl Future<Output = ()>) -> bool {
    tokio::select! {
        _ = work => true,
        _ = tokio::time::sleep(grace) => false,
        _ = ep.hurry.cancelled() => false,
    }
}

/// The notice that tells the peer this side is shutting down: it takes no
/// new calls, answers the running ones, then closes.
fn going_away_notice() -> Message {
    let mut header = Header::reply(0);
    header.status_code = Code::CONNECTION_CLOSED.0;
    header.status_message = "shutting down: no new calls; running calls are still answered".into();
    Message::new(header, bytes::Bytes::new())
}

fn joined(r: Result<Option<Status>, tokio::task::JoinError>) -> Status {
    match r {
        Ok(Some(status)) => status,
        Ok(None) => Status::connection_closed("session stopped"),
        Err(e) => Status::internal("a session task failed").with_cause(e),
    }
}

/// Reads messages and dispatches them until the connection ends (returning
/// why) or `stop` is cancelled (returning `None`).
async fn read_loop(
    session: Session,
    conn: Arc<Conn>,
    mut rd: ReadHalf,
    mut framer: Box<dyn Framer>,
    stop: CancellationToken,
) -> Option<Status> {
    let mut sizer = ReadSizer::new(session.shared.ep.config.read_chunk);
    let mut buf = BytesMut::with_capacity(sizer.next);
    // When the bytes in `buf` arrived; incoming deadlines count from here.
    // One clock reading per read instead of one per message.
    let mut arrived = Instant::now();
    let frame_timeout = session.shared.ep.config.frame_timeout;
    let hold_limit = session.shared.ep.config.max_frame_len;
    // Whether the connection's hooks have passed and what they held back
    // has been dispatched; from then on messages go straight to handlers.
    let mut drained = false;
    loop {
        let mut announced = false;
        // When the first bytes of the frame being read arrived.
        let mut started = arrived;
        let msg = loop {
            if !announced && !buf.is_empty() {
                announced = true;
                started = arrived;
                session.plugins().each(|p| p.before_read_header(&session));
            }
            match framer.decode(&mut buf) {
                Ok(Some(msg)) => break msg,
                Ok(None) => {}
                Err(e) if !e.is_fatal() => {
                    header_too_large(&session, &conn, e);
                    announced = false;
                    continue;
                }
                Err(e) => return Some(protocol_error(&session, &conn, e)),
            }
            let offered = sizer.prepare(&mut buf);
            // Between frames a peer may be silent as long as it likes (that
            // is the heartbeat's business); within one, it has
            // `frame_timeout` to finish, so half a frame and then silence
            // (slowloris) cannot hold the session open.
            let mid_frame = announced;
            let read = tokio::select! {
                biased;
                _ = stop.cancelled() => return None,
                _ = conn.early.established.cancelled(), if !drained => {
                    drained = true;
                    dispatch_held(&session, &conn);
                    continue;
                }
                r = rd.read_buf(&mut buf) => r,
                _ = tokio::time::sleep_until(started + frame_timeout), if mid_frame => {
                    return Some(Status::deadline_exceeded(format!(
                        "the peer sent {} bytes of a frame and not the rest within {frame_timeout:?}",
                        buf.len()
                    )));
                }
            };
            if let Ok(n) = read {
                sizer.record(offered, n);
                arrived = Instant::now();
            }
            match read {
                Ok(0) if buf.is_empty() => {
                    return Some(conn.notice.get().cloned().unwrap_or_else(|| {
                        Status::connection_closed("the peer closed the connection")
                    }))
                }
                Ok(0) => {
                    return Some(Status::bad_message(format!(
                        "the peer closed the connection in the middle of a frame ({} bytes unread)",
                        buf.len()
                    )))
                }
                Ok(_) => {}
                Err(e) => {
                    return Some(
                        Status::connection_closed(format!("reading from the peer failed: {e}"))
                            .with_cause(e),
                    )
                }
            }
        };
        let msg = match msg.header.kind {
            Kind::Call | Kind::Push if !drained => {
                match conn.early.offer(msg, arrived, hold_limit, &stop).await {
                    Offer::Held => continue,
                    Offer::Stopped => return None,
                    Offer::Established(msg) => {
                        drained = true;
                        dispatch_held(&session, &conn);
                        msg
                    }
                }
            }
            _ => msg,
        };
        match msg.header.kind {
            Kind::Call => on_call(&session, &conn, msg, arrived),
            // Seq 0 is never a call's, so a reply with it is a notice about
            // the connection itself: the peer refused it, say.
            Kind::Reply if msg.header.seq == 0 => match notice(&msg.header) {
                // Going away: replies to running calls may still come, so
                // keep reading; new calls fail at once.
                Some(status) if status.code() == Code::CONNECTION_CLOSED => {
                    session.peer_notice(&conn, status)
                }
                // The peer said why it ends the connection (it refused it):
                // final, so a dialed session does not redial into it.
                Some(status) => {
                    session.peer_notice(&conn, status.clone());
                    return Some(status);
                }
                None => {}
            },
            Kind::Reply => on_reply(&session, msg),
            Kind::Push => on_push(&session, &conn, msg),
        }
    }
}

/// Runs the calls and pushes held while the connection was being
/// established, in the order they arrived.
fn dispatch_held(session: &Session, conn: &Arc<Conn>) {
    for (msg, arrived) in conn.early.take_all() {
        match msg.header.kind {
            Kind::Call => on_call(session, conn, msg, arrived),
            _ => on_push(session, conn, msg),
        }
    }
}

/// The status a connection notice (a reply with seq 0) ends the session
/// with; `None` for one that asks nothing (status 0).
fn notice(header: &Header) -> Option<Status> {
    (header.status_code != Code::OK.0).then(|| {
        Status::new(
            Code(header.status_code),
            format!("notice from the peer: {}", header.status_message),
        )
    })
}

/// Tells a peer why its connection is refused (a reply with seq 0, see
/// docs/PROTOCOL.md section 3.1), then closes it. Bounded in time: a peer
/// that does not read is simply dropped.
async fn refuse(ep: &EndpointInner, mut wr: WriteHalf, status: &Status) {
    let mut header = Header::reply(0);
    header.status_code = status.code().0;
    header.status_message = status.message().into();
    let mut buf = BytesMut::new();
    if ep
        .proto
        .framer(&ep.frame_limits())
        .encode(&Message::new(header, bytes::Bytes::new()), &mut buf)
        .is_err()
    {
        return;
    }
    let _ = timeout(REFUSE_WITHIN, async {
        wr.write_all(&buf).await?;
        wr.shutdown().await
    })
    .await;
}

/// How long a refused peer gets to take its notice.
const REFUSE_WITHIN: std::time::Duration = std::time::Duration::from_secs(1);

/// How much room the reader offers the socket: it doubles while reads fill
/// the room (a busy session then needs fewer system calls) and halves when
/// they use little of it (an idle session does not keep a large buffer).
struct ReadSizer {
    min: usize,
    next: usize,
}

impl ReadSizer {
    const MAX: usize = 256 * 1024;

    fn new(min: usize) -> Self {
        let min = min.clamp(64, Self::MAX);
        Self { min, next: min }
    }

    /// Makes room in `buf` for the next read; returns the room offered.
    fn prepare(&self, buf: &mut BytesMut) -> usize {
        if buf.capacity() - buf.len() < self.next / 2 {
            buf.reserve(self.next);
        }
        buf.capacity() - buf.len()
    }

    fn record(&mut self, offered: usize, read: usize) {
        if read >= offered {
            self.next = (self.next * 2).min(Self::MAX);
        } else if read < self.next / 4 {
            self.next = (self.next / 2).max(self.min);
        }
    }
}

/// Maps bad input to the session's close reason; an oversize call whose
/// header could be read is still answered with 413.
fn protocol_error(session: &Session, conn: &Conn, err: ProtoError) -> Status {
    let status = match &err {
        ProtoError::FrameTooLarge { .. } => Status::message_too_large(err.to_string()),
        _ => Status::bad_message(format!("bad input from the peer: {err}")),
    };
    if let ProtoError::FrameTooLarge {
        kind: Some(Kind::Call),
        seq: Some(seq),
        ..
    } = err
    {
        let reply = error_reply(seq, session.shared.ep.config.default_codec, &status);
        let _ = conn.outbox.force_send(Outbound::Msg(reply));
    }
    status.with_cause(err)
}

/// A call whose method or meta is over its limit is answered with 413; any
/// other message is dropped. The frame was consumed, so reading goes on.
fn header_too_large(session: &Session, conn: &Arc<Conn>, err: ProtoError) {
    if let ProtoError::HeaderTooLarge {
        kind: Kind::Call,
        seq,
        ..
    } = err
    {
        let status = Status::message_too_large(err.to_string());
        session.queue_reply(
            conn,
            seq,
            session.shared.ep.config.default_codec,
            session.shared.ep.config.default_codec,
            Default::default(),
            Err(status),
        );
    } else {
        tracing::debug!(session = %session.id(), error = %err, "message dropped");
    }
}

/// Polls a handler once, right here on the reader. Most handlers that do no
/// I/O finish on their first poll, and answering them here saves a task
/// spawn per message, the largest cost on the hot path. `None` means the
/// handler is waiting and must continue on its own task; polling it again
/// there (with that task's waker) is what futures are built for.
fn poll_inline<T>(
    session: &Session,
    handled: &Handled,
    fut: &mut BoxFuture<'static, T>,
) -> Option<std::thread::Result<T>> {
    let me = Handling {
        session: Arc::as_ptr(&session.shared) as usize,
        incoming: Some(handled.clone()),
    };
    let mut cx = Context::from_waker(Waker::noop());
    HANDLER_OF.sync_scope(me, || {
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx))) {
            Ok(Poll::Ready(v)) => Some(Ok(v)),
            Ok(Poll::Pending) => None,
            Err(panic) => Some(Err(panic)),
        }
    })
}

/// A handler's result, with a panic turned into 500.
fn call_outcome(
    session: &Session,
    ctx: &CallCtx,
    result: std::thread::Result<CallOutput>,
) -> CallOutput {
    result.unwrap_or_else(|panic| {
        tracing::error!(
            session = %session.id(),
            method = ctx.service_method(),
            panic = panic_message(&panic),
            "call handler panicked"
        );
        Err(Status::internal(format!(
            "the handler of {} panicked",
            ctx.service_method()
        )))
    })
}

fn on_call(session: &Session, conn: &Arc<Conn>, mut msg: Message, arrived: Instant) {
    let ep = &session.shared.ep;
    let seq = msg.header.seq;
    let codec = msg.header.codec;
    let checked = check_sizes(&msg.header, &ep.config)
        .and_then(|()| {
            session
                .plugins()
                .try_each(|p| p.after_read_call_header(session, &mut msg))
        })
        .and_then(|()| check_filters(&msg.header));
    let Message { header, body } = msg;
    let early = checked.and_then(|()| {
        ep.router
            .find_call(&header.service_method)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no handler for {}", header.service_method)))
    });
    let admitted = early.and_then(|route| Ok((route, ep.limiter.admit(session)?)));
    let (route, permit) = match admitted {
        Ok(admitted) => admitted,
        Err(status) => {
            session.queue_reply(conn, seq, codec, codec, Default::default(), Err(status));
            return;
        }
    };
    let timeout = header.timeout.unwrap_or(ep.config.default_timeout);
    // At most u32::MAX ms (about 49 days) from the wire, so this cannot
    // overflow; a local default is capped like a caller's.
    let deadline = arrived + timeout.min(MAX_DEADLINE_AHEAD);
    let ctx = CallCtx::new(session.clone(), header, body, deadline);
    let mut fut = route(ctx.clone());
    let handled = Handled::Call(ctx.clone());
    if let Some(result) = poll_inline(session, &handled, &mut fut) {
        drop(permit);
        let out = call_outcome(session, &ctx, result);
        session.queue_reply(
            conn,
            seq,
            codec,
            ctx.reply_codec(),
            ctx.take_reply_meta(),
            out,
        );
        return;
    }
    let (s, c) = (session.clone(), conn.clone());
    session.spawn_handler(conn, Some(handled), async move {
        let _permit = permit;
        let out = match timeout_at(deadline, AssertUnwindSafe(fut).catch_unwind()).await {
            Ok(result) => call_outcome(&s, &ctx, result),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "the handler of {} did not finish within the call's deadline of {timeout:?}",
                ctx.service_method()
            ))),
        };
        s.queue_reply(
            &c,
            seq,
            codec,
            ctx.reply_codec(),
            ctx.take_reply_meta(),
            out,
        );
    });
}

/// The core reverses no transfer filters itself (plugins do, such as
/// drpc-plugins' `Compression`): a filter still recorded once the read
/// hooks ran leaves a body that cannot be read, so the message gets a clear
/// 400 instead.
pub(crate) fn check_filters(header: &Header) -> Result<(), Status> {
    if header.filters.is_empty() {
        Ok(())
    } else {
        Err(Status::bad_message(format!(
            "transfer filters {:?} are not supported by this endpoint",
            &header.filters[..]
        )))
    }
}

/// The service method and meta limits of [`Config`], checked on what
/// arrives and on what is about to be sent.
pub(crate) fn check_sizes(header: &Header, config: &Config) -> Result<(), Status> {
    let method = header.service_method.len();
    if method > config.max_method_len {
        return Err(Status::message_too_large(format!(
            "a service method of {method} bytes is over the limit of {} bytes",
            config.max_method_len
        )));
    }
    let meta = header.meta.wire_len();
    if meta > config.max_meta_len {
        return Err(Status::message_too_large(format!(
            "meta of {meta} bytes ({} entries) is over the limit of {} bytes",
            header.meta.len(),
            config.max_meta_len
        )));
    }
    Ok(())
}

fn on_reply(session: &Session, mut msg: Message) {
    match session.shared.pending.take(msg.header.seq) {
        Some(waiter) => {
            let checked = check_sizes(&msg.header, &session.shared.ep.config)
                .and_then(|()| {
                    session
                        .plugins()
                        .try_each(|p| p.after_read_reply_header(session, &mut msg))
                })
                .and_then(|()| check_filters(&msg.header));
            let outcome = match checked {
                Ok(()) => Outcome::Reply(msg),
                Err(status) => Outcome::Failed(status),
            };
            let _ = waiter.send(outcome);
        }
        None => tracing::debug!(
            session = %session.id(),
            seq = msg.header.seq,
            "reply to a call that is no longer waiting (deadline passed or abandoned); dropped"
        ),
    }
}

fn on_push(session: &Session, conn: &Conn, mut msg: Message) {
    let refused = check_sizes(&msg.header, &session.shared.ep.config)
        .and_then(|()| {
            session
                .plugins()
                .try_each(|p| p.after_read_push_header(session, &mut msg))
        })
        .and_then(|()| check_filters(&msg.header));
    let Message { header, body } = msg;
    if let Err(status) = refused {
        tracing::debug!(session = %session.id(), method = %header.service_method, %status, "push refused by a plugin");
        return;
    }
    let Some(route) = session
        .shared
        .ep
        .router
        .find_push(&header.service_method)
        .cloned()
    else {
        tracing::debug!(session = %session.id(), method = %header.service_method, "no handler for push; dropped");
        return;
    };
    let ctx = PushCtx::new(session.clone(), header, body);
    // No clock reading when no plugin would see it.
    let started = (!session.plugins().is_empty()).then(Instant::now);
    let mut fut = route(ctx.clone());
    let handled = Handled::Push(ctx.clone());
    let report = move |session: &Session, result: std::thread::Result<()>| {
        if let Err(panic) = result {
            tracing::error!(session = %session.id(), method = %ctx.service_method(), panic = panic_message(&panic), "push handler panicked");
        }
        if let Some(started) = started {
            let elapsed = started.elapsed();
            session
                .plugins()
                .each(|p| p.after_push_handler(&ctx, elapsed));
        }
    };
    if let Some(result) = poll_inline(session, &handled, &mut fut) {
        report(session, result);
        return;
    }
    let s = session.clone();
    session.spawn_handler(conn, Some(handled), async move {
        report(&s, AssertUnwindSafe(fut).catch_unwind().await);
    });
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string panic payload)")
}

/// Encodes queued messages into one buffer and writes it with one call,
/// until told to shut down (returning `None`) or the write fails.
async fn write_loop(
    session: Session,
    conn: Arc<Conn>,
    mut wr: WriteHalf,
    mut framer: Box<dyn Framer>,
    mut rx: mpsc::UnboundedReceiver<Outbound>,
    stop: CancellationToken,
) -> Option<Status> {
    // However the writer stops, senders waiting for room must hear of it.
    struct Gone<'a>(&'a Conn);
    impl Drop for Gone<'_> {
        fn drop(&mut self) {
            self.0.outbox.writer_gone();
        }
    }
    let _gone = Gone(&conn);
    let batch = session.shared.ep.config.write_batch.max(1);
    let mut buf = BytesMut::with_capacity(batch);
    let mut calls_in_batch: Vec<u32> = Vec::new();
    // A large message held back to start the next batch.
    let mut carried: Option<Outbound> = None;
    loop {
        let first = match carried.take() {
            Some(m) => Some(m),
            None => tokio::select! {
                biased;
                _ = stop.cancelled() => return None,
                m = rx.recv() => m,
            },
        };
        let mut shutdown = false;
        let mut next = first;
        let mut taken = 0;
        loop {
            match next {
                // A large message starts a batch of its own, so that on
                // QUIC, where each batch is a stream, the small messages
                // queued before it do not wait for all of its bytes.
                Some(Outbound::Msg(msg)) if !buf.is_empty() && msg.body.len() >= batch => {
                    carried = Some(Outbound::Msg(msg));
                    break;
                }
                Some(Outbound::Msg(msg)) => {
                    taken += 1;
                    encode_one(&session, &mut *framer, msg, &mut buf, &mut calls_in_batch)
                }
                Some(Outbound::Shutdown) => {
                    taken += 1;
                    shutdown = true;
                    break;
                }
                None => {
                    shutdown = true;
                    break;
                }
            }
            if buf.len() >= batch {
                break;
            }
            match rx.try_recv() {
                Ok(m) => next = Some(m),
                Err(_) => break,
            }
        }
        conn.outbox.taken(taken);
        if !buf.is_empty() {
            let written = tokio::select! {
                biased;
                _ = stop.cancelled() => return None,
                // The flush ends a run of whole frames: the socket contract
                // that lets QUIC send each batch on a stream of its own.
                r = async {
                    wr.write_all(&buf).await?;
                    wr.flush().await
                } => r,
            };
            if let Err(e) = written {
                let status = Status::write_failed(format!("writing to the peer failed: {e}"));
                for seq in calls_in_batch.drain(..) {
                    session.fail_call(seq, status.clone());
                }
                return Some(status.with_cause(e));
            }
            calls_in_batch.clear();
            // One huge message must not pin a huge buffer for the session's life.
            if buf.capacity() > batch * 4 {
                buf = BytesMut::with_capacity(batch);
            } else {
                buf.clear();
            }
        }
        if shutdown {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = wr.shutdown() => {}
            }
            return None;
        }
    }
}

fn encode_one(
    session: &Session,
    framer: &mut dyn Framer,
    msg: Message,
    buf: &mut BytesMut,
    calls_in_batch: &mut Vec<u32>,
) {
    match framer.encode(&msg, buf) {
        Ok(()) => {
            let h = &msg.header;
            match h.kind {
                Kind::Call => {
                    calls_in_batch.push(h.seq);
                    session.plugins().each(|p| p.after_write_call(session, h));
                }
                // A notice (seq 0) is about the connection, not a message.
                Kind::Reply if h.seq == 0 => {}
                Kind::Reply => session.plugins().each(|p| p.after_write_reply(session, h)),
                Kind::Push => session.plugins().each(|p| p.after_write_push(session, h)),
            }
        }
        Err(err) => {
            let status = match err {
                ProtoError::FrameTooLarge { .. } => Status::message_too_large(err.to_string()),
                _ => Status::bad_message(err.to_string()),
            };
            let h = &msg.header;
            match h.kind {
                Kind::Call => session.fail_call(h.seq, status),
                Kind::Reply => {
                    tracing::warn!(session = %session.id(), seq = h.seq, %status, "reply could not be encoded; answering with the error instead");
                    let fallback = error_reply(h.seq, h.codec, &status);
                    if framer.encode(&fallback, buf).is_ok() {
                        session
                            .plugins()
                            .each(|p| p.after_write_reply(session, &fallback.header));
                    }
                }
                Kind::Push => {
                    tracing::warn!(session = %session.id(), method = %h.service_method, %status, "push could not be encoded; dropped")
                }
            }
        }
    }
}
