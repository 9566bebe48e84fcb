//! `/_drpc/health` (PROTOCOL.md 10.4): serving from the start, what the
//! application sets, draining once shutdown begins; its bytes pinned to
//! the spec.

mod common;

use common::*;
use drpc::plugin::BoxFuture;
use drpc::proto::{FrameLimits, Header, Message, Proto, RawProto};
use drpc::{CallCtx, CallOptions, CodecId, Endpoint, Health, Plugin, Router, Status};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

async fn health(session: &drpc::Session, codec: CodecId) -> String {
    session
        .call_with::<_, String>("/_drpc/health", &(), CallOptions::new().codec(codec))
        .await
        .unwrap()
        .value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_reports_serving_then_what_the_application_sets() {
    let p = pair().await;
    assert_eq!(p.server.health(), Health::Serving);
    assert_eq!(health(&p.session, CodecId::MSGPACK).await, "serving");
    assert_eq!(health(&p.session, CodecId::JSON).await, "serving");
    p.server.set_health(Health::NotServing);
    assert_eq!(health(&p.session, CodecId::MSGPACK).await, "not_serving");
    p.server.set_health(Health::Serving);
    assert_eq!(health(&p.session, CodecId::TEXT).await, "serving");
    p.close().await;
}

/// Holds the shutdown in its going-away step until released.
struct Hold {
    reached: mpsc::UnboundedSender<()>,
    release: Arc<Notify>,
}

impl Plugin for Hold {
    fn name(&self) -> &str {
        "hold"
    }

    fn before_going_away<'a>(&'a self, _: &'a Endpoint) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let _ = self.reached.send(());
            self.release.notified().await;
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_reports_draining_and_the_application_cannot_undo_it() {
    let (reached, mut at_going_away) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let p = pair_from(
        Endpoint::builder().plugin(Hold {
            reached,
            release: release.clone(),
        }),
        Endpoint::builder(),
    )
    .await;
    let server = p.server.clone();
    let closing = tokio::spawn(async move { server.shutdown(Duration::from_secs(5)).await });
    within("going away begins", at_going_away.recv())
        .await
        .unwrap();
    assert_eq!(health(&p.session, CodecId::MSGPACK).await, "draining");
    p.server.set_health(Health::Serving);
    assert_eq!(p.server.health(), Health::Draining);
    release.notify_one();
    within("shutdown", closing).await.unwrap();
    within("client close", p.client.close()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_may_answer_health_itself() {
    let mut routes = Router::new();
    routes
        .call("/_drpc/health", |_: CallCtx, _: ()| async move {
            Ok::<_, Status>("serving: 3 of 3 replicas".to_string())
        })
        .unwrap();
    let p = pair_with(routes, Router::new(), drpc::Config::default()).await;
    assert_eq!(
        health(&p.session, CodecId::MSGPACK).await,
        "serving: 3 of 3 replicas"
    );
    p.close().await;
}

/// The hex of PROTOCOL.md 10.4's example, as two frames.
fn spec_frames() -> (String, String) {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md"))
        .unwrap();
    let section = spec.split("### 10.4 Health").nth(1).expect("section 10.4");
    let block = section
        .split("```text\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let mut frames = block
        .split("\n\n")
        .map(|f| f.split_whitespace().collect::<Vec<_>>().join(" "));
    (frames.next().unwrap(), frames.next().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bytes_of_a_health_check_are_the_spec_s() {
    let server = Endpoint::builder().build().unwrap();
    let addr = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let mut call = Header::call(1, "/_drpc/health");
    call.timeout = Some(Duration::from_millis(1000));
    let mut wire = bytes::BytesMut::new();
    RawProto
        .framer(&FrameLimits::default())
        .encode(&Message::new(call, &[0xc0][..]), &mut wire)
        .unwrap();
    let (spec_call, spec_reply) = spec_frames();
    assert_eq!(hex(&wire), spec_call, "the call");

    use tokio::io::AsyncWriteExt;
    let mut raw = tokio::net::TcpStream::connect(addr.target()).await.unwrap();
    raw.write_all(&wire).await.unwrap();
    let reply = read_frame(&mut raw).await;
    let mut back = bytes::BytesMut::new();
    RawProto
        .framer(&FrameLimits::default())
        .encode(&reply, &mut back)
        .unwrap();
    assert_eq!(hex(&back), spec_reply, "the reply");
    server.close().await;
}
