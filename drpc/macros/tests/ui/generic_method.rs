use drpc::Status;

#[drpc::service]
trait Store {
    async fn put<T: serde::Serialize>(&self, key: String, value: T) -> Result<(), Status>;
}

fn main() {}
