//! How many retries a cluster client may make: a share of its calls, so
//! that retries cannot multiply an outage.

use parking_lot::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Retries allowed as a share of calls over a sliding window, plus a few a
/// second whatever the traffic (so a quiet client can still retry).
/// Defaults: 10% of calls, and 10 retries a second, over 10 s (as Finagle's
/// and Linkerd's budgets do).
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    min_per_sec: f64,
    window: Duration,
    state: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    start: Instant,
    calls: u64,
    retries: u64,
    /// The last window's counts, weighed by how much of it still overlaps.
    prev_calls: u64,
    prev_retries: u64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self::new(0.1, 10.0, Duration::from_secs(10))
    }
}

impl RetryBudget {
    /// At most `ratio` retries per call, plus `min_per_sec` a second,
    /// counted over `window`.
    pub fn new(ratio: f64, min_per_sec: f64, window: Duration) -> Self {
        Self {
            ratio: ratio.max(0.0),
            min_per_sec: min_per_sec.max(0.0),
            window: window.max(Duration::from_millis(100)),
            state: Mutex::new(Window {
                start: Instant::now(),
                calls: 0,
                retries: 0,
                prev_calls: 0,
                prev_retries: 0,
            }),
        }
    }

    /// No retries at all.
    pub fn none() -> Self {
        Self::new(0.0, 0.0, Duration::from_secs(10))
    }

    fn roll(&self, w: &mut Window) {
        let now = Instant::now();
        while now.duration_since(w.start) >= self.window {
            w.prev_calls = w.calls;
            w.prev_retries = w.retries;
            w.calls = 0;
            w.retries = 0;
            w.start += self.window;
            if now.duration_since(w.start) >= self.window {
                w.prev_calls = 0;
                w.prev_retries = 0;
                w.start = now;
            }
        }
    }

    /// Counts a call (not a retry).
    pub fn call(&self) {
        let mut w = self.state.lock();
        self.roll(&mut w);
        w.calls += 1;
    }

    /// Takes one retry from the budget, if there is one.
    pub fn try_retry(&self) -> bool {
        let mut w = self.state.lock();
        self.roll(&mut w);
        let left_of_prev = 1.0 - w.start.elapsed().as_secs_f64() / self.window.as_secs_f64();
        let calls = w.calls as f64 + w.prev_calls as f64 * left_of_prev;
        let retries = w.retries as f64 + w.prev_retries as f64 * left_of_prev;
        let allowed = calls * self.ratio + self.min_per_sec * self.window.as_secs_f64();
        if retries + 1.0 <= allowed {
            w.retries += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_stay_within_a_tenth_of_calls_plus_a_floor() {
        // No floor, 10%: 1000 calls allow 100 retries.
        let b = RetryBudget::new(0.1, 0.0, Duration::from_secs(10));
        for _ in 0..1000 {
            b.call();
        }
        let granted = (0..1000).filter(|_| b.try_retry()).count();
        assert_eq!(granted, 100);
        // The floor alone: 2 a second over 10 s.
        let b = RetryBudget::new(0.1, 2.0, Duration::from_secs(10));
        assert_eq!((0..100).filter(|_| b.try_retry()).count(), 20);
        // Two windows later, the old retries no longer count.
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!((0..100).filter(|_| b.try_retry()).count(), 20);
        assert!(!RetryBudget::none().try_retry());
    }
}
