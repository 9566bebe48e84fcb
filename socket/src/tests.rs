use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn exchange(addr: &str) {
    let cfg = TransportConfig::default();
    let mut l = Listener::bind(&addr.parse().unwrap(), &cfg).await.unwrap();
    let client = dial(l.local_addr(), &cfg).await.unwrap();
    let server = l.accept().await.unwrap().finish().await.unwrap();
    let mut cw = client.into_parts().write;
    let mut sr = server.into_parts().read;
    cw.write_all(b"ping").await.unwrap();
    cw.shutdown().await.unwrap();
    let mut got = Vec::new();
    sr.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"ping");
}

#[tokio::test]
async fn tcp_carries_bytes_and_reports_addresses() {
    let cfg = TransportConfig::default();
    let mut l = Listener::bind(&"tcp://127.0.0.1:0".parse().unwrap(), &cfg)
        .await
        .unwrap();
    assert_ne!(l.local_addr().target(), "127.0.0.1:0");
    let client = dial(l.local_addr(), &cfg).await.unwrap();
    let server = l.accept().await.unwrap().finish().await.unwrap();
    assert_eq!(client.peer_addr(), server.local_addr());
    assert_eq!(client.local_addr(), server.peer_addr());
    drop((client, server));
    exchange("tcp://127.0.0.1:0").await;
}

#[cfg(unix)]
#[tokio::test]
async fn unix_carries_bytes_and_removes_its_file() {
    let path = std::env::temp_dir().join(format!("drpc-socket-test-{}.sock", std::process::id()));
    let addr = format!("unix://{}", path.display());
    exchange(&addr).await;
    assert!(!path.exists(), "the listener removes its socket file");
}

#[tokio::test]
async fn dial_failure_names_the_address() {
    // Bound but not listening: the port stays ours (no other test can take
    // it meanwhile) and refuses connections.
    let bound = tokio::net::TcpSocket::new_v4().unwrap();
    bound.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = bound.local_addr().unwrap().port();
    let err = dial(
        &format!("tcp://127.0.0.1:{port}").parse().unwrap(),
        &TransportConfig::default(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("dial tcp://127.0.0.1:{port}")),
        "{err}"
    );
}

#[cfg(not(feature = "quic"))]
#[tokio::test]
async fn transports_left_out_of_the_build_are_unsupported() {
    let err = dial(
        &"quic://127.0.0.1:1".parse().unwrap(),
        &TransportConfig::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, SocketError::Unsupported(s) if s == "quic"));
}

#[cfg(unix)]
#[tokio::test]
async fn unix_listener_replaces_a_stale_file_but_not_a_live_one() {
    let cfg = TransportConfig::default();
    let path = std::env::temp_dir().join(format!("drpc-socket-stale-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    // A socket file with nobody behind it, as a crashed run leaves.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let addr: Addr = format!("unix://{}", path.display()).parse().unwrap();
    let live = Listener::bind(&addr, &cfg)
        .await
        .expect("stale file replaced");

    let err = Listener::bind(&addr, &cfg).await.unwrap_err();
    assert!(
        err.to_string().contains("another listener is serving"),
        "{err}"
    );
    drop(live);
    assert!(!path.exists(), "the listener removes its own file");

    std::fs::write(&path, b"not a socket").unwrap();
    let err = Listener::bind(&addr, &cfg).await.unwrap_err();
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert!(path.exists(), "a regular file is never removed");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn addresses_are_checked() {
    for bad in [
        "127.0.0.1:1",
        "tcp://",
        "tcp://host",
        "tcp://:80",
        "tcp://h:99999",
        "unix://rel",
        "9p://x:1",
        "my_pipe://x",
        "other://",
        "ws://host/drpc",
    ] {
        assert!(bad.parse::<Addr>().is_err(), "{bad}");
    }
    let ws: Addr = "WS://127.0.0.1:80/drpc".parse().unwrap();
    assert_eq!(
        (ws.scheme(), ws.target()),
        (&Scheme::WS, "127.0.0.1:80/drpc")
    );
    // Any scheme parses; whether it dials depends on the config.
    let other: Addr = "my-pipe://anything".parse().unwrap();
    assert_eq!(other.scheme().as_str(), "my-pipe");
    let v6: Addr = "tcp://[::1]:9".parse().unwrap();
    assert_eq!(v6.target(), "[::1]:9");
    let u: Addr = "unix:///tmp/x.sock".parse().unwrap();
    assert_eq!(u.target(), "/tmp/x.sock");
}

#[cfg(feature = "quic")]
mod quic_streams {
    use super::*;
    use crate::tls::{self, TlsConfig};

    fn config() -> TransportConfig {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let mut config = TransportConfig::default();
        config.quic.max_stream_len = 1024;
        config.tls = TlsConfig::default()
            .with_server(
                tls::server_config(cert.pem().as_bytes(), key.serialize_pem().as_bytes(), None)
                    .unwrap(),
            )
            .with_client(tls::client_config(ca.pem().as_bytes(), None).unwrap());
        config
    }

    /// A raw quinn connection to a listener, and the socket it accepted.
    async fn raw_peer(cfg: &TransportConfig) -> (quinn::Connection, Socket, quinn::Endpoint) {
        let mut l = Listener::bind(&"quic://127.0.0.1:0".parse().unwrap(), cfg)
            .await
            .unwrap();
        let tls = (*cfg.tls.client.clone().unwrap()).clone();
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
        let client = quinn::ClientConfig::new(std::sync::Arc::new(crypto));
        let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let target: std::net::SocketAddr = l.local_addr().target().parse().unwrap();
        let (conn, accepted) = tokio::join!(
            async {
                ep.connect_with(client, target, "127.0.0.1")
                    .unwrap()
                    .await
                    .unwrap()
            },
            async { l.accept().await.unwrap().finish().await.unwrap() },
        );
        (conn, accepted, ep)
    }

    async fn read_err(socket: Socket) -> std::io::Error {
        let parts = socket.into_parts();
        let (mut rd, _w) = (parts.read, parts.write);
        let mut buf = Vec::new();
        rd.read_to_end(&mut buf).await.unwrap_err()
    }

    #[tokio::test]
    async fn an_unknown_stream_type_is_a_protocol_error() {
        let cfg = config();
        let (conn, accepted, _ep) = raw_peer(&cfg).await;
        let mut s = conn.open_uni().await.unwrap();
        s.write_all(&[9, 1, 2, 3]).await.unwrap();
        s.finish().unwrap();
        let err = read_err(accepted).await;
        assert!(
            err.to_string().contains("unknown QUIC stream type 9"),
            "{err}"
        );
        // The peer is told: the connection closes with code 1.
        let closed = conn.closed().await;
        assert!(closed.to_string().contains("protocol error"), "{closed}");
    }

    #[tokio::test]
    async fn a_batch_over_the_limit_is_refused() {
        let cfg = config();
        let (conn, accepted, _ep) = raw_peer(&cfg).await;
        let mut s = conn.open_uni().await.unwrap();
        let mut batch = vec![0u8; 4096];
        batch[0] = 0; // a batch stream
        s.write_all(&batch).await.unwrap();
        s.finish().unwrap();
        let err = read_err(accepted).await;
        assert!(err.to_string().contains("longer than 1024 bytes"), "{err}");
    }

    #[tokio::test]
    async fn batches_and_the_end_marker_read_as_one_stream() {
        let cfg = config();
        let (conn, accepted, _ep) = raw_peer(&cfg).await;
        for part in [&b"\x00hello "[..], &b"\x00world"[..]] {
            let mut s = conn.open_uni().await.unwrap();
            s.write_all(part).await.unwrap();
            s.finish().unwrap();
        }
        let s = conn.open_uni().await.unwrap();
        drop(s); // an empty stream: the end marker
        let parts = accepted.into_parts();
        let (mut rd, _w) = (parts.read, parts.write);
        let mut got = Vec::new();
        rd.read_to_end(&mut got).await.unwrap();
        // Two batches in either order, then the end.
        assert!(got == b"hello world" || got == b"worldhello ", "{got:?}");
    }
}

#[tokio::test]
async fn a_scheme_without_a_transport_is_a_clear_error() {
    let cfg = TransportConfig::default();
    let err = crate::dial(&"my-pipe://x".parse().unwrap(), &cfg)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("no transport is registered for \"my-pipe\""),
        "{text}"
    );
    assert!(
        text.contains("tcp"),
        "the message lists what is registered: {text}"
    );
    let err = Listener::bind(&"my-pipe://x".parse().unwrap(), &cfg)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("my-pipe"), "{err}");
}
