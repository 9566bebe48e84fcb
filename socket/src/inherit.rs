//! Listening sockets this process was handed at its start, by the process
//! it replaces (a restart) or by systemd's socket activation: a listener
//! bound to the same address takes one instead of binding anew, so the
//! address never stops accepting.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Inherited listening sockets, each waiting for the listener that binds
/// its address: `tcp://`, `tls://`, `ws://`, `wss://` and `http://` take a
/// TCP socket bound to the same IP address and port, `unix://` a Unix
/// socket bound to the same path. Set on
/// [`TransportConfig::inherited`](crate::TransportConfig::inherited); a
/// clone shares the same sockets, and each is taken once.
///
/// ```
/// use drpc_socket::{Inherited, TransportConfig};
/// use std::os::fd::OwnedFd;
///
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let at = listener.local_addr()?;
/// let inherited = Inherited::new([OwnedFd::from(listener)])?;
/// assert_eq!(inherited.remaining(), vec![format!("tcp {at}")]);
/// let mut config = TransportConfig::default();
/// config.inherited = inherited;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct Inherited {
    sockets: Arc<Mutex<Vec<Entry>>>,
    /// Set once this process serves (see [`Inherited::confirm`]).
    confirmed: Arc<AtomicBool>,
}

enum Entry {
    Tcp(std::net::TcpListener, SocketAddr),
    Unix(UnixListener, PathBuf),
}

impl Inherited {
    /// The listening sockets `fds`, which this process owns.
    ///
    /// Errors: an fd that is not a TCP or Unix (path) stream socket.
    pub fn new(fds: impl IntoIterator<Item = OwnedFd>) -> io::Result<Self> {
        let sockets = fds.into_iter().map(entry).collect::<io::Result<_>>()?;
        Ok(Self {
            sockets: Arc::new(Mutex::new(sockets)),
            confirmed: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Takes the TCP socket bound to `at`, if one is waiting.
    pub fn take_tcp(&self, at: SocketAddr) -> Option<std::net::TcpListener> {
        let mut sockets = self.lock();
        let i = sockets
            .iter()
            .position(|e| matches!(e, Entry::Tcp(_, a) if *a == at))?;
        match sockets.swap_remove(i) {
            Entry::Tcp(l, _) => Some(l),
            Entry::Unix(..) => unreachable!("matched a TCP entry"),
        }
    }

    /// Takes the Unix socket bound to `path`, if one is waiting.
    pub fn take_unix(&self, path: &Path) -> Option<UnixListener> {
        let mut sockets = self.lock();
        let i = sockets
            .iter()
            .position(|e| matches!(e, Entry::Unix(_, p) if p == path))?;
        match sockets.swap_remove(i) {
            Entry::Unix(l, _) => Some(l),
            Entry::Tcp(..) => unreachable!("matched a Unix entry"),
        }
    }

    /// The sockets no listener has taken yet (`tcp 127.0.0.1:9090`,
    /// `unix /run/app.sock`): after a restart, the addresses the new
    /// process no longer listens on.
    pub fn remaining(&self) -> Vec<String> {
        self.lock()
            .iter()
            .map(|e| match e {
                Entry::Tcp(_, at) => format!("tcp {at}"),
                Entry::Unix(_, path) => format!("unix {}", path.display()),
            })
            .collect()
    }

    /// Says this process now serves the inherited addresses for good:
    /// until then, a Unix listener that took an inherited socket leaves
    /// its file in place when it closes (a new process that fails before
    /// it is ready must not take the address from the one it was to
    /// replace, which serves on).
    pub fn confirm(&self) {
        self.confirmed.store(true, Ordering::Release);
    }

    /// Whether [`Inherited::confirm`] was called, shared with the listeners
    /// that took sockets.
    pub fn confirmed(&self) -> Arc<AtomicBool> {
        self.confirmed.clone()
    }

    /// Closes the sockets no listener has taken.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        // A panic elsewhere cannot leave the list half-changed.
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Inherited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.remaining()).finish()
    }
}

fn entry(fd: OwnedFd) -> io::Result<Entry> {
    let sock = socket2::SockRef::from(&fd);
    let not_a_listener = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "an inherited file descriptor is {what}, not a listening TCP or Unix stream socket"
            ),
        )
    };
    if sock.r#type().map_err(|_| not_a_listener("no socket"))? != socket2::Type::STREAM {
        return Err(not_a_listener("a socket of another type"));
    }
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    if !sock.is_listener()? {
        // A connection (systemd's `Accept=yes`), not a listening socket.
        return Err(not_a_listener("a connected socket"));
    }
    let local = sock.local_addr()?;
    if let Some(at) = local.as_socket() {
        return Ok(Entry::Tcp(std::net::TcpListener::from(fd), at));
    }
    match local.as_pathname() {
        Some(path) => {
            let path = path.to_path_buf();
            Ok(Entry::Unix(UnixListener::from(fd), path))
        }
        None => Err(not_a_listener("a socket without an address to match")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_socket_goes_to_the_listener_of_its_address_once() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let at = tcp.local_addr().unwrap();
        let dir = std::env::temp_dir().join(format!("drpc-inherit-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let unix = UnixListener::bind(&dir).unwrap();
        let inherited = Inherited::new([OwnedFd::from(tcp), OwnedFd::from(unix)]).unwrap();
        let other: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(inherited.take_tcp(other).is_none());
        assert!(inherited.take_unix(Path::new("/nowhere")).is_none());
        let clone = inherited.clone();
        assert_eq!(clone.take_tcp(at).unwrap().local_addr().unwrap(), at);
        assert!(inherited.take_tcp(at).is_none(), "taken twice");
        assert!(inherited.take_unix(&dir).is_some());
        assert!(inherited.remaining().is_empty());
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn what_is_not_a_stream_socket_is_refused() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let err = Inherited::new([OwnedFd::from(udp)]).unwrap_err();
        assert!(
            err.to_string().contains("not a listening TCP or Unix"),
            "{err}"
        );
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(Inherited::new([OwnedFd::from(file)]).is_err());
    }
}
