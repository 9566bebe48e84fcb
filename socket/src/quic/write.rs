//! The sending side: batches on streams of their own, or one long-lived
//! stream, and the end marker.

use super::{HalvesGuard, QuicConfig, Shared, StreamMode, STREAM_BATCH, STREAM_SINGLE};
use bytes::{Bytes, BytesMut};
use quinn::Connection;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::AsyncWrite;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

type Opening = Pin<Box<dyn Future<Output = io::Result<quinn::SendStream>> + Send>>;
type Acquiring = Pin<Box<dyn Future<Output = OwnedSemaphorePermit> + Send>>;

pub(super) struct QuicWrite {
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

impl QuicWrite {
    pub(super) fn new(
        conn: Connection,
        cfg: &QuicConfig,
        sends: Arc<Semaphore>,
        shared: Arc<Shared>,
        guard: Arc<HalvesGuard>,
    ) -> Self {
        Self {
            conn,
            mode: cfg.streams,
            buf: BytesMut::new(),
            batch: None,
            sends,
            acquiring: None,
            permit: None,
            opening: None,
            single: None,
            fin: false,
            max: cfg.max_stream_len,
            shared,
            _guard: guard,
        }
    }
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
        self.shared.marker_sent.notify_one();
        Poll::Ready(Ok(()))
    }
}
