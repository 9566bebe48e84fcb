//! TCP: the default transport.

use crate::addr::{resolve, sock_addr};
use crate::transport::{BoxFuture, Transport, TransportListener};
use crate::{Accepting, Addr, Scheme, Socket, SocketError, TransportConfig};
use std::io;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// `tcp://host:port`.
pub(crate) struct Tcp;

impl Transport for Tcp {
    fn dial<'a>(
        &'a self,
        addr: &'a Addr,
        _: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Socket, SocketError>> {
        Box::pin(dial(addr))
    }

    fn bind<'a>(
        &'a self,
        addr: &'a Addr,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Box<dyn TransportListener>, SocketError>> {
        Box::pin(async move {
            let (listener, local) = bind(addr, config).await?;
            Ok(Box::new(TcpAccept { listener, local }) as Box<dyn TransportListener>)
        })
    }
}

struct TcpAccept {
    listener: TcpListener,
    local: Addr,
}

impl TransportListener for TcpAccept {
    fn local_addr(&self) -> &Addr {
        &self.local
    }

    fn accept(&mut self) -> BoxFuture<'_, Result<Accepting, SocketError>> {
        Box::pin(async move {
            let op = |e| SocketError::io("accept", &self.local, e);
            let (stream, _) = self.listener.accept().await.map_err(op)?;
            Ok(Accepting::ready(socket(stream, Scheme::TCP).map_err(op)?))
        })
    }

    #[cfg(unix)]
    fn hand_off(&mut self) -> Result<std::os::fd::OwnedFd, SocketError> {
        hand_off(&self.listener, &self.local)
    }
}

pub(crate) async fn dial(addr: &Addr) -> Result<Socket, SocketError> {
    let stream = connect(addr).await?;
    socket(stream, Scheme::TCP).map_err(|e| SocketError::io("dial", addr, e))
}

pub(crate) async fn connect(addr: &Addr) -> Result<TcpStream, SocketError> {
    TcpStream::connect(addr.target())
        .await
        .map_err(|e| SocketError::io("dial", addr, e))
}

/// Listens on `addr` with a kernel queue of `backlog` connections.
pub(crate) async fn bind(
    addr: &Addr,
    config: &TransportConfig,
) -> Result<(TcpListener, Addr), SocketError> {
    let op = |e| SocketError::io("listen", addr, e);
    let at = resolve(addr, "listen").await?;
    #[cfg(unix)]
    if let Some(inherited) = config.inherited.take_tcp(at) {
        // Handed over by the process this one replaces: it never stopped
        // accepting, and connections queued meanwhile are waiting in it.
        inherited.set_nonblocking(true).map_err(op)?;
        let l = TcpListener::from_std(inherited).map_err(op)?;
        tracing::info!(%addr, "listening on an inherited socket");
        return Ok((l, sock_addr(addr.scheme().clone(), at)));
    }
    let backlog = config.tcp_backlog;
    let socket = if at.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(op)?;
    // As std's listener does on Unix: a restarted server can bind again at
    // once, with old connections still in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true).map_err(op)?;
    socket.bind(at).map_err(op)?;
    let l = socket.listen(backlog).map_err(op)?;
    let local = l
        .local_addr()
        .map_err(|e| SocketError::io("listen", addr, e))?;
    Ok((l, sock_addr(addr.scheme().clone(), local)))
}

/// Readies a connected stream: no Nagle delay, and both addresses.
pub(crate) fn prepare(stream: &TcpStream, scheme: Scheme) -> io::Result<(Addr, Addr)> {
    // RPC messages are small and latency-bound; the session's writer already
    // coalesces them, so Nagle's delay would only add latency.
    stream.set_nodelay(true)?;
    Ok((
        sock_addr(scheme.clone(), stream.local_addr()?),
        sock_addr(scheme, stream.peer_addr()?),
    ))
}

pub(crate) fn socket(stream: TcpStream, scheme: Scheme) -> io::Result<Socket> {
    let (local, peer) = prepare(&stream, scheme)?;
    let (r, w) = stream.into_split();
    Ok(Socket::from_parts(Box::new(r), Box::new(w), local, peer))
}

/// A copy of `listener`'s socket for another process (see
/// [`TransportListener::hand_off`]).
#[cfg(unix)]
pub(crate) fn hand_off(
    listener: &TcpListener,
    local: &Addr,
) -> Result<std::os::fd::OwnedFd, SocketError> {
    use std::os::fd::AsFd;
    listener
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| SocketError::io("hand off", local, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_listener_queues_as_many_connections_as_configured() {
        let addr: Addr = "tcp://127.0.0.1:0".parse().unwrap();
        let config = TransportConfig {
            tcp_backlog: 777,
            ..TransportConfig::default()
        };
        let (_l, local) = bind(&addr, &config).await.unwrap();
        let port = local.target().rsplit_once(':').unwrap().1.to_string();
        // `ss` shows a listening socket's queue size in its Send-Q column.
        let out = std::process::Command::new("ss")
            .args(["-ltnH", &format!("sport = :{port}")])
            .output()
            .expect("ss (iproute2) lists listening sockets");
        let text = String::from_utf8(out.stdout).unwrap();
        let send_q: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(send_q.get(2).copied(), Some("777"), "{text}");
    }
}
