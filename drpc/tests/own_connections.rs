//! Connections the application already has: any byte stream becomes a
//! session, served on one end and connected on the other.

mod common;

use common::*;
use drpc::socket::Socket;
use drpc::{Addr, Code, Endpoint, Router};

/// A TCP connection the application opened itself, outside drpc.
async fn tcp_pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let (dialed, accepted) = tokio::join!(tokio::net::TcpStream::connect(at), listener.accept());
    (dialed.unwrap(), accepted.unwrap().0)
}

fn addr(s: &str) -> Addr {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_the_application_has_serves_calls_both_ways() {
    init_tracing();
    let (ours, theirs) = tcp_pair().await;
    let mut client_routes = Router::new();
    let mut notes = forward_pushes(&mut client_routes, "/note");
    let server = Endpoint::builder().router(test_router()).build().unwrap();
    let client = Endpoint::builder().router(client_routes).build().unwrap();

    let served = Socket::from_stream(theirs, addr("tcp://10.0.0.1:1"), addr("tcp://10.0.0.2:2"));
    let connected = Socket::from_stream(ours, addr("tcp://10.0.0.2:2"), addr("tcp://10.0.0.1:1"));
    let (session, accepted) = within("both ends", async {
        tokio::try_join!(client.connect(connected), server.serve(served))
    })
    .await
    .unwrap();
    assert!(session.is_dialed() && !accepted.is_dialed());
    assert_eq!(session.peer_addr(), addr("tcp://10.0.0.1:1"));

    let sum: i64 = session
        .call("/math/add", &Add { a: 2, b: 40 })
        .await
        .unwrap();
    assert_eq!(sum, 42);
    accepted.push("/note", "from the server").await.unwrap();
    let (_, body) = within("push", notes.recv()).await.unwrap();
    assert_eq!(body, "from the server");

    // With no address to dial again, the connected end does not redial:
    // when the server closes, the session ends.
    within("server close", server.close()).await;
    within("client session ends", session.closed()).await;
    let err = session
        .call::<_, i64>("/math/add", &Add { a: 1, b: 1 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::CONNECTION_CLOSED, "{err}");
    within("client close", client.close()).await;
}
