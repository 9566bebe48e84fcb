use drpc::Status;

#[drpc::service]
trait Store<T> {
    async fn get(&self, key: String) -> Result<T, Status>;
}

fn main() {}
