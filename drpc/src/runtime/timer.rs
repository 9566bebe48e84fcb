//! A timer for the earliest of a changing set of deadlines.

use super::gate::Gate;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

pin_project_lite::pin_project! {
    /// A timer for the earliest of a changing set of deadlines, moved only
    /// when a deadline earlier than the one it is set for appears. Moving a
    /// timer costs a lock and a timer-wheel update, and the earliest call
    /// deadline changes on almost every read; waking early once and being
    /// set again for the true deadline costs less. Behind a gate: a task
    /// polls it on every turn, and an armed `Sleep` costs a clock reading
    /// and the timer wheel's lock each time it is polled.
    pub(crate) struct LazyTimer {
        #[pin]
        sleep: tokio::time::Sleep,
        armed: Option<Instant>,
        gate: Gate,
    }
}

impl LazyTimer {
    pub(crate) fn new() -> Self {
        Self {
            // Never polled until armed, so never registered before.
            sleep: tokio::time::sleep_until(tokio::time::Instant::now()),
            armed: None,
            gate: Gate::default(),
        }
    }

    /// Makes sure the timer fires no later than `at`.
    pub(crate) fn arm(self: Pin<&mut Self>, at: Option<Instant>) {
        let this = self.project();
        if let Some(at) = at {
            if this.armed.is_none_or(|armed| at < armed) {
                this.sleep.reset(at.into());
                *this.armed = Some(at);
                // Polled again, so the reset timer has its waker.
                this.gate.open();
            }
        }
    }

    pub(crate) fn is_armed(&self) -> bool {
        self.armed.is_some()
    }

    /// Fires once at the time armed for; the caller checks what is due.
    pub(crate) async fn fired(mut self: Pin<&mut Self>) {
        poll_fn(|cx| self.as_mut().poll_fired(cx)).await
    }

    fn poll_fired(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let mut sleep = this.sleep;
        let fired = this.gate.poll(cx, |cx| sleep.as_mut().poll(cx));
        if fired.is_ready() {
            *this.armed = None;
        }
        fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::time::Duration;

    fn now() -> Instant {
        tokio::time::Instant::now().into_std()
    }

    #[tokio::test(start_paused = true)]
    async fn fires_at_the_earliest_deadline_it_was_armed_for() {
        let start = now();
        let mut timer = pin!(LazyTimer::new());
        assert!(!timer.is_armed());
        timer.as_mut().arm(None);
        assert!(!timer.is_armed(), "nothing due: not armed");
        timer.as_mut().arm(Some(start + Duration::from_secs(10)));
        timer.as_mut().arm(Some(start + Duration::from_secs(5)));
        // A later deadline does not move it.
        timer.as_mut().arm(Some(start + Duration::from_secs(20)));
        timer.as_mut().fired().await;
        assert_eq!(now() - start, Duration::from_secs(5));
        assert!(!timer.is_armed(), "fired: disarmed until armed again");
        timer.as_mut().arm(Some(start + Duration::from_secs(20)));
        timer.as_mut().fired().await;
        assert_eq!(now() - start, Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_already_past_fires_at_once() {
        let start = now();
        tokio::time::advance(Duration::from_secs(3)).await;
        let mut timer = pin!(LazyTimer::new());
        timer.as_mut().arm(Some(start + Duration::from_secs(1)));
        timer.as_mut().fired().await;
        assert_eq!(now() - start, Duration::from_secs(3));
    }
}
