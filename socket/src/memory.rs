//! In-memory pipes: two connected [`Socket`]s within one process, with no
//! system call and no real time, for tests (tokio's paused clock included)
//! and for sessions between components of one program.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let (a, b) = drpc_socket::memory::pipe("client", "server", 64 * 1024);
//! assert_eq!(a.peer_addr().to_string(), "mem://server");
//! let (mut a_write, mut b_read) = (a.into_parts().write, b.into_parts().read);
//! a_write.write_all(b"hi").await.unwrap();
//! let mut got = [0u8; 2];
//! b_read.read_exact(&mut got).await.unwrap();
//! assert_eq!(&got, b"hi");
//! # }
//! ```

use crate::{Addr, Scheme, Socket, SocketError};

/// What dialing or listening on `mem://` without a memory network says.
pub(crate) fn not_dialable() -> SocketError {
    SocketError::Config(
        "mem:// addresses have no listener of their own: connect them with \
         drpc's MemoryNet, or make the sockets with drpc_socket::memory::pipe"
            .to_string(),
    )
}

/// Two sockets connected to each other: `mem://{a}` and `mem://{b}`. Each
/// direction buffers up to `capacity` bytes; past that, writes wait for
/// the other side to read, as a kernel's socket buffers do.
pub fn pipe(a: &str, b: &str, capacity: usize) -> (Socket, Socket) {
    let addr = |name: &str| {
        Addr::new(Scheme::MEMORY, if name.is_empty() { "-" } else { name })
            .expect("a non-empty name")
    };
    let (x, y) = tokio::io::duplex(capacity.max(1));
    let socket = |stream, local: &str, peer: &str| {
        let (r, w) = tokio::io::split(stream);
        Socket::from_parts(Box::new(r), Box::new(w), addr(local), addr(peer))
    };
    (socket(x, a, b), socket(y, b, a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_pipe_carries_bytes_both_ways_and_ends_cleanly() {
        let (a, b) = pipe("a", "b", 8);
        let (pa, pb) = (a.into_parts(), b.into_parts());
        let (mut ar, mut aw, mut br, mut bw) = (pa.read, pa.write, pb.read, pb.write);
        let writer = tokio::spawn(async move {
            aw.write_all(b"more than eight bytes").await.unwrap();
            aw.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        br.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"more than eight bytes");
        writer.await.unwrap();
        bw.write_all(b"ok").await.unwrap();
        // A write half alone ends nothing: shutting it down does.
        bw.shutdown().await.unwrap();
        let mut back = Vec::new();
        ar.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"ok");
    }
}
