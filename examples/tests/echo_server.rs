//! The echo server as a user runs it: one process serving tcp://, ws://
//! and http:// at once, the README's curl commands against it, and SIGTERM
//! as a graceful shutdown.

use drpc::{CallOptions, Endpoint};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

/// `cargo test` builds the examples beside the test binaries.
fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join("examples").join(name)
}

/// Kills the server if a test fails before it stops it.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the echo server on `addrs`; its output comes line by line,
/// read on a thread so the pipe never fills.
fn start(addrs: &[&str]) -> (Server, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(example("echo_server"))
        .args(addrs)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the echo_server example, built by cargo test");
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (out_tx, out_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = out_tx.send(line);
        }
    });
    (Server(child), out_rx)
}

/// The README's curl commands, and the start of what each prints.
fn readme_curls() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md at the workspace root");
    let section = readme
        .split("## Over HTTP: the gateway")
        .nth(1)
        .expect("the README's gateway section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("its curl commands");
    block
        .lines()
        .map(|line| {
            let (cmd, want) = line
                .rsplit_once("# ")
                .expect("each command says what it prints");
            (cmd.trim().to_string(), want.to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_serves_tcp_ws_and_http_and_stops_on_sigterm() {
    let curls = readme_curls();
    assert!(curls.len() >= 5, "{curls:?}");
    let (server, out_rx) = start(&[
        "tcp://127.0.0.1:0",
        "ws://127.0.0.1:0/drpc",
        "http://127.0.0.1:0",
    ]);
    let mut bound = Vec::new();
    while bound.len() < 3 {
        let line = out_rx.recv_timeout(WAIT).unwrap_or_else(|_| {
            panic!("the server did not say where it listens (built from this tree? run cargo test -p drpc-examples)")
        });
        if let Some(addr) = line.strip_prefix("echo_server listening on ") {
            bound.push(addr.to_string());
        }
    }

    let client = Endpoint::builder().build().unwrap();
    for addr in &bound[..2] {
        let session = tokio::time::timeout(WAIT, client.dial(addr.as_str()))
            .await
            .unwrap()
            .unwrap();
        let reply = session
            .call_with::<_, i64>(
                "/math/add",
                &serde_json::json!({"a": 20, "b": 22}),
                CallOptions::new(),
            )
            .await
            .unwrap();
        assert_eq!(reply.value, 42, "over {addr}");
    }
    client.close().await;

    let http = bound[2].strip_prefix("http://").unwrap();
    for (cmd, want) in &curls {
        let cmd = cmd.replace("127.0.0.1:9091", http);
        let run = cmd.clone();
        let out = tokio::task::spawn_blocking(move || {
            Command::new("bash").args(["-c", &run]).output().unwrap()
        })
        .await
        .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{cmd}: {out:?}");
        assert!(
            text.starts_with(want.as_str()),
            "{cmd}: printed {text:?}, the README says {want:?}"
        );
    }
    // The push reached its handler.
    let deadline = Instant::now() + WAIT;
    loop {
        let line = out_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the server prints the pushed line");
        if line.contains("log from http://") && line.ends_with("a line") {
            break;
        }
    }

    // SIGTERM: a graceful shutdown, and a clean exit.
    let pid = server.0.id() as libc::pid_t;
    // SAFETY: kill(2) with a pid this test started and still owns.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let mut server = server;
        let status = server.0.wait();
        let _ = done_tx.send(());
        status
    });
    if done_rx.recv_timeout(WAIT).is_err() {
        // SAFETY: as above; the waiting thread then reaps it.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        panic!("the server did not stop within {WAIT:?} of SIGTERM");
    }
    let status = waiter.join().unwrap().unwrap();
    assert!(status.success(), "{status:?}");
    let said: Vec<String> = out_rx.try_iter().collect();
    assert!(
        said.iter()
            .any(|l| l.starts_with("SIGTERM: shutting down gracefully")),
        "{said:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_ends_a_graceful_shutdown_at_once() {
    let (server, out_rx) = start(&["tcp://127.0.0.1:0"]);
    let wait_for = |prefix: &str| loop {
        let line = out_rx
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("the server never printed {prefix:?}"));
        if let Some(rest) = line.strip_prefix(prefix) {
            return rest.to_string();
        }
    };
    let addr = wait_for("echo_server listening on ");

    let client = Endpoint::builder().build().unwrap();
    let session = client.dial(addr.as_str()).await.unwrap();
    let slow = tokio::spawn({
        let session = session.clone();
        async move {
            session
                .call_with::<_, u64>(
                    "/slow",
                    &60_000u64,
                    CallOptions::new().timeout(Duration::from_secs(120)),
                )
                .await
        }
    });
    // Calls are read in order: once this one is answered, /slow runs.
    let reply = session
        .call_with::<_, i64>(
            "/math/add",
            &serde_json::json!({"a": 1, "b": 1}),
            CallOptions::new(),
        )
        .await
        .unwrap();
    assert_eq!(reply.value, 2);

    let pid = server.0.id() as libc::pid_t;
    // SAFETY: kill(2) with a pid this test started and still owns.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    wait_for("SIGTERM: shutting down gracefully");
    // The graceful shutdown waits for /slow; a second signal does not.
    assert!(!slow.is_finished(), "a running call is let finish");
    let signalled = Instant::now();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    wait_for("SIGTERM: closing at once");
    let err = tokio::time::timeout(WAIT, slow)
        .await
        .expect("the slow call ends with the server")
        .unwrap()
        .unwrap_err();
    assert_ne!(err.code(), drpc::Code::OK);
    assert!(signalled.elapsed() < WAIT);
    wait_for("stopped: ");
    client.close().await;
    drop(server);
}
