//! Restarts with no lost call, as an operator does them: the echo server
//! under steady load from a client, a prober connecting in a loop, and
//! five restarts in a row (SIGHUP, and `restart` on the control channel).
//! Not one call fails, no connection is refused, and the port never
//! changes.

use drpc::{CallOptions, Endpoint, Status};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);
const RESTARTS: usize = 5;

/// `cargo test` builds the examples beside the test binaries.
fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join("examples").join(name)
}

/// The echo server's processes: the first is this test's child, the rest
/// were started by their predecessors. Whatever still runs when the test
/// ends is killed.
struct Servers {
    first: Child,
    current: u32,
    lines: mpsc::Receiver<String>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        let _ = self.first.kill();
        let _ = self.first.wait();
        signal(self.current, libc::SIGKILL);
    }
}

impl Servers {
    fn start(args: &[&str]) -> Self {
        let mut first = Command::new(example("echo_server"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the echo_server example, built by cargo test");
        // Every generation writes to the same pipe: it inherits it.
        let out = BufReader::new(first.stdout.take().unwrap()).lines();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let servers = Self {
            current: first.id(),
            first,
            lines,
        };
        let pid = servers.ready();
        assert_eq!(pid, servers.current);
        servers
    }

    /// The next line that starts with `prefix`, without it.
    fn line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no line starting {prefix:?} within {WAIT:?}"));
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.to_string();
            }
        }
    }

    /// The pid of the next process that reports ready.
    fn ready(&self) -> u32 {
        self.line("ready: pid ").parse().unwrap()
    }

    /// Waits for the new process, then for the old one to finish.
    fn handed_over(&mut self) {
        let old = self.current;
        let new = self.ready();
        assert_ne!(new, old);
        self.current = new;
        let stopped = self.line("stopped: pid ");
        assert!(stopped.starts_with(&format!("{old}:")), "{stopped}");
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill has no memory effects; a stale pid fails harmlessly.
    unsafe { libc::kill(pid as i32, sig) };
}

/// Waits until 1000 more calls have succeeded.
async fn more_calls(ok: &AtomicU64) {
    let before = ok.load(Ordering::Relaxed);
    let deadline = Instant::now() + WAIT;
    while ok.load(Ordering::Relaxed) < before + 1000 {
        assert!(Instant::now() < deadline, "the calls stopped");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_restarts_under_load_lose_no_call_and_refuse_no_connection() {
    let port = free_port();
    let addr = format!("tcp://127.0.0.1:{port}");
    let admin_path =
        std::env::temp_dir().join(format!("drpc-restart-test-{}.sock", std::process::id()));
    let admin = format!("unix://{}", admin_path.display());
    let mut servers = Servers::start(&["--admin", &admin, &addr]);

    let client = Endpoint::builder().build().unwrap();
    let session = client.dial(addr.as_str()).await.unwrap();
    let first_id = session.id();
    let done = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    // Steady load: four callers, a call each at a time.
    let callers: Vec<_> = (0..4i64)
        .map(|i| {
            let (s, done, ok) = (session.clone(), done.clone(), ok.clone());
            tokio::spawn(async move {
                let mut failed: Vec<Status> = Vec::new();
                for n in 0..10_000_000i64 {
                    if done.load(Ordering::Relaxed) {
                        break;
                    }
                    let args = serde_json::json!({"a": i, "b": n});
                    let opts = CallOptions::new().timeout(Duration::from_secs(10));
                    match s.call_with::<_, i64>("/math/add", &args, opts).await {
                        Ok(r) if r.value == i + n => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => panic!("{i} + {n} = {}?", r.value),
                        Err(e) => failed.push(e),
                    }
                }
                failed
            })
        })
        .collect();
    // And calls that run across a restart: the old process finishes them.
    let slow = {
        let (s, done) = (session.clone(), done.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, Vec::new());
            for _ in 0..100_000 {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                match s.call::<_, u64>("/slow", &50u64).await {
                    Ok(50) => ok += 1,
                    Ok(other) => panic!("/slow 50 answered {other}"),
                    Err(e) => failed.push(e),
                }
            }
            (ok, failed)
        })
    };
    // The prober: a new connection every few milliseconds.
    let prober = {
        let done = done.clone();
        tokio::spawn(async move {
            let (mut connected, mut refused) = (0u64, Vec::new());
            for _ in 0..1_000_000 {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    Ok(_) => connected += 1,
                    Err(e) => refused.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            (connected, refused)
        })
    };

    for n in 0..RESTARTS {
        more_calls(&ok).await;
        if n == 2 {
            // Through the control channel, as `drpc ctl ADMIN restart` does.
            let ctl = Endpoint::builder().build().unwrap();
            let s = ctl.dial(admin.as_str()).await.unwrap();
            let opts = CallOptions::new().timeout(WAIT);
            let pid: u32 = s
                .call_with("/_drpc/admin/restart", &(), opts)
                .await
                .unwrap()
                .value;
            ctl.close().await;
            servers.handed_over();
            assert_eq!(servers.current, pid);
        } else {
            signal(servers.current, libc::SIGHUP);
            servers.handed_over();
        }
        if n == 0 {
            // The first process was this test's child: reap it.
            let status = tokio::task::block_in_place(|| servers.first.wait()).unwrap();
            assert!(status.success(), "{status}");
        }
    }
    more_calls(&ok).await;
    done.store(true, Ordering::Relaxed);

    let mut failed = Vec::new();
    for caller in callers {
        failed.extend(caller.await.unwrap());
    }
    let (slow_ok, slow_failed) = slow.await.unwrap();
    failed.extend(slow_failed);
    let (connected, refused) = prober.await.unwrap();
    let calls = ok.load(Ordering::Relaxed);
    assert!(
        failed.is_empty(),
        "{} of {} calls failed: {:?}",
        failed.len(),
        calls + failed.len() as u64,
        &failed[..failed.len().min(3)]
    );
    assert!(
        refused.is_empty(),
        "{} connects refused: {:?}",
        refused.len(),
        refused.first()
    );
    assert!(
        connected > 0 && calls > 1000,
        "{connected} connects, {calls} calls"
    );
    eprintln!(
        "{RESTARTS} restarts: {calls} calls and {slow_ok} slow ones, none failed; {connected} connects, none refused"
    );
    // One session throughout, redialed to each new process.
    assert_eq!(session.id(), first_id);
    assert_eq!(
        session
            .call::<_, i64>("/math/add", &serde_json::json!({"a": 1, "b": 1}))
            .await
            .unwrap(),
        2
    );
    client.close().await;

    signal(servers.current, libc::SIGTERM);
    let last = servers.current;
    let stopped = servers.line("stopped: pid ");
    assert!(stopped.starts_with(&format!("{last}:")), "{stopped}");
    assert!(
        !admin_path.exists(),
        "the last process removes its control socket"
    );
}
