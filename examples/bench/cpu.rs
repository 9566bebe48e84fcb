//! CPU time of the bench's two threads, read from the client's thread: its
//! own clock, and the server thread's through its pthread CPU clock.

/// A thread's CPU clock.
#[derive(Clone, Copy)]
pub struct Clock(libc::clockid_t);

impl Clock {
    /// The calling thread's clock.
    pub fn this_thread() -> Self {
        Self(libc::CLOCK_THREAD_CPUTIME_ID)
    }

    /// The clock of the thread behind `handle`.
    pub fn of<T>(handle: &std::thread::JoinHandle<T>) -> Self {
        use std::os::unix::thread::JoinHandleExt;
        let mut id: libc::clockid_t = 0;
        // SAFETY: the thread is alive (its handle is not joined) and `id`
        // is a valid out-pointer.
        let rc = unsafe { libc::pthread_getcpuclockid(handle.as_pthread_t(), &mut id) };
        assert_eq!(rc, 0, "pthread_getcpuclockid");
        Self(id)
    }

    /// CPU time used so far, in seconds.
    pub fn seconds(self) -> f64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid out-pointer and the clock id is valid.
        let rc = unsafe { libc::clock_gettime(self.0, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime");
        ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
    }
}
