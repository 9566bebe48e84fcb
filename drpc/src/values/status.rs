use std::borrow::Cow;
use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// A status code: 0 is OK, negative and small positive codes belong to drpc,
/// and applications use codes from 1000 up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(pub i32);

impl Code {
    /// Success.
    pub const OK: Code = Code(0);
    /// An error with no better code.
    pub const UNKNOWN: Code = Code(-1);
    /// The session is not the one the operation needs.
    pub const WRONG_CONNECTION: Code = Code(100);
    /// The session closed before the operation finished.
    pub const CONNECTION_CLOSED: Code = Code(102);
    /// The message could not be written to the socket.
    pub const WRITE_FAILED: Code = Code(104);
    /// A dial did not produce a session.
    pub const DIAL_FAILED: Code = Code(105);
    /// A message or body could not be encoded or decoded.
    pub const BAD_MESSAGE: Code = Code(400);
    /// The peer is not allowed to do this.
    pub const UNAUTHORIZED: Code = Code(401);
    /// No handler for the service method.
    pub const NOT_FOUND: Code = Code(404);
    /// The message kind is not accepted here.
    pub const TYPE_NOT_ALLOWED: Code = Code(405);
    /// The call's deadline passed.
    pub const DEADLINE_EXCEEDED: Code = Code(408);
    /// The message is larger than the frame limit.
    pub const MESSAGE_TOO_LARGE: Code = Code(413);
    /// The caller gave up.
    pub const CANCELED: Code = Code(499);
    /// The handler failed (or panicked).
    pub const INTERNAL: Code = Code(500);
    /// A limit was reached; try again later.
    pub const OVERLOADED: Code = Code(503);
    /// The first code available to applications.
    pub const APP_MIN: Code = Code(1000);

    /// The short name of a drpc code, or `None` for application codes.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::OK => "ok",
            Self::UNKNOWN => "unknown",
            Self::WRONG_CONNECTION => "wrong connection",
            Self::CONNECTION_CLOSED => "connection closed",
            Self::WRITE_FAILED => "write failed",
            Self::DIAL_FAILED => "dial failed",
            Self::BAD_MESSAGE => "bad message",
            Self::UNAUTHORIZED => "unauthorized",
            Self::NOT_FOUND => "not found",
            Self::TYPE_NOT_ALLOWED => "message type not allowed",
            Self::DEADLINE_EXCEEDED => "deadline exceeded",
            Self::MESSAGE_TOO_LARGE => "message too large",
            Self::CANCELED => "canceled",
            Self::INTERNAL => "internal error",
            Self::OVERLOADED => "overloaded",
            _ => return None,
        })
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{} ({name})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

/// The outcome of a call: a code, a message, and optionally the local error
/// that caused it.
///
/// The code and message travel to the peer; the cause stays in this process
/// (it is what [`Error::source`] returns).
///
/// ```
/// use drpc::{Code, Status};
///
/// let s = Status::not_found("no route /math/div");
/// assert_eq!(s.code(), Code::NOT_FOUND);
/// assert_eq!(s.to_string(), "404 (not found): no route /math/div");
/// let app = Status::new(Code(1001), "insufficient funds");
/// assert_eq!(app.code().0, 1001);
/// ```
#[derive(Clone)]
pub struct Status {
    code: Code,
    message: Cow<'static, str>,
    cause: Option<Arc<dyn Error + Send + Sync>>,
    /// Known, in this process, to describe a call no handler ran.
    unrun: bool,
    /// A handler passes it on from a call it made, having done nothing
    /// else (see [`Status::passed_on`]).
    passed_on: bool,
}

macro_rules! constructors {
    ($($(#[$doc:meta])* $fn:ident => $code:ident;)*) => {
        $(
            $(#[$doc])*
            pub fn $fn(message: impl Into<Cow<'static, str>>) -> Self {
                Self::new(Code::$code, message)
            }
        )*
    };
}

impl Status {
    /// A status with `code` and `message`.
    pub fn new(code: Code, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            message: message.into(),
            cause: None,
            unrun: false,
            passed_on: false,
        }
    }

    /// Success, with an empty message.
    pub const fn ok() -> Self {
        Self {
            code: Code::OK,
            message: Cow::Borrowed(""),
            cause: None,
            unrun: false,
            passed_on: false,
        }
    }

    constructors! {
        /// Code -1.
        unknown => UNKNOWN;
        /// Code 102.
        connection_closed => CONNECTION_CLOSED;
        /// Code 104.
        write_failed => WRITE_FAILED;
        /// Code 105.
        dial_failed => DIAL_FAILED;
        /// Code 400.
        bad_message => BAD_MESSAGE;
        /// Code 401.
        unauthorized => UNAUTHORIZED;
        /// Code 404.
        not_found => NOT_FOUND;
        /// Code 405.
        type_not_allowed => TYPE_NOT_ALLOWED;
        /// Code 408.
        deadline_exceeded => DEADLINE_EXCEEDED;
        /// Code 413.
        message_too_large => MESSAGE_TOO_LARGE;
        /// Code 499.
        canceled => CANCELED;
        /// Code 500.
        internal => INTERNAL;
        /// Code 503.
        overloaded => OVERLOADED;
    }

    /// Attaches the local error that caused this status.
    pub fn with_cause(mut self, cause: impl Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Arc::new(cause));
        self
    }

    /// The code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the code is [`Code::OK`].
    pub fn is_ok(&self) -> bool {
        self.code == Code::OK
    }

    /// Whether this failed call certainly reached no handler, so that
    /// making it again (elsewhere) cannot run it twice: it was refused
    /// before it was sent (the session was closing or its peer going
    /// away), the peer refused it on arrival (102 for a call that crossed
    /// its going-away notice, docs/PROTOCOL.md section 3.1), or the code is
    /// 503 (overloaded: refused by the peer's limits, or by a handler that
    /// did none of the work) or 105 (the dial failed). False when a call
    /// may have run, such as one in flight when its connection was lost.
    ///
    /// ```
    /// use drpc::Status;
    ///
    /// assert!(Status::overloaded("busy").never_ran());
    /// assert!(!Status::internal("the handler failed").never_ran());
    /// ```
    pub fn never_ran(&self) -> bool {
        self.unrun || self.code == Code::OVERLOADED || self.code == Code::DIAL_FAILED
    }

    /// Marks a status a handler returns as passed on, unchanged, from a
    /// call the handler made and did nothing besides (a proxy's): when
    /// that call was never run ([`Status::never_ran`]), its 102 reaches
    /// the caller as 102, "not run", and the caller may make the call
    /// again elsewhere. Any other 102 a handler returns goes out as 500,
    /// since the handler may have done work (docs/PROTOCOL.md section 3.1).
    ///
    /// ```no_run
    /// # async fn demo(upstream: drpc::Session, ctx: drpc::CallCtx) -> Result<bytes::Bytes, drpc::Status> {
    /// let reply = upstream
    ///     .call_raw(ctx.service_method(), ctx.body().clone(), drpc::CallOptions::new())
    ///     .await
    ///     .map_err(drpc::Status::passed_on)?;
    /// # Ok(reply.value) }
    /// ```
    pub fn passed_on(mut self) -> Self {
        self.passed_on = true;
        self
    }

    /// Whether [`Status::passed_on`] marked it.
    pub fn is_passed_on(&self) -> bool {
        self.passed_on
    }

    /// Marks this status as one of a call that reached no handler.
    pub(crate) fn unrun(mut self) -> Self {
        self.unrun = true;
        self
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Status");
        d.field("code", &self.code.0)
            .field("message", &self.message);
        if let Some(c) = &self.cause {
            d.field("cause", &c.to_string());
        }
        d.finish()
    }
}

impl Error for Status {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.cause.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

impl PartialEq for Status {
    /// Two statuses are equal when code and message are; causes are not compared.
    fn eq(&self, other: &Self) -> bool {
        self.code == other.code && self.message == other.message
    }
}
