use drpc::Status;

#[drpc::service]
trait Accounts {
    async fn new(&self, owner: String) -> Result<u64, Status>;
    async fn clone(&self) -> Result<u64, Status>;
}

fn main() {}
