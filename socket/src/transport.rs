//! Transports as a trait, and the registry that maps schemes to them.
//!
//! Every transport, built in or not, is a [`Transport`] registered in a
//! [`TransportConfig`] under the scheme its addresses use. [`dial`] and
//! [`Listener::bind`] look the scheme up there, so a transport written
//! outside this crate is used exactly as `tcp://` is.
//!
//! [`dial`]: crate::dial
//! [`Listener::bind`]: crate::Listener::bind

use crate::{Accepting, Addr, Scheme, Socket, SocketError, TransportConfig};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed future that is `Send`, as transports return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A way to open byte streams: dial an address, or listen on one.
///
/// Implement it for a transport of your own and register it with
/// [`TransportConfig::register`]; drpc's endpoint then dials, redials and
/// listens on its addresses as on any other. A transport is shared by every
/// dial and listen of the config it is registered in, so it keeps no state
/// for one connection (that belongs in the [`Socket`]).
///
/// ```
/// use drpc_socket::{Addr, BoxFuture, Listener, Socket, SocketError, Transport, TransportConfig};
/// use drpc_socket::TransportListener;
///
/// /// `tcp4://host:port`: TCP under another name, as a stand-in for a
/// /// transport of your own.
/// struct Tcp4;
///
/// impl Transport for Tcp4 {
///     fn dial<'a>(&'a self, addr: &'a Addr, config: &'a TransportConfig)
///         -> BoxFuture<'a, Result<Socket, SocketError>>
///     {
///         Box::pin(async move {
///             let tcp: Addr = format!("tcp://{}", addr.target()).parse()?;
///             drpc_socket::dial(&tcp, config).await
///         })
///     }
///
///     fn bind<'a>(&'a self, addr: &'a Addr, config: &'a TransportConfig)
///         -> BoxFuture<'a, Result<Box<dyn TransportListener>, SocketError>>
///     {
///         Box::pin(async move {
///             let tcp: Addr = format!("tcp://{}", addr.target()).parse()?;
///             let inner = Listener::bind(&tcp, config).await?;
///             Ok(Box::new(inner) as Box<dyn TransportListener>)
///         })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), SocketError> {
/// let mut config = TransportConfig::default();
/// config.register("tcp4", Tcp4)?;
/// let mut listener = Listener::bind(&"tcp4://127.0.0.1:0".parse()?, &config).await?;
/// let port = listener.local_addr().target().rsplit_once(':').unwrap().1.to_string();
/// let client = drpc_socket::dial(&format!("tcp4://127.0.0.1:{port}").parse()?, &config).await?;
/// let server = listener.accept().await?.finish().await?;
/// assert_eq!(client.peer_addr(), server.local_addr());
/// # Ok(()) }
/// ```
pub trait Transport: Send + Sync + 'static {
    /// Connects to `addr`. Need not time out by itself: callers bound a
    /// dial (drpc's endpoint with its dial timeout).
    fn dial<'a>(
        &'a self,
        addr: &'a Addr,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Socket, SocketError>>;

    /// Starts listening on `addr`.
    fn bind<'a>(
        &'a self,
        addr: &'a Addr,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Box<dyn TransportListener>, SocketError>>;
}

/// A transport's listening socket, as [`Transport::bind`] makes it.
///
/// [`Listener`](crate::Listener) wraps one and adds what every transport
/// shares: the handshake timeout, and its `Debug`.
pub trait TransportListener: Send + 'static {
    /// The address bound, with the real port when port 0 was asked for.
    fn local_addr(&self) -> &Addr;

    /// The next peer. Return a slow handshake (TLS, say) as
    /// [`Accepting::handshake`] rather than running it here, so that one
    /// slow peer cannot hold up the accept loop.
    fn accept(&mut self) -> BoxFuture<'_, Result<Accepting, SocketError>>;

    /// Stops listening and completes when the transport's own work for the
    /// connections it accepted is done (see
    /// [`Listener::close`](crate::Listener::close)). The default has none.
    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }

    /// A copy of the listening socket, for a process that takes over this
    /// address (a restart): from now on closing this listener must leave
    /// the address to the copy (a Unix listener no longer removes its
    /// socket file). TCP, Unix, TLS, WebSocket and the HTTP gateway can;
    /// the default refuses, as QUIC and KCP (UDP) do.
    #[cfg(unix)]
    fn hand_off(&mut self) -> Result<std::os::fd::OwnedFd, SocketError> {
        Err(SocketError::Io {
            op: "hand off",
            addr: self.local_addr().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "this transport's listeners cannot be handed to another process",
            ),
        })
    }
}

/// Transports by scheme: the built-in ones this build includes, and any
/// registered with [`TransportConfig::register`].
#[derive(Clone, Default)]
pub(crate) struct Transports {
    by_scheme: BTreeMap<Scheme, Arc<dyn Transport>>,
}

impl Transports {
    /// The transports compiled into this build.
    pub(crate) fn built_in() -> Self {
        #[allow(unused_mut)]
        let mut t = Self::default();
        #[cfg(feature = "tcp")]
        t.insert(Scheme::TCP, Arc::new(crate::tcp::Tcp));
        #[cfg(all(feature = "unix", unix))]
        t.insert(Scheme::UNIX, Arc::new(crate::unix::Unix));
        #[cfg(feature = "tls")]
        t.insert(Scheme::TLS, Arc::new(crate::tls::Tls));
        #[cfg(feature = "quic")]
        t.insert(Scheme::QUIC, Arc::new(crate::quic::Quic));
        #[cfg(feature = "kcp")]
        t.insert(Scheme::KCP, Arc::new(crate::kcp::Kcp));
        #[cfg(feature = "ws")]
        t.insert(Scheme::WS, Arc::new(crate::ws::WebSocket { secure: false }));
        #[cfg(feature = "wss")]
        t.insert(Scheme::WSS, Arc::new(crate::ws::WebSocket { secure: true }));
        t
    }

    pub(crate) fn insert(
        &mut self,
        scheme: Scheme,
        transport: Arc<dyn Transport>,
    ) -> Option<Arc<dyn Transport>> {
        self.by_scheme.insert(scheme, transport)
    }

    /// The transport for `addr`'s scheme, or why there is none.
    pub(crate) fn get(&self, addr: &Addr) -> Result<&Arc<dyn Transport>, SocketError> {
        let scheme = addr.scheme();
        self.by_scheme.get(scheme).ok_or_else(|| {
            if *scheme == Scheme::MEMORY {
                crate::memory::not_dialable()
            } else if KNOWN.contains(&scheme.as_str()) {
                SocketError::Unsupported(scheme.to_string())
            } else {
                SocketError::BadAddr {
                    addr: addr.to_string(),
                    reason: format!(
                        "no transport is registered for {:?}; this config has: {}",
                        scheme.as_str(),
                        self.names().join(", ")
                    ),
                }
            }
        })
    }

    pub(crate) fn names(&self) -> Vec<&str> {
        self.by_scheme.keys().map(Scheme::as_str).collect()
    }
}

/// The schemes this crate implements behind cargo features.
const KNOWN: [&str; 7] = ["tcp", "unix", "tls", "quic", "kcp", "ws", "wss"];

impl fmt::Debug for Transports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}
