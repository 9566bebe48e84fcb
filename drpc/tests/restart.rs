//! Restarts, from the inside of one process: a listener takes the socket
//! its address was handed, a successor that fails leaves the process
//! serving, and one that reports ready takes the address over while the
//! endpoint shuts down with the `restart` notice. (The whole thing, five
//! restarts of a real server under load, is `examples/tests/restart.rs`.)

mod common;

use common::*;
use drpc::restart::Restart;
use drpc::socket::Inherited;
use drpc::{Config, Endpoint};
use std::os::fd::OwnedFd;
use std::time::Duration;

async fn serves(ep: &Endpoint, addr: &str) {
    let client = Endpoint::builder().config(no_redial()).build().unwrap();
    let session = within("dial", client.dial(addr)).await.unwrap();
    let echoed: i64 = within("a call", session.call("/echo", &5)).await.unwrap();
    assert_eq!(echoed, 5);
    client.close().await;
    assert!(!ep.is_closed());
}

fn server(config: Config) -> Endpoint {
    Endpoint::builder()
        .config(config)
        .router(test_router())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_take_the_sockets_inherited_for_their_addresses() {
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    let path = unix_path("inherited");
    let unix = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let inherited = Inherited::new([OwnedFd::from(tcp), OwnedFd::from(unix)]).unwrap();
    // Served for good (as `Restart::ready` says): the socket file goes
    // with the last listener.
    inherited.confirm();
    let mut config = Config::default();
    config.transport.inherited = inherited.clone();
    let ep = server(config);
    // Both addresses are still bound (by the inherited sockets): binding
    // them anew would fail.
    let tcp_addr = format!("tcp://127.0.0.1:{port}");
    let unix_addr = format!("unix://{path}");
    ep.listen(tcp_addr.as_str()).await.unwrap();
    ep.listen(unix_addr.as_str()).await.unwrap();
    assert!(inherited.remaining().is_empty());
    serves(&ep, &tcp_addr).await;
    serves(&ep, &unix_addr).await;
    ep.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_process_that_never_got_ready_leaves_the_unix_socket_file_alone() {
    // The process that handed the socket over serves the file until this
    // one is ready (`Inherited::confirm`); failing before, it must not
    // remove it.
    let path = unix_path("unconfirmed");
    let unix = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let mut config = Config::default();
    config.transport.inherited = Inherited::new([OwnedFd::from(unix)]).unwrap();
    let ep = server(config);
    ep.listen(format!("unix://{path}").as_str()).await.unwrap();
    ep.close().await;
    assert!(std::path::Path::new(&path).exists());
    let _ = std::fs::remove_file(&path);
}

/// An endpoint listening on TCP, and a restart of it that runs `program`.
async fn restartable(program: &str, args: &[&str]) -> (Endpoint, String, Restart) {
    let restart = Restart::from_env().unwrap();
    assert!(!restart.is_successor());
    let mut config = Config::default();
    restart.apply(&mut config);
    let ep = server(config);
    let addr = ep.listen("tcp://127.0.0.1:0").await.unwrap().to_string();
    restart.serve(&ep);
    restart.set_program(program, args);
    (ep, addr, restart)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_that_ends_before_it_is_ready_leaves_the_process_serving() {
    let (ep, addr, restart) = restartable("/bin/sh", &["-c", "exit 3"]).await;
    let err = restart.restart().await.unwrap_err();
    assert!(
        err.to_string().contains("ended before it was ready") && err.to_string().contains('3'),
        "{err}"
    );
    serves(&ep, &addr).await;
    // A program that does not exist fails as clearly.
    restart.set_program("/nonexistent/server", Vec::<String>::new());
    let err = restart.restart().await.unwrap_err();
    assert!(
        err.to_string().contains("cannot start the new process"),
        "{err}"
    );
    serves(&ep, &addr).await;
    ep.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_not_ready_in_time_is_stopped() {
    let (ep, addr, restart) = restartable("/bin/sleep", &["60"]).await;
    restart.set_ready_timeout(Duration::from_millis(300));
    let err = restart.restart().await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    assert!(err.to_string().contains("was stopped"), "{err}");
    serves(&ep, &addr).await;
    ep.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_cannot_be_handed_on_stops_the_restart_before_it_starts() {
    let restart = Restart::from_env().unwrap();
    let mut config = Transport::named("pipe").config;
    restart.apply(&mut config);
    let ep = server(config);
    ep.listen(format!("pipe://{}", unix_path("restart")).as_str())
        .await
        .unwrap();
    restart.serve(&ep);
    restart.set_program("/bin/sh", ["-c", "exit 0"]);
    let err = restart.restart().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot be handed to another process"),
        "{err}"
    );
    ep.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_successor_takes_the_address_and_peers_hear_restart() {
    // The successor: reports ready on descriptor 4 (after its one
    // listening socket, 3), then holds the socket for a while.
    let (ep, addr, restart) = restartable(
        "/bin/sh",
        &[
            "-c",
            "test \"$DRPC_LISTEN_FDS\" = 1 && printf 1 >&4 && exec sleep 30",
        ],
    )
    .await;
    let port = addr.rsplit(':').next().unwrap().to_string();
    let mut raw = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let pid = within("the restart", restart.restart()).await.unwrap();
    let notice = read_frame(&mut raw).await;
    assert_eq!((notice.header.seq, notice.header.status_code), (0, 102));
    assert_eq!(notice.header.meta.get("reason"), Some("restart"));
    within("the old endpoint's close", ep.closed()).await;
    // The address still accepts: the successor holds its socket.
    tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .expect("the address accepts after the restart");
    let killed = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status();
    assert!(killed.unwrap().success());
}
