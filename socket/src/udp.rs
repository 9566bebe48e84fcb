//! UDP sockets for the datagram transports, with buffers large enough that
//! a full window's burst is not dropped by the receiving kernel.

use std::io;
use std::net::SocketAddr;

/// Binds a UDP socket at `at` and asks the kernel for `buffer` bytes of
/// receive and send buffer. The kernel may give less (Linux caps what an
/// unprivileged process gets at `net.core.rmem_max` and `wmem_max`); that
/// is logged, once per socket, with what to raise.
pub(crate) fn bind(at: SocketAddr, buffer: usize) -> io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(at)?;
    socket.set_nonblocking(true)?;
    size_buffers(&socket, buffer);
    Ok(socket)
}

/// Asks for `buffer` bytes each way on `socket`.
pub(crate) fn size_buffers(socket: &std::net::UdpSocket, buffer: usize) {
    if buffer == 0 {
        return;
    }
    let s = socket2::SockRef::from(socket);
    let _ = s.set_recv_buffer_size(buffer);
    let _ = s.set_send_buffer_size(buffer);
    // Linux reports double what it grants (the rest is bookkeeping).
    let got = s.recv_buffer_size().unwrap_or(0);
    if got < buffer {
        tracing::warn!(
            asked = buffer,
            got,
            "the kernel gave a smaller UDP receive buffer than asked for; bursts may be dropped \\
             (on Linux, raise net.core.rmem_max and net.core.wmem_max)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the kernel lets an unprivileged socket have, from its limit.
    fn kernel_cap() -> usize {
        std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(usize::MAX)
    }

    #[test]
    fn udp_sockets_get_the_buffers_asked_for_up_to_the_kernels_cap() {
        let asked = 4 * 1024 * 1024;
        let socket = bind("127.0.0.1:0".parse().unwrap(), asked).unwrap();
        let s = socket2::SockRef::from(&socket);
        let expect = asked.min(kernel_cap());
        assert!(
            s.recv_buffer_size().unwrap() >= expect,
            "receive buffer {} < {expect}",
            s.recv_buffer_size().unwrap()
        );
        assert!(s.send_buffer_size().unwrap() >= asked.min(kernel_cap()).min(expect));
    }
}
