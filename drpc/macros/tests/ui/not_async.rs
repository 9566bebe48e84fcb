use drpc::Status;

#[drpc::service]
trait Math {
    fn add(&self, a: i64, b: i64) -> Result<i64, Status>;
}

fn main() {}
