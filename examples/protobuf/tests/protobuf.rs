//! The example's service over a real connection: protobuf both ways, and
//! an application error as a status.

use drpc::codec::{prost::Message, Protobuf};
use drpc::{Blob, CallOptions, CodecId, Endpoint, Router};
use drpc_example_protobuf::pb::{AddReply, AddRequest};
use drpc_example_protobuf::{Calculator, MathClient, MathServer};

#[tokio::test]
async fn the_generated_messages_travel_as_protobuf() {
    let mut router = Router::new();
    router.serve(MathServer::new(Calculator)).unwrap();
    let server = Endpoint::builder().router(router).build().unwrap();
    let addr = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let client = Endpoint::builder().build().unwrap();
    let session = client.dial(&addr).await.unwrap();

    let math = MathClient::new(session.clone()).with_codec(CodecId::PROTOBUF);
    let reply = math
        .add(Protobuf(AddRequest { a: 40, b: 2 }))
        .await
        .unwrap();
    assert_eq!(reply.0, AddReply { sum: 42 });
    let err = math
        .add(Protobuf(AddRequest { a: i64::MAX, b: 1 }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), drpc::Code(1000), "{err}");

    // What another protobuf peer sends: the message's bytes, codec 5.
    let raw = AddRequest { a: 3, b: 4 }.encode_to_vec();
    let reply = session
        .call_with::<_, Blob>(
            "/math/add",
            &Blob::from(raw),
            CallOptions::new().codec(CodecId::PROTOBUF),
        )
        .await
        .unwrap();
    assert_eq!(
        AddReply::decode(&reply.value[..]).unwrap(),
        AddReply { sum: 7 }
    );

    client.close().await;
    server.close().await;
}
