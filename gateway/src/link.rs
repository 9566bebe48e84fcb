//! One HTTP connection and the session behind it: frames go down a pipe
//! to the endpoint, replies come back and complete their requests.

use crate::request;
use bytes::BytesMut;
use drpc_proto::{FrameLimits, Framer, Kind, Message, Proto, RawProto};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch, Notify};

/// Why a request got no reply from the endpoint: a drpc status.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) code: i32,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// drpc's "connection closed".
pub(crate) const CONNECTION_CLOSED: i32 = 102;

/// How long a connection whose session ended may take to send its last
/// responses before it is dropped.
const LINGER: Duration = Duration::from_secs(1);

type Waiter = oneshot::Sender<Result<Message, Failure>>;

/// The gateway's side of the pipe.
pub(crate) struct Link {
    writer: tokio::sync::Mutex<Writer>,
    pending: Mutex<Waiting>,
    next_seq: AtomicU32,
    /// Set once the endpoint sent a notice or ended its stream: new
    /// requests are refused.
    closing: AtomicBool,
    why: Mutex<Option<Failure>>,
    closed: Notify,
    /// Becomes true when the endpoint's stream has ended.
    ended: watch::Sender<bool>,
    pub(crate) max_frame_len: usize,
}

/// Requests waiting for replies; once the session has ended, why, so no
/// request waits for a reply that cannot come.
#[derive(Default)]
struct Waiting {
    by_seq: HashMap<u32, Waiter>,
    ended: Option<Failure>,
}

struct Writer {
    framer: Box<dyn Framer>,
    half: WriteHalf<DuplexStream>,
    buf: BytesMut,
}

impl Link {
    /// A fresh seq, never 0 (which names notices).
    pub(crate) fn next_seq(&self) -> u32 {
        loop {
            let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
            if seq != 0 {
                return seq;
            }
        }
    }

    /// Why new requests are refused, if they are.
    pub(crate) fn refused(&self) -> Option<Failure> {
        self.closing
            .load(Ordering::Acquire)
            .then(|| self.why.lock().clone())
            .map(|why| {
                why.unwrap_or_else(|| Failure::new(CONNECTION_CLOSED, "the endpoint is closing"))
            })
    }

    /// Registers a waiter for the reply to `seq`; dropping the guard (the
    /// client went away) forgets it.
    pub(crate) fn expect(
        self: &Arc<Self>,
        seq: u32,
    ) -> Result<(Pending, oneshot::Receiver<Result<Message, Failure>>), Failure> {
        let (tx, rx) = oneshot::channel();
        let mut waiting = self.pending.lock();
        if let Some(why) = &waiting.ended {
            return Err(why.clone());
        }
        waiting.by_seq.insert(seq, tx);
        let pending = Pending {
            link: self.clone(),
            seq,
        };
        Ok((pending, rx))
    }

    /// Encodes `msg` and writes it to the endpoint.
    pub(crate) async fn send(&self, msg: &Message) -> Result<(), Failure> {
        let mut w = self.writer.lock().await;
        let Writer { framer, half, buf } = &mut *w;
        buf.clear();
        framer.encode(msg, buf).map_err(request::encode_failure)?;
        let written = async {
            half.write_all(buf).await?;
            half.flush().await
        };
        let Err(e) = written.await else {
            return Ok(());
        };
        drop(w);
        // The endpoint's own word on why, when it gave one (a refusal): it
        // may still be on its way to the reader, which is not behind.
        let mut ended = self.ended.subscribe();
        let _ = tokio::time::timeout(LINGER, ended.wait_for(|e| *e)).await;
        Err(self.why.lock().clone().unwrap_or_else(|| {
            Failure::new(
                CONNECTION_CLOSED,
                format!("the session behind the gateway ended: {e}"),
            )
        }))
    }

    /// Stops taking requests, for `why`, and fails those waiting.
    fn close(&self, why: Failure) {
        self.why.lock().get_or_insert(why.clone());
        self.closing.store(true, Ordering::Release);
        let waiting: Vec<Waiter> = {
            let mut waiting = self.pending.lock();
            waiting.ended.get_or_insert(why.clone());
            waiting.by_seq.drain().map(|(_, w)| w).collect()
        };
        for w in waiting {
            let _ = w.send(Err(why.clone()));
        }
        self.closed.notify_waiters();
    }
}

/// A request's place among those waiting for a reply.
pub(crate) struct Pending {
    link: Arc<Link>,
    seq: u32,
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.link.pending.lock().by_seq.remove(&self.seq);
    }
}

/// Serves one HTTP connection, its session on the other end of `pipe`.
pub(crate) async fn serve(tcp: TcpStream, pipe: DuplexStream, max_frame_len: usize) {
    let (rd, wr) = tokio::io::split(pipe);
    // The endpoint holds requests to its own method and meta limits (and
    // answers 413 past them); the gateway only bounds frames.
    let limits = FrameLimits::new(max_frame_len)
        .with_method_len(usize::from(u16::MAX))
        .with_meta_len(max_frame_len);
    let link = Arc::new(Link {
        writer: tokio::sync::Mutex::new(Writer {
            framer: RawProto.framer(&limits),
            half: wr,
            buf: BytesMut::new(),
        }),
        pending: Mutex::new(Waiting::default()),
        next_seq: AtomicU32::new(1),
        closing: AtomicBool::new(false),
        why: Mutex::new(None),
        closed: Notify::new(),
        ended: watch::channel(false).0,
        max_frame_len,
    });
    let closed = link.closed.notified();
    let mut closed = std::pin::pin!(closed);
    closed.as_mut().enable();
    let reading = tokio::spawn(read_replies(link.clone(), rd, limits));
    let service = {
        let link = link.clone();
        service_fn(move |req| request::handle(link.clone(), req))
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(super::HEADER_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(tcp), service);
    // Boxed so it can be dropped before the end: a request stuck writing
    // to a session that no longer reads must let go of the writer.
    let mut conn = Box::pin(conn);
    tokio::select! {
        r = conn.as_mut() => log_end(r),
        _ = closed => {
            if link.refused().is_some_and(|why| why.code != CONNECTION_CLOSED) {
                // Refused (over the session limit, say): a request that
                // comes within the linger is answered with the refusal
                // and `Connection: close`.
                if let Ok(r) = tokio::time::timeout(LINGER, conn.as_mut()).await {
                    log_end(r);
                }
                drop(conn);
                return finish(&link, reading).await;
            }
            // The endpoint is going away: take no further request, finish
            // those running (their replies come, or the end of the
            // endpoint's stream fails them), then write them within the
            // linger.
            conn.as_mut().graceful_shutdown();
            let mut ended = link.ended.subscribe();
            tokio::select! {
                r = conn.as_mut() => log_end(r),
                _ = async {
                    let _ = ended.wait_for(|e| *e).await;
                    tokio::time::sleep(LINGER).await;
                } => {}
            }
        }
    }
    drop(conn);
    finish(&link, reading).await
}

/// The HTTP side is done: ends the session's stream, and gives the
/// endpoint a moment to end its own.
async fn finish(link: &Link, reading: tokio::task::JoinHandle<()>) {
    let _ = link.writer.lock().await.half.shutdown().await;
    let _ = tokio::time::timeout(LINGER, reading).await;
}

fn log_end(r: Result<(), hyper::Error>) {
    if let Err(e) = r {
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}

/// `buf` with room for a read of a useful size: the framer leaves the
/// room for the rest of a frame to its reader.
fn reserved(buf: &mut BytesMut) -> &mut BytesMut {
    buf.reserve(16 * 1024);
    buf
}

/// Reads frames from the endpoint until its stream ends.
async fn read_replies(link: Arc<Link>, mut rd: ReadHalf<DuplexStream>, limits: FrameLimits) {
    let mut framer = RawProto.framer(&limits);
    let mut buf = BytesMut::new();
    let why = loop {
        match framer.decode(&mut buf) {
            Ok(Some(msg)) => on_frame(&link, msg).await,
            Ok(None) => match rd.read_buf(reserved(&mut buf)).await {
                Ok(0) | Err(_) => {
                    break Failure::new(CONNECTION_CLOSED, "the endpoint closed the session")
                }
                Ok(_) => {}
            },
            Err(e) if !e.is_fatal() => {
                // A frame over a header limit, consumed whole: fail only
                // the request it answers.
                if let drpc_proto::ProtoError::HeaderTooLarge { seq, .. } = e {
                    let waiter = link.pending.lock().by_seq.remove(&seq);
                    if let Some(w) = waiter {
                        let _ = w.send(Err(Failure::new(413, e.to_string())));
                    }
                }
            }
            Err(e) => break Failure::new(500, format!("the endpoint sent a bad frame: {e}")),
        }
    };
    link.close(why);
    link.ended.send_replace(true);
}

async fn on_frame(link: &Arc<Link>, msg: Message) {
    let h = &msg.header;
    match h.kind {
        // A notice that asks nothing (status 0) is ignored.
        Kind::Reply if h.seq == 0 && h.status_code == 0 => {}
        Kind::Reply if h.seq == 0 => {
            // Going away (102) or refused (503 and others): either way
            // this connection takes no new request.
            let why = Failure::new(h.status_code, h.status_message.to_string());
            link.why.lock().get_or_insert(why);
            link.closing.store(true, Ordering::Release);
            if h.status_code != CONNECTION_CLOSED {
                link.close(Failure::new(h.status_code, h.status_message.to_string()));
            }
            link.closed.notify_waiters();
        }
        Kind::Reply => {
            let waiter = link.pending.lock().by_seq.remove(&h.seq);
            if let Some(w) = waiter {
                let _ = w.send(Ok(msg));
            }
        }
        Kind::Call => {
            // An HTTP client cannot be called back.
            let refusal = request::error_reply(
                h.seq,
                405,
                "the peer is an HTTP client of the gateway: it serves no calls",
            );
            let _ = link.send(&refusal).await;
        }
        // Pushes are for nobody here; later kinds are sent only to a peer
        // that said hello, which the gateway does not.
        _ => {}
    }
}
