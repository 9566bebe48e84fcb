//! What giving up and moving data cost, measured against the issue's
//! promises, in one run; it exits non-zero when a promise fails:
//!
//! ```text
//! cargo run --release --example stream_bench -- [--cancels 200]
//! ```
//!
//! * **cancel**: a caller drops a call whose handler waits forever; the
//!   time from the drop to the handler's future being dropped at the peer
//!   (docs/PROTOCOL.md section 3.3), over TCP on loopback. Promise: the
//!   99th percentile under 10 ms.
//!
//! Client and server run on one multi-threaded runtime, as an application
//! would; on a loaded machine the figures grow with the load.

use drpc::{CallCtx, CallOptions, Endpoint, Router, Status};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The promise for the time from a drop to the handler's stop, at p99.
const CANCEL_PROMISE: Duration = Duration::from_millis(10);

/// Signals, with the time, when a handler's future is dropped.
struct OnDrop(mpsc::UnboundedSender<Instant>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(Instant::now());
    }
}

fn main() -> ExitCode {
    let mut cancels = 200usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--cancels", Some(n)) => match n.parse() {
                Ok(n) if n > 0 => cancels = n,
                _ => return usage(&format!("--cancels wants a count above 0, not {n}")),
            },
            (other, _) => return usage(&format!("unknown argument {other}")),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let ok = rt.block_on(async {
        match cancel(cancels).await {
            Ok(ok) => ok,
            Err(status) => {
                eprintln!("cancel: failed: {status}");
                false
            }
        }
    });
    match ok {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    }
}

fn usage(why: &str) -> ExitCode {
    eprintln!("{why}\nusage: stream_bench [--cancels N]");
    ExitCode::from(2)
}

/// Drops `rounds` calls one after another and reports how long each
/// handler took to stop; true when the promise holds.
async fn cancel(rounds: usize) -> Result<bool, Status> {
    let (started_tx, mut started) = mpsc::unbounded_channel::<()>();
    let (dropped_tx, mut dropped) = mpsc::unbounded_channel();
    let mut routes = Router::new();
    routes
        .call("/hang", move |_: CallCtx, _: ()| {
            let guard = OnDrop(dropped_tx.clone());
            let _ = started_tx.send(());
            async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                Ok::<_, Status>(())
            }
        })
        .map_err(|e| Status::internal(e.to_string()))?;
    let server = Endpoint::builder().router(routes).build()?;
    let addr = server.listen("tcp://127.0.0.1:0").await?;
    let client = Endpoint::builder().build()?;
    let session = client.dial(&addr).await?;
    let mut took = Vec::with_capacity(rounds);
    let bound = Duration::from_secs(5);
    for _ in 0..rounds {
        let s = session.clone();
        let call = tokio::spawn(async move {
            let opts = CallOptions::new().timeout(Duration::from_secs(60));
            s.call_with::<_, ()>("/hang", &(), opts).await
        });
        tokio::time::timeout(bound, started.recv())
            .await
            .map_err(|_| Status::deadline_exceeded("the handler did not start within 5 s"))?;
        let gave_up = Instant::now();
        call.abort();
        let stopped = tokio::time::timeout(bound, dropped.recv())
            .await
            .map_err(|_| Status::deadline_exceeded("the handler did not stop within 5 s"))?
            .ok_or_else(|| Status::internal("the handler's channel closed"))?;
        took.push(stopped.saturating_duration_since(gave_up));
    }
    client.close().await;
    server.close().await;
    took.sort();
    let at = |q: f64| took[((took.len() - 1) as f64 * q).round() as usize];
    let p99 = at(0.99);
    let ok = p99 < CANCEL_PROMISE;
    println!(
        "cancel over tcp, {rounds} calls dropped: handler stopped after p50 {:?}, p99 {:?}, max {:?}; promise p99 < {:?}: {}",
        at(0.5),
        p99,
        at(1.0),
        CANCEL_PROMISE,
        if ok { "kept" } else { "FAILED" }
    );
    Ok(ok)
}
