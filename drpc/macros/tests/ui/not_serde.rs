use drpc::Status;

struct Matrix {
    cells: Vec<f64>,
}

#[drpc::service]
trait Linear {
    async fn det(&self, m: Matrix) -> Result<f64, Status>;
}

fn main() {}
