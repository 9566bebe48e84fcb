//! The JavaScript client (`js/`) in real headless Chromium against a real
//! drpc endpoint over WebSocket: the page calls `/math/add` with meta and
//! deadlines, receives a push, answers a call from the server, pushes back,
//! and sees the server's going-away notice. The page reports each step
//! over a second session, to a reporter endpoint.
//!
//! Needs Debian's chromium and the client's npm dependency: run
//! `bash .ci/install-deps` once (the README's test command does).

use drpc::plugin::BoxFuture;
use drpc::{CallCtx, CallOptions, Endpoint, ItemSink, Plugin, PushCtx, Router, Session, Status};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Chromium's start-up on a loaded 2-core machine is slow: generous.
const WAIT: Duration = Duration::from_secs(60);

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: did not happen within {WAIT:?}"))
}

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../js")
}

#[derive(Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

struct Accepts(mpsc::UnboundedSender<Session>);

impl Plugin for Accepts {
    fn name(&self) -> &str {
        "accepts"
    }

    fn after_accept<'a>(&'a self, session: &'a Session) -> BoxFuture<'a, Result<(), Status>> {
        let _ = self.0.send(session.clone());
        Box::pin(async { Ok(()) })
    }
}

/// Sets its flag when dropped: a handler's future was dropped.
struct SetOnDrop(std::sync::Arc<tokio::sync::watch::Sender<bool>>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(true);
    }
}

/// Serves the files of `js/` over HTTP (GET only): the page, the client
/// and its MessagePack library, as a web server would.
async fn serve_files(listener: tokio::net::TcpListener, root: PathBuf) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            return;
        };
        let root = root.clone();
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head);
            let path = head.split_whitespace().nth(1).unwrap_or("/");
            let path = path
                .split('?')
                .next()
                .unwrap_or("/")
                .trim_start_matches('/');
            let file = root.join(path);
            let (status, kind, body) = match std::fs::read(&file) {
                Ok(body) if !path.contains("..") => {
                    let kind = match file.extension().and_then(|e| e.to_str()) {
                        Some("html") => "text/html; charset=utf-8",
                        Some("js" | "mjs") => "text/javascript",
                        _ => "application/octet-stream",
                    };
                    ("200 OK", kind, body)
                }
                _ => ("404 Not Found", "text/plain", b"not found".to_vec()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes()).await;
            let _ = conn.write_all(&body).await;
        });
    }
}

/// Headless Chromium, killed when the test ends however it ends.
struct Browser {
    child: Child,
    log: PathBuf,
}

impl Browser {
    fn open(url: &str, dir: &Path) -> Self {
        let log = dir.join("chromium.log");
        let child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("chromium (Debian's package): run bash .ci/install-deps");
        Self { child, log }
    }

    /// What the browser logged, the page's console included.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_js_client_in_headless_chromium() {
    assert!(
        js_dir().join("node_modules/@msgpack/msgpack").is_dir(),
        "the client's dependency is not installed: run bash .ci/install-deps"
    );

    // The server the page talks to.
    let (accepts_tx, mut accepts) = mpsc::unbounded_channel();
    let (notes_tx, mut notes) = mpsc::unbounded_channel();
    let mut routes = Router::new();
    routes
        .call("/math/add", |_: CallCtx, x: Add| async move {
            Ok::<_, Status>(x.a + x.b)
        })
        .unwrap();
    routes
        .call("/meta", |ctx: CallCtx, key: String| async move {
            let value = ctx.meta().get(&key).map(str::to_string);
            ctx.set_reply_meta("seen", value.as_deref().unwrap_or("none"));
            Ok::<_, Status>(value)
        })
        .unwrap();
    routes
        .call("/slow", |_: CallCtx, ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, Status>(ms)
        })
        .unwrap();
    routes
        .call("/remaining_ms", |ctx: CallCtx, _: ()| async move {
            Ok::<_, Status>(ctx.remaining().as_millis() as u64)
        })
        .unwrap();
    // A handler the page aborts a call to, and two calls that tell the
    // page when it started and when it stopped (its future was dropped).
    let (started_tx, started) = tokio::sync::watch::channel(false);
    let (stopped_tx, stopped) = tokio::sync::watch::channel(false);
    let stopped_tx = std::sync::Arc::new(stopped_tx);
    routes
        .call("/hang", move |_: CallCtx, _: ()| {
            let _ = started_tx.send(true);
            let guard = SetOnDrop(stopped_tx.clone());
            async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                Ok::<_, Status>(())
            }
        })
        .unwrap();
    // Server streams the page reads: `/count` to its end (past one window,
    // so the page's credit must flow), `/endless` until the page stops.
    routes
        .server_stream(
            "/count",
            |ctx: CallCtx, n: u32, mut out: ItemSink<u32>| async move {
                for i in 0..n {
                    out.send(&i).await?;
                }
                ctx.set_reply_meta("done", "yes");
                Ok::<_, Status>(())
            },
        )
        .unwrap();
    let (endless_tx, endless_stopped) = tokio::sync::watch::channel(false);
    let endless_tx = std::sync::Arc::new(endless_tx);
    routes
        .server_stream(
            "/endless",
            move |_: CallCtx, _: (), mut out: ItemSink<u64>| {
                let guard = SetOnDrop(endless_tx.clone());
                async move {
                    let _guard = guard;
                    for i in 0..u64::MAX {
                        out.send(&i).await?;
                    }
                    Ok::<_, Status>(())
                }
            },
        )
        .unwrap();
    for (path, flag) in [
        ("/hang_started", started),
        ("/hang_stopped", stopped),
        ("/endless_stopped", endless_stopped),
    ] {
        routes
            .call(path, move |_: CallCtx, _: ()| {
                let mut flag = flag.clone();
                async move {
                    let seen = tokio::time::timeout(Duration::from_secs(10), flag.wait_for(|v| *v));
                    Ok::<_, Status>(matches!(seen.await, Ok(Ok(_))))
                }
            })
            .unwrap();
    }
    routes
        .push("/page/note", move |_: PushCtx, text: String| {
            let tx = notes_tx.clone();
            async move {
                let _ = tx.send(text);
            }
        })
        .unwrap();
    let server = Endpoint::builder()
        .router(routes)
        .plugin(Accepts(accepts_tx))
        .build()
        .unwrap();
    let ws = server.listen("ws://127.0.0.1:0/drpc").await.unwrap();

    // Where the page reports.
    let (report_tx, mut reports) = mpsc::unbounded_channel();
    let mut report_routes = Router::new();
    report_routes
        .call("/report", move |_: CallCtx, step: serde_json::Value| {
            let tx = report_tx.clone();
            async move {
                let _ = tx.send(step);
                Ok::<_, Status>(())
            }
        })
        .unwrap();
    let reporter = Endpoint::builder().router(report_routes).build().unwrap();
    let report = reporter.listen("ws://127.0.0.1:0").await.unwrap();

    let files = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web = files.local_addr().unwrap();
    let serving = tokio::spawn(serve_files(files, js_dir()));

    let dir = std::env::temp_dir().join(format!("drpc-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let browser = Browser::open(
        &format!("http://{web}/test/browser.html?ws={ws}&report={report}"),
        &dir,
    );
    let log = || browser.log();

    // The page connects; the server pushes to it and calls it.
    let page = tokio::time::timeout(WAIT, accepts.recv())
        .await
        .unwrap_or_else(|_| panic!("the page did not connect; chromium said:\n{}", log()))
        .unwrap();
    page.push("/hello", "unrouted pushes are dropped")
        .await
        .unwrap();
    page.push("/page/hello", "welcome").await.unwrap();
    let doubled = page
        .call_with::<_, i64>(
            "/page/double",
            &21,
            CallOptions::new().meta("from", "server"),
        )
        .await
        .unwrap();
    assert_eq!(doubled.value, 42, "the page answered the server's call");
    let err = page.call::<_, i64>("/page/nothing", &1).await.unwrap_err();
    assert_eq!(err.code(), drpc::Code::NOT_FOUND, "{err}");

    let calls = tokio::time::timeout(WAIT, reports.recv())
        .await
        .unwrap_or_else(|_| panic!("no report from the page; chromium said:\n{}", log()))
        .unwrap();
    assert_eq!(calls["step"], "calls", "{calls}\n{}", log());
    assert_eq!(calls["sum"], 42, "{calls}");
    assert_eq!(calls["seen"], "t-1", "meta reached the handler: {calls}");
    assert_eq!(
        calls["replyMeta"], "t-1",
        "reply meta reached the page: {calls}"
    );
    assert_eq!(calls["late"], 408, "a call past its deadline: {calls}");
    let remaining = calls["remaining"].as_u64().unwrap();
    assert!(
        remaining > 0 && remaining <= 5000,
        "the deadline travelled: {calls}"
    );
    assert_eq!(calls["missing"], 404, "{calls}");
    assert_eq!(calls["push"], "welcome", "{calls}");
    assert_eq!(
        calls["aborted"], 499,
        "an aborted call fails with 499: {calls}"
    );
    assert_eq!(
        calls["stopped"], true,
        "the aborted call's handler stopped: {calls}"
    );
    assert_eq!(
        calls["streamed"],
        serde_json::json!({ "n": 300, "last": 299, "done": "yes" }),
        "a server stream read to its end: {calls}"
    );
    assert_eq!(calls["taken"], 5, "{calls}");
    assert_eq!(
        calls["endlessStopped"], true,
        "breaking out of a stream stopped its handler: {calls}"
    );
    let note = within("the page's push", notes.recv()).await.unwrap();
    assert_eq!(note, "from the page");
    // The server gives up on a call to the page: the page's handler sees
    // its signal abort.
    let waiting = tokio::spawn({
        let page = page.clone();
        async move { page.call::<_, ()>("/page/wait", &()).await }
    });
    let note = within("the page's handler to start", notes.recv()).await;
    assert_eq!(note.as_deref(), Some("waiting"));
    waiting.abort();
    let note = within("the page to see the cancel", notes.recv()).await;
    assert_eq!(note.as_deref(), Some("cancelled"));

    // Going away: the page hears the notice, new calls fail at once with
    // 102, and its session ends.
    within("server shutdown", server.shutdown(Duration::from_secs(5))).await;
    let gone = tokio::time::timeout(WAIT, reports.recv())
        .await
        .unwrap_or_else(|_| panic!("no second report; chromium said:\n{}", log()))
        .unwrap();
    assert_eq!(gone["step"], "going-away", "{gone}\n{}", log());
    assert_eq!(gone["notice"], 102, "{gone}");
    assert_eq!(gone["after"], 102, "{gone}");
    assert_eq!(gone["closed"], 102, "{gone}");

    drop(browser);
    reporter.close().await;
    serving.abort();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The client's frames against PROTOCOL.md's worked examples, byte for
/// byte (js/test/frame.test.js), and its reading of a server stream
/// (js/test/stream.test.js), on Node.js.
#[test]
fn the_js_frames_match_the_protocol_examples() {
    let out = Command::new("node")
        .arg("--test")
        .arg(js_dir().join("test/frame.test.js"))
        .arg(js_dir().join("test/stream.test.js"))
        .output()
        .expect("node (the machine's Node.js)");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("# pass 10"), "{said}");
}
