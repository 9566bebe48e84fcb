//! Unix domain sockets.

use crate::transport::{BoxFuture, Transport, TransportListener};
use crate::{Accepting, Addr, Scheme, Socket, SocketError, TransportConfig};
use std::io;
use std::path::{Path, PathBuf};
use tokio::net::{UnixListener, UnixStream};

/// `unix:///path`.
pub(crate) struct Unix;

impl Transport for Unix {
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
            let (listener, path) = bind(addr, config).await?;
            Ok(Box::new(UnixAccept {
                listener,
                local: addr.clone(),
                path,
            }) as Box<dyn TransportListener>)
        })
    }
}

struct UnixAccept {
    listener: UnixListener,
    local: Addr,
    /// Removes the socket file when the listener goes away.
    path: PathGuard,
}

impl TransportListener for UnixAccept {
    fn local_addr(&self) -> &Addr {
        &self.local
    }

    fn accept(&mut self) -> BoxFuture<'_, Result<Accepting, SocketError>> {
        Box::pin(async move {
            let socket = accept(&self.listener, &self.local)
                .await
                .map_err(|e| SocketError::io("accept", &self.local, e))?;
            Ok(Accepting::ready(socket))
        })
    }

    fn hand_off(&mut self) -> Result<std::os::fd::OwnedFd, SocketError> {
        use std::os::fd::AsFd;
        let fd = self
            .listener
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| SocketError::io("hand off", &self.local, e))?;
        // The file is the new process's address now.
        self.path.keep = true;
        Ok(fd)
    }
}

async fn dial(addr: &Addr) -> Result<Socket, SocketError> {
    let stream = UnixStream::connect(addr.target())
        .await
        .map_err(|e| SocketError::io("dial", addr, e))?;
    Ok(socket(stream, addr.clone(), addr.clone()))
}

/// Binds `addr`, first removing a socket file that an earlier run left
/// behind. A file that a live listener still answers on is left alone and
/// reported as in use; a file that is not a socket is never removed.
async fn bind(
    addr: &Addr,
    config: &TransportConfig,
) -> Result<(UnixListener, PathGuard), SocketError> {
    let path = Path::new(addr.target());
    if let Some(inherited) = config.inherited.take_unix(path) {
        // Handed over by the process this one replaces, file and all.
        let op = |e| SocketError::io("listen", addr, e);
        inherited.set_nonblocking(true).map_err(op)?;
        let l = UnixListener::from_std(inherited).map_err(op)?;
        tracing::info!(%addr, "listening on an inherited socket");
        let mut guard = PathGuard::new(path);
        guard.until = Some(config.inherited.confirmed());
        return Ok((l, guard));
    }
    match UnixListener::bind(path) {
        Ok(l) => return Ok((l, PathGuard::new(path))),
        Err(e) if e.kind() != io::ErrorKind::AddrInUse => {
            return Err(SocketError::io("listen", addr, e))
        }
        Err(_) => {}
    }
    if !is_socket(path) {
        return Err(SocketError::io(
            "listen",
            addr,
            io::Error::new(
                io::ErrorKind::AddrInUse,
                "the path exists and is not a socket; refusing to remove it",
            ),
        ));
    }
    match UnixStream::connect(path).await {
        Ok(_) => Err(SocketError::io(
            "listen",
            addr,
            io::Error::new(
                io::ErrorKind::AddrInUse,
                "another listener is serving on this socket file",
            ),
        )),
        Err(_) => {
            tracing::info!(path = %path.display(), "removing stale unix socket file from an earlier run");
            std::fs::remove_file(path).map_err(|e| SocketError::io("listen", addr, e))?;
            let l = UnixListener::bind(path).map_err(|e| SocketError::io("listen", addr, e))?;
            Ok((l, PathGuard::new(path)))
        }
    }
}

fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

async fn accept(l: &UnixListener, local: &Addr) -> io::Result<Socket> {
    let (stream, peer) = l.accept().await?;
    let peer = peer
        .as_pathname()
        .and_then(|p| Addr::new(Scheme::UNIX, p.to_string_lossy()).ok())
        .unwrap_or_else(|| local.clone());
    Ok(socket(stream, local.clone(), peer))
}

fn socket(stream: UnixStream, local: Addr, peer: Addr) -> Socket {
    let (r, w) = stream.into_split();
    Socket::from_parts(Box::new(r), Box::new(w), local, peer)
}

/// Removes a listener's socket file when the listener goes away, so the
/// next run can bind the same path.
#[derive(Debug)]
struct PathGuard {
    path: PathBuf,
    /// The socket was handed to another process, which serves the file.
    keep: bool,
    /// For an inherited socket: set once this process serves for good;
    /// until then the process that handed it over still serves the file.
    until: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl PathGuard {
    fn new(path: &Path) -> Self {
        Self {
            path: path.into(),
            keep: false,
            until: None,
        }
    }
}

impl Drop for PathGuard {
    fn drop(&mut self) {
        let unconfirmed = self
            .until
            .as_ref()
            .is_some_and(|c| !c.load(std::sync::atomic::Ordering::Acquire));
        if self.keep || unconfirmed {
            return;
        }
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "could not remove unix socket file");
            }
        }
    }
}
