#[derive(Debug)]
pub struct MyError;

#[drpc::service]
trait Files {
    async fn read(&self, path: String) -> Result<Vec<u8>, MyError>;
}

fn main() {}
