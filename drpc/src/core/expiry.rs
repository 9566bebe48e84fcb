//! When a connection expires: its session's maximum age, and its idle
//! timeout. Time and activity are passed in.

use super::lifecycle::Renewal;
use std::time::{Duration, Instant};

/// A session's age and idle limits (`None`: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExpiryLimits {
    pub(crate) max_age: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
}

/// The most a connection's age limit is shortened at random, as a share,
/// so connections opened together do not all renew together (gRPC's
/// `MaxConnectionAge` does the same).
const AGE_JITTER: f64 = 0.1;

/// The idle timeout is checked this many times per timeout: a connection
/// closes between 1 and 1 + 1/CHECKS times the timeout after its last
/// activity, and watching it costs nothing per message but a count.
const IDLE_CHECKS: u32 = 4;

/// One connection's age and idle deadlines.
#[derive(Debug)]
pub(crate) struct ExpiryWatch {
    started: Instant,
    /// In [0, 1): how much of [`AGE_JITTER`] this connection takes.
    draw: f64,
    limits: ExpiryLimits,
    age_at: Option<Instant>,
    /// The activity count last seen, whether calls were in flight then,
    /// and the last check that found either changed or calls in flight:
    /// activity happened since the check before it, so the idle time
    /// counts from there (late by at most a check's interval, never early).
    seen: u64,
    busy: bool,
    active_at: Instant,
    check_at: Option<Instant>,
}

impl ExpiryWatch {
    /// Watches a connection that started at `now`; `draw` is uniform in
    /// [0, 1).
    pub(crate) fn new(limits: ExpiryLimits, now: Instant, draw: f64) -> Self {
        let mut w = Self {
            started: now,
            draw: draw.clamp(0.0, 1.0),
            limits,
            age_at: None,
            seen: 0,
            busy: false,
            active_at: now,
            check_at: None,
        };
        w.set(limits, now);
        w
    }

    /// Applies changed limits: the age still counts from the start, a new
    /// idle timeout from now.
    pub(crate) fn set(&mut self, limits: ExpiryLimits, now: Instant) {
        if limits.idle_timeout != self.limits.idle_timeout {
            self.active_at = now;
        }
        self.limits = limits;
        self.age_at = limits
            .max_age
            .map(|age| self.started + age.mul_f64(1.0 - AGE_JITTER * self.draw));
        self.check_at = limits.idle_timeout.map(|idle| now + quarter(idle));
    }

    /// Watches no more: the connection is leaving anyway.
    pub(crate) fn disable(&mut self) {
        (self.age_at, self.check_at) = (None, None);
        self.limits = ExpiryLimits {
            max_age: None,
            idle_timeout: None,
        };
    }

    /// When [`ExpiryWatch::check`] is next due, if ever.
    pub(crate) fn next(&self) -> Option<Instant> {
        match (self.age_at, self.check_at) {
            (Some(a), Some(c)) => Some(a.min(c)),
            (a, c) => a.or(c),
        }
    }

    /// What expired by `now`, given the connection's activity count and
    /// whether calls are in flight either way.
    pub(crate) fn check(&mut self, now: Instant, activity: (u64, bool)) -> Option<Renewal> {
        if self.age_at.is_some_and(|at| at <= now) {
            return Some(Renewal::MaxAge);
        }
        let idle = self.limits.idle_timeout?;
        if self.check_at.is_none_or(|at| at > now) {
            return None;
        }
        let (count, busy) = activity;
        if busy || self.busy || count != self.seen {
            self.active_at = now;
        }
        (self.seen, self.busy) = (count, busy);
        if now.saturating_duration_since(self.active_at) >= idle {
            return Some(Renewal::Idle);
        }
        self.check_at = Some((now + quarter(idle)).min(self.active_at + idle));
        None
    }
}

fn quarter(idle: Duration) -> Duration {
    (idle / IDLE_CHECKS).max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn limits(max_age: Option<u64>, idle: Option<u64>) -> ExpiryLimits {
        ExpiryLimits {
            max_age: max_age.map(Duration::from_secs),
            idle_timeout: idle.map(Duration::from_secs),
        }
    }

    /// Runs the watch's checks as the connection's timer would, with
    /// `activity` at each instant, until it expires or `until` passes.
    fn run(
        w: &mut ExpiryWatch,
        t0: Instant,
        until: Duration,
        activity: impl Fn(Duration) -> (u64, bool),
    ) -> Option<(Renewal, Duration)> {
        while let Some(at) = w.next() {
            if at > t0 + until {
                return None;
            }
            if let Some(r) = w.check(at, activity(at - t0)) {
                return Some((r, at - t0));
            }
        }
        None
    }

    #[test]
    fn no_limits_never_expire() {
        let t0 = Instant::now();
        let w = ExpiryWatch::new(limits(None, None), t0, 0.5);
        assert_eq!(w.next(), None);
    }

    #[test]
    fn the_age_limit_is_shortened_by_at_most_a_tenth() {
        let t0 = Instant::now();
        for (draw, at) in [(0.0, 100_000), (0.5, 95_000), (0.999_999, 90_000)] {
            let mut w = ExpiryWatch::new(limits(Some(100), None), t0, draw);
            let (r, when) = run(&mut w, t0, 200 * S, |_| (0, true)).unwrap();
            assert_eq!(r, Renewal::MaxAge);
            assert!(when.as_millis().abs_diff(at) <= 1, "{draw}: {when:?}");
        }
    }

    #[test]
    fn an_idle_connection_expires_within_a_quarter_past_the_timeout() {
        let t0 = Instant::now();
        let mut w = ExpiryWatch::new(limits(None, Some(8)), t0, 0.0);
        let (r, when) = run(&mut w, t0, 100 * S, |_| (0, false)).unwrap();
        assert_eq!((r, when), (Renewal::Idle, 8 * S));
        // Activity at 3 s (seen by the check at 4 s) moves it on.
        let mut w = ExpiryWatch::new(limits(None, Some(8)), t0, 0.0);
        let (r, when) = run(&mut w, t0, 100 * S, |t| ((t >= 3 * S) as u64, false)).unwrap();
        assert_eq!(r, Renewal::Idle);
        assert!((11 * S..=12 * S).contains(&when), "{when:?}");
    }

    #[test]
    fn a_call_in_flight_keeps_a_connection_busy_however_long_it_runs() {
        let t0 = Instant::now();
        let mut w = ExpiryWatch::new(limits(None, Some(8)), t0, 0.0);
        let busy_until = 60 * S;
        let (r, when) = run(&mut w, t0, 100 * S, |t| (0, t < busy_until)).unwrap();
        assert_eq!(r, Renewal::Idle);
        assert!((busy_until + 8 * S..=busy_until + 10 * S).contains(&when));
    }

    #[test]
    fn changed_limits_apply_from_the_start_for_age_and_from_now_for_idle() {
        let t0 = Instant::now();
        let mut w = ExpiryWatch::new(limits(None, None), t0, 0.0);
        w.set(limits(Some(10), None), t0 + 30 * S);
        assert_eq!(w.next(), Some(t0 + 10 * S), "already older: due at once");
        assert_eq!(w.check(t0 + 30 * S, (0, true)), Some(Renewal::MaxAge));
        let mut w = ExpiryWatch::new(limits(None, None), t0, 0.0);
        w.set(limits(None, Some(4)), t0 + 30 * S);
        let (r, when) = run(&mut w, t0, 100 * S, |_| (0, false)).unwrap();
        assert_eq!(r, Renewal::Idle);
        assert_eq!(when, 34 * S);
        w.set(limits(None, None), t0 + 40 * S);
        assert_eq!(w.next(), None);
    }
}
