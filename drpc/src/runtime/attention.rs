//! A wake-up for one task that is cheap to poll on every turn.

use futures_util::task::AtomicWaker;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

/// Tells one task to look again, as a `Notify` with a stored permit does,
/// for a task that polls it on every turn of its loop: polling it is two
/// atomic operations (and a waker clone after it fired), where a
/// `Notified` takes a lock each time. A notice given while the task is not
/// waiting is kept until its next poll.
#[derive(Default)]
pub(crate) struct Attention {
    waker: AtomicWaker,
    pending: AtomicBool,
}

impl Attention {
    /// Asks the task to look again.
    pub(crate) fn notify(&self) {
        self.pending.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Ready once per notice (notices given before it is polled count as
    /// one); otherwise the task is registered to be woken.
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.pending.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // A notice given between the check and the registration found no
        // waker to wake: look once more.
        match self.pending.swap(false, Ordering::AcqRel) {
            true => Poll::Ready(()),
            false => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_notice_before_the_poll_is_kept_and_counted_once() {
        let a = Attention::default();
        a.notify();
        a.notify();
        poll_fn(|cx| a.poll(cx)).await;
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(a.poll(&mut cx).is_pending(), "two notices, one wake-up");
    }

    #[tokio::test]
    async fn a_notice_from_another_task_wakes_the_waiting_one() {
        let a = Arc::new(Attention::default());
        let waiting = tokio::spawn({
            let a = a.clone();
            async move { poll_fn(|cx| a.poll(cx)).await }
        });
        tokio::task::yield_now().await;
        a.notify();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("task");
    }
}
