use crate::transport::TransportListener;
use crate::{Addr, Socket, SocketError, TransportConfig};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Accepts sockets on one address, with the transport its scheme names.
pub struct Listener {
    inner: Box<dyn TransportListener>,
    handshake_timeout: Duration,
}

type Handshake = Pin<Box<dyn Future<Output = Result<Socket, SocketError>> + Send>>;

/// A connection taken from a [`Listener`] whose handshake (TLS, QUIC,
/// WebSocket) has not run yet.
///
/// [`Listener::accept`] returns this rather than a [`Socket`] so that a
/// slow or silent peer holds up only its own handshake, never the accept
/// loop: run [`Accepting::finish`] on a task of its own.
pub struct Accepting {
    handshake: Handshake,
    limit: Option<(Duration, Addr)>,
    bounded: bool,
}

impl Accepting {
    /// A connection with nothing left to do.
    pub fn ready(socket: Socket) -> Self {
        Self {
            handshake: Box::pin(std::future::ready(Ok(socket))),
            limit: None,
            bounded: false,
        }
    }

    /// A connection whose handshake `handshake` completes; the
    /// [`Listener`] bounds it by [`TransportConfig::handshake_timeout`].
    pub fn handshake(
        handshake: impl Future<Output = Result<Socket, SocketError>> + Send + 'static,
    ) -> Self {
        Self {
            handshake: Box::pin(handshake),
            limit: None,
            bounded: true,
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
    /// Starts listening on `addr`, with the transport registered in
    /// `config` for its scheme and that transport's settings.
    ///
    /// A port of 0 asks the system for a free port; [`Listener::local_addr`]
    /// tells which. A Unix listener first removes a socket file left behind
    /// by an earlier run (but not one a live listener still answers on).
    pub async fn bind(addr: &Addr, config: &TransportConfig) -> Result<Self, SocketError> {
        let inner = config.transports.get(addr)?.bind(addr, config).await?;
        Ok(Self {
            inner,
            handshake_timeout: config.handshake_timeout,
        })
    }

    /// The address this listener is bound to.
    pub fn local_addr(&self) -> &Addr {
        self.inner.local_addr()
    }

    /// Stops listening and waits until the transport's own work for the
    /// connections it accepted is done: a QUIC endpoint's closes sent and
    /// drained, KCP conversations ended. Stream transports have none. The
    /// caller bounds the wait (their lingers bound it too).
    pub async fn close(self) {
        self.inner.close().await
    }

    /// A copy of the listening socket for a process that takes over the
    /// address; see [`TransportListener::hand_off`].
    ///
    /// Errors: the transport cannot hand its listeners over (QUIC, KCP),
    /// or the system is out of file descriptors.
    #[cfg(unix)]
    pub fn hand_off(&mut self) -> Result<std::os::fd::OwnedFd, SocketError> {
        self.inner.hand_off()
    }

    /// Waits for the next peer. The returned [`Accepting`] still has to
    /// finish its handshake.
    pub async fn accept(&mut self) -> Result<Accepting, SocketError> {
        let mut accepting = self.inner.accept().await?;
        if accepting.bounded {
            accepting.limit = Some((self.handshake_timeout, self.inner.local_addr().clone()));
        }
        Ok(accepting)
    }
}

/// A listener is a transport's listener too, so a transport can wrap
/// another (see [`Transport`](crate::Transport)'s example).
impl TransportListener for Listener {
    fn local_addr(&self) -> &Addr {
        Listener::local_addr(self)
    }

    fn accept(&mut self) -> crate::BoxFuture<'_, Result<Accepting, SocketError>> {
        Box::pin(Listener::accept(self))
    }

    fn close(self: Box<Self>) -> crate::BoxFuture<'static, ()> {
        Box::pin(Listener::close(*self))
    }
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("local", self.local_addr())
            .finish_non_exhaustive()
    }
}
