//! The receiving side: reading the peer's streams and handing their bytes
//! to the session in order.

use super::{
    HalvesGuard, QuicConfig, Shared, CLOSE_ABORTED, CLOSE_DONE, STREAM_BATCH, STREAM_SINGLE,
};
use bytes::Bytes;
use quinn::{Connection, ConnectionError, VarInt};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

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
    tx: Option<Tx>,
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
                if let Some(tx) = &tx {
                    let _ = tx.send(Ok(chunk.bytes)).await;
                }
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
/// connection, and runs its closing handshake (docs/PROTOCOL.md 9.3): once
/// this side's end marker is out and the peer's has been read, with all
/// before it, it sends the "read all" stream; the side that receives the
/// peer's "read all" knows the peer has every byte it sent, and closes the
/// connection (code 0). A peer that never says so is waited for at most
/// `close_linger` after the session let go of its halves.
pub(super) async fn pump(
    conn: Connection,
    _endpoint: quinn::Endpoint,
    tx: Tx,
    shared: Arc<Shared>,
    mut gone: oneshot::Receiver<()>,
    cfg: QuicConfig,
) {
    // Streams are accepted in the order the peer opened them; each read
    // carries that position, since reads finish in any order.
    let mut reads: JoinSet<(u64, io::Result<StreamRead>)> = JoinSet::new();
    let mut accepted = 0u64;
    let mut unfinished = std::collections::BTreeSet::new();
    let mut tx = Some(tx);
    let single_seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The position of the peer's end marker (its first empty stream), and
    // whether its "read all" (the empty stream after it) has come.
    let mut marker: Option<u64> = None;
    let mut peer_read_all = false;
    let mut read_all_sent = false;
    let mut halves_gone = false;
    let linger = tokio::time::sleep(Duration::MAX);
    tokio::pin!(linger);
    let parallel = cfg.parallel_reads.max(1);
    loop {
        let all_before_marker = marker.is_some_and(|m| unfinished.range(..m).next().is_none());
        if all_before_marker && tx.is_some() {
            // Every stream opened before the end marker has been passed on.
            tx = None;
            shared.ends.lock().received = true;
        }
        let sent = shared.ends.lock().sent;
        if sent && tx.is_none() && !read_all_sent {
            // Both ends are out and everything the peer sent was read.
            read_all_sent = true;
            if let Ok(mut s) = conn.open_uni().await {
                let _ = s.finish();
            }
        }
        if sent && peer_read_all && all_before_marker {
            conn.close(VarInt::from_u32(CLOSE_DONE), b"done");
            break;
        }
        tokio::select! {
            s = conn.accept_uni(), if reads.len() < parallel && !peer_read_all => match s {
                Ok(stream) => {
                    let at = accepted;
                    accepted += 1;
                    unfinished.insert(at);
                    // After the end marker a stream carries nothing to pass on.
                    let to = if marker.is_some() { None } else { tx.clone() };
                    let (max, single_seen) = (cfg.max_stream_len, single_seen.clone());
                    reads.spawn(async move { (at, read_stream(stream, max, to, single_seen).await) });
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
                let Ok((at, read)) = done else { continue };
                unfinished.remove(&at);
                let item = match read {
                    Ok(StreamRead::End | StreamRead::SingleDone) => {
                        match marker {
                            None => marker = Some(at),
                            Some(m) if at > m => peer_read_all = true,
                            // An earlier empty stream finished later: it was
                            // the marker, and the one taken for it was the
                            // "read all".
                            Some(_) => {
                                marker = Some(at);
                                peer_read_all = true;
                            }
                        }
                        continue;
                    }
                    Ok(StreamRead::Batch(_)) if marker.is_some_and(|m| at > m) => {
                        Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "the peer sent a batch after its end marker",
                        ))
                    }
                    Ok(StreamRead::Batch(bytes)) => Ok(bytes),
                    Err(e) => Err(e),
                };
                let failed = item.is_err();
                if let Some(t) = &tx {
                    // A send to a reader that has gone away fails; keep
                    // draining for the end marker all the same.
                    let _ = t.send(item).await;
                }
                if failed {
                    conn.close(VarInt::from_u32(CLOSE_ABORTED), b"protocol error");
                    break;
                }
            },
            _ = shared.marker_sent.notified() => {}
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
            _ = conn.closed(), if marker.is_some() => break,
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

pub(super) struct QuicRead {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
    _guard: Arc<HalvesGuard>,
}

impl QuicRead {
    pub(super) fn new(rx: mpsc::Receiver<io::Result<Bytes>>, guard: Arc<HalvesGuard>) -> Self {
        Self {
            rx,
            cur: Bytes::new(),
            _guard: guard,
        }
    }
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
