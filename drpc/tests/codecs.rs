//! Codecs are a registry on the endpoint: a call in a codec the receiver
//! does not know is answered 400 and the connection goes on; a codec an
//! application registers works both ways; protobuf bodies (id 5) carry
//! prost messages, typed services included.

mod common;

use common::*;
use drpc::codec::{CodecError, Codecs, DynCodec, ErasedDecode, Protobuf};
use drpc::{CallCtx, CallOptions, Code, CodecId, Config, Endpoint, Router, Status};

/// JSON written backwards: a codec no built-in could pass for.
struct Reversed;

impl DynCodec for Reversed {
    fn name(&self) -> &str {
        "reversed-json"
    }

    fn encode(
        &self,
        value: &dyn erased_serde::Serialize,
        out: &mut dyn std::io::Write,
    ) -> Result<(), CodecError> {
        let mut json = serde_json::to_vec(value).map_err(|e| CodecError::new("reversed", e))?;
        json.reverse();
        out.write_all(&json)
            .map_err(|e| CodecError::new("reversed", e))
    }

    fn decode<'de>(
        &self,
        bytes: &'de [u8],
        visit: ErasedDecode<'_, 'de>,
    ) -> Result<(), CodecError> {
        let json: Vec<u8> = bytes.iter().rev().copied().collect();
        let mut de = serde_json::Deserializer::from_reader(json.as_slice());
        visit(&mut <dyn erased_serde::Deserializer>::erase(&mut de))
            .map_err(|e| CodecError::new("reversed", e))
    }
}

const REVERSED: CodecId = match CodecId::custom(200) {
    Some(id) => id,
    None => panic!("200 is an application's id"),
};

fn with_reversed() -> Config {
    let mut codecs = Codecs::new();
    codecs.register(REVERSED, Reversed).unwrap();
    Config {
        codecs,
        ..Config::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_in_an_unknown_codec_is_answered_400_and_the_session_goes_on() {
    // The client knows the codec; the server does not.
    let p = pair_from(
        Endpoint::builder().router(test_router()),
        Endpoint::builder().config(with_reversed()),
    )
    .await;
    let err = p
        .session
        .call_with::<_, i64>(
            "/math/add",
            &Add { a: 1, b: 2 },
            CallOptions::new().codec(REVERSED),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::BAD_MESSAGE, "{err}");
    assert!(
        err.message().contains("codec 200 is not known here")
            && err.message().contains("msgpack (1)"),
        "{err}"
    );
    // Same session, a codec both know.
    let sum: i64 = p
        .session
        .call("/math/add", &Add { a: 1, b: 2 })
        .await
        .unwrap();
    assert_eq!(sum, 3);
    assert_eq!(p.server.session_count(), 1);
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_peer_sending_an_unknown_codec_gets_400_not_a_closed_connection() {
    use drpc::proto::{FrameLimits, Header, Message, Proto, RawProto};
    use tokio::io::AsyncWriteExt;
    let server = Endpoint::builder().router(test_router()).build().unwrap();
    let addr = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let mut raw = tokio::net::TcpStream::connect(addr.target()).await.unwrap();
    let mut framer = RawProto.framer(&FrameLimits::default());
    let mut out = bytes::BytesMut::new();
    for (seq, codec) in [(1, 77u8), (2, CodecId::JSON.as_u8())] {
        let mut h = Header::call(seq, "/echo");
        h.codec = CodecId::from_u8(codec).unwrap();
        framer
            .encode(&Message::new(h, &b"[1]"[..]), &mut out)
            .unwrap();
    }
    raw.write_all(&out).await.unwrap();
    let first = read_frame(&mut raw).await;
    assert_eq!((first.header.seq, first.header.status_code), (1, 400));
    assert!(
        first.header.status_message.contains("codec 77"),
        "{first:?}"
    );
    let second = read_frame(&mut raw).await;
    assert_eq!((second.header.seq, second.header.status_code), (2, 0));
    assert_eq!(&second.body[..], b"[1]");
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_codec_carries_calls_and_replies_both_ways() {
    let mut client_routes = Router::new();
    client_routes
        .call("/shout", |ctx: CallCtx, s: String| async move {
            assert_eq!(ctx.codec(), REVERSED);
            Ok::<_, Status>(s.to_uppercase())
        })
        .unwrap();
    let p = pair_with(test_router(), client_routes, with_reversed()).await;
    let opts = || CallOptions::new().codec(REVERSED);
    let reply = p
        .session
        .call_with::<_, i64>("/math/add", &Add { a: 20, b: 22 }, opts())
        .await
        .unwrap();
    assert_eq!(reply.value, 42);
    let reply = p
        .accepted
        .call_with::<_, String>("/shout", "hi", opts())
        .await
        .unwrap();
    assert_eq!(reply.value, "HI");
    p.close().await;
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AddRequest {
    #[prost(int64, tag = "1")]
    pub a: i64,
    #[prost(int64, tag = "2")]
    pub b: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AddReply {
    #[prost(int64, tag = "1")]
    pub sum: i64,
}

#[drpc::service(prefix = "/pb")]
pub trait Adder {
    async fn add(&self, req: Protobuf<AddRequest>) -> Result<Protobuf<AddReply>, Status>;
}

#[derive(Clone)]
struct Sum;

impl Adder for Sum {
    async fn add(&self, req: Protobuf<AddRequest>) -> Result<Protobuf<AddReply>, Status> {
        Ok(Protobuf(AddReply {
            sum: req.0.a + req.0.b,
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_bodies_are_the_messages_bytes_and_typed_services_use_them() {
    let mut routes = test_router();
    routes.serve(AdderServer::new(Sum)).unwrap();
    let p = pair_with(routes, Router::new(), Config::default()).await;

    let adder = AdderClient::new(p.session.clone()).with_codec(CodecId::PROTOBUF);
    let reply = adder
        .add(Protobuf(AddRequest { a: 40, b: 2 }))
        .await
        .unwrap();
    assert_eq!(reply.0.sum, 42);

    // On the wire the body is the protobuf encoding itself: the echo route
    // hands back the same bytes, which prost reads.
    let body = bytes::Bytes::from_static(&[0x08, 0x07, 0x10, 0x05]);
    let echoed = p
        .session
        .call_with::<_, serde_bytes::ByteBuf>(
            "/echo_bytes",
            &serde_bytes::Bytes::new(&body),
            CallOptions::new().codec(CodecId::PROTOBUF),
        )
        .await
        .unwrap();
    let back: Protobuf<AddRequest> = CodecId::PROTOBUF.decode(&echoed.value).unwrap();
    assert_eq!(back.0, AddRequest { a: 7, b: 5 });

    // A value that is not one message is a clear error at the caller.
    let err = p
        .session
        .call_with::<_, i64>(
            "/math/add",
            &Add { a: 1, b: 2 },
            CallOptions::new().codec(CodecId::PROTOBUF),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::BAD_MESSAGE, "{err}");
    assert!(
        err.message().contains("a protobuf body is one message"),
        "{err}"
    );
    p.close().await;
}
