//! IgnoreCase over a real socket.

use drpc::{CallCtx, Code, Endpoint, PushCtx, Router, Status};
use drpc_plugins::IgnoreCase;
use std::time::Duration;

async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("did not happen in time")
}

fn routes(notes: tokio::sync::mpsc::UnboundedSender<String>) -> Router {
    let mut r = Router::new();
    r.call("/math/add", |ctx: CallCtx, (a, b): (i64, i64)| async move {
        // The handler sees the route's own spelling.
        assert_eq!(ctx.service_method(), "/math/add");
        Ok::<_, Status>(a + b)
    })
    .unwrap();
    r.call("/Greet/Hello", |_: CallCtx, name: String| async move {
        Ok::<_, Status>(format!("hello {name}"))
    })
    .unwrap();
    r.push("/note", move |ctx: PushCtx, s: String| {
        let notes = notes.clone();
        async move {
            let _ = notes.send(format!("{} {s}", ctx.service_method()));
        }
    })
    .unwrap();
    r
}

#[tokio::test]
async fn any_case_reaches_the_route() {
    let (tx, mut notes) = tokio::sync::mpsc::unbounded_channel();
    let server = Endpoint::builder()
        .router(routes(tx))
        .plugin(IgnoreCase::default())
        .build()
        .unwrap();
    let addr = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let client = Endpoint::builder().build().unwrap();
    let s = client.dial(&addr).await.unwrap();

    for method in ["/math/add", "/MATH/ADD", "/Math/Add"] {
        let sum: i64 = s.call(method, &(40, 2)).await.unwrap();
        assert_eq!(sum, 42, "{method}");
    }
    let hi: String = s.call("/greet/hello", &"you").await.unwrap();
    assert_eq!(hi, "hello you");
    s.push("/NOTE", &"hi").await.unwrap();
    assert_eq!(within(notes.recv()).await.unwrap(), "/note hi");
    let err = s.call::<_, i64>("/math/sub", &(1, 1)).await.unwrap_err();
    assert_eq!(err.code(), Code::NOT_FOUND);
    client.close().await;
    server.close().await;
}

#[tokio::test]
async fn without_it_case_matters() {
    let (tx, _notes) = tokio::sync::mpsc::unbounded_channel();
    let server = Endpoint::builder().router(routes(tx)).build().unwrap();
    let addr = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let client = Endpoint::builder().build().unwrap();
    let s = client.dial(&addr).await.unwrap();
    let err = s.call::<_, i64>("/MATH/ADD", &(1, 1)).await.unwrap_err();
    assert_eq!(err.code(), Code::NOT_FOUND);
    client.close().await;
    server.close().await;
}

#[test]
fn routes_that_differ_only_in_case_are_refused() {
    let mut r = Router::new();
    r.call("/a", |_: CallCtx, _: ()| async { Ok::<_, Status>(()) })
        .unwrap();
    r.call("/A", |_: CallCtx, _: ()| async { Ok::<_, Status>(()) })
        .unwrap();
    let err = Endpoint::builder()
        .router(r)
        .plugin(IgnoreCase::default())
        .build()
        .unwrap_err();
    assert!(err.message().contains("differ only in case"), "{err}");
}
