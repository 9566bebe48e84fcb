//! What typed services stand on: the [`Service`] a `#[drpc::service]`
//! trait's server implements, the [`Caller`] its client calls through, and
//! the [`ServiceClient`] that holds a client's per-call options.
//!
//! See [`macro@crate::service`] for the macro itself.

use crate::router::{Group, RouteError, Router};
use crate::session::Session;
use crate::streaming::{ItemSink, Items, StreamReply};
use crate::values::{CallOptions, PushOptions, Reply, Status};
use drpc_codec::CodecId;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::time::Duration;

/// A set of routes registered together: what a `#[drpc::service]` trait's
/// generated server (`MathServer` for a trait `Math`) implements. Serve it
/// with [`Router::serve`], or [`Group::serve`] to put its routes under a
/// group's prefix and plugins.
pub trait Service {
    /// Registers every route of the service on `routes`.
    ///
    /// Errors: [`RouteError`] when a route is taken or malformed.
    fn register(self, routes: &mut Group<'_>) -> Result<(), RouteError>;
}

impl Router {
    /// Registers every route of `service`, a typed service's server.
    ///
    /// ```
    /// #[drpc::service]
    /// trait Math {
    ///     async fn add(&self, a: i64, b: i64) -> Result<i64, drpc::Status>;
    /// }
    ///
    /// struct Calculator;
    /// impl Math for Calculator {
    ///     async fn add(&self, a: i64, b: i64) -> Result<i64, drpc::Status> {
    ///         Ok(a + b)
    ///     }
    /// }
    ///
    /// let mut router = drpc::Router::new();
    /// router.serve(MathServer::new(Calculator))?;
    /// assert!(router.routes().any(|(path, _)| path == "/math/add"));
    /// # Ok::<(), drpc::RouteError>(())
    /// ```
    ///
    /// Errors: [`RouteError`] when one of its routes is taken or malformed
    /// (the routes registered before it stay).
    pub fn serve(&mut self, service: impl Service) -> Result<&mut Self, RouteError> {
        service.register(&mut self.group(""))?;
        Ok(self)
    }
}

impl Group<'_> {
    /// Registers every route of `service` under this group's prefix, where
    /// the group's plugins run for them: `group("/v1").serve(MathServer::new(c))`
    /// serves `/v1/math/add`.
    ///
    /// Errors: as [`Router::serve`].
    pub fn serve(&mut self, service: impl Service) -> Result<&mut Self, RouteError> {
        service.register(self)?;
        Ok(self)
    }
}

/// What a typed client calls through: a [`Session`], or anything else that
/// can make calls and pushes (a cluster client picking a session per call).
pub trait Caller: Clone + Send + Sync + 'static {
    /// Calls `service_method` with `arg`, as [`Session::call_with`].
    fn call_with<A, R>(
        &self,
        service_method: &str,
        arg: &A,
        opts: CallOptions,
    ) -> impl Future<Output = Result<Reply<R>, Status>> + Send
    where
        A: Serialize + Sync + ?Sized,
        R: DeserializeOwned + Send;

    /// Pushes `arg` to `service_method`, as [`Session::push_with`].
    fn push_with<A>(
        &self,
        service_method: &str,
        arg: &A,
        opts: PushOptions,
    ) -> impl Future<Output = Result<(), Status>> + Send
    where
        A: Serialize + Sync + ?Sized;

    /// The session to open a stream to `service_method` on: a stream's
    /// items all go over one session, so a caller that spreads calls (a
    /// cluster) picks one per stream.
    fn stream_session(
        &self,
        service_method: &str,
    ) -> impl Future<Output = Result<Session, Status>> + Send;
}

impl Caller for Session {
    fn call_with<A, R>(
        &self,
        service_method: &str,
        arg: &A,
        opts: CallOptions,
    ) -> impl Future<Output = Result<Reply<R>, Status>> + Send
    where
        A: Serialize + Sync + ?Sized,
        R: DeserializeOwned + Send,
    {
        Session::call_with(self, service_method, arg, opts)
    }

    fn push_with<A>(
        &self,
        service_method: &str,
        arg: &A,
        opts: PushOptions,
    ) -> impl Future<Output = Result<(), Status>> + Send
    where
        A: Serialize + Sync + ?Sized,
    {
        Session::push_with(self, service_method, arg, opts)
    }

    fn stream_session(
        &self,
        _service_method: &str,
    ) -> impl Future<Output = Result<Session, Status>> + Send {
        std::future::ready(Ok(self.clone()))
    }
}

/// The state of a typed client: its [`Caller`] and the options its calls
/// and pushes use. A generated client (`MathClient`) wraps one; its
/// `with_*` methods return a copy with changed options, so the common case
/// is `client.add(1, 2)` and the rare one
/// `client.with_timeout(Duration::from_millis(50)).add(1, 2)`.
#[derive(Clone, Debug)]
pub struct ServiceClient<C> {
    caller: C,
    call: CallOptions,
    push: PushOptions,
}

impl<C: Caller> ServiceClient<C> {
    /// A client calling through `caller` with the endpoint's defaults.
    pub fn new(caller: C) -> Self {
        Self {
            caller,
            call: CallOptions::default(),
            push: PushOptions::default(),
        }
    }

    /// What the client calls through.
    pub fn caller(&self) -> &C {
        &self.caller
    }

    /// A copy whose calls wait at most `timeout` for their reply (the
    /// peer's handler sees the same deadline) and whose pushes wait at most
    /// `timeout` for room to be queued.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        let mut c = self.clone();
        c.call = c.call.timeout(timeout);
        c.push = c.push.timeout(timeout);
        c
    }

    /// A copy whose calls and pushes carry the meta pair `key`, `value` (as
    /// well as any set before).
    pub fn with_meta(&self, key: &str, value: &str) -> Self {
        let mut c = self.clone();
        c.call = c.call.meta(key, value);
        c.push = c.push.meta(key, value);
        c
    }

    /// A copy whose calls and pushes encode their bodies with `codec`.
    pub fn with_codec(&self, codec: CodecId) -> Self {
        let mut c = self.clone();
        c.call = c.call.codec(codec);
        c.push = c.push.codec(codec);
        c
    }

    /// A copy whose calls use `opts` whole (pushes keep theirs).
    pub fn with_call_options(&self, opts: CallOptions) -> Self {
        Self {
            call: opts,
            ..self.clone()
        }
    }

    /// Calls `service_method` with `arg` and this client's options; returns
    /// the reply with its meta.
    ///
    /// Errors: as [`Session::call_with`].
    pub async fn call<A, R>(&self, service_method: &str, arg: &A) -> Result<Reply<R>, Status>
    where
        A: Serialize + Sync + ?Sized,
        R: DeserializeOwned + Send,
    {
        self.caller
            .call_with(service_method, arg, self.call.clone())
            .await
    }

    /// Opens a server stream to `service_method` with `arg` and this
    /// client's call options, on the session its caller picks.
    ///
    /// Errors: as [`Session::stream`].
    pub async fn server_stream<A, T>(
        &self,
        service_method: &str,
        arg: &A,
    ) -> Result<Items<T>, Status>
    where
        A: Serialize + Sync + ?Sized,
        T: DeserializeOwned,
    {
        let session = self.caller.stream_session(service_method).await?;
        session.stream(service_method, arg, self.call.clone()).await
    }

    /// Opens a client stream to `service_method`; see
    /// [`Session::client_stream`].
    ///
    /// Errors: as [`Session::stream`].
    pub async fn client_stream<A, T, R>(
        &self,
        service_method: &str,
        arg: &A,
    ) -> Result<(ItemSink<T>, StreamReply<R>), Status>
    where
        A: Serialize + Sync + ?Sized,
        R: DeserializeOwned,
    {
        let session = self.caller.stream_session(service_method).await?;
        session
            .client_stream(service_method, arg, self.call.clone())
            .await
    }

    /// Opens a bidirectional stream to `service_method`; see
    /// [`Session::bidi_stream`].
    ///
    /// Errors: as [`Session::stream`].
    pub async fn bidi_stream<A, T, U>(
        &self,
        service_method: &str,
        arg: &A,
    ) -> Result<(ItemSink<T>, Items<U>), Status>
    where
        A: Serialize + Sync + ?Sized,
        U: DeserializeOwned,
    {
        let session = self.caller.stream_session(service_method).await?;
        session
            .bidi_stream(service_method, arg, self.call.clone())
            .await
    }

    /// Pushes `arg` to `service_method` with this client's options; returns
    /// once the push is queued.
    ///
    /// Errors: as [`Session::push_with`].
    pub async fn push<A>(&self, service_method: &str, arg: &A) -> Result<(), Status>
    where
        A: Serialize + Sync + ?Sized,
    {
        self.caller
            .push_with(service_method, arg, self.push.clone())
            .await
    }
}

/// A type a service method can take or return: anything serde can encode
/// and decode that may cross tasks. Implemented for every such type; the
/// macro checks each argument and result against it, so a type that is not
/// serde is reported at the method that uses it.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an argument or result of a drpc service method",
    label = "not serde-serializable and deserializable",
    note = "derive serde's traits on it: `#[derive(serde::Serialize, serde::Deserialize)]`, or pass bytes as `drpc::Blob`"
)]
pub trait Value: Serialize + DeserializeOwned + Send + Sync + 'static {}

impl<T: Serialize + DeserializeOwned + Send + Sync + 'static> Value for T {}
