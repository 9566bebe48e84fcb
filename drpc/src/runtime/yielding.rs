//! Letting other tasks run.

use std::future::{poll_fn, Future};
use std::task::Poll;

/// Lets the tasks already scheduled run before this one goes on: a wake
/// of its own and one `Pending`. Unlike `tokio::task::yield_now`, it does
/// not wait for the scheduler's next look at the I/O driver (a system call
/// on a current-thread runtime).
pub(crate) fn yield_once() -> impl Future<Output = ()> {
    let mut yielded = false;
    poll_fn(move |cx| {
        if std::mem::replace(&mut yielded, true) {
            return Poll::Ready(());
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_task_scheduled_before_runs_before_the_yield_returns() {
        let ran = Arc::new(AtomicBool::new(false));
        let other = tokio::spawn({
            let ran = ran.clone();
            async move { ran.store(true, Ordering::SeqCst) }
        });
        yield_once().await;
        assert!(ran.load(Ordering::SeqCst));
        other.await.unwrap();
    }
}
