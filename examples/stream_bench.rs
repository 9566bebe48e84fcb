//! What giving up and moving data cost, measured against the issue's
//! promises, in one run; it exits non-zero when a promise fails:
//!
//! ```text
//! cargo run --release --example stream_bench -- [--cancels 200] [--mib 1024] [--chunk-kib 64]
//! ```
//!
//! * **cancel**: a caller drops a call whose handler waits forever; the
//!   time from the drop to the handler's future being dropped at the peer
//!   (docs/PROTOCOL.md section 3.3), over TCP on loopback. Promise: the
//!   99th percentile under 10 ms.
//! * **bytes**: `--mib` MiB (1 GiB by default) as a server stream of raw
//!   byte items over one TCP session on loopback, beside a plain tokio
//!   TCP copy of the same bytes in the same run (each run three times,
//!   taking turns; the best of each counts: on a shared machine a copy's
//!   pace varies by a third from run to run, and the best is what each
//!   can do). Promises: drpc reaches 0.8x the
//!   copy's throughput, and the process's peak memory grows by less than
//!   64 MiB while drpc moves the bytes.
//!
//! Client and server run on one multi-threaded runtime, as an application
//! would; on a loaded machine the figures grow with the load.

use bytes::Bytes;
use drpc::{Blob, CallCtx, CallOptions, CodecId, Endpoint, ItemSink, Router, Status};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// How many times each of the copy and the stream moves the bytes.
const ROUNDS: usize = 3;

/// The promised share of a plain TCP copy's throughput.
const BYTES_PROMISE: f64 = 0.8;
/// The promised bound on the memory a 1 GiB stream may add.
const MEMORY_PROMISE: u64 = 64 << 20;

fn main() -> ExitCode {
    let mut cancels = 200usize;
    let mut mib = 1024u64;
    let mut chunk_kib = 64usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--cancels", Some(n)) => match n.parse() {
                Ok(n) if n > 0 => cancels = n,
                _ => return usage(&format!("--cancels wants a count above 0, not {n}")),
            },
            ("--mib", Some(n)) => match n.parse() {
                Ok(n) if n > 0 => mib = n,
                _ => return usage(&format!("--mib wants a size above 0, not {n}")),
            },
            ("--chunk-kib", Some(n)) => match n.parse() {
                Ok(n) if n > 0 && n <= 4096 => chunk_kib = n,
                _ => return usage(&format!("--chunk-kib wants 1 to 4096, not {n}")),
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
        let cancel = cancel(cancels).await.unwrap_or_else(|status| {
            eprintln!("cancel: failed: {status}");
            false
        });
        let bytes = bytes(mib << 20, chunk_kib << 10)
            .await
            .unwrap_or_else(|status| {
                eprintln!("bytes: failed: {status}");
                false
            });
        cancel && bytes
    });
    match ok {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    }
}

fn usage(why: &str) -> ExitCode {
    eprintln!("{why}\nusage: stream_bench [--cancels N] [--mib N] [--chunk-kib N]");
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

/// Moves `total` bytes both ways twice, taking turns, and checks the
/// promises; true when they hold.
async fn bytes(total: u64, chunk: usize) -> Result<bool, Status> {
    let mut routes = Router::new();
    routes
        .server_stream(
            "/bytes",
            |_: CallCtx, (total, chunk): (u64, usize), out: ItemSink<Blob>| async move {
                let mut out = out.with_codec(CodecId::RAW);
                let piece = Bytes::from(vec![0x5a; chunk]);
                let mut left = total;
                while left > 0 {
                    let n = left.min(chunk as u64) as usize;
                    out.send_raw(piece.slice(..n)).await?;
                    left -= n as u64;
                }
                Ok::<_, Status>(())
            },
        )
        .map_err(|e| Status::internal(e.to_string()))?;
    let server = Endpoint::builder().router(routes).build()?;
    let addr = server.listen("tcp://127.0.0.1:0").await?;
    let client = Endpoint::builder().build()?;
    let session = client.dial(&addr).await?;
    let (mut best_tcp, mut best_drpc, mut grew) = (0f64, 0f64, 0u64);
    for _ in 0..ROUNDS {
        best_tcp = best_tcp.max(tcp_copy(total, chunk).await?);
        let base = memory("VmRSS");
        // The peak from here on is this run's.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let started = Instant::now();
        let opts = CallOptions::new().timeout(Duration::from_secs(600));
        let mut items = session
            .stream::<_, Blob>("/bytes", &(total, chunk), opts)
            .await?;
        let mut got = 0u64;
        while let Some(item) = items.next().await {
            got += item?.len() as u64;
        }
        if got != total {
            return Err(Status::internal(format!("{got} bytes arrived of {total}")));
        }
        best_drpc = best_drpc.max(total as f64 / started.elapsed().as_secs_f64());
        grew = grew.max(memory("VmHWM").saturating_sub(base));
    }
    client.close().await;
    server.close().await;
    let ratio = best_drpc / best_tcp;
    let (fast, small) = (ratio >= BYTES_PROMISE, grew < MEMORY_PROMISE);
    let mib = |b: f64| b / f64::from(1u32 << 20);
    println!(
        "bytes over tcp, {} MiB in {} KiB items: tokio copy {:.0} MiB/s, drpc stream {:.0} MiB/s = {ratio:.2}x; promise >= {BYTES_PROMISE}x: {}",
        total >> 20,
        chunk >> 10,
        mib(best_tcp),
        mib(best_drpc),
        if fast { "kept" } else { "FAILED" }
    );
    println!(
        "memory while drpc streamed: peak grew {:.1} MiB; promise < {} MiB: {}",
        mib(grew as f64),
        MEMORY_PROMISE >> 20,
        if small { "kept" } else { "FAILED" }
    );
    Ok(fast && small)
}

/// A plain tokio TCP copy of `total` bytes in `chunk`-byte writes, on
/// loopback; bytes per second.
async fn tcp_copy(total: u64, chunk: usize) -> Result<f64, Status> {
    let io = |e: std::io::Error| Status::internal(format!("tcp copy: {e}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(io)?;
    let addr = listener.local_addr().map_err(io)?;
    let sender = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await?;
        let piece = vec![0x5a; chunk];
        let mut left = total;
        while left > 0 {
            let n = left.min(chunk as u64) as usize;
            sock.write_all(&piece[..n]).await?;
            left -= n as u64;
        }
        sock.shutdown().await
    });
    let started = Instant::now();
    let mut sock = tokio::net::TcpStream::connect(addr).await.map_err(io)?;
    let mut buf = vec![0u8; chunk];
    let mut got = 0u64;
    loop {
        let n = sock.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    let elapsed = started.elapsed();
    sender
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(io)?;
    if got != total {
        return Err(Status::internal(format!(
            "tcp copy: {got} bytes of {total}"
        )));
    }
    Ok(total as f64 / elapsed.as_secs_f64())
}

/// A memory figure of this process from /proc/self/status, in bytes (0
/// where it cannot be read).
fn memory(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib << 10)
}
