//! `pipe://name`: a transport written outside the crate, as a user would
//! write one, that connects endpoints of one process through in-memory
//! pipes. The conformance suite runs on it like on any built-in transport.

use drpc::socket::{
    Accepting, Addr, BoxFuture, Socket, SocketError, Transport, TransportConfig, TransportListener,
};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Bytes each direction of a pipe buffers, as a kernel's socket buffers do.
const CAPACITY: usize = 256 * 1024;

type Names = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Socket>>>>;

/// The transport: the names being listened on.
#[derive(Clone, Default)]
pub struct PipeTransport {
    names: Names,
    dials: Arc<AtomicU64>,
}

fn refused(addr: &Addr) -> SocketError {
    SocketError::Io {
        op: "dial",
        addr: addr.to_string(),
        source: io::Error::new(io::ErrorKind::ConnectionRefused, "nothing listens there"),
    }
}

impl Transport for PipeTransport {
    fn dial<'a>(
        &'a self,
        addr: &'a Addr,
        _: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Socket, SocketError>> {
        Box::pin(async move {
            let n = self.dials.fetch_add(1, Ordering::Relaxed);
            let me: Addr = format!("pipe://dialer-{n}").parse()?;
            let (ours, theirs) = tokio::io::duplex(CAPACITY);
            let served = Socket::from_stream(theirs, addr.clone(), me.clone());
            let listener = self.names.lock().get(addr.target()).cloned();
            match listener {
                Some(tx) if tx.send(served).is_ok() => {
                    Ok(Socket::from_stream(ours, me, addr.clone()))
                }
                _ => Err(refused(addr)),
            }
        })
    }

    fn bind<'a>(
        &'a self,
        addr: &'a Addr,
        _: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Box<dyn TransportListener>, SocketError>> {
        Box::pin(async move {
            let (tx, accepts) = mpsc::unbounded_channel();
            let mut names = self.names.lock();
            if names.get(addr.target()).is_some_and(|tx| !tx.is_closed()) {
                return Err(SocketError::Io {
                    op: "listen",
                    addr: addr.to_string(),
                    source: io::Error::new(io::ErrorKind::AddrInUse, "the name is taken"),
                });
            }
            names.insert(addr.target().to_string(), tx);
            Ok(Box::new(PipeListener {
                local: addr.clone(),
                accepts,
                names: self.names.clone(),
            }) as Box<dyn TransportListener>)
        })
    }
}

struct PipeListener {
    local: Addr,
    accepts: mpsc::UnboundedReceiver<Socket>,
    names: Names,
}

impl TransportListener for PipeListener {
    fn local_addr(&self) -> &Addr {
        &self.local
    }

    fn accept(&mut self) -> BoxFuture<'_, Result<Accepting, SocketError>> {
        Box::pin(async move {
            match self.accepts.recv().await {
                Some(socket) => Ok(Accepting::ready(socket)),
                None => std::future::pending().await,
            }
        })
    }
}

impl Drop for PipeListener {
    fn drop(&mut self) {
        // Dials from now on are refused, as at a closed port.
        self.names.lock().remove(self.local.target());
    }
}
