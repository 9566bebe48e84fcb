//! Shared by the examples: the certificates that `tls://` and `quic://` need,
//! made at start-up so that nothing is read from disk.

use drpc::socket::tls::{self, TlsConfig};
use drpc::socket::TransportConfig;

/// Certificates for `tls://` and `quic://`: the server presents one signed
/// by a CA that the client trusts.
pub fn transport_config() -> Result<TransportConfig, Box<dyn std::error::Error>> {
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
        // require client certificates). From PEM, the key also makes QUIC's
        // stateless-reset secret, so a restarted server resets old
        // connections at once.
        .with_server_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes(), None)?
        // To dial: the roots the server's certificate must chain to.
        .with_client(tls::client_config(ca.pem().as_bytes(), None)?);
    Ok(config)
}
