//! Reading a connection's socket into its inbound buffer.

use crate::core::inbound::Inbound;
use drpc_socket::ReadHalf;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// What one read brought.
pub(crate) enum Read {
    Bytes,
    End,
    Failed(io::Error),
}

/// The most a read with no buffer takes, on the stack.
const STACK_READ: usize = 16 * 1024;

/// Reads what the socket has into the inbound buffer. While it has nothing,
/// an empty buffer is given back unless it is small (then the next read goes
/// straight into it), so an idle connection holds at most that; and while
/// there is none, a read goes to the stack first, so one that finds nothing
/// allocates nothing.
pub(crate) fn poll_read(
    rd: &mut ReadHalf,
    inbound: &mut Inbound,
    cx: &mut Context<'_>,
) -> Poll<Read> {
    if let Some((buf, offered)) = inbound.kept_room() {
        let read = tokio_util::io::poll_read_buf(Pin::new(rd), cx, buf);
        return into_buffer(read, inbound, offered);
    }
    if let Some(offered) = inbound.released_offer(STACK_READ) {
        let mut space = [MaybeUninit::<u8>::uninit(); STACK_READ];
        let mut buf = ReadBuf::uninit(&mut space[..offered]);
        return match Pin::new(rd).poll_read(cx, &mut buf) {
            Poll::Pending => {
                // A buffer drained by cutting frames out still holds the
                // memory of its last read.
                inbound.release_if_empty();
                Poll::Pending
            }
            Poll::Ready(Ok(())) if buf.filled().is_empty() => Poll::Ready(Read::End),
            Poll::Ready(Ok(())) => {
                let now = tokio::time::Instant::now().into_std();
                inbound.filled_from(offered, buf.filled(), now);
                Poll::Ready(Read::Bytes)
            }
            Poll::Ready(Err(e)) => Poll::Ready(Read::Failed(e)),
        };
    }
    let (buf, offered) = inbound.room();
    let read = tokio_util::io::poll_read_buf(Pin::new(rd), cx, buf);
    into_buffer(read, inbound, offered)
}

/// Records a read straight into the inbound buffer, which offered
/// `offered` bytes.
fn into_buffer(read: Poll<io::Result<usize>>, inbound: &mut Inbound, offered: usize) -> Poll<Read> {
    match read {
        Poll::Pending => {
            inbound.release_if_empty();
            Poll::Pending
        }
        Poll::Ready(Ok(0)) => Poll::Ready(Read::End),
        Poll::Ready(Ok(n)) => {
            inbound.filled(offered, n, tokio::time::Instant::now().into_std());
            Poll::Ready(Read::Bytes)
        }
        Poll::Ready(Err(e)) => Poll::Ready(Read::Failed(e)),
    }
}
