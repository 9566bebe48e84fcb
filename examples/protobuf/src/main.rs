//! `cargo run -p drpc-example-protobuf`: a server and a client over TCP,
//! speaking protobuf bodies generated from `proto/math.proto`.

use drpc::codec::Protobuf;
use drpc::{CodecId, Endpoint, Router};
use drpc_example_protobuf::pb::AddRequest;
use drpc_example_protobuf::{Calculator, MathClient, MathServer};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut router = Router::new();
    router.serve(MathServer::new(Calculator))?;
    let server = Endpoint::builder().router(router).build()?;
    let addr = server.listen("tcp://127.0.0.1:0").await?;

    let client = Endpoint::builder().build()?;
    let math = MathClient::new(client.dial(&addr).await?).with_codec(CodecId::PROTOBUF);
    let reply = math.add(Protobuf(AddRequest { a: 40, b: 2 })).await?;
    println!(
        "/math/add over {addr} in protobuf: 40 + 2 = {}",
        reply.0.sum
    );

    client.close().await;
    server.close().await;
    Ok(())
}
