//! How a cluster client picks an instance for a call: a small trait and the
//! usual policies.

use crate::instance::Instance;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// An instance a selector may pick, with what it knows of its load.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The instance, as registered (id, weight, zone, meta).
    pub instance: &'a Instance,
    /// This client's calls waiting on it now.
    pub in_flight: usize,
}

/// Picks one of the available instances for a call. `candidates` is never
/// empty and holds only instances that can take a call now (connected or
/// not yet tried, not refusing); `key` is the caller's, for policies that
/// keep one key on one instance.
///
/// ```
/// use drpc_cluster::selector::{Candidate, Selector};
///
/// /// Always the instance with the fewest calls waiting.
/// struct LeastLoaded;
/// impl Selector for LeastLoaded {
///     fn pick(&self, candidates: &[Candidate<'_>], _key: Option<&str>) -> usize {
///         (0..candidates.len()).min_by_key(|&i| candidates[i].in_flight).unwrap_or(0)
///     }
/// }
/// ```
pub trait Selector: Send + Sync + 'static {
    /// The index in `candidates` of the instance to call.
    fn pick(&self, candidates: &[Candidate<'_>], key: Option<&str>) -> usize;
}

/// Each instance in turn.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Selector for RoundRobin {
    fn pick(&self, candidates: &[Candidate<'_>], _: Option<&str>) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % candidates.len()
    }
}

/// Any instance, uniformly at random.
#[derive(Debug, Default)]
pub struct Random;

impl Selector for Random {
    fn pick(&self, candidates: &[Candidate<'_>], _: Option<&str>) -> usize {
        fastrand::usize(..candidates.len())
    }
}

/// At random, in proportion to the instances' weights (weight 0 is never
/// picked while another has weight).
#[derive(Debug, Default)]
pub struct Weighted;

impl Selector for Weighted {
    fn pick(&self, candidates: &[Candidate<'_>], _: Option<&str>) -> usize {
        let total: u64 = candidates
            .iter()
            .map(|c| u64::from(c.instance.weight))
            .sum();
        if total == 0 {
            return fastrand::usize(..candidates.len());
        }
        let mut at = fastrand::u64(..total);
        for (i, c) in candidates.iter().enumerate() {
            let w = u64::from(c.instance.weight);
            if at < w {
                return i;
            }
            at -= w;
        }
        candidates.len() - 1
    }
}

/// The power of two choices: two instances at random, the one with fewer
/// calls in flight. Close to least-loaded without herding every client onto
/// the same instance; the default.
#[derive(Debug, Default)]
pub struct PowerOfTwo;

impl Selector for PowerOfTwo {
    fn pick(&self, candidates: &[Candidate<'_>], _: Option<&str>) -> usize {
        let n = candidates.len();
        if n == 1 {
            return 0;
        }
        let a = fastrand::usize(..n);
        let b = (a + 1 + fastrand::usize(..n - 1)) % n;
        if candidates[b].in_flight < candidates[a].in_flight {
            b
        } else {
            a
        }
    }
}

/// Consistent hashing on the caller's key: one key goes to one instance
/// while it is available, and an instance coming or going moves only the
/// keys that were, or will be, on it. Calls without a key go to a random
/// instance. The ring has [`ConsistentHash::POINTS`] points per instance,
/// hashed (FNV-1a with MurmurHash3's finalizer) from the instance's id, so
/// every client maps a key to the same instance.
#[derive(Debug, Default)]
pub struct ConsistentHash {
    /// The ring for the last set of candidates.
    ring: Mutex<Ring>,
}

/// A ring: the ids of the candidates it was built for, and its sorted
/// points with the index of their candidate.
type Ring = (Vec<String>, Vec<(u64, usize)>);

impl ConsistentHash {
    /// Points on the ring per instance: enough that keys spread within a
    /// few percent of evenly over a handful of instances.
    pub const POINTS: usize = 160;
}

/// FNV-1a, 64 bits, then MurmurHash3's finalizer: stable across
/// processes, versions and platforms, and keys that differ only in their
/// last characters (`user-1`, `user-2`) land far apart on the ring, which
/// FNV alone does not do.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

impl Selector for ConsistentHash {
    fn pick(&self, candidates: &[Candidate<'_>], key: Option<&str>) -> usize {
        let Some(key) = key else {
            return fastrand::usize(..candidates.len());
        };
        let mut ring = self.ring.lock();
        let same = ring.0.len() == candidates.len()
            && ring
                .0
                .iter()
                .zip(candidates)
                .all(|(id, c)| *id == c.instance.id);
        if !same {
            let mut points = Vec::with_capacity(candidates.len() * Self::POINTS);
            for (i, c) in candidates.iter().enumerate() {
                for p in 0..Self::POINTS {
                    points.push((fnv1a(format!("{}#{p}", c.instance.id).as_bytes()), i));
                }
            }
            points.sort_unstable();
            *ring = (
                candidates.iter().map(|c| c.instance.id.clone()).collect(),
                points,
            );
        }
        let h = fnv1a(key.as_bytes());
        let at = ring.1.partition_point(|(p, _)| *p < h);
        ring.1[at % ring.1.len()].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instances(n: usize) -> Vec<Instance> {
        (0..n)
            .map(|i| Instance::new("s", format!("i{i}"), ["tcp://h:1"]))
            .collect()
    }

    fn counts(sel: &dyn Selector, all: &[Instance], load: &[usize], picks: usize) -> Vec<usize> {
        let c: Vec<Candidate<'_>> = all
            .iter()
            .zip(load)
            .map(|(instance, &in_flight)| Candidate {
                instance,
                in_flight,
            })
            .collect();
        let mut out = vec![0; all.len()];
        for _ in 0..picks {
            out[sel.pick(&c, None)] += 1;
        }
        out
    }

    #[test]
    fn round_robin_takes_turns() {
        let all = instances(3);
        assert_eq!(
            counts(&RoundRobin::default(), &all, &[0; 3], 300),
            [100, 100, 100]
        );
    }

    #[test]
    fn weighted_follows_the_weights() {
        let mut all = instances(3);
        all[0].weight = 0;
        all[1].weight = 100;
        all[2].weight = 300;
        let got = counts(&Weighted, &all, &[0; 3], 4000);
        assert_eq!(got[0], 0);
        // Expected 1000 and 3000; five standard deviations is about 140.
        assert!((860..=1140).contains(&got[1]), "{got:?}");
    }

    #[test]
    fn two_choices_avoid_the_loaded_instance() {
        let all = instances(3);
        let got = counts(&PowerOfTwo, &all, &[50, 0, 0], 3000);
        // The loaded one wins no comparison; the others share the calls.
        assert_eq!(got[0], 0, "{got:?}");
        assert!(got[1] > 1200 && got[2] > 1200, "{got:?}");
        assert_eq!(counts(&PowerOfTwo, &all[..1], &[9], 10), [10]);
    }

    #[test]
    fn a_key_stays_on_its_instance_and_few_keys_move_when_one_leaves() {
        let all = instances(4);
        let sel = ConsistentHash::default();
        let cands = |v: &[Instance]| -> Vec<(String, usize)> {
            let c: Vec<Candidate<'_>> = v
                .iter()
                .map(|instance| Candidate {
                    instance,
                    in_flight: 0,
                })
                .collect();
            (0..1000)
                .map(|k| {
                    let key = format!("user-{k}");
                    (c[sel.pick(&c, Some(&key))].instance.id.clone(), k)
                })
                .collect()
        };
        let before = cands(&all);
        assert_eq!(before, cands(&all), "the same key, the same instance");
        let spread = |v: &[(String, usize)], id: &str| v.iter().filter(|(i, _)| i == id).count();
        for i in &all {
            let n = spread(&before, &i.id);
            assert!((150..=350).contains(&n), "{} holds {n} of 1000 keys", i.id);
        }
        // i3 leaves: only its keys move.
        let after = cands(&all[..3]);
        for ((was, _), (now, _)) in before.iter().zip(&after) {
            if was != "i3" {
                assert_eq!(was, now);
            }
        }
    }
}
