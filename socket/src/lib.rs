//! Byte-stream transports for drpc.
//!
//! A [`Socket`] is a reliable, ordered byte stream between two peers plus
//! their addresses. It splits into an owned read half and write half so that
//! a session runs one reader task and one writer task without a lock between
//! them. Transports are picked by the scheme of an [`Addr`]:
//!
//! | scheme | example | cargo feature |
//! |---|---|---|
//! | `tcp` | `tcp://127.0.0.1:9090`, `tcp://[::1]:9090`, `tcp://localhost:9090` | `tcp` (default) |
//! | `unix` | `unix:///tmp/drpc.sock` | `unix` (default, Unix only) |
//!
//! This crate knows bytes, not messages: framing belongs to `drpc-proto`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), drpc_socket::SocketError> {
//! use drpc_socket::{Addr, Listener};
//!
//! let addr: Addr = "tcp://127.0.0.1:0".parse()?;
//! let mut listener = Listener::bind(&addr).await?;
//! let client = drpc_socket::dial(listener.local_addr()).await?;
//! let server = listener.accept().await?;
//! assert_eq!(client.peer_addr(), server.local_addr());
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod addr;
mod listener;

pub use addr::{Addr, Scheme};
pub use listener::Listener;

use std::io;
use tokio::io::{AsyncRead, AsyncWrite};

/// The read half of a socket.
pub type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a socket. Shutting it down (`AsyncWriteExt::shutdown`)
/// tells the peer no more bytes will come.
pub type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// Why a socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The address is not a well-formed `scheme://target` URL.
    #[error("bad address {addr:?}: {reason}")]
    BadAddr {
        /// The text given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The scheme names a transport this build does not include.
    #[error("transport {0:?} is not available in this build (enable its cargo feature)")]
    Unsupported(String),
    /// The operating system refused.
    #[error("{op} {addr}: {source}")]
    Io {
        /// `dial`, `listen` or `accept`.
        op: &'static str,
        /// The address involved.
        addr: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl SocketError {
    fn io(op: &'static str, addr: &Addr, source: io::Error) -> Self {
        Self::Io {
            op,
            addr: addr.to_string(),
            source,
        }
    }
}

/// A connected byte stream and the addresses of both ends.
pub struct Socket {
    read: ReadHalf,
    write: WriteHalf,
    local: Addr,
    peer: Addr,
}

impl Socket {
    /// A socket from halves a transport made; for transports outside this crate.
    pub fn from_parts(read: ReadHalf, write: WriteHalf, local: Addr, peer: Addr) -> Self {
        Self {
            read,
            write,
            local,
            peer,
        }
    }

    /// This end's address.
    pub fn local_addr(&self) -> &Addr {
        &self.local
    }

    /// The other end's address.
    pub fn peer_addr(&self) -> &Addr {
        &self.peer
    }

    /// The two halves and the addresses (local, then peer).
    pub fn into_parts(self) -> (ReadHalf, WriteHalf, Addr, Addr) {
        (self.read, self.write, self.local, self.peer)
    }
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("local", &self.local)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// Connects to `addr` with the transport its scheme names.
pub async fn dial(addr: &Addr) -> Result<Socket, SocketError> {
    match addr.scheme() {
        #[cfg(feature = "tcp")]
        Scheme::Tcp => {
            let stream = tokio::net::TcpStream::connect(addr.target())
                .await
                .map_err(|e| SocketError::io("dial", addr, e))?;
            listener::tcp_socket(stream).map_err(|e| SocketError::io("dial", addr, e))
        }
        #[cfg(all(feature = "unix", unix))]
        Scheme::Unix => {
            let stream = tokio::net::UnixStream::connect(addr.target())
                .await
                .map_err(|e| SocketError::io("dial", addr, e))?;
            Ok(listener::unix_socket(stream, addr.clone(), addr.clone()))
        }
        #[allow(unreachable_patterns)]
        other => Err(SocketError::Unsupported(other.as_str().to_string())),
    }
}

#[cfg(test)]
mod tests;
