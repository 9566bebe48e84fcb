//! QUIC beyond the conformance suite: the settings that shape its streams.

mod common;

use common::*;
use drpc::socket::quic::StreamMode;
use drpc::Router;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_limit_above_the_default_raises_the_batch_limit() {
    // 12 MiB does not fit the default 8 MiB + 64 KiB batch limit; the
    // endpoint raises it to its own frame limit plus a write batch.
    let t = Transport::named("quic").with(|c| c.max_frame_len = 16 * 1024 * 1024);
    let p = t.pair(test_router(), Router::new()).await;
    let body = serde_bytes::ByteBuf::from(vec![5u8; 12 * 1024 * 1024]);
    let back: serde_bytes::ByteBuf = within("12 MiB echo", p.session.call("/echo_bytes", &body))
        .await
        .unwrap();
    assert!(back == body);
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_side_picks_its_own_stream_mode() {
    // The client sends on one stream, the server a stream per batch; each
    // reads whatever the other sends.
    let certs = make_certs();
    let server = tls_config(&certs);
    let mut client = tls_config(&certs);
    client.transport.quic.streams = StreamMode::Single;
    let p = pair_on(
        "quic://127.0.0.1:0",
        drpc::Endpoint::builder()
            .config(server)
            .router(test_router()),
        drpc::Endpoint::builder()
            .config(client)
            .router(test_router()),
    )
    .await;
    for _ in 0..3 {
        let a: i64 = p
            .session
            .call("/math/add", &Add { a: 1, b: 2 })
            .await
            .unwrap();
        let b: i64 = p
            .accepted
            .call("/math/add", &Add { a: 3, b: 4 })
            .await
            .unwrap();
        assert_eq!((a, b), (3, 7));
    }
    p.close().await;
}

/// A QUIC server on a runtime of its own, which the test can kill (drop
/// without closing, as a crashed process) or freeze (stop its runtime).
struct Server {
    addr: drpc::Addr,
    orders: std::sync::mpsc::Sender<(Order, tokio::sync::oneshot::Sender<()>)>,
    thaw: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

#[derive(PartialEq)]
enum Order {
    Kill,
    Freeze,
}

impl Server {
    async fn start(config: drpc::Config, listen: String) -> Self {
        let (addr_tx, mut addr_rx) = tokio::sync::mpsc::unbounded_channel();
        let (orders, inbox) =
            std::sync::mpsc::channel::<(Order, tokio::sync::oneshot::Sender<()>)>();
        let (thaw, thawed) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = own_runtime();
            let ep = rt.block_on(async {
                let ep = drpc::Endpoint::builder()
                    .config(config)
                    .router(test_router())
                    .build()
                    .unwrap();
                addr_tx
                    .send(ep.listen(listen.as_str()).await.unwrap())
                    .unwrap();
                ep
            });
            // Serve until told: the runtime turns only inside this block_on.
            let (order, done) = rt.block_on(async {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    if let Ok(order) = inbox.try_recv() {
                        return order;
                    }
                }
            });
            if order == Order::Freeze {
                // The runtime no longer turns: the endpoint hears and says
                // nothing until thawed.
                let _ = done.send(());
                let _ = thawed.recv();
                drop(ep);
                rt.shutdown_timeout(std::time::Duration::ZERO);
            } else {
                // Everything of the endpoint dies with the runtime: no
                // close, no end marker, as when a process is killed.
                rt.shutdown_timeout(std::time::Duration::ZERO);
                let _ = done.send(());
            }
        });
        let addr = within("server up", addr_rx.recv()).await.unwrap();
        Self {
            addr,
            orders,
            thaw,
            thread,
        }
    }

    /// Gives the order and returns once it has taken effect.
    async fn order(&self, order: Order) {
        let (done, taken) = tokio::sync::oneshot::channel();
        self.orders.send((order, done)).unwrap();
        within("the order takes effect", taken).await.unwrap();
    }

    async fn kill(self) {
        self.order(Order::Kill).await;
        self.thread.join().unwrap();
    }

    async fn freeze(&self) {
        self.order(Order::Freeze).await;
    }

    fn thaw_and_end(self) {
        self.thaw.send(()).unwrap();
        self.thread.join().unwrap();
    }
}

fn no_redial(mut config: drpc::Config) -> drpc::Config {
    config.redial.enabled = false;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_resets_its_old_connections_at_once() {
    // The same certificate and key: the same stateless-reset secret.
    let config = tls_config(&make_certs());
    let first = Server::start(config.clone(), "quic://127.0.0.1:0".into()).await;
    let client = drpc::Endpoint::builder()
        .config(no_redial(config.clone()))
        .build()
        .unwrap();
    let session = within("dial", client.dial(&first.addr)).await.unwrap();
    let sum: i64 = session
        .call("/math/add", &Add { a: 1, b: 2 })
        .await
        .unwrap();
    assert_eq!(sum, 3);

    let addr = first.addr.clone();
    first.kill().await;
    let second = Server::start(config, addr.to_string()).await;
    // The old connection's next packets reach the new process, which does
    // not know them and answers with a stateless reset: the call fails at
    // once with the connection, long before its 20 s deadline (or QUIC's
    // 30 s idle timeout).
    let err = call_with_a_long_deadline(&session).await;
    assert_eq!(err.code(), drpc::Code::CONNECTION_CLOSED, "{err}");
    within("the session ends", session.closed()).await;
    // And a new dial reaches the new server.
    let fresh = within("dial again", client.dial(&addr)).await.unwrap();
    let sum: i64 = fresh.call("/math/add", &Add { a: 2, b: 2 }).await.unwrap();
    assert_eq!(sum, 4);
    client.close().await;
    second.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_peer_is_noticed_within_the_idle_timeout() {
    let mut config = tls_config(&make_certs());
    config.transport.quic.idle_timeout = std::time::Duration::from_secs(2);
    config.transport.quic.keep_alive = Some(std::time::Duration::from_millis(1500));
    config.close_grace = std::time::Duration::from_millis(200);
    let server = Server::start(config.clone(), "quic://127.0.0.1:0".into()).await;
    let client = drpc::Endpoint::builder()
        .config(no_redial(config))
        .build()
        .unwrap();
    let session = within("dial", client.dial(&server.addr)).await.unwrap();
    let _: i64 = session
        .call("/math/add", &Add { a: 1, b: 2 })
        .await
        .unwrap();
    server.freeze().await;
    let err = call_with_a_long_deadline(&session).await;
    // The connection died of its 2 s idle timeout, not the call of its 20 s
    // deadline.
    assert_eq!(err.code(), drpc::Code::CONNECTION_CLOSED, "{err}");
    within("the session ends", session.closed()).await;
    client.close().await;
    server.thaw_and_end();
}

/// A call with a 20 s deadline, which the test expects to fail long before
/// it, with the connection.
async fn call_with_a_long_deadline(session: &drpc::Session) -> drpc::Status {
    session
        .call_with::<_, i64>(
            "/math/add",
            &Add { a: 1, b: 1 },
            drpc::CallOptions::new().timeout(std::time::Duration::from_secs(20)),
        )
        .await
        .unwrap_err()
}
