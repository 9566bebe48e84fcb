#[allow(unused_imports)]
use crate::Scheme;
use crate::{Addr, Socket, SocketError, TransportConfig};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Accepts sockets on one address.
pub struct Listener {
    inner: Inner,
    local: Addr,
    #[allow(dead_code)] // unused when only tcp and unix are built
    handshake_timeout: Duration,
}

enum Inner {
    /// Keeps the enum inhabited-in-type when no transport is built.
    #[allow(dead_code)]
    None(std::convert::Infallible),
    #[cfg(feature = "tcp")]
    Tcp(tokio::net::TcpListener),
    #[cfg(all(feature = "unix", unix))]
    Unix {
        listener: tokio::net::UnixListener,
        // Held only for its Drop, which removes the socket file.
        _path: crate::unix::PathGuard,
    },
    #[cfg(feature = "tls")]
    Tls {
        listener: tokio::net::TcpListener,
        acceptor: tokio_rustls::TlsAcceptor,
    },
    #[cfg(feature = "quic")]
    Quic(crate::quic::QuicListener),
    #[cfg(feature = "kcp")]
    Kcp(crate::kcp::KcpListener),
}

type Handshake = Pin<Box<dyn Future<Output = Result<Socket, SocketError>> + Send>>;

/// A connection taken from a [`Listener`] whose handshake (TLS, QUIC) has
/// not run yet.
///
/// [`Listener::accept`] returns this rather than a [`Socket`] so that a
/// slow or silent peer holds up only its own handshake, never the accept
/// loop: run [`Accepting::finish`] on a task of its own.
pub struct Accepting {
    handshake: Handshake,
    limit: Option<(Duration, Addr)>,
}

impl Accepting {
    #[allow(dead_code)] // unused when only quic is built
    fn ready(socket: Socket) -> Self {
        Self {
            handshake: Box::pin(std::future::ready(Ok(socket))),
            limit: None,
        }
    }

    #[allow(dead_code)] // unused when only tcp and unix are built
    fn handshake(
        handshake: impl Future<Output = Result<Socket, SocketError>> + Send + 'static,
        timeout: Duration,
        local: &Addr,
    ) -> Self {
        Self {
            handshake: Box::pin(handshake),
            limit: Some((timeout, local.clone())),
        }
    }

    /// Completes the handshake, within the listener's
    /// [`TransportConfig::handshake_timeout`].
    pub async fn finish(self) -> Result<Socket, SocketError> {
        match self.limit {
            None => self.handshake.await,
            Some((limit, local)) => match tokio::time::timeout(limit, self.handshake).await {
                Ok(r) => r,
                Err(_) => Err(SocketError::Handshake {
                    op: "accept",
                    addr: local.to_string(),
                    reason: format!("no handshake within {limit:?}"),
                }),
            },
        }
    }
}

impl std::fmt::Debug for Accepting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accepting").finish_non_exhaustive()
    }
}

impl Listener {
    /// Starts listening on `addr`, using the settings for its transport in
    /// `config`.
    ///
    /// A port of 0 asks the system for a free port; [`Listener::local_addr`]
    /// tells which. A Unix listener first removes a socket file left behind
    /// by an earlier run (but not one a live listener still answers on).
    #[allow(unreachable_code)] // with no transport built, every arm returns
    pub async fn bind(addr: &Addr, config: &TransportConfig) -> Result<Self, SocketError> {
        let _ = config;
        let (inner, local) = match addr.scheme() {
            #[cfg(feature = "tcp")]
            Scheme::Tcp => {
                let (l, local) = crate::tcp::bind(addr, config.tcp_backlog).await?;
                (Inner::Tcp(l), local)
            }
            #[cfg(all(feature = "unix", unix))]
            Scheme::Unix => {
                let (listener, path) = crate::unix::bind(addr).await?;
                (
                    Inner::Unix {
                        listener,
                        _path: path,
                    },
                    addr.clone(),
                )
            }
            #[cfg(feature = "tls")]
            Scheme::Tls => {
                let server = config.tls.server("tls")?;
                let (listener, local) = crate::tcp::bind(addr, config.tcp_backlog).await?;
                let acceptor = tokio_rustls::TlsAcceptor::from(server);
                (Inner::Tls { listener, acceptor }, local)
            }
            #[cfg(feature = "quic")]
            Scheme::Quic => {
                let l = crate::quic::QuicListener::bind(addr, config).await?;
                let local = l.local_addr().clone();
                (Inner::Quic(l), local)
            }
            #[cfg(feature = "kcp")]
            Scheme::Kcp => {
                let l = crate::kcp::KcpListener::bind(addr, &config.kcp).await?;
                let local = l.local_addr().clone();
                (Inner::Kcp(l), local)
            }
            Scheme::Memory => return Err(crate::memory::not_dialable()),
            #[allow(unreachable_patterns)]
            other => return Err(SocketError::Unsupported(other.as_str().to_string())),
        };
        Ok(Self {
            inner,
            local,
            handshake_timeout: config.handshake_timeout,
        })
    }

    /// The address this listener is bound to.
    pub fn local_addr(&self) -> &Addr {
        &self.local
    }

    /// Stops listening and waits until the transport's own work for the
    /// connections it accepted is done: a QUIC endpoint's closes sent and
    /// drained, KCP conversations ended. Stream transports have none. The
    /// caller bounds the wait (their lingers bound it too).
    pub async fn close(self) {
        match self.inner {
            #[cfg(feature = "quic")]
            Inner::Quic(l) => l.close().await,
            #[cfg(feature = "kcp")]
            Inner::Kcp(l) => l.close().await,
            _ => {}
        }
    }

    /// Waits for the next peer. The returned [`Accepting`] still has to
    /// finish its handshake.
    pub async fn accept(&mut self) -> Result<Accepting, SocketError> {
        #[allow(unused_variables)]
        let op = |e| SocketError::io("accept", &self.local, e);
        match &mut self.inner {
            Inner::None(never) => match *never {},
            #[cfg(feature = "tcp")]
            Inner::Tcp(l) => {
                let (stream, _) = l.accept().await.map_err(op)?;
                let socket = crate::tcp::socket(stream, Scheme::Tcp).map_err(op)?;
                Ok(Accepting::ready(socket))
            }
            #[cfg(all(feature = "unix", unix))]
            Inner::Unix { listener, .. } => {
                let socket = crate::unix::accept(listener, &self.local)
                    .await
                    .map_err(op)?;
                Ok(Accepting::ready(socket))
            }
            #[cfg(feature = "tls")]
            Inner::Tls { listener, acceptor } => {
                let (stream, _) = listener.accept().await.map_err(op)?;
                let handshake = crate::tls::accept(stream, acceptor.clone(), self.local.clone());
                Ok(Accepting::handshake(
                    handshake,
                    self.handshake_timeout,
                    &self.local,
                ))
            }
            #[cfg(feature = "quic")]
            Inner::Quic(l) => {
                let handshake = l.accept().await?;
                Ok(Accepting::handshake(
                    handshake,
                    self.handshake_timeout,
                    &self.local,
                ))
            }
            #[cfg(feature = "kcp")]
            Inner::Kcp(l) => Ok(Accepting::ready(l.accept().await?)),
        }
    }
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}
