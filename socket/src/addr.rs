use crate::SocketError;
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

/// A transport's name, as written before `://` in an address: `tcp`,
/// `ws`, or any scheme a [`Transport`](crate::Transport) is registered
/// under.
///
/// Schemes are compared in lowercase, so `TCP://..` names TCP. The
/// constants name the built-in transports; [`Scheme::new`] names any other.
///
/// ```
/// use drpc_socket::Scheme;
///
/// assert_eq!(Scheme::new("TCP").unwrap(), Scheme::TCP);
/// assert_eq!(Scheme::new("my-pipe").unwrap().as_str(), "my-pipe");
/// assert!(Scheme::new("9p").is_err()); // must start with a letter (RFC 3986)
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scheme(Cow<'static, str>);

impl Scheme {
    /// `tcp://host:port`: TCP (feature `tcp`).
    pub const TCP: Scheme = Scheme(Cow::Borrowed("tcp"));
    /// `unix:///path`: a Unix stream socket (feature `unix`).
    pub const UNIX: Scheme = Scheme(Cow::Borrowed("unix"));
    /// `tls://host:port`: TLS over TCP (feature `tls`).
    pub const TLS: Scheme = Scheme(Cow::Borrowed("tls"));
    /// `quic://host:port`: QUIC over UDP (feature `quic`).
    pub const QUIC: Scheme = Scheme(Cow::Borrowed("quic"));
    /// `kcp://host:port`: KCP over UDP (feature `kcp`).
    pub const KCP: Scheme = Scheme(Cow::Borrowed("kcp"));
    /// `ws://host:port[/path]`: WebSocket over TCP (feature `ws`).
    pub const WS: Scheme = Scheme(Cow::Borrowed("ws"));
    /// `wss://host:port[/path]`: WebSocket over TLS (feature `wss`).
    pub const WSS: Scheme = Scheme(Cow::Borrowed("wss"));
    /// `mem://name`: an in-memory pipe within one process (see
    /// [`memory`](crate::memory)); the name is any non-empty text. Only a
    /// dialer that knows the names (drpc's `MemoryNet`) can dial it.
    pub const MEMORY: Scheme = Scheme(Cow::Borrowed("mem"));

    /// The scheme named `name`, in lowercase. A scheme starts with a letter,
    /// followed by letters, digits, `+`, `-` or `.` (RFC 3986).
    pub fn new(name: &str) -> Result<Self, SocketError> {
        let bad = |reason: &str| SocketError::BadAddr {
            addr: format!("{name}://"),
            reason: reason.to_string(),
        };
        let mut chars = name.chars();
        if !chars.next().is_some_and(|c| c.is_ascii_alphabetic()) {
            return Err(bad("a scheme starts with a letter"));
        }
        if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) {
            return Err(bad("a scheme holds only letters, digits, '+', '-' and '.'"));
        }
        let lower = name.to_ascii_lowercase();
        Ok(Self::BUILT_IN
            .iter()
            .find(|s| s.as_str() == lower)
            .cloned()
            .unwrap_or(Self(Cow::Owned(lower))))
    }

    const BUILT_IN: [Scheme; 8] = [
        Self::TCP,
        Self::UNIX,
        Self::TLS,
        Self::QUIC,
        Self::KCP,
        Self::WS,
        Self::WSS,
        Self::MEMORY,
    ];

    /// The scheme as written in an address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

/// What the target of an address on a built-in scheme must look like.
fn check_target(scheme: &Scheme, target: &str) -> Result<(), &'static str> {
    if *scheme == Scheme::UNIX {
        if !target.starts_with('/') {
            return Err("a unix address needs an absolute path: unix:///path");
        }
        return Ok(());
    }
    let host_port = [
        Scheme::TCP,
        Scheme::TLS,
        Scheme::QUIC,
        Scheme::KCP,
        Scheme::WS,
        Scheme::WSS,
    ];
    if !host_port.contains(scheme) {
        // Another transport's targets are its own business; it checks them
        // when it dials or listens.
        if target.is_empty() {
            return Err("the address names nothing after scheme://");
        }
        return Ok(());
    }
    // A WebSocket address may go on with a path: ws://host:port/drpc.
    let authority = match target.find('/') {
        Some(i) if *scheme == Scheme::WS || *scheme == Scheme::WSS => &target[..i],
        _ => target,
    };
    let (host, port) = authority.rsplit_once(':').ok_or("expected host:port")?;
    if host.is_empty() {
        return Err("the host is empty");
    }
    port.parse::<u16>()
        .map_err(|_| "the port is not a number from 0 to 65535")?;
    Ok(())
}

/// An endpoint address as a URL whose scheme picks the transport:
/// `tcp://127.0.0.1:9090`, `unix:///run/app.sock`.
///
/// ```
/// use drpc_socket::{Addr, Scheme};
///
/// let a: Addr = "tcp://127.0.0.1:9090".parse().unwrap();
/// assert_eq!(*a.scheme(), Scheme::TCP);
/// assert_eq!(a.target(), "127.0.0.1:9090");
/// assert_eq!(a.to_string(), "tcp://127.0.0.1:9090");
/// assert!("127.0.0.1:9090".parse::<Addr>().is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Addr {
    scheme: Scheme,
    target: String,
}

impl Addr {
    /// An address from its parts, checked as [`FromStr`] checks text.
    pub fn new(scheme: Scheme, target: impl Into<String>) -> Result<Self, SocketError> {
        let target = target.into();
        check_target(&scheme, &target).map_err(|reason| SocketError::BadAddr {
            addr: format!("{scheme}://{target}"),
            reason: reason.to_string(),
        })?;
        Ok(Self { scheme, target })
    }

    /// The transport.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// Everything after `scheme://`: `host:port`, or a path for unix.
    pub fn target(&self) -> &str {
        &self.target
    }
}

impl FromStr for Addr {
    type Err = SocketError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (scheme, target) = s.split_once("://").ok_or_else(|| SocketError::BadAddr {
            addr: s.to_string(),
            reason: "expected scheme://target, such as tcp://127.0.0.1:9090".to_string(),
        })?;
        let scheme = Scheme::new(scheme).map_err(|e| match e {
            SocketError::BadAddr { reason, .. } => SocketError::BadAddr {
                addr: s.to_string(),
                reason,
            },
            other => other,
        })?;
        Addr::new(scheme, target)
    }
}

impl TryFrom<&str> for Addr {
    type Error = SocketError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl TryFrom<&Addr> for Addr {
    type Error = SocketError;

    fn try_from(a: &Addr) -> Result<Self, Self::Error> {
        Ok(a.clone())
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.target)
    }
}

impl fmt::Debug for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An [`Addr`] for a socket address; a `SocketAddr` always prints as
/// `host:port`, so this cannot fail.
#[allow(dead_code)] // unused when only unix is built
pub(crate) fn sock_addr(scheme: Scheme, a: std::net::SocketAddr) -> Addr {
    Addr::new(scheme, a.to_string()).expect("socket address is host:port")
}

/// The first socket address `addr`'s host and port resolve to; `op`
/// (`dial`, `listen`) names what failed.
#[allow(dead_code)] // unused when only unix is built
pub(crate) async fn resolve(
    addr: &Addr,
    op: &'static str,
) -> Result<std::net::SocketAddr, SocketError> {
    let failed = |e| SocketError::io(op, addr, e);
    tokio::net::lookup_host(addr.target())
        .await
        .map_err(failed)?
        .next()
        .ok_or_else(|| {
            failed(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the host has no address",
            ))
        })
}
