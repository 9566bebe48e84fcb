//! Typed services with streaming methods: a method that takes
//! `ItemSink<T>` is a server stream, one that takes `Items<T>` a client
//! stream, one that takes both a bidirectional stream; the generated
//! client opens each, on the same wire as the string API.

mod common;

use common::*;
use drpc::{CallCtx, CallOptions, Code, ItemSink, Items, Status};

/// Numbers, streamed.
#[drpc::service]
pub trait Numbers {
    /// Sends `from..to`, and says how many in the trailers.
    async fn range(
        &self,
        ctx: &CallCtx,
        from: u32,
        to: u32,
        out: ItemSink<u32>,
    ) -> Result<(), Status>;
    /// Adds the caller's numbers to `start`.
    async fn sum(&self, start: u64, items: Items<u64>) -> Result<u64, Status>;
    /// Sends back each number times `factor`.
    async fn scale(&self, factor: i64, items: Items<i64>, out: ItemSink<i64>)
        -> Result<(), Status>;
    /// No argument: a stream of greetings.
    async fn hellos(&self, out: ItemSink<String>) -> Result<(), Status>;
}

struct Impl;

impl Numbers for Impl {
    async fn range(
        &self,
        ctx: &CallCtx,
        from: u32,
        to: u32,
        mut out: ItemSink<u32>,
    ) -> Result<(), Status> {
        for n in from..to {
            out.send(&n).await?;
        }
        ctx.set_reply_meta("sent", &(to - from).to_string());
        Ok(())
    }

    async fn sum(&self, start: u64, mut items: Items<u64>) -> Result<u64, Status> {
        let mut sum = start;
        while let Some(n) = items.next().await {
            sum += n?;
        }
        Ok(sum)
    }

    async fn scale(
        &self,
        factor: i64,
        mut items: Items<i64>,
        mut out: ItemSink<i64>,
    ) -> Result<(), Status> {
        while let Some(n) = items.next().await {
            out.send(&(n? * factor)).await?;
        }
        Ok(())
    }

    async fn hellos(&self, mut out: ItemSink<String>) -> Result<(), Status> {
        for who in ["ann", "bob"] {
            out.send(&format!("hello {who}")).await?;
        }
        Ok(())
    }
}

async fn served() -> Pair {
    let mut router = test_router();
    router.serve(NumbersServer::new(Impl)).unwrap();
    pair_with(router, drpc::Router::new(), drpc::Config::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_streams_go_each_way() {
    let p = served().await;
    let numbers = NumbersClient::new(p.session.clone());
    // Server stream, several arguments.
    let mut range = numbers.range(3, 7).await.unwrap();
    let mut got = Vec::new();
    while let Some(n) = within("an item", range.next()).await {
        got.push(n.unwrap());
    }
    assert_eq!(got, [3, 4, 5, 6]);
    assert_eq!(range.trailers().unwrap().get("sent"), Some("4"));
    // No argument.
    let mut hellos = numbers.hellos().await.unwrap();
    assert_eq!(hellos.next().await.unwrap().unwrap(), "hello ann");
    assert_eq!(hellos.next().await.unwrap().unwrap(), "hello bob");
    assert!(hellos.next().await.is_none());
    // Client stream.
    let (mut sink, answer) = numbers.sum(100).await.unwrap();
    for n in 1..=10 {
        sink.send(&n).await.unwrap();
    }
    sink.end();
    assert_eq!(within("the sum", answer).await.unwrap().value, 155);
    // Bidirectional, in step.
    let (mut sink, mut scaled) = numbers.scale(-2).await.unwrap();
    for n in 1..=5 {
        sink.send(&n).await.unwrap();
        let back = within("a scaled item", scaled.next()).await.unwrap();
        assert_eq!(back.unwrap(), -2 * n);
    }
    sink.end();
    assert!(within("the end", scaled.next()).await.is_none());
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_streams_speak_the_string_apis_bytes() {
    let p = served().await;
    // The typed route answers the string API: several arguments are a map.
    #[derive(serde::Serialize)]
    struct Range {
        from: u32,
        to: u32,
    }
    let mut items = p
        .session
        .stream::<_, u32>(
            "/numbers/range",
            &Range { from: 1, to: 3 },
            CallOptions::new(),
        )
        .await
        .unwrap();
    assert_eq!(items.next().await.unwrap().unwrap(), 1);
    assert_eq!(items.next().await.unwrap().unwrap(), 2);
    assert!(items.next().await.is_none());
    let (mut sink, reply) = p
        .session
        .client_stream::<_, u64, u64>("/numbers/sum", &1u64, CallOptions::new())
        .await
        .unwrap();
    sink.send(&1).await.unwrap();
    sink.end();
    assert_eq!(reply.await.unwrap().value, 2);
    // The wrong kind of stream, and a plain call, are refused.
    let err = p
        .session
        .call::<_, ()>("/numbers/hellos", &())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::BAD_MESSAGE, "{err}");
    let (_sink, reply) = p
        .session
        .client_stream::<_, i64, ()>("/numbers/scale", &2i64, CallOptions::new())
        .await
        .unwrap();
    let err = reply.await.unwrap_err();
    assert_eq!(err.code(), Code::BAD_MESSAGE, "{err}");
    p.close().await;
}
