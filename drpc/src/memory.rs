//! An in-memory network of endpoints, for tests and for sessions between
//! parts of one program: dials to its names connect through in-memory
//! pipes (no system call, no real time), so whole sessions, redials
//! included, run on tokio's paused clock.

use crate::shared::{Dialer, Endpoint};
use crate::values::Config;
use drpc_socket::{Addr, Socket, SocketError};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Endpoints that serve under names, and a [`Dialer`] that reaches them.
///
/// A dial to an address the network serves makes a pipe, serves one end on
/// that endpoint ([`Endpoint::serve`], accept hooks and all) and returns the
/// other; a dial to any other address is refused, as a closed port would
/// be. Any address works as a name (`mem://server`, or a `tcp://` address
/// the code under test already uses).
///
/// ```
/// use drpc::memory::MemoryNet;
/// use drpc::{CallCtx, Endpoint, Router, Status};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Status> {
/// let net = MemoryNet::new();
/// let mut routes = Router::new();
/// routes.call("/echo", |_: CallCtx, s: String| async move { Ok::<_, Status>(s) }).unwrap();
/// let server = Endpoint::builder().router(routes).build()?;
/// net.serve("mem://server", &server);
///
/// let client = Endpoint::builder().dialer(net.dialer()).build()?;
/// let session = client.dial("mem://server").await?;
/// assert_eq!(session.call::<_, String>("/echo", "hi").await?, "hi");
/// client.close().await;
/// server.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct MemoryNet {
    inner: Arc<Net>,
}

#[derive(Default)]
struct Net {
    serving: Mutex<HashMap<String, Endpoint>>,
    dials: AtomicU64,
}

/// Bytes each direction of a pipe buffers before writes wait: like a
/// kernel's socket buffers.
const PIPE_CAPACITY: usize = 256 * 1024;

impl MemoryNet {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `endpoint` under `addr` from now on (replacing what served
    /// there).
    pub fn serve(&self, addr: &str, endpoint: &Endpoint) {
        self.inner
            .serving
            .lock()
            .insert(addr.to_string(), endpoint.clone());
    }

    /// Stops serving `addr`: new dials to it are refused; sessions already
    /// made go on.
    pub fn unserve(&self, addr: &str) {
        self.inner.serving.lock().remove(addr);
    }

    /// The dialer to give an endpoint that dials into this network
    /// ([`EndpointBuilder::dialer`](crate::EndpointBuilder::dialer)).
    pub fn dialer(&self) -> MemoryDialer {
        MemoryDialer { net: self.clone() }
    }
}

/// Dials into a [`MemoryNet`].
#[derive(Clone)]
pub struct MemoryDialer {
    net: MemoryNet,
}

impl Dialer for MemoryDialer {
    fn dial<'a>(
        &'a self,
        addr: &'a Addr,
        _: &'a Config,
    ) -> Pin<Box<dyn Future<Output = Result<Socket, SocketError>> + Send + 'a>> {
        Box::pin(async move {
            let name = addr.to_string();
            let server = self.net.inner.serving.lock().get(&name).cloned();
            let Some(server) = server else {
                return Err(SocketError::Io {
                    op: "dial",
                    addr: name,
                    source: io::Error::new(io::ErrorKind::ConnectionRefused, "nothing serves it"),
                });
            };
            let n = self.net.inner.dials.fetch_add(1, Ordering::Relaxed);
            let (client, served) =
                drpc_socket::memory::pipe(&format!("client-{n}"), addr.target(), PIPE_CAPACITY);
            // The accept side runs as an accepted connection would: on a
            // task of its own, its hooks and all.
            tokio::spawn(async move {
                if let Err(status) = server.serve(served).await {
                    tracing::debug!(%status, "in-memory connection refused");
                }
            });
            Ok(client)
        })
    }
}

impl std::fmt::Debug for MemoryNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.inner.serving.lock().keys().cloned().collect();
        f.debug_struct("MemoryNet")
            .field("serving", &names)
            .finish()
    }
}
