//! The ceiling: a bare framed echo over plain tokio TCP, the least any RPC
//! over one connection must do. Requests are `[u32 length][u64 id][body]`;
//! a writer task coalesces queued requests into one write, a reader task
//! completes waiting requests by id, and the server echoes each frame from
//! one task that reads and writes.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// Serves the echo until the runtime ends.
pub async fn server(listener: TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(echo(stream));
    }
}

async fn echo(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut inbuf = BytesMut::with_capacity(64 * 1024);
    let mut out = BytesMut::with_capacity(64 * 1024);
    loop {
        match stream.read_buf(&mut inbuf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        while inbuf.len() >= 4 {
            let len = u32::from_be_bytes(inbuf[..4].try_into().unwrap()) as usize;
            if inbuf.len() < 4 + len {
                inbuf.reserve(4 + len - inbuf.len());
                break;
            }
            out.extend_from_slice(&inbuf[..4 + len]);
            inbuf.advance(4 + len);
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
    }
}

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Bytes>>>>;

/// One connection to the echo server.
pub struct Client {
    tx: mpsc::Sender<(u64, Bytes)>,
    waiters: Waiters,
    next: AtomicU64,
}

impl Client {
    pub async fn connect(addr: std::net::SocketAddr) -> Arc<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .expect("connect to the bare server");
        stream.set_nodelay(true).unwrap();
        let (mut rd, mut wr) = stream.into_split();
        let (tx, mut rx) = mpsc::channel::<(u64, Bytes)>(1024);
        let waiters: Waiters = Default::default();
        tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(64 * 1024);
            while let Some(first) = rx.recv().await {
                let mut next = Some(first);
                while let Some((id, body)) = next {
                    buf.put_u32((8 + body.len()) as u32);
                    buf.put_u64(id);
                    buf.put_slice(&body);
                    next = if buf.len() < 64 * 1024 {
                        rx.try_recv().ok()
                    } else {
                        None
                    };
                }
                if wr.write_all(&buf).await.is_err() {
                    return;
                }
                buf.clear();
            }
        });
        let w = waiters.clone();
        tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(64 * 1024);
            loop {
                match rd.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                while buf.len() >= 4 {
                    let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
                    if buf.len() < 4 + len {
                        buf.reserve(4 + len - buf.len());
                        break;
                    }
                    let mut frame = buf.split_to(4 + len).freeze();
                    frame.advance(4);
                    let id = frame.get_u64();
                    if let Some(waiter) = w.lock().unwrap().remove(&id) {
                        let _ = waiter.send(frame);
                    }
                }
                if buf.capacity() - buf.len() < 4096 {
                    buf.reserve(64 * 1024);
                }
            }
        });
        Arc::new(Self {
            tx,
            waiters,
            next: AtomicU64::new(0),
        })
    }

    pub async fn call(&self, body: Bytes) -> Bytes {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().unwrap().insert(id, tx);
        self.tx.send((id, body)).await.expect("bare writer alive");
        rx.await.expect("bare reply")
    }
}
