//! Settings for the transports, owned by whoever dials and listens.

use std::time::Duration;

/// Settings for every transport compiled into this build.
///
/// TCP and Unix sockets need none. `tls` holds the certificates that both
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
/// ```
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
    /// Certificates for `tls://` and `quic://`.
    #[cfg(any(feature = "tls", feature = "quic"))]
    pub tls: crate::tls::TlsConfig,
    /// Tuning for `quic://`.
    #[cfg(feature = "quic")]
    pub quic: crate::quic::QuicConfig,
    /// Tuning for `kcp://`.
    #[cfg(feature = "kcp")]
    pub kcp: crate::kcp::KcpConfig,
}

impl TransportConfig {
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
    }
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            tcp_backlog: 1024,
            #[cfg(any(feature = "tls", feature = "quic"))]
            tls: Default::default(),
            #[cfg(feature = "quic")]
            quic: Default::default(),
            #[cfg(feature = "kcp")]
            kcp: Default::default(),
        }
    }
}
