//! Server streams (docs/PROTOCOL.md section 3.4): a call whose callee
//! sends a sequence of items before its reply. The caller reads them with
//! [`Session::stream`] as [`Items`]; the callee's handler, registered with
//! [`Router::server_stream`], sends them through an [`ItemSink`]. Items go
//! under credit: a caller that reads slowly holds its callee's sends back,
//! so neither side buffers more than the window (256 items, 16 MiB).

use crate::context::CallCtx;
use crate::core::conn::streams::{ITEMS_KEY, STREAM_KEY, WINDOW_KEY};
use crate::core::inflight::Outcome;
use crate::core::streams::{Next, Role, Window};
use crate::handler::Handling;
use crate::router::{RouteError, Router};
use crate::runtime::link::Link;
use crate::session::calls::deadline_after;
use crate::session::Session;
use crate::values::{decode_body, CallOptions, Status};
use drpc_proto::{Header, Message, Meta};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// The value of `drpc-stream` for a server stream.
const SERVER: &str = "server";

impl Session {
    /// Calls `service_method` as a server stream with `arg`: the callee's
    /// items arrive as [`Items`], then its reply ends them. The call's
    /// deadline (`opts`, or the endpoint's default of 30 s) bounds the
    /// whole stream, so give a long-lived one a long timeout; dropping the
    /// [`Items`] cancels the call at the peer.
    ///
    /// Errors: as [`Session::call_with`], for the call that opens it; 405
    /// when the peer did not say it takes streams (docs/PROTOCOL.md 3.2);
    /// 408 when the deadline passes before the peer said.
    ///
    /// The endpoint's plugins do not see a stream call on this side yet
    /// (their call hooks are not run for it); the callee's do, as a call.
    ///
    /// ```no_run
    /// # async fn demo(session: drpc::Session) -> Result<(), drpc::Status> {
    /// use drpc::CallOptions;
    ///
    /// let mut ticks = session.stream::<_, u64>("/ticks", &10u32, CallOptions::new()).await?;
    /// while let Some(tick) = ticks.next().await {
    ///     println!("tick {}", tick?);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn stream<A, T>(
        &self,
        service_method: &str,
        arg: &A,
        opts: CallOptions,
    ) -> Result<Items<T>, Status>
    where
        A: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let config = &self.shared.ep.config;
        let codec = opts.codec.unwrap_or(config.default_codec);
        let timeout = opts.timeout.unwrap_or(config.default_timeout);
        let deadline = deadline_after(timeout);
        let body = config.codecs.encode(codec, arg).map_err(|e| {
            Status::bad_message(format!(
                "cannot encode the argument of {service_method} as {codec}: {e}"
            ))
        })?;
        let link = self.usable_link(deadline, service_method).await?;
        // A dialer learns what the peer takes from the answer to its hello.
        if link.core().hello_pending() {
            tokio::select! {
                _ = link.hello.cancelled() => {}
                _ = link.finished.cancelled() => {}
                _ = tokio::time::sleep_until(deadline.into()) => {
                    return Err(Status::deadline_exceeded(format!(
                        "{service_method}: the peer did not answer the hello within the deadline"
                    )));
                }
            }
        }
        if !link.core().streams_on() {
            return Err(Status::type_not_allowed(format!(
                "{service_method}: the peer did not say it takes streams (docs/PROTOCOL.md 3.2)"
            )));
        }
        // Any item fits in half the window: the rule of docs/PROTOCOL.md
        // 3.4 (a grant comes once half is read).
        let window = Window {
            bytes: Window::DEFAULT.bytes.max(2 * config.max_frame_len as u64),
            ..Window::DEFAULT
        };
        let mut header = Header::call(0, service_method);
        header.codec = codec;
        header.timeout = Some(timeout);
        header.meta = opts.meta;
        header.meta.insert(STREAM_KEY, SERVER);
        header.meta.insert(WINDOW_KEY, window.value().as_str());
        // No plugin's call hooks run for it yet: a plugin that keeps state
        // from `before_write_call` frees it in `after_call_end`, which a
        // stream does not run (the stream's open and close are to get hooks
        // of their own).
        let mut msg = Message::new(header, body);
        let seq = link.start_stream_call(&mut msg, deadline, window).await?;
        Ok(Items {
            session: self.clone(),
            link,
            seq,
            deadline,
            late: None,
            outcome: None,
            done: false,
            trailers: None,
            _item: PhantomData,
        })
    }
}

/// The items of a server stream, as its caller reads them: each decoded as
/// `T`, in the order sent, then the end. Dropping it before the end
/// cancels the call at the peer.
pub struct Items<T> {
    session: Session,
    link: Arc<Link>,
    seq: u32,
    /// The call's deadline, which still bounds the wait for items the
    /// reply said were sent once the reply is in.
    deadline: Instant,
    late: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The call's outcome, once it came (its reply may precede its last
    /// items over QUIC).
    outcome: Option<Outcome>,
    done: bool,
    trailers: Option<Meta>,
    _item: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Items<T> {
    /// The next item; `None` once the callee ended the stream with a
    /// successful reply. The callee's error, the deadline or a lost
    /// connection end it with `Some(Err(..))`, and `None` after. An item
    /// that does not decode as `T` is `Some(Err(..))` (400), and the
    /// stream goes on.
    pub async fn next(&mut self) -> Option<Result<T, Status>> {
        std::future::poll_fn(|cx| self.poll_item(cx)).await
    }

    /// The meta of the callee's reply, once the stream has ended
    /// successfully (gRPC's trailers). It includes `drpc-items`, the count
    /// of items sent.
    pub fn trailers(&self) -> Option<&Meta> {
        self.trailers.as_ref()
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, Status>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.outcome.is_none() {
            self.outcome = self.link.core().calls.poll(self.seq, |w| match w {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *w = Some(cx.waker().clone()),
            });
        }
        let failed = match &self.outcome {
            Some(Outcome::Failed(status)) => Some(status.clone()),
            Some(Outcome::Expired) => {
                // The peer may still be sending: it stops now.
                self.link.cancel(self.seq);
                Some(Status::deadline_exceeded(
                    "the stream did not end within its call's deadline",
                ))
            }
            _ => None,
        };
        if let Some(status) = failed {
            return Poll::Ready(Some(Err(self.finish(status))));
        }
        match self.link.poll_item(Role::Caller, self.seq, cx) {
            Next::Item(msg, _) => {
                let codecs = &self.session.shared.ep.config.codecs;
                let method = "a stream item";
                Poll::Ready(Some(decode_body(
                    codecs,
                    msg.header.codec,
                    &msg.body,
                    method,
                )))
            }
            Next::Wait(_) => {
                if !matches!(self.outcome, Some(Outcome::Reply(_))) {
                    return Poll::Pending;
                }
                // The reply came before items it counts (QUIC): they are
                // waited for until the call's deadline.
                let deadline = self.deadline;
                let late = self
                    .late
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
                match late.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => Poll::Ready(Some(Err(self
                        .finish(Status::deadline_exceeded(
                        "the stream's reply came, but not every item it counts within the deadline",
                    ))))),
                }
            }
            next @ (Next::End(_) | Next::Gone) => {
                if self.outcome.is_none() {
                    // The reply may have come between the two looks.
                    self.outcome = self.link.core().calls.poll(self.seq, |_| {});
                }
                let reply = match self.outcome.take() {
                    Some(Outcome::Reply(reply)) => reply,
                    _ => {
                        let status = match next {
                            Next::End(Some(status)) => status,
                            _ => Status::connection_closed("the stream's connection is gone"),
                        };
                        return Poll::Ready(Some(Err(self.finish(status))));
                    }
                };
                let outcome = match Link::reply_status(&reply) {
                    Some(status) => Some(Err(self.finish(status))),
                    None => {
                        self.trailers = Some(reply.header.meta.clone());
                        self.finish(Status::ok());
                        None
                    }
                };
                Poll::Ready(outcome)
            }
        }
    }

    /// Marks the stream over, forgets it (and its call) here, and returns
    /// `status`.
    fn finish(&mut self, status: Status) -> Status {
        self.done = true;
        self.link.close_stream(Role::Caller, self.seq);
        self.link.forget(self.seq);
        status
    }
}

impl<T: DeserializeOwned> futures_util::Stream for Items<T> {
    type Item = Result<T, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_item(cx)
    }
}

impl<T> Drop for Items<T> {
    fn drop(&mut self) {
        if !self.done {
            self.link.close_stream(Role::Caller, self.seq);
            if self.outcome.is_none() {
                self.link.cancel(self.seq);
            }
        }
    }
}

impl<T> std::fmt::Debug for Items<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Items")
            .field("seq", &self.seq)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// Where a server stream's handler sends its items: each encoded in the
/// call's codec, sent once the caller's credit allows (so `send` waits for
/// a slow reader, at most until the call's deadline).
pub struct ItemSink<T> {
    link: Arc<Link>,
    seq: u32,
    codec: drpc_codec::CodecId,
    deadline: Instant,
    session: Session,
    _item: PhantomData<fn(&T)>,
}

impl<T> ItemSink<T> {
    /// Sends the items in `codec` rather than the call's: raw bytes
    /// ([`CodecId::RAW`](drpc_codec::CodecId::RAW)) for a byte stream,
    /// say. The reader decodes each item by its own codec byte.
    pub fn with_codec(mut self, codec: drpc_codec::CodecId) -> Self {
        self.codec = codec;
        self
    }

    /// Sends an item already encoded in the sink's codec, as it is: no
    /// copy of `body` is made before it is queued.
    ///
    /// Errors: as [`ItemSink::send`].
    pub async fn send_raw(&self, body: bytes::Bytes) -> Result<(), Status> {
        let msg = Message::new(Header::item(self.seq, 0, 0, self.codec), body);
        self.link.send_item(Role::Callee, msg, self.deadline).await
    }
}

impl<T: Serialize> ItemSink<T> {
    /// Sends `item`, waiting for credit.
    ///
    /// Errors: 408 when the call's deadline passes first; 102 when the
    /// stream or its connection is over; 413 when the item is over the
    /// frame limit; 400 when it cannot be encoded.
    pub async fn send(&self, item: &T) -> Result<(), Status> {
        let codecs = &self.session.shared.ep.config.codecs;
        let body = codecs.encode(self.codec, item).map_err(|e| {
            Status::bad_message(format!(
                "cannot encode a stream item as {}: {e}",
                self.codec
            ))
        })?;
        let msg = Message::new(Header::item(self.seq, 0, 0, self.codec), body);
        self.link.send_item(Role::Callee, msg, self.deadline).await
    }
}

impl<T> std::fmt::Debug for ItemSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ItemSink")
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// Closes the callee's side of a stream when its handler ends, however.
struct Opened {
    link: Arc<Link>,
    seq: u32,
}

impl Drop for Opened {
    fn drop(&mut self) {
        self.link.close_stream(Role::Callee, self.seq);
    }
}

impl Router {
    /// Registers a server stream handler for `path`: it gets the call's
    /// context, its argument and an [`ItemSink`] to send items on. Its
    /// result ends the stream: the reply, with the meta it set on the
    /// context (the caller's [`Items::trailers`]) and `drpc-items`, the
    /// count sent; or its error. A plain call to `path` is answered 400;
    /// callers open it with [`Session::stream`].
    ///
    /// ```
    /// use drpc::{CallCtx, ItemSink, Router, Status};
    ///
    /// let mut router = Router::new();
    /// router.server_stream("/ticks", |_: CallCtx, n: u32, out: ItemSink<u64>| async move {
    ///     for i in 0..u64::from(n) {
    ///         out.send(&i).await?;
    ///     }
    ///     Ok::<_, Status>(())
    /// })?;
    /// # Ok::<(), drpc::RouteError>(())
    /// ```
    pub fn server_stream<F, Fut, A, T>(
        &mut self,
        path: &str,
        handler: F,
    ) -> Result<&mut Self, RouteError>
    where
        F: Fn(CallCtx, A, ItemSink<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Status>> + Send + 'static,
        A: DeserializeOwned + Send + 'static,
        T: Serialize + 'static,
    {
        let handler = Arc::new(handler);
        self.insert_stream(
            path,
            Arc::new(move |ctx: &CallCtx| {
                if ctx.meta().get(STREAM_KEY) != Some(SERVER) {
                    return Err(Status::bad_message(format!(
                        "{} is a server stream: open it as one (drpc-stream: server)",
                        ctx.service_method()
                    )));
                }
                let window = ctx
                    .meta()
                    .get(WINDOW_KEY)
                    .and_then(Window::parse)
                    .ok_or_else(|| {
                        Status::bad_message("a stream call needs a valid drpc-window")
                    })?;
                if !ctx.link().core().streams_on() {
                    // Kinds 5 and 6 would close a peer that never said it
                    // takes them.
                    return Err(Status::bad_message(
                        "a stream call from a peer whose hello did not name stream",
                    ));
                }
                let arg: A = ctx.decode()?;
                let link = ctx.link().clone();
                let seq = ctx.seq();
                link.open_callee_stream(seq, window);
                let opened = Opened {
                    link: link.clone(),
                    seq,
                };
                let sink = ItemSink {
                    link,
                    seq,
                    codec: ctx.codec(),
                    deadline: ctx.deadline(),
                    session: ctx.session().clone(),
                    _item: PhantomData,
                };
                let fut = handler(ctx.clone(), arg, sink);
                let ctx = ctx.clone();
                Ok(Handling::value(async move {
                    let out = fut.await;
                    let sent = opened.link.items_sent(Role::Callee, opened.seq);
                    ctx.set_reply_meta(ITEMS_KEY, &sent.to_string());
                    drop(opened);
                    out
                }))
            }),
        )
    }
}
