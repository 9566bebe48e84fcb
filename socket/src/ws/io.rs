//! A WebSocket as a byte stream: binary messages in, binary messages out.
//!
//! WebSocket has no half-close: once a Close frame is sent, neither side
//! may send data. drpc's graceful end needs one (a peer that has ended its
//! stream still reads the replies to its calls), so a sender ends its
//! direction with an empty binary message, the end marker
//! (docs/PROTOCOL.md section 9). The Close frame follows once both
//! directions have ended.

use bytes::{Bytes, BytesMut};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{Sink, Stream};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

/// The read half: the payloads of binary messages, one after another.
pub(super) struct WsRead<S> {
    pub(super) messages: SplitStream<WebSocketStream<S>>,
    /// What is left of the last message.
    pub(super) current: Bytes,
    /// What the peer has ended, shared with the write half.
    pub(super) peer: Arc<PeerEnds>,
}

/// How far the peer has ended the connection, as the read half saw it.
#[derive(Default)]
pub(super) struct PeerEnds {
    /// Its end marker (or a Close) has arrived: it sends no more data.
    ended: AtomicBool,
    /// Its Close frame has arrived: nothing may be sent any more.
    closed: AtomicBool,
}

impl<S> AsyncRead for WsRead<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.peer.ended.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        while self.current.is_empty() {
            match ready!(Pin::new(&mut self.messages).poll_next(cx)) {
                Some(Ok(Message::Binary(b))) if b.is_empty() => {
                    self.peer.ended.store(true, Ordering::Release);
                    return Poll::Ready(Ok(()));
                }
                Some(Ok(Message::Binary(b))) => self.current = b,
                // Control frames are the library's business (it answers
                // pings).
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a text message: drpc frames travel in binary messages",
                    )))
                }
                // A Close counts as the end marker (the library answers
                // it); so does the end of the stream.
                Some(Ok(Message::Close(_))) => {
                    self.peer.closed.store(true, Ordering::Release);
                    self.peer.ended.store(true, Ordering::Release);
                    return Poll::Ready(Ok(()));
                }
                None => return Poll::Ready(Ok(())),
                Some(Err(e)) => return Poll::Ready(ended_or(e)),
            }
        }
        let n = self.current.len().min(buf.remaining());
        buf.put_slice(&self.current.split_to(n));
        Poll::Ready(Ok(()))
    }
}

/// A WebSocket error as the read side reports it: a connection that ended
/// is an end of stream, anything else an error.
fn ended_or(e: tungstenite::Error) -> io::Result<()> {
    match e {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => Ok(()),
        tungstenite::Error::Io(e) => Err(e),
        e => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
    }
}

fn write_error(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        e => io::Error::new(io::ErrorKind::BrokenPipe, e),
    }
}

/// The write half: bytes written between two flushes go out as one binary
/// message, so a message carries whole frames (the write-half contract).
pub(super) struct WsWrite<S> {
    pub(super) messages: SplitSink<WebSocketStream<S>, Message>,
    pub(super) pending: BytesMut,
    /// Past this many bytes a message goes out without waiting for a
    /// flush: the peer's message limit.
    pub(super) max_message: usize,
    /// Shared with the read half.
    pub(super) peer: Arc<PeerEnds>,
    /// Whether this side's end marker is queued.
    pub(super) ended: bool,
    /// Whether this side's Close frame is queued.
    pub(super) closing: bool,
}

impl<S> WsWrite<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    /// Hands what is pending to the WebSocket as one message.
    fn poll_send_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.pending.is_empty() {
            return Poll::Ready(Ok(()));
        }
        ready!(Pin::new(&mut self.messages).poll_ready(cx)).map_err(write_error)?;
        let message = Message::Binary(self.pending.split().freeze());
        Pin::new(&mut self.messages)
            .start_send(message)
            .map_err(write_error)?;
        Poll::Ready(Ok(()))
    }
}

impl<S> AsyncWrite for WsWrite<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.pending.len() >= self.max_message {
            ready!(self.poll_send_pending(cx))?;
        }
        let room = self.max_message - self.pending.len();
        let n = buf.len().min(room);
        self.pending.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_pending(cx))?;
        Pin::new(&mut self.messages)
            .poll_flush(cx)
            .map_err(write_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.peer.closed.load(Ordering::Acquire) {
            // The peer closed the WebSocket: nothing may be sent, and the
            // library has answered its Close.
            return Poll::Ready(Ok(()));
        }
        ready!(self.poll_send_pending(cx))?;
        if !self.ended {
            ready!(Pin::new(&mut self.messages).poll_ready(cx)).map_err(write_error)?;
            Pin::new(&mut self.messages)
                .start_send(Message::Binary(Bytes::new()))
                .map_err(write_error)?;
            self.ended = true;
        }
        ready!(Pin::new(&mut self.messages).poll_flush(cx)).map_err(write_error)?;
        if self.peer.ended.load(Ordering::Acquire) && !self.closing {
            // Both directions are done: close the WebSocket as its
            // protocol asks, with 1000. The peer may be gone already;
            // that is fine.
            if ready!(Pin::new(&mut self.messages).poll_ready(cx)).is_ok() {
                let close = CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                };
                let _ = Pin::new(&mut self.messages).start_send(Message::Close(Some(close)));
            }
            self.closing = true;
        }
        if self.closing {
            let _ = ready!(Pin::new(&mut self.messages).poll_flush(cx));
        }
        Poll::Ready(Ok(()))
    }
}
