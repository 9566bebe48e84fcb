//! Overload protection: how many sessions an endpoint keeps, how many calls
//! it runs at once, and how fast it takes new ones.

use crate::{Session, Status};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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

/// The live limits of an endpoint and its counters.
pub(crate) struct Limiter {
    settings: Mutex<Limits>,
    max_sessions: AtomicUsize,
    max_calls: AtomicUsize,
    max_per_session: AtomicUsize,
    /// Calls running now, over all sessions.
    running: AtomicUsize,
    /// Whether there is a bucket, so calls skip its lock when there is not.
    rate_limited: AtomicBool,
    bucket: Mutex<Option<Bucket>>,
}

struct Bucket {
    rate: Rate,
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    fn new(rate: Rate) -> Self {
        Self {
            rate,
            tokens: f64::from(rate.burst),
            refilled: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled);
        self.refilled = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * f64::from(self.rate.per_second))
            .min(f64::from(self.rate.burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until the next token.
    fn wait(&self) -> Duration {
        if self.rate.per_second == 0 {
            return Duration::MAX;
        }
        Duration::from_secs_f64((1.0 - self.tokens).max(0.0) / f64::from(self.rate.per_second))
    }
}

impl Limiter {
    pub(crate) fn new(limits: Limits) -> Self {
        let l = Self {
            settings: Mutex::new(limits),
            max_sessions: AtomicUsize::new(0),
            max_calls: AtomicUsize::new(0),
            max_per_session: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            rate_limited: AtomicBool::new(false),
            bucket: Mutex::new(None),
        };
        l.set(limits);
        l
    }

    pub(crate) fn get(&self) -> Limits {
        *self.settings.lock()
    }

    pub(crate) fn set(&self, limits: Limits) {
        let mut settings = self.settings.lock();
        self.max_sessions
            .store(limits.max_sessions, Ordering::Relaxed);
        self.max_calls.store(limits.max_calls, Ordering::Relaxed);
        self.max_per_session
            .store(limits.max_calls_per_session, Ordering::Relaxed);
        let mut bucket = self.bucket.lock();
        if settings.calls_per_second != limits.calls_per_second || bucket.is_none() {
            *bucket = limits.calls_per_second.map(Bucket::new);
        }
        self.rate_limited.store(bucket.is_some(), Ordering::Relaxed);
        *settings = limits;
    }

    pub(crate) fn max_sessions(&self) -> usize {
        self.max_sessions.load(Ordering::Relaxed)
    }

    pub(crate) fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// Admits one call on `session`, or says why not. The permit gives its
    /// place back when dropped, however the call ends, so the counts cannot
    /// drift.
    pub(crate) fn admit(&self, session: &Session) -> Result<CallPermit, Status> {
        let on_session = session.shared.calls_running.fetch_add(1, Ordering::AcqRel) + 1;
        let on_endpoint = self.running.fetch_add(1, Ordering::AcqRel) + 1;
        let permit = CallPermit {
            session: session.clone(),
        };
        let per_session = self.max_per_session.load(Ordering::Relaxed);
        if on_session > per_session {
            return Err(Status::overloaded(format!(
                "{per_session} calls are already running on this session (Limits::max_calls_per_session)"
            )));
        }
        let max = self.max_calls.load(Ordering::Relaxed);
        if on_endpoint > max {
            return Err(Status::overloaded(format!(
                "{max} calls are already running on this endpoint (Limits::max_calls)"
            )));
        }
        if !self.rate_limited.load(Ordering::Relaxed) {
            return Ok(permit);
        }
        if let Some(bucket) = self.bucket.lock().as_mut() {
            if !bucket.take() {
                return Err(Status::overloaded(format!(
                    "over {} calls per second (Limits::calls_per_second); next in {:?}",
                    bucket.rate.per_second,
                    bucket.wait()
                )));
            }
        }
        Ok(permit)
    }
}

/// One running call's place in the counts.
pub(crate) struct CallPermit {
    session: Session,
}

impl Drop for CallPermit {
    fn drop(&mut self) {
        self.session
            .shared
            .calls_running
            .fetch_sub(1, Ordering::AcqRel);
        self.session
            .shared
            .ep
            .limiter
            .running
            .fetch_sub(1, Ordering::AcqRel);
    }
}
