//! `drpc stream`: a stream's items as lines of JSON, either way.

use super::*;
use drpc::{ItemSink, Items};

fn streams() -> Router {
    let mut r = Router::new();
    r.server_stream(
        "/count",
        |ctx: CallCtx, n: u32, out: ItemSink<u32>| async move {
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
        |_: CallCtx, _: (), out: ItemSink<String>| async move {
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
    r.bidi_stream(
        "/shout",
        |_: CallCtx, _: (), mut items: Items<String>, out: ItemSink<String>| async move {
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
