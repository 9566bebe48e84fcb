//! WebSocket: `ws://host:port[/path]`, and `wss://` over TLS.
//!
//! drpc's frames travel in binary WebSocket messages (docs/PROTOCOL.md
//! section 9): the payloads of the binary messages, one after another, are
//! the same byte stream a TCP connection carries. drpc ends each message at
//! a frame boundary (the bytes of one write batch), but a receiver must not
//! rely on it. An empty binary message ends the sender's direction, as a
//! TCP FIN would; the Close handshake follows once both have ended. Text
//! messages are refused: the connection ends.
//!
//! A dial asks for the path in the address (`/` when it names none) and
//! offers the subprotocol [`SUBPROTOCOL`]. A listener whose address names a
//! path answers only that path (others get 404); one without a path
//! answers any. It echoes the subprotocol when offered and accepts clients
//! that offer none, as browsers may. `wss://` uses the certificates of
//! `tls://` ([`TlsConfig`](crate::tls::TlsConfig)), with the ALPN protocol
//! `http/1.1` that browsers speak.

mod io;

use crate::transport::{BoxFuture, Transport, TransportListener};
use crate::{tcp, Accepting, Addr, Scheme, Socket, SocketError, TransportConfig};
use io::{PeerEnds, WsRead, WsWrite};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The WebSocket subprotocol drpc offers and echoes.
pub const SUBPROTOCOL: &str = "drpc";

/// Tuning for `ws://` and `wss://`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WsConfig {
    /// The largest message accepted, in bytes; a larger one ends the
    /// connection. drpc's endpoint raises it to its frame limit plus its
    /// write batch, so that every batch it may send fits. Default: 16 MiB,
    /// above the default frame limit (8 MiB) and batch.
    pub max_message_len: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            max_message_len: 16 * 1024 * 1024,
        }
    }
}

impl WsConfig {
    fn library(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .max_message_size(Some(self.max_message_len))
            .max_frame_size(Some(self.max_message_len))
    }
}

/// `ws://` and, with `secure`, `wss://`.
pub(crate) struct WebSocket {
    pub(crate) secure: bool,
}

/// `host:port` and the path (`/` when there is none) of a WebSocket
/// address.
fn split(addr: &Addr) -> (&str, Option<&str>) {
    match addr.target().find('/') {
        Some(i) => (&addr.target()[..i], Some(&addr.target()[i..])),
        None => (addr.target(), None),
    }
}

/// The TCP address under a WebSocket one.
fn tcp_addr(addr: &Addr) -> Result<Addr, SocketError> {
    Addr::new(Scheme::TCP, split(addr).0)
}

impl Transport for WebSocket {
    fn dial<'a>(
        &'a self,
        addr: &'a Addr,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Socket, SocketError>> {
        Box::pin(async move {
            let (authority, path) = split(addr);
            let scheme = addr.scheme().clone();
            let stream = tcp::connect(&tcp_addr(addr)?).await?;
            let (local, peer) = tcp::prepare(&stream, scheme.clone())
                .map_err(|e| SocketError::io("dial", addr, e))?;
            let url = format!("{scheme}://{authority}{}", path.unwrap_or("/"));
            if !self.secure {
                return handshake_client(stream, &url, addr, config, local, peer).await;
            }
            #[cfg(feature = "wss")]
            {
                let tls = tls::connect(stream, addr, config).await?;
                handshake_client(tls, &url, addr, config, local, peer).await
            }
            #[cfg(not(feature = "wss"))]
            Err(SocketError::Unsupported("wss".to_string()))
        })
    }

    fn bind<'a>(
        &'a self,
        addr: &'a Addr,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Box<dyn TransportListener>, SocketError>> {
        Box::pin(async move {
            #[cfg(feature = "wss")]
            let tls = match self.secure {
                true => Some(tls::acceptor(config)?),
                false => None,
            };
            let (listener, bound) = tcp::bind(&tcp_addr(addr)?, config).await?;
            let path = split(addr).1.map(str::to_string);
            let local = Addr::new(
                addr.scheme().clone(),
                format!("{}{}", bound.target(), path.as_deref().unwrap_or("")),
            )?;
            Ok(Box::new(WsAccept {
                listener,
                local,
                path,
                config: config.ws.clone(),
                #[cfg(feature = "wss")]
                tls,
            }) as Box<dyn TransportListener>)
        })
    }
}

async fn handshake_client<S>(
    stream: S,
    url: &str,
    addr: &Addr,
    config: &TransportConfig,
    local: Addr,
    peer: Addr,
) -> Result<Socket, SocketError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let failed = |reason: String| SocketError::Handshake {
        op: "dial",
        addr: addr.to_string(),
        reason,
    };
    let mut request = url
        .into_client_request()
        .map_err(|e| SocketError::BadAddr {
            addr: addr.to_string(),
            reason: e.to_string(),
        })?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    let (ws, _) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(config.ws.library()))
            .await
            .map_err(|e| failed(e.to_string()))?;
    Ok(socket(ws, &config.ws, local, peer))
}

fn socket<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    config: &WsConfig,
    local: Addr,
    peer: Addr,
) -> Socket
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    use futures_util::StreamExt;
    let (sink, stream) = ws.split();
    let ends = Arc::new(PeerEnds::default());
    let read = WsRead {
        messages: stream,
        current: bytes::Bytes::new(),
        peer: ends.clone(),
    };
    let write = WsWrite {
        messages: sink,
        pending: bytes::BytesMut::new(),
        max_message: config.max_message_len.max(1),
        peer: ends,
        ended: false,
        closing: false,
    };
    Socket::from_parts(Box::new(read), Box::new(write), local, peer)
}

struct WsAccept {
    listener: TcpListener,
    local: Addr,
    path: Option<String>,
    config: WsConfig,
    #[cfg(feature = "wss")]
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl TransportListener for WsAccept {
    fn local_addr(&self) -> &Addr {
        &self.local
    }

    #[cfg(unix)]
    fn hand_off(&mut self) -> Result<std::os::fd::OwnedFd, SocketError> {
        tcp::hand_off(&self.listener, &self.local)
    }

    fn accept(&mut self) -> BoxFuture<'_, Result<Accepting, SocketError>> {
        Box::pin(async move {
            let (stream, _) = self
                .listener
                .accept()
                .await
                .map_err(|e| SocketError::io("accept", &self.local, e))?;
            let scheme = self.local.scheme().clone();
            let (local, peer) = tcp::prepare(&stream, scheme)
                .map_err(|e| SocketError::io("accept", &self.local, e))?;
            let (path, config) = (self.path.clone(), self.config.clone());
            #[cfg(feature = "wss")]
            if let Some(acceptor) = self.tls.clone() {
                return Ok(Accepting::handshake(async move {
                    let tls =
                        acceptor
                            .accept(stream)
                            .await
                            .map_err(|e| SocketError::Handshake {
                                op: "accept",
                                addr: peer.to_string(),
                                reason: e.to_string(),
                            })?;
                    handshake_server(tls, path, config, local, peer).await
                }));
            }
            Ok(Accepting::handshake(handshake_server(
                stream, path, config, local, peer,
            )))
        })
    }
}

// The handshake callback's error type is tungstenite's, not ours to shrink.
#[allow(clippy::result_large_err)]
async fn handshake_server<S>(
    stream: S,
    path: Option<String>,
    config: WsConfig,
    local: Addr,
    peer: Addr,
) -> Result<Socket, SocketError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let answer = |request: &Request, mut response: Response| {
        if let Some(want) = &path {
            if request.uri().path() != want {
                let mut refused = ErrorResponse::new(Some(format!(
                    "no WebSocket at this path; drpc serves {want}\n"
                )));
                *refused.status_mut() = StatusCode::NOT_FOUND;
                return Err(refused);
            }
        }
        let offered = request
            .headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim() == SUBPROTOCOL);
        if offered {
            response.headers_mut().insert(
                "sec-websocket-protocol",
                HeaderValue::from_static(SUBPROTOCOL),
            );
        }
        Ok(response)
    };
    let ws =
        tokio_tungstenite::accept_hdr_async_with_config(stream, answer, Some(config.library()))
            .await
            .map_err(|e| SocketError::Handshake {
                op: "accept",
                addr: peer.to_string(),
                reason: e.to_string(),
            })?;
    Ok(socket(ws, &config, local, peer))
}

#[cfg(feature = "wss")]
mod tls {
    use crate::{Addr, SocketError, TransportConfig};
    use std::sync::Arc;
    use tokio::net::TcpStream;

    /// What browsers negotiate for a WebSocket over TLS.
    const HTTP1: &[u8] = b"http/1.1";

    pub(super) fn acceptor(
        config: &TransportConfig,
    ) -> Result<tokio_rustls::TlsAcceptor, SocketError> {
        let mut server = (*config.tls.server("wss")?).clone();
        server.alpn_protocols = vec![HTTP1.to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server)))
    }

    pub(super) async fn connect(
        stream: TcpStream,
        addr: &Addr,
        config: &TransportConfig,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, SocketError> {
        let mut client = (*config.tls.client("wss")?).clone();
        client.alpn_protocols = vec![HTTP1.to_vec()];
        let host = Addr::new(crate::Scheme::TLS, super::split(addr).0)?;
        let name = config.tls.server_name(&host)?;
        tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(name, stream)
            .await
            .map_err(|e| SocketError::Handshake {
                op: "dial",
                addr: addr.to_string(),
                reason: e.to_string(),
            })
    }
}
