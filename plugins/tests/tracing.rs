//! Tracing over real sockets: a chain A → B → C is one trace, each span
//! names its parent, and every span ends with its status and time taken.

use drpc::{CallCtx, CallOptions, Code, Endpoint, PushCtx, Router, Status};
use drpc_plugins::{TraceContext, Tracing};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen in time"))
}

/// A closed span: its name and fields.
#[derive(Debug, Clone)]
struct Closed {
    name: &'static str,
    fields: HashMap<String, String>,
}

impl Closed {
    fn get(&self, field: &str) -> &str {
        self.fields.get(field).map(String::as_str).unwrap_or("")
    }
}

/// Collects every span of target `drpc` when it closes.
#[derive(Clone, Default)]
struct Collector {
    closed: Arc<Mutex<Vec<Closed>>>,
    changed: Arc<Notify>,
}

struct Fields(HashMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Collector {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().target() != "drpc" {
            return;
        }
        let mut fields = Fields(HashMap::new());
        attrs.record(&mut fields);
        ctx.span(id).unwrap().extensions_mut().insert(fields);
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(fields) = ctx.span(id).unwrap().extensions_mut().get_mut::<Fields>() {
            values.record(fields);
        }
    }
    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let span = ctx.span(&id).unwrap();
        let Some(fields) = span.extensions_mut().remove::<Fields>() else {
            return;
        };
        self.closed.lock().unwrap().push(Closed {
            name: span.metadata().name(),
            fields: fields.0,
        });
        self.changed.notify_waiters();
    }
}

impl Collector {
    /// Waits until a span of `name` with `method` has closed, and returns it.
    async fn wait(&self, name: &str, method: &str) -> Closed {
        within(&format!("span {name} {method}"), async {
            loop {
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                let found = self
                    .closed
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|c| c.name == name && c.get("method") == method)
                    .cloned();
                if let Some(found) = found {
                    return found;
                }
                changed.await;
            }
        })
        .await
    }
}

// One thread: the subscriber is set for this thread, where every task runs.
#[tokio::test(flavor = "current_thread")]
async fn a_chain_of_calls_and_pushes_across_three_endpoints_is_one_trace() {
    let collector = Collector::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(collector.clone()));

    // C: the leaf, with a call and a push handler.
    let (noted_tx, mut noted) = mpsc::unbounded_channel();
    let mut rc = Router::new();
    rc.call("/leaf", |_: CallCtx, x: i64| async move {
        Ok::<_, Status>(x * 2)
    })
    .unwrap();
    rc.push("/note", move |_: PushCtx, s: String| {
        let _ = noted_tx.send(s);
        async {}
    })
    .unwrap();
    let c = Endpoint::builder()
        .router(rc)
        .plugin(Tracing::new())
        .build()
        .unwrap();
    let c_addr = c.listen("tcp://127.0.0.1:0").await.unwrap();

    // B: serves A and calls and pushes to C from its handler, on one
    // endpoint that both listens and dials.
    let b = Endpoint::builder().plugin(Tracing::new());
    let b_to_c: Arc<tokio::sync::OnceCell<drpc::Session>> = Arc::default();
    let mut rb = Router::new();
    let to_c = b_to_c.clone();
    rb.call("/relay", move |_: CallCtx, x: i64| {
        let to_c = to_c.clone();
        async move {
            let c = to_c.get().expect("dialed before any call");
            c.push("/note", &"relayed").await?;
            // The first call is made while the reader polls the handler
            // for the first time; the second after an await, on the
            // handler's own task. Both must carry the trace on.
            let first: i64 = c.call("/leaf", &x).await?;
            let second: i64 = c.call("/leaf", &x).await?;
            Ok::<_, Status>((first + second) / 2)
        }
    })
    .unwrap();
    rb.call("/slow", |_: CallCtx, _: ()| async move {
        std::future::pending::<()>().await;
        Ok::<_, Status>(())
    })
    .unwrap();
    let b = b.router(rb).build().unwrap();
    let b_addr = b.listen("tcp://127.0.0.1:0").await.unwrap();
    b_to_c.set(b.dial(&c_addr).await.unwrap()).unwrap();

    // A: the client, which starts the trace.
    let a = Endpoint::builder().plugin(Tracing::new()).build().unwrap();
    let to_b = a.dial(&b_addr).await.unwrap();
    assert_eq!(to_b.call::<_, i64>("/relay", &21).await.unwrap(), 42);
    assert_eq!(
        within("the note", noted.recv()).await.as_deref(),
        Some("relayed")
    );

    let a_call = collector.wait("drpc.call", "/relay").await;
    let b_handle = collector.wait("drpc.handle", "/relay").await;
    let b_call = collector.wait("drpc.call", "/leaf").await;
    let c_handle = collector.wait("drpc.handle", "/leaf").await;
    let b_push = collector.wait("drpc.push", "/note").await;
    let c_push = collector.wait("drpc.push.handle", "/note").await;

    // One trace...
    let trace = a_call.get("trace_id");
    assert_eq!(trace.len(), 32);
    for s in [&b_handle, &b_call, &c_handle, &b_push, &c_push] {
        assert_eq!(s.get("trace_id"), trace, "{s:?}");
    }
    // ...where each span names its parent: A's call is the root.
    assert_eq!(a_call.get("parent_id"), "");
    assert_eq!(b_handle.get("parent_id"), a_call.get("span_id"));
    assert_eq!(b_call.get("parent_id"), b_handle.get("span_id"));
    assert_eq!(c_handle.get("parent_id"), b_call.get("span_id"));
    assert_eq!(b_push.get("parent_id"), b_handle.get("span_id"));
    assert_eq!(c_push.get("parent_id"), b_push.get("span_id"));
    // Both calls to C, the one after the await too.
    let leaf_calls: Vec<Closed> = collector
        .closed
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.name == "drpc.call" && c.get("method") == "/leaf")
        .cloned()
        .collect();
    assert_eq!(leaf_calls.len(), 2);
    for call in &leaf_calls {
        assert_eq!(call.get("trace_id"), trace);
        assert_eq!(call.get("parent_id"), b_handle.get("span_id"));
    }
    let ids: std::collections::HashSet<_> =
        [&a_call, &b_handle, &b_call, &c_handle, &b_push, &c_push]
            .iter()
            .map(|s| s.get("span_id").to_string())
            .collect();
    assert_eq!(ids.len(), 6, "every span has its own id");

    // Each ends with its status and time, and names its session and seq.
    for s in [&a_call, &b_handle, &b_call, &c_handle, &c_push] {
        assert_eq!(s.get("status"), "0", "{s:?}");
        assert!(s.get("elapsed_us").parse::<u64>().is_ok(), "{s:?}");
        assert!(s.get("session").starts_with("tcp://"), "{s:?}");
        assert!(s.get("seq").parse::<u32>().is_ok(), "{s:?}");
    }
    // The caller's span lasts at least as long as the handler's.
    let us = |s: &Closed| s.get("elapsed_us").parse::<u64>().unwrap();
    assert!(us(&a_call) >= us(&b_handle));
    assert!(us(&b_call) >= us(&c_handle));

    // Failures: an unknown method (the peer's 404) and a deadline (408,
    // from both sides) end their spans with the status and its message.
    let err = to_b.call::<_, ()>("/missing", &()).await.unwrap_err();
    assert_eq!(err.code(), Code::NOT_FOUND);
    let missing = collector.wait("drpc.call", "/missing").await;
    assert_eq!(missing.get("status"), "404");
    assert!(missing.get("error").contains("/missing"), "{missing:?}");
    assert_eq!(
        collector
            .wait("drpc.handle", "/missing")
            .await
            .get("status"),
        "404"
    );
    let err = to_b
        .call_with::<_, ()>(
            "/slow",
            &(),
            CallOptions::new().timeout(Duration::from_millis(50)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DEADLINE_EXCEEDED);
    assert_eq!(
        collector.wait("drpc.call", "/slow").await.get("status"),
        "408"
    );
    // The handler's own deadline (408) races the caller's cancel (499),
    // sent when the caller's deadline, a little earlier, passed.
    let handled = collector.wait("drpc.handle", "/slow").await;
    assert!(
        ["408", "499"].contains(&handled.get("status")),
        "{handled:?}"
    );

    a.close().await;
    b.close().await;
    c.close().await;
}

#[test]
fn traceparent_values_are_read_as_the_standard_says() {
    let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let tc = TraceContext::parse(good).unwrap();
    assert_eq!(tc.to_string(), good);
    assert_eq!(tc.child().trace_id, tc.trace_id);
    assert_ne!(tc.child().span_id, tc.span_id);
    // A later version may add fields; version 00 may not.
    assert!(TraceContext::parse(&format!("01{}-extra", &good[2..])).is_some());
    for bad in [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
    ] {
        assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
    }
    let root = TraceContext::new_root();
    assert!(root.sampled() && root.trace_id != 0 && root.span_id != 0);
}
