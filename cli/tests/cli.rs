//! The built `drpc` binary against real endpoints, on every transport: its
//! output and its exit status, as a user in a shell sees them.

use assert_cmd::Command;
use drpc::{CallCtx, Code, Config, Endpoint, PushCtx, Router, Status};
use predicates::prelude::*;
use serde::Deserialize;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

// Health and the control channel: the operator's commands.
#[path = "cli/operations.rs"]
mod operations;
// Streams, either way.
#[path = "cli/streams.rs"]
mod streams;

/// Certificates written to files, as a user would have them.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn new(tag: &str) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let dir = std::env::temp_dir().join(format!("drpc-cli-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let client_key = KeyPair::generate().unwrap();
        let client = CertificateParams::new(vec!["client.test".to_string()])
            .unwrap()
            .signed_by(&client_key, &ca, &ca_key)
            .unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
        std::fs::write(dir.join("client.pem"), client.pem()).unwrap();
        std::fs::write(dir.join("client.key"), client_key.serialize_pem()).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// The options a dialing `drpc` needs.
    fn dial_args(&self) -> Vec<String> {
        vec!["--ca".into(), self.path("ca.pem")]
    }

    /// The options a listening `drpc` needs.
    fn listen_args(&self) -> Vec<String> {
        vec![
            "--cert".into(),
            self.path("server.pem"),
            "--key".into(),
            self.path("server.key"),
        ]
    }

    /// An endpoint config serving with these certificates.
    fn server_config(&self) -> Config {
        let read = |n: &str| std::fs::read(self.dir.join(n)).unwrap();
        let mut config = Config::default();
        config.transport.tls = drpc::socket::tls::TlsConfig::default()
            .with_server_pem(&read("server.pem"), &read("server.key"), None)
            .unwrap();
        config
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const TRANSPORTS: [&str; 5] = ["tcp", "unix", "tls", "quic", "kcp"];

/// Where to listen on `transport`: port 0, or a socket file of its own.
fn listen_addr(transport: &str, tag: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    match transport {
        "unix" => format!(
            "unix://{}",
            std::env::temp_dir()
                .join(format!(
                    "drpc-cli-{tag}-{}-{}.sock",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ))
                .display()
        ),
        t => format!("{t}://127.0.0.1:0"),
    }
}

#[derive(Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

fn router() -> Router {
    let mut r = Router::new();
    r.call("/math/add", |_: CallCtx, x: Add| async move {
        Ok::<_, Status>(x.a + x.b)
    })
    .unwrap();
    r.call("/meta", |ctx: CallCtx, key: String| async move {
        Ok::<_, Status>(ctx.meta().get(&key).map(str::to_string))
    })
    .unwrap();
    r.call("/fail", |_: CallCtx, code: i32| async move {
        Err::<(), _>(Status::new(Code(code), "as asked"))
    })
    .unwrap();
    r.call("/slow", |_: CallCtx, ms: u64| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, Status>(ms)
    })
    .unwrap();
    r
}

/// A server on its own runtime, for the binary to reach.
struct Server {
    runtime: tokio::runtime::Runtime,
    endpoint: Endpoint,
    url: String,
}

impl Server {
    fn start(
        transport: &str,
        certs: &Certs,
        router: Router,
        plugin: Option<drpc_plugins::Auth>,
    ) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut builder = Endpoint::builder()
            .config(certs.server_config())
            .router(router);
        if let Some(p) = plugin {
            builder = builder.plugin(p);
        }
        let endpoint = builder.build().unwrap();
        let addr = listen_addr(transport, "server");
        let url = runtime
            .block_on(endpoint.listen(addr.as_str()))
            .unwrap()
            .to_string();
        Self {
            runtime,
            endpoint,
            url,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A short grace: the stalled handlers of the bench tests are cut.
        let grace = Duration::from_millis(200);
        self.runtime.block_on(self.endpoint.shutdown(grace));
    }
}

fn drpc() -> Command {
    let mut cmd = Command::cargo_bin("drpc").unwrap();
    cmd.timeout(Duration::from_secs(60));
    cmd
}

#[test]
fn call_prints_the_reply_as_json_on_every_transport() {
    let certs = Certs::new("call");
    for t in TRANSPORTS {
        let server = Server::start(t, &certs, router(), None);
        drpc()
            .args(["call", &server.url, "/math/add", r#"{"a": 40, "b": 2}"#])
            .args(certs.dial_args())
            .assert()
            .success()
            .stdout("42\n");
    }
}

#[test]
fn call_sends_meta_and_each_codec() {
    let certs = Certs::new("codec");
    let server = Server::start("tcp", &certs, router(), None);
    for codec in ["msgpack", "json"] {
        drpc()
            .args([
                "call",
                &server.url,
                "/meta",
                r#""user""#,
                "--meta",
                "user=ada",
            ])
            .args(["--codec", codec])
            .assert()
            .success()
            .stdout("\"ada\"\n");
    }
    drpc()
        .args(["call", &server.url, "/meta", r#""user""#])
        .assert()
        .success()
        .stdout("null\n");
}

#[test]
fn an_error_status_is_printed_and_exits_non_zero() {
    let certs = Certs::new("status");
    let server = Server::start("tcp", &certs, router(), None);
    drpc()
        .args(["call", &server.url, "/fail", "1042"])
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains("/fail failed: 1042: as asked"));
    drpc()
        .args(["call", &server.url, "/nowhere"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("404 (not found)"));
    drpc()
        .args(["call", &server.url, "/slow", "5000", "--timeout", "200ms"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("408 (deadline exceeded)"));
    drpc()
        .args(["call", &server.url, "/math/add", "{not json"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("the argument is not JSON"));
    drpc()
        .args(["call", "tcp://127.0.0.1:1", "/math/add"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "cannot connect to tcp://127.0.0.1:1",
        ));
    drpc()
        .args(["call", &server.url])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("<METHOD>"));
}

#[test]
fn a_token_passes_the_auth_plugin_and_a_wrong_one_is_refused() {
    let certs = Certs::new("auth");
    let auth = drpc_plugins::Auth::new().checker(|_, token: String| async move {
        if token == "s3cret" {
            Ok(())
        } else {
            Err("bad token".to_string())
        }
    });
    let server = Server::start("tcp", &certs, router(), Some(auth));
    drpc()
        .args([
            "call",
            &server.url,
            "/math/add",
            r#"{"a":1,"b":1}"#,
            "--token",
            "s3cret",
        ])
        .assert()
        .success()
        .stdout("2\n");
    drpc()
        .args([
            "call",
            &server.url,
            "/math/add",
            r#"{"a":1,"b":1}"#,
            "--token",
            "guess",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("401"));
}

/// A `drpc listen` process and its output, line by line (read by a thread,
/// so that waiting for a line is bounded).
struct Listener {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    url: String,
}

impl Listener {
    fn start(transport: &str, certs: &Certs, extra: &[&str]) -> Self {
        let addr = listen_addr(transport, "listen");
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("drpc"))
            .args(["listen", &addr])
            .args(certs.listen_args())
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut l = Self {
            child,
            lines,
            url: String::new(),
        };
        let first = l.next_line();
        l.url = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {first}"))
            .to_string();
        l
    }

    fn next_line(&mut self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(30))
            .expect("drpc listen printed a line within 30 s")
    }

    /// Waits (bounded) for the process to exit by itself: its standard
    /// output closes when it does.
    fn wait(mut self) -> std::process::ExitStatus {
        use std::sync::mpsc::RecvTimeoutError;
        match self.lines.recv_timeout(Duration::from_secs(30)) {
            Err(RecvTimeoutError::Disconnected) => self.child.wait().unwrap(),
            Err(RecvTimeoutError::Timeout) => panic!("drpc listen did not exit within 30 s"),
            Ok(line) => panic!("more output than expected: {line}"),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // A test that failed midway leaves no process behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn listen_prints_calls_and_pushes_and_answers_on_every_transport() {
    let certs = Certs::new("listen");
    for t in TRANSPORTS {
        let mut l = Listener::start(t, &certs, &["--reply", r#"{"ok": true}"#, "--count", "2"]);
        drpc()
            .args([
                "call",
                &l.url,
                "/math/add",
                r#"{"a":1,"b":2}"#,
                "--meta",
                "k=v",
            ])
            .args(certs.dial_args())
            .assert()
            .success()
            .stdout("{\n  \"ok\": true\n}\n");
        let line = l.next_line();
        assert!(line.starts_with("call /math/add from "), "{t}: {line}");
        assert!(line.ends_with(r#" {"a":1,"b":2} meta k=v"#), "{t}: {line}");

        drpc()
            .args(["push", &l.url, "/chat/say", r#""hello""#])
            .args(certs.dial_args())
            .assert()
            .success()
            .stdout("");
        let line = l.next_line();
        assert!(line.starts_with("push /chat/say from "), "{t}: {line}");
        assert!(line.ends_with(r#" "hello""#), "{t}: {line}");
        assert!(l.wait().success(), "{t}: listen exits 0 after --count");
    }
}

#[test]
fn a_listener_with_a_client_ca_takes_only_client_certificates() {
    let certs = Certs::new("mtls");
    for t in ["tls", "quic"] {
        let ca = certs.path("ca.pem");
        let mut l = Listener::start(t, &certs, &["--ca", &ca, "--count", "1"]);
        drpc()
            .args(["call", &l.url, "/anonymous"])
            .args(certs.dial_args())
            .assert()
            .code(1);
        let (cert, key) = (certs.path("client.pem"), certs.path("client.key"));
        drpc()
            .args(["call", &l.url, "/identified", r#""me""#])
            .args(certs.dial_args())
            .args(["--cert", &cert, "--key", &key])
            .assert()
            .success()
            .stdout("\"me\"\n");
        assert!(l.next_line().starts_with("call /identified from "), "{t}");
        assert!(l.wait().success(), "{t}");
    }
}

#[test]
fn listen_echoes_calls_without_a_reply() {
    let certs = Certs::new("echo");
    let mut l = Listener::start("tcp", &certs, &["--count", "1"]);
    drpc()
        .args([
            "call",
            &l.url,
            "/anything",
            r#"[1, "two", {"three": 3.5}]"#,
            "--codec",
            "json",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains(r#""three": 3.5"#));
    assert!(l.next_line().contains(r#"[1,"two",{"three":3.5}]"#));
    assert!(l.wait().success());
}

#[test]
fn a_handler_receives_what_push_sends() {
    let certs = Certs::new("push");
    let (tx, rx) = std::sync::mpsc::channel();
    let mut r = Router::new();
    r.push("/chat/say", move |ctx: PushCtx, text: String| {
        let tx = tx.clone();
        let user = ctx.meta().get("user").map(str::to_string);
        async move {
            let _ = tx.send((text, user));
        }
    })
    .unwrap();
    let server = Server::start("tcp", &certs, r, None);
    drpc()
        .args([
            "push",
            &server.url,
            "/chat/say",
            r#""hi""#,
            "--meta",
            "user=ada",
        ])
        .assert()
        .success();
    let got = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(got, ("hi".to_string(), Some("ada".to_string())));
}

#[test]
fn bench_reports_throughput_latency_statuses_and_a_histogram() {
    let certs = Certs::new("bench");
    for t in TRANSPORTS {
        let server = Server::start(t, &certs, router(), None);
        let out = drpc()
            .args(["bench", &server.url, "/math/add", r#"{"a":1,"b":2}"#])
            .args(["-c", "4", "-z", "400ms", "-s", "2"])
            .args(certs.dial_args())
            .assert()
            .success()
            .get_output()
            .clone();
        let text = String::from_utf8(out.stdout).unwrap();
        for want in [
            "calls/s:",
            "p50",
            "p90",
            "p99 ",
            "p99.9",
            "[0 (ok)]",
            "Histogram (ms):",
        ] {
            assert!(text.contains(want), "{t}: no {want:?} in\n{text}");
        }
        assert!(text.contains("failed:      0"), "{t}: {text}");
        // The live progress line went to standard error.
        let progress = String::from_utf8(out.stderr).unwrap();
        assert!(
            progress.contains("calls") && progress.contains("/s"),
            "{t}: {progress}"
        );
    }
}

#[test]
fn bench_counts_each_status_and_keeps_to_a_rate() {
    let certs = Certs::new("rate");
    let server = Server::start("tcp", &certs, router(), None);
    let out = drpc()
        .args([
            "bench",
            &server.url,
            "/fail",
            "1042",
            "-c",
            "2",
            "-z",
            "1s",
            "-q",
        ])
        .args(["--rate", "50"])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let text = String::from_utf8(out.stdout).unwrap();
    let calls: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("calls:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no call count in\n{text}"));
    // 50 a second for a second: the first at once, one every 20 ms.
    assert!(
        (40..=51).contains(&calls),
        "{calls} calls at --rate 50 for 1 s:\n{text}"
    );
    assert!(text.contains(&format!("[1042] {calls} calls")), "{text}");
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("no call succeeded"));
}

#[test]
fn bench_ends_at_its_duration_and_counts_calls_still_waiting() {
    let certs = Certs::new("stall");
    let server = Server::start("tcp", &certs, router(), None);
    // Every call would take 20 s; the run is 300 ms.
    let out = drpc()
        .args([
            "bench",
            &server.url,
            "/slow",
            "20000",
            "-c",
            "3",
            "-z",
            "300ms",
            "-q",
        ])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("calls:       0 in 0."), "{text}");
    assert!(
        text.contains("unfinished:  3 (still waiting at the end)"),
        "{text}"
    );
}
