//! A server to poke at: listens on every address given as an argument
//! (default `tcp://127.0.0.1:9090`), any transport, the HTTP gateway
//! included, until Ctrl-C or SIGTERM, and serves
//!
//! - `/echo`: returns its argument unchanged, in whatever codec it came;
//! - `/math/add`: `{"a": i64, "b": i64}` -> their sum;
//! - `/slow`: a number of milliseconds -> sleeps that long, then returns it;
//! - `/log` (a push): prints the line it carries;
//!
//! and pushes `/hello` with a greeting string to every session that connects.
//!
//! ```text
//! cargo run --example echo_server -- tcp://127.0.0.1:9090 ws://127.0.0.1:9092/drpc http://127.0.0.1:9091
//! curl -d '{"a":1,"b":2}' http://127.0.0.1:9091/math/add
//! ```
//!
//! Ctrl-C or SIGTERM shuts it down gracefully: peers are told it is going
//! away, running calls finish (within 10 s). A second signal ends it at once.
//!
//! It runs the operations kit too:
//!
//! - **restart with no lost call**: SIGHUP (or `drpc ctl ADMIN restart`)
//!   starts a new echo_server on the same listening sockets; once it is
//!   ready, this one stops accepting, tells its peers (they redial the new
//!   one), finishes its calls and exits. The ports never change.
//! - **health**: `drpc health tcp://127.0.0.1:9090`.
//! - **a control channel** on a Unix socket (`--admin URL`; default
//!   `unix://$TMPDIR/drpc-echo-server-PORT.sock`, printed at start):
//!   `drpc ctl unix:///tmp/drpc-echo-server-9090.sock stats` (also
//!   `sessions`, `routes`, `limits`, `health`, `stop`, `restart`).
//!
//! - **worker processes**: `--workers 4` binds the addresses once and runs
//!   four echo servers on them (each with its control channel,
//!   `...-w0-PID.sock` and so on); one that crashes starts again, SIGHUP to
//!   the supervisor replaces them one by one, SIGTERM stops them all.
//!
//! ```text
//! kill -HUP $(pgrep -n echo_server)      # restart; calls in flight are answered
//! ```

use drpc::plugin::BoxFuture;
use drpc::restart::{Restart, Workers};
use drpc::{CallCtx, Config, Endpoint, Plugin, PushCtx, Router, Session, Signal, Status};
use drpc_plugins::{Admin, Counters, RouteStats};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

#[derive(Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

/// Greets every session as soon as it connects.
struct Greeter;

impl Plugin for Greeter {
    fn name(&self) -> &str {
        "greeter"
    }

    fn after_accept<'a>(&'a self, session: &'a Session) -> BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move {
            let greeting = format!("hello {}, this is drpc's echo server", session.peer_addr());
            // A failed greeting is logged, not a reason to refuse the session.
            if let Err(status) = session.push("/hello", &greeting).await {
                eprintln!("could not greet {}: {status}", session.peer_addr());
            }
            Ok(())
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let (mut addrs, mut admin_addr, mut workers) = (Vec::new(), None, 1usize);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--admin" => admin_addr = Some(args.next().ok_or("--admin takes an address")?),
            "--workers" => {
                let n = args.next().ok_or("--workers takes a count")?;
                workers = n
                    .parse()
                    .map_err(|_| format!("--workers {n}: not a count"))?;
            }
            _ => addrs.push(arg),
        }
    }
    if addrs.is_empty() {
        addrs.push("tcp://127.0.0.1:9090".to_string());
    }
    // The sockets a restart handed over (none when started by hand).
    let restart = Restart::from_env()?;
    let mut config = Config::default();
    restart.apply(&mut config);
    if workers > 1 && restart.worker().is_none() {
        return supervise(&restart, workers, &addrs, admin_addr, &config).await;
    }

    let mut router = Router::new();
    router.call_raw(
        "/echo",
        |ctx: CallCtx| async move { Ok(ctx.body().clone()) },
    )?;
    router
        .group("/math")
        .call("/add", |_: CallCtx, x: Add| async move {
            x.a.checked_add(x.b)
                .ok_or_else(|| Status::bad_message("the sum overflows an i64"))
        })?;
    router.call("/slow", |_: CallCtx, ms: u64| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, Status>(ms)
    })?;
    router.push("/log", |ctx: PushCtx, line: String| async move {
        println!("log from {}: {line}", ctx.session().peer_addr());
    })?;

    let counters = Arc::new(Counters::default());
    let route_stats = Arc::new(RouteStats::default());
    let endpoint = Endpoint::builder()
        .config(config)
        .router(router)
        .plugin(Greeter)
        .plugin_arc(counters.clone())
        .plugin_arc(route_stats.clone())
        .build()?;
    let mut bound = Vec::new();
    for addr in &addrs {
        let at = endpoint.listen(addr).await?;
        println!("echo_server listening on {at}");
        bound.push(at.to_string());
    }
    restart.serve(&endpoint);
    let mut admin_addr = admin_addr.unwrap_or_else(|| default_admin(&bound));
    if let Some(n) = restart.worker() {
        // One control channel per worker.
        admin_addr = worker_admin(&admin_addr, n);
    }
    let (_admin, admin_at) = Admin::new(&endpoint)
        .route_stats(route_stats)
        .restart(restart.clone())
        .listen(admin_addr.as_str())
        .await?;
    println!("control channel on {admin_at}: drpc ctl {admin_at} stats");
    // The next process listens where this one does, ports included.
    let mut next_args = vec!["--admin".to_string(), admin_at.to_string()];
    next_args.extend(bound);
    restart.set_args(next_args);
    restart.ready()?;
    println!("ready: pid {}", std::process::id());
    println!("Ctrl-C or SIGTERM to stop, SIGHUP to restart");

    // SIGTERM or Ctrl-C: a graceful shutdown; a second one, at once.
    // SIGHUP: a new process takes over the sockets, then this one stops.
    let mut first = true;
    let ended = restart
        .close_on_signal(|signal| match signal {
            Signal::Restart(_) => println!("{signal}: restarting"),
            _ if std::mem::take(&mut first) => {
                println!("{signal}: shutting down gracefully; again to stop at once")
            }
            _ => println!("{signal}: closing at once"),
        })
        .await?;
    match ended {
        Some(Signal::Restart(_)) => println!("handed over to the new process"),
        None => println!("closed through the control channel (a restart or a stop)"),
        Some(_) => {}
    }
    println!(
        "stopped: pid {}: {:?}",
        std::process::id(),
        counters.snapshot()
    );
    Ok(())
}

/// `--workers N`: this process binds the addresses and runs N echo
/// servers on them, restarting one that crashes; SIGHUP replaces them one
/// by one, SIGTERM stops them all.
async fn supervise(
    restart: &Restart,
    count: usize,
    addrs: &[String],
    admin: Option<String>,
    config: &Config,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut workers = Workers::new(restart, count);
    let bound = workers.bind(addrs, config).await?;
    for at in &bound {
        println!("echo_server supervisor listening on {at}");
    }
    let admin = admin
        .unwrap_or_else(|| default_admin(&bound.iter().map(|a| a.to_string()).collect::<Vec<_>>()));
    // Each worker serves the bound addresses, ports included, with a
    // control channel of its own beside `admin`.
    let mut args = vec!["--admin".to_string(), admin];
    args.extend(bound.iter().map(|a| a.to_string()));
    restart.set_args(args);
    println!(
        "supervisor: pid {}; SIGHUP replaces the workers one by one",
        std::process::id()
    );
    let signal = workers.run(|event| println!("supervisor: {event}")).await?;
    println!("stopped: supervisor pid {} ({signal})", std::process::id());
    Ok(())
}

/// Worker `n`'s control channel: `admin` with `-wN-PID` before `.sock`
/// (a worker's replacement starts while it still serves its own).
fn worker_admin(admin: &str, n: usize) -> String {
    let pid = std::process::id();
    match admin.strip_suffix(".sock") {
        Some(stem) => format!("{stem}-w{n}-{pid}.sock"),
        None => format!("{admin}-w{n}-{pid}"),
    }
}

/// `unix://$TMPDIR/drpc-echo-server-PORT.sock`, after the first address's
/// port (or this process's id, for an address without one).
fn default_admin(bound: &[String]) -> String {
    let port = bound
        .first()
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse::<u16>().ok())
        .map(|p| p.to_string())
        .unwrap_or_else(|| std::process::id().to_string());
    let path = std::env::temp_dir().join(format!("drpc-echo-server-{port}.sock"));
    format!("unix://{}", path.display())
}
