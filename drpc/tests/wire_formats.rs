//! A wire format per listener and per dial: one endpoint serves its own
//! format on one address and another format on the next.

mod common;

use bytes::BytesMut;
use common::*;
use drpc::proto::{FrameLimits, Framer, Head, Proto, ProtoError, RawProto, WriteBody};
use drpc::{CallOptions, Endpoint};
use std::time::Duration;

/// The raw format with every byte XORed: a format no raw peer can read.
struct Scrambled;

impl Proto for Scrambled {
    fn name(&self) -> &'static str {
        "scrambled"
    }

    fn framer(&self, limits: &FrameLimits) -> Box<dyn Framer> {
        Box::new(ScrambledFramer {
            inner: RawProto.framer(limits),
            plain: BytesMut::new(),
        })
    }
}

struct ScrambledFramer {
    inner: Box<dyn Framer>,
    /// Bytes read and unscrambled, not yet framed.
    plain: BytesMut,
}

const KEY: u8 = 0x5a;

impl Framer for ScrambledFramer {
    fn encode_with(
        &mut self,
        head: &Head<'_>,
        write_body: WriteBody<'_>,
        dst: &mut BytesMut,
    ) -> Result<(), ProtoError> {
        let from = dst.len();
        self.inner.encode_with(head, write_body, dst)?;
        dst[from..].iter_mut().for_each(|b| *b ^= KEY);
        Ok(())
    }

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<drpc::proto::Message>, ProtoError> {
        self.plain.extend(src.split().iter().map(|b| b ^ KEY));
        self.inner.decode(&mut self.plain)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_listener_speaks_its_own_format_and_each_dial_chooses() {
    init_tracing();
    let server = Endpoint::builder().router(test_router()).build().unwrap();
    let raw_addr = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let scrambled_addr = server
        .listen_with("tcp://127.0.0.1:0", Scrambled)
        .await
        .unwrap();
    let client = Endpoint::builder().config(no_redial()).build().unwrap();

    let plain = within("raw dial", client.dial(&raw_addr)).await.unwrap();
    let sum: i64 = plain.call("/math/add", &Add { a: 1, b: 2 }).await.unwrap();
    assert_eq!(sum, 3);

    let scrambled = within(
        "scrambled dial",
        client.dial_with(&scrambled_addr, Scrambled),
    )
    .await
    .unwrap();
    let sum: i64 = scrambled
        .call("/math/add", &Add { a: 40, b: 2 })
        .await
        .unwrap();
    assert_eq!(sum, 42);

    // A raw peer at the scrambled address is not understood: its hello,
    // sent first, may already end the connection before the dial returns;
    // otherwise its call fails. Nothing reaches a handler.
    if let Ok(wrong) = within("wrong dial", client.dial(&scrambled_addr)).await {
        let err = wrong
            .call_with::<_, i64>(
                "/math/add",
                &Add { a: 1, b: 1 },
                CallOptions::new().timeout(Duration::from_secs(5)),
            )
            .await
            .unwrap_err();
        assert_ne!(err.code(), drpc::Code::OK);
    }
    // The other sessions go on.
    let sum: i64 = scrambled
        .call("/math/add", &Add { a: 2, b: 2 })
        .await
        .unwrap();
    assert_eq!(sum, 4);
    within("client close", client.close()).await;
    within("server close", server.close()).await;
}
