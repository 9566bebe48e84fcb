//! Per-call and per-push settings, and what a call returns.

use drpc_codec::CodecId;
use drpc_proto::Meta;
use std::time::Duration;

/// Settings of one call; every field falls back to the endpoint's [`Config`](crate::Config).
///
/// ```
/// use drpc::CallOptions;
/// use drpc::codec::CodecId;
/// use std::time::Duration;
///
/// let opts = CallOptions::new()
///     .timeout(Duration::from_millis(500))
///     .codec(CodecId::JSON)
///     .meta("trace-id", "abc");
/// ```
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    pub(crate) timeout: Option<Duration>,
    /// A stream with no deadline ([`CallOptions::no_deadline`]).
    pub(crate) no_deadline: bool,
    pub(crate) codec: Option<CodecId>,
    pub(crate) meta: Meta,
}

/// Settings of one push; every field falls back to the endpoint's [`Config`](crate::Config).
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    pub(crate) timeout: Option<Duration>,
    pub(crate) codec: Option<CodecId>,
    pub(crate) meta: Meta,
}

/// The builder methods both option types share.
macro_rules! shared_options {
    ($name:ident, $what:literal) => {
        impl $name {
            /// Default settings.
            pub fn new() -> Self {
                Self::default()
            }

            #[doc = concat!("The codec of the ", $what, "'s body. Default: [`Config::default_codec`](crate::Config::default_codec).")]
            pub fn codec(mut self, codec: CodecId) -> Self {
                self.codec = Some(codec);
                self
            }

            #[doc = concat!("Adds a meta pair to the ", $what, ".")]
            pub fn meta(mut self, key: &str, value: &str) -> Self {
                self.meta.insert(key, value);
                self
            }

            #[doc = concat!("Replaces the ", $what, "'s meta.")]
            pub fn with_meta(mut self, meta: Meta) -> Self {
                self.meta = meta;
                self
            }
        }
    };
}

shared_options!(CallOptions, "call");
shared_options!(PushOptions, "push");

impl CallOptions {
    /// How long to wait for the reply (the call's deadline is now plus this);
    /// the peer's handler sees the same deadline. Default:
    /// [`Config::default_timeout`](crate::Config::default_timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self.no_deadline = false;
        self
    }

    /// Gives a stream no deadline (this replaces any timeout): it lasts
    /// until a side ends it, the caller cancels it, or its connection
    /// ends, as a subscription should. On the wire its timeout is 0, which
    /// for a stream call means none (docs/PROTOCOL.md 3.4). For streams
    /// only ([`Session::stream`](crate::Session::stream) and its kin): a
    /// plain call made with it fails at once with 400, since a reply must
    /// have a bound.
    ///
    /// ```
    /// use drpc::CallOptions;
    ///
    /// let forever = CallOptions::new().no_deadline();
    /// assert!(forever.has_no_deadline());
    /// ```
    pub fn no_deadline(mut self) -> Self {
        self.timeout = None;
        self.no_deadline = true;
        self
    }

    /// Whether [`CallOptions::no_deadline`] was set.
    pub fn has_no_deadline(&self) -> bool {
        self.no_deadline
    }

    /// The timeout set with [`CallOptions::timeout`], if any (for code that
    /// makes the call again, within what is left of it).
    pub fn requested_timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

impl PushOptions {
    /// How long the push may wait for room in the session's write queue
    /// before failing with 408. Default:
    /// [`Config::default_timeout`](crate::Config::default_timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// A successful reply: the decoded value, the reply's meta and its codec.
#[derive(Debug, Clone)]
pub struct Reply<R> {
    /// The decoded reply body.
    pub value: R,
    /// The meta the handler set.
    pub meta: Meta,
    /// The codec the reply came in.
    pub codec: CodecId,
}
