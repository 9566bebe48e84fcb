//! Compression filters over a real socket: bodies travel compressed and
//! come out whole, replies use the call's filters, small bodies are left
//! alone, and corrupt ones get 400.

use drpc::proto::Message;
use drpc::{CallCtx, Code, Endpoint, Plugin, PushCtx, Router, Session, Status};
use drpc_plugins::{Compression, Filter};
use serde_bytes::ByteBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("did not happen in time")
}

/// Records (filters, body length) of what arrives, as it is on the wire:
/// added before `Compression`, it runs first.
#[derive(Default)]
struct Wire(Mutex<Vec<(Vec<u8>, usize)>>);

impl Wire {
    fn record(&self, msg: &Message) {
        self.0
            .lock()
            .unwrap()
            .push((msg.header.filters.to_vec(), msg.body.len()));
    }
    fn take(&self) -> Vec<(Vec<u8>, usize)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

impl Plugin for Wire {
    fn after_read_call_header(&self, _: &Session, msg: &mut Message) -> Result<(), Status> {
        self.record(msg);
        Ok(())
    }
    fn after_read_reply_header(&self, _: &Session, msg: &mut Message) -> Result<(), Status> {
        self.record(msg);
        Ok(())
    }
    fn after_read_push_header(&self, _: &Session, msg: &mut Message) -> Result<(), Status> {
        self.record(msg);
        Ok(())
    }
}

struct Setup {
    addr: drpc::Addr,
    server: Endpoint,
    client: Endpoint,
    session: Session,
    server_wire: Arc<Wire>,
    client_wire: Arc<Wire>,
    pushes: tokio::sync::mpsc::UnboundedReceiver<usize>,
}

async fn setup(server_filter: Filter, client_filter: Filter) -> Setup {
    let (tx, pushes) = tokio::sync::mpsc::unbounded_channel();
    let mut r = Router::new();
    r.call("/echo", |_: CallCtx, b: ByteBuf| async move {
        Ok::<_, Status>(b)
    })
    .unwrap();
    r.push("/sink", move |_: PushCtx, b: ByteBuf| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(b.len());
        }
    })
    .unwrap();
    let (server_wire, client_wire) = (Arc::new(Wire::default()), Arc::new(Wire::default()));
    let server = Endpoint::builder()
        .router(r)
        .plugin_arc(server_wire.clone())
        .plugin(Compression::new(server_filter).threshold(1000))
        .build()
        .unwrap();
    let addr = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let client = Endpoint::builder()
        .plugin_arc(client_wire.clone())
        .plugin(Compression::new(client_filter).threshold(1000))
        .build()
        .unwrap();
    let session = client.dial(&addr).await.unwrap();
    Setup {
        addr,
        server,
        client,
        session,
        server_wire,
        client_wire,
        pushes,
    }
}

fn text(len: usize) -> ByteBuf {
    ByteBuf::from(
        b"drpc carries calls and pushes both ways. "
            .iter()
            .cycle()
            .take(len)
            .copied()
            .collect::<Vec<u8>>(),
    )
}

#[tokio::test]
async fn bodies_travel_compressed_and_replies_use_the_calls_filters() {
    for (filter, id) in [(Filter::Gzip, 1u8), (Filter::Zstd, 2u8)] {
        // The server would pick the other filter on its own; a reply
        // follows the call.
        let other = if filter == Filter::Gzip {
            Filter::Zstd
        } else {
            Filter::Gzip
        };
        let mut s = setup(other, filter).await;
        let body = text(200_000);
        let back: ByteBuf = s.session.call("/echo", &body).await.unwrap();
        assert!(back == body);
        let (filters, len) = s.server_wire.take().pop().unwrap();
        assert_eq!(filters, [id], "the call was compressed with {filter:?}");
        assert!(len < 20_000, "{len} bytes on the wire for 200 kB of text");
        let (filters, _) = s.client_wire.take().pop().unwrap();
        assert_eq!(filters, [id], "the reply uses the call's filter");

        // Under the threshold, nothing is compressed either way.
        let small = text(500);
        let back: ByteBuf = s.session.call("/echo", &small).await.unwrap();
        assert!(back == small);
        assert!(s.server_wire.take().pop().unwrap().0.is_empty());
        assert!(s.client_wire.take().pop().unwrap().0.is_empty());

        // Pushes too.
        s.session.push("/sink", &body).await.unwrap();
        assert_eq!(within(s.pushes.recv()).await.unwrap(), 200_000);
        assert_eq!(s.server_wire.take().pop().unwrap().0, [id]);
        s.client.close().await;
        s.server.close().await;
    }
}

#[tokio::test]
async fn a_corrupt_compressed_body_is_a_400() {
    let s = setup(Filter::Gzip, Filter::Gzip).await;
    // A client plugin that marks an uncompressed body as gzip.
    struct Lie;
    impl Plugin for Lie {
        fn before_write_call(&self, _: &Session, msg: &mut Message) -> Result<(), Status> {
            msg.header.filters = vec![1u8].into();
            Ok(())
        }
    }
    let liar = Endpoint::builder().plugin(Lie).build().unwrap();
    let session = liar.dial(&s.addr).await.unwrap();
    let err = session
        .call::<_, ByteBuf>("/echo", &text(10))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::BAD_MESSAGE);
    assert!(err.message().contains("does not unpack with gzip"), "{err}");
    // The server is unharmed.
    let back: ByteBuf = s.session.call("/echo", &text(5000)).await.unwrap();
    assert_eq!(back.len(), 5000);
    liar.close().await;
    s.client.close().await;
    s.server.close().await;
}

#[tokio::test]
async fn a_body_that_unpacks_past_the_frame_limit_is_refused() {
    let s = setup(Filter::Zstd, Filter::Zstd).await;
    // 64 MiB of zeros, which zstd packs into a few kB: a decompression bomb
    // against an 8 MiB frame limit.
    let bomb = zstd::bulk::compress(&vec![0u8; 64 * 1024 * 1024], 3).unwrap();
    struct Bomb(Vec<u8>);
    impl Plugin for Bomb {
        fn before_write_call(&self, _: &Session, msg: &mut Message) -> Result<(), Status> {
            msg.header.filters = vec![2u8].into();
            msg.body = self.0.clone().into();
            Ok(())
        }
    }
    let attacker = Endpoint::builder().plugin(Bomb(bomb)).build().unwrap();
    let session = attacker.dial(&s.addr).await.unwrap();
    let err = session.call::<_, ByteBuf>("/echo", &()).await.unwrap_err();
    assert_eq!(err.code(), Code::BAD_MESSAGE);
    assert!(err.message().contains("frame limit"), "{err}");
    attacker.close().await;
    s.client.close().await;
    s.server.close().await;
}
