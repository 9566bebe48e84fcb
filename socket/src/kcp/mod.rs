//! KCP over UDP: a reliable, ordered byte stream with KCP's ARQ.
//!
//! The ARQ is the `kcp` crate, a port of the reference C library, so every
//! datagram carries segments in the reference layout (conv u32, cmd u8,
//! frg u8, wnd u16, ts u32, sn u32, una u32, len u32, then data;
//! little-endian) and a peer built on the C library can talk to drpc.
//! Around it this module adds what KCP leaves to its users, all within the
//! reference segment commands so a C peer needs nothing new:
//!
//! - **Starting a conversation.** The dialer picks a random non-zero
//!   conv and sends a window probe (`WASK`) under it; the listener creates
//!   the conversation for a new (address, conv) pair on a `WASK` or on a
//!   `PUSH` with sn 0, and its KCP answers with its window (`WINS`). The
//!   dial completes on that answer.
//! - **A clean close.** KCP has no FIN, so a zero-length message (a `PUSH`
//!   with len 0 and frg 0, in message mode) marks the end of a side's
//!   bytes. It is delivered in order, after everything sent before it.
//! - **A vanished peer.** An idle conversation sends a `WASK` every
//!   [`KcpConfig::keepalive`], which any KCP answers with `WINS`; a
//!   conversation that hears nothing for [`KcpConfig::idle_timeout`], or
//!   whose segment was resent [`KcpConfig::dead_link`] times, ends with an
//!   error.
//!
//! `docs/PROTOCOL.md` describes all of this byte by byte.

mod conv;
mod listener;

pub(crate) use listener::KcpListener;

use crate::addr::{resolve, sock_addr};
use crate::transport::{BoxFuture, Transport, TransportListener};
use crate::{Addr, Scheme, Socket, SocketError, TransportConfig};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;

/// KCP's segment commands, as the reference library numbers them.
pub(crate) mod cmd {
    pub const PUSH: u8 = 81;
    pub const WASK: u8 = 83;
}

/// The bytes of a segment header.
pub(crate) const OVERHEAD: usize = 24;

/// KCP's retransmission profile, as the reference library's
/// `ikcp_nodelay(kcp, nodelay, interval, resend, nc)` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nodelay {
    /// Shorter minimum retransmission timeout (30 ms instead of 100 ms) and
    /// gentler backoff.
    pub nodelay: bool,
    /// How often the ARQ runs, in milliseconds (10 to 5000).
    pub interval_ms: u32,
    /// Resend a segment after this many later segments were acknowledged
    /// (fast retransmit); 0 turns it off.
    pub resend: u32,
    /// Turn congestion control off: send as fast as the windows allow.
    pub no_congestion_control: bool,
}

impl Nodelay {
    /// The reference library's "fastest" profile: `(1, 10, 2, 1)`. Low
    /// latency at the cost of bandwidth on lossy links; the default, since
    /// drpc carries latency-bound calls.
    pub const FAST: Self = Self {
        nodelay: true,
        interval_ms: 10,
        resend: 2,
        no_congestion_control: true,
    };
    /// The reference library's default profile: `(0, 40, 0, 0)`. Fair to
    /// other traffic, slower to recover from loss.
    pub const NORMAL: Self = Self {
        nodelay: false,
        interval_ms: 40,
        resend: 0,
        no_congestion_control: false,
    };
}

/// Tuning for `kcp://`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct KcpConfig {
    /// The retransmission profile. Default: [`Nodelay::FAST`].
    pub nodelay: Nodelay,
    /// Segments sent but not yet acknowledged, at most. Default: 256,
    /// enough to keep a loopback or LAN link busy with 1400-byte segments.
    pub send_window: u16,
    /// Segments received out of order or not yet read, at most; KCP
    /// raises anything below 128 to 128. Default: 256.
    pub recv_window: u16,
    /// The largest datagram sent, headers included. Default: 1400, under
    /// the usual 1500-byte Ethernet MTU with room for IP and UDP headers.
    pub mtu: usize,
    /// An idle conversation sends a window probe this often, so the peer
    /// can tell it is alive. Default: 5 s.
    pub keepalive: Duration,
    /// A conversation that hears nothing from its peer for this long ends
    /// with an error: the peer vanished. Default: 30 s, six missed
    /// keepalives.
    pub idle_timeout: Duration,
    /// A segment resent this many times without an acknowledgement ends
    /// the conversation. Default: 20, the reference library's value.
    pub dead_link: u32,
    /// New conversations a listener holds before they are accepted; more
    /// are ignored until there is room. Default: 128.
    pub backlog: usize,
    /// After both halves of a socket are dropped, how long the
    /// conversation stays to get its last bytes and end marker
    /// acknowledged. Default: 3 s.
    pub close_linger: Duration,
    /// The receive and send buffers asked of the kernel for each UDP
    /// socket (a listener's is shared by its conversations). Default:
    /// 4 MiB: a full 256-segment window is 350 KiB, and a listener's
    /// conversations burst at once; with the kernel's usual 208 KiB, bursts
    /// on loopback were dropped and resent by the hundred. The kernel caps
    /// it (Linux: `net.core.rmem_max`, `wmem_max`); a smaller grant is
    /// logged. 0 leaves the kernel's default.
    pub socket_buffer: usize,
}

impl Default for KcpConfig {
    fn default() -> Self {
        Self {
            nodelay: Nodelay::FAST,
            send_window: 256,
            recv_window: 256,
            mtu: 1400,
            keepalive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            dead_link: 20,
            backlog: 128,
            close_linger: Duration::from_secs(3),
            socket_buffer: 4 * 1024 * 1024,
        }
    }
}

impl KcpConfig {
    fn check(&self) -> Result<(), SocketError> {
        if !(50..=65_000).contains(&self.mtu) {
            return Err(SocketError::Config(format!(
                "KcpConfig::mtu {} is outside 50..=65000",
                self.mtu
            )));
        }
        if !(10..=5000).contains(&self.nodelay.interval_ms) {
            return Err(SocketError::Config(format!(
                "KcpConfig::nodelay.interval_ms {} is outside 10..=5000",
                self.nodelay.interval_ms
            )));
        }
        if self.send_window == 0 || self.keepalive.is_zero() || self.idle_timeout.is_zero() {
            return Err(SocketError::Config(
                "KcpConfig: send_window, keepalive and idle_timeout must be non-zero".into(),
            ));
        }
        Ok(())
    }
}

/// A header with no data: what probes and their answers look like.
pub(crate) fn bare_segment(conv: u32, command: u8, wnd: u16, ts: u32) -> [u8; OVERHEAD] {
    let mut seg = [0u8; OVERHEAD];
    seg[0..4].copy_from_slice(&conv.to_le_bytes());
    seg[4] = command;
    seg[6..8].copy_from_slice(&wnd.to_le_bytes());
    seg[8..12].copy_from_slice(&ts.to_le_bytes());
    // sn, una and len stay 0: a probe acknowledges nothing and carries
    // nothing, so a KCP that reads it changes no state but the peer window.
    seg
}

/// The (conv, cmd, sn, len) of the first segment of a datagram, if it has
/// a whole header.
pub(crate) fn first_segment(d: &[u8]) -> Option<(u32, u8, u32, u32)> {
    if d.len() < OVERHEAD {
        return None;
    }
    let u32_at = |i: usize| u32::from_le_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]]);
    Some((u32_at(0), d[4], u32_at(12), u32_at(20)))
}

/// `kcp://host:port`.
pub(crate) struct Kcp;

impl Transport for Kcp {
    fn dial<'a>(
        &'a self,
        addr: &'a Addr,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Socket, SocketError>> {
        Box::pin(dial(addr, &config.kcp))
    }

    fn bind<'a>(
        &'a self,
        addr: &'a Addr,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Box<dyn TransportListener>, SocketError>> {
        Box::pin(async move {
            let l = KcpListener::bind(addr, &config.kcp).await?;
            Ok(Box::new(l) as Box<dyn TransportListener>)
        })
    }
}

async fn dial(addr: &Addr, config: &KcpConfig) -> Result<Socket, SocketError> {
    config.check()?;
    let remote: SocketAddr = resolve(addr, "dial").await?;
    let bind: SocketAddr = if remote.is_ipv6() {
        "[::]:0".parse().expect("literal")
    } else {
        "0.0.0.0:0".parse().expect("literal")
    };
    let udp = crate::udp::bind(bind, config.socket_buffer)
        .and_then(UdpSocket::from_std)
        .map_err(|e| SocketError::io("dial", addr, e))?;
    udp.connect(remote)
        .await
        .map_err(|e| SocketError::io("dial", addr, e))?;
    let conv = fastrand::u32(1..);
    let first = handshake(&udp, conv, config)
        .await
        .map_err(|e| SocketError::io("dial", addr, e))?;
    let local = udp
        .local_addr()
        .map_err(|e| SocketError::io("dial", addr, e))?;
    let udp = Arc::new(udp);
    let socket = conv::start(
        conv,
        conv::Link::Dialed(udp),
        remote,
        config,
        Some(first),
        None,
    );
    Ok(socket.into_socket(
        sock_addr(Scheme::KCP, local),
        sock_addr(Scheme::KCP, remote),
    ))
}

/// Probes until the listener answers under our conv. Bounded by the
/// caller's dial timeout; an ICMP "port unreachable" ends it at once.
async fn handshake(udp: &UdpSocket, conv: u32, config: &KcpConfig) -> io::Result<Vec<u8>> {
    let probe = bare_segment(conv, cmd::WASK, config.recv_window.max(128), 0);
    let mut buf = vec![0u8; config.mtu.max(OVERHEAD) + 1];
    let mut every = Duration::from_millis(100);
    loop {
        udp.send(&probe).await?;
        let deadline = tokio::time::Instant::now() + every;
        loop {
            match tokio::time::timeout_at(deadline, udp.recv(&mut buf)).await {
                Err(_) => break,
                Ok(Err(e)) => return Err(e),
                Ok(Ok(n)) => {
                    if first_segment(&buf[..n]).is_some_and(|(c, ..)| c == conv) {
                        return Ok(buf[..n].to_vec());
                    }
                }
            }
        }
        every = (every * 2).min(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dial_probe_is_the_one_in_the_spec() {
        // docs/PROTOCOL.md section 9.4: the WASK of a dial, conv 0x01020304,
        // a window of 256 segments.
        let seg = bare_segment(
            0x0102_0304,
            cmd::WASK,
            KcpConfig::default().recv_window.max(128),
            0,
        );
        let hex: Vec<String> = seg.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex.join(" "),
            "04 03 02 01 53 00 00 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"
        );
        assert_eq!(first_segment(&seg), Some((0x0102_0304, cmd::WASK, 0, 0)));
        assert_eq!(first_segment(&seg[..23]), None);
    }
}
