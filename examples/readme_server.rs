use drpc::{CallCtx, Endpoint, Router, Status};
use serde::Deserialize;

#[derive(Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

async fn add(ctx: CallCtx, args: Add) -> Result<i64, Status> {
    // The caller's deadline, meta and session are all on the context.
    ctx.set_reply_meta("served-by", "example");
    Ok(args.a + args.b)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut router = Router::new();
    router.group("/math").call("/add", add)?;
    let endpoint = Endpoint::builder().router(router).build()?;
    endpoint.listen("tcp://127.0.0.1:9090").await?;
    tokio::signal::ctrl_c().await?;
    endpoint.close().await; // graceful: running handlers finish and reply
    Ok(())
}
