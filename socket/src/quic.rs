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
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// The first byte of a stream that carries one batch of whole frames.
const STREAM_BATCH: u8 = 0;
/// The first byte of the one long-lived stream of a direction.
const STREAM_SINGLE: u8 = 1;

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
    /// peer's end marker before it is closed anyway. Default: 3 s.
    pub close_linger: Duration,
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
    /// The first failure of a background batch send; later writes report it.
    send_error: parking_lot::Mutex<Option<String>>,
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
        send_error: parking_lot::Mutex::new(None),
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
        mode: cfg.streams,
        buf: BytesMut::new(),
        batch: None,
        sends: Arc::new(Semaphore::new(cfg.parallel_sends.max(1))),
        acquiring: None,
        permit: None,
        opening: None,
        single: None,
        fin: false,
        max: cfg.max_stream_len,
        shared,
        _guard: guard,
    };
    Socket::from_parts(Box::new(read), Box::new(write), local, peer)
}

/// What reading one incoming stream came to.
enum StreamRead {
    /// An empty stream: the peer's end marker.
    End,
    /// A whole batch, to pass on.
    Batch(Bytes),
    /// A single-mode stream, passed on as it arrived, now finished.
    SingleDone,
}

type Tx = mpsc::Sender<io::Result<Bytes>>;

/// Reads one stream: its type byte, then the batch, or the single stream's
/// bytes as they come.
async fn read_stream(
    mut s: quinn::RecvStream,
    max: usize,
    tx: Tx,
    single_seen: Arc<std::sync::atomic::AtomicBool>,
) -> io::Result<StreamRead> {
    use std::sync::atomic::Ordering;
    let mut kind = [0u8; 1];
    if s.read(&mut kind).await.map_err(io::Error::from)?.is_none() {
        return Ok(StreamRead::End);
    }
    match kind[0] {
        STREAM_BATCH => {
            if single_seen.load(Ordering::Relaxed) {
                return Err(mixed());
            }
            match s.read_to_end(max).await {
                Ok(b) => Ok(StreamRead::Batch(Bytes::from(b))),
                Err(quinn::ReadToEndError::TooLong) => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the peer sent a batch longer than {max} bytes"),
                )),
                Err(quinn::ReadToEndError::Read(e)) => Err(e.into()),
            }
        }
        STREAM_SINGLE => {
            if single_seen.swap(true, Ordering::Relaxed) {
                return Err(mixed());
            }
            while let Some(chunk) = s
                .read_chunk(64 * 1024, true)
                .await
                .map_err(io::Error::from)?
            {
                // A reader that has gone away still lets us drain to the
                // end, so the peer's last writes are not refused.
                let _ = tx.send(Ok(chunk.bytes)).await;
            }
            Ok(StreamRead::SingleDone)
        }
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown QUIC stream type {other}"),
        )),
    }
}

fn mixed() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "the peer sent more streams beside its single stream",
    )
}

/// Reads incoming streams, a few at a time, and hands each batch to the
/// read half in the order they complete. It lives as long as the
/// connection, so that after the session drops its halves it can still see
/// the peer's end marker and close the connection cleanly.
async fn pump(
    conn: Connection,
    _endpoint: quinn::Endpoint,
    tx: Tx,
    shared: Arc<Shared>,
    mut gone: oneshot::Receiver<()>,
    cfg: QuicConfig,
) {
    let mut reads: JoinSet<io::Result<StreamRead>> = JoinSet::new();
    let mut tx = Some(tx);
    let single_seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
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
                Ok(stream) => match &tx {
                    Some(t) => {
                        reads.spawn(read_stream(stream, cfg.max_stream_len, t.clone(), single_seen.clone()));
                    }
                    None => drop(stream),
                },
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
                    Ok(Ok(StreamRead::End | StreamRead::SingleDone)) => {
                        fin_seen = true;
                        continue;
                    }
                    Ok(Ok(StreamRead::Batch(bytes))) => Ok(bytes),
                    Ok(Err(e)) => Err(e),
                    Err(_) => continue,
                };
                if let Some(t) = &tx {
                    let failed = item.is_err();
                    // A send to a reader that has gone away fails; keep
                    // draining for the end marker all the same.
                    let _ = t.send(item).await;
                    if failed {
                        conn.close(VarInt::from_u32(CLOSE_ABORTED), b"protocol error");
                        break;
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

type Opening = Pin<Box<dyn Future<Output = io::Result<quinn::SendStream>> + Send>>;
type Acquiring = Pin<Box<dyn Future<Output = OwnedSemaphorePermit> + Send>>;

struct QuicWrite {
    conn: Connection,
    mode: StreamMode,
    /// Per batch: the bytes since the last flush.
    buf: BytesMut,
    /// Per batch: a flushed batch waiting for a send slot and its stream.
    batch: Option<Bytes>,
    /// Per batch: batches being written in the background, at most
    /// `QuicConfig::parallel_sends`.
    sends: Arc<Semaphore>,
    acquiring: Option<Acquiring>,
    permit: Option<OwnedSemaphorePermit>,
    /// The stream being opened, for a batch, the end marker or the single
    /// stream. Streams are opened here, in flush order, so their ids follow
    /// the order of the bytes, and the end marker comes last.
    opening: Option<Opening>,
    /// Single: the stream, once opened.
    single: Option<quinn::SendStream>,
    fin: bool,
    max: usize,
    shared: Arc<Shared>,
    _guard: Arc<HalvesGuard>,
}

fn open(conn: &Connection, first: Option<u8>) -> Opening {
    let conn = conn.clone();
    Box::pin(async move {
        let mut s = conn.open_uni().await.map_err(io::Error::from)?;
        if let Some(kind) = first {
            s.write_all(&[kind]).await?;
        }
        Ok(s)
    })
}

impl QuicWrite {
    fn failed(&self) -> Option<io::Error> {
        self.shared
            .send_error
            .lock()
            .as_ref()
            .map(|m| io::Error::new(io::ErrorKind::BrokenPipe, m.clone()))
    }

    fn poll_open(
        &mut self,
        cx: &mut Context<'_>,
        first: Option<u8>,
    ) -> Poll<io::Result<quinn::SendStream>> {
        let conn = &self.conn;
        let opening = self.opening.get_or_insert_with(|| open(conn, first));
        let r = ready!(opening.as_mut().poll(cx));
        self.opening = None;
        Poll::Ready(r)
    }

    fn poll_single(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&mut quinn::SendStream>> {
        if self.single.is_none() {
            let s = ready!(self.poll_open(cx, Some(STREAM_SINGLE)))?;
            self.single = Some(s);
        }
        Poll::Ready(Ok(self.single.as_mut().expect("opened above")))
    }

    /// Hands the waiting batch, if any, to a background send on a stream of
    /// its own; it is ready once the batch is on its way.
    fn poll_batch(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.batch.is_none() {
            return Poll::Ready(Ok(()));
        }
        if self.permit.is_none() {
            let sends = self.sends.clone();
            let acquiring = self.acquiring.get_or_insert_with(|| {
                Box::pin(async move { sends.acquire_owned().await.expect("never closed") })
            });
            self.permit = Some(ready!(acquiring.as_mut().poll(cx)));
            self.acquiring = None;
        }
        let mut stream = ready!(self.poll_open(cx, None))?;
        let (data, permit) = (self.batch.take(), self.permit.take());
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let data = data.expect("checked above");
            let r = async {
                stream
                    .write_all_chunks(&mut [Bytes::from_static(&[STREAM_BATCH]), data])
                    .await?;
                stream
                    .finish()
                    .map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, e))
            }
            .await;
            if let Err(e) = r {
                shared
                    .send_error
                    .lock()
                    .get_or_insert_with(|| format!("sending a batch failed: {e}"));
            }
        });
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
        if self.mode == StreamMode::Single {
            let s = ready!(self.poll_single(cx))?;
            return AsyncWrite::poll_write(Pin::new(s), cx, data);
        }
        if let Some(e) = self.failed() {
            return Poll::Ready(Err(e));
        }
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
        if self.mode == StreamMode::Single {
            return match &mut self.single {
                Some(s) => AsyncWrite::poll_flush(Pin::new(s), cx),
                None => Poll::Ready(Ok(())),
            };
        }
        if let Some(e) = self.failed() {
            return Poll::Ready(Err(e));
        }
        ready!(self.poll_batch(cx))?;
        if !self.buf.is_empty() {
            self.batch = Some(self.buf.split().freeze());
            ready!(self.poll_batch(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        if self.fin {
            return Poll::Ready(Ok(()));
        }
        match &mut self.single {
            // The single stream's end is the end marker.
            Some(s) => {
                s.finish()
                    .map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, e))?;
            }
            // A stream with no bytes at all.
            None => {
                let mut marker = ready!(self.poll_open(cx, None))?;
                marker
                    .finish()
                    .map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, e))?;
            }
        }
        self.fin = true;
        self.shared.ends.lock().sent = true;
        Poll::Ready(Ok(()))
    }
}
