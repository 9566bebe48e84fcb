//! What `drpc bench` counts, and the summary it prints.

use drpc::Code;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

const HOUR_US: u64 = 3_600_000_000;

/// Latencies and statuses of the calls one worker (or all) made.
pub struct Tally {
    /// Latencies in µs.
    latency: Histogram<u64>,
    statuses: BTreeMap<i32, u64>,
}

impl Tally {
    pub fn new() -> Self {
        Self {
            // 1 µs to an hour, three significant figures: a stalled
            // server's timeouts are recorded too (a longer call counts as
            // an hour).
            latency: Histogram::new_with_bounds(1, HOUR_US, 3).expect("valid bounds and precision"),
            statuses: BTreeMap::new(),
        }
    }

    pub fn record(&mut self, code: Code, took: Duration) {
        let us = u64::try_from(took.as_micros())
            .unwrap_or(HOUR_US)
            .clamp(1, HOUR_US);
        self.latency.saturating_record(us);
        *self.statuses.entry(code.0).or_default() += 1;
    }

    pub fn merge(&mut self, other: Tally) {
        // Both have the same bounds, so adding cannot fail on range.
        let _ = self.latency.add(&other.latency);
        for (code, n) in other.statuses {
            *self.statuses.entry(code).or_default() += n;
        }
    }

    pub fn calls(&self) -> u64 {
        self.latency.len()
    }

    pub fn succeeded(&self) -> u64 {
        self.statuses.get(&0).copied().unwrap_or(0)
    }
}

/// The summary of a run.
pub struct Report {
    pub tally: Tally,
    pub elapsed: Duration,
    /// Calls still waiting when the run ended.
    pub abandoned: u64,
    pub concurrency: usize,
    pub sessions: usize,
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Width of the histogram's longest bar.
const BAR: u64 = 40;
/// Buckets in the histogram, as oha draws it.
const BUCKETS: u64 = 11;

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.tally;
        let secs = self.elapsed.as_secs_f64();
        let calls = t.calls();
        writeln!(f, "Summary:")?;
        writeln!(
            f,
            "  calls:       {calls} in {secs:.2} s, {} in flight over {} session(s)",
            self.concurrency, self.sessions
        )?;
        writeln!(f, "  calls/s:     {:.1}", calls as f64 / secs.max(1e-9))?;
        writeln!(f, "  succeeded:   {}", t.succeeded())?;
        writeln!(f, "  failed:      {}", calls - t.succeeded())?;
        writeln!(
            f,
            "  unfinished:  {} (still waiting at the end)",
            self.abandoned
        )?;
        if calls == 0 {
            return Ok(());
        }
        let h = &t.latency;
        writeln!(f, "\nLatency (ms):")?;
        writeln!(f, "  min    {:>10.3}", ms(h.min()))?;
        writeln!(f, "  mean   {:>10.3}", h.mean() / 1000.0)?;
        for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)] {
            writeln!(f, "  {name:<6} {:>10.3}", ms(h.value_at_quantile(q)))?;
        }
        writeln!(f, "  max    {:>10.3}", ms(h.max()))?;

        writeln!(f, "\nStatus codes:")?;
        for (code, n) in &t.statuses {
            writeln!(f, "  [{}] {n} calls", Code(*code))?;
        }

        writeln!(f, "\nHistogram (ms):")?;
        let (lo, hi) = (h.min(), h.max());
        let step = ((hi - lo) / (BUCKETS - 1)).max(1);
        let mut counts = vec![0u64; BUCKETS as usize];
        for v in h.iter_recorded() {
            let at = ((v.value_iterated_to().clamp(lo, hi) - lo) / step).min(BUCKETS - 1);
            counts[at as usize] += v.count_at_value();
        }
        let used = ((hi - lo) / step + 1).min(BUCKETS) as usize;
        let counts: Vec<(u64, u64)> = counts
            .into_iter()
            .take(used)
            .enumerate()
            .map(|(i, n)| (lo + i as u64 * step, n))
            .collect();
        let most = counts.iter().map(|(_, n)| *n).max().unwrap_or(1).max(1);
        for (from, n) in counts {
            let bar = "■".repeat((n * BAR / most) as usize);
            writeln!(f, "  {:>10.3} [{n:>8}] |{bar}", ms(from))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_statuses_and_places_latencies() {
        let mut a = Tally::new();
        for ms in (1..=100u64).rev() {
            a.record(Code::OK, Duration::from_millis(ms));
        }
        let mut b = Tally::new();
        b.record(Code::DEADLINE_EXCEEDED, Duration::from_millis(100));
        a.merge(b);
        let report = Report {
            tally: a,
            elapsed: Duration::from_secs(2),
            abandoned: 3,
            concurrency: 4,
            sessions: 1,
        };
        let text = report.to_string();
        assert!(text.contains("calls:       101 in 2.00 s"), "{text}");
        assert!(text.contains("calls/s:     50.5"), "{text}");
        assert!(text.contains("failed:      1"), "{text}");
        assert!(text.contains("unfinished:  3"), "{text}");
        assert!(text.contains("[0 (ok)] 100 calls"), "{text}");
        assert!(text.contains("[408 (deadline exceeded)] 1 calls"), "{text}");
        assert!(text.contains("min         1.000"), "{text}");
        assert!(text.contains("max       100."), "{text}");
        // p50 of 1..=100 ms and one more 100 ms is about 51 ms.
        let p50 = text
            .lines()
            .find(|l| l.trim_start().starts_with("p50"))
            .unwrap();
        let v: f64 = p50.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!((50.0..=52.0).contains(&v), "{p50}");
        // Every call is in one of the histogram's buckets.
        let in_buckets: u64 = text
            .lines()
            .skip_while(|l| !l.starts_with("Histogram"))
            .skip(1)
            .map(|l| {
                l.split('[')
                    .nth(1)
                    .unwrap()
                    .split(']')
                    .next()
                    .unwrap()
                    .trim()
                    .parse::<u64>()
                    .unwrap()
            })
            .sum();
        assert_eq!(in_buckets, 101);
    }
}
