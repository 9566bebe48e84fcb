//! Stream handlers: the routes that serve server, client and
//! bidirectional streams, and the stream each opens for its call.

use super::{receive_window, ItemSink, Items, Kind, Opened};
use crate::context::CallCtx;
use crate::core::conn::streams::{ITEMS_KEY, STREAM_KEY, WINDOW_KEY};
use crate::core::streams::{Role, Window};
use crate::handler::{BoxCallFuture, Handling};
use crate::router::{CallFn, Group, RouteError, Router};
use crate::runtime::link::Link;
use crate::values::Status;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;

/// The callee's side of a stream while its handler runs: closed when the
/// handler ends, however (its return, a panic, a cancel).
struct Serving {
    link: Arc<Link>,
    seq: u32,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.link.close_stream(Role::Callee, self.seq);
    }
}

/// Checks that `ctx` opens a stream of `kind` and opens this side's part
/// of it (the first credit goes now when the caller sends items); returns
/// the argument and the stream, as it is described to sinks.
fn open<A: DeserializeOwned>(ctx: &CallCtx, kind: Kind) -> Result<(A, Opened, Serving), Status> {
    if ctx.meta().get(STREAM_KEY) != Some(kind.value()) {
        return Err(Status::bad_message(format!(
            "{} is a {} stream: open it as one (drpc-stream: {})",
            ctx.service_method(),
            kind.value(),
            kind.value()
        )));
    }
    let send = match kind.callee_sends() {
        true => Some(
            ctx.meta()
                .get(WINDOW_KEY)
                .and_then(Window::parse)
                .ok_or_else(|| Status::bad_message("a stream call needs a valid drpc-window"))?,
        ),
        false => None,
    };
    if !ctx.link().core().streams_on() {
        // Kinds 5 and 6 would close a peer that never said it takes them.
        return Err(Status::bad_message(
            "a stream call from a peer whose hello did not name stream",
        ));
    }
    let arg: A = ctx.decode()?;
    let link = ctx.link().clone();
    let seq = ctx.seq();
    let config = &ctx.session().shared.ep.config;
    let receive = kind.caller_sends().then(|| receive_window(config));
    link.open_callee_stream(seq, send, receive);
    let serving = Serving {
        link: link.clone(),
        seq,
    };
    let opened = Opened {
        link,
        seq,
        deadline: ctx.deadline(),
        codec: ctx.codec(),
        hooks: None,
    };
    Ok((arg, opened, serving))
}

/// Runs a stream handler's future to its reply: `drpc-items` counts the
/// items it sent, and its stream closes.
fn serve<Fut, R>(ctx: &CallCtx, serving: Serving, fut: Fut) -> BoxCallFuture
where
    Fut: Future<Output = Result<R, Status>> + Send + 'static,
    R: Serialize + Send + 'static,
{
    let ctx = ctx.clone();
    Handling::value(async move {
        let out = fut.await;
        let sent = serving.link.items_sent(Role::Callee, serving.seq);
        ctx.set_reply_meta(ITEMS_KEY, &sent.to_string());
        drop(serving);
        out
    })
}

/// The route function of a server stream handler.
fn server_fn<F, Fut, A, T>(handler: F) -> CallFn
where
    F: Fn(CallCtx, A, ItemSink<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Status>> + Send + 'static,
    A: DeserializeOwned + Send + 'static,
    T: Serialize + 'static,
{
    Arc::new(move |ctx: &CallCtx| {
        let (arg, opened, serving) = open(ctx, Kind::Server)?;
        let sink = ItemSink::of_callee(ctx.session(), &opened);
        Ok(serve(ctx, serving, handler(ctx.clone(), arg, sink)))
    })
}

/// The route function of a client stream handler.
fn client_fn<F, Fut, A, T, R>(handler: F) -> CallFn
where
    F: Fn(CallCtx, A, Items<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, Status>> + Send + 'static,
    A: DeserializeOwned + Send + 'static,
    T: DeserializeOwned + 'static,
    R: Serialize + Send + 'static,
{
    Arc::new(move |ctx: &CallCtx| {
        let (arg, opened, serving) = open(ctx, Kind::Client)?;
        let items = Items::of_callee(ctx.session(), opened.link, opened.seq);
        Ok(serve(ctx, serving, handler(ctx.clone(), arg, items)))
    })
}

/// The route function of a bidirectional stream handler.
fn bidi_fn<F, Fut, A, T, U>(handler: F) -> CallFn
where
    F: Fn(CallCtx, A, Items<T>, ItemSink<U>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Status>> + Send + 'static,
    A: DeserializeOwned + Send + 'static,
    T: DeserializeOwned + 'static,
    U: Serialize + 'static,
{
    Arc::new(move |ctx: &CallCtx| {
        let (arg, opened, serving) = open(ctx, Kind::Bidi)?;
        let sink = ItemSink::of_callee(ctx.session(), &opened);
        let items = Items::of_callee(ctx.session(), opened.link, opened.seq);
        Ok(serve(ctx, serving, handler(ctx.clone(), arg, items, sink)))
    })
}

impl Router {
    /// Registers a server stream handler for `path`: it gets the call's
    /// context, its argument and an [`ItemSink`] to send items on. Its
    /// result ends the stream: the reply, with the meta it set on the
    /// context (the caller's [`Items::trailers`]) and `drpc-items`, the
    /// count sent; or its error. A plain call to `path` is answered 400;
    /// callers open it with [`Session::stream`](crate::Session::stream).
    ///
    /// ```
    /// use drpc::{CallCtx, ItemSink, Router, Status};
    ///
    /// let mut router = Router::new();
    /// router.server_stream("/ticks", |_: CallCtx, n: u32, mut out: ItemSink<u64>| async move {
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
        self.insert_stream("", path, server_fn(handler))
    }

    /// Registers a client stream handler for `path`: it gets the call's
    /// context, its argument and the caller's [`Items`], and answers once
    /// with its result, which it may return before reading every item (the
    /// caller's further sends then fail). Callers open it with
    /// [`Session::client_stream`](crate::Session::client_stream); a plain
    /// call to `path` is answered 400.
    ///
    /// ```
    /// use drpc::{CallCtx, Items, Router, Status};
    ///
    /// let mut router = Router::new();
    /// router.client_stream("/sum", |_: CallCtx, _: (), mut items: Items<u64>| async move {
    ///     let mut sum = 0;
    ///     while let Some(n) = items.next().await {
    ///         sum += n?;
    ///     }
    ///     Ok::<_, Status>(sum)
    /// })?;
    /// # Ok::<(), drpc::RouteError>(())
    /// ```
    pub fn client_stream<F, Fut, A, T, R>(
        &mut self,
        path: &str,
        handler: F,
    ) -> Result<&mut Self, RouteError>
    where
        F: Fn(CallCtx, A, Items<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, Status>> + Send + 'static,
        A: DeserializeOwned + Send + 'static,
        T: DeserializeOwned + 'static,
        R: Serialize + Send + 'static,
    {
        self.insert_stream("", path, client_fn(handler))
    }

    /// Registers a bidirectional stream handler for `path`: it gets the
    /// call's context, its argument, the caller's [`Items`] and an
    /// [`ItemSink`] for its own. The two directions are independent; its
    /// result ends the call, as a server stream's does. Callers open it
    /// with [`Session::bidi_stream`](crate::Session::bidi_stream).
    ///
    /// ```
    /// use drpc::{CallCtx, ItemSink, Items, Router, Status};
    ///
    /// let mut router = Router::new();
    /// router.bidi_stream(
    ///     "/echo",
    ///     |_: CallCtx, _: (), mut items: Items<String>, mut out: ItemSink<String>| async move {
    ///         while let Some(line) = items.next().await {
    ///             out.send(&line?).await?;
    ///         }
    ///         Ok::<_, Status>(())
    ///     },
    /// )?;
    /// # Ok::<(), drpc::RouteError>(())
    /// ```
    pub fn bidi_stream<F, Fut, A, T, U>(
        &mut self,
        path: &str,
        handler: F,
    ) -> Result<&mut Self, RouteError>
    where
        F: Fn(CallCtx, A, Items<T>, ItemSink<U>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Status>> + Send + 'static,
        A: DeserializeOwned + Send + 'static,
        T: DeserializeOwned + 'static,
        U: Serialize + 'static,
    {
        self.insert_stream("", path, bidi_fn(handler))
    }
}

impl Group<'_> {
    /// Registers a server stream handler for `prefix + path`; see
    /// [`Router::server_stream`].
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
        self.insert_stream(path, server_fn(handler))
    }

    /// Registers a client stream handler for `prefix + path`; see
    /// [`Router::client_stream`].
    pub fn client_stream<F, Fut, A, T, R>(
        &mut self,
        path: &str,
        handler: F,
    ) -> Result<&mut Self, RouteError>
    where
        F: Fn(CallCtx, A, Items<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, Status>> + Send + 'static,
        A: DeserializeOwned + Send + 'static,
        T: DeserializeOwned + 'static,
        R: Serialize + Send + 'static,
    {
        self.insert_stream(path, client_fn(handler))
    }

    /// Registers a bidirectional stream handler for `prefix + path`; see
    /// [`Router::bidi_stream`].
    pub fn bidi_stream<F, Fut, A, T, U>(
        &mut self,
        path: &str,
        handler: F,
    ) -> Result<&mut Self, RouteError>
    where
        F: Fn(CallCtx, A, Items<T>, ItemSink<U>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Status>> + Send + 'static,
        A: DeserializeOwned + Send + 'static,
        T: DeserializeOwned + 'static,
        U: Serialize + 'static,
    {
        self.insert_stream(path, bidi_fn(handler))
    }
}
