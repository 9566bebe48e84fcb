//! Unary-call throughput, latency and CPU per call of drpc beside a bare
//! framed echo over the same kind of socket (the ceiling), in one run:
//!
//! ```text
//! cargo run --release --example bench -- [--secs 2] [--rounds 3] [--inflight 1,10,100]
//!     [--body 581] [--sessions 1] [--codec raw,typed] [--only drpc|ceiling]
//!     [--transport tcp|unix|tls|quic|quic-single|kcp|all] [--big 0]
//!     [--plugins none|tracing,metrics,counters]
//! ```
//!
//! With no `--inflight`, `--body` or `--sessions`, it runs three tables:
//! a 581-byte body on one session at 1, 10 and 100 calls in flight; the
//! same load at 100 in flight spread over 4 sessions (beside 4 ceiling
//! connections, and one: `ceiling x1`); and a 16 KiB body at 10 in flight. Each drpc row is one
//! codec: `raw` (the raw codec) or `typed` (MessagePack); both echo a
//! [`drpc::Blob`], which decodes as a slice of the frame.
//!
//! Server and client each run on a single-threaded tokio runtime on its own
//! OS thread, so each gets one core. Every level runs `--rounds` times,
//! ceiling and drpc taking turns in slices of a twelfth of a round, in an
//! order that rotates (so a drift of the machine's speed, and the wake of
//! the target before, touch them alike); calls/s is the median over
//! the rounds, latency percentiles pool every call, and CPU per call is the
//! CPU time of both threads (read from their thread clocks) over the calls
//! made, so a loss in calls/s with equal CPU per call shows stalls between
//! tasks rather than work.
//!
//! `--transport` picks what drpc runs over (a comma list or `all`; the
//! ceiling is always TCP). `--big N` adds a caller echoing an N-byte body
//! back to back on the same session (head-of-line blocking). `--plugins`
//! puts built-in plugins on both endpoints, to measure what they cost.

#[path = "bench/ceiling.rs"]
mod ceiling;
#[path = "support/certs.rs"]
mod certs;
#[path = "bench/cpu.rs"]
mod cpu;

use bytes::Bytes;
use drpc::socket::quic::StreamMode;
use drpc::{Blob, CallCtx, CallOptions, CodecId, Endpoint, Router, Session, Status};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

const TRANSPORTS: [&str; 6] = ["tcp", "unix", "tls", "quic", "quic-single", "kcp"];

struct Args {
    secs: f64,
    rounds: usize,
    cases: Vec<Case>,
    codecs: Vec<CodecId>,
    only: Option<String>,
    transports: Vec<String>,
    big: usize,
    plugins: Vec<String>,
}

/// One table: a body size, a number of sessions, and in-flight levels.
#[derive(Clone)]
struct Case {
    body: usize,
    sessions: usize,
    inflight: Vec<usize>,
}

fn parse_args() -> Args {
    let mut args = Args {
        secs: 2.0,
        rounds: 3,
        cases: Vec::new(),
        codecs: vec![CodecId::RAW, CodecId::MSGPACK],
        only: None,
        transports: vec!["tcp".to_string()],
        big: 0,
        plugins: Vec::new(),
    };
    let (mut body, mut sessions, mut inflight) = (None, None, None);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let list = |v: &str| -> Vec<String> {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        match flag.as_str() {
            "--secs" => args.secs = value.parse().expect("--secs takes a number"),
            "--rounds" => args.rounds = value.parse::<usize>().expect("a count").max(1),
            "--only" if value == "drpc" || value == "ceiling" => args.only = Some(value),
            "--body" => body = Some(value.parse().expect("--body takes a byte count")),
            "--sessions" => sessions = Some(value.parse::<usize>().expect("a count").max(1)),
            "--inflight" => {
                inflight = Some(
                    list(&value)
                        .iter()
                        .map(|n| n.parse().expect("--inflight takes numbers like 1,10,100"))
                        .collect(),
                )
            }
            "--codec" => {
                args.codecs = list(&value)
                    .iter()
                    .map(|c| match c.as_str() {
                        "raw" => CodecId::RAW,
                        "typed" => CodecId::MSGPACK,
                        other => panic!("--codec takes raw or typed, not {other}"),
                    })
                    .collect()
            }
            "--transport" => {
                args.transports = if value == "all" {
                    TRANSPORTS.iter().map(|t| t.to_string()).collect()
                } else {
                    let ts = list(&value);
                    for t in &ts {
                        assert!(TRANSPORTS.contains(&t.as_str()), "unknown transport {t}");
                    }
                    ts
                }
            }
            "--plugins" => {
                args.plugins = list(&value)
                    .into_iter()
                    .filter(|p| p != "none")
                    .inspect(|p| {
                        assert!(
                            ["tracing", "metrics", "counters"].contains(&p.as_str()),
                            "unknown plugin {p}"
                        )
                    })
                    .collect()
            }
            "--big" => args.big = value.parse().expect("--big takes a byte count"),
            other => panic!("unknown flag {other}; see the file's docs"),
        }
    }
    args.cases = if body.is_none() && sessions.is_none() && inflight.is_none() {
        vec![
            Case {
                body: 581,
                sessions: 1,
                inflight: vec![1, 10, 100],
            },
            Case {
                body: 581,
                sessions: 4,
                inflight: vec![100],
            },
            Case {
                body: 16 * 1024,
                sessions: 1,
                inflight: vec![10],
            },
        ]
    } else {
        vec![Case {
            body: body.unwrap_or(581),
            sessions: sessions.unwrap_or(1),
            inflight: inflight.unwrap_or_else(|| vec![1, 10, 100]),
        }]
    };
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

#[derive(Clone)]
enum Target {
    Ceiling(Vec<Arc<ceiling::Client>>),
    Drpc {
        sessions: Vec<Session>,
        codec: CodecId,
    },
}

impl Target {
    /// One echo on connection `i` (of several); returns the length echoed.
    async fn call(&self, i: usize, body: &Bytes) -> usize {
        match self {
            Target::Ceiling(c) => c[i % c.len()].call(body.clone()).await.len(),
            Target::Drpc { sessions, codec } => sessions[i % sessions.len()]
                .call_with::<_, Blob>(
                    "/echo",
                    &Blob(body.clone()),
                    CallOptions::new().codec(*codec),
                )
                .await
                .expect("drpc echo")
                .value
                .len(),
        }
    }
}

/// What one round measured.
struct Round {
    calls_per_sec: f64,
    cpu_per_call_us: f64,
    latencies: Vec<u64>,
}

/// How many turns each target takes within a round: a multiple of 3 and 4
/// (the default tables' targets), so each target goes first, second and
/// so on equally often.
const SLICES: usize = 12;

/// One round of every target in `targets`: a warm-up each, then `secs` of
/// calls from `inflight` workers each, taken in [`SLICES`] turns (target
/// after target, over and over), so that the machine's speed drifting
/// within the round touches every target alike. The order rotates from
/// turn to turn: a target that always ran right after another would be
/// measured in that one's wake (a second drpc target read 1 to 3 µs more
/// CPU per call at 1 in flight than the same target run first).
async fn round(
    targets: &[&Target],
    inflight: usize,
    secs: f64,
    body: &Bytes,
    big: &Bytes,
    server: cpu::Clock,
) -> Vec<Round> {
    for target in targets {
        run(target, inflight, Duration::from_millis(300), body, big).await;
    }
    let slice = Duration::from_secs_f64(secs / SLICES as f64);
    let client = cpu::Clock::this_thread();
    // Per target: latencies, seconds elapsed, CPU seconds.
    let mut taken: Vec<(Vec<u64>, f64, f64)> =
        targets.iter().map(|_| (Vec::new(), 0.0, 0.0)).collect();
    for turn in 0..SLICES {
        for k in 0..targets.len() {
            let i = (turn + k) % targets.len();
            let (target, (latencies, elapsed, cpu)) = (targets[i], &mut taken[i]);
            let cpu0 = client.seconds() + server.seconds();
            let started = Instant::now();
            latencies.extend(run(target, inflight, slice, body, big).await);
            *elapsed += started.elapsed().as_secs_f64();
            *cpu += client.seconds() + server.seconds() - cpu0;
        }
    }
    taken
        .into_iter()
        .map(|(latencies, elapsed, cpu)| Round {
            calls_per_sec: latencies.len() as f64 / elapsed,
            cpu_per_call_us: cpu * 1e6 / latencies.len() as f64,
            latencies,
        })
        .collect()
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
                assert_eq!(target.call(0, &big).await, big.len());
            }
        })
    });
    let workers: Vec<_> = (0..inflight)
        .map(|w| {
            let (target, body) = (target.clone(), body.clone());
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(64 * 1024);
                while Instant::now() < end {
                    let t = Instant::now();
                    let n = target.call(w, &body).await;
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

/// The medians of a target's rounds, and percentiles over all its calls.
struct Figures {
    calls_per_sec: f64,
    cpu_per_call_us: f64,
    p50_us: f64,
    p99_us: f64,
    /// Each round's own p50, in µs: compared round by round with the
    /// ceiling's, which ran just before, so that drift between rounds on a
    /// shared machine cancels out.
    round_p50s: Vec<f64>,
}

fn summarize(rounds: Vec<Round>) -> Option<Figures> {
    if rounds.is_empty() {
        return None;
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let calls = median(rounds.iter().map(|r| r.calls_per_sec).collect());
    let cpu = median(rounds.iter().map(|r| r.cpu_per_call_us).collect());
    let round_p50s = rounds
        .iter()
        .map(|r| {
            let mut lat = r.latencies.clone();
            lat.sort_unstable();
            percentile(&lat, 0.50)
        })
        .collect();
    let mut lat: Vec<u64> = rounds.into_iter().flat_map(|r| r.latencies).collect();
    lat.sort_unstable();
    Some(Figures {
        calls_per_sec: calls,
        cpu_per_call_us: cpu,
        p50_us: percentile(&lat, 0.50),
        p99_us: percentile(&lat, 0.99),
        round_p50s,
    })
}

/// The `p` percentile of sorted latencies in ns, in µs.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    let at = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(at).copied().unwrap_or(0) as f64 / 1000.0
}

/// The median over rounds of `f`'s p50 over the ceiling's in the same round.
fn paired_p50(f: &Figures, ceiling: &Figures) -> Option<f64> {
    let mut ratios: Vec<f64> = f
        .round_p50s
        .iter()
        .zip(&ceiling.round_p50s)
        .filter(|(_, c)| **c > 0.0)
        .map(|(d, c)| d / c)
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios.get(ratios.len() / 2).copied()
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

fn echo_router() -> Router {
    let mut router = Router::new();
    router
        .call("/echo", |_: CallCtx, body: Blob| async move {
            Ok::<_, Status>(body)
        })
        .unwrap();
    router
}

fn main() {
    let args = parse_args();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let config = drpc::Config {
        transport: certs::transport_config().expect("certificates"),
        ..drpc::Config::default()
    };
    let (server_config, transports, server_plugins) = (
        config.clone(),
        args.transports.clone(),
        args.plugins.clone(),
    );
    let server = std::thread::spawn(move || {
        single_thread_runtime().block_on(async move {
            let mut single_config = server_config.clone();
            single_config.transport.quic.streams = StreamMode::Single;
            let endpoint = builder(&server_plugins)
                .config(server_config)
                .router(echo_router())
                .build()
                .unwrap();
            let single = builder(&server_plugins)
                .config(single_config)
                .router(echo_router())
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
            let bare = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let bare_addr = bare.local_addr().unwrap();
            tokio::spawn(ceiling::server(bare));
            addr_tx.send((drpc_addrs, bare_addr)).unwrap();
            let _ = stop_rx.await;
            endpoint.close().await;
            single.close().await;
        })
    });
    let server_clock = cpu::Clock::of(&server);
    let (drpc_addrs, bare_addr) = addr_rx.recv().expect("server started");

    single_thread_runtime().block_on(async move {
        let mut single_config = config.clone();
        single_config.transport.quic.streams = StreamMode::Single;
        let client = builder(&args.plugins).config(config).build().unwrap();
        let single = builder(&args.plugins).config(single_config).build().unwrap();
        println!(
            "drpc bench: unary echo calls, loopback, {} rounds of {} s per level; ceiling: a bare framed echo over TCP",
            args.rounds, args.secs
        );
        println!("server and client: one single-threaded tokio runtime each, on separate OS threads (one core each)");
        println!("CPU is both threads' CPU time per call; 'of ceiling' compares calls/s, 'CPU x' CPU per call,");
        println!("'p50 x' each round's p50 with the ceiling's of the same round (the median of those ratios)");
        if args.big > 0 {
            println!("while one more caller echoes a {} B body back to back on the same session", args.big);
        }
        for case in &args.cases {
            let max_sessions = case.sessions;
            let mut drpc = Vec::new();
            for (t, addr) in args.transports.iter().zip(&drpc_addrs) {
                let mut sessions = Vec::new();
                for _ in 0..max_sessions {
                    // The stream mode is the sender's choice, so each side sets its own.
                    let ep = if t == "quic-single" { &single } else { &client };
                    sessions.push(ep.dial(addr).await.unwrap());
                }
                for codec in &args.codecs {
                    let name = match *codec {
                        CodecId::RAW => format!("{t} raw"),
                        _ => format!("{t} typed"),
                    };
                    drpc.push((name, Target::Drpc { sessions: sessions.clone(), codec: *codec }));
                }
            }
            let mut bare = Vec::new();
            for _ in 0..max_sessions {
                bare.push(ceiling::Client::connect(bare_addr).await);
            }
            let ceiling = Target::Ceiling(bare);
            // With several sessions, one connection's ceiling runs too: how
            // much spreading the load over sessions gains against it.
            let single_ceiling = match case.sessions {
                1 => None,
                _ => Some(Target::Ceiling(vec![ceiling::Client::connect(bare_addr).await])),
            };
            let body = Bytes::from((0..case.body).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
            let big = Bytes::from(vec![7u8; args.big]);
            println!();
            println!(
                "{} B body, {} session{}",
                case.body,
                case.sessions,
                if case.sessions == 1 {
                    ""
                } else {
                    "s (the ceiling: as many connections; ceiling x1: one connection)"
                }
            );
            let x1 = if single_ceiling.is_some() { " | of ceiling x1" } else { "" };
            println!(
                "{:>9} | {:<15} {:>10} {:>9} {:>9} {:>10} | {:>10} {:>6} {:>6}{x1}",
                "in-flight", "target", "calls/s", "p50 µs", "p99 µs", "CPU µs", "of ceiling", "CPU x", "p50 x"
            );
            println!("{}", "-".repeat(100 + x1.len()));
            for &n in &case.inflight {
                let want = |side: &str| args.only.as_deref().is_none_or(|o| o == side);
                let mut c_rounds = Vec::new();
                let mut c1_rounds = Vec::new();
                let mut d_rounds: Vec<Vec<Round>> = drpc.iter().map(|_| Vec::new()).collect();
                for _ in 0..args.rounds {
                    // Ceiling(s) first, then each drpc target, in one round.
                    let mut targets: Vec<&Target> = Vec::new();
                    if want("ceiling") {
                        targets.push(&ceiling);
                        targets.extend(single_ceiling.as_ref());
                    }
                    if want("drpc") {
                        targets.extend(drpc.iter().map(|(_, t)| t));
                    }
                    let mut measured = round(&targets, n, args.secs, &body, &big, server_clock)
                        .await
                        .into_iter();
                    if want("ceiling") {
                        c_rounds.extend(measured.next());
                        if single_ceiling.is_some() {
                            c1_rounds.extend(measured.next());
                        }
                    }
                    for (r, rounds) in measured.zip(d_rounds.iter_mut()) {
                        rounds.push(r);
                    }
                }
                let c = summarize(c_rounds);
                let c1 = summarize(c1_rounds);
                if let Some(c) = &c {
                    print_row(n, "ceiling", c, None, None);
                }
                if let Some(c1) = &c1 {
                    print_row(n, "ceiling x1", c1, None, None);
                }
                for ((name, _), rounds) in drpc.iter().zip(d_rounds) {
                    if let Some(f) = summarize(rounds) {
                        print_row(n, name, &f, c.as_ref(), c1.as_ref());
                    }
                }
            }
            for (_, target) in drpc {
                if let Target::Drpc { sessions, .. } = target {
                    for s in sessions {
                        s.close().await;
                    }
                }
            }
        }
        client.close().await;
        single.close().await;
    });
    let _ = stop_tx.send(());
    server.join().expect("server thread");
}

/// One row; `single` is the one-connection ceiling of a several-session
/// table, compared by calls/s in a last column.
fn print_row(
    inflight: usize,
    name: &str,
    f: &Figures,
    ceiling: Option<&Figures>,
    single: Option<&Figures>,
) {
    let (share, cpu, p50) = match ceiling {
        Some(c) => (
            format!("{:.0}%", 100.0 * f.calls_per_sec / c.calls_per_sec),
            format!("{:.2}", f.cpu_per_call_us / c.cpu_per_call_us),
            paired_p50(f, c).map_or("-".to_string(), |r| format!("{r:.2}")),
        ),
        None => ("-".to_string(), "-".to_string(), "-".to_string()),
    };
    let x1 = single
        .map(|c1| format!(" | {:>13.0}%", 100.0 * f.calls_per_sec / c1.calls_per_sec))
        .unwrap_or_default();
    println!(
        "{:>9} | {:<15} {:>10.0} {:>9.1} {:>9.1} {:>10.2} | {:>10} {:>6} {:>6}{x1}",
        inflight, name, f.calls_per_sec, f.p50_us, f.p99_us, f.cpu_per_call_us, share, cpu, p50
    );
}
