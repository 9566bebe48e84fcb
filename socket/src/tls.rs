//! Certificates for `tls://` and `quic://`, and TLS over TCP.
//!
//! Both transports take their certificates from one [`TlsConfig`]: a rustls
//! [`ServerConfig`] to listen, a rustls [`ClientConfig`] to dial. Build them
//! with rustls directly, or from PEM with [`server_config`] and
//! [`client_config`], which use the *ring* provider, TLS 1.3 and 1.2, and
//! the ALPN protocol [`ALPN`].
//!
//! ```no_run
//! # fn demo() -> Result<(), drpc_socket::SocketError> {
//! use drpc_socket::tls::{self, TlsConfig};
//!
//! let cert = tls::read_pem_file("server.crt")?;
//! let key = tls::read_pem_file("server.key")?;
//! let ca = tls::read_pem_file("ca.crt")?;
//! let config = TlsConfig::default()
//!     .with_server(tls::server_config(&cert, &key, None)?)
//!     .with_client(tls::client_config(&ca, None)?);
//! # Ok(()) }
//! ```

use crate::SocketError;
use rustls::pki_types::pem::PemObject;
#[cfg(feature = "tls")]
use rustls::pki_types::ServerName;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// The ALPN protocol drpc offers and expects on `tls://` and `quic://`.
pub const ALPN: &[u8] = b"drpc/1";

/// The certificates that `tls://` and `quic://` use.
///
/// Dialing needs `client`; listening needs `server`. A missing one is a
/// clear [`SocketError::Config`] at dial or listen time.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct TlsConfig {
    /// Used to accept connections: the server's certificate chain and key,
    /// and whether clients must present certificates.
    pub server: Option<Arc<ServerConfig>>,
    /// Used to dial: the roots the server's certificate must chain to, and
    /// the client's own certificate if the server asks for one.
    pub client: Option<Arc<ClientConfig>>,
    /// The name the server's certificate must carry. By default, the host
    /// of the dialed address (`localhost` in `tls://localhost:9443`).
    pub server_name: Option<String>,
    /// A secret derived from the server's private key (by
    /// [`TlsConfig::with_server_pem`]), from which a QUIC listener makes its
    /// stateless-reset key unless one is set.
    pub(crate) reset_secret: Option<[u8; 32]>,
}

impl TlsConfig {
    /// Sets the config used to listen.
    pub fn with_server(mut self, config: Arc<ServerConfig>) -> Self {
        self.server = Some(config);
        self
    }

    /// Sets the config used to listen from PEM (as [`server_config`]), and
    /// derives from the private key the secret a QUIC listener makes its
    /// stateless-reset tokens from: a server restarted with the same key
    /// resets its old connections at once (see
    /// [`QuicConfig::reset_key`](crate::quic::QuicConfig::reset_key)).
    pub fn with_server_pem(
        mut self,
        cert_chain_pem: &[u8],
        key_pem: &[u8],
        client_ca_pem: Option<&[u8]>,
    ) -> Result<Self, SocketError> {
        self.server = Some(server_config(cert_chain_pem, key_pem, client_ca_pem)?);
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| SocketError::Config(format!("private key: {e}")))?;
        let derive = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"drpc/1 stateless reset");
        let tag = ring::hmac::sign(&derive, key.secret_der());
        let mut secret = [0u8; 32];
        secret.copy_from_slice(tag.as_ref());
        self.reset_secret = Some(secret);
        Ok(self)
    }

    /// Sets the config used to dial.
    pub fn with_client(mut self, config: Arc<ClientConfig>) -> Self {
        self.client = Some(config);
        self
    }

    /// Sets the name the server's certificate must carry.
    pub fn with_server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    pub(crate) fn server(&self, scheme: &str) -> Result<Arc<ServerConfig>, SocketError> {
        self.server.clone().ok_or_else(|| {
            SocketError::Config(format!(
                "listening on {scheme}:// needs TlsConfig::server (a certificate and key; see drpc_socket::tls::server_config)"
            ))
        })
    }

    pub(crate) fn client(&self, scheme: &str) -> Result<Arc<ClientConfig>, SocketError> {
        self.client.clone().ok_or_else(|| {
            SocketError::Config(format!(
                "dialing {scheme}:// needs TlsConfig::client (the roots to trust; see drpc_socket::tls::client_config)"
            ))
        })
    }

    /// The name to verify for a dial to `addr`, as text.
    pub(crate) fn server_name_text(&self, addr: &crate::Addr) -> String {
        match &self.server_name {
            Some(n) => n.clone(),
            None => {
                let host = addr.target().rsplit_once(':').map_or("", |(h, _)| h);
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string()
            }
        }
    }

    /// The name to verify for a dial to `addr`.
    #[cfg(feature = "tls")]
    pub(crate) fn server_name(
        &self,
        addr: &crate::Addr,
    ) -> Result<ServerName<'static>, SocketError> {
        let name = self.server_name_text(addr);
        ServerName::try_from(name.clone()).map_err(|e| {
            SocketError::Config(format!("{name:?} is not a valid TLS server name: {e}"))
        })
    }
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("server", &self.server.as_ref().map(|_| "ServerConfig"))
            .field("client", &self.client.as_ref().map(|_| "ClientConfig"))
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// Reads a PEM file (certificates or a key) into memory.
pub fn read_pem_file(path: impl AsRef<Path>) -> Result<Vec<u8>, SocketError> {
    let path = path.as_ref();
    std::fs::read(path).map_err(|e| SocketError::Config(format!("reading {}: {e}", path.display())))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // An explicit provider, not the process default, so that a program
    // linking both ring and aws-lc-rs still works and nothing global is set.
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, SocketError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SocketError::Config(format!("{what}: {e}")))?;
    if certs.is_empty() {
        return Err(SocketError::Config(format!(
            "{what}: no PEM certificate found"
        )));
    }
    Ok(certs)
}

fn key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, SocketError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| SocketError::Config(format!("private key: {e}")))
}

fn roots(pem: &[u8], what: &str) -> Result<Arc<RootCertStore>, SocketError> {
    let mut roots = RootCertStore::empty();
    for c in certs(pem, what)? {
        roots
            .add(c)
            .map_err(|e| SocketError::Config(format!("{what}: {e}")))?;
    }
    Ok(Arc::new(roots))
}

fn tls_err(what: &str) -> impl Fn(rustls::Error) -> SocketError + '_ {
    move |e| SocketError::Config(format!("{what}: {e}"))
}

/// A server config from a PEM certificate chain and private key.
///
/// With `client_ca_pem`, clients must present a certificate that chains to
/// one of those roots; without it, clients are not asked for one.
pub fn server_config(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
) -> Result<Arc<ServerConfig>, SocketError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(tls_err("server config"))?;
    let builder = match client_ca_pem {
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots(ca, "client CA")?,
                provider,
            )
            .build()
            .map_err(|e| SocketError::Config(format!("client CA: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs(cert_chain_pem, "server certificate")?, key(key_pem)?)
        .map_err(tls_err("server certificate"))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// A client config that trusts the roots in `ca_pem`.
///
/// With `identity` (a PEM certificate chain and its private key), the
/// client presents that certificate when the server asks for one.
pub fn client_config(
    ca_pem: &[u8],
    identity: Option<(&[u8], &[u8])>,
) -> Result<Arc<ClientConfig>, SocketError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err("client config"))?
        .with_root_certificates(roots(ca_pem, "trusted roots")?);
    let mut config = match identity {
        Some((cert, k)) => builder
            .with_client_auth_cert(certs(cert, "client certificate")?, key(k)?)
            .map_err(tls_err("client certificate"))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

#[cfg(feature = "tls")]
pub(crate) use stream::Tls;

#[cfg(feature = "tls")]
mod stream {
    use super::TlsConfig;
    use crate::transport::{BoxFuture, Transport, TransportListener};
    use crate::{tcp, Accepting, Addr, Scheme, Socket, SocketError, TransportConfig};
    use std::io;
    use tokio::net::{TcpListener, TcpStream};

    /// `tls://host:port`: TLS over TCP.
    pub(crate) struct Tls;

    impl Transport for Tls {
        fn dial<'a>(
            &'a self,
            addr: &'a Addr,
            config: &'a TransportConfig,
        ) -> BoxFuture<'a, Result<Socket, SocketError>> {
            Box::pin(dial(addr, &config.tls))
        }

        fn bind<'a>(
            &'a self,
            addr: &'a Addr,
            config: &'a TransportConfig,
        ) -> BoxFuture<'a, Result<Box<dyn TransportListener>, SocketError>> {
            Box::pin(async move {
                let server = config.tls.server("tls")?;
                let (listener, local) = tcp::bind(addr, config).await?;
                let acceptor = tokio_rustls::TlsAcceptor::from(server);
                Ok(Box::new(TlsAccept {
                    listener,
                    acceptor,
                    local,
                }) as Box<dyn TransportListener>)
            })
        }
    }

    struct TlsAccept {
        listener: TcpListener,
        acceptor: tokio_rustls::TlsAcceptor,
        local: Addr,
    }

    impl TransportListener for TlsAccept {
        fn local_addr(&self) -> &Addr {
            &self.local
        }

        #[cfg(unix)]
        fn hand_off(&mut self) -> Result<std::os::fd::OwnedFd, SocketError> {
            tcp::hand_off(&self.listener, &self.local)
        }

        fn accept(&mut self) -> BoxFuture<'_, Result<Accepting, SocketError>> {
            Box::pin(async move {
                let (stream, _) = self
                    .listener
                    .accept()
                    .await
                    .map_err(|e| SocketError::io("accept", &self.local, e))?;
                let handshake = accept(stream, self.acceptor.clone(), self.local.clone());
                Ok(Accepting::handshake(handshake))
            })
        }
    }

    fn handshake(op: &'static str, addr: &Addr, e: io::Error) -> SocketError {
        SocketError::Handshake {
            op,
            addr: addr.to_string(),
            reason: e.to_string(),
        }
    }

    async fn dial(addr: &Addr, config: &TlsConfig) -> Result<Socket, SocketError> {
        let client = config.client("tls")?;
        let name = config.server_name(addr)?;
        let stream = tcp::connect(addr).await?;
        let (local, peer) =
            tcp::prepare(&stream, Scheme::TLS).map_err(|e| SocketError::io("dial", addr, e))?;
        let tls = tokio_rustls::TlsConnector::from(client)
            .connect(name, stream)
            .await
            .map_err(|e| handshake("dial", addr, e))?;
        let (r, w) = tokio::io::split(tls);
        Ok(Socket::from_parts(Box::new(r), Box::new(w), local, peer))
    }

    async fn accept(
        stream: TcpStream,
        acceptor: tokio_rustls::TlsAcceptor,
        listen: Addr,
    ) -> Result<Socket, SocketError> {
        let (local, peer) = tcp::prepare(&stream, Scheme::TLS)
            .map_err(|e| SocketError::io("accept", &listen, e))?;
        let tls = acceptor
            .accept(stream)
            .await
            .map_err(|e| handshake("accept", &peer, e))?;
        let (r, w) = tokio::io::split(tls);
        Ok(Socket::from_parts(Box::new(r), Box::new(w), local, peer))
    }
}
