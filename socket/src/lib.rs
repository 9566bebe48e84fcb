//! Byte-stream transports for drpc.
//!
//! A [`Socket`] is a reliable, ordered byte stream between two peers plus
//! their addresses. It splits into an owned read half and write half so that
//! a session runs one reader task and one writer task without a lock between
//! them. The scheme of an [`Addr`] picks the [`Transport`] registered for
//! it in a [`TransportConfig`]; these come registered:
//!
//! | scheme | example | cargo feature |
//! |---|---|---|
//! | `tcp` | `tcp://127.0.0.1:9090`, `tcp://[::1]:9090`, `tcp://localhost:9090` | `tcp` (default) |
//! | `unix` | `unix:///tmp/drpc.sock` | `unix` (default, Unix only) |
//! | `tls` | `tls://localhost:9443` | `tls` |
//! | `quic` | `quic://localhost:9443` | `quic` |
//! | `kcp` | `kcp://127.0.0.1:9095` | `kcp` |
//! | `ws` | `ws://127.0.0.1:9096`, `ws://host:9096/drpc` | `ws` |
//! | `wss` | `wss://localhost:9443/drpc` | `wss` |
//! | `mem` | `mem://server` | always (in-memory pipes, [`memory`]); not registered: only a dialer that knows the names reaches them |
//!
//! Any other scheme works once a transport is registered for it
//! ([`TransportConfig::register`]), and [`Socket::from_stream`] wraps a
//! connection the application already has. Settings for the transports
//! that need them (certificates, KCP's profile) live in the same
//! [`TransportConfig`], which the caller owns and passes to [`dial`] and
//! [`Listener::bind`]; this crate keeps no global state.
//!
//! This crate knows bytes, not messages: framing belongs to `drpc-proto`.
//! Its one assumption about the bytes is the write-half contract on
//! [`WriteHalf`]: a flush ends a run of whole frames.
//!
//! ```no_run
//! # async fn demo() -> Result<(), drpc_socket::SocketError> {
//! use drpc_socket::{Addr, Listener, TransportConfig};
//!
//! let config = TransportConfig::default();
//! let addr: Addr = "tcp://127.0.0.1:0".parse()?;
//! let mut listener = Listener::bind(&addr, &config).await?;
//! let client = drpc_socket::dial(listener.local_addr(), &config).await?;
//! let server = listener.accept().await?.finish().await?;
//! assert_eq!(client.peer_addr(), server.local_addr());
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod addr;
mod config;
#[cfg(unix)]
mod inherit;
#[cfg(feature = "kcp")]
pub mod kcp;
mod listener;
pub mod memory;
#[cfg(feature = "quic")]
pub mod quic;
#[cfg(feature = "tcp")]
mod tcp;
#[cfg(any(feature = "tls", feature = "quic"))]
pub mod tls;
mod transport;
#[cfg(any(feature = "quic", feature = "kcp"))]
mod udp;
#[cfg(all(feature = "unix", unix))]
mod unix;
#[cfg(feature = "ws")]
pub mod ws;

pub use addr::{Addr, Scheme};
pub use config::TransportConfig;
#[cfg(unix)]
pub use inherit::Inherited;
pub use listener::{Accepting, Listener};
pub use transport::{BoxFuture, Transport, TransportListener};

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};

/// The read half of a socket.
pub type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;

/// The write half of a socket.
///
/// Writers must keep one contract: **a flush ends a run of whole frames.**
/// Stream transports ignore it, but the QUIC transport sends the bytes
/// written between two flushes on a stream of their own, so a flush in the
/// middle of a frame would split it across streams. Shutting the half down
/// (`AsyncWriteExt::shutdown`) flushes and tells the peer no more bytes
/// will come.
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
    /// The transport's settings are missing or unusable: no certificate
    /// for a TLS listener, an unreadable key file, a KCP MTU out of range.
    #[error("{0}")]
    Config(String),
    /// The connection opened but its handshake failed: a certificate the
    /// other side does not trust, a name that does not match, no common
    /// protocol version.
    #[error("{op} {addr}: handshake failed: {reason}")]
    Handshake {
        /// `dial` or `accept`.
        op: &'static str,
        /// The address involved.
        addr: String,
        /// What went wrong, in the TLS library's words.
        reason: String,
    },
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
    finished: Finished,
    ordered: bool,
}

/// Completes when a transport's own close has finished, after both halves
/// of its socket were dropped: a QUIC connection's close sent and drained,
/// a KCP conversation's last bytes and end marker acknowledged (or its
/// linger run out). Until then the transport works in background tasks
/// that a process exiting would cut short. Stream transports (TCP, Unix,
/// TLS) have nothing left to do: theirs is complete at once.
#[must_use = "a future does nothing unless awaited"]
pub struct Finished(Option<Pin<Box<dyn Future<Output = ()> + Send + 'static>>>);

impl Finished {
    /// Complete at once.
    pub fn done() -> Self {
        Self(None)
    }

    /// Complete when `fut` is.
    pub fn when(fut: impl Future<Output = ()> + Send + 'static) -> Self {
        Self(Some(Box::pin(fut)))
    }
}

impl Future for Finished {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.0.as_mut() {
            None => Poll::Ready(()),
            Some(f) => {
                let done = f.as_mut().poll(cx);
                if done.is_ready() {
                    self.0 = None;
                }
                done
            }
        }
    }
}

impl std::fmt::Debug for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Finished(pending)"
        } else {
            "Finished(done)"
        })
    }
}

/// A socket taken apart by [`Socket::into_parts`].
#[non_exhaustive]
pub struct Parts {
    /// The read half.
    pub read: ReadHalf,
    /// The write half.
    pub write: WriteHalf,
    /// This end's address.
    pub local: Addr,
    /// The other end's address.
    pub peer: Addr,
    /// Completes when the transport's close has finished, once both
    /// halves are dropped.
    pub finished: Finished,
    /// Whether whole messages arrive in the order the peer sent them (see
    /// [`Socket::unordered`]).
    pub ordered: bool,
}

impl Socket {
    /// A socket over any connected byte stream: a connection the
    /// application already has (from another library, a proxy, a test),
    /// split into halves. `local` and `peer` name its two ends, for logs
    /// and plugins.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use drpc_socket::{Addr, Socket};
    ///
    /// let (a, _b) = tokio::io::duplex(1024);
    /// let local: Addr = "mem://a".parse().unwrap();
    /// let peer: Addr = "mem://b".parse().unwrap();
    /// let socket = Socket::from_stream(a, local, peer.clone());
    /// assert_eq!(socket.peer_addr(), &peer);
    /// # }
    /// ```
    pub fn from_stream<S>(stream: S, local: Addr, peer: Addr) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (r, w) = tokio::io::split(stream);
        Self::from_parts(Box::new(r), Box::new(w), local, peer)
    }

    /// A socket from halves a transport made; for transports outside this crate.
    pub fn from_parts(read: ReadHalf, write: WriteHalf, local: Addr, peer: Addr) -> Self {
        Self {
            read,
            write,
            local,
            peer,
            finished: Finished::done(),
            ordered: true,
        }
    }

    /// The same socket, over which the peer's writes (each a whole number
    /// of messages, as drpc's batches are) may arrive in another order
    /// than they were sent, as QUIC's stream per batch delivers them. The
    /// bytes of each write stay in order, and the end of the stream still
    /// comes after all of them.
    pub fn unordered(mut self) -> Self {
        self.ordered = false;
        self
    }

    /// Whether the peer's writes arrive in the order it made them.
    pub fn is_ordered(&self) -> bool {
        self.ordered
    }

    /// The same socket, whose transport finishes its close when `finished`
    /// completes (see [`Finished`]).
    pub fn with_finished(mut self, finished: Finished) -> Self {
        self.finished = finished;
        self
    }

    /// This end's address.
    pub fn local_addr(&self) -> &Addr {
        &self.local
    }

    /// The other end's address.
    pub fn peer_addr(&self) -> &Addr {
        &self.peer
    }

    /// The halves, the addresses, and the transport's [`Finished`].
    pub fn into_parts(self) -> Parts {
        Parts {
            read: self.read,
            write: self.write,
            local: self.local,
            peer: self.peer,
            finished: self.finished,
            ordered: self.ordered,
        }
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

/// Connects to `addr` with the transport registered in `config` for its
/// scheme, using that transport's settings.
///
/// This does not time out by itself (a KCP or QUIC peer that never answers
/// is waited for); callers bound it, as drpc's endpoint does with its dial
/// timeout.
pub async fn dial(addr: &Addr, config: &TransportConfig) -> Result<Socket, SocketError> {
    config.transports.get(addr)?.dial(addr, config).await
}

/// Listens on TCP at `addr`'s host and port as the `tcp` transport does
/// (address reuse, a kernel queue of `backlog` connections), and returns
/// the listener and the address bound, in `addr`'s scheme: for transports
/// built on TCP, such as an HTTP gateway.
#[cfg(feature = "tcp")]
pub async fn bind_tcp(
    addr: &Addr,
    config: &TransportConfig,
) -> Result<(tokio::net::TcpListener, Addr), SocketError> {
    tcp::bind(addr, config).await
}

/// A copy of a TCP listener's socket, for a transport built on
/// [`bind_tcp`] to implement [`TransportListener::hand_off`] with.
///
/// Errors: the system is out of file descriptors.
#[cfg(unix)]
pub fn hand_off_tcp(
    listener: &tokio::net::TcpListener,
    local: &Addr,
) -> Result<std::os::fd::OwnedFd, SocketError> {
    tcp::hand_off(listener, local)
}

#[cfg(test)]
mod tests;
