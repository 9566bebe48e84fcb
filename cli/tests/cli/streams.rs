//! `drpc stream`: a stream's items as lines of JSON, either way.

use super::*;
use drpc::{ItemSink, Items};

fn streams() -> Router {
    let mut r = Router::new();
    r.server_stream(
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
    r.server_stream(
        "/dry",
        |_: CallCtx, _: (), mut out: ItemSink<String>| async move {
            out.send(&"last".to_string()).await?;
            Err::<(), _>(Status::new(Code(1234), "the source ran dry"))
        },
    )
    .unwrap();
    r.client_stream(
        "/sum",
        |_: CallCtx, start: i64, mut items: Items<i64>| async move {
            let mut sum = start;
            while let Some(n) = items.next().await {
                sum += n?;
            }
            Ok::<_, Status>(sum)
        },
    )
    .unwrap();
    r.client_stream(
        "/first",
        |_: CallCtx, _: (), mut items: Items<i64>| async move {
            match items.next().await {
                Some(first) => first,
                None => Err(Status::bad_message("no item")),
            }
        },
    )
    .unwrap();
    r.bidi_stream(
        "/two",
        |_: CallCtx, _: (), mut items: Items<i64>, mut out: ItemSink<i64>| async move {
            for _ in 0..2 {
                if let Some(n) = items.next().await {
                    out.send(&n?).await?;
                }
            }
            Ok::<_, Status>(())
        },
    )
    .unwrap();
    r.bidi_stream(
        "/shout",
        |_: CallCtx, _: (), mut items: Items<String>, mut out: ItemSink<String>| async move {
            while let Some(line) = items.next().await {
                out.send(&line?.to_uppercase()).await?;
            }
            Ok::<_, Status>(())
        },
    )
    .unwrap();
    r
}

#[test]
fn stream_prints_each_item_as_a_line_on_every_transport() {
    let certs = Certs::new("stream");
    for t in TRANSPORTS {
        let server = Server::start(t, &certs, streams(), None);
        drpc()
            .args(["stream", &server.url, "/count", "3", "-v"])
            .args(certs.dial_args())
            .assert()
            .success()
            .stdout("0\n1\n2\n")
            .stderr(predicate::str::contains("reply meta: done=yes"));
    }
}

#[test]
fn stream_sends_standard_input_as_items_one_way_or_both() {
    let certs = Certs::new("stream-in");
    let server = Server::start("tcp", &certs, streams(), None);
    drpc()
        .args(["stream", &server.url, "/sum", "100", "--kind", "client"])
        .write_stdin("1\n2\n\n3\n")
        .assert()
        .success()
        .stdout("106\n");
    drpc()
        .args([
            "stream",
            &server.url,
            "/shout",
            "--kind",
            "bidi",
            "--codec",
            "json",
        ])
        .write_stdin("\"ab\"\n\"cd\"\n")
        .assert()
        .success()
        .stdout("\"AB\"\n\"CD\"\n");
    // A line that is not JSON fails the stream, and the command.
    drpc()
        .args(["stream", &server.url, "/sum", "0", "--kind", "client"])
        .write_stdin("1\nnot json\n")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("the stream of /sum failed"));
}

#[test]
fn a_failed_stream_prints_its_items_then_exits_non_zero() {
    let certs = Certs::new("stream-fail");
    let server = Server::start("tcp", &certs, streams(), None);
    drpc()
        .args(["stream", &server.url, "/dry", "--no-deadline"])
        .assert()
        .code(1)
        .stdout("\"last\"\n")
        .stderr(predicate::str::contains("1234").and(predicate::str::contains("ran dry")));
    drpc()
        .args(["stream", &server.url, "/math/nothing"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("404"));
}

#[test]
fn an_endpoint_may_answer_or_end_before_standard_input_does() {
    let certs = Certs::new("stream-early");
    let server = Server::start("tcp", &certs, streams(), None);
    // Answered after the first of many items.
    let many: String = (1..=2000).map(|n| format!("{n}\n")).collect();
    drpc()
        .args(["stream", &server.url, "/first", "--kind", "client"])
        .write_stdin(many)
        .assert()
        .success()
        .stdout("1\n");
    // Ended after two items while standard input stays open: the command
    // ends with the stream.
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("drpc"))
        .args(["stream", &server.url, "/two", "--kind", "bidi"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, b"7\n8\n").unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stdout), &mut out);
        let _ = tx.send(out);
    });
    let out = rx.recv_timeout(Duration::from_secs(60));
    if out.is_err() {
        // Hung: the assertion below says so, and the child goes.
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    drop(stdin);
    assert_eq!(
        out.as_deref(),
        Ok("7\n8\n"),
        "the command ended with the stream"
    );
    assert!(status.success(), "{status}");
}
