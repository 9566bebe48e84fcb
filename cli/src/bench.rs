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
    /// The next free start time when a rate is set.
    pacer: Option<(Mutex<Instant>, Duration)>,
}

impl Shared {
    /// Waits for this worker's turn under the rate; false once past the end.
    async fn turn(&self) -> bool {
        if let Some((next, every)) = &self.pacer {
            let at = {
                let mut next = next.lock().await;
                let at = (*next).max(Instant::now());
                *next = at + *every;
                at
            };
            if at >= self.end {
                return false;
            }
            tokio::time::sleep_until(at).await;
        }
        Instant::now() < self.end
    }
}

pub async fn bench(args: BenchArgs) -> Result<(), String> {
    if args.concurrency == 0 || args.sessions == 0 {
        return Err("--concurrency and --sessions must be at least 1".into());
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err("--rate must be a positive number of calls per second".into());
    }
    let codec: CodecId = args.message.codec.into();
    let arg = body::encode(args.message.json.as_deref(), codec)?;
    let (endpoint, sessions) = connect::dial(&args.conn, args.sessions).await?;
    let started = Instant::now();
    let shared = Arc::new(Shared {
        end: started + args.duration,
        done: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        pacer: args
            .rate
            .map(|r| (Mutex::new(started), Duration::from_secs_f64(1.0 / r))),
    });
    let workers: Vec<_> = (0..args.concurrency)
        .map(|i| {
            let session: Session = sessions[i % sessions.len()].clone();
            let (shared, arg) = (shared.clone(), arg.clone());
            let (method, opts) = (args.message.method.clone(), call_options(&args.message));
            tokio::spawn(async move {
                let mut tally = Tally::new();
                while shared.turn().await {
                    let t = Instant::now();
                    let result = session.call_raw(&method, arg.clone(), opts.clone()).await;
                    let code = match &result {
                        Ok(_) => drpc::Code::OK,
                        Err(status) => {
                            shared.failed.fetch_add(1, Ordering::Relaxed);
                            status.code()
                        }
                    };
                    tally.record(code, t.elapsed());
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
        concurrency: args.concurrency,
        sessions: args.sessions,
    };
    print!("{report}");
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
