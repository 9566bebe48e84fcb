//! A cluster that checks itself: etcd, three server processes of one
//! service and a client at steady load (this process), and a timeline of
//! what happens when one server is killed, one stops gracefully and a
//! fourth starts. Exits non-zero if a promise fails:
//!
//! - killed with SIGKILL: only calls in flight on it fail (at most one per
//!   worker), and calls after it succeed;
//! - stopped gracefully (SIGTERM): no call fails;
//! - started: it takes calls within 1 s of registering.
//!
//! ```text
//! cargo run --release --example cluster [-- --etcd 127.0.0.1:2379]
//! ```
//!
//! Without `--etcd` it starts its own etcd (`bash .ci/install-deps`
//! installs it) on free loopback ports, and stops it at the end.

#[path = "../tests/support/etcd.rs"]
#[allow(dead_code)] // restarting etcd is for the tests
mod etcd;

use drpc::{CallCtx, Endpoint, Router, Status};
use drpc_cluster::{Announce, Cluster, EtcdRegistry, Instance};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[drpc::service(prefix = "/who")]
trait Who {
    async fn am_i(&self, ctx: &CallCtx) -> Result<String, Status>;
}

struct Named(String);

impl Who for Named {
    async fn am_i(&self, _: &CallCtx) -> Result<String, Status> {
        // A little work, so calls overlap.
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok(self.0.clone())
    }
}

/// Calls in flight at once.
const WORKERS: usize = 8;

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    if args.get(1).map(String::as_str) == Some("server") {
        runtime.block_on(server(&args[2], &args[3]));
        return std::process::ExitCode::SUCCESS;
    }
    let given = args
        .iter()
        .position(|a| a == "--etcd")
        .and_then(|i| args.get(i + 1).cloned());
    match runtime.block_on(demo(given)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("FAILED: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// One server process: registers itself, serves until SIGTERM, then shuts
/// down gracefully (deregistering first).
async fn server(etcd: &str, id: &str) {
    let registry = EtcdRegistry::connect([etcd]).await.expect("etcd");
    let announce = Announce::new(registry, Instance::new("who", id, Vec::<String>::new()));
    let mut router = Router::new();
    router.serve(WhoServer::new(Named(id.to_string()))).unwrap();
    let endpoint = Endpoint::builder()
        .plugin(announce.clone())
        .router(router)
        .build()
        .unwrap();
    endpoint.listen("tcp://127.0.0.1:0").await.unwrap();
    announce.register().await.expect("registered");
    println!("registered");
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    term.recv().await;
    endpoint.shutdown(Duration::from_secs(5)).await;
}

/// A server child process, started and registered.
fn spawn_server(etcd: &str, id: &str) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(["server", etcd, id])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start server {id}: {e}"))?;
    let out = child.stdout.take().expect("piped");
    let line = BufReader::new(out).lines().next();
    match line {
        Some(Ok(l)) if l == "registered" => Ok(child),
        other => Err(format!("server {id} did not register: {other:?}")),
    }
}

/// What the workers saw.
#[derive(Default)]
struct Load {
    ok: AtomicU64,
    failed: AtomicU64,
    by_instance: parking_lot::Mutex<BTreeMap<String, u64>>,
    stop: AtomicBool,
}

impl Load {
    fn served(&self, id: &str) -> u64 {
        self.by_instance.lock().get(id).copied().unwrap_or(0)
    }
}

fn at(start: Instant) -> String {
    format!("[{:>6.2} s]", start.elapsed().as_secs_f64())
}

async fn demo(given: Option<String>) -> Result<(), String> {
    let start = Instant::now();
    let (_own, etcd) = match given {
        Some(addr) => (None, addr),
        None => {
            let e = etcd::Etcd::start("cluster-example").await;
            let addr = e.endpoint();
            println!("{} started etcd on {addr}", at(start));
            (Some(e), addr)
        }
    };
    let mut servers = BTreeMap::new();
    for id in ["s1", "s2", "s3"] {
        servers.insert(id, spawn_server(&etcd, id)?);
        println!("{} server {id} registered", at(start));
    }

    let registry = EtcdRegistry::connect([etcd.as_str()])
        .await
        .map_err(|e| e.to_string())?;
    let client = Endpoint::builder().build().map_err(|e| e.to_string())?;
    let cluster = Cluster::new(client.clone(), &registry, "who")
        .await
        .map_err(|e| e.to_string())?;
    cluster
        .wait_for(Duration::from_secs(10), |v| v.len() == 3)
        .await
        .ok_or("the client did not see 3 instances")?;
    let load = Arc::new(Load::default());
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (who, load) = (WhoClient::new(cluster.clone()), load.clone());
            tokio::spawn(async move {
                // Bounded: the demo stops it, and it never makes more than
                // 10 million calls.
                for _ in 0..10_000_000u64 {
                    if load.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match who.am_i().await {
                        Ok(id) => {
                            load.ok.fetch_add(1, Ordering::Relaxed);
                            *load.by_instance.lock().entry(id).or_default() += 1;
                        }
                        Err(_) => {
                            load.failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    println!("{} client: {WORKERS} workers calling /who/am_i", at(start));
    let settle = || tokio::time::sleep(Duration::from_secs(2));
    settle().await;
    let report = |what: &str| {
        let by = load.by_instance.lock().clone();
        println!(
            "{} {what}: {} ok, {} failed, by instance {by:?}",
            at(start),
            load.ok.load(Ordering::Relaxed),
            load.failed.load(Ordering::Relaxed)
        );
    };
    report("steady");
    let mut problems = Vec::new();

    // 1. SIGKILL s1.
    let failed_before = load.failed.load(Ordering::Relaxed);
    let mut s1 = servers.remove("s1").expect("s1");
    let killed = s1.kill();
    let _ = s1.wait();
    killed.map_err(|e| e.to_string())?;
    println!("{} killed s1 (SIGKILL)", at(start));
    settle().await;
    let lost = load.failed.load(Ordering::Relaxed) - failed_before;
    let s1_served = load.served("s1");
    settle().await;
    report("after the kill");
    println!(
        "{} calls failed by the kill: {lost} (at most {WORKERS}: those in flight on s1)",
        at(start)
    );
    if lost > WORKERS as u64 {
        problems.push(format!(
            "the kill failed {lost} calls, more than the {WORKERS} in flight"
        ));
    }
    if load.served("s1") != s1_served {
        problems.push("s1 still served calls after it was killed".to_string());
    }
    let after_kill = load.failed.load(Ordering::Relaxed);

    // 2. SIGTERM s2: a graceful stop.
    let mut s2 = servers.remove("s2").expect("s2");
    let term = Command::new("kill")
        .args(["-TERM", &s2.id().to_string()])
        .status();
    if !term.as_ref().is_ok_and(|t| t.success()) {
        let _ = s2.kill();
        let _ = s2.wait();
        return Err(format!("kill -TERM failed: {term:?}"));
    }
    let _ = s2.wait();
    println!(
        "{} stopped s2 gracefully (SIGTERM); it has exited",
        at(start)
    );
    settle().await;
    let graceful_failures = load.failed.load(Ordering::Relaxed) - after_kill;
    report("after the graceful stop");
    println!(
        "{} calls failed by the graceful stop: {graceful_failures} (must be 0)",
        at(start)
    );
    if graceful_failures != 0 {
        problems.push(format!(
            "the graceful stop failed {graceful_failures} calls"
        ));
    }

    // 3. Start s4.
    let started = Instant::now();
    servers.insert("s4", spawn_server(&etcd, "s4")?);
    let registered = started.elapsed();
    let first_call = loop {
        if load.served("s4") > 0 {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(10) {
            return Err("s4 took no call within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let to_traffic = first_call.saturating_sub(registered);
    println!(
        "{} started s4: registered after {registered:?}, first call {to_traffic:?} after that",
        at(start)
    );
    if to_traffic > Duration::from_secs(1) {
        problems.push(format!(
            "s4 took its first call {to_traffic:?} after registering"
        ));
    }
    settle().await;
    report("at the end");

    load.stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    client.close().await;
    for (_, mut s) in servers {
        let _ = Command::new("kill")
            .args(["-TERM", &s.id().to_string()])
            .status();
        let _ = s.wait();
    }
    if problems.is_empty() {
        println!("{} all promises held", at(start));
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}
