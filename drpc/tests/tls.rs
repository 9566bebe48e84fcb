//! TLS over TCP: certificates that do not check out fail clearly.

mod common;

use common::*;
use drpc::socket::tls::{self, TlsConfig};
use drpc::{Code, Config, Endpoint};

async fn server(config: Config) -> (Endpoint, drpc::Addr) {
    init_tracing();
    let ep = Endpoint::builder()
        .config(config)
        .router(test_router())
        .build()
        .unwrap();
    let addr = ep.listen("tls://127.0.0.1:0").await.unwrap();
    (ep, addr)
}

fn client_with(tls: TlsConfig) -> Endpoint {
    let mut config = Config::default();
    config.transport.tls = tls;
    Endpoint::builder().config(config).build().unwrap()
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_fails_the_dial_with_105() {
    let (server, addr) = server(tls_config(&make_certs())).await;
    let stranger = make_certs();
    let client = client_with(
        TlsConfig::default().with_client(tls::client_config(&stranger.ca, None).unwrap()),
    );
    let err = client.dial(&addr).await.unwrap_err();
    assert_eq!(err.code(), Code::DIAL_FAILED);
    assert!(err.message().contains("handshake failed"), "{err}");
    assert!(err.message().contains("certificate"), "{err}");
    assert_eq!(server.session_count(), 0);
    client.close().await;
    server.close().await;
}

#[tokio::test]
async fn a_name_the_certificate_does_not_carry_fails_the_dial() {
    let certs = make_certs();
    let (server, addr) = server(tls_config(&certs)).await;
    let client = client_with(
        TlsConfig::default()
            .with_client(tls::client_config(&certs.ca, None).unwrap())
            .with_server_name("elsewhere.test"),
    );
    let err = client.dial(&addr).await.unwrap_err();
    assert_eq!(err.code(), Code::DIAL_FAILED);
    assert!(err.message().contains("certificate"), "{err}");
    client.close().await;
    server.close().await;
}

#[tokio::test]
async fn missing_settings_are_named() {
    let ep = Endpoint::builder().build().unwrap();
    let err = ep.listen("tls://127.0.0.1:0").await.unwrap_err();
    assert!(err.message().contains("TlsConfig::server"), "{err}");
    let err = ep.dial("tls://127.0.0.1:1").await.unwrap_err();
    assert_eq!(err.code(), Code::DIAL_FAILED);
    assert!(err.message().contains("TlsConfig::client"), "{err}");
    ep.close().await;
}

#[tokio::test]
async fn client_certificates_can_be_required() {
    let certs = make_certs();
    let mut config = Config::default();
    config.transport.tls = TlsConfig::default().with_server(
        tls::server_config(&certs.server_cert, &certs.server_key, Some(&certs.ca)).unwrap(),
    );
    let (server, addr) = server(config).await;

    let trusted = client_with(TlsConfig::default().with_client(
        tls::client_config(&certs.ca, Some((&certs.client_cert, &certs.client_key))).unwrap(),
    ));
    let s = trusted.dial(&addr).await.unwrap();
    let sum: i64 = s.call("/math/add", &Add { a: 2, b: 3 }).await.unwrap();
    assert_eq!(sum, 5);

    // TLS 1.3 lets the client finish its handshake before the server has
    // judged the client's certificate, so the refusal may arrive as the
    // dial's error or as the session's close reason; it never serves.
    // Without redial, which would retry the refused handshake.
    let mut config = no_redial();
    config.transport.tls =
        TlsConfig::default().with_client(tls::client_config(&certs.ca, None).unwrap());
    let anonymous = Endpoint::builder().config(config).build().unwrap();
    match anonymous.dial(&addr).await {
        Err(e) => assert_eq!(e.code(), Code::DIAL_FAILED, "{e}"),
        Ok(s) => {
            let err = s
                .call::<_, i64>("/math/add", &Add { a: 1, b: 1 })
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::CONNECTION_CLOSED, "{err}");
            within("refused session closes", s.closed()).await;
            let reason = s.close_reason().unwrap();
            assert!(reason.to_string().contains("Certificate"), "{reason}");
        }
    }
    assert_eq!(
        server.session_count(),
        1,
        "only the trusted client is served"
    );
    trusted.close().await;
    anonymous.close().await;
    server.close().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_is_dropped() {
    use tokio::io::AsyncReadExt;
    let mut config = tls_config(&make_certs());
    config.transport.handshake_timeout = std::time::Duration::from_millis(200);
    let (server, addr) = server(config.clone()).await;
    // Connect and say nothing: the listener gives up on this one alone.
    let mut silent = tokio::net::TcpStream::connect(addr.target()).await.unwrap();
    let client = Endpoint::builder().config(config).build().unwrap();
    let s = client.dial(&addr).await.unwrap();
    let sum: i64 = s.call("/math/add", &Add { a: 1, b: 1 }).await.unwrap();
    assert_eq!(sum, 2, "others are served meanwhile");
    let mut buf = [0u8; 16];
    let n = within("the silent connection is closed", silent.read(&mut buf))
        .await
        .unwrap_or(0);
    assert_eq!(n, 0);
    client.close().await;
    server.close().await;
}
