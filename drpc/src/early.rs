//! Calls and pushes that arrive while a connection is being established.
//!
//! A connection's reader starts as soon as it connects, so that its
//! connection hooks can talk to the peer (a dialer's `after_dial` can make
//! a call and wait for the reply). Until every hook has passed, though, no
//! incoming call or push reaches a handler: the reader holds them here. A
//! hook may take one out with [`Session::take_handshake`] (an auth plugin
//! reads the peer's credential that way); the rest run, in the order they
//! arrived, once the hooks pass, or are answered with the refusal when a
//! hook refuses the connection.

use crate::conn::Conn;
use crate::driver::{check_filters, check_sizes};
use crate::session::Session;
use crate::Status;
use bytes::Bytes;
use drpc_proto::{Header, Kind, Message, Meta};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// At most this many messages are held; past it (or past the frame limit in
/// bytes) the reader stops reading until a hook takes one or the hooks end,
/// so a peer that floods a connection before it is established only fills
/// its own socket buffers.
const MAX_HELD: usize = 64;

/// The messages held while a connection's hooks run.
#[derive(Default)]
pub(crate) struct Early {
    /// Cancelled when the connection's hooks have passed.
    pub(crate) established: CancellationToken,
    held: Mutex<Held>,
    /// Woken when a message is held or taken.
    changed: Notify,
}

#[derive(Default)]
struct Held {
    msgs: VecDeque<(Message, Instant)>,
    bytes: usize,
}

/// What became of a message the reader offered to hold.
pub(crate) enum Offer {
    /// It is held.
    Held,
    /// The connection was established meanwhile: dispatch it (after the
    /// held ones).
    Established(Message),
    /// The reader was told to stop.
    Stopped,
}

impl Early {
    /// Holds `msg` (which arrived at `arrived`), waiting while the holding
    /// room is full. `byte_limit` bounds the bodies held, though one message
    /// is always taken.
    pub(crate) async fn offer(
        &self,
        msg: Message,
        arrived: Instant,
        byte_limit: usize,
        stop: &CancellationToken,
    ) -> Offer {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.established.is_cancelled() {
                return Offer::Established(msg);
            }
            {
                let mut held = self.held.lock();
                let len = msg.body.len();
                if held.msgs.is_empty()
                    || (held.msgs.len() < MAX_HELD && held.bytes + len <= byte_limit)
                {
                    held.bytes += len;
                    held.msgs.push_back((msg, arrived));
                    drop(held);
                    self.changed.notify_waiters();
                    return Offer::Held;
                }
            }
            tokio::select! {
                biased;
                _ = stop.cancelled() => return Offer::Stopped,
                _ = self.established.cancelled() => {}
                _ = &mut changed => {}
            }
        }
    }

    /// Everything held, oldest first, leaving nothing.
    pub(crate) fn take_all(&self) -> VecDeque<(Message, Instant)> {
        let mut held = self.held.lock();
        held.bytes = 0;
        std::mem::take(&mut held.msgs)
    }

    /// The oldest held message for `service_method`, if any.
    fn take(&self, service_method: &str) -> Option<Message> {
        let mut held = self.held.lock();
        let at = held
            .msgs
            .iter()
            .position(|(m, _)| &*m.header.service_method == service_method)?;
        let (msg, _) = held.msgs.remove(at)?;
        held.bytes -= msg.body.len();
        drop(held);
        // Room was freed for a reader that may be waiting.
        self.changed.notify_waiters();
        Some(msg)
    }
}

/// Answers the calls held on a connection that will never be established
/// with `status`; held pushes are dropped (no handler of the connection may
/// run), with a log line.
pub(crate) fn refuse_held(session: &Session, conn: &Arc<Conn>, status: &Status) {
    for (msg, _) in conn.early.take_all() {
        let h = &msg.header;
        match h.kind {
            Kind::Call => session.queue_reply(
                conn,
                h.seq,
                h.codec,
                h.codec,
                Meta::default(),
                Err(status.clone()),
            ),
            _ => {
                tracing::debug!(session = %session.id(), method = %h.service_method, %status, "push dropped: the connection was not established")
            }
        }
    }
}

impl Session {
    /// From a connection hook ([`Plugin::after_accept`] or
    /// [`Plugin::after_dial`]): waits up to `within` for the peer's call or
    /// push to `service_method` and takes it, so that no handler ever sees
    /// it. This is how a hook reads what the peer sends while the session is
    /// being established, such as a credential.
    ///
    /// Until every connection hook has passed, the session holds incoming
    /// calls and pushes instead of running their handlers; the ones not
    /// taken run, in order, once the hooks pass, or are answered with the
    /// refusing hook's status if one refuses. Plugins' read-header hooks
    /// run on a taken message as on any other (so a compressed body comes
    /// out decompressed), but no handler runs for it. A taken call must be
    /// answered with [`HandshakeMessage::reply`] (dropping it answers 500).
    ///
    /// Errors: 408 when nothing arrives within `within`; 102 when the
    /// session closes first; 500 when called outside a connection hook
    /// (the session is already established, or has no connection); a read
    /// hook's refusal of the message (a call is answered with it, too).
    ///
    /// [`Plugin::after_accept`]: crate::Plugin::after_accept
    /// [`Plugin::after_dial`]: crate::Plugin::after_dial
    ///
    /// ```
    /// use drpc::plugin::BoxFuture;
    /// use drpc::{Plugin, Session, Status};
    /// use std::time::Duration;
    ///
    /// /// Accepts peers whose first call to `/hello` says "hi".
    /// struct Greeted;
    ///
    /// impl Plugin for Greeted {
    ///     fn after_accept<'a>(&'a self, s: &'a Session) -> BoxFuture<'a, Result<(), Status>> {
    ///         Box::pin(async move {
    ///             let hello = s.take_handshake("/hello", Duration::from_secs(5)).await?;
    ///             if hello.decode::<String>()? == "hi" {
    ///                 hello.reply(Ok(&"welcome"));
    ///                 Ok(())
    ///             } else {
    ///                 let refusal = Status::unauthorized("say hi");
    ///                 hello.reply::<()>(Err(refusal.clone()));
    ///                 Err(refusal)
    ///             }
    ///         })
    ///     }
    /// }
    /// ```
    pub async fn take_handshake(
        &self,
        service_method: &str,
        within: Duration,
    ) -> Result<HandshakeMessage, Status> {
        let conn = self.conn().ok_or_else(|| {
            Status::internal("take_handshake: the session has no connection (it is redialing)")
        })?;
        let deadline = Instant::now() + within;
        loop {
            let changed = conn.early.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(msg) = conn.early.take(service_method) {
                return self.read_handshake(&conn, msg);
            }
            if conn.early.established.is_cancelled() {
                return Err(Status::internal(
                    "take_handshake is for connection hooks: this session is already established",
                ));
            }
            tokio::select! {
                _ = &mut changed => {}
                _ = conn.early.established.cancelled() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(Status::deadline_exceeded(format!(
                        "the peer sent no {service_method} within {within:?}"
                    )));
                }
                _ = self.shared.closed.cancelled() => return Err(self.closed_status()),
                _ = conn.drop_requested.cancelled() => {
                    return Err(Status::connection_closed("the connection was dropped"));
                }
            }
        }
    }
}

impl Session {
    /// Runs the read-header hooks on a taken message, as for any other (a
    /// compressed body is decompressed, say); a refusal answers a call with
    /// it, and is returned.
    fn read_handshake(
        &self,
        conn: &Arc<Conn>,
        mut msg: Message,
    ) -> Result<HandshakeMessage, Status> {
        let plugins = self.plugins();
        let checked = check_sizes(&msg.header, &self.shared.ep.config)
            .and_then(|()| match msg.header.kind {
                Kind::Call => plugins.try_each(|p| p.after_read_call_header(self, &mut msg)),
                _ => plugins.try_each(|p| p.after_read_push_header(self, &mut msg)),
            })
            .and_then(|()| check_filters(&msg.header));
        let taken = HandshakeMessage {
            session: self.clone(),
            conn: conn.clone(),
            msg: Some(msg),
        };
        match checked {
            Ok(()) => Ok(taken),
            Err(status) => {
                taken.reply_raw(Err(status.clone()), Meta::default());
                Err(status)
            }
        }
    }
}

/// A call or push taken by a connection hook with
/// [`Session::take_handshake`]. A call is answered with
/// [`HandshakeMessage::reply`]; one dropped unanswered is answered with 500,
/// so the peer never waits for nothing.
pub struct HandshakeMessage {
    session: Session,
    conn: Arc<Conn>,
    /// `None` once answered.
    msg: Option<Message>,
}

impl HandshakeMessage {
    fn msg(&self) -> &Message {
        self.msg.as_ref().expect("present until answered")
    }

    /// The message's header (its kind says whether it is a call or a push).
    pub fn header(&self) -> &Header {
        &self.msg().header
    }

    /// The encoded body, as it arrived.
    pub fn body(&self) -> &Bytes {
        &self.msg().body
    }

    /// Decodes the body with its codec. Fails with 400.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, Status> {
        let h = self.header();
        crate::context::decode_body(h.codec, self.body(), &h.service_method)
    }

    /// Answers the call with `result`, its value encoded with the call's
    /// codec. Does nothing for a push.
    pub fn reply<T: Serialize>(self, result: Result<&T, Status>) {
        let codec = self.header().codec;
        let body = result.and_then(|v| {
            codec.encode(v).map(Bytes::from).map_err(|e| {
                Status::internal(format!("cannot encode a handshake reply as {codec}"))
                    .with_cause(e)
            })
        });
        self.reply_raw(body, Meta::default());
    }

    /// Answers the call with an encoded body (in the call's codec) or a
    /// status, and reply meta. Does nothing for a push.
    pub fn reply_raw(mut self, result: Result<Bytes, Status>, meta: Meta) {
        if let Some(msg) = self.msg.take() {
            answer(&self.session, &self.conn, &msg.header, result, meta);
        }
    }
}

fn answer(
    session: &Session,
    conn: &Arc<Conn>,
    call: &Header,
    result: Result<Bytes, Status>,
    meta: Meta,
) {
    if call.kind == Kind::Call {
        session.queue_reply(conn, call.seq, call.codec, call.codec, meta, result);
    }
}

impl Drop for HandshakeMessage {
    fn drop(&mut self) {
        if let Some(msg) = self.msg.take() {
            let status = Status::internal(format!(
                "the handshake call {} was not answered",
                msg.header.service_method
            ));
            answer(
                &self.session,
                &self.conn,
                &msg.header,
                Err(status),
                Meta::default(),
            );
        }
    }
}

impl std::fmt::Debug for HandshakeMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeMessage")
            .field("session", &self.session.id())
            .field("header", &self.msg.as_ref().map(|m| &m.header))
            .finish_non_exhaustive()
    }
}
