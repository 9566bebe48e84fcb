use drpc::{ItemSink, Items, Status};

#[drpc::service]
trait AfterTheStream {
    async fn late(&self, out: ItemSink<u32>, n: u32) -> Result<(), Status>;
}

#[drpc::service]
trait SinkFirst {
    async fn swapped(&self, out: ItemSink<u32>, items: Items<u32>) -> Result<(), Status>;
}

#[drpc::service]
trait SinkAnswers {
    async fn answers(&self, out: ItemSink<u32>) -> Result<u32, Status>;
}

#[drpc::service]
trait PushedStream {
    #[drpc(push)]
    async fn pushed(&self, items: Items<u32>);
}

fn main() {}
