//! A session's age and idle limits: the endpoint's defaults
//! ([`Config::max_session_age`](crate::Config::max_session_age),
//! [`Config::idle_timeout`](crate::Config::idle_timeout)), overridden per
//! session; and the callers waiting for a connection, which a session
//! closed for being idle redials for.

use super::Session;
use crate::core::expiry::ExpiryLimits;
use crate::values::Config;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The endpoint's limits, which a new session starts with.
pub(crate) fn default_limits(config: &Config) -> ExpiryLimits {
    ExpiryLimits {
        max_age: config.max_session_age,
        idle_timeout: config.idle_timeout,
    }
}

impl Session {
    /// How long this session's connection may live before it is renewed;
    /// `None` for no limit. The endpoint's
    /// [`Config::max_session_age`](crate::Config::max_session_age) unless
    /// [`Session::set_max_age`] changed it.
    pub fn max_age(&self) -> Option<Duration> {
        self.shared.expiry.lock().max_age
    }

    /// Sets this session's maximum age, counted from its current
    /// connection's start (`None`: no limit). A connection already older
    /// is renewed at once. Set it in a connection hook to give some peers
    /// a different limit from the endpoint's:
    ///
    /// ```no_run
    /// # fn demo(session: &drpc::Session) {
    /// use std::time::Duration;
    ///
    /// session.set_max_age(Some(Duration::from_secs(600)));
    /// session.set_idle_timeout(None);
    /// # }
    /// ```
    pub fn set_max_age(&self, max_age: Option<Duration>) {
        self.change_expiry(|e| e.max_age = max_age);
    }

    /// How long this session may go without a call or push before its
    /// connection is closed; `None` for no limit. The endpoint's
    /// [`Config::idle_timeout`](crate::Config::idle_timeout) unless
    /// [`Session::set_idle_timeout`] changed it.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.shared.expiry.lock().idle_timeout
    }

    /// Sets this session's idle timeout (`None`: no limit), counted from
    /// now if it is idle now.
    pub fn set_idle_timeout(&self, idle_timeout: Option<Duration>) {
        self.change_expiry(|e| e.idle_timeout = idle_timeout);
    }

    fn change_expiry(&self, change: impl FnOnce(&mut ExpiryLimits)) {
        change(&mut self.shared.expiry.lock());
        self.shared.expiry_changed.store(true, Ordering::Release);
        if let Some(link) = self.shared.state.read().link.clone() {
            link.reader.notify();
        }
    }

    /// The limits, if they changed since the connection last took them.
    pub(crate) fn take_expiry_change(&self) -> Option<ExpiryLimits> {
        let shared = &self.shared;
        if !shared.expiry_changed.load(Ordering::Acquire) {
            return None;
        }
        shared.expiry_changed.store(false, Ordering::Release);
        Some(*shared.expiry.lock())
    }

    /// The limits in force now.
    pub(crate) fn expiry(&self) -> ExpiryLimits {
        *self.shared.expiry.lock()
    }

    /// Counts a caller waiting for a connection until the guard drops, and
    /// tells a session waiting to redial that one is needed.
    pub(crate) fn want_connection(&self) -> WantGuard<'_> {
        self.shared.wanting.fetch_add(1, Ordering::AcqRel);
        self.shared.wanted.notify_waiters();
        WantGuard(self)
    }

    /// Waits until some caller waits for a connection.
    pub(crate) async fn connection_wanted(&self) {
        loop {
            let wanted = self.shared.wanted.notified();
            tokio::pin!(wanted);
            // Registered before looking, so a caller in between is seen.
            wanted.as_mut().enable();
            if self.shared.wanting.load(Ordering::Acquire) > 0 {
                return;
            }
            wanted.await;
        }
    }
}

/// A caller waiting for a connection; see [`Session::want_connection`].
pub(crate) struct WantGuard<'a>(&'a Session);

impl Drop for WantGuard<'_> {
    fn drop(&mut self) {
        self.0.shared.wanting.fetch_sub(1, Ordering::AcqRel);
    }
}
