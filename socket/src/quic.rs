//! QUIC through quinn: each batch of messages on a stream of its own.
//!
//! A drpc session is one QUIC connection. The bytes a writer hands over
//! between two flushes (whole frames, by the [`WriteHalf`](crate::WriteHalf)
//! contract) travel on a new unidirectional stream, which the receiver
//! reads to its end before passing it on. A large message therefore never
//! holds up the small ones sent after it, and a lost packet delays only the
//! stream it belongs to: no head-of-line blocking between batches. The
//! price is that messages written in different batches may arrive out of
//! order (calls and replies are matched by sequence number, so only pushes
//! can notice). `docs/PROTOCOL.md` has the full mapping: the ALPN string,
//! the end marker and the close codes.

use crate::addr::sock_addr;
use crate::{Addr, Scheme, Socket, SocketError, TransportConfig};
use bytes::{Bytes, BytesMut};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, ConnectionError, VarInt};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

/// The application error code of a clean close: both sides sent their end
/// marker.
pub const CLOSE_DONE: u32 = 0;
/// The application error code of an abrupt close: a side went away without
/// sending its end marker.
pub const CLOSE_ABORTED: u32 = 1;

/// Tuning for `quic://`. Certificates come from
/// [`TransportConfig::tls`](crate::TransportConfig).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct QuicConfig {
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
    /// The longest stream accepted, in bytes. A batch holds whole frames,
    /// so this must be at least the largest frame plus one write batch;
    /// drpc's endpoint raises it to that when it is lower. Default:
    /// 8 MiB + 64 KiB, drpc's default frame limit plus its write batch.
    pub max_stream_len: usize,
    /// After a session ends, how long the connection stays open for the
    /// peer's end marker before it is closed anyway. Default: 3 s.
    pub close_linger: Duration,
}

impl Default for QuicConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30),
            keep_alive: Some(Duration::from_secs(10)),
            max_concurrent_streams: 256,
            parallel_reads: 8,
            max_stream_len: 8 * 1024 * 1024 + 64 * 1024,
            close_linger: Duration::from_secs(3),
        }
    }
}

fn transport(cfg: &QuicConfig) -> Result<Arc<quinn::TransportConfig>, SocketError> {
    let mut t = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(cfg.idle_timeout)
        .map_err(|_| SocketError::Config("QuicConfig::idle_timeout is too long".into()))?;
    t.max_idle_timeout(Some(idle))
        .keep_alive_interval(cfg.keep_alive)
        .max_concurrent_uni_streams(VarInt::from_u32(cfg.max_concurrent_streams))
        // drpc opens no bidirectional streams; refusing them keeps a peer
        // from parking state on ones nobody reads.
        .max_concurrent_bidi_streams(VarInt::from_u32(0));
    Ok(Arc::new(t))
}

async fn resolve(addr: &Addr, op: &'static str) -> Result<SocketAddr, SocketError> {
    tokio::net::lookup_host(addr.target())
        .await
        .map_err(|e| SocketError::io(op, addr, e))?
        .next()
        .ok_or_else(|| {
            SocketError::io(
                op,
                addr,
                io::Error::new(io::ErrorKind::NotFound, "the host has no address"),
            )
        })
}

fn with_alpn<T: Clone>(config: &T, alpn: impl FnOnce(&mut T)) -> T {
    let mut c = config.clone();
    alpn(&mut c);
    c
}

pub(crate) async fn dial(addr: &Addr, config: &TransportConfig) -> Result<Socket, SocketError> {
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
    let endpoint = quinn::Endpoint::client(bind).map_err(|e| SocketError::io("dial", addr, e))?;
    let conn = endpoint
        .connect_with(client, remote, &name)
        .map_err(|e| SocketError::Config(format!("dial {addr}: {e}")))?
        .await
        .map_err(|e| handshake_error("dial", addr, e))?;
    let local = endpoint
        .local_addr()
        .map_err(|e| SocketError::io("dial", addr, e))?;
    Ok(socket(conn, endpoint, local, &config.quic))
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

/// Accepts QUIC connections on one UDP address.
pub(crate) struct QuicListener {
    endpoint: quinn::Endpoint,
    local: Addr,
    quic: QuicConfig,
}

impl QuicListener {
    pub(crate) async fn bind(addr: &Addr, config: &TransportConfig) -> Result<Self, SocketError> {
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
            quinn::Endpoint::server(server, at).map_err(|e| SocketError::io("listen", addr, e))?;
        let local = endpoint
            .local_addr()
            .map_err(|e| SocketError::io("listen", addr, e))?;
        Ok(Self {
            endpoint,
            local: sock_addr(Scheme::Quic, local),
            quic: config.quic.clone(),
        })
    }

    pub(crate) fn local_addr(&self) -> &Addr {
        &self.local
    }

    /// The next incoming connection, as a future that completes its
    /// handshake.
    pub(crate) async fn accept(
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
            let peer = sock_addr(Scheme::Quic, incoming.remote_address());
            let conn = incoming
                .await
                .map_err(|e| handshake_error("accept", &peer, e))?;
            let local = endpoint
                .local_addr()
                .map_err(|e| SocketError::io("accept", &listen, e))?;
            Ok(socket(conn, endpoint, local, &quic))
        })
    }
}

impl Drop for QuicListener {
    fn drop(&mut self) {
        // Refuse new connections; the ones already accepted carry on.
        self.endpoint.set_server_config(None);
    }
}

/// Who sent the end marker first decides who closes the connection.
#[derive(Default)]
struct Ends {
    sent: bool,
    received: bool,
}

struct Shared {
    ends: parking_lot::Mutex<Ends>,
}

/// Tells the pump that both halves are gone.
struct HalvesGuard(Option<oneshot::Sender<()>>);

impl Drop for HalvesGuard {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

fn socket(
    conn: Connection,
    endpoint: quinn::Endpoint,
    local: SocketAddr,
    cfg: &QuicConfig,
) -> Socket {
    let peer = sock_addr(Scheme::Quic, conn.remote_address());
    let local = sock_addr(Scheme::Quic, local);
    let shared = Arc::new(Shared {
        ends: parking_lot::Mutex::new(Ends::default()),
    });
    // Enough room that a burst of small batches never waits on the reader,
    // few enough that a stalled reader stops the pump (and so, through
    // flow control, the peer) soon.
    let (tx, rx) = mpsc::channel(16);
    let (gone_tx, gone_rx) = oneshot::channel();
    let guard = Arc::new(HalvesGuard(Some(gone_tx)));
    tokio::spawn(pump(
        conn.clone(),
        endpoint,
        tx,
        shared.clone(),
        gone_rx,
        cfg.clone(),
    ));
    let read = QuicRead {
        rx,
        cur: Bytes::new(),
        _guard: guard.clone(),
    };
    let write = QuicWrite {
        conn,
        buf: BytesMut::new(),
        sending: None,
        fin: false,
        max: cfg.max_stream_len,
        shared,
        _guard: guard,
    };
    Socket::from_parts(Box::new(read), Box::new(write), local, peer)
}

/// Reads incoming streams, a few at a time, and hands each whole stream to
/// the read half in the order they complete. It lives as long as the
/// connection, so that after the session drops its halves it can still see
/// the peer's end marker and close the connection cleanly.
async fn pump(
    conn: Connection,
    _endpoint: quinn::Endpoint,
    tx: mpsc::Sender<io::Result<Bytes>>,
    shared: Arc<Shared>,
    mut gone: oneshot::Receiver<()>,
    cfg: QuicConfig,
) {
    let mut reads: JoinSet<Result<Vec<u8>, quinn::ReadToEndError>> = JoinSet::new();
    let mut tx = Some(tx);
    let mut fin_seen = false;
    let mut halves_gone = false;
    let linger = tokio::time::sleep(Duration::MAX);
    tokio::pin!(linger);
    let parallel = cfg.parallel_reads.max(1);
    loop {
        if fin_seen && reads.is_empty() && tx.is_some() {
            // Every stream opened before the end marker has been passed on.
            tx = None;
            let mut ends = shared.ends.lock();
            ends.received = true;
            if ends.sent {
                // We ended first (or both at once): the peer has read all we
                // sent, since it answered with its own end marker.
                conn.close(VarInt::from_u32(CLOSE_DONE), b"done");
                break;
            }
        }
        tokio::select! {
            s = conn.accept_uni(), if reads.len() < parallel && !fin_seen => match s {
                Ok(mut stream) => {
                    let max = cfg.max_stream_len;
                    reads.spawn(async move { stream.read_to_end(max).await });
                }
                Err(e) => {
                    if let Some(tx) = tx.take() {
                        if let Some(err) = closed_error(&e) {
                            let _ = tx.send(Err(err)).await;
                        }
                    }
                    break;
                }
            },
            Some(done) = reads.join_next() => {
                let item = match done {
                    Ok(Ok(bytes)) if bytes.is_empty() => {
                        fin_seen = true;
                        continue;
                    }
                    Ok(Ok(bytes)) => Ok(Bytes::from(bytes)),
                    Ok(Err(quinn::ReadToEndError::TooLong)) => Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("the peer sent a stream longer than {} bytes", cfg.max_stream_len),
                    )),
                    Ok(Err(quinn::ReadToEndError::Read(e))) => Err(io::Error::from(e)),
                    Err(_) => continue,
                };
                if let Some(t) = &tx {
                    let failed = item.is_err();
                    if t.send(item).await.is_err() {
                        // The read half is gone: keep draining for the marker.
                    } else if failed {
                        tx = None;
                    }
                }
            },
            _ = &mut gone, if !halves_gone => {
                halves_gone = true;
                if !shared.ends.lock().sent {
                    conn.close(VarInt::from_u32(CLOSE_ABORTED), b"aborted");
                    break;
                }
                linger.as_mut().reset(tokio::time::Instant::now() + cfg.close_linger);
            },
            _ = &mut linger => {
                conn.close(VarInt::from_u32(CLOSE_DONE), b"done");
                break;
            },
            _ = conn.closed(), if fin_seen => break,
        }
    }
    reads.abort_all();
}

/// The error a reader sees when the connection ends; `None` for a clean
/// end of stream.
fn closed_error(e: &ConnectionError) -> Option<io::Error> {
    match e {
        ConnectionError::ApplicationClosed(c) if c.error_code == VarInt::from_u32(CLOSE_DONE) => {
            None
        }
        ConnectionError::LocallyClosed => None,
        ConnectionError::ApplicationClosed(c) => Some(io::Error::new(
            io::ErrorKind::ConnectionReset,
            format!(
                "the peer closed the connection (code {}{})",
                c.error_code,
                if c.reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", String::from_utf8_lossy(&c.reason))
                }
            ),
        )),
        ConnectionError::TimedOut => Some(io::Error::new(
            io::ErrorKind::TimedOut,
            "no packets from the peer within the idle timeout",
        )),
        other => Some(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            other.to_string(),
        )),
    }
}

struct QuicRead {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
    _guard: Arc<HalvesGuard>,
}

impl AsyncRead for QuicRead {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.cur.is_empty() {
            match ready!(self.rx.poll_recv(cx)) {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = self.cur.len().min(buf.remaining());
        buf.put_slice(&self.cur.split_to(n));
        Poll::Ready(Ok(()))
    }
}

type Sending = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

struct QuicWrite {
    conn: Connection,
    buf: BytesMut,
    sending: Option<Sending>,
    fin: bool,
    max: usize,
    shared: Arc<Shared>,
    _guard: Arc<HalvesGuard>,
}

/// Opens a stream, writes `data` to it and finishes it. An empty `data`
/// is the end marker.
fn send_stream(conn: Connection, data: Bytes) -> Sending {
    Box::pin(async move {
        let mut s = conn.open_uni().await.map_err(io::Error::from)?;
        if !data.is_empty() {
            s.write_chunk(data).await?;
        }
        s.finish()
            .map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, e))?;
        Ok(())
    })
}

impl QuicWrite {
    fn poll_sending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(f) = &mut self.sending {
            let r = ready!(f.as_mut().poll(cx));
            self.sending = None;
            r?;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for QuicWrite {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.fin {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the write half is shut down",
            )));
        }
        // A stream still being handed to quinn goes first, so batches
        // leave in the order they were flushed.
        ready!(self.poll_sending(cx))?;
        if self.buf.len() + data.len() > self.max {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "more than {} bytes written between two flushes (QuicConfig::max_stream_len)",
                    self.max
                ),
            )));
        }
        self.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_sending(cx))?;
            if self.buf.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let data = self.buf.split().freeze();
            self.sending = Some(send_stream(self.conn.clone(), data));
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        if !self.fin {
            self.fin = true;
            self.sending = Some(send_stream(self.conn.clone(), Bytes::new()));
            self.shared.ends.lock().sent = true;
        }
        self.poll_sending(cx)
    }
}
