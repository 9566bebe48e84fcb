//! Tracing: a span per call and push on both sides, and W3C trace context
//! carried in meta so that a chain of calls across endpoints is one trace.

use drpc::plugin::{CallEnd, HandledCall, MadeCall};
use drpc::proto::{Header, Message};
use drpc::{CallCtx, Incoming, Plugin, PushCtx, Session, Status};
use std::fmt;
use std::time::{Duration, Instant};
use tracing::field::Empty;
use tracing::Span;

/// The meta key of the trace context, as W3C Trace Context names its
/// header (docs/PROTOCOL.md, section 10.2).
pub const TRACEPARENT: &str = "traceparent";

/// A W3C trace context: the trace, the span within it, and its flags
/// (bit 0: sampled). Written in meta as
/// `00-<trace id, 32 hex>-<span id, 16 hex>-<flags, 2 hex>`.
///
/// ```
/// use drpc_plugins::TraceContext;
///
/// let tc = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
/// assert_eq!(tc.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
/// assert_eq!(tc.span_id, 0x00f067aa0ba902b7);
/// assert!(tc.sampled());
/// assert_eq!(tc.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// assert_eq!(TraceContext::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// The trace every span of one request chain shares; never 0.
    pub trace_id: u128,
    /// This span; never 0.
    pub span_id: u64,
    /// The trace flags; bit 0 says the trace is sampled.
    pub flags: u8,
}

impl TraceContext {
    /// Parses a `traceparent` value. `None` for anything that is not a
    /// valid one (wrong lengths, upper-case or non-hex digits, all-zero
    /// ids, version `ff`); a receiver then starts a new trace. A version
    /// above 00 is read for its first four fields, as the standard asks.
    pub fn parse(value: &str) -> Option<Self> {
        // Runs for every message received: one pass over fixed offsets.
        let b = value.as_bytes();
        if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let version = hex(&b[..2])?;
        // Version 00 is exactly 55 bytes; a later one may add fields.
        if version == 0xff || (version == 0 && b.len() != 55) || (b.len() > 55 && b[55] != b'-') {
            return None;
        }
        let tc = Self {
            trace_id: hex(&b[3..35])?,
            span_id: hex(&b[36..52])? as u64,
            flags: hex(&b[53..55])? as u8,
        };
        (tc.trace_id != 0 && tc.span_id != 0).then_some(tc)
    }

    /// A new trace, sampled.
    pub fn new_root() -> Self {
        Self {
            trace_id: fastrand::u128(1..),
            span_id: fastrand::u64(1..),
            flags: 1,
        }
    }

    /// A new span in the same trace, with the same flags.
    pub fn child(&self) -> Self {
        Self {
            span_id: fastrand::u64(1..),
            ..*self
        }
    }

    /// Whether the sampled flag is set.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

impl TraceContext {
    /// The `traceparent` value, written straight into its 55 bytes (this
    /// runs for every call and push sent).
    fn to_traceparent(self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 55];
        out[..3].copy_from_slice(b"00-");
        for i in 0..32 {
            out[3 + i] = HEX[((self.trace_id >> (124 - 4 * i)) & 0xf) as usize];
        }
        out[35] = b'-';
        for i in 0..16 {
            out[36 + i] = HEX[((self.span_id >> (60 - 4 * i)) & 0xf) as usize];
        }
        out[52] = b'-';
        out[53] = HEX[(self.flags >> 4) as usize];
        out[54] = HEX[(self.flags & 0xf) as usize];
        std::str::from_utf8(&out)
            .expect("hex digits and dashes are ASCII")
            .to_owned()
    }
}

/// The value of lower-case hex digits (at most 32 of them); `None` for any
/// other byte, as the standard allows no upper case. A table and one check
/// at the end: random ids make a branch per digit mispredict often.
fn hex(digits: &[u8]) -> Option<u128> {
    const BAD: u8 = 0x10;
    const TABLE: [u8; 256] = {
        let mut t = [BAD; 256];
        let mut i = 0;
        while i < 10 {
            t[b'0' as usize + i] = i as u8;
            i += 1;
        }
        let mut i = 0;
        while i < 6 {
            t[b'a' as usize + i] = 10 + i as u8;
            i += 1;
        }
        t
    };
    let mut value = 0u128;
    let mut bad = 0u8;
    for &d in digits {
        let v = TABLE[d as usize];
        bad |= v;
        value = value << 4 | u128::from(v & 0xf);
    }
    (bad & BAD == 0).then_some(value)
}

/// Whether a subscriber records this plugin's spans at all; when none
/// does, the plugin only carries the trace on, with no per-call tables.
fn recording() -> bool {
    tracing::enabled!(target: "drpc", tracing::Level::INFO)
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

/// A `tracing` span for every call and push, on both sides, linked across
/// endpoints by W3C trace context in meta.
///
/// | span | where | ends |
/// |---|---|---|
/// | `drpc.call` | a call this side makes | when the call ends, however (reply, deadline, close) |
/// | `drpc.handle` | a call this side answers | when the reply is queued, or the caller cancels it (status 499) |
/// | `drpc.push` | a push this side sends | when it is handed to the session (a push has no answer) |
/// | `drpc.push.handle` | a push this side handles | when the handler finishes |
///
/// Every span has the fields `session`, `seq` (0 for pushes), `method`,
/// `trace_id`, `span_id` and `parent_id` (hex, as in `traceparent`), and,
/// when it ends, `status` (the status code, 0 for success) and
/// `elapsed_us` (the time taken; none for a push sent, which returns once
/// queued); a failed one also gets `error` with the status message. They
/// are at INFO level, with target `drpc`.
///
/// Calls and pushes carry their span's context in the `traceparent` meta
/// entry. A call or push made *from a handler* becomes a child of the span
/// of the message being handled, so a chain A → B → C is one trace; one
/// made elsewhere starts a new trace, unless the caller put a valid
/// `traceparent` in its meta, which then is the parent. Inside a handler,
/// [`Tracing::current`] gives the handled message's context, for logs or
/// for propagating it by hand to a task the handler spawns.
///
/// ```
/// use drpc::{CallCtx, Endpoint, Router, Status};
/// use drpc_plugins::Tracing;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut routes = Router::new();
/// routes.call("/trace_id", |_: CallCtx, _: ()| async move {
///     let tc = Tracing::current().expect("set for every handled call");
///     Ok::<_, Status>(format!("{:032x}", tc.trace_id))
/// })?;
/// let server = Endpoint::builder().router(routes).plugin(Tracing::new()).build()?;
/// let addr = server.listen("tcp://127.0.0.1:0").await?;
/// let client = Endpoint::builder().build()?;
/// let session = client.dial(&addr).await?;
///
/// // The client sets the trace by hand here; with `Tracing` on its own
/// // endpoint it would start one (or continue the one it is handling).
/// let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// let reply = session
///     .call_with::<_, String>("/trace_id", &(), drpc::CallOptions::new().meta("traceparent", traceparent))
///     .await?;
/// assert_eq!(reply.value, "4bf92f3577b34da6a3ce929d0e0e4736");
/// # client.close().await; server.close().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct Tracing {
    _private: (),
}

/// A call this side makes: its span, kept with the call until it ends.
struct Made {
    span: Span,
}

impl MadeCall for Made {
    fn end(self: Box<Self>, end: &CallEnd<'_>) {
        finish(
            &self.span,
            end.status.code().0,
            end.status.message(),
            Some(end.elapsed),
        );
    }
}

/// A call this side handles: its trace context (for the handler and the
/// calls it makes) and, when a subscriber records it, its span, kept with
/// the call until its reply is written or the call ends without one.
struct Handled {
    tc: TraceContext,
    span: Option<(Span, Instant)>,
}

impl HandledCall for Handled {
    fn before_handler(&mut self, ctx: &CallCtx) -> Result<(), Status> {
        ctx.set_value(self.tc);
        Ok(())
    }

    fn before_reply(&mut self, reply: &mut Message) -> Result<(), Status> {
        if let Some((span, started)) = self.span.take() {
            finish(
                &span,
                reply.header.status_code,
                &reply.header.status_message,
                Some(started.elapsed()),
            );
        }
        Ok(())
    }

    fn on_cancel(&mut self, status: &Status) {
        if let Some((span, started)) = self.span.take() {
            finish(
                &span,
                status.code().0,
                status.message(),
                Some(started.elapsed()),
            );
        }
    }
}

impl Drop for Handled {
    fn drop(&mut self) {
        // Ended without a reply or a cancel: its connection was lost first.
        if let Some((span, started)) = self.span.take() {
            finish(
                &span,
                drpc::Code::CONNECTION_CLOSED.0,
                "the call ended before its reply was written",
                Some(started.elapsed()),
            );
        }
    }
}

impl Tracing {
    /// The plugin; it has no settings (filter its spans with the `tracing`
    /// subscriber, by target `drpc` and the span names above).
    pub fn new() -> Self {
        Self::default()
    }

    /// The trace context of the call or push whose handler is running on
    /// this task, if the handling endpoint has this plugin.
    pub fn current() -> Option<TraceContext> {
        Incoming::with_current(|m| m.and_then(|m| m.value::<TraceContext>()))
    }
}

/// The parent of an outgoing message: a valid `traceparent` the sender set
/// by hand, else the message being handled on this task.
fn outgoing_parent(msg: &Message) -> Option<TraceContext> {
    msg.header
        .meta
        .get(TRACEPARENT)
        .and_then(TraceContext::parse)
        .or_else(Tracing::current)
}

fn incoming_parent(header: &Header) -> Option<TraceContext> {
    header.meta.get(TRACEPARENT).and_then(TraceContext::parse)
}

fn context_for(parent: Option<TraceContext>) -> TraceContext {
    parent
        .map(|p| p.child())
        .unwrap_or_else(TraceContext::new_root)
}

/// The four kinds of span.
#[derive(Clone, Copy)]
enum Kind {
    Call,
    Handle,
    Push,
    PushHandle,
}

/// A span of `kind` for `header`, with its ids.
fn span(
    kind: Kind,
    session: &Session,
    header: &Header,
    tc: &TraceContext,
    parent: Option<TraceContext>,
) -> Span {
    // Span names must be literals, so one macro spells the fields once.
    macro_rules! drpc_span {
        ($name:literal) => {
            tracing::info_span!(
                target: "drpc",
                $name,
                session = %session.id(),
                seq = header.seq,
                method = %header.service_method,
                trace_id = %format_args!("{:032x}", tc.trace_id),
                span_id = %format_args!("{:016x}", tc.span_id),
                parent_id = Empty,
                status = Empty,
                elapsed_us = Empty,
                error = Empty,
            )
        };
    }
    let span = match kind {
        Kind::Call => drpc_span!("drpc.call"),
        Kind::Handle => drpc_span!("drpc.handle"),
        Kind::Push => drpc_span!("drpc.push"),
        Kind::PushHandle => drpc_span!("drpc.push.handle"),
    };
    if let Some(p) = parent {
        span.record("parent_id", format_args!("{:016x}", p.span_id));
    }
    span
}

fn finish(span: &Span, code: i32, message: &str, elapsed: Option<Duration>) {
    span.record("status", code);
    if let Some(elapsed) = elapsed {
        span.record("elapsed_us", elapsed.as_micros() as u64);
    }
    if code != 0 {
        span.record("error", message);
    }
}

impl Plugin for Tracing {
    fn name(&self) -> &str {
        "tracing"
    }

    fn make_call(
        &self,
        session: &Session,
        msg: &mut Message,
    ) -> Result<Option<Box<dyn MadeCall>>, Status> {
        let parent = outgoing_parent(msg);
        let tc = context_for(parent);
        msg.header.meta.insert(TRACEPARENT, tc.to_traceparent());
        // With no subscriber that records it, there is no span to end: the
        // trace is only carried on.
        if !recording() {
            return Ok(None);
        }
        let span = span(Kind::Call, session, &msg.header, &tc, parent);
        Ok((!span.is_disabled()).then(|| Box::new(Made { span }) as Box<dyn MadeCall>))
    }

    fn handle_call(
        &self,
        session: &Session,
        msg: &Message,
    ) -> Result<Option<Box<dyn HandledCall>>, Status> {
        let parent = incoming_parent(&msg.header);
        let tc = context_for(parent);
        let span = recording()
            .then(|| span(Kind::Handle, session, &msg.header, &tc, parent))
            .filter(|s| !s.is_disabled())
            .map(|s| (s, Instant::now()));
        Ok(Some(Box::new(Handled { tc, span })))
    }

    fn before_write_push(&self, session: &Session, msg: &mut Message) -> Result<(), Status> {
        let parent = outgoing_parent(msg);
        let tc = context_for(parent);
        let span = span(Kind::Push, session, &msg.header, &tc, parent);
        msg.header.meta.insert(TRACEPARENT, tc.to_traceparent());
        // Handed to the session: there is nothing more to wait for.
        finish(&span, 0, "", None);
        Ok(())
    }

    fn after_read_push_body(&self, ctx: &PushCtx) -> Result<(), Status> {
        ctx.set_value(context_for(incoming_parent(ctx.header())));
        Ok(())
    }

    fn after_push_handler(&self, ctx: &PushCtx, elapsed: Duration) {
        // A push whose body did not decode never got a context.
        let parent = incoming_parent(ctx.header());
        let tc = ctx
            .value::<TraceContext>()
            .unwrap_or_else(|| context_for(parent));
        let span = span(Kind::PushHandle, ctx.session(), ctx.header(), &tc, parent);
        finish(&span, 0, "", Some(elapsed));
    }
}

#[cfg(test)]
mod tests {
    use super::TraceContext;

    #[test]
    fn the_fast_writer_matches_the_display() {
        for _ in 0..1000 {
            let tc = TraceContext {
                flags: fastrand::u8(..),
                ..TraceContext::new_root()
            };
            assert_eq!(tc.to_traceparent(), tc.to_string());
            assert_eq!(TraceContext::parse(&tc.to_traceparent()), Some(tc));
        }
    }
}
