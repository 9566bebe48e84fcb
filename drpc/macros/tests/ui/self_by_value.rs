use drpc::Status;

#[drpc::service]
trait Counter {
    async fn take(self) -> Result<u64, Status>;
    async fn bump(&mut self) -> Result<u64, Status>;
}

fn main() {}
