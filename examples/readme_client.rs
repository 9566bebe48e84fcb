use drpc::{CallOptions, Endpoint, PushCtx, Router};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut router = Router::new();
    router.push("/hello", |_: PushCtx, greeting: String| async move {
        println!("server says: {greeting}");
    })?;
    let endpoint = Endpoint::builder().router(router).build()?;
    let session = endpoint.dial("tcp://127.0.0.1:9090").await?;

    let sum: i64 = session
        .call("/math/add", &serde_json::json!({"a": 1, "b": 2}))
        .await?;
    let reply = session
        .call_with::<_, i64>(
            "/math/add",
            &serde_json::json!({"a": 20, "b": 22}),
            CallOptions::new()
                .timeout(Duration::from_secs(1))
                .meta("trace-id", "t-1"),
        )
        .await?;
    println!("{sum} {} {:?}", reply.value, reply.meta);
    endpoint.close().await;
    Ok(())
}
