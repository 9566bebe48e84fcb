//! Accepting KCP conversations on one UDP socket.

use super::conv::{self, Link};
use super::{cmd, first_segment, KcpConfig};
use crate::addr::{resolve, sock_addr};
use crate::transport::{BoxFuture, TransportListener};
use crate::{Accepting, Addr, Scheme, Socket, SocketError};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, Notify};

type Key = (SocketAddr, u32);

/// How many datagrams may wait for one conversation's task; beyond that
/// they are dropped, as a congested network would, and KCP resends.
const CONV_QUEUE: usize = 1024;

/// How many ended conversations are remembered, so that a late datagram
/// (a keepalive, a resent end marker) does not start a new one.
const REMEMBER_ENDED: usize = 4096;

#[derive(Default)]
struct Table {
    live: FxHashMap<Key, mpsc::Sender<Vec<u8>>>,
    ended: VecDeque<(Key, Instant)>,
}

impl Table {
    fn recently_ended(&self, key: &Key, within: Duration) -> bool {
        self.ended
            .iter()
            .rev()
            .take_while(|(_, t)| t.elapsed() < within)
            .any(|(k, _)| k == key)
    }
}

pub(crate) struct KcpListener {
    local: Addr,
    accepts: mpsc::Receiver<Socket>,
    /// Ends the receive loop once the listener and all its conversations
    /// are gone.
    closed: Arc<Notify>,
    /// The receive loop, which ends after the last conversation.
    receiving: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for KcpListener {
    fn drop(&mut self) {
        self.closed.notify_one();
    }
}

impl KcpListener {
    pub(super) async fn bind(addr: &Addr, config: &KcpConfig) -> Result<Self, SocketError> {
        config.check()?;
        let op = |e| SocketError::io("listen", addr, e);
        let at = resolve(addr, "listen").await?;
        let udp = crate::udp::bind(at, config.socket_buffer)
            .and_then(UdpSocket::from_std)
            .map_err(op)?;
        let local = udp
            .local_addr()
            .map_err(|e| SocketError::io("listen", addr, e))?;
        let local = sock_addr(Scheme::KCP, local);
        let (tx, accepts) = mpsc::channel(config.backlog.max(1));
        let closed = Arc::new(Notify::new());
        let receiving = tokio::spawn(receive(
            Arc::new(udp),
            local.clone(),
            tx,
            config.clone(),
            closed.clone(),
        ));
        Ok(Self {
            local,
            accepts,
            closed,
            receiving: Some(receiving),
        })
    }

    /// Takes no new conversations and waits until the ones it accepted have
    /// ended (each within its linger), so their last datagrams are sent.
    async fn close(mut self) {
        let receiving = self.receiving.take();
        drop(self);
        if let Some(r) = receiving {
            let _ = r.await;
        }
    }

    async fn accept(&mut self) -> Result<Socket, SocketError> {
        self.accepts.recv().await.ok_or_else(|| {
            SocketError::io(
                "accept",
                &self.local,
                io::Error::new(io::ErrorKind::NotConnected, "the KCP listener stopped"),
            )
        })
    }
}

/// Reads the listener's socket and hands each datagram to its
/// conversation, starting conversations for new (address, conv) pairs.
async fn receive(
    udp: Arc<UdpSocket>,
    local: Addr,
    accepts: mpsc::Sender<Socket>,
    config: KcpConfig,
    closed: Arc<Notify>,
) {
    let table = Arc::new(Mutex::new(Table::default()));
    let changed = Arc::new(Notify::new());
    let mut listener_gone = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if listener_gone && table.lock().live.is_empty() {
            break;
        }
        let (n, from) = tokio::select! {
            r = udp.recv_from(&mut buf) => match r {
                Ok(r) => r,
                // ICMP errors from earlier sends surface here on some
                // systems; they concern one peer, not the listener.
                Err(e) => {
                    tracing::trace!(error = %e, "kcp listener receive error");
                    continue;
                }
            },
            _ = closed.notified(), if !listener_gone => {
                listener_gone = true;
                continue;
            }
            _ = changed.notified(), if listener_gone => continue,
        };
        let d = &buf[..n];
        let Some((conv_id, command, sn, len)) = first_segment(d) else {
            continue;
        };
        let key = (from, conv_id);
        let sender = table.lock().live.get(&key).cloned();
        if let Some(tx) = sender {
            // A full queue drops the datagram; KCP resends it.
            let _ = tx.try_send(d.to_vec());
            continue;
        }
        let opens = conv_id != 0
            && ((command == cmd::WASK && len == 0) || (command == cmd::PUSH && sn == 0));
        if !opens || listener_gone {
            continue;
        }
        if table
            .lock()
            .recently_ended(&key, config.idle_timeout.max(config.close_linger))
        {
            // A straggler from a conversation that ended (a keepalive, a
            // resent end marker): it must not start a new one.
            continue;
        }
        let permit = match accepts.try_reserve() {
            Ok(p) => p,
            Err(_) => {
                tracing::debug!(peer = %from, "kcp backlog full; conversation ignored");
                continue;
            }
        };
        let (tx, rx) = mpsc::channel(CONV_QUEUE);
        table.lock().live.insert(key, tx);
        let on_end = {
            let (table, changed) = (table.clone(), changed.clone());
            Box::new(move || {
                let mut t = table.lock();
                t.live.remove(&key);
                if t.ended.len() >= REMEMBER_ENDED {
                    t.ended.pop_front();
                }
                t.ended.push_back((key, Instant::now()));
                drop(t);
                changed.notify_one();
            })
        };
        let halves = conv::start(
            conv_id,
            Link::Accepted(udp.clone(), rx),
            from,
            &config,
            Some(d.to_vec()),
            Some(on_end),
        );
        permit.send(halves.into_socket(local.clone(), sock_addr(Scheme::KCP, from)));
    }
}

impl TransportListener for KcpListener {
    fn local_addr(&self) -> &Addr {
        &self.local
    }

    fn accept(&mut self) -> BoxFuture<'_, Result<Accepting, SocketError>> {
        Box::pin(async move { Ok(Accepting::ready(KcpListener::accept(self).await?)) })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(KcpListener::close(*self))
    }
}
