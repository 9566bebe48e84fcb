//! An HTTP gateway for drpc: `POST /math/add` with a JSON body reaches the
//! handler a drpc call to `/math/add` reaches.
//!
//! [`Http`] is a transport for the scheme `http`. Each HTTP connection it
//! accepts becomes one session of the endpoint, exactly as a drpc
//! connection would: accept hooks, plugins, routes, the session limit and
//! the per-session limits all apply. Inside, the gateway turns each request
//! into a call frame (or a push), and the reply frame into the response.
//! drpc's endpoint registers it when built with its `http` feature:
//!
//! ```text
//! server.listen("http://127.0.0.1:8080").await?;
//! curl -d '{"a":1,"b":2}' http://127.0.0.1:8080/math/add      # 3
//! ```
//!
//! | HTTP | drpc |
//! |---|---|
//! | `POST /math/add` | a call to `/math/add` (any other method: 405) |
//! | `Content-Type: application/json`, none, or `application/x-www-form-urlencoded` (what `curl -d` sends) | codec 2, JSON; the body is passed as it is |
//! | `Content-Type: application/msgpack` (`application/x-msgpack`, `application/vnd.msgpack`) | codec 1, MessagePack |
//! | `Content-Type: text/plain` / `application/octet-stream` / `application/x-protobuf` | codec 4 text / 3 raw / 5 protobuf; any other type: 415 |
//! | `Drpc-Meta-Trace: abc` | meta `trace` = `abc` (names are lower case, as HTTP/1 and HTTP/2 treat them) |
//! | `Drpc-Timeout: 1500` | the call's deadline, in milliseconds (none: the endpoint's default) |
//! | `Drpc-Push: 1` | a push instead of a call: `202 Accepted` once it is sent, no body |
//! | a reply | `200 OK`, the body in the reply's codec with its `Content-Type`, reply meta as `Drpc-Meta-*` headers, `Drpc-Status: 0` |
//! | an error status | the HTTP status of [`http_status`], `Drpc-Status: <code>`, and a JSON body `{"code": 404, "message": "..."}` |
//!
//! A body larger than the endpoint's frame limit is answered 413 before it
//! is read in full; connections keep alive between requests (HTTP/1.1); a
//! peer that sends no request head within 30 s is disconnected. When the
//! endpoint shuts down, each connection finishes the request it is
//! answering and closes.
#![warn(missing_docs)]

mod link;
mod request;

pub use request::{
    http_status, CODEC_HEADER, META_PREFIX, PUSH_HEADER, STATUS_HEADER, TIMEOUT_HEADER,
};

use drpc_socket::{
    Accepting, Addr, BoxFuture, Finished, Socket, SocketError, Transport, TransportConfig,
    TransportListener,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The `http` transport: an HTTP/1.1 server whose connections are sessions.
///
/// It only listens: dialing `http://` is an error (use an HTTP client).
#[derive(Debug, Clone, Default)]
pub struct Http {
    _private: (),
}

impl Http {
    /// The gateway with its documented defaults.
    pub fn new() -> Self {
        Self::default()
    }
}

/// How long a connection may take to send a request head: slow clients
/// cannot hold connections open for nothing.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes each direction of the pipe between a connection and its session
/// buffers: a whole default write batch and then some.
const PIPE_CAPACITY: usize = 256 * 1024;

impl Transport for Http {
    fn dial<'a>(
        &'a self,
        addr: &'a Addr,
        _: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Socket, SocketError>> {
        Box::pin(async move {
            Err(SocketError::Config(format!(
                "{addr}: the HTTP gateway only listens; call it with an HTTP client"
            )))
        })
    }

    fn bind<'a>(
        &'a self,
        addr: &'a Addr,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Box<dyn TransportListener>, SocketError>> {
        Box::pin(async move {
            let (listener, local) = drpc_socket::bind_tcp(addr, config).await?;
            Ok(Box::new(HttpListener {
                listener,
                local,
                max_frame_len: config.max_frame_len,
            }) as Box<dyn TransportListener>)
        })
    }
}

struct HttpListener {
    listener: TcpListener,
    local: Addr,
    max_frame_len: usize,
}

impl TransportListener for HttpListener {
    fn local_addr(&self) -> &Addr {
        &self.local
    }

    #[cfg(unix)]
    fn hand_off(&mut self) -> Result<std::os::fd::OwnedFd, SocketError> {
        drpc_socket::hand_off_tcp(&self.listener, &self.local)
    }

    fn accept(&mut self) -> BoxFuture<'_, Result<Accepting, SocketError>> {
        Box::pin(async move {
            let op = |e| SocketError::Io {
                op: "accept",
                addr: self.local.to_string(),
                source: e,
            };
            let (tcp, from) = self.listener.accept().await.map_err(op)?;
            tcp.set_nodelay(true).map_err(op)?;
            let peer = Addr::new(self.local.scheme().clone(), from.to_string())?;
            let (gateway, session) = tokio::io::duplex(PIPE_CAPACITY);
            let serving = tokio::spawn(link::serve(tcp, gateway, self.max_frame_len));
            // The endpoint waits for this on shutdown: once it completes,
            // the connection's last response has been written.
            let finished = Finished::when(async move {
                let _ = serving.await;
            });
            let socket = Socket::from_stream(session, self.local.clone(), peer);
            Ok(Accepting::ready(socket.with_finished(finished)))
        })
    }
}

/// Registers [`Http`] under `http` in `config`, for a drpc built without
/// its `http` feature (which does this itself).
pub fn register(config: &mut TransportConfig) {
    config
        .register_arc("http", Arc::new(Http::new()))
        .expect("http is a valid scheme");
}
