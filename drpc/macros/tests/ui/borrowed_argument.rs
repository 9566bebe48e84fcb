use drpc::Status;

#[drpc::service]
trait Greeter {
    async fn greet(&self, name: &str) -> Result<String, Status>;
}

fn main() {}
