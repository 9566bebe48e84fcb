//! Calls and pushes in both directions, routing, codecs, meta and status.

mod common;

use common::*;
use drpc::{CallCtx, CallOptions, Code, CodecId, Config, PushOptions, Router, Status};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_calls_server_and_server_calls_client() {
    let mut client_routes = Router::new();
    client_routes
        .call("/whoami", |ctx: CallCtx, _: ()| async move {
            Ok::<_, Status>(format!("client, dialed={}", ctx.session().is_dialed()))
        })
        .unwrap();
    let p = pair_with(test_router(), client_routes, Config::default()).await;

    let sum: i64 = within("call", p.session.call("/math/add", &Add { a: 40, b: 2 }))
        .await
        .unwrap();
    assert_eq!(sum, 42);

    let who: String = within("reverse call", p.accepted.call("/whoami", &()))
        .await
        .unwrap();
    assert_eq!(who, "client, dialed=true");
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_flow_both_ways() {
    let mut server_routes = test_router();
    let mut at_server = forward_pushes(&mut server_routes, "/chat/message");
    let mut client_routes = Router::new();
    let mut at_client = forward_pushes(&mut client_routes, "/hello");
    let p = pair_with(server_routes, client_routes, Config::default()).await;

    p.session.push("/chat/message", "hi server").await.unwrap();
    p.accepted.push("/hello", "hi client").await.unwrap();
    assert_eq!(
        within("push to server", at_server.recv()).await.unwrap(),
        ("/chat/message".to_string(), "hi server".to_string())
    );
    assert_eq!(
        within("push to client", at_client.recv()).await.unwrap(),
        ("/hello".to_string(), "hi client".to_string())
    );
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_calls_in_flight_both_directions_at_once() {
    let p = pair_with(test_router(), test_router(), Config::default()).await;
    let mut tasks = Vec::new();
    for i in 0..500i64 {
        let (s, back) = (p.session.clone(), p.accepted.clone());
        tasks.push(tokio::spawn(async move {
            let a: i64 = s.call("/math/add", &Add { a: i, b: 1 }).await.unwrap();
            let b: i64 = back.call("/math/add", &Add { a: i, b: 2 }).await.unwrap();
            assert_eq!((a, b), (i + 1, i + 2));
        }));
    }
    for t in tasks {
        within("call task", t).await.unwrap();
    }
    assert_eq!(p.session.pending_calls(), 0);
    assert_eq!(p.accepted.pending_calls(), 0);
    p.close().await;
}

#[tokio::test]
async fn meta_travels_both_ways() {
    let p = pair().await;
    let reply = p
        .session
        .call_with::<_, Option<String>>(
            "/meta",
            "trace-id",
            CallOptions::new().meta("trace-id", "abc-123"),
        )
        .await
        .unwrap();
    assert_eq!(reply.value.as_deref(), Some("abc-123"));
    assert_eq!(reply.meta.get("seen"), Some("abc-123"));
    p.close().await;
}

#[tokio::test]
async fn every_codec_reaches_the_handler_and_the_reply_uses_it() {
    let p = pair().await;
    for codec in [CodecId::MSGPACK, CodecId::JSON] {
        let reply = p
            .session
            .call_with::<_, serde_json::Value>(
                "/echo",
                &json!({"n": 1, "s": "x"}),
                CallOptions::new().codec(codec),
            )
            .await
            .unwrap();
        assert_eq!(reply.value, json!({"n": 1, "s": "x"}));
        assert_eq!(reply.codec, codec, "a reply uses its request's codec");
    }
    let bytes: Vec<u8> = (0..=255).collect();
    let reply = p
        .session
        .call_with::<_, serde_bytes::ByteBuf>(
            "/echo_bytes",
            &serde_bytes::ByteBuf::from(bytes.clone()),
            CallOptions::new().codec(CodecId::RAW),
        )
        .await
        .unwrap();
    assert_eq!(reply.value.into_vec(), bytes);
    assert_eq!(reply.codec, CodecId::RAW);

    let reply = p
        .session
        .call_with::<_, String>("/echo", "plain", CallOptions::new().codec(CodecId::TEXT))
        .await
        .unwrap();
    assert_eq!(
        (reply.value.as_str(), reply.codec),
        ("plain", CodecId::TEXT)
    );
    p.close().await;
}

#[tokio::test]
async fn a_handler_can_pick_the_reply_codec() {
    let p = pair().await;
    let reply = p
        .session
        .call_with::<_, Vec<i32>>("/as_json", &[1, 2, 3], CallOptions::new())
        .await
        .unwrap();
    assert_eq!(reply.value, [1, 2, 3]);
    assert_eq!(reply.codec, CodecId::JSON);
    p.close().await;
}

#[tokio::test]
async fn unknown_route_is_404_and_bad_body_is_400() {
    let p = pair().await;
    let err = p.session.call::<_, ()>("/nope", &()).await.unwrap_err();
    assert_eq!(err.code(), Code::NOT_FOUND);
    assert!(err.message().contains("/nope"), "{err}");

    let err = p
        .session
        .call::<_, i64>("/math/add", "not a map")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::BAD_MESSAGE);
    assert!(err.message().contains("/math/add"), "{err}");

    // A reply that does not decode into the caller's type is a 400 too.
    let err = p
        .session
        .call::<_, String>("/math/add", &Add { a: 1, b: 1 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::BAD_MESSAGE);
    assert!(p.session.is_healthy());
    p.close().await;
}

#[tokio::test]
async fn a_panicking_handler_is_500_and_the_session_lives_on() {
    let p = pair().await;
    let err = p.session.call::<_, ()>("/panic", &()).await.unwrap_err();
    assert_eq!(err.code(), Code::INTERNAL);
    assert!(err.message().contains("panicked"), "{err}");
    let sum: i64 = p
        .session
        .call("/math/add", &Add { a: 1, b: 2 })
        .await
        .unwrap();
    assert_eq!(sum, 3);
    p.close().await;
}

#[tokio::test]
async fn a_handler_that_panics_before_its_future_is_500_too() {
    let mut routes = Router::new();
    routes
        .call("/check", |_: CallCtx, n: u32| {
            assert!(n < 10, "{n} is too big");
            async move { Ok::<_, Status>(n) }
        })
        .unwrap();
    let p = pair_with(routes, Router::new(), Config::default()).await;
    let err = p
        .session
        .call::<_, u32>("/check", &20u32)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::INTERNAL);
    assert!(err.message().contains("panicked"), "{err}");
    let n: u32 = p.session.call("/check", &1u32).await.unwrap();
    assert_eq!(n, 1, "the session lives on");
    p.close().await;
}

#[tokio::test]
async fn application_status_codes_reach_the_caller() {
    let p = pair().await;
    let err = p.session.call::<_, ()>("/fail", &1042).await.unwrap_err();
    assert_eq!(err, Status::new(Code(1042), "as asked"));
    p.close().await;
}

#[tokio::test]
async fn fallbacks_get_unknown_calls_and_pushes_with_raw_bodies() {
    let mut server_routes = Router::new();
    server_routes
        .call_fallback(|ctx: CallCtx| async move {
            let body: serde_json::Value = ctx.decode()?;
            Ok::<_, Status>(json!({
                "method": ctx.service_method(),
                "body": body,
                "raw_len": ctx.body().len(),
            }))
        })
        .unwrap();
    let (tx, mut pushes) = tokio::sync::mpsc::unbounded_channel();
    server_routes
        .push_fallback(move |ctx: drpc::PushCtx| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((ctx.service_method().to_string(), ctx.decode::<String>()));
            }
        })
        .unwrap();
    let p = pair_with(server_routes, Router::new(), Config::default()).await;

    let reply: serde_json::Value = p
        .session
        .call_with(
            "/any/thing",
            &json!([1]),
            CallOptions::new().codec(CodecId::JSON),
        )
        .await
        .map(|r| r.value)
        .unwrap();
    assert_eq!(
        reply,
        json!({"method": "/any/thing", "body": [1], "raw_len": 3})
    );

    p.session
        .push_with("/unrouted", "hey", PushOptions::new().codec(CodecId::TEXT))
        .await
        .unwrap();
    let (method, body) = within("fallback push", pushes.recv()).await.unwrap();
    assert_eq!(
        (method.as_str(), body.unwrap().as_str()),
        ("/unrouted", "hey")
    );
    p.close().await;
}

#[test]
fn routes_are_checked_at_registration() {
    let mut r = Router::new();
    let h = |_: CallCtx, _: ()| async move { Ok::<_, Status>(()) };
    r.call("/a", h).unwrap();
    assert_eq!(
        r.call("/a", h).unwrap_err(),
        drpc::RouteError::Duplicate("/a".into())
    );
    // Groups join their prefix, and collide with the same full path.
    r.group("/math").call("/add", h).unwrap();
    assert!(r.call("/math/add", h).is_err());
    r.group("/x").group("/y").call("/z", h).unwrap();
    assert!(r.routes().any(|(p, _)| p == "/x/y/z"));
    for bad in ["", "a", "/a/", "/a b", "/a//b"] {
        assert!(
            matches!(r.call(bad, h), Err(drpc::RouteError::InvalidPath { .. })),
            "{bad:?}"
        );
    }
    r.call_fallback(|_: CallCtx| async move { Ok::<_, Status>(()) })
        .unwrap();
    assert!(r
        .call_fallback(|_: CallCtx| async move { Ok::<_, Status>(()) })
        .is_err());
}

#[tokio::test]
async fn an_oversize_argument_fails_with_413_before_sending() {
    let config = Config {
        max_frame_len: 1024,
        ..Config::default()
    };
    let p = pair_with(test_router(), Router::new(), config).await;
    let big = serde_bytes::ByteBuf::from(vec![7u8; 2048]);
    let err = p
        .session
        .call_with::<_, serde_bytes::ByteBuf>(
            "/echo_bytes",
            &big,
            CallOptions::new().codec(CodecId::RAW),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::MESSAGE_TOO_LARGE);
    let err = p.session.push("/x", &big).await.unwrap_err();
    assert_eq!(err.code(), Code::MESSAGE_TOO_LARGE);
    // Nothing was sent, so the session still works.
    let sum: i64 = p
        .session
        .call("/math/add", &Add { a: 1, b: 1 })
        .await
        .unwrap();
    assert_eq!(sum, 2);
    assert_eq!(p.session.pending_calls(), 0);
    p.close().await;
}

#[tokio::test]
async fn large_bodies_cross_intact() {
    let p = pair().await;
    let body: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let back: serde_bytes::ByteBuf = within(
        "4 MiB echo",
        p.session.call_with::<_, serde_bytes::ByteBuf>(
            "/echo_bytes",
            &serde_bytes::ByteBuf::from(body.clone()),
            CallOptions::new()
                .codec(CodecId::RAW)
                .timeout(Duration::from_secs(20)),
        ),
    )
    .await
    .map(|r| r.value)
    .unwrap();
    assert!(back.as_slice() == body.as_slice());
    p.close().await;
}

/// A reply value whose `Serialize` fails, or panics.
struct BadReply {
    panics: bool,
}

impl serde::Serialize for BadReply {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        if self.panics {
            panic!("this reply panics while it is encoded");
        }
        Err(serde::ser::Error::custom("this reply cannot be encoded"))
    }
}

#[tokio::test]
async fn a_reply_that_cannot_be_encoded_or_is_too_large_is_an_error_reply_and_the_session_lives_on()
{
    let mut router = test_router();
    router
        .call("/bad_reply", |_: CallCtx, panics: bool| async move {
            Ok::<_, Status>(BadReply { panics })
        })
        .unwrap()
        .call("/big_reply", |_: CallCtx, n: usize| async move {
            Ok::<_, Status>(serde_bytes::ByteBuf::from(vec![1u8; n]))
        })
        .unwrap();
    let config = Config {
        max_frame_len: 4096,
        ..Config::default()
    };
    let p = pair_with(router, Router::new(), config).await;
    for (panics, says) in [
        (false, "cannot encode the reply of /bad_reply"),
        (true, "panicked"),
    ] {
        let err = p
            .session
            .call::<_, ()>("/bad_reply", &panics)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::INTERNAL);
        assert!(err.message().contains(says), "{err}");
    }
    let err = p
        .session
        .call::<_, serde_bytes::ByteBuf>("/big_reply", &8192usize)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::MESSAGE_TOO_LARGE, "{err}");
    let small: serde_bytes::ByteBuf = p.session.call("/big_reply", &16usize).await.unwrap();
    assert_eq!(small.len(), 16);
    assert!(p.session.is_healthy());
    p.close().await;
}
