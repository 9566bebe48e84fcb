//! A token bucket: how fast new calls are taken (`Limits::calls_per_second`).

use crate::values::Rate;
use std::time::{Duration, Instant};

/// Tokens refill at `rate.per_second` up to `rate.burst`; each call takes
/// one. Time is passed in.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    rate: Rate,
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    /// A full bucket at `now`.
    pub(crate) fn new(rate: Rate, now: Instant) -> Self {
        Self {
            rate,
            tokens: f64::from(rate.burst),
            refilled: now,
        }
    }

    pub(crate) fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes a token at `now`, or says how long until the next one.
    pub(crate) fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.refilled);
        self.refilled = self.refilled.max(now);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * f64::from(self.rate.per_second))
            .min(f64::from(self.rate.burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else if self.rate.per_second == 0 {
            Err(Duration::MAX)
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / f64::from(self.rate.per_second),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_taken_then_tokens_come_at_the_rate() {
        let t = Instant::now();
        let mut b = Bucket::new(
            Rate {
                per_second: 10,
                burst: 3,
            },
            t,
        );
        for _ in 0..3 {
            b.take(t).unwrap();
        }
        let wait = b.take(t).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        b.take(t + Duration::from_millis(100)).unwrap();
        assert!(b.take(t + Duration::from_millis(100)).is_err());
        // A long pause refills to the burst, no further.
        let later = t + Duration::from_secs(60);
        for _ in 0..3 {
            b.take(later).unwrap();
        }
        assert!(b.take(later).is_err());
    }

    #[test]
    fn a_zero_rate_never_refills_and_time_going_back_takes_nothing() {
        let t = Instant::now() + Duration::from_secs(1);
        let mut b = Bucket::new(
            Rate {
                per_second: 0,
                burst: 1,
            },
            t,
        );
        b.take(t).unwrap();
        assert_eq!(b.take(t + Duration::from_secs(9)), Err(Duration::MAX));
        let mut c = Bucket::new(
            Rate {
                per_second: 1,
                burst: 1,
            },
            t,
        );
        c.take(t).unwrap();
        assert!(c.take(t - Duration::from_secs(1)).is_err());
    }
}
