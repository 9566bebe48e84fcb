//! Polling a future only when it has asked to be polled.

use futures_util::task::AtomicWaker;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// Lets a task that polls several futures on every turn of its loop skip
/// those with nothing to do. The future behind a gate is polled with a
/// waker of the gate's own, which marks the gate before it wakes the task
/// (what `FuturesUnordered` does for each of its futures); a turn then
/// costs one registration and one atomic swap for a future that was not
/// woken, instead of its whole poll (the connection's writer takes two
/// locks to find it has nothing to write).
///
/// A gate starts open, so the first poll reaches the future.
pub(crate) struct Gate {
    flag: Arc<Flag>,
    waker: Waker,
}

struct Flag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl Default for Gate {
    fn default() -> Self {
        let flag = Arc::new(Flag {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        Self {
            waker: Waker::from(flag.clone()),
            flag,
        }
    }
}

impl Gate {
    /// Runs `poll` (with the gate's waker) if the future behind the gate
    /// was woken, or the gate opened, since the last time; otherwise
    /// `Pending`, and the task is woken when the future is.
    pub(crate) fn poll<T>(
        &self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        // Registered before the flag is looked at, so a wake-up in between
        // is not lost.
        self.flag.task.register(cx.waker());
        if !self.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        poll(&mut Context::from_waker(&self.waker))
    }

    /// Has the next [`Gate::poll`] reach the future, woken or not: for the
    /// task itself, when it gave the future work without waking it.
    pub(crate) fn open(&self) {
        self.flag.woken.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn counting<'a>(
        polls: &'a Cell<u32>,
        saved: &'a Cell<Option<Waker>>,
    ) -> impl FnOnce(&mut Context<'_>) -> Poll<()> + 'a {
        move |cx| {
            polls.set(polls.get() + 1);
            saved.set(Some(cx.waker().clone()));
            Poll::Pending
        }
    }

    #[test]
    fn the_future_is_polled_first_then_only_when_woken_or_opened() {
        let gate = Gate::default();
        let (polls, saved) = (Cell::new(0), Cell::new(None));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(gate.poll(&mut cx, counting(&polls, &saved)).is_pending());
        assert_eq!(polls.get(), 1, "open at first");
        let _ = gate.poll(&mut cx, counting(&polls, &saved));
        assert_eq!(polls.get(), 1, "not woken: skipped");
        saved.take().expect("the gate's waker").wake();
        let _ = gate.poll(&mut cx, counting(&polls, &saved));
        assert_eq!(polls.get(), 2, "woken: polled");
        gate.open();
        let _ = gate.poll(&mut cx, counting(&polls, &saved));
        assert_eq!(polls.get(), 3, "opened: polled");
        let _ = gate.poll(&mut cx, counting(&polls, &saved));
        assert_eq!(polls.get(), 3);
    }

    #[tokio::test]
    async fn waking_the_future_wakes_the_task() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Waker>();
        let task = tokio::spawn(async move {
            let gate = Gate::default();
            let mut polls = 0;
            std::future::poll_fn(|cx| {
                gate.poll(cx, |cx| {
                    polls += 1;
                    let _ = tx.send(cx.waker().clone());
                    match polls {
                        2 => Poll::Ready(()),
                        _ => Poll::Pending,
                    }
                })
            })
            .await;
        });
        let limit = std::time::Duration::from_secs(5);
        let waker = tokio::time::timeout(limit, rx.recv())
            .await
            .expect("the future was polled")
            .expect("its waker");
        waker.wake();
        tokio::time::timeout(limit, task)
            .await
            .expect("the task is woken through the gate")
            .expect("task");
    }
}
