//! Metrics through the `metrics` facade.

use drpc::plugin::{BoxFuture, CallEnd, HandledCall};
use drpc::proto::Message;
use drpc::{Plugin, Session, Status};
use metrics::{counter, gauge, histogram};
use std::sync::Mutex;
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

/// A call being handled: when it started and its label, kept with the
/// call. Recorded when its reply is written, or, for a call that ends
/// without one (its connection ended first), when it ends.
struct Handling {
    started: Instant,
    method: String,
    recorded: bool,
}

impl Handling {
    fn record(&mut self, status: i32) {
        self.recorded = true;
        let method = std::mem::take(&mut self.method);
        histogram!("drpc_call_handle_seconds", "method" => method.clone())
            .record(self.started.elapsed().as_secs_f64());
        counter!("drpc_calls_handled_total", "method" => method, "status" => status.to_string())
            .increment(1);
    }
}

impl HandledCall for Handling {
    fn before_reply(&mut self, reply: &mut Message) -> Result<(), Status> {
        body_out(reply);
        self.record(reply.header.status_code);
        Ok(())
    }

    fn on_cancel(&mut self, status: &Status) {
        self.record(status.code().0);
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        if !self.recorded {
            self.record(drpc::Code::CONNECTION_CLOSED.0);
        }
    }
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

    fn after_accept<'a>(&'a self, _: &'a Session) -> BoxFuture<'a, Result<(), Status>> {
        gauge!("drpc_sessions_open").increment(1.0);
        counter!("drpc_sessions_total", "origin" => "accepted").increment(1);
        Box::pin(async { Ok(()) })
    }

    fn after_dial<'a>(
        &'a self,
        _: &'a Session,
        is_redial: bool,
    ) -> BoxFuture<'a, Result<(), Status>> {
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

    fn handle_call(
        &self,
        _: &Session,
        msg: &Message,
    ) -> Result<Option<Box<dyn HandledCall>>, Status> {
        body_in(msg);
        Ok(Some(Box::new(Handling {
            started: Instant::now(),
            method: self.label(&msg.header.service_method),
            recorded: false,
        })))
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
