use drpc::{CallCtx, PushCtx, Status};

/// Served by the server under `/math`.
#[drpc::service]
pub trait Math {
    async fn add(&self, ctx: &CallCtx, a: i64, b: i64) -> Result<i64, Status>;
}

/// Served by the client: the server pushes to it under `/notes`.
#[drpc::service]
pub trait Notes {
    #[drpc(push)]
    async fn hello(&self, ctx: &PushCtx, greeting: String);
}
