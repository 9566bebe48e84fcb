//! Unary-call throughput and latency of drpc beside a bare framed echo over
//! the same kind of socket: the ceiling. Run it with:
//!
//! ```text
//! cargo run --release --example bench -- [--secs 2] [--inflight 1,10,100] [--body 581] [--rounds 3] [--only drpc|ceiling] [--transport tcp|unix|tls|quic|quic-single|kcp|all] [--big 0] [--plugins none|tracing,metrics,counters]
//! ```
//!
//! `--big N` adds one caller that echoes an N-byte body back to back on the
//! same session while the measured calls run; the figures are still those
//! of the small calls, so they show how much a large message holds up the
//! small ones behind it (head-of-line blocking).
//!
//! `--transport` picks what drpc runs over (default `tcp`; a comma list or
//! `all` runs several, each in the same rounds). The ceiling is always the
//! bare echo over TCP, so every ratio compares a transport with the same
//! yardstick. TLS and QUIC use a certificate made at start-up;
//! `quic-single` is QUIC with `StreamMode::Single` on both sides.
//!
//! `--plugins` puts built-in plugins on both endpoints, to measure what they
//! cost (no `tracing` subscriber or `metrics` recorder is installed, so this
//! is the cost of the hooks themselves: trace context made and carried,
//! per-call tables, labels).
//!
//! Each in-flight level runs `--rounds` times, ceiling and drpc back to back
//! in every round; calls/s is the median over the rounds (a loaded 2-core
//! machine makes single runs noisy), latency percentiles pool every call.
//! `--only` runs one side, for profiling; the ratio column then reads `-`.
//!
//! Server and client each run on a single-threaded tokio runtime on its own
//! OS thread, so each gets one core. For every in-flight level the bench
//! measures the ceiling and then drpc, back to back, and prints calls/s, p50
//! and p99 latency, and drpc's share of the ceiling's calls/s.
//!
//! The ceiling is what any RPC over one connection must at least do: one
//! TCP connection, requests framed as `[u32 length][u64 id][body]`, a writer
//! task that coalesces queued requests into one write, a reader task that
//! completes waiting requests by id, and a server that echoes each frame.
//! drpc adds its header, routing, a task per call, deadlines and hooks.

#[path = "support/certs.rs"]
mod certs;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use drpc::socket::quic::StreamMode;
use drpc::{CallCtx, CallOptions, CodecId, Endpoint, Router, Session};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

struct Args {
    secs: f64,
    inflight: Vec<usize>,
    body: usize,
    rounds: usize,
    only: Option<String>,
    transports: Vec<String>,
    big: usize,
    plugins: Vec<String>,
}

const TRANSPORTS: [&str; 6] = ["tcp", "unix", "tls", "quic", "quic-single", "kcp"];

fn parse_args() -> Args {
    let mut args = Args {
        secs: 2.0,
        inflight: vec![1, 10, 100],
        body: 581,
        rounds: 3,
        only: None,
        transports: vec!["tcp".to_string()],
        big: 0,
        plugins: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--secs" => args.secs = value.parse().expect("--secs takes a number"),
            "--only" if value == "drpc" || value == "ceiling" => args.only = Some(value),
            "--rounds" => {
                args.rounds = value
                    .parse::<usize>()
                    .expect("--rounds takes a count")
                    .max(1)
            }
            "--transport" => {
                args.transports = if value == "all" {
                    TRANSPORTS.iter().map(|t| t.to_string()).collect()
                } else {
                    value
                        .split(',')
                        .map(|t| {
                            let t = t.trim();
                            assert!(TRANSPORTS.contains(&t), "unknown transport {t}");
                            t.to_string()
                        })
                        .collect()
                }
            }
            "--plugins" => {
                args.plugins = value
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty() && *p != "none")
                    .map(|p| {
                        assert!(
                            ["tracing", "metrics", "counters"].contains(&p),
                            "unknown plugin {p}"
                        );
                        p.to_string()
                    })
                    .collect()
            }
            "--big" => args.big = value.parse().expect("--big takes a byte count"),
            "--body" => args.body = value.parse().expect("--body takes a byte count"),
            "--inflight" => {
                args.inflight = value
                    .split(',')
                    .map(|n| {
                        n.trim()
                            .parse()
                            .expect("--inflight takes numbers like 1,10,100")
                    })
                    .collect()
            }
            other => panic!("unknown flag {other}; see the file's docs"),
        }
    }
    args
}

/// An endpoint builder with the plugins of `--plugins`.
fn builder(plugins: &[String]) -> drpc::EndpointBuilder {
    plugins
        .iter()
        .fold(Endpoint::builder(), |b, p| match p.as_str() {
            "tracing" => b.plugin(drpc_plugins::Tracing::new()),
            "metrics" => b.plugin(drpc_plugins::Metrics::default()),
            _ => b.plugin(drpc_plugins::Counters::default()),
        })
}

fn single_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

// ---------- the ceiling: a bare framed echo ----------

async fn bare_server(listener: TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(bare_echo(stream));
    }
}

async fn bare_echo(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut inbuf = BytesMut::with_capacity(64 * 1024);
    let mut out = BytesMut::with_capacity(64 * 1024);
    loop {
        match stream.read_buf(&mut inbuf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        while inbuf.len() >= 4 {
            let len = u32::from_be_bytes(inbuf[..4].try_into().unwrap()) as usize;
            if inbuf.len() < 4 + len {
                inbuf.reserve(4 + len - inbuf.len());
                break;
            }
            out.extend_from_slice(&inbuf[..4 + len]);
            inbuf.advance(4 + len);
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    }
}

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Bytes>>>>;

struct BareClient {
    tx: mpsc::Sender<(u64, Bytes)>,
    waiters: Waiters,
    next: AtomicU64,
}

impl BareClient {
    async fn connect(addr: std::net::SocketAddr) -> Arc<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .expect("connect to the bare server");
        stream.set_nodelay(true).unwrap();
        let (mut rd, mut wr) = stream.into_split();
        let (tx, mut rx) = mpsc::channel::<(u64, Bytes)>(1024);
        let waiters: Waiters = Default::default();
        tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(64 * 1024);
            while let Some(first) = rx.recv().await {
                let mut next = Some(first);
                while let Some((id, body)) = next {
                    buf.put_u32((8 + body.len()) as u32);
                    buf.put_u64(id);
                    buf.put_slice(&body);
                    next = if buf.len() < 64 * 1024 {
                        rx.try_recv().ok()
                    } else {
                        None
                    };
                }
                if wr.write_all(&buf).await.is_err() {
                    return;
                }
                buf.clear();
            }
        });
        let w = waiters.clone();
        tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(64 * 1024);
            loop {
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                while buf.len() >= 4 {
                    let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
                    if buf.len() < 4 + len {
                        buf.reserve(4 + len - buf.len());
                        break;
                    }
                    let mut frame = buf.split_to(4 + len).freeze();
                    frame.advance(4);
                    let id = frame.get_u64();
                    if let Some(waiter) = w.lock().unwrap().remove(&id) {
                        let _ = waiter.send(frame);
                    }
                }
                if buf.capacity() - buf.len() < 4096 {
                    buf.reserve(64 * 1024);
                }
            }
        });
        Arc::new(Self {
            tx,
            waiters,
            next: AtomicU64::new(0),
        })
    }

    async fn call(&self, body: Bytes) -> Bytes {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().unwrap().insert(id, tx);
        self.tx.send((id, body)).await.expect("bare writer alive");
        rx.await.expect("bare reply")
    }
}

// ---------- measurement ----------

#[derive(Clone)]
enum Target {
    Ceiling(Arc<BareClient>),
    Drpc(Session),
}

impl Target {
    async fn call(&self, body: &Bytes) -> usize {
        match self {
            Target::Ceiling(c) => c.call(body.clone()).await.len(),
            Target::Drpc(s) => s
                .call_with::<_, Bytes>("/echo", body, CallOptions::new().codec(CodecId::Raw))
                .await
                .expect("drpc echo")
                .value
                .len(),
        }
    }
}

#[derive(Clone, Copy)]
struct Figures {
    calls_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

/// One round: a warm-up, then `secs` of calls; returns calls/s and every
/// call's latency in nanoseconds.
async fn round(
    target: &Target,
    inflight: usize,
    secs: f64,
    body: &Bytes,
    big: &Bytes,
) -> (f64, Vec<u64>) {
    // A short warm-up so connections, buffers and caches are settled.
    run(target, inflight, Duration::from_millis(300), body, big).await;
    let started = Instant::now();
    let lat = run(target, inflight, Duration::from_secs_f64(secs), body, big).await;
    (lat.len() as f64 / started.elapsed().as_secs_f64(), lat)
}

/// Median calls/s over the rounds, and percentiles over all their calls.
fn summarize(mut rates: Vec<f64>, mut lat: Vec<u64>) -> Figures {
    rates.sort_by(f64::total_cmp);
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1000.0;
    Figures {
        calls_per_sec: rates[rates.len() / 2],
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

/// `inflight` workers call back to back until the time is up; returns every
/// call's latency in nanoseconds.
async fn run(
    target: &Target,
    inflight: usize,
    time: Duration,
    body: &Bytes,
    big: &Bytes,
) -> Vec<u64> {
    let end = Instant::now() + time;
    let big_caller = (!big.is_empty()).then(|| {
        let (target, big) = (target.clone(), big.clone());
        tokio::spawn(async move {
            while Instant::now() < end {
                assert_eq!(target.call(&big).await, big.len());
            }
        })
    });
    let workers: Vec<_> = (0..inflight)
        .map(|_| {
            let (target, body) = (target.clone(), body.clone());
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(64 * 1024);
                while Instant::now() < end {
                    let t = Instant::now();
                    let n = target.call(&body).await;
                    lat.push(t.elapsed().as_nanos() as u64);
                    assert_eq!(n, body.len(), "echo returned the wrong length");
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    if let Some(b) = big_caller {
        b.await.expect("big caller");
    }
    all
}

fn listen_addr(transport: &str) -> String {
    match transport {
        "unix" => format!(
            "unix://{}",
            std::env::temp_dir()
                .join(format!("drpc-bench-{}.sock", std::process::id()))
                .display()
        ),
        "quic-single" => "quic://127.0.0.1:0".to_string(),
        t => format!("{t}://127.0.0.1:0"),
    }
}

fn main() {
    let args = parse_args();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let config = drpc::Config {
        transport: certs::transport_config().expect("certificates"),
        ..drpc::Config::default()
    };
    let server_config = config.clone();
    let transports = args.transports.clone();
    let server_plugins = args.plugins.clone();
    let server = std::thread::spawn(move || {
        single_thread_runtime().block_on(async move {
            let mut router = Router::new();
            router
                .call_raw(
                    "/echo",
                    |ctx: CallCtx| async move { Ok(ctx.body().clone()) },
                )
                .unwrap();
            let endpoint = builder(&server_plugins)
                .config(server_config.clone())
                .router(router.clone())
                .build()
                .unwrap();
            let mut single_config = server_config.clone();
            single_config.transport.quic.streams = StreamMode::Single;
            let single = builder(&server_plugins)
                .config(single_config)
                .router(router.clone())
                .build()
                .unwrap();
            let mut drpc_addrs = Vec::new();
            for t in &transports {
                let ep = if t == "quic-single" {
                    &single
                } else {
                    &endpoint
                };
                drpc_addrs.push(ep.listen(listen_addr(t)).await.unwrap());
            }
            let bare = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let bare_addr = bare.local_addr().unwrap();
            tokio::spawn(bare_server(bare));
            addr_tx.send((drpc_addrs, bare_addr)).unwrap();
            let _ = stop_rx.await;
            endpoint.close().await;
            single.close().await;
        })
    });
    let (drpc_addrs, bare_addr) = addr_rx.recv().expect("server started");

    single_thread_runtime().block_on(async move {
        let mut single_config = config.clone();
        single_config.transport.quic.streams = StreamMode::Single;
        let client = builder(&args.plugins).config(config).build().unwrap();
        let single = builder(&args.plugins)
            .config(single_config)
            .build()
            .unwrap();
        let mut drpc = Vec::new();
        for (t, addr) in args.transports.iter().zip(&drpc_addrs) {
            // The mode is the sender's choice, so each side sets its own.
            let session = if t == "quic-single" {
                single.dial(addr).await.unwrap()
            } else {
                client.dial(addr).await.unwrap()
            };
            drpc.push((t.as_str(), Target::Drpc(session)));
        }
        let ceiling = Target::Ceiling(BareClient::connect(bare_addr).await);
        let body = Bytes::from((0..args.body).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        let big = Bytes::from(vec![7u8; args.big]);

        println!(
            "drpc bench: unary calls, {} B body (raw codec), loopback, {} rounds of {} s per level; ceiling: bare echo over TCP",
            args.body, args.rounds, args.secs
        );
        if args.big > 0 {
            println!(
                "while one more caller echoes a {} B body back to back on the same session",
                args.big
            );
        }
        println!(
            "server and client: one single-threaded tokio runtime each, on separate OS threads (one core each)"
        );
        println!();
        println!(
            "{:>9} | {:>14} {:>9} {:>9} | {:>9} {:>14} {:>9} {:>9} | {:>7}",
            "in-flight", "ceiling call/s", "p50 µs", "p99 µs", "transport", "drpc call/s", "p50 µs", "p99 µs", "ratio"
        );
        println!("{}", "-".repeat(108));
        for &n in &args.inflight {
            let want = |side: &str| args.only.as_deref().is_none_or(|o| o == side);
            let (mut c_rates, mut c_lat) = (vec![], vec![]);
            let mut d: Vec<(Vec<f64>, Vec<u64>)> = vec![(vec![], vec![]); drpc.len()];
            for _ in 0..args.rounds {
                if want("ceiling") {
                    let (rate, lat) = round(&ceiling, n, args.secs, &body, &big).await;
                    c_rates.push(rate);
                    c_lat.extend(lat);
                }
                if want("drpc") {
                    for ((_, target), (rates, lats)) in drpc.iter().zip(d.iter_mut()) {
                        let (rate, lat) = round(target, n, args.secs, &body, &big).await;
                        rates.push(rate);
                        lats.extend(lat);
                    }
                }
            }
            let none = Figures {
                calls_per_sec: f64::NAN,
                p50_us: f64::NAN,
                p99_us: f64::NAN,
            };
            let c = if c_rates.is_empty() { none } else { summarize(c_rates, c_lat) };
            for ((name, _), (rates, lats)) in drpc.iter().zip(d) {
                let f = if rates.is_empty() { none } else { summarize(rates, lats) };
                let ratio = 100.0 * f.calls_per_sec / c.calls_per_sec;
                let ratio = if ratio.is_nan() || args.only.is_some() {
                    "-".to_string()
                } else {
                    format!("{ratio:.0}%")
                };
                println!(
                    "{:>9} | {:>14.0} {:>9.1} {:>9.1} | {:>9} {:>14.0} {:>9.1} {:>9.1} | {:>7}",
                    n, c.calls_per_sec, c.p50_us, c.p99_us, name, f.calls_per_sec, f.p50_us, f.p99_us, ratio
                );
            }
        }
        client.close().await;
        single.close().await;
    });
    let _ = stop_tx.send(());
    server.join().expect("server thread");
}
