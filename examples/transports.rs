//! One call over every transport, with the settings each needs:
//!
//! ```text
//! cargo run --example transports
//! ```
//!
//! TLS and QUIC need a certificate; this makes a private CA and a server
//! certificate for 127.0.0.1 at start-up (with rcgen), so nothing is read
//! from disk. In production, load PEM files with
//! `drpc::socket::tls::read_pem_file` instead.

use drpc::socket::tls::{self, TlsConfig};
use drpc::socket::TransportConfig;
use drpc::{CallCtx, Config, Endpoint, Router, Status};
use serde::{Deserialize, Serialize};
use std::time::Instant;

#[derive(Serialize, Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

/// Certificates for `tls://` and `quic://`: the server presents one signed
/// by a CA that the client trusts.
fn transport_config() -> Result<TransportConfig, Box<dyn std::error::Error>> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let cert =
        CertificateParams::new(vec!["127.0.0.1".to_string()])?.signed_by(&key, &ca, &ca_key)?;

    let mut config = TransportConfig::default();
    config.tls = TlsConfig::default()
        // To listen: the certificate chain and its key (add a client CA to
        // require client certificates).
        .with_server(tls::server_config(
            cert.pem().as_bytes(),
            key.serialize_pem().as_bytes(),
            None,
        )?)
        // To dial: the roots the server's certificate must chain to.
        .with_client(tls::client_config(ca.pem().as_bytes(), None)?);
    Ok(config)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config {
        transport: transport_config()?,
        ..Config::default()
    };
    let mut router = Router::new();
    router.call("/math/add", |_: CallCtx, x: Add| async move {
        Ok::<_, Status>(x.a + x.b)
    })?;
    let server = Endpoint::builder()
        .config(config.clone())
        .router(router)
        .build()?;
    let client = Endpoint::builder().config(config).build()?;

    let sock = std::env::temp_dir().join(format!("drpc-transports-{}.sock", std::process::id()));
    let addrs = [
        "tcp://127.0.0.1:0".to_string(),
        format!("unix://{}", sock.display()),
        "tls://127.0.0.1:0".to_string(),
        "quic://127.0.0.1:0".to_string(),
        "kcp://127.0.0.1:0".to_string(),
    ];
    for addr in addrs {
        let bound = server.listen(addr.as_str()).await?;
        let session = client.dial(&bound).await?;
        let started = Instant::now();
        let sum: i64 = session.call("/math/add", &Add { a: 2, b: 40 }).await?;
        println!(
            "{:<6} {bound:<44} 2 + 40 = {sum}  (first call: {:?})",
            bound.scheme().as_str(),
            started.elapsed()
        );
        session.close().await;
    }
    client.close().await;
    server.close().await;
    Ok(())
}
