//! What handlers receive.

use crate::runtime::link::Link;
use crate::runtime::scope;
use crate::session::Session;
use crate::values::{decode_body, Status, Storage};
use bytes::Bytes;
use drpc_codec::CodecId;
use drpc_proto::{Header, Message, Meta};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use std::any::Any;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// An incoming call or push: its session, header and raw body. Both
/// [`CallCtx`] and [`PushCtx`] dereference to it, so these accessors work on
/// either.
pub struct Incoming {
    session: Session,
    /// As the reader decoded it: handed over as the pointer it came as.
    msg: Box<Message>,
    /// Plugins' values for this one message; made on first use, as most
    /// messages never have any.
    values: Mutex<Option<Storage>>,
}

impl Incoming {
    /// The session the message arrived on; a handler can call or push back
    /// on it.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The full header.
    pub fn header(&self) -> &Header {
        &self.msg.header
    }

    /// The service method, such as `/math/add`.
    pub fn service_method(&self) -> &str {
        &self.msg.header.service_method
    }

    /// The meta the sender attached.
    pub fn meta(&self) -> &Meta {
        &self.msg.header.meta
    }

    /// The codec of the body.
    pub fn codec(&self) -> CodecId {
        self.msg.header.codec
    }

    /// The encoded body, as it arrived.
    pub fn body(&self) -> &Bytes {
        &self.msg.body
    }

    /// Decodes the body with its codec; a fallback handler uses it to read a
    /// body on demand. Fails with 400.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, Status> {
        let codecs = &self.session().shared.ep.config.codecs;
        decode_body(codecs, self.codec(), &self.msg.body, self.service_method())
    }

    /// Stores `value` with this message, replacing (and returning) any
    /// value of the same type: state a plugin keeps for one call or push,
    /// from a read hook to [`Plugin::after_push_handler`] or to the calls
    /// the handler makes (see [`Incoming::with_current`]). It goes away
    /// with the message.
    ///
    /// [`Plugin::after_push_handler`]: crate::Plugin::after_push_handler
    pub fn set_value<T: Send + Sync + 'static>(&self, value: T) -> Option<T> {
        self.values
            .lock()
            .get_or_insert_with(Storage::default)
            .insert(value)
    }

    /// A clone of the stored value of type `T`, if any.
    pub fn value<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.values.lock().as_ref()?.get::<T>().cloned()
    }

    /// Removes and returns the stored value of type `T`.
    pub fn remove_value<T: Send + Sync + 'static>(&self) -> Option<T> {
        self.values.lock().as_mut()?.remove::<T>()
    }

    /// Runs `f` with the call or push whose handler is running on this
    /// task, or `None` outside any handler.
    ///
    /// This is how a plugin links what a handler sends to what it is
    /// handling: a hook such as [`Plugin::before_write_call`] runs on the
    /// caller's task, so when a handler calls another service, the hook
    /// sees the incoming message here (the `Tracing` plugin of
    /// drpc-plugins carries the trace on this way). A task the handler
    /// spawns is not the handler's: there it is `None`.
    ///
    /// [`Plugin::before_write_call`]: crate::Plugin::before_write_call
    ///
    /// ```
    /// use drpc::{Incoming, Plugin, Session, Status};
    /// use drpc::proto::Message;
    ///
    /// /// Passes an incoming `request-id` on to the calls its handler makes.
    /// struct RequestId;
    ///
    /// impl Plugin for RequestId {
    ///     fn before_write_call(&self, _: &Session, msg: &mut Message) -> Result<(), Status> {
    ///         let id = Incoming::with_current(|incoming| {
    ///             incoming.and_then(|m| m.meta().get("request-id")).map(str::to_string)
    ///         });
    ///         if let Some(id) = id {
    ///             msg.header.meta.insert("request-id", id);
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// ```
    pub fn with_current<R>(f: impl FnOnce(Option<&Incoming>) -> R) -> R {
        // A clone of the handle (an `Arc`), so `f` runs outside the
        // task-local's borrow.
        let current = scope::message();
        let incoming = current.as_deref().and_then(|m| {
            let m: &dyn Any = m;
            m.downcast_ref::<CallInner>()
                .map(|c| &c.msg)
                .or_else(|| m.downcast_ref::<Incoming>())
        });
        f(incoming)
    }
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("session", &self.session.id())
            .field("header", &self.msg.header)
            .finish_non_exhaustive()
    }
}

/// The context of an incoming call: the message (see [`Incoming`], which
/// this dereferences to), its deadline, and the settings of its reply.
/// Cheap to clone.
///
/// The deadline is a [`std::time::Instant`], measured from when the call
/// was read, plus the timeout the caller sent (or the endpoint's default).
#[derive(Clone, Debug)]
pub struct CallCtx {
    inner: Arc<CallInner>,
}

#[derive(Debug)]
struct CallInner {
    msg: Incoming,
    /// The connection the call came on: its reply, and its stream's
    /// items, go back on it.
    link: Arc<Link>,
    deadline: Instant,
    reply: Mutex<ReplyParts>,
    /// Made when first needed: most handlers finish before anyone asks.
    cancel: OnceLock<CancellationToken>,
}

#[derive(Default, Debug)]
struct ReplyParts {
    meta: Meta,
    codec: Option<CodecId>,
}

impl CallCtx {
    pub(crate) fn new(
        session: Session,
        link: Arc<Link>,
        msg: Box<Message>,
        deadline: Instant,
    ) -> Self {
        Self {
            inner: Arc::new(CallInner {
                link,
                msg: Incoming {
                    session,
                    msg,
                    values: Mutex::default(),
                },
                deadline,
                reply: Mutex::new(ReplyParts::default()),
                cancel: OnceLock::new(),
            }),
        }
    }

    /// The call's sequence number on its session.
    pub fn seq(&self) -> u32 {
        self.header().seq
    }

    /// When the caller stops waiting. A handler still running then is
    /// cancelled and the call is answered with 408.
    pub fn deadline(&self) -> Instant {
        self.inner.deadline
    }

    /// Resolves when the call ends without its handler's answer: the
    /// caller cancelled it (it dropped the call, or its deadline passed),
    /// the call's deadline passed here, or the connection was dropped at
    /// once. The handler's own future is dropped then, so this is for
    /// work the handler started elsewhere (a spawned task, a stream) to
    /// stop and clean up. It never resolves for a call that is answered.
    /// The future owns what it needs: move it into that work.
    ///
    /// ```
    /// use drpc::{CallCtx, Status};
    ///
    /// async fn report(ctx: CallCtx) -> Result<String, Status> {
    ///     let cancelled = ctx.cancelled();
    ///     tokio::spawn(async move {
    ///         tokio::select! {
    ///             _ = cancelled => { /* the caller gave up: roll back */ }
    ///             _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
    ///         }
    ///     });
    ///     Ok("started".into())
    /// }
    /// ```
    pub fn cancelled(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.cancel_token().clone().cancelled_owned()
    }

    /// Whether [`CallCtx::cancelled`] has resolved.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.get().is_some_and(|t| t.is_cancelled())
    }

    /// The connection the call came on.
    pub(crate) fn link(&self) -> &Arc<Link> {
        &self.inner.link
    }

    /// The call's cancel token, made on first use.
    pub(crate) fn cancel_token(&self) -> &CancellationToken {
        self.inner.cancel.get_or_init(CancellationToken::new)
    }

    /// The time left until [`CallCtx::deadline`], zero once it has passed.
    pub fn remaining(&self) -> Duration {
        // tokio's clock, so a test on a paused clock sees its own time.
        let now = tokio::time::Instant::now().into_std();
        self.inner.deadline.saturating_duration_since(now)
    }

    /// The message as an `Arc` of anything, for the handler scope.
    pub(crate) fn as_any(&self) -> Arc<dyn Any + Send + Sync> {
        self.inner.clone()
    }

    /// Adds a key/value pair to the reply's meta.
    pub fn set_reply_meta(&self, key: &str, value: &str) {
        self.inner.reply.lock().meta.insert(key, value);
    }

    /// Makes the reply use `codec` instead of the call's codec.
    pub fn set_reply_codec(&self, codec: CodecId) {
        self.inner.reply.lock().codec = Some(codec);
    }

    /// The codec the reply will use.
    pub fn reply_codec(&self) -> CodecId {
        self.inner.reply.lock().codec.unwrap_or(self.codec())
    }

    /// The reply's codec and meta, taken in one lock when the reply is made.
    pub(crate) fn take_reply_parts(&self) -> (CodecId, Meta) {
        let mut parts = self.inner.reply.lock();
        let codec = parts.codec.unwrap_or(self.codec());
        (codec, std::mem::take(&mut parts.meta))
    }
}

impl Deref for CallCtx {
    type Target = Incoming;

    fn deref(&self) -> &Incoming {
        &self.inner.msg
    }
}

/// The context of an incoming push: the message (see [`Incoming`], which
/// this dereferences to). Cheap to clone.
#[derive(Clone, Debug)]
pub struct PushCtx {
    inner: Arc<Incoming>,
}

impl PushCtx {
    pub(crate) fn new(session: Session, msg: Box<Message>) -> Self {
        Self {
            inner: Arc::new(Incoming {
                session,
                msg,
                values: Mutex::default(),
            }),
        }
    }
}

impl PushCtx {
    /// The message as an `Arc` of anything, for the handler scope.
    pub(crate) fn as_any(&self) -> Arc<dyn Any + Send + Sync> {
        self.inner.clone()
    }
}

impl Deref for PushCtx {
    type Target = Incoming;

    fn deref(&self) -> &Incoming {
        &self.inner
    }
}
