//! A circuit breaker per instance: failures open it for a cool-down, then
//! one probe call decides whether it closes. Time is passed in, so its
//! rules are tested without a clock.

use drpc::{Code, Status};
use std::time::Duration;
use tokio::time::Instant;

/// When a breaker opens and for how long. The defaults follow what
/// Hystrix and resilience4j start with, scaled to RPC rates.
#[derive(Debug, Clone)]
pub struct BreakerConfig {
    /// Failures in a row that open it. Default: 5.
    pub consecutive_failures: u32,
    /// The share of failed calls over [`BreakerConfig::window`] that opens
    /// it, once at least [`BreakerConfig::min_calls`] were made. Default: 0.5.
    pub failure_rate: f64,
    /// Default: 10 s.
    pub window: Duration,
    /// Default: 20.
    pub min_calls: u32,
    /// How long it stays open before a probe is let through. Default: 5 s.
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_rate: 0.5,
            window: Duration::from_secs(10),
            min_calls: 20,
            cool_down: Duration::from_secs(5),
        }
    }
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// No call goes through until the cool-down ends.
    Open,
    /// One probe call is let through; its outcome closes or reopens it.
    HalfOpen,
}

impl BreakerState {
    /// The state's name, for metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// Whether `status` says something about the instance (it failed, was
/// unreachable, overloaded or too slow) rather than about the call (a
/// refusal of its arguments, an application's error).
pub fn counts_against(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::CONNECTION_CLOSED
            | Code::WRITE_FAILED
            | Code::DIAL_FAILED
            | Code::DEADLINE_EXCEEDED
            | Code::INTERNAL
            | Code::OVERLOADED
            | Code::UNKNOWN
    )
}

/// One instance's breaker.
#[derive(Debug)]
pub(crate) struct Breaker {
    config: BreakerConfig,
    state: BreakerState,
    open_until: Instant,
    probing: bool,
    in_a_row: u32,
    window_start: Instant,
    calls: u32,
    failures: u32,
}

impl Breaker {
    pub(crate) fn new(config: BreakerConfig, now: Instant) -> Self {
        Self {
            config,
            state: BreakerState::Closed,
            open_until: now,
            probing: false,
            in_a_row: 0,
            window_start: now,
            calls: 0,
            failures: 0,
        }
    }

    /// Whether a call may be picked for this instance now (without taking
    /// the probe).
    pub(crate) fn admits(&self, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open => now >= self.open_until,
            BreakerState::HalfOpen => !self.probing,
        }
    }

    /// Lets a call through, taking the probe when half-open; returns the
    /// state it moved to, if it moved.
    pub(crate) fn enter(&mut self, now: Instant) -> (bool, Option<BreakerState>) {
        let mut moved = None;
        if self.state == BreakerState::Open && now >= self.open_until {
            self.state = BreakerState::HalfOpen;
            self.probing = false;
            moved = Some(BreakerState::HalfOpen);
        }
        let allowed = match self.state {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen if self.probing => false,
            BreakerState::HalfOpen => {
                self.probing = true;
                true
            }
        };
        (allowed, moved)
    }

    /// Records a call's outcome (`failed`: it counts against the instance);
    /// returns the state it moved to, if it moved.
    pub(crate) fn record(&mut self, failed: bool, now: Instant) -> Option<BreakerState> {
        match self.state {
            BreakerState::HalfOpen => {
                self.probing = false;
                if failed {
                    self.open(now)
                } else {
                    self.reset(now);
                    self.state = BreakerState::Closed;
                    Some(BreakerState::Closed)
                }
            }
            // An answer to a call let through before it opened.
            BreakerState::Open => None,
            BreakerState::Closed => {
                if now.duration_since(self.window_start) >= self.config.window {
                    self.window_start = now;
                    self.calls = 0;
                    self.failures = 0;
                }
                self.calls += 1;
                if failed {
                    self.failures += 1;
                    self.in_a_row += 1;
                } else {
                    self.in_a_row = 0;
                }
                let rate = f64::from(self.failures) / f64::from(self.calls);
                let too_many = self.in_a_row >= self.config.consecutive_failures
                    || (self.calls >= self.config.min_calls && rate >= self.config.failure_rate);
                if too_many {
                    self.open(now)
                } else {
                    None
                }
            }
        }
    }

    fn open(&mut self, now: Instant) -> Option<BreakerState> {
        self.state = BreakerState::Open;
        self.open_until = now + self.config.cool_down;
        self.reset(now);
        Some(BreakerState::Open)
    }

    fn reset(&mut self, now: Instant) {
        self.in_a_row = 0;
        self.window_start = now;
        self.calls = 0;
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> (Breaker, Instant) {
        let now = Instant::now();
        (Breaker::new(BreakerConfig::default(), now), now)
    }

    #[test]
    fn five_failures_in_a_row_open_it_for_the_cool_down() {
        let (mut b, t) = breaker();
        for _ in 0..4 {
            assert_eq!(b.record(true, t), None);
        }
        assert_eq!(b.record(true, t), Some(BreakerState::Open));
        assert!(!b.admits(t + Duration::from_millis(4999)));
        assert_eq!(b.enter(t + Duration::from_millis(4999)), (false, None));
        // The cool-down over: one probe, and only one.
        let later = t + Duration::from_secs(5);
        assert!(b.admits(later));
        assert_eq!(b.enter(later), (true, Some(BreakerState::HalfOpen)));
        assert!(!b.admits(later));
        assert_eq!(b.enter(later), (false, None));
        // The probe fails: open again.
        assert_eq!(b.record(true, later), Some(BreakerState::Open));
        let again = later + Duration::from_secs(5);
        assert_eq!(b.enter(again), (true, Some(BreakerState::HalfOpen)));
        // It succeeds: closed.
        assert_eq!(b.record(false, again), Some(BreakerState::Closed));
        assert_eq!(b.enter(again), (true, None));
    }

    #[test]
    fn a_failure_rate_over_the_window_opens_it() {
        let (mut b, t) = breaker();
        // Alternating: never 5 in a row, but half of 20 calls failed.
        for i in 0..19 {
            assert_eq!(b.record(i % 2 == 0, t), None, "call {i}");
        }
        assert_eq!(b.record(true, t), Some(BreakerState::Open));
        // In a new window the old calls no longer count.
        let (mut b, t) = breaker();
        for i in 0..19 {
            b.record(i % 2 == 0, t);
        }
        assert_eq!(b.record(true, t + Duration::from_secs(10)), None);
    }

    #[test]
    fn only_the_instances_failures_count() {
        assert!(counts_against(&Status::overloaded("busy")));
        assert!(counts_against(&Status::internal("panicked")));
        assert!(counts_against(&Status::dial_failed("refused")));
        assert!(!counts_against(&Status::not_found("no route")));
        assert!(!counts_against(&Status::bad_message("bad argument")));
        assert!(!counts_against(&Status::new(
            Code(1001),
            "insufficient funds"
        )));
    }
}
