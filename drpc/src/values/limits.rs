//! Overload protection: how many sessions an endpoint keeps, how many calls
//! it runs at once, and how fast it takes new ones.

/// An endpoint's overload limits. Past any of them a call is answered at
/// once with 503 (nothing queues), and a connection is refused with a 503
/// notice the dialer sees as the reason its session closed.
///
/// Set them in [`Config::limits`](crate::Config::limits); change them while
/// running with [`Endpoint::set_limits`](crate::Endpoint::set_limits).
///
/// ```
/// use drpc::{Limits, Rate};
///
/// let limits = Limits {
///     max_calls: 512,
///     calls_per_second: Some(Rate { per_second: 2_000, burst: 200 }),
///     ..Limits::default()
/// };
/// assert_eq!(limits.max_sessions, 10_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Live sessions, accepted and dialed together. An accepted connection
    /// past this is refused; a dial past it fails with 503.
    ///
    /// Default 10,000: far more than one process usually serves, but a
    /// bound, so a connection flood ends in refusals instead of memory
    /// and file descriptors running out.
    pub max_sessions: usize,
    /// Calls whose handlers run at once, over all sessions.
    ///
    /// Default 10,000. Each running call holds its handler's memory; this
    /// keeps that bounded whatever the peers send.
    pub max_calls: usize,
    /// Calls whose handlers run at once on one session.
    ///
    /// Default 1,000: one busy peer cannot take the whole endpoint's
    /// `max_calls`.
    pub max_calls_per_session: usize,
    /// New calls taken per second over all sessions (a token bucket), or
    /// `None` for no rate limit.
    ///
    /// Default `None`: a sensible rate depends on the handlers.
    pub calls_per_second: Option<Rate>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sessions: 10_000,
            max_calls: 10_000,
            max_calls_per_session: 1_000,
            calls_per_second: None,
        }
    }
}

/// A token bucket's refill rate and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Tokens added per second: the sustained rate.
    pub per_second: u32,
    /// Tokens the bucket holds: the largest burst taken at once.
    pub burst: u32,
}
