//! How a dialed session gets its connection back.

use std::time::Duration;

/// How a dialed session redials after losing its connection: exponential
/// backoff with jitter, behind the same [`Session`](crate::Session) handle.
///
/// A connection counts as lost when it breaks without the peer saying why.
/// A peer that refuses the session (503) ends it for good; one that shuts
/// down gracefully says so first, and the session then closes too, unless
/// `after_shutdown` is set (for peers that come back, as in a rolling
/// restart). Calls in flight when it broke fail with
/// 102, never re-sent, since they may have run; calls made while redialing
/// wait, up to their own deadlines, for the new connection. The session's
/// id and storage survive. A failed attempt (no connection, a plugin
/// refusing the handshake) is retried like any other; the count starts
/// again after a success.
///
/// ```
/// use drpc::{Config, Redial};
/// use std::time::Duration;
///
/// let config = Config {
///     redial: Redial {
///         max_attempts: None, // forever
///         max_delay: Duration::from_secs(30),
///         ..Redial::default()
///     },
///     ..Config::default()
/// };
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Redial {
    /// Whether dialed sessions redial at all. Default: true.
    pub enabled: bool,
    /// The wait before the first attempt. Default: 100 ms, so a peer that
    /// restarts at once is back almost at once.
    pub initial_delay: Duration,
    /// The longest wait between attempts. Default: 10 s.
    pub max_delay: Duration,
    /// Each wait is this many times the one before. Default: 2.
    pub multiplier: f64,
    /// Each wait is moved at random by up to this share of itself, so many
    /// clients of one restarted server do not redial in step. Default: 0.2.
    pub jitter: f64,
    /// Attempts before the session gives up and closes; `None` never gives
    /// up. Default: 20, about two and a half minutes with the other
    /// defaults: long enough to ride out a restart, short enough that
    /// callers learn the peer is gone.
    pub max_attempts: Option<u32>,
    /// Whether to redial after the peer said it was shutting down. Default:
    /// false: a peer that shuts down on purpose is not dialed again and
    /// again; set it for peers that restart (rolling deploys).
    pub after_shutdown: bool,
}

impl Default for Redial {
    fn default() -> Self {
        Self {
            enabled: true,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.2,
            max_attempts: Some(20),
            after_shutdown: false,
        }
    }
}
