use drpc::Status;

#[drpc::service]
trait Math {
    async fn add(&self, a: i64, b: i64) -> Result<i64, Status>;
    #[drpc(name = "add")]
    async fn add_floats(&self, a: f64, b: f64) -> Result<f64, Status>;
}

fn main() {}
