//! The proxy over real sockets: client → gateway → upstream, with bodies,
//! codecs, meta and statuses passed back unchanged.

use drpc::{CallCtx, CallOptions, Code, CodecId, Endpoint, PushCtx, Router, Status};
use drpc_plugins::Proxy;
use std::time::Duration;

async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("did not happen in time")
}

#[tokio::test]
async fn unknown_calls_and_pushes_reach_the_upstream_and_answers_come_back_unchanged() {
    // The upstream, which has the real routes.
    let (tx, mut pushed) = tokio::sync::mpsc::unbounded_channel();
    let mut r = Router::new();
    r.call("/math/add", |ctx: CallCtx, (a, b): (i64, i64)| async move {
        let who = ctx.meta().get("who").unwrap_or("nobody").to_string();
        ctx.set_reply_meta("seen-by", "upstream");
        ctx.set_reply_meta("who", &who);
        Ok::<_, Status>(a + b)
    })
    .unwrap();
    r.call("/as_json", |ctx: CallCtx, v: i64| async move {
        ctx.set_reply_codec(CodecId::JSON);
        Ok::<_, Status>(v)
    })
    .unwrap();
    r.call("/fail", |_: CallCtx, _: ()| async move {
        Err::<(), _>(Status::new(Code(1234), "the upstream's own reason"))
    })
    .unwrap();
    r.push("/note", move |ctx: PushCtx, s: String| {
        let tx = tx.clone();
        async move {
            let _ = tx.send((s, ctx.meta().get("k").map(str::to_string)));
        }
    })
    .unwrap();
    let upstream = Endpoint::builder().router(r).build().unwrap();
    let up_addr = upstream.listen("tcp://127.0.0.1:0").await.unwrap();

    // The gateway: one route of its own, everything else forwarded.
    let gateway_client = Endpoint::builder().build().unwrap();
    let up = gateway_client.dial(&up_addr).await.unwrap();
    let mut g = Router::new();
    g.call("/local", |_: CallCtx, _: ()| async move {
        Ok::<_, Status>("gateway")
    })
    .unwrap();
    Proxy::new(up).install(&mut g).unwrap();
    let gateway = Endpoint::builder().router(g).build().unwrap();
    let g_addr = gateway.listen("tcp://127.0.0.1:0").await.unwrap();

    let client = Endpoint::builder().build().unwrap();
    let s = client.dial(&g_addr).await.unwrap();
    let here: String = s.call("/local", &()).await.unwrap();
    assert_eq!(here, "gateway");

    let reply = s
        .call_with::<_, i64>("/math/add", &(40, 2), CallOptions::new().meta("who", "me"))
        .await
        .unwrap();
    assert_eq!(reply.value, 42);
    assert_eq!(reply.meta.get("seen-by"), Some("upstream"));
    assert_eq!(
        reply.meta.get("who"),
        Some("me"),
        "call meta reached the upstream"
    );

    // Codecs both ways: a JSON call, and a reply in the codec the upstream chose.
    let reply = s
        .call_with::<_, i64>("/as_json", &7, CallOptions::new().codec(CodecId::JSON))
        .await
        .unwrap();
    assert_eq!((reply.value, reply.codec), (7, CodecId::JSON));

    let err = s.call::<_, ()>("/fail", &()).await.unwrap_err();
    assert_eq!(err.code(), Code(1234));
    assert_eq!(err.message(), "the upstream's own reason");
    let err = s.call::<_, ()>("/nowhere", &()).await.unwrap_err();
    assert_eq!(err.code(), Code::NOT_FOUND, "the upstream's 404, passed on");

    s.push_with("/note", &"hi", drpc::PushOptions::new().meta("k", "v"))
        .await
        .unwrap();
    assert_eq!(
        within(pushed.recv()).await.unwrap(),
        ("hi".to_string(), Some("v".to_string()))
    );

    client.close().await;
    gateway.close().await;
    gateway_client.close().await;
    upstream.close().await;
}

/// JSON under an application's codec id: a codec the proxy does not know.
struct AppJson;

impl drpc::codec::DynCodec for AppJson {
    fn name(&self) -> &str {
        "app-json"
    }

    fn encode(
        &self,
        value: &dyn drpc::codec::erased_serde::Serialize,
        out: &mut dyn std::io::Write,
    ) -> Result<(), drpc::codec::CodecError> {
        serde_json::to_writer(out, value).map_err(|e| drpc::codec::CodecError::new("app-json", e))
    }

    fn decode<'de>(
        &self,
        bytes: &'de [u8],
        visit: drpc::codec::ErasedDecode<'_, 'de>,
    ) -> Result<(), drpc::codec::CodecError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        visit(&mut <dyn drpc::codec::erased_serde::Deserializer>::erase(
            &mut de,
        ))
        .map_err(|e| drpc::codec::CodecError::new("app-json", e))
    }
}

#[tokio::test]
async fn a_codec_only_the_ends_know_passes_through_the_proxy() {
    let app = CodecId::custom(200).unwrap();
    let knowing = || {
        let mut codecs = drpc::codec::Codecs::new();
        codecs.register(app, AppJson).unwrap();
        drpc::Config {
            codecs,
            ..drpc::Config::default()
        }
    };
    let mut r = Router::new();
    r.call("/math/add", |_: CallCtx, (a, b): (i64, i64)| async move {
        Ok::<_, Status>(a + b)
    })
    .unwrap();
    let upstream = Endpoint::builder()
        .config(knowing())
        .router(r)
        .build()
        .unwrap();
    let up_addr = upstream.listen("tcp://127.0.0.1:0").await.unwrap();

    // The proxy registers no codec of its own.
    let proxy_client = Endpoint::builder().build().unwrap();
    let up = proxy_client.dial(&up_addr).await.unwrap();
    let mut g = Router::new();
    Proxy::new(up).install(&mut g).unwrap();
    let proxy = Endpoint::builder().router(g).build().unwrap();
    let p_addr = proxy.listen("tcp://127.0.0.1:0").await.unwrap();

    let client = Endpoint::builder().config(knowing()).build().unwrap();
    let s = client.dial(&p_addr).await.unwrap();
    let reply = within(s.call_with::<_, i64>("/math/add", &(40, 2), CallOptions::new().codec(app)))
        .await
        .unwrap();
    assert_eq!((reply.value, reply.codec), (42, app));

    client.close().await;
    proxy.close().await;
    proxy_client.close().await;
    upstream.close().await;
}

/// Signals when dropped: a handler's future was dropped.
struct DropSignal(tokio::sync::mpsc::UnboundedSender<()>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// A caller that gives up on a call through the proxy stops the
/// upstream's handler: the cancel is passed on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_is_passed_on_to_the_upstream() {
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let (dropped_tx, mut dropped) = tokio::sync::mpsc::unbounded_channel();
    let mut r = Router::new();
    r.call("/hang", move |_: CallCtx, _: ()| {
        let guard = DropSignal(dropped_tx.clone());
        let _ = started_tx.send(());
        async move {
            let _guard = guard;
            std::future::pending::<()>().await;
            Ok::<_, Status>(())
        }
    })
    .unwrap();
    let upstream = Endpoint::builder().router(r).build().unwrap();
    let up_addr = upstream.listen("tcp://127.0.0.1:0").await.unwrap();
    let gateway_client = Endpoint::builder().build().unwrap();
    let up = gateway_client.dial(&up_addr).await.unwrap();
    let mut g = Router::new();
    Proxy::new(up).install(&mut g).unwrap();
    let gateway = Endpoint::builder().router(g).build().unwrap();
    let g_addr = gateway.listen("tcp://127.0.0.1:0").await.unwrap();
    let client = Endpoint::builder().build().unwrap();
    let s = client.dial(&g_addr).await.unwrap();
    let call = tokio::spawn(async move { s.call::<_, ()>("/hang", &()).await });
    within(started.recv()).await.unwrap();
    call.abort();
    within(dropped.recv()).await.unwrap();
    within(async {
        while gateway.calls_running() > 0 || upstream.calls_running() > 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    client.close().await;
    gateway.close().await;
    gateway_client.close().await;
    upstream.close().await;
}
