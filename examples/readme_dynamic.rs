use drpc::{CallOptions, Endpoint};
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = Endpoint::builder().build()?;
    let session = endpoint.dial("tcp://127.0.0.1:9090").await?;
    // The route and the argument are values: what a proxy or a tool has.
    let sum: i64 = session
        .call("/math/add", &serde_json::json!({"a": 1, "b": 2}))
        .await?;
    let reply = session
        .call_with::<_, i64>(
            "/math/add",
            &serde_json::json!({"a": 20, "b": 22}),
            CallOptions::new().timeout(Duration::from_secs(1)),
        )
        .await?;
    println!("{sum} {} {:?}", reply.value, reply.meta);
    endpoint.close().await;
    Ok(())
}
