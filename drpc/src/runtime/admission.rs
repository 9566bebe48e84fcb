//! Overload protection at run time: the endpoint's live limits, its count
//! of running calls, its token bucket; each admitted call holds a permit.

use crate::core::bucket::Bucket;
use crate::values::{Limits, Status};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

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
            *bucket = limits
                .calls_per_second
                .map(|rate| Bucket::new(rate, Instant::now()));
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

    /// Admits one call on a session whose running calls `on_session`
    /// counts, or says why not. The permit gives its places back when
    /// dropped, however the call ends, so the counts cannot drift.
    pub(crate) fn admit<'a>(&'a self, on_session: &'a AtomicUsize) -> Result<Permit<'a>, Status> {
        let here = on_session.fetch_add(1, Ordering::AcqRel) + 1;
        let everywhere = self.running.fetch_add(1, Ordering::AcqRel) + 1;
        let permit = Permit {
            limiter: self,
            on_session,
        };
        let per_session = self.max_per_session.load(Ordering::Relaxed);
        if here > per_session {
            return Err(Status::overloaded(format!(
                "{per_session} calls are already running on this session (Limits::max_calls_per_session)"
            )));
        }
        let max = self.max_calls.load(Ordering::Relaxed);
        if everywhere > max {
            return Err(Status::overloaded(format!(
                "{max} calls are already running on this endpoint (Limits::max_calls)"
            )));
        }
        if self.rate_limited.load(Ordering::Relaxed) {
            if let Some(bucket) = self.bucket.lock().as_mut() {
                if let Err(next) = bucket.take(Instant::now()) {
                    return Err(Status::overloaded(format!(
                        "over {} calls per second (Limits::calls_per_second); next in {next:?}",
                        bucket.rate().per_second,
                    )));
                }
            }
        }
        Ok(permit)
    }
}

/// One running call's place in the counts.
pub(crate) struct Permit<'a> {
    limiter: &'a Limiter,
    on_session: &'a AtomicUsize,
}

impl Permit<'_> {
    /// The same place, held by a task that outlives the borrow.
    pub(crate) fn into_owned(
        self,
        limiter: Arc<Limiter>,
        on_session: Arc<AtomicUsize>,
    ) -> OwnedPermit {
        std::mem::forget(self);
        OwnedPermit {
            limiter,
            on_session,
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        release(self.limiter, self.on_session);
    }
}

/// A [`Permit`] a spawned handler owns.
pub(crate) struct OwnedPermit {
    limiter: Arc<Limiter>,
    on_session: Arc<AtomicUsize>,
}

impl Drop for OwnedPermit {
    fn drop(&mut self) {
        release(&self.limiter, &self.on_session);
    }
}

fn release(limiter: &Limiter, on_session: &AtomicUsize) {
    on_session.fetch_sub(1, Ordering::AcqRel);
    limiter.running.fetch_sub(1, Ordering::AcqRel);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::{Code, Rate};

    #[test]
    fn permits_count_in_and_out_and_the_per_session_bound_holds() {
        let l = Limiter::new(Limits {
            max_calls_per_session: 2,
            ..Limits::default()
        });
        let session = AtomicUsize::new(0);
        let a = l.admit(&session).unwrap();
        let b = l.admit(&session).unwrap();
        let err = l.admit(&session).err().unwrap();
        assert_eq!(err.code(), Code::OVERLOADED);
        assert_eq!((l.running(), session.load(Ordering::Relaxed)), (2, 2));
        drop((a, b));
        assert_eq!((l.running(), session.load(Ordering::Relaxed)), (0, 0));
    }

    #[test]
    fn an_owned_permit_holds_the_place_until_dropped() {
        let l = Arc::new(Limiter::new(Limits::default()));
        let session = Arc::new(AtomicUsize::new(0));
        let owned = l
            .admit(&session)
            .unwrap()
            .into_owned(l.clone(), session.clone());
        assert_eq!(l.running(), 1);
        drop(owned);
        assert_eq!(l.running(), 0);
    }

    #[test]
    fn a_rate_limit_refuses_past_the_burst_and_new_limits_apply() {
        let l = Limiter::new(Limits {
            calls_per_second: Some(Rate {
                per_second: 1,
                burst: 1,
            }),
            ..Limits::default()
        });
        let s = AtomicUsize::new(0);
        drop(l.admit(&s).unwrap());
        let err = l.admit(&s).err().unwrap();
        assert!(err.message().contains("calls per second"), "{err}");
        l.set(Limits::default());
        drop(l.admit(&s).unwrap());
        assert_eq!(l.get(), Limits::default());
    }
}
