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
