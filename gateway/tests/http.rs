//! The HTTP gateway with a real HTTP client over loopback: the same
//! handlers a drpc call reaches, statuses mapped, meta and deadlines in
//! headers, MessagePack bodies, pushes, keep-alive and the endpoint's
//! limits.

use drpc::{CallCtx, Config, Endpoint, Limits, PushCtx, Router, Status};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: did not happen within {WAIT:?}"))
}

#[derive(Serialize, Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

struct Server {
    endpoint: Endpoint,
    url: String,
    pushes: mpsc::UnboundedReceiver<String>,
    started: mpsc::UnboundedReceiver<()>,
}

async fn server(config: Config) -> Server {
    let (push_tx, pushes) = mpsc::unbounded_channel();
    let (started_tx, started) = mpsc::unbounded_channel();
    let mut r = Router::new();
    r.call("/math/add", |_: CallCtx, x: Add| async move {
        Ok::<_, Status>(x.a + x.b)
    })
    .unwrap();
    r.call("/meta", |ctx: CallCtx, key: String| async move {
        let value = ctx.meta().get(&key).map(str::to_string);
        ctx.set_reply_meta("seen", value.as_deref().unwrap_or("none"));
        Ok::<_, Status>(value)
    })
    .unwrap();
    r.call("/sleep_ms", move |_: CallCtx, ms: u64| {
        let started = started_tx.clone();
        async move {
            let _ = started.send(());
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, Status>(ms)
        }
    })
    .unwrap();
    r.call("/fail", |_: CallCtx, code: i32| async move {
        Err::<(), _>(Status::new(drpc::Code(code), "as asked"))
    })
    .unwrap();
    r.push("/note", move |_: PushCtx, text: String| {
        let tx = push_tx.clone();
        async move {
            let _ = tx.send(text);
        }
    })
    .unwrap();
    let endpoint = Endpoint::builder()
        .config(config)
        .router(r)
        .build()
        .unwrap();
    let addr = endpoint.listen("http://127.0.0.1:0").await.unwrap();
    Server {
        endpoint,
        url: format!("http://{}", addr.target()),
        pushes,
        started,
    }
}

async fn json(resp: reqwest::Response) -> serde_json::Value {
    within("body", resp.json()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_post_reaches_the_handler_and_meta_travels_as_headers() {
    let s = server(Config::default()).await;
    let http = reqwest::Client::new();
    let resp = within(
        "add",
        http.post(format!("{}/math/add", s.url))
            .body(r#"{"a":1,"b":2}"#)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.headers()["drpc-status"], "0");
    assert_eq!(json(resp).await, serde_json::json!(3));

    let resp = within(
        "meta",
        http.post(format!("{}/meta", s.url))
            .header("content-type", "application/json")
            .header("Drpc-Meta-Trace", "abc-123")
            .body(r#""trace""#)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.headers()["drpc-meta-seen"], "abc-123");
    assert_eq!(json(resp).await, serde_json::json!("abc-123"));
    within("close", s.endpoint.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_map_to_http_with_a_json_error_body() {
    let s = server(Config {
        max_frame_len: 64 * 1024,
        ..Config::default()
    })
    .await;
    let http = reqwest::Client::new();
    let post = |path: &str, body: &'static str| http.post(format!("{}{path}", s.url)).body(body);

    let cases: Vec<(reqwest::RequestBuilder, u16, i32)> = vec![
        (post("/nowhere", "null"), 404, 404),
        (post("/math/add", r#"{"a":"x"}"#), 400, 400),
        (post("/fail", "401"), 401, 401),
        (post("/fail", "503"), 503, 503),
        (post("/fail", "413"), 413, 413),
        (post("/fail", "1001"), 500, 1001),
        (
            post("/sleep_ms", "5000").header("drpc-timeout", "100"),
            504,
            408,
        ),
        (
            post("/math/add", "{}").header("content-type", "application/xml"),
            415,
            415,
        ),
        (
            post("/math/add", "{}").header("drpc-timeout", "soon"),
            400,
            400,
        ),
        (http.get(format!("{}/math/add", s.url)), 405, 405),
    ];
    for (request, http_status, code) in cases {
        let resp = within("request", request.send()).await.unwrap();
        assert_eq!(resp.status(), http_status, "{resp:?}");
        assert_eq!(resp.headers()["drpc-status"], code.to_string().as_str());
        let body = json(resp).await;
        assert_eq!(body["code"], code, "{body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    let resp = within("get", http.get(format!("{}/math/add", s.url)).send())
        .await
        .unwrap();
    assert_eq!(resp.headers()["allow"], "POST");

    // A body over the frame limit is refused before it reaches the session.
    let big = vec![b'1'; 100 * 1024];
    let resp = within("big", post("/math/add", "").body(big).send())
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // And the endpoint goes on serving.
    let resp = within("after", post("/math/add", r#"{"a":2,"b":2}"#).send())
        .await
        .unwrap();
    assert_eq!(json(resp).await, serde_json::json!(4));
    within("close", s.endpoint.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messagepack_bodies_when_the_content_type_says_so() {
    let s = server(Config::default()).await;
    let body = rmp_serde::to_vec_named(&Add { a: 20, b: 22 }).unwrap();
    let resp = within(
        "msgpack",
        reqwest::Client::new()
            .post(format!("{}/math/add", s.url))
            .header("content-type", "application/msgpack")
            .body(body)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/msgpack");
    let bytes = within("body", resp.bytes()).await.unwrap();
    assert_eq!(rmp_serde::from_slice::<i64>(&bytes).unwrap(), 42);
    within("close", s.endpoint.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_is_accepted_and_reaches_its_handler() {
    let mut s = server(Config::default()).await;
    let resp = within(
        "push",
        reqwest::Client::new()
            .post(format!("{}/note", s.url))
            .header("drpc-push", "1")
            .body(r#""hello""#)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(
        within("push arrives", s.pushes.recv()).await.unwrap(),
        "hello"
    );
    within("close", s.endpoint.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_kept_alive_as_one_session_under_the_endpoints_limits() {
    let config = Config {
        limits: Limits {
            max_sessions: 1,
            ..Limits::default()
        },
        ..Config::default()
    };
    let s = server(config).await;
    // Five requests on one connection, written by hand: an HTTP client's
    // pool may open a second connection while the first goes back to it.
    let host = s.url.trim_start_matches("http://").to_string();
    let mut first = tokio::net::TcpStream::connect(&host).await.unwrap();
    for i in 0..5 {
        let body = format!(r#"{{"a":{i},"b":1}}"#);
        let request = format!(
            "POST /math/add HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        use tokio::io::AsyncWriteExt;
        first.write_all(request.as_bytes()).await.unwrap();
        let (status, answer) = within("keep-alive", read_response(&mut first)).await;
        assert_eq!((status, answer), (200, (i + 1).to_string()));
    }
    assert_eq!(
        s.endpoint.session_count(),
        1,
        "five requests, one connection, one session"
    );
    // A second connection is over the session limit: 503, as for any peer.
    let second = reqwest::Client::new();
    let resp = within(
        "second",
        second
            .post(format!("{}/math/add", s.url))
            .body(r#"{"a":1,"b":1}"#)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(json(resp).await["code"], 503);
    within("close", s.endpoint.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_running_request_finish() {
    let mut s = server(Config::default()).await;
    let http = reqwest::Client::new();
    let request = tokio::spawn(http.post(format!("{}/sleep_ms", s.url)).body("300").send());
    within("handler starts", s.started.recv()).await.unwrap();
    within("close", s.endpoint.close()).await;
    let resp = within("response", request).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await, serde_json::json!(300));
    // Closed: nothing listens any more.
    let refused = reqwest::Client::new()
        .post(format!("{}/math/add", s.url))
        .body("{}")
        .send()
        .await;
    assert!(refused.is_err());
}

/// One HTTP/1.1 response from `stream`: its status and body (by its
/// Content-Length).
async fn read_response(stream: &mut tokio::net::TcpStream) -> (u16, String) {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    for _ in 0..10_000 {
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("a Content-Length");
            if body.len() >= len {
                let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                return (status, body[..len].to_string());
            }
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed before a whole response");
        buf.extend_from_slice(&chunk[..n]);
    }
    panic!("no whole response");
}
