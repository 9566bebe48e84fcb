use crate::{Addr, Scheme, Socket, SocketError};
use std::io;

/// Accepts sockets on one address.
#[derive(Debug)]
pub struct Listener {
    inner: Inner,
    local: Addr,
}

#[derive(Debug)]
enum Inner {
    #[cfg(feature = "tcp")]
    Tcp(tokio::net::TcpListener),
    #[cfg(all(feature = "unix", unix))]
    Unix {
        listener: tokio::net::UnixListener,
        // Held only for its Drop, which removes the socket file.
        _path: UnixPathGuard,
    },
}

impl Listener {
    /// Starts listening on `addr`.
    ///
    /// A TCP port of 0 asks the system for a free port;
    /// [`Listener::local_addr`] tells which.
    pub async fn bind(addr: &Addr) -> Result<Self, SocketError> {
        match addr.scheme() {
            #[cfg(feature = "tcp")]
            Scheme::Tcp => {
                let l = tokio::net::TcpListener::bind(addr.target())
                    .await
                    .map_err(|e| SocketError::io("listen", addr, e))?;
                let local = l
                    .local_addr()
                    .map_err(|e| SocketError::io("listen", addr, e))?;
                Ok(Self {
                    inner: Inner::Tcp(l),
                    local: tcp_addr(local),
                })
            }
            #[cfg(all(feature = "unix", unix))]
            Scheme::Unix => {
                let l = tokio::net::UnixListener::bind(addr.target())
                    .map_err(|e| SocketError::io("listen", addr, e))?;
                Ok(Self {
                    inner: Inner::Unix {
                        listener: l,
                        _path: UnixPathGuard(addr.target().into()),
                    },
                    local: addr.clone(),
                })
            }
            #[allow(unreachable_patterns)]
            other => Err(SocketError::Unsupported(other.as_str().to_string())),
        }
    }

    /// The address this listener is bound to.
    pub fn local_addr(&self) -> &Addr {
        &self.local
    }

    /// Waits for the next peer.
    pub async fn accept(&mut self) -> Result<Socket, SocketError> {
        let res = match &mut self.inner {
            #[cfg(feature = "tcp")]
            Inner::Tcp(l) => match l.accept().await {
                Ok((stream, _)) => tcp_socket(stream),
                Err(e) => Err(e),
            },
            #[cfg(all(feature = "unix", unix))]
            Inner::Unix { listener, .. } => match listener.accept().await {
                Ok((stream, peer)) => {
                    let peer = peer
                        .as_pathname()
                        .and_then(|p| Addr::new(Scheme::Unix, p.to_string_lossy()).ok())
                        .unwrap_or_else(|| self.local.clone());
                    Ok(unix_socket(stream, self.local.clone(), peer))
                }
                Err(e) => Err(e),
            },
        };
        res.map_err(|e| SocketError::io("accept", &self.local, e))
    }
}

#[cfg(feature = "tcp")]
fn tcp_addr(a: std::net::SocketAddr) -> Addr {
    // A SocketAddr always prints as host:port, so this cannot fail.
    Addr::new(Scheme::Tcp, a.to_string()).expect("socket address is host:port")
}

#[cfg(feature = "tcp")]
pub(crate) fn tcp_socket(stream: tokio::net::TcpStream) -> io::Result<Socket> {
    // RPC messages are small and latency-bound; the session's writer already
    // coalesces them, so Nagle's delay would only add latency.
    stream.set_nodelay(true)?;
    let local = tcp_addr(stream.local_addr()?);
    let peer = tcp_addr(stream.peer_addr()?);
    let (r, w) = stream.into_split();
    Ok(Socket::from_parts(Box::new(r), Box::new(w), local, peer))
}

#[cfg(all(feature = "unix", unix))]
pub(crate) fn unix_socket(stream: tokio::net::UnixStream, local: Addr, peer: Addr) -> Socket {
    let (r, w) = stream.into_split();
    Socket::from_parts(Box::new(r), Box::new(w), local, peer)
}

/// Removes a listener's socket file when the listener goes away, so the
/// next run can bind the same path.
#[cfg(all(feature = "unix", unix))]
#[derive(Debug)]
struct UnixPathGuard(std::path::PathBuf);

#[cfg(all(feature = "unix", unix))]
impl Drop for UnixPathGuard {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.0.display(), error = %e, "could not remove unix socket file");
            }
        }
    }
}
