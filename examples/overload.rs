//! Overload protection, measured: a server whose handlers can take about
//! 10,000 calls/s is offered ten times that. Run it with:
//!
//! ```text
//! cargo run --release --example overload -- [--secs 3]
//! ```
//!
//! The handler stands for I/O-bound work: it waits 10 ms. `Limits::max_calls`
//! of 100 makes the capacity 100 / 10 ms = 10,000 calls/s. The client first
//! offers half of that (the baseline), then ten times that, as an open loop:
//! calls start on a fixed schedule whatever happens to earlier ones. It
//! prints, for each phase, how many calls were taken and refused (503), the
//! latency of each kind, and the process's resident memory while it ran.

use drpc::{CallCtx, Code, Config, Endpoint, Limits, Router, Status};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WORK: Duration = Duration::from_millis(10);
const MAX_CALLS: usize = 100;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Resident memory of this process in KiB (Linux), for the figures.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[derive(Default)]
struct Tally {
    ok: Vec<u64>,
    refused: Vec<u64>,
    other: usize,
}

fn pct(v: &mut [u64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)] as f64 / 1e6
}

/// Starts `rate` calls per second for `secs`, each on its own task, and
/// waits for all of them; samples memory meanwhile.
async fn phase(session: &drpc::Session, rate: u64, secs: f64) -> (Tally, u64, u64) {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let per_tick = (rate / 1000).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = tokio::task::JoinSet::new();
    let (mut rss_min, mut rss_max) = (u64::MAX, 0);
    let mut n = 0u64;
    while Instant::now() < end {
        tick.tick().await;
        for _ in 0..per_tick {
            let (s, tally) = (session.clone(), tally.clone());
            tasks.spawn(async move {
                let started = Instant::now();
                let r = s.call::<_, ()>("/work", &()).await;
                let ns = started.elapsed().as_nanos() as u64;
                let mut t = tally.lock().unwrap();
                match r {
                    Ok(()) => t.ok.push(ns),
                    Err(e) if e.code() == Code::OVERLOADED => t.refused.push(ns),
                    Err(_) => t.other += 1,
                }
            });
        }
        // Reap finished calls as we go so the set stays small.
        while tasks.try_join_next().is_some() {}
        n += 1;
        if n % 100 == 0 {
            if let Some(kib) = rss_kib() {
                rss_min = rss_min.min(kib);
                rss_max = rss_max.max(kib);
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    let tally = std::mem::take(&mut *tally.lock().unwrap());
    (tally, rss_min, rss_max)
}

fn main() {
    let mut secs = 3.0;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--secs" => secs = args.next().and_then(|v| v.parse().ok()).expect("--secs N"),
            other => panic!("unknown flag {other}"),
        }
    }
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        runtime().block_on(async move {
            let mut router = Router::new();
            router
                .call("/work", |_: CallCtx, _: ()| async move {
                    tokio::time::sleep(WORK).await;
                    Ok::<_, Status>(())
                })
                .unwrap();
            let config = Config {
                limits: Limits {
                    max_calls: MAX_CALLS,
                    max_calls_per_session: MAX_CALLS,
                    ..Limits::default()
                },
                ..Config::default()
            };
            let ep = Endpoint::builder()
                .config(config)
                .router(router)
                .build()
                .unwrap();
            addr_tx
                .send(ep.listen("tcp://127.0.0.1:0").await.unwrap())
                .unwrap();
            let _ = stop_rx.await;
            println!("server: calls running at the end: {}", ep.calls_running());
            ep.close().await;
        })
    });
    let addr = addr_rx.recv().unwrap();
    let capacity = (MAX_CALLS as f64 / WORK.as_secs_f64()) as u64;
    runtime().block_on(async move {
        let client = Endpoint::builder().build().unwrap();
        let session = client.dial(&addr).await.unwrap();
        println!(
            "handler: waits {WORK:?}; Limits::max_calls = {MAX_CALLS}; capacity about {capacity} calls/s"
        );
        println!(
            "{:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>14}",
            "offered/s", "taken/s", "ok p50ms", "ok p99ms", "503/s", "503 p50ms", "503 p99ms", "errors", "RSS MiB min-max"
        );
        for rate in [capacity / 2, capacity * 10] {
            let (mut t, lo, hi) = phase(&session, rate, secs).await;
            println!(
                "{:>10} {:>10.0} {:>9.2} {:>9.2} {:>9.0} {:>9.3} {:>9.3} {:>9} {:>8.1}-{:.1}",
                rate,
                t.ok.len() as f64 / secs,
                pct(&mut t.ok, 0.5),
                pct(&mut t.ok, 0.99),
                t.refused.len() as f64 / secs,
                pct(&mut t.refused, 0.5),
                pct(&mut t.refused, 0.99),
                t.other,
                lo as f64 / 1024.0,
                hi as f64 / 1024.0,
            );
        }
        client.close().await;
    });
    let _ = stop_tx.send(());
    server.join().unwrap();
}
