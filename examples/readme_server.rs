mod math;

use drpc::{CallCtx, Endpoint, Router, Status};
use math::{Math, MathServer, NotesClient};

struct Calculator;

impl Math for Calculator {
    async fn add(&self, ctx: &CallCtx, a: i64, b: i64) -> Result<i64, Status> {
        // The caller's deadline, meta and session are all on the context;
        // the session can call and push back to whoever called.
        ctx.set_reply_meta("served-by", "example");
        let caller = NotesClient::new(ctx.session().clone());
        caller.hello(format!("adding {a} and {b}")).await?;
        Ok(a + b)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut router = Router::new();
    router.serve(MathServer::new(Calculator))?;
    let endpoint = Endpoint::builder().router(router).build()?;
    endpoint.listen("tcp://127.0.0.1:9090").await?;
    tokio::signal::ctrl_c().await?;
    endpoint.close().await; // graceful: running handlers finish and reply
    Ok(())
}
