//! `drpc bench`: calls one method from many workers for a while, with a
//! live progress line, then a summary as oha and ghz print one.

use crate::args::BenchArgs;
use crate::call::call_options;
use crate::report::{Report, Tally};
use crate::{body, connect};
use drpc::{CodecId, Session};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// What workers share while running.
struct Shared {
    end: Instant,
    done: AtomicU64,
    failed: AtomicU64,
    /// Calls cut off by the end of the run, neither succeeded nor failed.
    abandoned: AtomicU64,
    /// The next call's slot when a rate is set: slots are `1 / rate` apart
    /// from the start, whenever the calls before them finish.
    pacer: Option<(Mutex<Instant>, Duration)>,
}

impl Shared {
    /// Waits for this worker's next call; returns when it was due (its slot
    /// under a rate, else now), or `None` once the run is over.
    async fn turn(&self) -> Option<Instant> {
        let Some((next, every)) = &self.pacer else {
            let now = Instant::now();
            return (now < self.end).then_some(now);
        };
        let slot = {
            let mut next = next.lock().await;
            let slot = *next;
            *next = slot + *every;
            slot
        };
        if slot >= self.end {
            return None;
        }
        tokio::time::sleep_until(slot).await;
        Some(slot)
    }
}

pub async fn bench(args: BenchArgs) -> Result<(), String> {
    if args.concurrency == 0 || args.sessions == 0 {
        return Err("--concurrency and --sessions must be at least 1".into());
    }
    let every = match args.rate {
        None => None,
        Some(r) => match Duration::try_from_secs_f64(1.0 / r) {
            Ok(every) if r > 0.0 && every < args.duration => Some(every),
            _ => {
                return Err(format!(
                    "--rate {r} is not a number of calls per second that fits in --duration"
                ))
            }
        },
    };
    let codec: CodecId = args.message.codec.into();
    let arg = body::encode(args.message.json.as_deref(), codec)?;
    let (endpoint, sessions) =
        connect::dial(&args.conn, args.sessions, args.message.timeout).await?;
    let started = Instant::now();
    let shared = Arc::new(Shared {
        end: started + args.duration,
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        abandoned: AtomicU64::new(0),
        pacer: every.map(|every| (Mutex::new(started), every)),
    });
    let workers: Vec<_> = (0..args.concurrency)
        .map(|i| {
            let session: Session = sessions[i % sessions.len()].clone();
            let (shared, arg) = (shared.clone(), arg.clone());
            let (method, opts) = (args.message.method.clone(), call_options(&args.message));
            tokio::spawn(async move {
                let mut tally = Tally::new();
                // Under a rate, latency counts from the call's slot, so a
                // server that falls behind shows it (no coordinated omission).
                while let Some(due) = shared.turn().await {
                    let call = session.call_raw(&method, arg.clone(), opts.clone());
                    // The run ends at `--duration`: a call still waiting then
                    // is dropped (drpc forgets it) and counted apart.
                    let Ok(result) = tokio::time::timeout_at(shared.end, call).await else {
                        shared.abandoned.fetch_add(1, Ordering::Relaxed);
                        break;
                    };
                    let code = match &result {
                        Ok(_) => drpc::Code::OK,
                        Err(status) => {
                            shared.failed.fetch_add(1, Ordering::Relaxed);
                            status.code()
                        }
                    };
                    tally.record(code, due.elapsed());
                    shared.done.fetch_add(1, Ordering::Relaxed);
                }
                tally
            })
        })
        .collect();
    let progress = (!args.quiet).then(|| tokio::spawn(progress(shared.clone(), args.duration)));
    let mut total = Tally::new();
    for w in workers {
        total.merge(w.await.map_err(|e| format!("a worker failed: {e}"))?);
    }
    let elapsed = started.elapsed();
    if let Some(p) = progress {
        p.abort();
        eprintln!();
    }
    endpoint.close().await;
    let report = Report {
        tally: total,
        elapsed,
        abandoned: shared.abandoned.load(Ordering::Relaxed),
        concurrency: args.concurrency,
        sessions: args.sessions,
    };
    crate::out(&report.to_string());
    if report.tally.succeeded() == 0 {
        return Err("no call succeeded".into());
    }
    Ok(())
}

/// Rewrites one line on standard error four times a second.
async fn progress(shared: Arc<Shared>, duration: Duration) {
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let secs = start.elapsed().as_secs_f64();
        let done = shared.done.load(Ordering::Relaxed);
        let failed = shared.failed.load(Ordering::Relaxed);
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{secs:6.1}s / {:.0}s  {done} calls  {rate:.0}/s  {failed} errors   ",
            duration.as_secs_f64()
        );
        let _ = err.flush();
    }
}
