//! Restarts with no lost call, as an operator does them: the echo server
//! under steady load from a client, a prober connecting in a loop, and
//! five restarts in a row (SIGHUP, and `restart` on the control channel);
//! then the same server as a supervisor of two workers: one killed comes
//! back, and SIGHUP replaces both one by one. Not one call fails, no
//! connection is refused, and the port never changes.

use drpc::{CallOptions, Endpoint, Session, Status};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(30);
const RESTARTS: usize = 5;

/// `cargo test` builds the examples beside the test binaries.
fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join("examples").join(name)
}

/// The echo server's processes: the first is this test's child, in a
/// process group of its own that every process it starts joins; whatever
/// of it still runs when the test ends is killed.
struct Servers {
    first: Child,
    lines: mpsc::Receiver<String>,
    /// Every process seen: workers have process groups of their own.
    pids: std::cell::RefCell<Vec<i32>>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        signal(-(self.first.id() as i32), libc::SIGKILL);
        for pid in self.pids.borrow().iter() {
            signal(*pid, libc::SIGKILL);
        }
        let _ = self.first.wait();
    }
}

impl Servers {
    fn start(args: &[&str]) -> Self {
        let mut first = Command::new(example("echo_server"))
            .args(args)
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the echo_server example, built by cargo test");
        // Every process writes to the same pipe: it inherits it.
        let out = BufReader::new(first.stdout.take().unwrap()).lines();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self {
            first,
            lines,
            pids: Default::default(),
        }
    }

    /// The rest of the next line that starts with `prefix`.
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

    /// The pid in the next line that starts with `prefix` and ends with it.
    fn pid(&self, prefix: &str) -> i32 {
        let rest = self.line(prefix);
        let pid = rest.rsplit(' ').next().unwrap().parse().unwrap();
        self.pids.borrow_mut().push(pid);
        pid
    }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill has no memory effects; a stale pid fails harmlessly.
    unsafe { libc::kill(pid, sig) };
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A client's steady load on a session: four callers with a call each in
/// flight, one more whose calls take 50 ms (so restarts find calls
/// running), and a prober that opens a connection every few milliseconds.
struct Load {
    done: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    callers: Vec<JoinHandle<(u64, Vec<Status>)>>,
    prober: JoinHandle<(u64, Vec<String>)>,
}

impl Load {
    fn start(session: &Session, port: u16) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let mut callers: Vec<_> = (0..4i64)
            .map(|i| {
                let (s, done, ok) = (session.clone(), done.clone(), ok.clone());
                tokio::spawn(async move {
                    let mut failed = Vec::new();
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
                    (0, failed)
                })
            })
            .collect();
        let (s, stop) = (session.clone(), done.clone());
        callers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, Vec::new());
            for _ in 0..100_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match s.call::<_, u64>("/slow", &50u64).await {
                    Ok(50) => ok += 1,
                    Ok(other) => panic!("/slow 50 answered {other}"),
                    Err(e) => failed.push(e),
                }
            }
            (ok, failed)
        }));
        let stop = done.clone();
        let prober = tokio::spawn(async move {
            let (mut connected, mut refused) = (0u64, Vec::new());
            for _ in 0..1_000_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    Ok(_) => connected += 1,
                    Err(e) => refused.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            (connected, refused)
        });
        Self {
            done,
            ok,
            callers,
            prober,
        }
    }

    /// Waits until 1000 more calls have succeeded.
    async fn more_calls(&self) {
        let before = self.ok.load(Ordering::Relaxed);
        let deadline = Instant::now() + WAIT;
        while self.ok.load(Ordering::Relaxed) < before + 1000 {
            assert!(Instant::now() < deadline, "the calls stopped");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops, and checks that no call failed and no connect was refused.
    async fn finish(self, what: &str) {
        self.done.store(true, Ordering::Relaxed);
        let (mut slow, mut failed) = (0, Vec::new());
        for caller in self.callers {
            let (ok, f) = caller.await.unwrap();
            slow += ok;
            failed.extend(f);
        }
        let (connected, refused) = self.prober.await.unwrap();
        let calls = self.ok.load(Ordering::Relaxed);
        eprintln!("{what}: {calls} calls and {slow} slow ones, none failed; {connected} connects, none refused");
        assert!(
            failed.is_empty(),
            "{what}: {} of {} calls failed: {:?}",
            failed.len(),
            calls + slow + failed.len() as u64,
            &failed[..failed.len().min(3)]
        );
        assert!(
            refused.is_empty(),
            "{what}: {} connects refused: {:?}",
            refused.len(),
            refused.first()
        );
        assert!(
            connected > 0 && calls > 1000 && slow > 0,
            "{connected} connects, {calls} calls"
        );
    }
}

async fn add_one(session: &Session) -> i64 {
    let one = serde_json::json!({"a": 1, "b": 1});
    tokio::time::timeout(WAIT, session.call::<_, i64>("/math/add", &one))
        .await
        .expect("an answer")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_restarts_under_load_lose_no_call_and_refuse_no_connection() {
    let port = free_port();
    let addr = format!("tcp://127.0.0.1:{port}");
    let admin_path =
        std::env::temp_dir().join(format!("drpc-restart-test-{}.sock", std::process::id()));
    let admin = format!("unix://{}", admin_path.display());
    let mut servers = Servers::start(&["--admin", &admin, &addr]);
    let mut current = servers.pid("ready: pid ");
    assert_eq!(current, servers.first.id() as i32);

    let client = Endpoint::builder().build().unwrap();
    let session = client.dial(addr.as_str()).await.unwrap();
    let first_id = session.id();
    let load = Load::start(&session, port);
    for n in 0..RESTARTS {
        load.more_calls().await;
        let new = if n == 2 {
            // Through the control channel, as `drpc ctl ADMIN restart` does.
            let ctl = Endpoint::builder().build().unwrap();
            let s = ctl.dial(admin.as_str()).await.unwrap();
            let opts = CallOptions::new().timeout(WAIT);
            let reply = s.call_with::<_, i32>("/_drpc/admin/restart", &(), opts);
            let pid = reply.await.unwrap().value;
            ctl.close().await;
            assert_eq!(servers.pid("ready: pid "), pid);
            pid
        } else {
            signal(current, libc::SIGHUP);
            servers.pid("ready: pid ")
        };
        assert_ne!(new, current);
        // The old process finishes and leaves.
        let stopped = servers.line("stopped: pid ");
        assert!(stopped.starts_with(&format!("{current}:")), "{stopped}");
        if n == 0 {
            // The first process was this test's child: reap it.
            let status = tokio::task::block_in_place(|| servers.first.wait()).unwrap();
            assert!(status.success(), "{status}");
        }
        current = new;
    }
    load.more_calls().await;
    load.finish(&format!("{RESTARTS} restarts")).await;
    // One session throughout, redialed to each new process.
    assert_eq!(session.id(), first_id);
    assert_eq!(add_one(&session).await, 2);
    client.close().await;

    signal(current, libc::SIGTERM);
    let stopped = servers.line("stopped: pid ");
    assert!(stopped.starts_with(&format!("{current}:")), "{stopped}");
    assert!(
        !admin_path.exists(),
        "the last process removes its control socket"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_the_port_come_back_after_a_crash_and_are_replaced_without_a_lost_call() {
    let port = free_port();
    let addr = format!("tcp://127.0.0.1:{port}");
    let admin = std::env::temp_dir().join(format!("drpc-workers-test-{}.sock", std::process::id()));
    let admin = format!("unix://{}", admin.display());
    let servers = Servers::start(&["--workers", "2", "--admin", &admin, &addr]);
    let supervisor = servers.first.id() as i32;
    let w0 = servers.pid("supervisor: worker 0 ready: pid ");
    let w1 = servers.pid("supervisor: worker 1 ready: pid ");
    assert!(w0 != w1 && w0 != supervisor);

    // A worker that dies is started again; the port serves throughout.
    signal(w0, libc::SIGKILL);
    let exited = servers.line("supervisor: worker 0 (pid ");
    assert!(exited.starts_with(&format!("{w0}) exited")), "{exited}");
    let w0 = servers.pid("supervisor: worker 0 ready: pid ");

    let client = Endpoint::builder().build().unwrap();
    let session = client.dial(addr.as_str()).await.unwrap();
    assert_eq!(add_one(&session).await, 2);
    let load = Load::start(&session, port);
    load.more_calls().await;
    // SIGHUP to the supervisor: each worker is replaced in turn, the new
    // one ready before the old one leaves.
    signal(supervisor, libc::SIGHUP);
    let new0 = servers.pid("supervisor: worker 0 ready: pid ");
    assert_eq!(
        servers.line("supervisor: worker 0 replaced: pid "),
        format!("{w0} left")
    );
    let new1 = servers.pid("supervisor: worker 1 ready: pid ");
    assert_eq!(
        servers.line("supervisor: worker 1 replaced: pid "),
        format!("{w1} left")
    );
    assert!(![w0, w1].contains(&new0) && ![w0, w1].contains(&new1));
    load.more_calls().await;
    load.finish("2 workers replaced").await;
    assert_eq!(add_one(&session).await, 2);
    client.close().await;

    // SIGTERM to the supervisor stops the workers, then itself.
    signal(supervisor, libc::SIGTERM);
    let stopped = servers.line("stopped: supervisor pid ");
    assert!(
        stopped.starts_with(&format!("{supervisor} (SIGTERM)")),
        "{stopped}"
    );
}
