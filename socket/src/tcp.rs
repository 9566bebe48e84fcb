//! TCP: the default transport.

use crate::addr::sock_addr;
use crate::{Addr, Scheme, Socket, SocketError};
use std::io;
use tokio::net::{TcpListener, TcpStream};

pub(crate) async fn dial(addr: &Addr) -> Result<Socket, SocketError> {
    let stream = connect(addr).await?;
    socket(stream, Scheme::Tcp).map_err(|e| SocketError::io("dial", addr, e))
}

pub(crate) async fn connect(addr: &Addr) -> Result<TcpStream, SocketError> {
    TcpStream::connect(addr.target())
        .await
        .map_err(|e| SocketError::io("dial", addr, e))
}

pub(crate) async fn bind(addr: &Addr) -> Result<(TcpListener, Addr), SocketError> {
    let l = TcpListener::bind(addr.target())
        .await
        .map_err(|e| SocketError::io("listen", addr, e))?;
    let local = l
        .local_addr()
        .map_err(|e| SocketError::io("listen", addr, e))?;
    Ok((l, sock_addr(addr.scheme(), local)))
}

/// Readies a connected stream: no Nagle delay, and both addresses.
pub(crate) fn prepare(stream: &TcpStream, scheme: Scheme) -> io::Result<(Addr, Addr)> {
    // RPC messages are small and latency-bound; the session's writer already
    // coalesces them, so Nagle's delay would only add latency.
    stream.set_nodelay(true)?;
    Ok((
        sock_addr(scheme, stream.local_addr()?),
        sock_addr(scheme, stream.peer_addr()?),
    ))
}

pub(crate) fn socket(stream: TcpStream, scheme: Scheme) -> io::Result<Socket> {
    let (local, peer) = prepare(&stream, scheme)?;
    let (r, w) = stream.into_split();
    Ok(Socket::from_parts(Box::new(r), Box::new(w), local, peer))
}
