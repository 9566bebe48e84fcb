//! Finding dead peers: pings on idle sessions, and a bound on silence.

use drpc::plugin::BoxFuture;
use drpc::{CallOptions, Plugin, Session, SessionState, Status};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
// tokio's clock, which a test can pause and advance.
use tokio::time::Instant;

/// Pings a session that has been idle for one interval, and closes a
/// session that has been silent for `misses` intervals, on every session of
/// the endpoint it is added to (accepted and dialed).
///
/// Anything heard from the peer counts as liveness, so a busy session sends
/// no pings. A ping is a call to [`Heartbeat::METHOD`] with the interval as
/// its timeout; any reply counts, a 404 included, so the peer needs no
/// plugin of its own to answer. A silent session's connection is dropped
/// ([`Session::disconnect`]): a dialed session redials, an accepted one
/// closes with 408 and a reason naming the silence. The plugin's timer ends
/// with the session.
///
/// ```
/// use drpc_plugins::Heartbeat;
/// use std::time::Duration;
///
/// let endpoint = drpc::Endpoint::builder()
///     .plugin(Heartbeat::new(Duration::from_secs(10)).misses(3))
///     .build()
///     .unwrap();
/// # drop(endpoint);
/// ```
#[derive(Debug, Clone)]
pub struct Heartbeat {
    interval: Duration,
    misses: u32,
}

impl Heartbeat {
    /// The service method of a ping. drpc peers answer it with 404 unless
    /// they route it; either way the answer is traffic.
    pub const METHOD: &'static str = "/_drpc/heartbeat";

    /// Pings after `interval` of silence; closes after 3 intervals of it.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval: interval.max(Duration::from_millis(1)),
            misses: 3,
        }
    }

    /// Closes a session silent for `misses` intervals (at least 1).
    pub fn misses(mut self, misses: u32) -> Self {
        self.misses = misses.max(1);
        self
    }

    /// The longest silence a session survives.
    pub fn bound(&self) -> Duration {
        self.interval * self.misses
    }

    fn start(&self, session: &Session) {
        let watched = session.with_value::<Arc<Liveness>, _>(|l| {
            // A redial of a watched session: the new connection starts fresh.
            l.inspect(|l| l.touch()).is_some()
        });
        if watched {
            return;
        }
        let live = Arc::new(Liveness::new());
        session.set_value(live.clone());
        tokio::spawn(watch(session.clone(), live, self.interval, self.bound()));
    }
}

/// When the peer was last heard, in milliseconds since `base`.
struct Liveness {
    base: Instant,
    last_ms: AtomicU64,
}

impl Liveness {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.base.elapsed().saturating_sub(last)
    }
}

/// The session's timer: pings when idle, closes when silent too long, and
/// ends with the session.
async fn watch(session: Session, live: Arc<Liveness>, interval: Duration, bound: Duration) {
    let closed = session.closed();
    tokio::pin!(closed);
    loop {
        if session.state() == SessionState::Redialing {
            // No connection to watch; the new one starts with a clean slate.
            live.touch();
            tokio::select! {
                _ = &mut closed => return,
                _ = tokio::time::sleep(interval) => continue,
            }
        }
        let silent = live.silent_for();
        if silent >= bound {
            // As if the connection broke: a dialed session redials, an
            // accepted one closes with this reason.
            session.disconnect(Status::deadline_exceeded(format!(
                "heartbeat: nothing heard from the peer for {silent:?} (limit {bound:?})"
            )));
            live.touch();
            tokio::select! {
                _ = &mut closed => return,
                _ = tokio::time::sleep(interval) => continue,
            }
        }
        let wait = if silent >= interval {
            let s = session.clone();
            // Its own task, so a slow answer does not delay the next check;
            // it ends by its timeout at the latest.
            tokio::spawn(async move {
                let _ = s
                    .call_with::<_, ()>(
                        Heartbeat::METHOD,
                        &(),
                        CallOptions::new().timeout(interval),
                    )
                    .await;
            });
            interval.min(bound.saturating_sub(silent))
        } else {
            interval.saturating_sub(silent)
        };
        tokio::select! {
            _ = &mut closed => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

impl Plugin for Heartbeat {
    fn name(&self) -> &str {
        "heartbeat"
    }

    fn after_accept<'a>(&'a self, session: &'a Session) -> BoxFuture<'a, Result<(), Status>> {
        self.start(session);
        Box::pin(async { Ok(()) })
    }

    fn after_dial<'a>(
        &'a self,
        session: &'a Session,
        _is_redial: bool,
    ) -> BoxFuture<'a, Result<(), Status>> {
        self.start(session);
        Box::pin(async { Ok(()) })
    }

    fn before_read_header(&self, session: &Session) {
        session.with_value::<Arc<Liveness>, _>(|l| {
            if let Some(l) = l {
                l.touch();
            }
        });
    }
}
