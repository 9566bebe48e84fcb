//! Metrics through the `metrics` facade.

use drpc::plugin::{BoxFuture, CallEnd};
use drpc::proto::Message;
use drpc::{Plugin, Session, Status};
use metrics::{counter, gauge, histogram};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Records what an endpoint does through the [`metrics`] facade, so any
/// recorder (Prometheus, StatsD, ...) can export it; with no recorder
/// installed it costs next to nothing.
///
/// | metric | kind | labels |
/// |---|---|---|
/// | `drpc_sessions_open` | gauge | |
/// | `drpc_sessions_total` | counter | `origin`: `accepted`, `dialed` |
/// | `drpc_calls_handled_total` | counter | `method`, `status` |
/// | `drpc_call_handle_seconds` | histogram | `method` |
/// | `drpc_calls_made_total` | counter | `method`, `status` |
/// | `drpc_call_seconds` | histogram | `method` |
/// | `drpc_pushes_received_total`, `drpc_pushes_sent_total` | counter | `method` |
/// | `drpc_body_bytes_received_total`, `drpc_body_bytes_sent_total` | counter | |
///
/// A call the endpoint has no route for is labelled `method="(unrouted)"`,
/// so a peer cannot grow the label set by calling made-up methods. A call
/// made is recorded however it ends: with the peer's status, or with the
/// local one when it ends without a reply (408 for its deadline, 102 for a
/// closed session, 499 when the caller stopped waiting).
/// `examples/metrics.rs` serves these in the Prometheus text format.
///
/// ```
/// let endpoint = drpc::Endpoint::builder()
///     .plugin(drpc_plugins::Metrics::default())
///     .build()
///     .unwrap();
/// # drop(endpoint);
/// ```
#[derive(Debug, Default)]
pub struct Metrics {
    /// Service methods with a route: the only ones used as labels.
    routed: Mutex<std::collections::HashSet<String>>,
}

/// Calls under way on a session, by seq: when they started, and for what.
#[derive(Default)]
struct InFlight {
    handled: Mutex<HashMap<u32, (Instant, String)>>,
}

impl Metrics {
    fn label(&self, method: &str) -> String {
        let routed = self.routed.lock().unwrap_or_else(|e| e.into_inner());
        if routed.contains(method) {
            method.to_string()
        } else {
            "(unrouted)".to_string()
        }
    }

    /// The session's table of calls under way, made by its connect hook
    /// (before any message, so the reader and writer never race to make
    /// it).
    fn in_flight(session: &Session) -> Option<Arc<InFlight>> {
        session.value::<Arc<InFlight>>()
    }

    fn start(session: &Session) {
        if session.value::<Arc<InFlight>>().is_none() {
            session.set_value(Arc::new(InFlight::default()));
        }
    }
}

fn body_in(msg: &Message) {
    counter!("drpc_body_bytes_received_total").increment(msg.body.len() as u64);
}

fn body_out(msg: &Message) {
    counter!("drpc_body_bytes_sent_total").increment(msg.body.len() as u64);
}

impl Plugin for Metrics {
    fn name(&self) -> &str {
        "metrics"
    }

    fn after_register(&self, route: drpc::plugin::RouteInfo<'_>) -> Result<(), Status> {
        if !route.path.is_empty() {
            self.routed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(route.path.to_string());
        }
        Ok(())
    }

    fn after_accept<'a>(&'a self, session: &'a Session) -> BoxFuture<'a, Result<(), Status>> {
        Self::start(session);
        gauge!("drpc_sessions_open").increment(1.0);
        counter!("drpc_sessions_total", "origin" => "accepted").increment(1);
        Box::pin(async { Ok(()) })
    }

    fn after_dial<'a>(
        &'a self,
        session: &'a Session,
        is_redial: bool,
    ) -> BoxFuture<'a, Result<(), Status>> {
        Self::start(session);
        // A redial keeps its session: it was counted when it was dialed.
        if !is_redial {
            gauge!("drpc_sessions_open").increment(1.0);
            counter!("drpc_sessions_total", "origin" => "dialed").increment(1);
        }
        Box::pin(async { Ok(()) })
    }

    fn after_session_close(&self, _: &Session) {
        gauge!("drpc_sessions_open").decrement(1.0);
    }

    fn after_read_call_header(&self, session: &Session, msg: &mut Message) -> Result<(), Status> {
        body_in(msg);
        let method = self.label(&msg.header.service_method);
        if let Some(t) = Self::in_flight(session) {
            if let Ok(mut t) = t.handled.lock() {
                t.insert(msg.header.seq, (Instant::now(), method));
            }
        }
        Ok(())
    }

    fn before_write_reply(&self, session: &Session, msg: &mut Message) -> Result<(), Status> {
        body_out(msg);
        let started =
            Self::in_flight(session).and_then(|t| t.handled.lock().ok()?.remove(&msg.header.seq));
        if let Some((at, method)) = started {
            let status = msg.header.status_code.to_string();
            histogram!("drpc_call_handle_seconds", "method" => method.clone())
                .record(at.elapsed().as_secs_f64());
            counter!("drpc_calls_handled_total", "method" => method, "status" => status)
                .increment(1);
        }
        Ok(())
    }

    fn before_write_call(&self, _: &Session, msg: &mut Message) -> Result<(), Status> {
        body_out(msg);
        Ok(())
    }

    fn after_read_reply_header(&self, _: &Session, msg: &mut Message) -> Result<(), Status> {
        body_in(msg);
        Ok(())
    }

    fn after_call_end(&self, _: &Session, end: &CallEnd<'_>) {
        // Every call made, however it ended: a deadline passed here counts
        // as 408 like one the peer answered with 408.
        let method = end.service_method.to_string();
        let status = end.status.code().0.to_string();
        histogram!("drpc_call_seconds", "method" => method.clone())
            .record(end.elapsed.as_secs_f64());
        counter!("drpc_calls_made_total", "method" => method, "status" => status).increment(1);
    }

    fn before_write_push(&self, _: &Session, msg: &mut Message) -> Result<(), Status> {
        body_out(msg);
        counter!("drpc_pushes_sent_total", "method" => msg.header.service_method.to_string())
            .increment(1);
        Ok(())
    }

    fn after_read_push_header(&self, _: &Session, msg: &mut Message) -> Result<(), Status> {
        body_in(msg);
        let method = self.label(&msg.header.service_method);
        counter!("drpc_pushes_received_total", "method" => method).increment(1);
        Ok(())
    }
}
