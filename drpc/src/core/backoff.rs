//! The waits between the attempts of one redial.

use crate::values::Redial;
use std::time::Duration;

/// Exponential backoff with jitter. The random draw is passed in, so the
/// sequence is a pure function of the settings and the draws.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    cfg: Redial,
    attempts: u32,
}

impl Backoff {
    pub(crate) fn new(cfg: Redial) -> Self {
        Self { cfg, attempts: 0 }
    }

    /// Attempts made so far.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The wait before the next attempt, given `draw` uniform in `[0, 1)`,
    /// or `None` when no attempts are left.
    pub(crate) fn next_delay(&mut self, draw: f64) -> Option<Duration> {
        if self
            .cfg
            .max_attempts
            .is_some_and(|max| self.attempts >= max)
        {
            return None;
        }
        let exp = self
            .cfg
            .multiplier
            .max(1.0)
            .powi(self.attempts.min(64) as i32);
        let base =
            (self.cfg.initial_delay.as_secs_f64() * exp).min(self.cfg.max_delay.as_secs_f64());
        let jitter = self.cfg.jitter.clamp(0.0, 1.0);
        let factor = 1.0 + jitter * (2.0 * draw.clamp(0.0, 1.0) - 1.0);
        self.attempts += 1;
        Some(Duration::from_secs_f64((base * factor).max(0.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Redial {
        Redial {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            multiplier: 2.0,
            jitter: 0.2,
            max_attempts: Some(6),
            ..Redial::default()
        }
    }

    #[test]
    fn waits_double_to_the_cap_and_stop_at_the_limit() {
        let mut b = Backoff::new(cfg());
        let ms: Vec<u128> = std::iter::from_fn(|| b.next_delay(0.5))
            .map(|d| (d.as_secs_f64() * 1000.0).round() as u128)
            .collect();
        assert_eq!(ms, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.attempts(), 6);
        assert_eq!(b.next_delay(0.5), None);
    }

    #[test]
    fn jitter_moves_each_wait_by_at_most_its_share() {
        let mut low = Backoff::new(cfg());
        let mut high = Backoff::new(cfg());
        let ms = |d: Option<Duration>| (d.unwrap().as_secs_f64() * 1000.0).round();
        assert_eq!(ms(low.next_delay(0.0)), 80.0);
        assert_eq!(ms(high.next_delay(1.0)), 120.0);
    }

    #[test]
    fn unlimited_attempts_never_run_out_and_never_pass_the_cap() {
        let mut b = Backoff::new(Redial {
            max_attempts: None,
            jitter: 0.0,
            ..Redial::default()
        });
        for _ in 0..1000 {
            assert!(b.next_delay(0.3).unwrap() <= Duration::from_secs(10));
        }
    }
}
