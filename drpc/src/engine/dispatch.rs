//! From an incoming call or push to its handler and back: the plugins'
//! hooks around it, routing, admission, running the handler (polled once
//! right here, on its own task only if it waits), and the reply.

use crate::context::{CallCtx, PushCtx};
use crate::core::conn::streams::{ITEMS_KEY, STREAM_KEY};
use crate::core::streams::Role;
use crate::core::{features, wire};
use crate::handler::{ReplyBody, ReplyValue};
use crate::plugin::{HandledCall, Plugins};
use crate::runtime::link::Link;
use crate::runtime::scope::{self, Current};
use crate::session::calls::unreversed_filters;
use crate::session::Session;
use crate::values::{Code, Status, MAX_DEADLINE_AHEAD};
use bytes::BytesMut;
use drpc_codec::CodecId;
use drpc_proto::{Header, Message};
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// What a call's reply needs besides its outcome: where it goes and who
/// sees it. Borrowed while the call runs inline; a spawned handler's task
/// owns a copy.
struct Answer<'a> {
    session: &'a Session,
    link: &'a Arc<Link>,
    seq: u32,
    /// The call's codec: an error reply uses it.
    codec: CodecId,
    route_plugins: Option<&'a Plugins>,
}

impl Answer<'_> {
    /// Builds, hooks and queues the reply, then ends the plugins' per-call
    /// state (`scopes`). `ctx` is there once the call got as far as its
    /// context (its reply codec and meta).
    fn send(
        &self,
        scopes: Vec<Box<dyn HandledCall>>,
        ctx: Option<&CallCtx>,
        out: Result<ReplyBody<'_>, Status>,
    ) {
        let session = self.session;
        let plugins = session.plugins();
        let watched = !scopes.is_empty() || !plugins.is_empty() || self.route_plugins.is_some();
        let mut reply = match (out, ctx) {
            (Ok(body), Some(ctx)) => {
                let (codec, meta) = ctx.take_reply_parts();
                let mut h = Header::reply(self.seq);
                h.codec = codec;
                h.meta = meta;
                match body {
                    ReplyBody::Bytes(body) => Message::new(h, body),
                    // Nothing needs the body as bytes: it is encoded
                    // straight into the connection's batch.
                    ReplyBody::Value(value) if !watched => {
                        let encode = |dst: &mut BytesMut| encode_reply(ctx, value, codec, dst);
                        match self.link.reply_with(&h.head(), encode) {
                            Ok(()) => return,
                            Err(status) => wire::error_reply(self.seq, self.codec, &status),
                        }
                    }
                    ReplyBody::Value(value) => {
                        let mut body = BytesMut::new();
                        match encode_reply(ctx, value, codec, &mut body) {
                            Ok(()) => Message::new(h, body.freeze()),
                            Err(status) => wire::error_reply(self.seq, self.codec, &status),
                        }
                    }
                }
            }
            (Ok(_), None) => unreachable!("a body comes only from a handler, which has a context"),
            (Err(status), ctx) => {
                let mut reply = wire::error_reply(self.seq, self.codec, &handler_error(status));
                // A stream's failure counts its items too, for the caller to
                // wait for those on their way (docs/PROTOCOL.md 3.4).
                if let Some((_, meta)) = ctx.map(CallCtx::take_reply_parts) {
                    if let Some(items) = meta.get(ITEMS_KEY) {
                        reply.header.meta.insert(ITEMS_KEY, items);
                    }
                }
                reply
            }
        };
        if watched {
            let mut scopes = scopes;
            let hooked = scopes
                .iter_mut()
                .try_for_each(|s| s.before_reply(&mut reply))
                .and_then(|()| plugins.try_each(|p| p.before_write_reply(session, &mut reply)))
                .and_then(|()| match self.route_plugins {
                    Some(route) => route.try_each(|p| p.before_write_reply(session, &mut reply)),
                    None => Ok(()),
                });
            if let Err(status) = hooked {
                reply = wire::error_reply(self.seq, self.codec, &status);
            }
        }
        self.link.reply(&reply);
        if watched {
            let h = &reply.header;
            plugins.each(|p| p.after_write_reply(session, h));
            if let Some(route) = self.route_plugins {
                route.each(|p| p.after_write_reply(session, h));
            }
        }
    }
}

/// Runs a call of the peer: hooks, route, admission, handler, reply.
pub(crate) fn call(session: &Session, link: &Arc<Link>, mut msg: Box<Message>, arrived: Instant) {
    let ep = &session.shared.ep;
    let mut answer = Answer {
        session,
        link,
        seq: msg.header.seq,
        codec: msg.header.codec,
        route_plugins: None,
    };
    let mut scopes = Vec::new();
    let routed = (|| {
        start_scopes(session.plugins(), session, &msg, &mut scopes)?;
        session
            .plugins()
            .try_each(|p| p.after_read_call_header(session, &mut msg))?;
        let route = ep
            .router
            .find_call(&msg.header.service_method)
            .ok_or_else(|| {
                Status::not_found(format!("no handler for {}", msg.header.service_method))
            })?;
        if !route.stream && !msg.header.meta.is_empty() && msg.header.meta.get(STREAM_KEY).is_some()
        {
            return Err(Status::bad_message(format!(
                "{} is not a stream method (drpc-stream)",
                msg.header.service_method
            )));
        }
        if !route.plugins.is_empty() {
            answer.route_plugins = Some(&route.plugins);
            start_scopes(&route.plugins, session, &msg, &mut scopes)?;
            route
                .plugins
                .try_each(|p| p.after_read_call_header(session, &mut msg))?;
        }
        if !msg.header.filters.is_empty() {
            return Err(unreversed_filters(&msg.header));
        }
        let permit = ep.limiter.admit(&session.shared.calls_running)?;
        Ok((&route.handler, permit))
    })();
    let (handler, permit) = match routed {
        Ok(routed) => routed,
        Err(status) => return answer.send(scopes, None, Err(status)),
    };
    let timeout = match msg.header.timeout {
        Some(timeout) => timeout,
        // A stream's timeout of 0 is none (docs/PROTOCOL.md 3.4).
        None if msg.header.meta.get(STREAM_KEY).is_some() => MAX_DEADLINE_AHEAD,
        None => ep.config.default_timeout,
    };
    // The wire carries at most u32::MAX ms (about 49 days); a local default
    // is capped like a caller's.
    let deadline = arrived + timeout.min(MAX_DEADLINE_AHEAD);
    let ctx = CallCtx::new(session.clone(), link.clone(), msg, deadline);
    // A handler function may panic before it returns its future (on the
    // argument, say): a 500 like a panic inside it.
    let made = std::panic::catch_unwind(AssertUnwindSafe(|| handler(&ctx)))
        .unwrap_or_else(|panic| Err(panicked(&ctx, panic)));
    let prepared = made.and_then(|fut| {
        session
            .plugins()
            .try_each(|p| p.after_read_call_body(&ctx))?;
        if let Some(route) = answer.route_plugins {
            route.try_each(|p| p.after_read_call_body(&ctx))?;
        }
        scopes.iter_mut().try_for_each(|s| s.before_handler(&ctx))?;
        Ok(fut)
    });
    let mut fut = match prepared {
        Ok(fut) => fut,
        Err(status) => return answer.send(scopes, Some(&ctx), Err(status)),
    };
    let current = Current {
        session: session.identity(),
        message: Some(ctx.as_any()),
    };
    if let Some(result) = poll_once(&current, |cx| fut.as_mut().poll_done(cx)) {
        drop(permit);
        let out = outcome(&ctx, result);
        return answer.send(scopes, Some(&ctx), out.map(|()| fut.reply()));
    }
    // It waits: on a task of its own, counted with the connection's
    // handlers, cancelled at its deadline (408), by the caller's cancel
    // (no reply) or when the connection stops at once.
    let permit = permit.into_owned(ep.limiter.clone(), session.shared.calls_running.clone());
    let guard = link.enter_handler();
    let abort = link.handlers.abort.clone();
    let cancel = ctx.cancel_token().clone();
    let watch = link.watch_cancel(answer.seq, cancel.clone());
    let (session, link) = (session.clone(), link.clone());
    let route_plugins = answer.route_plugins.cloned();
    let (seq, codec) = (answer.seq, answer.codec);
    tokio::spawn(scope::scope(current, async move {
        let _guard = guard;
        let _permit = permit;
        let mut fut = fut;
        let run = std::future::poll_fn(|cx| fut.as_mut().poll_done(cx));
        let run = tokio::time::timeout_at(deadline.into(), AssertUnwindSafe(run).catch_unwind());
        let out = tokio::select! {
            biased;
            _ = abort.cancelled() => Err(None),
            _ = cancel.cancelled() => Err(Some(features::cancelled_status())),
            r = run => Ok(match r {
                Ok(result) => outcome(&ctx, result),
                Err(_) => {
                    // Work the handler spawned learns it is over too.
                    cancel.cancel();
                    count_items(&ctx, &link, seq);
                    Err(Status::deadline_exceeded(format!(
                        "the handler of {} did not finish within the call's deadline of {timeout:?}",
                        ctx.service_method()
                    )))
                }
            }),
        };
        drop(watch);
        let out = match out {
            Ok(out) => out,
            // Stopped unanswered: the handler goes first, then the plugins
            // and the work it spawned learn of it.
            Err(cancelled) => {
                drop(fut);
                if let Some(status) = cancelled {
                    let mut scopes = scopes;
                    scopes.iter_mut().for_each(|s| s.on_cancel(&status));
                }
                cancel.cancel();
                return;
            }
        };
        let answer = Answer {
            session: &session,
            link: &link,
            seq,
            codec,
            route_plugins: route_plugins.as_ref(),
        };
        match out {
            Ok(()) => answer.send(scopes, Some(&ctx), Ok(fut.reply())),
            // A handler cut at its deadline goes before its 408: what it
            // holds (a stream's state, say) is let go before the seq is
            // free for the caller to use again.
            Err(status) => {
                drop(fut);
                answer.send(scopes, Some(&ctx), Err(status));
            }
        }
    }));
}

/// Puts the count of items a stream handler cut at its deadline sent on
/// its reply, while its stream is still open to count them.
fn count_items(ctx: &CallCtx, link: &Link, seq: u32) {
    if ctx.meta().get(STREAM_KEY).is_some() {
        let sent = link.items_sent(Role::Callee, seq);
        ctx.set_reply_meta(ITEMS_KEY, &sent.to_string());
    }
}

/// Encodes a handler's value for its reply. It runs outside the handler's
/// future, so a `Serialize` that panics is caught here: 500, as for a
/// handler that panics.
fn encode_reply(
    ctx: &CallCtx,
    value: &dyn ReplyValue,
    codec: CodecId,
    dst: &mut BytesMut,
) -> Result<(), Status> {
    let method = ctx.service_method();
    let codecs = &ctx.session().shared.ep.config.codecs;
    match std::panic::catch_unwind(AssertUnwindSafe(|| value.encode_into(codecs, codec, dst))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Status::internal(format!(
            "cannot encode the reply of {method} as {codec}"
        ))
        .with_cause(e)),
        Err(panic) => {
            tracing::error!(session = %ctx.session().id(), method, panic = panic_message(&panic), "encoding a reply panicked");
            Err(Status::internal(format!(
                "the handler of {method} panicked"
            )))
        }
    }
}

/// Creates the per-call state of each plugin of `plugins`.
fn start_scopes(
    plugins: &Plugins,
    session: &Session,
    msg: &Message,
    scopes: &mut Vec<Box<dyn HandledCall>>,
) -> Result<(), Status> {
    for p in plugins.iter() {
        if let Some(scope) = p.handle_call(session, msg)? {
            scopes.push(scope);
        }
    }
    Ok(())
}

/// Polls a handler once, right here. Most handlers that do no I/O finish
/// on their first poll, and answering them here saves a task spawn per
/// message, the largest cost on the hot path. `None` means it waits and
/// must continue on its own task; polling it again there (with that task's
/// waker) is what futures are built for.
fn poll_once<T>(
    current: &Current,
    poll: impl FnOnce(&mut Context<'_>) -> Poll<T>,
) -> Option<std::thread::Result<T>> {
    let mut cx = Context::from_waker(Waker::noop());
    scope::sync_scope(current.clone(), || {
        match std::panic::catch_unwind(AssertUnwindSafe(|| poll(&mut cx))) {
            Ok(Poll::Ready(v)) => Some(Ok(v)),
            Ok(Poll::Pending) => None,
            Err(panic) => Some(Err(panic)),
        }
    })
}

/// A handler's result, with a panic turned into 500.
fn outcome(ctx: &CallCtx, result: std::thread::Result<Result<(), Status>>) -> Result<(), Status> {
    result.unwrap_or_else(|panic| Err(panicked(ctx, panic)))
}

/// The status of a handler that panicked, logged.
fn panicked(ctx: &CallCtx, panic: Box<dyn std::any::Any + Send>) -> Status {
    tracing::error!(
        session = %ctx.session().id(),
        method = ctx.service_method(),
        panic = panic_message(&panic),
        "call handler panicked"
    );
    Status::internal(format!("the handler of {} panicked", ctx.service_method()))
}

/// Runs a push of the peer: hooks, route, handler.
pub(crate) fn push(session: &Session, link: &Arc<Link>, mut msg: Box<Message>) {
    let ep = &session.shared.ep;
    let routed = (|| {
        session
            .plugins()
            .try_each(|p| p.after_read_push_header(session, &mut msg))?;
        let route = ep
            .router
            .find_push(&msg.header.service_method)
            .ok_or_else(|| Status::not_found("no handler for the push"))?;
        route
            .plugins
            .try_each(|p| p.after_read_push_header(session, &mut msg))?;
        if !msg.header.filters.is_empty() {
            return Err(unreversed_filters(&msg.header));
        }
        Ok(route.clone())
    })();
    let method = msg.header.service_method.clone();
    let dropped = |status: Status| {
        tracing::debug!(session = %session.id(), method = %method, %status, "push dropped");
    };
    let route = match routed {
        Ok(route) => route,
        Err(status) => return dropped(status),
    };
    let ctx = PushCtx::new(session.clone(), msg);
    let prepared = (route.handler)(&ctx).and_then(|fut| {
        session
            .plugins()
            .try_each(|p| p.after_read_push_body(&ctx))?;
        route.plugins.try_each(|p| p.after_read_push_body(&ctx))?;
        Ok(fut)
    });
    let mut fut = match prepared {
        Ok(fut) => fut,
        Err(status) => return dropped(status),
    };
    // No clock reading when no plugin would see it.
    let watched = !session.plugins().is_empty() || !route.plugins.is_empty();
    let started = watched.then(tokio::time::Instant::now);
    let current = Current {
        session: session.identity(),
        message: Some(ctx.as_any()),
    };
    let report = move |result: std::thread::Result<()>| {
        if let Err(panic) = result {
            tracing::error!(session = %ctx.session().id(), method = %ctx.service_method(), panic = panic_message(&panic), "push handler panicked");
        }
        if let Some(started) = started {
            let elapsed = started.elapsed();
            let session = ctx.session();
            session
                .plugins()
                .each(|p| p.after_push_handler(&ctx, elapsed));
            route.plugins.each(|p| p.after_push_handler(&ctx, elapsed));
        }
    };
    if let Some(result) = poll_once(&current, |cx| fut.as_mut().poll(cx)) {
        return report(result);
    }
    let guard = link.enter_handler();
    let abort = link.handlers.abort.clone();
    tokio::spawn(scope::scope(current, async move {
        let _guard = guard;
        tokio::select! {
            biased;
            _ = abort.cancelled() => {}
            result = AssertUnwindSafe(fut).catch_unwind() => report(result),
        }
    }));
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string panic payload)")
}

/// The status a handler's error goes out as. On the wire, 102 answers a
/// call that was not run (docs/PROTOCOL.md section 3.1), and a caller may
/// make it again elsewhere; a handler's 102 goes out as 500 instead (it
/// may have done work before a connection of its own closed), unless it
/// passes on, unchanged, a call of its own that was never run
/// ([`Status::passed_on`]: a proxy).
fn handler_error(status: Status) -> Status {
    let relayed = status.is_passed_on() && status.never_ran();
    if status.code() != Code::CONNECTION_CLOSED || relayed {
        return status;
    }
    Status::internal(format!(
        "the handler failed on a closed connection of its own (it may have done work): {}",
        status.message()
    ))
}
