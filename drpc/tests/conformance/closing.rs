//! Closing loses nothing, on every transport: an end of stream is a
//! graceful end, a call that crosses the going-away notice is answered, and
//! a shut-down endpoint's transports have finished when shutdown returns.

use super::*;
use bytes::BytesMut;
use drpc::proto::{FrameLimits, Framer, Header, Kind, Message, Proto, RawProto};
use drpc::socket::{ReadHalf, WriteHalf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A peer written from PROTOCOL.md: raw frames over the transport's socket.
struct RawPeer {
    rd: ReadHalf,
    wr: WriteHalf,
    framer: Box<dyn Framer>,
    buf: BytesMut,
}

impl RawPeer {
    async fn dial(t: &Transport, addr: &drpc::Addr) -> Self {
        let socket = within("raw dial", drpc::socket::dial(addr, &t.config.transport))
            .await
            .unwrap();
        let parts = socket.into_parts();
        Self {
            rd: parts.read,
            wr: parts.write,
            framer: RawProto.framer(&FrameLimits::default()),
            buf: BytesMut::new(),
        }
    }

    /// Writes one call (a unit body in MessagePack, or `body`) and flushes.
    async fn call(&mut self, seq: u32, method: &str, body: &[u8]) {
        let mut h = Header::call(seq, method);
        h.timeout = Some(Duration::from_secs(20));
        let mut out = BytesMut::new();
        self.framer
            .encode(&Message::new(h, body.to_vec()), &mut out)
            .unwrap();
        self.wr.write_all(&out).await.unwrap();
        self.wr.flush().await.unwrap();
    }

    /// The next frame, or `None` at the end of the stream.
    async fn next(&mut self) -> Option<Message> {
        loop {
            if let Some(m) = self.framer.decode(&mut self.buf).unwrap() {
                return Some(m);
            }
            let n = within("bytes from the server", self.rd.read_buf(&mut self.buf))
                .await
                .unwrap();
            if n == 0 {
                assert!(self.buf.is_empty(), "the stream ended mid-frame");
                return None;
            }
        }
    }

    /// Every frame until the end of the stream.
    async fn rest(&mut self) -> Vec<Message> {
        let mut all = Vec::new();
        while let Some(m) = self.next().await {
            all.push(m);
        }
        all
    }
}

/// `(seq, status, body)` of the replies among `msgs`.
fn replies(msgs: &[Message]) -> Vec<(u32, i32, Vec<u8>)> {
    let mut r: Vec<_> = msgs
        .iter()
        .filter(|m| m.header.kind == Kind::Reply && m.header.seq != 0)
        .map(|m| (m.header.seq, m.header.status_code, m.body.to_vec()))
        .collect();
    r.sort();
    r
}

const ADD_1_2: &[u8] = &[0x82, 0xa1, b'a', 0x01, 0xa1, b'b', 0x02];
const UNIT: &[u8] = &[0xc0];

/// A server whose `/wait` handler waits on the gate, and a raw peer
/// connected to it.
async fn gated_server(t: &Transport) -> (Endpoint, Gate, RawPeer) {
    let (routes, gate) = gated_router();
    let server = Endpoint::builder()
        .config(t.config.clone())
        .router(routes)
        .build()
        .unwrap();
    let addr = server.listen(t.listen.as_str()).await.unwrap();
    let peer = RawPeer::dial(t, &addr).await;
    (server, gate, peer)
}

/// A peer that sends calls and then ends its stream still gets the replies
/// of the calls already received, after their handlers finish.
pub async fn an_end_of_stream_is_a_graceful_end(t: Transport) {
    init_tracing();
    let (server, mut gate, mut peer) = gated_server(&t).await;
    peer.call(1, "/wait", UNIT).await;
    peer.call(2, "/math/add", ADD_1_2).await;
    within("handler start", gate.started.recv()).await.unwrap();
    // The peer is done sending; the call still running must be answered.
    peer.wr.shutdown().await.unwrap();
    gate.release.send(true).unwrap();
    let got = peer.rest().await;
    assert_eq!(
        replies(&got),
        [(1, 0, vec![7]), (2, 0, vec![3])],
        "{}: {got:?}",
        t.name
    );
    within("server close", server.close()).await;
}

/// A call sent after the endpoint's going-away notice left (the peer had
/// not read it yet) is answered with 102, not left unanswered.
pub async fn a_call_crossing_the_going_away_notice_is_answered_102(t: Transport) {
    init_tracing();
    let (server, mut gate, mut peer) = gated_server(&t).await;
    peer.call(1, "/wait", UNIT).await;
    within("handler start", gate.started.recv()).await.unwrap();
    let closing = tokio::spawn({
        let server = server.clone();
        async move { server.shutdown(Duration::from_secs(20)).await }
    });
    let notice = peer.next().await.unwrap();
    assert_eq!(
        (
            notice.header.kind,
            notice.header.seq,
            notice.header.status_code
        ),
        (Kind::Reply, 0, 102)
    );
    // Sent as if the notice had not arrived yet: it crosses it.
    peer.call(2, "/math/add", ADD_1_2).await;
    let crossing = peer.next().await.unwrap();
    assert_eq!((crossing.header.seq, crossing.header.status_code), (2, 102));
    assert!(
        crossing.header.status_message.contains("not run"),
        "{crossing:?}"
    );
    gate.release.send(true).unwrap();
    peer.wr.shutdown().await.unwrap();
    let got = peer.rest().await;
    assert_eq!(replies(&got), [(1, 0, vec![7])], "{}: {got:?}", t.name);
    within("shutdown", closing).await.unwrap();
}

/// When `shutdown` returns, the transport has finished its close: a
/// process may exit at once (here the server's runtime is dropped the
/// moment it returns) and its peer has every reply and a clean end.
pub async fn shutdown_returns_once_the_transport_has_closed(t: Transport) {
    init_tracing();
    let (addr_tx, mut addr_rx) = mpsc::unbounded_channel();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let config = t.config.clone();
    let listen = t.listen.clone();
    let thread = std::thread::spawn(move || {
        let rt = own_runtime();
        rt.block_on(async move {
            let mut routes = Router::new();
            routes
                .call("/slow_ms", move |_: drpc::CallCtx, ms: u64| {
                    let _ = started_tx.send(());
                    async move {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        Ok::<_, Status>(ms)
                    }
                })
                .unwrap();
            let ep = Endpoint::builder()
                .config(config)
                .router(routes)
                .build()
                .unwrap();
            addr_tx
                .send(ep.listen(listen.as_str()).await.unwrap())
                .unwrap();
            let _ = stop_rx.await;
            ep.shutdown(Duration::from_secs(20)).await;
        });
        // As a process exiting: whatever still runs on this runtime dies.
        rt.shutdown_timeout(Duration::ZERO);
    });
    let addr = within("server up", addr_rx.recv()).await.unwrap();
    let client = Endpoint::builder()
        .config(Config {
            redial: drpc::Redial {
                enabled: false,
                ..Default::default()
            },
            ..t.config.clone()
        })
        .build()
        .unwrap();
    let session = within("dial", client.dial(&addr)).await.unwrap();
    let calls: Vec<_> = (0..5u64)
        .map(|i| {
            let s = session.clone();
            tokio::spawn(async move { s.call::<_, u64>("/slow_ms", &(50 + 10 * i)).await })
        })
        .collect();
    for _ in 0..5 {
        within("handlers start", started.recv()).await.unwrap();
    }
    stop.send(()).unwrap();
    for (i, call) in calls.into_iter().enumerate() {
        let got = within("a reply", call).await.unwrap();
        assert_eq!(
            got.map_err(|e| e.to_string()),
            Ok(50 + 10 * i as u64),
            "{}",
            t.name
        );
    }
    within("the session ends", session.closed()).await;
    let reason = session.close_reason().unwrap();
    assert_eq!(
        reason.code(),
        Code::CONNECTION_CLOSED,
        "{}: {reason}",
        t.name
    );
    assert!(
        reason.message().contains("shutting down"),
        "{}: {reason}",
        t.name
    );
    thread.join().unwrap();
    within("client close", client.close()).await;
}

/// A server whose sessions reach their maximum age every 200 ms renews
/// the connection under steady calls from several callers, and not one
/// call fails: new calls wait for the next connection, and calls that
/// cross the renewal notice are made again there.
pub async fn a_renewed_connection_loses_no_call(t: Transport) {
    let mut server = t.config.clone();
    server.max_session_age = Some(Duration::from_millis(200));
    let mut p = pair_on(
        &t.listen,
        Endpoint::builder().config(server).router(test_router()),
        Endpoint::builder().config(t.config.clone()),
    )
    .await;
    let renewed = tokio::sync::watch::channel(false);
    let callers: Vec<_> = (0..4i64)
        .map(|i| {
            let (s, mut done) = (p.session.clone(), renewed.1.clone());
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0, Vec::new());
                for n in 0..1_000_000i64 {
                    if *done.borrow_and_update() {
                        break;
                    }
                    match s.call::<_, i64>("/math/add", &Add { a: i, b: n }).await {
                        Ok(sum) => {
                            assert_eq!(sum, i + n);
                            ok += 1
                        }
                        Err(e) => failed.push(e),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    // Three renewals: three more connections accepted.
    for _ in 0..3 {
        within("a renewed connection", p.accepts.recv())
            .await
            .unwrap();
    }
    renewed.0.send(true).unwrap();
    for caller in callers {
        let (ok, failed) = within("a caller", caller).await.unwrap();
        assert!(
            failed.is_empty(),
            "{ok} ok, {} failed: {:?}",
            failed.len(),
            failed.first()
        );
        assert!(ok > 0);
    }
    p.close().await;
}
