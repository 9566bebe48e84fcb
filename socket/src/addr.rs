use crate::SocketError;
use std::fmt;
use std::str::FromStr;

/// A transport, named by an address scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// `tcp://host:port`: TCP (feature `tcp`)
    Tcp,
    /// `unix:///path`: a Unix stream socket (feature `unix`)
    Unix,
    /// `tls://host:port`: TLS over TCP (feature `tls`)
    Tls,
    /// `quic://host:port`: QUIC over UDP (feature `quic`)
    Quic,
    /// `kcp://host:port`: KCP over UDP (feature `kcp`)
    Kcp,
    /// `mem://name`: an in-memory pipe within one process (see
    /// [`memory`](crate::memory)); the name is any non-empty text. Only a
    /// dialer that knows the names (drpc's `MemoryNet`) can dial it.
    Memory,
}

impl Scheme {
    /// The scheme as written in an address.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Unix => "unix",
            Self::Tls => "tls",
            Self::Quic => "quic",
            Self::Kcp => "kcp",
            Self::Memory => "mem",
        }
    }
}

/// An endpoint address as a URL whose scheme picks the transport:
/// `tcp://127.0.0.1:9090`, `unix:///run/app.sock`.
///
/// ```
/// use drpc_socket::{Addr, Scheme};
///
/// let a: Addr = "tcp://127.0.0.1:9090".parse().unwrap();
/// assert_eq!(a.scheme(), Scheme::Tcp);
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
        let bad = |reason: &str| SocketError::BadAddr {
            addr: format!("{}://{}", scheme.as_str(), target),
            reason: reason.to_string(),
        };
        match scheme {
            Scheme::Unix => {
                if !target.starts_with('/') {
                    return Err(bad("a unix address needs an absolute path: unix:///path"));
                }
            }
            Scheme::Memory => {
                if target.is_empty() {
                    return Err(bad("a memory address needs a name: mem://name"));
                }
            }
            _ => {
                let (host, port) = target
                    .rsplit_once(':')
                    .ok_or_else(|| bad("expected host:port"))?;
                if host.is_empty() {
                    return Err(bad("the host is empty"));
                }
                port.parse::<u16>()
                    .map_err(|_| bad("the port is not a number from 0 to 65535"))?;
            }
        }
        Ok(Self { scheme, target })
    }

    /// The transport.
    pub fn scheme(&self) -> Scheme {
        self.scheme
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
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "tcp" => Scheme::Tcp,
            "unix" => Scheme::Unix,
            "tls" => Scheme::Tls,
            "quic" => Scheme::Quic,
            "kcp" => Scheme::Kcp,
            "mem" => Scheme::Memory,
            other => {
                return Err(SocketError::BadAddr {
                    addr: s.to_string(),
                    reason: format!(
                        "unknown scheme {other:?}; known: tcp, unix, tls, quic, kcp, mem"
                    ),
                })
            }
        };
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
        write!(f, "{}://{}", self.scheme.as_str(), self.target)
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
