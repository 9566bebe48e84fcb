//! QUIC through quinn: each batch of messages on a stream of its own.
//!
//! A drpc session is one QUIC connection, and each direction is carried on
//! unidirectional streams in one of two ways ([`StreamMode`]):
//!
//! - **Per batch** (the default): the bytes a writer hands over between two
//!   flushes (whole frames, by the [`WriteHalf`](crate::WriteHalf)
//!   contract) travel on a new stream, which the receiver reads to its end
//!   before passing it on. A lost packet delays only the batch it belongs
//!   to: no head-of-line blocking between batches. Messages written in
//!   different batches may arrive out of order (calls and replies are
//!   matched by sequence number, so only pushes can notice).
//! - **Single**: one long-lived stream, TCP's behaviour and TCP's
//!   head-of-line blocking, at a fraction of the per-message cost.
//!
//! The first byte of every stream says which it is, so a receiver needs no
//! setting. `docs/PROTOCOL.md` has the full mapping: the ALPN string, the
//! stream types, the end marker and the close codes.

mod read;
mod write;

use crate::addr::{resolve, sock_addr};
use crate::transport::{BoxFuture, Transport, TransportListener};
use crate::{Accepting, Addr, Finished, Scheme, Socket, SocketError, TransportConfig};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, ConnectionError, VarInt};
use read::{pump, QuicRead};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use write::QuicWrite;

/// The first byte of a stream that carries one batch of whole frames.
pub(crate) const STREAM_BATCH: u8 = 0;
/// The first byte of the one long-lived stream of a direction.
pub(crate) const STREAM_SINGLE: u8 = 1;

/// The application error code of a clean close: both sides sent their end
/// marker.
pub const CLOSE_DONE: u32 = 0;
/// The application error code of an abrupt close: a side went away without
/// sending its end marker.
pub const CLOSE_ABORTED: u32 = 1;

/// How a session's outgoing messages map onto QUIC streams. Each side picks
/// for its own direction; a receiver handles either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamMode {
    /// Each flushed batch of messages on a stream of its own: a lost packet
    /// or a large message delays only its own batch. The default, since
    /// freedom from head-of-line blocking is what QUIC is for.
    PerBatch,
    /// One long-lived stream, like TCP: head-of-line blocking, but no
    /// per-stream cost. About 1.9 times the calls per second of `PerBatch`
    /// at 100 calls in flight on a clean loopback link (see the README's
    /// benchmark).
    Single,
}

/// Tuning for `quic://`. Certificates come from
/// [`TransportConfig::tls`](crate::TransportConfig).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct QuicConfig {
    /// How outgoing messages map onto streams. Default:
    /// [`StreamMode::PerBatch`].
    pub streams: StreamMode,
    /// A connection with no packets from the peer for this long is closed,
    /// and its session ends. Default: 30 s, like TCP keepalive-based
    /// detection but bounded; with `keep_alive` it finds a vanished peer
    /// even on an idle session.
    pub idle_timeout: Duration,
    /// How often an idle connection sends a PING so the idle timeout only
    /// fires for a peer that is really gone. Default: 10 s, a third of the
    /// idle timeout, so two lost pings are survived.
    pub keep_alive: Option<Duration>,
    /// How many streams (batches of messages) the peer may have open
    /// toward us at once. Default: 256, well above what a busy session has
    /// in flight on loopback, so it never throttles; it bounds the peer's
    /// parallelism, not its throughput.
    pub max_concurrent_streams: u32,
    /// How many incoming streams are read at once. Each may be buffered up
    /// to `max_stream_len`, so this times that bounds the memory a session
    /// spends on partial streams. Default: 8.
    pub parallel_reads: usize,
    /// How many batches may be on their way out at once, each on its own
    /// stream, so a large one does not hold up the small ones flushed after
    /// it. Each holds its bytes until quinn has taken them, so this times
    /// the write batch (or the largest frame) bounds the memory they use.
    /// Default: 32.
    pub parallel_sends: usize,
    /// The longest batch stream accepted, in bytes. A batch holds whole frames,
    /// so this must be at least the largest frame plus one write batch;
    /// drpc's endpoint raises it to that when it is lower. Default:
    /// 8 MiB + 64 KiB, drpc's default frame limit plus its write batch.
    pub max_stream_len: usize,
    /// After a session ends, how long the connection stays open for the
    /// peer's end marker and "read all" before it is closed anyway.
    /// Default: 3 s.
    pub close_linger: Duration,
    /// The receive and send buffers asked of the kernel for each UDP
    /// socket (a listener's is shared by its connections). Default: 4 MiB,
    /// so a burst of a full congestion window is not dropped by the
    /// receiving kernel (its usual 208 KiB dropped them by the hundred on
    /// loopback). The kernel caps it (Linux: `net.core.rmem_max`,
    /// `wmem_max`); a smaller grant is logged. 0 leaves the kernel's default.
    pub socket_buffer: usize,
    /// The secret stateless-reset tokens are made from (RFC 9000, 10.3). A
    /// server restarted with the same secret answers the packets of its old
    /// connections with a reset, so their peers find out at once instead of
    /// after the idle timeout. Default: `None`, which derives it from the
    /// server's private key when the certificates came from
    /// [`TlsConfig::with_server_pem`](crate::tls::TlsConfig::with_server_pem)
    /// (the same key, the same secret, across restarts), and otherwise
    /// picks a random one per listener. Keep it secret: who knows it can
    /// reset this server's connections.
    pub reset_key: Option<[u8; 32]>,
}

impl Default for QuicConfig {
    fn default() -> Self {
        Self {
            streams: StreamMode::PerBatch,
            idle_timeout: Duration::from_secs(30),
            keep_alive: Some(Duration::from_secs(10)),
            max_concurrent_streams: 256,
            parallel_reads: 8,
            parallel_sends: 32,
            max_stream_len: 8 * 1024 * 1024 + 64 * 1024,
            close_linger: Duration::from_secs(3),
            socket_buffer: 4 * 1024 * 1024,
            reset_key: None,
        }
    }
}

/// The endpoint's settings: its stateless-reset key, from configuration
/// when there is one (see [`QuicConfig::reset_key`]).
fn endpoint_config(config: &TransportConfig) -> quinn::EndpointConfig {
    let Some(secret) = config.quic.reset_key.or(config.tls.reset_secret) else {
        return quinn::EndpointConfig::default();
    };
    let mut endpoint = quinn::EndpointConfig::new(Arc::new(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        &secret,
    )));
    // Connection IDs carry a keyed check, and a packet whose ID fails it is
    // dropped without a reset: a restarted endpoint must check with the
    // same key to recognise its predecessor's IDs and answer them.
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&secret[..8]);
    let cid_key = u64::from_le_bytes(cid_key);
    endpoint.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    endpoint
}

/// A QUIC endpoint on a UDP socket of its own, sized as configured.
fn endpoint(
    at: SocketAddr,
    config: &TransportConfig,
    server: Option<quinn::ServerConfig>,
) -> io::Result<quinn::Endpoint> {
    let socket = crate::udp::bind(at, config.quic.socket_buffer)?;
    let runtime =
        quinn::default_runtime().ok_or_else(|| io::Error::other("QUIC needs a tokio runtime"))?;
    quinn::Endpoint::new(endpoint_config(config), server, socket, runtime)
}

fn transport(cfg: &QuicConfig) -> Result<Arc<quinn::TransportConfig>, SocketError> {
    let mut t = quinn::TransportConfig::default();
    // QUIC restarts its idle timer once more, when it first sends after it
    // last heard the peer; the keep-alive sends at most `keep_alive` later.
    // Shortened by that much, a vanished peer is noticed within
    // `idle_timeout` as documented, not up to a keep-alive later.
    let idle = match cfg.keep_alive {
        Some(ka) if ka < cfg.idle_timeout => cfg.idle_timeout - ka,
        _ => cfg.idle_timeout,
    };
    let idle = quinn::IdleTimeout::try_from(idle)
        .map_err(|_| SocketError::Config("QuicConfig::idle_timeout is too long".into()))?;
    t.max_idle_timeout(Some(idle))
        .keep_alive_interval(cfg.keep_alive)
        .max_concurrent_uni_streams(VarInt::from_u32(cfg.max_concurrent_streams))
        // drpc opens no bidirectional streams; refusing them keeps a peer
        // from parking state on ones nobody reads.
        .max_concurrent_bidi_streams(VarInt::from_u32(0));
    Ok(Arc::new(t))
}

fn with_alpn<T: Clone>(config: &T, alpn: impl FnOnce(&mut T)) -> T {
    let mut c = config.clone();
    alpn(&mut c);
    c
}

async fn dial(addr: &Addr, config: &TransportConfig) -> Result<Socket, SocketError> {
    let tls = config.tls.client("quic")?;
    let tls = with_alpn(&*tls, |c| {
        if c.alpn_protocols.is_empty() {
            c.alpn_protocols = vec![crate::tls::ALPN.to_vec()];
        }
    });
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| {
        SocketError::Config(format!(
            "the TLS client config cannot be used for QUIC: {e}"
        ))
    })?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(transport(&config.quic)?);
    let name = config.tls.server_name_text(addr);
    let remote = resolve(addr, "dial").await?;
    let bind: SocketAddr = if remote.is_ipv6() {
        "[::]:0".parse().expect("literal")
    } else {
        "0.0.0.0:0".parse().expect("literal")
    };
    let endpoint = endpoint(bind, config, None).map_err(|e| SocketError::io("dial", addr, e))?;
    let conn = endpoint
        .connect_with(client, remote, &name)
        .map_err(|e| SocketError::Config(format!("dial {addr}: {e}")))?
        .await
        .map_err(|e| handshake_error("dial", addr, e))?;
    let local = endpoint
        .local_addr()
        .map_err(|e| SocketError::io("dial", addr, e))?;
    Ok(socket(conn, endpoint, local, &config.quic, Side::Dialed))
}

fn handshake_error(op: &'static str, addr: &Addr, e: ConnectionError) -> SocketError {
    match e {
        ConnectionError::TimedOut => SocketError::io(
            op,
            addr,
            io::Error::new(io::ErrorKind::TimedOut, "no answer from the peer"),
        ),
        e => SocketError::Handshake {
            op,
            addr: addr.to_string(),
            reason: e.to_string(),
        },
    }
}

/// `quic://host:port`.
pub(crate) struct Quic;

impl Transport for Quic {
    fn dial<'a>(
        &'a self,
        addr: &'a Addr,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Socket, SocketError>> {
        Box::pin(dial(addr, config))
    }

    fn bind<'a>(
        &'a self,
        addr: &'a Addr,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Box<dyn TransportListener>, SocketError>> {
        Box::pin(async move {
            let l = QuicListener::bind(addr, config).await?;
            Ok(Box::new(l) as Box<dyn TransportListener>)
        })
    }
}

impl TransportListener for QuicListener {
    fn local_addr(&self) -> &Addr {
        &self.local
    }

    fn accept(&mut self) -> BoxFuture<'_, Result<Accepting, SocketError>> {
        Box::pin(async move { Ok(Accepting::handshake(QuicListener::accept(self).await?)) })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(QuicListener::close(*self))
    }
}

/// Accepts QUIC connections on one UDP address.
pub(crate) struct QuicListener {
    endpoint: quinn::Endpoint,
    local: Addr,
    quic: QuicConfig,
}

impl QuicListener {
    async fn bind(addr: &Addr, config: &TransportConfig) -> Result<Self, SocketError> {
        let tls = config.tls.server("quic")?;
        let tls = with_alpn(&*tls, |c| {
            if c.alpn_protocols.is_empty() {
                c.alpn_protocols = vec![crate::tls::ALPN.to_vec()];
            }
        });
        let crypto = QuicServerConfig::try_from(tls).map_err(|e| {
            SocketError::Config(format!(
                "the TLS server config cannot be used for QUIC: {e}"
            ))
        })?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(transport(&config.quic)?);
        let at = resolve(addr, "listen").await?;
        let endpoint =
            endpoint(at, config, Some(server)).map_err(|e| SocketError::io("listen", addr, e))?;
        let local = endpoint
            .local_addr()
            .map_err(|e| SocketError::io("listen", addr, e))?;
        Ok(Self {
            endpoint,
            local: sock_addr(Scheme::QUIC, local),
            quic: config.quic.clone(),
        })
    }

    /// The next incoming connection, as a future that completes its
    /// handshake.
    async fn accept(
        &self,
    ) -> Result<impl Future<Output = Result<Socket, SocketError>> + Send + 'static, SocketError>
    {
        let incoming = self.endpoint.accept().await.ok_or_else(|| {
            SocketError::io(
                "accept",
                &self.local,
                io::Error::new(io::ErrorKind::NotConnected, "the QUIC endpoint is closed"),
            )
        })?;
        let (endpoint, quic, listen) =
            (self.endpoint.clone(), self.quic.clone(), self.local.clone());
        Ok(async move {
            let peer = sock_addr(Scheme::QUIC, incoming.remote_address());
            let conn = incoming
                .await
                .map_err(|e| handshake_error("accept", &peer, e))?;
            let local = endpoint
                .local_addr()
                .map_err(|e| SocketError::io("accept", &listen, e))?;
            Ok(socket(conn, endpoint, local, &quic, Side::Accepted))
        })
    }
}

impl QuicListener {
    /// Refuses new connections and waits until every connection it
    /// accepted has closed and its close has been sent and drained.
    async fn close(self) {
        self.endpoint.set_server_config(None);
        self.endpoint.wait_idle().await;
    }
}

impl Drop for QuicListener {
    fn drop(&mut self) {
        // Refuse new connections; the ones already accepted carry on.
        self.endpoint.set_server_config(None);
    }
}

/// Where the closing handshake is: this side's end marker sent, the peer's
/// read (and everything before it passed on).
#[derive(Default)]
pub(crate) struct Ends {
    pub(crate) sent: bool,
    pub(crate) received: bool,
}

pub(crate) struct Shared {
    pub(crate) ends: parking_lot::Mutex<Ends>,
    /// The first failure of a background batch send; later writes report it.
    pub(crate) send_error: parking_lot::Mutex<Option<String>>,
    /// Tells the pump that this side's end marker is out.
    pub(crate) marker_sent: tokio::sync::Notify,
}

/// Tells the pump that both halves are gone.
pub(crate) struct HalvesGuard(Option<oneshot::Sender<()>>);

impl Drop for HalvesGuard {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// Whether a connection has a client endpoint of its own (dialed) or
/// shares its listener's (accepted).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Dialed,
    Accepted,
}

fn socket(
    conn: Connection,
    endpoint: quinn::Endpoint,
    local: SocketAddr,
    cfg: &QuicConfig,
    side: Side,
) -> Socket {
    let peer = sock_addr(Scheme::QUIC, conn.remote_address());
    let local = sock_addr(Scheme::QUIC, local);
    let shared = Arc::new(Shared {
        ends: parking_lot::Mutex::new(Ends::default()),
        send_error: parking_lot::Mutex::new(None),
        marker_sent: tokio::sync::Notify::new(),
    });
    // Enough room that a burst of small batches never waits on the reader,
    // few enough that a stalled reader stops the pump (and so, through
    // flow control, the peer) soon.
    let (tx, rx) = mpsc::channel(16);
    let (gone_tx, gone_rx) = oneshot::channel();
    let guard = Arc::new(HalvesGuard(Some(gone_tx)));
    let pump = tokio::spawn(pump(
        conn.clone(),
        endpoint.clone(),
        tx,
        shared.clone(),
        gone_rx,
        cfg.clone(),
    ));
    let parallel = cfg.parallel_sends.max(1);
    let sends = Arc::new(tokio::sync::Semaphore::new(parallel));
    let read = QuicRead::new(rx, guard.clone());
    let write = QuicWrite::new(conn, cfg, sends.clone(), shared, guard);
    // The connection's close is done when the pump has seen both end
    // markers (or given up) and closed it, every batch send has ended, and,
    // for a dialed connection, its own endpoint has sent the close and
    // drained. An accepted one's close frame goes out with its listener's
    // endpoint, which `Listener::close` waits for.
    let finished = Finished::when(async move {
        let _ = pump.await;
        let _ = sends.acquire_many(parallel as u32).await;
        if side == Side::Dialed {
            endpoint.wait_idle().await;
        }
    });
    // A peer that sends a stream per batch: its batches may overtake
    // each other.
    Socket::from_parts(Box::new(read), Box::new(write), local, peer)
        .with_finished(finished)
        .unordered()
}
