//! `drpc listen`: accepts sessions and prints each call and push, one line
//! each, answering calls with `--reply` or their own body.

use crate::args::ListenArgs;
use crate::{body, connect};
use bytes::Bytes;
use drpc::{Incoming, Router, Status};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// `kind method from peer body [meta k=v ...]`, the body as compact JSON.
fn describe(kind: &str, m: &Incoming) -> String {
    let shown = match body::decode(m.body(), m.codec()) {
        Ok(v) => v.to_string(),
        Err(e) => format!("<{} bytes: {e}>", m.body().len()),
    };
    let mut line = format!(
        "{kind} {} from {} {shown}",
        m.service_method(),
        m.session().peer_addr()
    );
    if !m.meta().is_empty() {
        line.push_str(" meta");
        for (k, v) in m.meta().iter() {
            line.push_str(&format!(" {k}={v}"));
        }
    }
    line
}

/// Prints a line at once (stdout may be a pipe that a test reads).
fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Counts what arrived; wakes `main` once `limit` is reached.
struct Counter {
    seen: AtomicU64,
    limit: Option<u64>,
    done: Notify,
}

impl Counter {
    fn tick(&self) {
        let n = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        if self.limit == Some(n) {
            self.done.notify_one();
        }
    }
}

pub async fn listen(args: ListenArgs) -> Result<(), String> {
    let reply = match &args.reply {
        Some(text) => Some(
            serde_json::from_str::<serde_json::Value>(text)
                .map_err(|e| format!("--reply is not JSON ({e}): {text}"))?,
        ),
        None => None,
    };
    let counter = Arc::new(Counter {
        seen: AtomicU64::new(0),
        limit: args.count,
        done: Notify::new(),
    });
    let mut router = Router::new();
    let calls = counter.clone();
    router
        .call_fallback_raw(move |ctx| {
            let (reply, counter) = (reply.clone(), calls.clone());
            async move {
                emit(&describe("call", &ctx));
                counter.tick();
                match &reply {
                    Some(v) => {
                        body::encode_value(v, ctx.reply_codec()).map_err(Status::bad_message)
                    }
                    None => Ok::<Bytes, Status>(ctx.body().clone()),
                }
            }
        })
        .map_err(|e| e.to_string())?;
    let pushes = counter.clone();
    router
        .push_fallback(move |ctx| {
            let counter = pushes.clone();
            async move {
                emit(&describe("push", &ctx));
                counter.tick();
            }
        })
        .map_err(|e| e.to_string())?;
    let endpoint = connect::listener(&args.conn, router)?
        .build()
        .map_err(|e| format!("cannot build the endpoint: {e}"))?;
    let addr = endpoint
        .listen(args.conn.url.as_str())
        .await
        .map_err(|status| format!("cannot listen on {}: {status}", args.conn.url))?;
    emit(&format!("listening on {addr}"));
    tokio::select! {
        _ = counter.done.notified(), if args.count.is_some() => {}
        _ = stop_signal() => {}
    }
    // Running handlers finish and their replies are written first.
    endpoint.close().await;
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
