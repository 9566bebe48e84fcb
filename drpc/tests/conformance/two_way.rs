//! Client and bidirectional streams (docs/PROTOCOL.md section 3.4), on
//! every transport: the caller's items under the callee's credit, their
//! end (well, failed, or dropped), an answer before the end, and a
//! handler that stops reading holding its caller back.

use super::common::*;
use drpc::{CallCtx, CallOptions, Code, ItemSink, Items, Router, Status};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `/sum` adds the caller's items; `/first` answers with the first item
/// and reads no more; `/stall` reads 10 items and then waits to be
/// cancelled; `/echo_items` sends each item back, then its own count.
fn two_way() -> Router {
    let mut r = test_router();
    r.client_stream(
        "/sum",
        |_: CallCtx, start: u64, mut items: Items<u64>| async move {
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
        |_: CallCtx, _: (), mut items: Items<u64>| async move {
            match items.next().await {
                Some(first) => first,
                None => Err(Status::bad_message("no item")),
            }
        },
    )
    .unwrap();
    r.client_stream(
        "/stall",
        |ctx: CallCtx, _: (), mut items: Items<Vec<u8>>| async move {
            for _ in 0..10 {
                items.next().await.transpose()?;
            }
            ctx.cancelled().await;
            Ok::<_, Status>(())
        },
    )
    .unwrap();
    r.bidi_stream(
        "/echo_items",
        |ctx: CallCtx, _: (), mut items: Items<String>, mut out: ItemSink<String>| async move {
            let mut n = 0u64;
            while let Some(item) = items.next().await {
                out.send(&item?).await?;
                n += 1;
            }
            ctx.set_reply_meta("echoed", &n.to_string());
            Ok::<_, Status>(())
        },
    )
    .unwrap();
    r
}

/// A thousand items are summed and answered once; a caller that drops
/// its sink without ending it fails the handler's read with 499; a caller
/// that ends with an error passes it on.
pub async fn a_client_stream_sends_every_item_and_gets_one_answer(t: Transport) {
    let p = t.pair(two_way(), Router::new()).await;
    let (mut sink, reply) = p
        .session
        .client_stream::<_, u64, u64>("/sum", &5u64, CallOptions::new())
        .await
        .unwrap();
    for n in 1..=1000u64 {
        within("a send", sink.send(&n)).await.unwrap();
    }
    sink.end();
    let reply = within("the answer", reply).await.unwrap();
    assert_eq!(reply.value, 5 + 500_500);
    assert_eq!(reply.meta.get("drpc-items"), Some("0"));
    // A sink dropped half way: the handler reads 499 and returns it.
    let (mut sink, reply) = p
        .session
        .client_stream::<_, u64, u64>("/sum", &0u64, CallOptions::new())
        .await
        .unwrap();
    sink.send(&1).await.unwrap();
    drop(sink);
    let err = within("the answer", reply).await.unwrap_err();
    assert_eq!(err.code(), Code::CANCELED, "{err}");
    assert!(err.message().contains("without ending"), "{err}");
    // Failed on purpose, before any credit could have come.
    let (sink, reply) = p
        .session
        .client_stream::<_, u64, u64>("/sum", &0u64, CallOptions::new())
        .await
        .unwrap();
    sink.fail(Status::new(Code(1234), "the source ran dry"));
    let err = within("the answer", reply).await.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code(1234), "the source ran dry")
    );
    p.close().await;
}

/// A handler may answer before the caller ends: the caller's later sends
/// fail, and a client stream to a server stream route is refused.
pub async fn a_client_stream_may_be_answered_before_its_end(t: Transport) {
    let p = t.pair(two_way(), Router::new()).await;
    let (mut sink, reply) = p
        .session
        .client_stream::<_, u64, u64>("/first", &(), CallOptions::new())
        .await
        .unwrap();
    sink.send(&42).await.unwrap();
    assert_eq!(within("the answer", reply).await.unwrap().value, 42);
    let err = within("a send after the answer", sink.send(&43))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::CONNECTION_CLOSED, "{err}");
    // The wrong kind of stream for the route.
    let (_sink, reply) = p
        .session
        .client_stream::<_, u64, u64>("/echo_items", &(), CallOptions::new())
        .await
        .unwrap();
    let err = within("the refusal", reply).await.unwrap_err();
    assert_eq!(err.code(), Code::BAD_MESSAGE, "{err}");
    assert!(err.message().contains("bidi stream"), "{err}");
    p.close().await;
}

/// Both directions at once, in step: each item comes back before the
/// next goes; the caller's end ends the handler's reads, and its reply
/// ends the caller's.
pub async fn a_bidi_stream_runs_both_ways_in_step(t: Transport) {
    let p = t.pair(two_way(), Router::new()).await;
    let (mut sink, mut echoes) = p
        .session
        .bidi_stream::<_, String, String>("/echo_items", &(), CallOptions::new())
        .await
        .unwrap();
    for i in 0..300 {
        let line = format!("line {i}");
        within("a send", sink.send(&line)).await.unwrap();
        let echo = within("its echo", echoes.next()).await.unwrap().unwrap();
        assert_eq!(echo, line);
    }
    sink.end();
    assert!(within("the end", echoes.next()).await.is_none());
    let trailers = echoes.trailers().unwrap();
    assert_eq!(trailers.get("echoed"), Some("300"));
    assert_eq!(trailers.get("drpc-items"), Some("300"));
    p.close().await;
}

/// A handler that stops reading stops its caller's sends within one
/// window (256 items); dropping the reply cancels it, and the caller's
/// sends then fail rather than wait.
pub async fn a_handler_that_stops_reading_holds_its_caller_back(t: Transport) {
    let p = t.pair(two_way(), Router::new()).await;
    let opts = CallOptions::new().timeout(Duration::from_secs(60));
    let (mut sink, reply) = p
        .session
        .client_stream::<_, Vec<u8>, ()>("/stall", &(), opts)
        .await
        .unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let counted = sent.clone();
    let sender = tokio::spawn(async move {
        let chunk = vec![7u8; 1024];
        for _ in 0..1_000_000u64 {
            sink.send(&chunk).await?;
            counted.fetch_add(1, Ordering::SeqCst);
        }
        Ok::<_, Status>(())
    });
    let stalled = until_stalled(&sent, 256).await;
    assert!(stalled <= 10 + 256, "{stalled} items sent for 10 read");
    drop(reply);
    let err = within("the sender to fail", sender)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), Code::CONNECTION_CLOSED, "{err}");
    within("the handler to stop", async {
        while p.server.calls_running() > 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    p.close().await;
}

/// Sixteen bidirectional streams at once, beside calls, on one session:
/// each gets back exactly its own items, in order.
pub async fn many_streams_share_a_session_with_calls_and_pushes(t: Transport) {
    let mut server_routes = two_way();
    let mut server_pushes = forward_pushes(&mut server_routes, "/note");
    let mut client_routes = Router::new();
    let mut client_pushes = forward_pushes(&mut client_routes, "/note");
    let p = t.pair(server_routes, client_routes).await;
    let streams = (0..16).map(|s| {
        let session = p.session.clone();
        async move {
            let (mut sink, mut echoes) = session
                .bidi_stream::<_, String, String>("/echo_items", &(), CallOptions::new())
                .await?;
            let writer = async {
                for i in 0..50 {
                    sink.send(&format!("{s}:{i}")).await?;
                }
                sink.end();
                Ok::<_, Status>(())
            };
            let reader = async {
                let mut got = Vec::new();
                while let Some(echo) = echoes.next().await {
                    got.push(echo?);
                }
                Ok::<_, Status>(got)
            };
            let ((), got) = tokio::try_join!(writer, reader)?;
            Ok::<_, Status>((s, got))
        }
    });
    let calls = (0..50).map(|a| {
        let session = p.session.clone();
        async move { session.call::<_, i64>("/math/add", &Add { a, b: 1 }).await }
    });
    let pushes = (0..50).map(|i| {
        let (up, down) = (p.session.clone(), p.accepted.clone());
        async move {
            up.push("/note", &format!("up {i}")).await?;
            down.push("/note", &format!("down {i}")).await
        }
    });
    let (streamed, summed, pushed) = within(
        "every stream, call and push",
        futures_util::future::join3(
            futures_util::future::join_all(streams),
            futures_util::future::join_all(calls),
            futures_util::future::join_all(pushes),
        ),
    )
    .await;
    assert!(pushed.iter().all(Result::is_ok), "{pushed:?}");
    for (way, pushes) in [("up", &mut server_pushes), ("down", &mut client_pushes)] {
        let mut got = Vec::new();
        for _ in 0..50 {
            got.push(within("a push", pushes.recv()).await.unwrap().1);
        }
        got.sort();
        let mut want: Vec<String> = (0..50).map(|i| format!("{way} {i}")).collect();
        want.sort();
        assert_eq!(got, want);
    }
    for result in streamed {
        let (s, got) = result.unwrap();
        let want: Vec<String> = (0..50).map(|i| format!("{s}:{i}")).collect();
        assert_eq!(got, want, "stream {s}");
    }
    for (a, sum) in summed.into_iter().enumerate() {
        assert_eq!(sum.unwrap(), a as i64 + 1);
    }
    p.close().await;
}
