//! Routes from service methods to handlers, and the plugins of route
//! groups. The router only maps: decoding arguments is part of a route,
//! but running plugins around it is the dispatcher's business.

use crate::context::{CallCtx, PushCtx};
use crate::handler::{BoxCallFuture, Handling};
use crate::plugin::{BoxFuture, Plugin, Plugins, RouteKind};
use crate::values::Status;
use bytes::Bytes;
use rustc_hash::FxHashMap;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;

/// A call route, erased: decodes the argument at once (a 400 comes back
/// here, before anything runs) and returns the handler's future, not yet
/// polled, so the dispatcher runs the body hooks in between.
pub(crate) type CallFn = Arc<dyn Fn(&CallCtx) -> Result<BoxCallFuture, Status> + Send + Sync>;
/// A push route, erased the same way.
pub(crate) type PushFn =
    Arc<dyn Fn(&PushCtx) -> Result<BoxFuture<'static, ()>, Status> + Send + Sync>;

/// A route as the dispatcher finds it: the handler and the plugins of the
/// groups it belongs to.
#[derive(Clone)]
pub(crate) struct Route<F> {
    pub(crate) handler: F,
    pub(crate) plugins: Plugins,
    /// Its handler takes stream calls (docs/PROTOCOL.md section 3.4);
    /// others refuse them.
    pub(crate) stream: bool,
}

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
    calls: FxHashMap<Box<str>, Route<CallFn>>,
    pushes: FxHashMap<Box<str>, Route<PushFn>>,
    call_fallback: Option<Route<CallFn>>,
    push_fallback: Option<Route<PushFn>>,
    /// Plugins of route groups, by prefix, in the order they were added.
    group_plugins: Vec<(String, Arc<dyn Plugin>)>,
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

/// Whether `path` lies under the group `prefix` (whole segments only:
/// `/math` holds `/math/add`, not `/mathematics`).
fn under(prefix: &str, path: &str) -> bool {
    prefix.is_empty()
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
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
        // Called at the first poll, after the plugins' body hooks, as a
        // route's handler is (its argument decoded first).
        let handler = Arc::new(handler);
        self.set_call_fallback(Arc::new(move |ctx: &CallCtx| {
            let (handler, ctx) = (handler.clone(), ctx.clone());
            Ok(Handling::value(async move { handler(ctx).await }))
        }))
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
        self.set_call_fallback(raw_call(handler))
    }

    fn set_call_fallback(&mut self, f: CallFn) -> Result<&mut Self, RouteError> {
        if self.call_fallback.is_some() {
            return Err(RouteError::Duplicate(String::new()));
        }
        self.call_fallback = Some(Route {
            handler: f,
            plugins: Plugins::default(),
            stream: false,
        });
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
        let f: PushFn = Arc::new(move |ctx: &PushCtx| {
            let fut = handler(ctx.clone());
            Ok(Box::pin(fut) as BoxFuture<'static, ()>)
        });
        self.push_fallback = Some(Route {
            handler: f,
            plugins: Plugins::default(),
            stream: false,
        });
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
        self.insert_call_route(prefix, path, f, false)
    }

    /// Registers a call handler that takes stream calls, for `prefix +
    /// path`.
    pub(crate) fn insert_stream(
        &mut self,
        prefix: &str,
        path: &str,
        f: CallFn,
    ) -> Result<&mut Self, RouteError> {
        self.insert_call_route(prefix, path, f, true)
    }

    fn insert_call_route(
        &mut self,
        prefix: &str,
        path: &str,
        f: CallFn,
        stream: bool,
    ) -> Result<&mut Self, RouteError> {
        let full = insert(&mut self.calls, prefix, path, f)?;
        if let Some(route) = self.calls.get_mut(full.as_str()) {
            route.stream = stream;
        }
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

    /// Gives every route the plugins of the groups it lies under, in the
    /// order they were added: done once, when the endpoint is built.
    pub(crate) fn seal(mut self) -> Self {
        let groups = std::mem::take(&mut self.group_plugins);
        let plugins_of = |path: &str| {
            Plugins::new(
                groups
                    .iter()
                    .filter(|(prefix, _)| under(prefix, path))
                    .map(|(_, p)| p.clone())
                    .collect(),
            )
        };
        for (path, route) in self.calls.iter_mut() {
            route.plugins = plugins_of(path);
        }
        for (path, route) in self.pushes.iter_mut() {
            route.plugins = plugins_of(path);
        }
        self.group_plugins = groups;
        self
    }

    /// The plugins of route groups, with their prefixes.
    pub(crate) fn group_plugins(&self) -> impl Iterator<Item = &Arc<dyn Plugin>> {
        self.group_plugins.iter().map(|(_, p)| p)
    }

    pub(crate) fn find_call(&self, method: &str) -> Option<&Route<CallFn>> {
        self.calls.get(method).or(self.call_fallback.as_ref())
    }

    pub(crate) fn find_push(&self, method: &str) -> Option<&Route<PushFn>> {
        self.pushes.get(method).or(self.push_fallback.as_ref())
    }
}

/// Adds `f` under `prefix + path` unless that path is invalid or taken;
/// returns the full path.
fn insert<F>(
    table: &mut FxHashMap<Box<str>, Route<F>>,
    prefix: &str,
    path: &str,
    f: F,
) -> Result<String, RouteError> {
    let full = join(prefix, path)?;
    if table.contains_key(full.as_str()) {
        return Err(RouteError::Duplicate(full));
    }
    table.insert(
        full.as_str().into(),
        Route {
            handler: f,
            plugins: Plugins::default(),
            stream: false,
        },
    );
    Ok(full)
}

/// Erases a handler of encoded bytes.
fn raw_call<F, Fut>(handler: F) -> CallFn
where
    F: Fn(CallCtx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, Status>> + Send + 'static,
{
    Arc::new(move |ctx: &CallCtx| Ok(Handling::bytes(handler(ctx.clone()))))
}

/// Erases a typed handler: the argument is decoded now (400 on failure);
/// the future runs the handler, whose value is encoded when the reply is
/// queued.
fn typed_call<F, Fut, A, R>(handler: F) -> CallFn
where
    F: Fn(CallCtx, A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, Status>> + Send + 'static,
    A: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
{
    Arc::new(move |ctx: &CallCtx| {
        let arg: A = ctx.decode()?;
        Ok(Handling::value(handler(ctx.clone(), arg)))
    })
}

fn typed_push<F, Fut, A>(handler: F) -> PushFn
where
    F: Fn(PushCtx, A) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
    A: DeserializeOwned + Send + 'static,
{
    Arc::new(move |ctx: &PushCtx| {
        let arg: A = ctx.decode()?;
        Ok(Box::pin(handler(ctx.clone(), arg)) as BoxFuture<'static, ()>)
    })
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

    /// Registers a handler that takes stream calls for `prefix + path`.
    pub(crate) fn insert_stream(&mut self, path: &str, f: CallFn) -> Result<&mut Self, RouteError> {
        self.router.insert_stream(&self.prefix, path, f)?;
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

    /// Runs `plugin` for the calls and pushes of every route under this
    /// group's prefix (registered before or after), and for no other, as
    /// DMicro's and erpc's `SubRoute(prefix, plugins...)` do. It runs after
    /// the endpoint's plugins, at every per-message hook from routing on:
    /// its [`Plugin::after_read_call_header`] runs once the call is routed
    /// (so a rewrite of the service method there does not route it again),
    /// and its [`Plugin::handle_call`] state starts then. Session and
    /// endpoint hooks are not run for group plugins.
    ///
    /// ```
    /// use drpc::{CallCtx, Plugin, Router, Session, Status};
    /// use drpc::proto::Message;
    ///
    /// struct AdminOnly;
    /// impl Plugin for AdminOnly {
    ///     fn after_read_call_header(&self, _: &Session, m: &mut Message) -> Result<(), Status> {
    ///         match m.header.meta.get("role") {
    ///             Some("admin") => Ok(()),
    ///             _ => Err(Status::unauthorized("admins only")),
    ///         }
    ///     }
    /// }
    ///
    /// let mut router = Router::new();
    /// router.call("/public/time", |_: CallCtx, _: ()| async { Ok::<_, Status>(0u64) })?;
    /// router
    ///     .group("/admin")
    ///     .plugin(AdminOnly)
    ///     .call("/stop", |_: CallCtx, _: ()| async { Ok::<_, Status>(()) })?;
    /// # Ok::<(), drpc::RouteError>(())
    /// ```
    pub fn plugin(&mut self, plugin: impl Plugin) -> &mut Self {
        self.plugin_arc(Arc::new(plugin))
    }

    /// Like [`Group::plugin`], for a plugin the caller also keeps.
    pub fn plugin_arc(&mut self, plugin: Arc<dyn Plugin>) -> &mut Self {
        self.router
            .group_plugins
            .push((self.prefix.clone(), plugin));
        self
    }

    /// A nested group: `group("/a").group("/b")` registers under `/a/b`.
    pub fn group(&mut self, prefix: &str) -> Group<'_> {
        Group {
            prefix: format!("{}{}", self.prefix, prefix.trim_end_matches('/')),
            router: self.router,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named(&'static str);
    impl Plugin for Named {
        fn name(&self) -> &str {
            self.0
        }
    }

    fn names(p: &Plugins) -> Vec<String> {
        p.iter().map(|p| p.name().to_string()).collect()
    }

    #[test]
    fn group_plugins_reach_exactly_the_routes_under_their_prefix() {
        let mut r = Router::new();
        let ok = |_: CallCtx, _: ()| async { Ok::<_, Status>(()) };
        r.call("/mathematics", ok).unwrap();
        r.group("/math")
            .plugin(Named("math"))
            .call("/add", ok)
            .unwrap();
        r.group("/math").group("/deep").plugin(Named("deep"));
        r.call("/math/deep/x", ok).unwrap();
        r.push("/math/note", |_: PushCtx, _: ()| async {}).unwrap();
        let r = r.seal();
        assert_eq!(names(&r.find_call("/math/add").unwrap().plugins), ["math"]);
        assert_eq!(
            names(&r.find_call("/math/deep/x").unwrap().plugins),
            ["math", "deep"]
        );
        assert_eq!(names(&r.find_push("/math/note").unwrap().plugins), ["math"]);
        assert!(r.find_call("/mathematics").unwrap().plugins.is_empty());
        assert!(r.find_call("/nowhere").is_none());
    }
}
