//! Routes from service methods to handlers.

use crate::plugin::{BoxFuture, RouteKind};
use crate::{CallCtx, PushCtx, Status};
use bytes::Bytes;
use rustc_hash::FxHashMap;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;

/// What a call handler produces: the encoded reply body, or a status.
pub(crate) type CallOutput = Result<Bytes, Status>;
pub(crate) type CallFn = Arc<dyn Fn(CallCtx) -> BoxFuture<'static, CallOutput> + Send + Sync>;
pub(crate) type PushFn = Arc<dyn Fn(PushCtx) -> BoxFuture<'static, ()> + Send + Sync>;

/// Why a route could not be registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// A handler is already registered for this service method (or the
    /// fallback is already set).
    Duplicate(String),
    /// The service method is not a valid path.
    InvalidPath {
        /// The path given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl std::fmt::Display for RouteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Duplicate(p) if p.is_empty() => write!(f, "the fallback is already set"),
            Self::Duplicate(p) => write!(f, "a handler for {p} is already registered"),
            Self::InvalidPath { path, reason } => {
                write!(f, "invalid service method {path:?}: {reason}")
            }
        }
    }
}

impl std::error::Error for RouteError {}

/// Maps service methods to handlers.
///
/// Handlers are plain async functions or closures that take a context and a
/// typed argument, decoded by the framework with the message's codec:
///
/// ```
/// use drpc::{CallCtx, PushCtx, Router, Status};
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct Add { a: i64, b: i64 }
///
/// async fn add(_ctx: CallCtx, args: Add) -> Result<i64, Status> {
///     Ok(args.a + args.b)
/// }
///
/// let mut router = Router::new();
/// router.group("/math").call("/add", add)?;
/// router.push("/chat/message", |ctx: PushCtx, text: String| async move {
///     println!("{} says {text}", ctx.session().id());
/// })?;
/// router.call_fallback(|ctx: CallCtx| async move {
///     Err::<(), _>(Status::not_found(format!("nothing at {}", ctx.service_method())))
/// })?;
/// assert!(router.call("/math/add", add).is_err()); // duplicates are errors
/// # Ok::<(), drpc::RouteError>(())
/// ```
#[derive(Default, Clone)]
pub struct Router {
    calls: FxHashMap<Box<str>, CallFn>,
    pushes: FxHashMap<Box<str>, PushFn>,
    call_fallback: Option<CallFn>,
    push_fallback: Option<PushFn>,
    /// Every registration in order, for the `after_register` hook.
    order: Vec<(String, RouteKind)>,
}

fn join(prefix: &str, path: &str) -> Result<String, RouteError> {
    let full = format!("{}{}", prefix.trim_end_matches('/'), path);
    let invalid = |reason| {
        Err(RouteError::InvalidPath {
            path: full.clone(),
            reason,
        })
    };
    if !path.starts_with('/') {
        return invalid("must start with '/'");
    }
    if full.len() > 1 && full.ends_with('/') {
        return invalid("must not end with '/'");
    }
    if full.contains("//") {
        return invalid("must not contain an empty segment");
    }
    if full.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return invalid("must not contain whitespace or control characters");
    }
    if full.len() > u16::MAX as usize {
        return invalid("is longer than 65535 bytes");
    }
    Ok(full)
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a call handler for `path`.
    pub fn call<F, Fut, A, R>(&mut self, path: &str, handler: F) -> Result<&mut Self, RouteError>
    where
        F: Fn(CallCtx, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, Status>> + Send + 'static,
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
    {
        self.insert_call("", path, typed_call(handler))
    }

    /// Registers a call handler for `path` that works on encoded bytes: it
    /// reads the body with [`Incoming::body`](crate::Incoming::body) and returns the reply body
    /// already encoded in [`CallCtx::reply_codec`] (the call's codec unless
    /// it sets another). For echoes, proxies and gateways that pass bodies
    /// through without decoding them.
    ///
    /// ```
    /// use drpc::{CallCtx, Router};
    ///
    /// let mut router = Router::new();
    /// // Returns the argument unchanged, in whatever codec it came.
    /// router.call_raw("/echo", |ctx: CallCtx| async move { Ok(ctx.body().clone()) })?;
    /// # Ok::<(), drpc::RouteError>(())
    /// ```
    pub fn call_raw<F, Fut>(&mut self, path: &str, handler: F) -> Result<&mut Self, RouteError>
    where
        F: Fn(CallCtx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Bytes, Status>> + Send + 'static,
    {
        self.insert_call("", path, raw_call(handler))
    }

    /// Registers a push handler for `path`.
    pub fn push<F, Fut, A>(&mut self, path: &str, handler: F) -> Result<&mut Self, RouteError>
    where
        F: Fn(PushCtx, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
        A: DeserializeOwned + Send + 'static,
    {
        self.insert_push("", path, typed_push(handler))
    }

    /// A view that registers under `prefix`: `group("/math").call("/add", h)`
    /// registers `/math/add`.
    pub fn group(&mut self, prefix: &str) -> Group<'_> {
        Group {
            router: self,
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    /// Sets the handler of calls whose service method has no route. It gets
    /// the raw body through [`Incoming::body`](crate::Incoming::body) and decodes it on demand with
    /// [`Incoming::decode`](crate::Incoming::decode). Without one, such calls are answered with 404.
    pub fn call_fallback<F, Fut, R>(&mut self, handler: F) -> Result<&mut Self, RouteError>
    where
        F: Fn(CallCtx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, Status>> + Send + 'static,
        R: Serialize + Send + 'static,
    {
        if self.call_fallback.is_some() {
            return Err(RouteError::Duplicate(String::new()));
        }
        let handler = Arc::new(handler);
        self.call_fallback = Some(raw_call(move |ctx: CallCtx| {
            let handler = handler.clone();
            async move {
                let value = handler(ctx.clone()).await?;
                ctx.encode_reply(&value)
            }
        }));
        self.order.push((String::new(), RouteKind::CallFallback));
        Ok(self)
    }

    /// Like [`Router::call_fallback`], but the handler returns the reply
    /// body already encoded, sent as it is in the codec the handler sets
    /// with [`CallCtx::set_reply_codec`] (by default the call's): for
    /// pass-through, such as a proxy.
    pub fn call_fallback_raw<F, Fut>(&mut self, handler: F) -> Result<&mut Self, RouteError>
    where
        F: Fn(CallCtx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Bytes, Status>> + Send + 'static,
    {
        if self.call_fallback.is_some() {
            return Err(RouteError::Duplicate(String::new()));
        }
        self.call_fallback = Some(raw_call(handler));
        self.order.push((String::new(), RouteKind::CallFallback));
        Ok(self)
    }

    /// Sets the handler of pushes whose service method has no route. Without
    /// one, such pushes are dropped and logged at debug level.
    pub fn push_fallback<F, Fut>(&mut self, handler: F) -> Result<&mut Self, RouteError>
    where
        F: Fn(PushCtx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if self.push_fallback.is_some() {
            return Err(RouteError::Duplicate(String::new()));
        }
        let handler = Arc::new(handler);
        self.push_fallback = Some(Arc::new(move |ctx: PushCtx| {
            let handler = handler.clone();
            Box::pin(async move {
                if run_push_body_hooks(&ctx) {
                    handler(ctx).await;
                }
            })
        }));
        self.order.push((String::new(), RouteKind::PushFallback));
        Ok(self)
    }

    /// Every registered route in registration order.
    pub fn routes(&self) -> impl Iterator<Item = (&str, RouteKind)> {
        self.order.iter().map(|(p, k)| (p.as_str(), *k))
    }

    fn insert_call(
        &mut self,
        prefix: &str,
        path: &str,
        f: CallFn,
    ) -> Result<&mut Self, RouteError> {
        let full = insert(&mut self.calls, prefix, path, f)?;
        self.order.push((full, RouteKind::Call));
        Ok(self)
    }

    fn insert_push(
        &mut self,
        prefix: &str,
        path: &str,
        f: PushFn,
    ) -> Result<&mut Self, RouteError> {
        let full = insert(&mut self.pushes, prefix, path, f)?;
        self.order.push((full, RouteKind::Push));
        Ok(self)
    }

    pub(crate) fn find_call(&self, method: &str) -> Option<&CallFn> {
        self.calls.get(method).or(self.call_fallback.as_ref())
    }

    pub(crate) fn find_push(&self, method: &str) -> Option<&PushFn> {
        self.pushes.get(method).or(self.push_fallback.as_ref())
    }
}

/// Adds `f` under `prefix + path` unless that path is invalid or taken;
/// returns the full path.
fn insert<F>(
    table: &mut FxHashMap<Box<str>, F>,
    prefix: &str,
    path: &str,
    f: F,
) -> Result<String, RouteError> {
    let full = join(prefix, path)?;
    if table.contains_key(full.as_str()) {
        return Err(RouteError::Duplicate(full));
    }
    table.insert(full.as_str().into(), f);
    Ok(full)
}

/// Erases a handler of encoded bytes; the body hooks run before it.
fn raw_call<F, Fut>(handler: F) -> CallFn
where
    F: Fn(CallCtx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, Status>> + Send + 'static,
{
    let handler = Arc::new(handler);
    Arc::new(move |ctx: CallCtx| {
        let handler = handler.clone();
        Box::pin(async move {
            ctx.session()
                .plugins()
                .try_each(|p| p.after_read_call_body(&ctx))?;
            handler(ctx).await
        })
    })
}

/// Erases a typed handler: decode the argument (400 on failure), run the
/// body hooks, run the handler, encode its value with the reply codec.
fn typed_call<F, Fut, A, R>(handler: F) -> CallFn
where
    F: Fn(CallCtx, A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, Status>> + Send + 'static,
    A: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
{
    let handler = Arc::new(handler);
    Arc::new(move |ctx: CallCtx| {
        let handler = handler.clone();
        Box::pin(async move {
            let arg: A = ctx.decode()?;
            ctx.session()
                .plugins()
                .try_each(|p| p.after_read_call_body(&ctx))?;
            let value = handler(ctx.clone(), arg).await?;
            ctx.encode_reply(&value)
        })
    })
}

fn typed_push<F, Fut, A>(handler: F) -> PushFn
where
    F: Fn(PushCtx, A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
    A: DeserializeOwned + Send + 'static,
{
    let handler = Arc::new(handler);
    Arc::new(move |ctx: PushCtx| {
        let handler = handler.clone();
        Box::pin(async move {
            let arg: A = match ctx.decode() {
                Ok(arg) => arg,
                Err(status) => {
                    tracing::debug!(session = %ctx.session().id(), method = ctx.service_method(), %status, "push dropped");
                    return;
                }
            };
            if run_push_body_hooks(&ctx) {
                handler(ctx, arg).await;
            }
        })
    })
}

fn run_push_body_hooks(ctx: &PushCtx) -> bool {
    match ctx
        .session()
        .plugins()
        .try_each(|p| p.after_read_push_body(ctx))
    {
        Ok(()) => true,
        Err(status) => {
            tracing::debug!(session = %ctx.session().id(), method = ctx.service_method(), %status, "push refused by a plugin");
            false
        }
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.routes()).finish()
    }
}

/// Registers routes under a common prefix; made by [`Router::group`].
pub struct Group<'r> {
    router: &'r mut Router,
    prefix: String,
}

impl Group<'_> {
    /// Registers a call handler for `prefix + path`.
    pub fn call<F, Fut, A, R>(&mut self, path: &str, handler: F) -> Result<&mut Self, RouteError>
    where
        F: Fn(CallCtx, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, Status>> + Send + 'static,
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
    {
        self.router
            .insert_call(&self.prefix, path, typed_call(handler))?;
        Ok(self)
    }

    /// Registers a handler of encoded bytes for `prefix + path`; see
    /// [`Router::call_raw`].
    pub fn call_raw<F, Fut>(&mut self, path: &str, handler: F) -> Result<&mut Self, RouteError>
    where
        F: Fn(CallCtx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Bytes, Status>> + Send + 'static,
    {
        self.router
            .insert_call(&self.prefix, path, raw_call(handler))?;
        Ok(self)
    }

    /// Registers a push handler for `prefix + path`.
    pub fn push<F, Fut, A>(&mut self, path: &str, handler: F) -> Result<&mut Self, RouteError>
    where
        F: Fn(PushCtx, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
        A: DeserializeOwned + Send + 'static,
    {
        self.router
            .insert_push(&self.prefix, path, typed_push(handler))?;
        Ok(self)
    }

    /// A nested group: `group("/a").group("/b")` registers under `/a/b`.
    pub fn group(&mut self, prefix: &str) -> Group<'_> {
        Group {
            prefix: format!("{}{}", self.prefix, prefix.trim_end_matches('/')),
            router: self.router,
        }
    }
}
