//! Calls, errors and latency per route, for the control channel.

use drpc::plugin::{HandledCall, RouteInfo, RouteKind};
use drpc::proto::Message;
use drpc::{Plugin, Session, Status};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Counts, for each call route of the endpoint it is added to, the calls
/// it handled, how many were answered with an error, and their time from
/// arrival to reply. Read it with [`RouteStats::snapshot`], or through the
/// control channel ([`Admin::route_stats`](crate::Admin::route_stats),
/// `drpc ctl URL routes`).
///
/// ```
/// use drpc::Endpoint;
/// use drpc_plugins::RouteStats;
/// use std::sync::Arc;
///
/// let stats = Arc::new(RouteStats::default());
/// let endpoint = Endpoint::builder().plugin_arc(stats.clone()).build()?;
/// assert!(stats.snapshot().contains_key("/_drpc/health"));
/// # Ok::<(), drpc::Status>(())
/// ```
#[derive(Debug, Default)]
pub struct RouteStats {
    routes: RwLock<BTreeMap<String, Arc<Counts>>>,
}

#[derive(Debug, Default)]
struct Counts {
    calls: AtomicU64,
    errors: AtomicU64,
    total_us: AtomicU64,
    max_us: AtomicU64,
}

/// One route's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteFigures {
    /// Calls answered (or refused) on this route.
    pub calls: u64,
    /// Of those, answered with a status other than OK.
    pub errors: u64,
    /// Mean time from arrival to reply, in microseconds.
    pub mean_us: u64,
    /// The longest, in microseconds.
    pub max_us: u64,
}

impl RouteStats {
    /// Each call route's figures so far, by path.
    pub fn snapshot(&self) -> BTreeMap<String, RouteFigures> {
        self.routes
            .read()
            .iter()
            .map(|(path, c)| {
                let calls = c.calls.load(Ordering::Relaxed);
                let total = c.total_us.load(Ordering::Relaxed);
                let figures = RouteFigures {
                    calls,
                    errors: c.errors.load(Ordering::Relaxed),
                    mean_us: total.checked_div(calls).unwrap_or(0),
                    max_us: c.max_us.load(Ordering::Relaxed),
                };
                (path.clone(), figures)
            })
            .collect()
    }
}

impl Plugin for RouteStats {
    fn name(&self) -> &str {
        "route-stats"
    }

    fn after_register(&self, route: RouteInfo<'_>) -> Result<(), Status> {
        if route.kind == RouteKind::Call {
            self.routes
                .write()
                .entry(route.path.to_string())
                .or_default();
        }
        Ok(())
    }

    fn handle_call(
        &self,
        _: &Session,
        msg: &Message,
    ) -> Result<Option<Box<dyn HandledCall>>, Status> {
        // Only registered routes: a flood of unknown names cannot grow it.
        let method: &str = &msg.header.service_method;
        let counts = self.routes.read().get(method).cloned();
        Ok(counts.map(|counts| {
            Box::new(Timing {
                counts,
                started: Instant::now(),
                failed: true,
            }) as Box<dyn HandledCall>
        }))
    }
}

/// One call being timed; counted when it ends.
struct Timing {
    counts: Arc<Counts>,
    started: Instant,
    /// Until a successful reply is seen, the call counts as failed (it
    /// may end without one: cancelled, its connection lost).
    failed: bool,
}

impl HandledCall for Timing {
    fn before_reply(&mut self, reply: &mut Message) -> Result<(), Status> {
        self.failed = reply.header.status_code != 0;
        Ok(())
    }
}

impl Drop for Timing {
    fn drop(&mut self) {
        let us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let c = &self.counts;
        c.calls.fetch_add(1, Ordering::Relaxed);
        if self.failed {
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
        c.total_us.fetch_add(us, Ordering::Relaxed);
        c.max_us.fetch_max(us, Ordering::Relaxed);
    }
}
