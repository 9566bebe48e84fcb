//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod pipe;

use drpc::plugin::BoxFuture;
use drpc::{
    Addr, CallCtx, Config, Endpoint, EndpointBuilder, Plugin, PushCtx, Router, Session, Status,
};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc;

/// The most any single awaited event may take before a test fails; generous
/// so a loaded 2-core machine never flakes, while a hang still fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// The next frame a raw connection receives, in the raw wire format; what
/// follows it stays unread, for the next call.
pub async fn read_frame(raw: &mut tokio::net::TcpStream) -> drpc::proto::Message {
    use drpc::proto::{FrameLimits, Proto, RawProto};
    let mut framer = RawProto.framer(&FrameLimits::default());
    let mut buf = bytes::BytesMut::new();
    loop {
        if let Some(m) = framer.decode(&mut buf).unwrap() {
            return m;
        }
        read_within_frame(raw, &mut buf).await;
    }
}

/// Reads more of the frame begun in `buf` (which holds nothing past it),
/// never past its end: the bytes after it stay in the socket.
async fn read_within_frame(raw: &mut tokio::net::TcpStream, buf: &mut bytes::BytesMut) {
    use bytes::BufMut;
    use tokio::io::AsyncReadExt;
    let rest = match buf.get(..4) {
        Some(prefix) => 4 + u32::from_be_bytes(prefix.try_into().unwrap()) as usize - buf.len(),
        None => 4 - buf.len(),
    };
    buf.reserve(rest);
    let n = within("a frame", raw.read_buf(&mut (&mut *buf).limit(rest)))
        .await
        .unwrap();
    assert!(n > 0, "the connection closed before a whole frame");
}

/// Reads a drpc dialer's first frame after its hello (docs/PROTOCOL.md
/// section 3.2), answering the hello as a peer written before it does:
/// 404, so the dialer sends it nothing but kinds 1 to 3.
pub async fn read_past_hello(raw: &mut tokio::net::TcpStream) -> drpc::proto::Message {
    use drpc::proto::{FrameLimits, Header, Message, Proto, RawProto};
    use tokio::io::AsyncWriteExt;
    let mut framer = RawProto.framer(&FrameLimits::default());
    let mut buf = bytes::BytesMut::new();
    let mut hello_seen = false;
    loop {
        if let Some(m) = framer.decode(&mut buf).unwrap() {
            if hello_seen {
                return m;
            }
            assert_eq!(
                m.header.service_method, "/_drpc/hello",
                "a dialer says hello first"
            );
            hello_seen = true;
            let mut h = Header::reply(m.header.seq);
            h.status_code = 404;
            h.status_message = "no handler for /_drpc/hello".into();
            let mut out = bytes::BytesMut::new();
            framer
                .encode(&Message::new(h, bytes::Bytes::new()), &mut out)
                .unwrap();
            raw.write_all(&out).await.unwrap();
            continue;
        }
        read_within_frame(raw, &mut buf).await;
    }
}

/// `bytes` as spaced hex pairs, as docs/PROTOCOL.md shows frames.
pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A runtime for a server on a thread of its own, which a test can stop
/// (or freeze) independently of its own runtime.
pub fn own_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Awaits `fut`, failing the test if it takes longer than [`WAIT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: did not happen within {WAIT:?}"),
    }
}

/// Waits until a stream's sender has sent at least `window` items (the
/// count in `sent`) and sends no more while other tasks run; returns the
/// count then.
pub async fn until_stalled(sent: &std::sync::atomic::AtomicU64, window: u64) -> u64 {
    use std::sync::atomic::Ordering;
    within("the sender to stop", async {
        loop {
            let before = sent.load(Ordering::SeqCst);
            for _ in 0..50 {
                tokio::task::yield_now().await;
            }
            if before >= window && sent.load(Ordering::SeqCst) == before {
                return before;
            }
        }
    })
    .await
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Add {
    pub a: i64,
    pub b: i64,
}

/// Routes most tests serve.
pub fn test_router() -> Router {
    let mut r = Router::new();
    r.call("/echo", |_: CallCtx, v: serde_json::Value| async move {
        Ok::<_, Status>(v)
    })
    .unwrap();
    r.call(
        "/echo_bytes",
        |_: CallCtx, v: serde_bytes::ByteBuf| async move { Ok::<_, Status>(v) },
    )
    .unwrap();
    r.group("/math")
        .call("/add", |_: CallCtx, x: Add| async move {
            Ok::<_, Status>(x.a + x.b)
        })
        .unwrap();
    r.call("/slow", |_: CallCtx, ms: u64| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, Status>(ms)
    })
    .unwrap();
    r.call("/panic", |_: CallCtx, _: ()| async move {
        if true {
            panic!("boom");
        }
        Ok::<(), Status>(())
    })
    .unwrap();
    r.call("/fail", |_: CallCtx, code: i32| async move {
        Err::<(), _>(Status::new(drpc::Code(code), "as asked"))
    })
    .unwrap();
    r.call("/meta", |ctx: CallCtx, key: String| async move {
        let value = ctx.meta().get(&key).map(str::to_string);
        ctx.set_reply_meta("seen", value.as_deref().unwrap_or("none"));
        Ok::<_, Status>(value)
    })
    .unwrap();
    r.call("/remaining_ms", |ctx: CallCtx, _: ()| async move {
        Ok::<_, Status>(ctx.remaining().as_millis() as u64)
    })
    .unwrap();
    r.call(
        "/as_json",
        |ctx: CallCtx, v: serde_json::Value| async move {
            ctx.set_reply_codec(drpc::CodecId::JSON);
            Ok::<_, Status>(v)
        },
    )
    .unwrap();
    r
}

/// Sends every accepted session to a channel, so a test can wait for the
/// server side of a connection instead of polling for it.
pub struct AcceptNotify(pub mpsc::UnboundedSender<Session>);

impl Plugin for AcceptNotify {
    fn name(&self) -> &str {
        "accept-notify"
    }

    fn after_accept<'a>(&'a self, session: &'a Session) -> BoxFuture<'a, Result<(), Status>> {
        let _ = self.0.send(session.clone());
        Box::pin(async { Ok(()) })
    }
}

/// A listening server and a client connected to it.
pub struct Pair {
    pub server: Endpoint,
    pub client: Endpoint,
    pub addr: Addr,
    /// The client's session.
    pub session: Session,
    /// The server's session for the same connection.
    pub accepted: Session,
    pub accepts: mpsc::UnboundedReceiver<Session>,
}

pub async fn pair_with(server_router: Router, client_router: Router, config: Config) -> Pair {
    pair_from(
        Endpoint::builder()
            .config(config.clone())
            .router(server_router),
        Endpoint::builder().config(config).router(client_router),
    )
    .await
}

/// A pair from the given builders over TCP; the server also gets
/// [`AcceptNotify`].
pub async fn pair_from(server: EndpointBuilder, client: EndpointBuilder) -> Pair {
    pair_on("tcp://127.0.0.1:0", server, client).await
}

/// A pair from the given builders, the server listening on `listen`.
pub async fn pair_on(listen: &str, server: EndpointBuilder, client: EndpointBuilder) -> Pair {
    init_tracing();
    let (tx, mut accepts) = mpsc::unbounded_channel();
    let server = server.plugin(AcceptNotify(tx)).build().unwrap();
    let addr = server.listen(listen).await.unwrap();
    let client = client.build().unwrap();
    let session = within("dial", client.dial(&addr)).await.unwrap();
    let accepted = within("accept", accepts.recv()).await.unwrap();
    Pair {
        server,
        client,
        addr,
        session,
        accepted,
        accepts,
    }
}

pub async fn pair() -> Pair {
    pair_with(test_router(), Router::new(), Config::default()).await
}

impl Pair {
    pub async fn close(self) {
        within("client close", self.client.close()).await;
        within("server close", self.server.close()).await;
    }
}

/// A push handler that forwards `(service method, decoded String)` to a channel.
pub fn forward_pushes(
    router: &mut Router,
    path: &str,
) -> mpsc::UnboundedReceiver<(String, String)> {
    let (tx, rx) = mpsc::unbounded_channel();
    router
        .push(path, move |ctx: PushCtx, body: String| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((ctx.service_method().to_string(), body));
            }
        })
        .unwrap();
    rx
}

/// Registers `/hold`: a handler that reports that it started, then waits a
/// minute (longer than any test), so a test can act while a call is running.
pub fn hold_route(router: &mut Router) -> mpsc::UnboundedReceiver<()> {
    let (tx, rx) = mpsc::unbounded_channel();
    router
        .call("/hold", move |_: CallCtx, _: ()| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(());
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok::<_, Status>(())
            }
        })
        .unwrap();
    rx
}

/// A private CA and certificates it signed, made fresh at run time.
pub struct Certs {
    pub ca: Vec<u8>,
    pub server_cert: Vec<u8>,
    pub server_key: Vec<u8>,
    pub client_cert: Vec<u8>,
    pub client_key: Vec<u8>,
}

/// Makes a CA, a server certificate for `localhost` and `127.0.0.1`, and
/// a client certificate, all signed by the CA.
pub fn make_certs() -> Certs {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        (cert.pem().into_bytes(), key.serialize_pem().into_bytes())
    };
    let (server_cert, server_key) = leaf(vec!["localhost".into(), "127.0.0.1".into()]);
    let (client_cert, client_key) = leaf(vec!["client.test".into()]);
    Certs {
        ca: ca.pem().into_bytes(),
        server_cert,
        server_key,
        client_cert,
        client_key,
    }
}

/// A config that serves with the server certificate and dials trusting
/// the CA: enough for `tls://` and `quic://` on both sides.
pub fn tls_config(certs: &Certs) -> Config {
    use drpc::socket::tls;
    let mut config = Config::default();
    config.transport.tls = tls::TlsConfig::default()
        .with_server_pem(&certs.server_cert, &certs.server_key, None)
        .unwrap()
        .with_client(tls::client_config(&certs.ca, None).unwrap());
    config
}

/// A unique Unix socket path for this process and `tag`.
pub fn unix_path(tag: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir()
        .join(format!("drpc-{tag}-{}-{n}.sock", std::process::id()))
        .display()
        .to_string()
}

/// A transport under test: where a server listens, and the config that
/// both sides need for it.
#[derive(Clone)]
pub struct Transport {
    pub name: &'static str,
    pub listen: String,
    pub config: Config,
}

impl Transport {
    /// The transport named `name`, on a free loopback address.
    pub fn named(name: &'static str) -> Self {
        let (listen, config) = match name {
            "tcp" => ("tcp://127.0.0.1:0".to_string(), Config::default()),
            "unix" => (
                format!("unix://{}", unix_path("conformance")),
                Config::default(),
            ),
            "tls" => ("tls://127.0.0.1:0".to_string(), tls_config(&make_certs())),
            "quic" => ("quic://127.0.0.1:0".to_string(), tls_config(&make_certs())),
            "quic_single" => {
                let mut config = tls_config(&make_certs());
                config.transport.quic.streams = drpc::socket::quic::StreamMode::Single;
                ("quic://127.0.0.1:0".to_string(), config)
            }
            "kcp" => ("kcp://127.0.0.1:0".to_string(), Config::default()),
            "ws" => ("ws://127.0.0.1:0/drpc".to_string(), Config::default()),
            "wss" => ("wss://127.0.0.1:0".to_string(), tls_config(&make_certs())),
            "pipe" => {
                let mut config = Config::default();
                config
                    .transport
                    .register("pipe", pipe::PipeTransport::default())
                    .unwrap();
                (format!("pipe://{}", unix_path("conformance")), config)
            }
            other => panic!("no transport {other}"),
        };
        Self {
            name,
            listen,
            config,
        }
    }

    /// The config with `f` applied.
    pub fn with(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self
    }

    /// A connected pair over this transport.
    pub async fn pair(&self, server: Router, client: Router) -> Pair {
        pair_on(
            &self.listen,
            Endpoint::builder()
                .config(self.config.clone())
                .router(server),
            Endpoint::builder()
                .config(self.config.clone())
                .router(client),
        )
        .await
    }
}

/// `/wait` on a router: each call reports that it started, then waits
/// until the gate is released, and answers 7.
pub struct Gate {
    pub started: mpsc::UnboundedReceiver<()>,
    pub release: tokio::sync::watch::Sender<bool>,
}

/// [`test_router`] with a `/wait` route behind a [`Gate`].
pub fn gated_router() -> (Router, Gate) {
    let (started_tx, started) = mpsc::unbounded_channel();
    let (release, release_rx) = tokio::sync::watch::channel(false);
    let mut r = test_router();
    r.call("/wait", move |_: CallCtx, _: ()| {
        let (started_tx, mut rx) = (started_tx.clone(), release_rx.clone());
        async move {
            let _ = started_tx.send(());
            let _ = rx.wait_for(|open| *open).await;
            Ok::<_, Status>(7u8)
        }
    })
    .unwrap();
    (r, Gate { started, release })
}

/// The default config with redial off, for tests about how a session ends.
pub fn no_redial() -> Config {
    let mut config = Config::default();
    config.redial.enabled = false;
    config
}

/// Starts a `/wait` call (see [`gated_router`]) on `session` and returns
/// once its handler runs.
pub async fn call_waiting(
    session: &Session,
    gate: &mut Gate,
) -> tokio::task::JoinHandle<Result<u8, Status>> {
    let s = session.clone();
    let call = tokio::spawn(async move { s.call::<_, u8>("/wait", &()).await });
    within("handler start", gate.started.recv()).await.unwrap();
    call
}
