//! Settings for the transports, owned by whoever dials and listens.

use crate::transport::{Transport, Transports};
use crate::{Scheme, SocketError};
use std::sync::Arc;
use std::time::Duration;

/// The transports an endpoint may use, by scheme, and the settings of
/// every transport compiled into this build.
///
/// The built-in transports are registered at once; [`register`] adds a
/// transport of your own, or replaces a built-in one. TCP and Unix sockets
/// need no settings. `tls` holds the certificates that both
/// `tls://` and `quic://` use, `quic` and `kcp` their own tuning. The
/// defaults work for KCP; TLS and QUIC need at least a certificate to
/// listen and a trust root to dial (see the `tls` module).
///
/// ```
/// use drpc_socket::TransportConfig;
/// use std::time::Duration;
///
/// let mut config = TransportConfig::default();
/// config.handshake_timeout = Duration::from_secs(5);
/// assert!(config.schemes().contains(&"tcp"));
/// ```
///
/// [`register`]: TransportConfig::register
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TransportConfig {
    /// How long an accepted connection may take to finish its handshake
    /// (TLS, QUIC) before it is dropped. Default: 10 s, long enough for a
    /// slow link, short enough that half-open handshakes cannot pile up.
    /// Dials are bounded by their caller instead.
    pub handshake_timeout: Duration,
    /// How many connections a TCP (or TLS) listener's kernel queue holds
    /// before they are accepted. Default: 1024, so a burst of connects is
    /// queued rather than dropped (a dropped SYN costs the dialer a second
    /// or more before it retries); the kernel caps it at
    /// `net.core.somaxconn`.
    pub tcp_backlog: u32,
    /// The largest frame the sessions over these transports accept, for a
    /// transport that makes frames itself (the HTTP gateway bounds request
    /// bodies by it). drpc's endpoint sets it to its own frame limit.
    /// Default: 8 MiB, drpc's default frame limit.
    pub max_frame_len: usize,
    /// Certificates for `tls://` and `quic://`.
    #[cfg(any(feature = "tls", feature = "quic"))]
    pub tls: crate::tls::TlsConfig,
    /// Tuning for `quic://`.
    #[cfg(feature = "quic")]
    pub quic: crate::quic::QuicConfig,
    /// Tuning for `kcp://`.
    #[cfg(feature = "kcp")]
    pub kcp: crate::kcp::KcpConfig,
    /// Tuning for `ws://` and `wss://`.
    #[cfg(feature = "ws")]
    pub ws: crate::ws::WsConfig,
    /// Listening sockets handed to this process at its start (by the
    /// process it replaces, or by systemd): a listener whose address
    /// matches one takes it instead of binding. Empty by default; drpc's
    /// `Restart::from_env` fills it.
    #[cfg(unix)]
    pub inherited: crate::Inherited,
    pub(crate) transports: Transports,
}

impl TransportConfig {
    /// Registers `transport` under `scheme`, so that addresses
    /// `scheme://...` dial and listen with it. Returns `true` when it
    /// replaced a transport already registered there (a built-in one, say).
    ///
    /// Errors: a scheme that is not a valid URL scheme (see
    /// [`Scheme::new`]).
    pub fn register(
        &mut self,
        scheme: &str,
        transport: impl Transport,
    ) -> Result<bool, SocketError> {
        self.register_arc(scheme, Arc::new(transport))
    }

    /// [`register`](Self::register) for a transport the caller shares.
    pub fn register_arc(
        &mut self,
        scheme: &str,
        transport: Arc<dyn Transport>,
    ) -> Result<bool, SocketError> {
        let scheme = Scheme::new(scheme)?;
        Ok(self.transports.insert(scheme, transport).is_some())
    }

    /// The schemes that have a transport, in order.
    pub fn schemes(&self) -> Vec<&str> {
        self.transports.names()
    }

    /// Makes sure a transport that carries each flushed batch as a unit
    /// (QUIC, per batch) accepts batches of `len` bytes, raising its limit
    /// if it is lower. drpc's endpoint calls this with its frame limit plus
    /// its write batch.
    pub fn fit_batches(&mut self, len: usize) {
        let _ = len;
        #[cfg(feature = "quic")]
        {
            self.quic.max_stream_len = self.quic.max_stream_len.max(len);
        }
        #[cfg(feature = "ws")]
        {
            self.ws.max_message_len = self.ws.max_message_len.max(len);
        }
    }
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            tcp_backlog: 1024,
            max_frame_len: 8 * 1024 * 1024,
            #[cfg(any(feature = "tls", feature = "quic"))]
            tls: Default::default(),
            #[cfg(feature = "quic")]
            quic: Default::default(),
            #[cfg(feature = "kcp")]
            kcp: Default::default(),
            #[cfg(feature = "ws")]
            ws: Default::default(),
            #[cfg(unix)]
            inherited: Default::default(),
            transports: Transports::built_in(),
        }
    }
}
