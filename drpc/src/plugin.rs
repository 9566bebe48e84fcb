//! Plugins: values whose hook methods the endpoint runs at named points in
//! the life of the endpoint, of every session and of every message.
//!
//! Every method has a do-nothing default, so a plugin writes only the hooks
//! it needs. Plugins run in the order they were added to the endpoint; at a
//! hook that returns a result, the first error stops the chain and takes
//! the effect documented on that hook.
//!
//! Per-message hooks are plain (not async) functions: they run on the hot
//! path of every message, and a plugin that must wait (for a database, say)
//! spawns the work. Connection hooks, which run once per session, are async
//! so they can talk to the peer or another service.
//!
//! ```
//! use drpc::{Plugin, Session, Status};
//! use drpc::proto::Message;
//!
//! /// Refuses every call whose meta lacks an `api-key`.
//! struct RequireKey;
//!
//! impl Plugin for RequireKey {
//!     fn name(&self) -> &str {
//!         "require-key"
//!     }
//!     fn after_read_call_header(&self, _: &Session, msg: &mut Message) -> Result<(), Status> {
//!         match msg.header.meta.get("api-key") {
//!             Some(_) => Ok(()),
//!             None => Err(Status::unauthorized("api-key meta is required")),
//!         }
//!     }
//! }
//! ```

use crate::context::{CallCtx, PushCtx};
use crate::session::Session;
use crate::shared::Endpoint;
use crate::values::Status;
use drpc_proto::{Header, Message};
use drpc_socket::Addr;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A boxed future, as async hooks return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a route handles, as reported to [`Plugin::after_register`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// A call handler.
    Call,
    /// A push handler.
    Push,
    /// The handler of calls with no route.
    CallFallback,
    /// The handler of pushes with no route.
    PushFallback,
}

/// A route being registered.
#[derive(Debug, Clone, Copy)]
pub struct RouteInfo<'a> {
    /// The full service method, such as `/math/add`; empty for fallbacks.
    pub path: &'a str,
    /// What kind of route it is.
    pub kind: RouteKind,
}

/// How a call this side made ended, as [`Plugin::after_call_end`] sees it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct CallEnd<'a> {
    /// The call's seq on its session.
    pub seq: u32,
    /// The service method called.
    pub service_method: &'a str,
    /// The outcome: OK when the peer answered with status 0, else the
    /// status the caller gets (the peer's, or a local one such as 408).
    pub status: &'a Status,
    /// From when the call got its seq to its end.
    pub elapsed: Duration,
}

/// Hook methods the endpoint runs; see the [module docs](self).
///
/// "Errors" below says what an `Err` from that hook does.
#[allow(unused_variables)]
pub trait Plugin: Send + Sync + 'static {
    /// A name for logs; defaults to the plugin's type name.
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }

    // ----- endpoint -----

    /// After the endpoint is built, before it listens or dials.
    fn after_build(&self, endpoint: &Endpoint) {}

    /// When a close of the endpoint begins, before anything stops.
    fn before_close(&self, endpoint: &Endpoint) {}

    /// After [`Plugin::before_close`], before the endpoint stops accepting
    /// and tells its peers it is going away: the place to deregister from a
    /// service registry, so that no caller picks this endpoint while it
    /// drains. The close waits for every plugin's future, at most for the
    /// close's grace (and not at all after a second close).
    fn before_going_away<'a>(&'a self, endpoint: &'a Endpoint) -> BoxFuture<'a, ()> {
        Box::pin(std::future::ready(()))
    }

    /// When the endpoint has closed: every session and task has ended.
    fn after_close(&self, endpoint: &Endpoint) {}

    /// After a route is added to the endpoint (when the endpoint is built,
    /// for each route of its router in the order they were registered).
    ///
    /// Errors: building the endpoint fails with this status.
    fn after_register(&self, route: RouteInfo<'_>) -> Result<(), Status> {
        Ok(())
    }

    /// After the endpoint starts listening on `addr` (the bound address).
    fn after_listen(&self, addr: &Addr) {}

    // ----- connection -----

    /// Before a dial connects. `is_redial` is true when a dropped session is
    /// being re-established.
    ///
    /// Errors: the dial fails with this status and nothing connects;
    /// [`Plugin::after_dial_fail`] runs.
    fn before_dial(&self, addr: &Addr, is_redial: bool) -> Result<(), Status> {
        Ok(())
    }

    /// After a dial connected, before the session is handed to the caller.
    /// The session can already call and push, and replies are read, so the
    /// hook can talk to the peer (present a credential, say); incoming calls
    /// and pushes wait until every connection hook has passed (see
    /// [`Session::take_handshake`]). Runs again on each redial. Only the
    /// handle this hook is given (and its clones) may call or push on the
    /// connection yet; calls through any other handle of the session wait
    /// (within their deadlines) until the hooks pass.
    ///
    /// Errors: the session is closed with this status as its reason and
    /// the dial fails with it.
    fn after_dial<'a>(
        &'a self,
        session: &'a Session,
        is_redial: bool,
    ) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async { Ok(()) })
    }

    /// After a dial failed, with the status the dial returns.
    fn after_dial_fail(&self, addr: &Addr, status: &Status, is_redial: bool) {}

    /// After a connection is accepted. The session can already call and
    /// push; incoming calls and pushes are held, and no handler runs, until
    /// every connection hook has passed. A hook reads what the peer sends
    /// meanwhile with [`Session::take_handshake`].
    ///
    /// Errors: the session is closed with this status as its reason, and
    /// the calls the peer sent meanwhile are answered with it.
    fn after_accept<'a>(&'a self, session: &'a Session) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async { Ok(()) })
    }

    /// After a session closed; [`Session::close_reason`] says why. Runs
    /// exactly once for every session on which this plugin's
    /// [`Plugin::after_accept`] or [`Plugin::after_dial`] ran, so accept and
    /// dial hooks always pair with a close.
    fn after_session_close(&self, session: &Session) {}

    // ----- writing -----

    /// Before a call is queued for writing; may change the message.
    ///
    /// Errors: the call fails with this status; nothing is sent.
    fn before_write_call(&self, session: &Session, msg: &mut Message) -> Result<(), Status> {
        Ok(())
    }

    /// After a call was encoded into the session's write buffer (the bytes
    /// are final and go to the socket with the next write).
    fn after_write_call(&self, session: &Session, header: &Header) {}

    /// After a call this side made has ended, however it ended: answered by
    /// the peer (with status 0 or another), or ended here by its deadline,
    /// the session closing, a plugin's refusal or the caller dropping it
    /// (499). Runs exactly once for every call that got a seq, so a plugin
    /// that keeps state per call from `before_write_call` can always free
    /// it here.
    fn after_call_end(&self, session: &Session, end: &CallEnd<'_>) {}

    /// Before a reply is queued for writing; may change the message.
    ///
    /// Errors: the reply is replaced by an error reply with this status and
    /// an empty body.
    fn before_write_reply(&self, session: &Session, msg: &mut Message) -> Result<(), Status> {
        Ok(())
    }

    /// After a reply was encoded into the session's write buffer.
    fn after_write_reply(&self, session: &Session, header: &Header) {}

    /// Before a push is queued for writing; may change the message.
    ///
    /// Errors: the push fails with this status; nothing is sent.
    fn before_write_push(&self, session: &Session, msg: &mut Message) -> Result<(), Status> {
        Ok(())
    }

    /// After a push was encoded into the session's write buffer.
    fn after_write_push(&self, session: &Session, header: &Header) {}

    // ----- reading -----

    /// When the first bytes of a new message have arrived, before its header
    /// is decoded; runs once per message, just before that message's
    /// `after_read_*_header` hook (or before the session closes, when the
    /// bytes turn out to be malformed). It also runs for a connection
    /// notice (a reply with seq 0, such as the peer's going-away notice),
    /// which no other reading hook sees.
    fn before_read_header(&self, session: &Session) {}

    /// After a call was read, before its body is decoded or a handler
    /// chosen: the cheap place to refuse a call. The hook may also rewrite
    /// the message before it is routed: its service method, meta, body or
    /// transfer filters (a plugin that reverses a filter removes its id; a
    /// filter left in place when the hooks are done is answered with 400).
    ///
    /// Errors: no handler runs; the call is answered with this status.
    fn after_read_call_header(&self, session: &Session, msg: &mut Message) -> Result<(), Status> {
        Ok(())
    }

    /// After a call's body was decoded into the handler's argument type,
    /// just before the handler runs.
    ///
    /// Errors: the handler does not run; the call is answered with this status.
    fn after_read_call_body(&self, ctx: &CallCtx) -> Result<(), Status> {
        Ok(())
    }

    /// After a reply arrived, before its body is decoded (on the caller's
    /// task); the hook may rewrite it, as for calls.
    ///
    /// Errors: the call ends with this status instead of the reply.
    fn after_read_reply_header(&self, session: &Session, msg: &mut Message) -> Result<(), Status> {
        Ok(())
    }

    /// After a successful reply's body was decoded into the caller's type.
    ///
    /// Errors: the call ends with this status instead of the value.
    fn after_read_reply_body(&self, session: &Session, header: &Header) -> Result<(), Status> {
        Ok(())
    }

    /// After a push was read, before its body is decoded or a handler
    /// chosen; the hook may rewrite it, as for calls.
    ///
    /// Errors: the push is dropped (logged at debug level); no handler runs.
    fn after_read_push_header(&self, session: &Session, msg: &mut Message) -> Result<(), Status> {
        Ok(())
    }

    /// After a push's body was decoded, just before its handler runs.
    ///
    /// Errors: the push is dropped (logged at debug level); the handler does
    /// not run.
    fn after_read_push_body(&self, ctx: &PushCtx) -> Result<(), Status> {
        Ok(())
    }

    /// After a push's handler finished (or panicked), `elapsed` after it
    /// started. Not run for a handler cancelled by an abrupt close.
    fn after_push_handler(&self, ctx: &PushCtx, elapsed: Duration) {}

    // ----- per call -----

    /// A call of the peer arrived (its header is read, nothing else is
    /// done yet): returns this plugin's state for that one call, if it keeps
    /// any. The state lives exactly as long as the call: it sees the
    /// handler about to run and the reply about to be written, and it is
    /// dropped when the call ends, however it ends (answered, refused,
    /// cancelled, its connection lost). Nothing is keyed by seq, so nothing
    /// can leak from one call, or one connection, to another. For a plugin
    /// of a route group, the call starts when it is routed.
    ///
    /// Errors: the call is answered with this status; no handler runs.
    fn handle_call(
        &self,
        session: &Session,
        msg: &Message,
    ) -> Result<Option<Box<dyn HandledCall>>, Status> {
        Ok(None)
    }

    /// This side is about to make a call (its seq is set, nothing is
    /// written): returns this plugin's state for that one call, if it keeps
    /// any; it may change the message, as [`Plugin::before_write_call`]
    /// (which runs just before it). The state sees the reply and ends with
    /// the call, however it ends.
    ///
    /// Errors: the call fails with this status; nothing is sent.
    fn make_call(
        &self,
        session: &Session,
        msg: &mut Message,
    ) -> Result<Option<Box<dyn MadeCall>>, Status> {
        Ok(None)
    }
}

/// A plugin's state for one call this side handles; see
/// [`Plugin::handle_call`]. Dropping it is the end of the call.
#[allow(unused_variables)]
pub trait HandledCall: Send + 'static {
    /// The body is decoded and the handler is about to run (not called
    /// when the call is refused before).
    ///
    /// Errors: the handler does not run; the call is answered with this
    /// status.
    fn before_handler(&mut self, ctx: &CallCtx) -> Result<(), Status> {
        Ok(())
    }

    /// The reply (a success or an error) is about to be queued; it may be
    /// changed. Runs before the endpoint's [`Plugin::before_write_reply`].
    ///
    /// Errors: the reply is replaced by an error reply with this status.
    fn before_reply(&mut self, reply: &mut Message) -> Result<(), Status> {
        Ok(())
    }

    /// The caller cancelled the call (`status` is 499): its handler was
    /// dropped and no reply is sent, so [`HandledCall::before_reply`]
    /// does not run. A call that ends without a reply for another reason
    /// (its connection dropped at once) sees neither; dropping the state
    /// is the last thing that happens to it either way.
    fn on_cancel(&mut self, status: &Status) {}
}

/// A plugin's state for one call this side makes; see
/// [`Plugin::make_call`].
#[allow(unused_variables)]
pub trait MadeCall: Send + 'static {
    /// The reply arrived, with any status; it may be changed (its body
    /// decompressed, say) before it is decoded. Runs before the endpoint's
    /// [`Plugin::after_read_reply_header`].
    ///
    /// Errors: the call ends with this status instead.
    fn on_reply(&mut self, reply: &mut Message) -> Result<(), Status> {
        Ok(())
    }

    /// The call ended, however it ended; runs exactly once.
    fn end(self: Box<Self>, end: &CallEnd<'_>) {}
}

/// An ordered plugin list: an endpoint's, or a route group's.
#[derive(Clone, Default)]
pub(crate) struct Plugins(Arc<[Arc<dyn Plugin>]>);

impl Plugins {
    pub(crate) fn new(list: Vec<Arc<dyn Plugin>>) -> Self {
        Self(list.into())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<dyn Plugin>> {
        self.0.iter()
    }

    /// Runs `f` on each plugin in order; the first error stops the chain.
    pub(crate) fn try_each(
        &self,
        mut f: impl FnMut(&dyn Plugin) -> Result<(), Status>,
    ) -> Result<(), Status> {
        self.0.iter().try_for_each(|p| f(&**p))
    }

    pub(crate) fn each(&self, mut f: impl FnMut(&dyn Plugin)) {
        self.0.iter().for_each(|p| f(&**p));
    }
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|p| p.name()))
            .finish()
    }
}
