use drpc::Status;

#[drpc::service]
trait Chat {
    async fn history(&self) -> Vec<String>;
    #[drpc(push)]
    async fn say(&self, text: String) -> Result<(), Status>;
}

fn main() {}
