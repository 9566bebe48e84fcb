mod math;

use drpc::{Endpoint, PushCtx, Router};
use math::{MathClient, Notes, NotesServer};
use std::time::Duration;

struct Printer;

impl Notes for Printer {
    async fn hello(&self, _: &PushCtx, greeting: String) {
        println!("server says: {greeting}");
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut router = Router::new();
    router.serve(NotesServer::new(Printer))?;
    let endpoint = Endpoint::builder().router(router).build()?;
    let math = MathClient::new(endpoint.dial("tcp://127.0.0.1:9090").await?);

    let sum = math.add(1, 2).await?;
    let traced = math
        .with_timeout(Duration::from_secs(1))
        .with_meta("trace-id", "t-1");
    println!("{sum} {}", traced.add(20, 22).await?);
    endpoint.close().await;
    Ok(())
}
