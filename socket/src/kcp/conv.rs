//! One KCP conversation: the ARQ state, the task that drives it, and the
//! two halves a session reads and writes through.

use super::{bare_segment, cmd, KcpConfig};
use crate::{Addr, Finished, Socket};
use parking_lot::Mutex;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, Notify};

/// Where a conversation's datagrams come from.
pub(crate) enum Link {
    /// A dialed conversation owns its connected UDP socket.
    Dialed(Arc<UdpSocket>),
    /// An accepted one shares the listener's socket, which hands it the
    /// datagrams carrying its conv.
    Accepted(Arc<UdpSocket>, mpsc::Receiver<Vec<u8>>),
}

/// Sends KCP's output. A full socket buffer drops the datagram, exactly as
/// a lossy network would; KCP resends it.
struct Out {
    udp: Arc<UdpSocket>,
    /// `None` when the socket is connected to the peer.
    peer: Option<SocketAddr>,
}

impl Write for Out {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let r = match self.peer {
            Some(p) => self.udp.try_send_to(b, p),
            None => self.udp.try_send(b),
        };
        match r {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(b.len()),
            r => r,
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct State {
    kcp: kcp::Kcp<Out>,
    started: Instant,
    reader: Option<Waker>,
    writer: Option<Waker>,
    /// The rest of a message longer than the caller's buffer.
    leftover: Vec<u8>,
    leftover_at: usize,
    /// The peer's end marker has been read.
    eof: bool,
    /// Why the conversation failed, once it has.
    error: Option<(io::ErrorKind, String)>,
    fin_sent: bool,
    halves_dropped: u8,
    last_heard: Instant,
    last_probe: Instant,
    gone_at: Option<Instant>,
    /// The ARQ panicked (the `kcp` crate's arithmetic overflows on some
    /// hostile segments in builds with overflow checks); it is not touched
    /// again and the conversation ends.
    broken: bool,
}

impl State {
    fn now_ms(&self) -> u32 {
        // KCP's clock is a wrapping u32 of milliseconds; it compares times
        // by difference, so the wrap after 49 days is harmless.
        self.started.elapsed().as_millis() as u32
    }

    /// Runs `f` on the ARQ, turning a panic inside it into the end of the
    /// conversation rather than of the task (and the session with it).
    fn arq<T>(&mut self, f: impl FnOnce(&mut kcp::Kcp<Out>) -> T) -> Option<T> {
        if self.broken {
            return None;
        }
        let kcp = &mut self.kcp;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(kcp))) {
            Ok(v) => Some(v),
            Err(_) => {
                self.broken = true;
                self.fail(
                    io::ErrorKind::InvalidData,
                    "the peer sent segments the KCP state could not take; conversation ended",
                );
                None
            }
        }
    }

    fn fail(&mut self, kind: io::ErrorKind, msg: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some((kind, msg.into()));
        }
    }

    fn io_error(&self) -> Option<io::Error> {
        self.error
            .as_ref()
            .map(|(k, m)| io::Error::new(*k, m.clone()))
    }

    /// Runs the ARQ now and sends what it has: acknowledgements, data the
    /// windows allow, probes.
    fn pump(&mut self) {
        let now = self.now_ms();
        let r = self.arq(|k| k.update(now).and_then(|_| k.flush()));
        if let Some(Err(e)) = r {
            let e = io::Error::from(e);
            self.fail(e.kind(), format!("sending to the peer failed: {e}"));
        }
    }

    fn wake(&mut self) {
        if let Some(w) = self.reader.take() {
            w.wake();
        }
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    /// With no reader left, messages are drained here so the end marker is
    /// still seen.
    fn drain(&mut self) {
        while let Some(Ok(n)) = self.arq(|k| k.peeksize()) {
            let mut sink = vec![0u8; n];
            if !matches!(self.arq(|k| k.recv(&mut sink)), Some(Ok(_))) {
                break;
            }
            if n == 0 {
                self.eof = true;
            }
        }
    }
}

pub(crate) struct Conv {
    state: Mutex<State>,
    /// Wakes the driving task early: data was written, a half dropped.
    notify: Notify,
    config: KcpConfig,
    /// The socket and peer, for the probes sent outside the ARQ.
    out: Out,
    /// Most bytes handed to KCP in one message: well under the 128
    /// fragments a KCP message may span.
    chunk: usize,
    /// Segments queued or in flight beyond which writers wait.
    send_limit: usize,
}

/// Starts a conversation's task and returns its halves.
pub(crate) fn start(
    conv: u32,
    link: Link,
    peer: SocketAddr,
    config: &KcpConfig,
    first: Option<Vec<u8>>,
    on_end: Option<Box<dyn FnOnce() + Send>>,
) -> Halves {
    let (udp, rx, out_peer) = match link {
        Link::Dialed(udp) => (udp, None, None),
        Link::Accepted(udp, rx) => (udp, Some(rx), Some(peer)),
    };
    let out = || Out {
        udp: udp.clone(),
        peer: out_peer,
    };
    let mut kcp = kcp::Kcp::new(conv, out());
    let n = config.nodelay;
    kcp.set_nodelay(
        n.nodelay,
        n.interval_ms as i32,
        n.resend as i32,
        n.no_congestion_control,
    );
    kcp.set_wndsize(config.send_window, config.recv_window);
    // Checked by KcpConfig::check before a conversation starts.
    let _ = kcp.set_mtu(config.mtu);
    kcp.set_maximum_resend_times(config.dead_link);
    let mss = kcp.mss();
    let now = Instant::now();
    let mut state = State {
        kcp,
        started: now,
        reader: None,
        writer: None,
        leftover: Vec::new(),
        leftover_at: 0,
        eof: false,
        error: None,
        fin_sent: false,
        halves_dropped: 0,
        last_heard: now,
        last_probe: now,
        gone_at: None,
        broken: false,
    };
    let _ = state.arq(|k| k.update(0));
    if let Some(d) = first {
        let _ = state.arq(|k| k.input(&d));
        state.pump();
    }
    let conv = Arc::new(Conv {
        state: Mutex::new(state),
        notify: Notify::new(),
        config: config.clone(),
        out: out(),
        chunk: mss * 64,
        send_limit: usize::from(config.send_window).max(32) * 2,
    });
    let source = match rx {
        Some(rx) => Source::Channel(rx),
        None => Source::Socket(udp),
    };
    let driver = tokio::spawn(drive(conv.clone(), source, on_end));
    Halves { conv, driver }
}

enum Source {
    Socket(Arc<UdpSocket>),
    Channel(mpsc::Receiver<Vec<u8>>),
}

impl Source {
    async fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self {
            Source::Socket(s) => s.recv(buf).await.map(Some),
            Source::Channel(rx) => Ok(rx.recv().await.map(|d| {
                let n = d.len().min(buf.len());
                buf[..n].copy_from_slice(&d[..n]);
                n
            })),
        }
    }
}

/// Drives the ARQ: feeds it datagrams, runs it on its timer, probes an
/// idle peer, and decides when the conversation is over.
async fn drive(conv: Arc<Conv>, mut source: Source, on_end: Option<Box<dyn FnOnce() + Send>>) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Some(wait) = conv.tick() {
        tokio::select! {
            r = source.recv(&mut buf) => match r {
                Ok(Some(n)) => conv.input(&buf[..n]),
                Ok(None) => break,
                Err(e) => {
                    let mut s = conv.state.lock();
                    let msg = match e.kind() {
                        io::ErrorKind::ConnectionRefused => "the peer is gone (port unreachable)".to_string(),
                        _ => format!("receiving from the peer failed: {e}"),
                    };
                    s.fail(e.kind(), msg);
                    s.wake();
                }
            },
            _ = tokio::time::sleep(wait) => {}
            _ = conv.notify.notified() => {}
        }
    }
    conv.state.lock().wake();
    if let Some(f) = on_end {
        f();
    }
}

impl Conv {
    /// Feeds one datagram to the ARQ and answers at once (acknowledgements,
    /// window replies) rather than on the next timer tick.
    fn input(&self, d: &[u8]) {
        let mut s = self.state.lock();
        match s.arq(|k| k.input(d)) {
            Some(Ok(_)) => {}
            // Not ours, or malformed: a datagram like any other on UDP.
            Some(Err(_)) => return,
            None => {
                s.wake();
                return;
            }
        }
        s.last_heard = Instant::now();
        s.pump();
        if s.halves_dropped == 2 {
            s.drain();
        }
        s.wake();
    }

    /// The timer's work; returns how long to sleep, or `None` when the
    /// conversation is over.
    fn tick(&self) -> Option<Duration> {
        let cfg = &self.config;
        let mut s = self.state.lock();
        let now = Instant::now();
        s.pump();
        if s.kcp.is_dead_link() {
            let n = cfg.dead_link;
            s.fail(
                io::ErrorKind::TimedOut,
                format!("the peer acknowledged nothing after {n} resends"),
            );
        }
        let silent = now.saturating_duration_since(s.last_heard);
        if silent >= cfg.idle_timeout {
            s.fail(
                io::ErrorKind::TimedOut,
                format!("nothing heard from the peer for {:?}", cfg.idle_timeout),
            );
        } else if silent >= cfg.keepalive
            && now.saturating_duration_since(s.last_probe) >= cfg.keepalive
        {
            s.last_probe = now;
            let wnd = if matches!(s.arq(|k| k.peeksize()), Some(Err(_))) {
                s.kcp.rcv_wnd()
            } else {
                0
            };
            let probe = bare_segment(s.kcp.conv(), cmd::WASK, wnd, s.now_ms());
            // The probe bypasses the ARQ: it needs no acknowledgement, and
            // any KCP answers it with its window. A lost one is harmless.
            let _ = match self.out.peer {
                Some(p) => self.out.udp.try_send_to(&probe, p),
                None => self.out.udp.try_send(&probe),
            };
        }
        if s.halves_dropped == 2 {
            s.drain();
        }
        s.wake();
        let gone = s.halves_dropped == 2;
        if s.error.is_some() {
            return None;
        }
        if gone {
            let done = s.fin_sent && s.kcp.wait_snd() == 0 && s.eof;
            let lingered = s
                .gone_at
                .is_some_and(|t| now.saturating_duration_since(t) >= cfg.close_linger);
            if done || lingered {
                return None;
            }
        }
        let busy = s.kcp.wait_snd() > 0;
        let mut wait = if busy {
            let now_ms = s.now_ms();
            let next = s.arq(|k| k.check(now_ms)).unwrap_or(1);
            Duration::from_millis(u64::from(next.max(1)))
        } else {
            let next_probe = cfg
                .keepalive
                .saturating_sub(silent)
                .max(Duration::from_millis(1));
            next_probe.min(cfg.idle_timeout.saturating_sub(silent))
        };
        if let Some(t) = s.gone_at {
            wait = wait.min(
                cfg.close_linger
                    .saturating_sub(now.saturating_duration_since(t)),
            );
        }
        Some(wait.max(Duration::from_millis(1)))
    }
}

/// The read and write halves of a conversation, before they become a
/// [`Socket`].
pub(crate) struct Halves {
    conv: Arc<Conv>,
    driver: tokio::task::JoinHandle<()>,
}

impl Halves {
    /// The socket; its [`Finished`] completes when the conversation is
    /// over: its bytes and end marker acknowledged and the peer's end
    /// marker read, or its linger run out, or it failed.
    pub(crate) fn into_socket(self, local: Addr, peer: Addr) -> Socket {
        let read = KcpRead {
            conv: self.conv.clone(),
        };
        let write = KcpWrite { conv: self.conv };
        let driver = self.driver;
        Socket::from_parts(Box::new(read), Box::new(write), local, peer).with_finished(
            Finished::when(async move {
                let _ = driver.await;
            }),
        )
    }
}

fn half_dropped(conv: &Conv) {
    let mut s = conv.state.lock();
    s.halves_dropped += 1;
    if s.halves_dropped == 2 {
        s.gone_at = Some(Instant::now());
        if !s.fin_sent && s.error.is_none() {
            // Dropping a socket without shutting it down still ends the
            // stream cleanly, as closing a TCP socket sends FIN.
            s.fin_sent = true;
            let _ = s.arq(|k| k.send(&[]));
            s.pump();
        }
        drop(s);
        conv.notify.notify_one();
    }
}

struct KcpRead {
    conv: Arc<Conv>,
}

impl Drop for KcpRead {
    fn drop(&mut self) {
        half_dropped(&self.conv);
    }
}

impl AsyncRead for KcpRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut s = self.conv.state.lock();
        if s.leftover_at < s.leftover.len() {
            let n = (s.leftover.len() - s.leftover_at).min(buf.remaining());
            let at = s.leftover_at;
            buf.put_slice(&s.leftover[at..at + n]);
            s.leftover_at += n;
            return Poll::Ready(Ok(()));
        }
        if s.eof {
            return Poll::Ready(Ok(()));
        }
        match s.arq(|k| k.peeksize()) {
            Some(Ok(0)) => {
                let _ = s.arq(|k| k.recv(&mut []));
                s.eof = true;
                Poll::Ready(Ok(()))
            }
            Some(Ok(n)) => {
                let mut msg = std::mem::take(&mut s.leftover);
                msg.clear();
                msg.resize(n, 0);
                match s.arq(|k| k.recv(&mut msg)) {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Poll::Ready(Err(io::Error::from(e))),
                    None => return Poll::Ready(Err(s.io_error().expect("set when broken"))),
                }
                let take = n.min(buf.remaining());
                buf.put_slice(&msg[..take]);
                s.leftover = msg;
                s.leftover_at = take;
                // Reading may reopen a full window; tell the peer now.
                s.pump();
                Poll::Ready(Ok(()))
            }
            _ => match s.io_error() {
                Some(e) => Poll::Ready(Err(e)),
                None => {
                    s.reader = Some(cx.waker().clone());
                    Poll::Pending
                }
            },
        }
    }
}

struct KcpWrite {
    conv: Arc<Conv>,
}

impl Drop for KcpWrite {
    fn drop(&mut self) {
        half_dropped(&self.conv);
    }
}

impl AsyncWrite for KcpWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let conv = &self.conv;
        let mut s = conv.state.lock();
        if let Some(e) = s.io_error() {
            return Poll::Ready(Err(e));
        }
        if s.fin_sent {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the write half is shut down",
            )));
        }
        if s.kcp.wait_snd() >= conv.send_limit {
            // The peer is slow to acknowledge: wait for room rather than
            // queue without bound.
            s.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = data.len().min(conv.chunk);
        match s.arq(|k| k.send(&data[..n])) {
            Some(Ok(_)) => {}
            Some(Err(e)) => return Poll::Ready(Err(io::Error::from(e))),
            None => return Poll::Ready(Err(s.io_error().expect("set when broken"))),
        }
        s.pump();
        let busy = s.kcp.wait_snd() > 0;
        drop(s);
        if busy {
            // The driver may be asleep until a keepalive; it must run the
            // resend timer now.
            conv.notify.notify_one();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Everything written is already with KCP, which sends it as the
        // windows allow.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = self.conv.state.lock();
        if !s.fin_sent && s.error.is_none() {
            s.fin_sent = true;
            if let Some(Err(e)) = s.arq(|k| k.send(&[])) {
                return Poll::Ready(Err(io::Error::from(e)));
            }
            s.pump();
            drop(s);
            self.conv.notify.notify_one();
        }
        Poll::Ready(Ok(()))
    }
}
