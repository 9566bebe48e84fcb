use drpc_codec::{CodecId, Codecs};
use drpc_proto::DEFAULT_MAX_FRAME_LEN;
use drpc_socket::TransportConfig;

use crate::values::{Limits, Redial};
use std::time::Duration;

/// An endpoint's settings. Every field has a default, documented with its
/// reason (all of them, transports included, are listed in one place in
/// `docs/SETTINGS.md`); override what you need:
///
/// ```
/// use drpc::Config;
/// use std::time::Duration;
///
/// let config = Config {
///     default_timeout: Duration::from_secs(5),
///     ..Config::default()
/// };
/// assert_eq!(config.max_frame_len, 8 * 1024 * 1024);
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    /// The largest frame read or written, in bytes, length prefix included.
    ///
    /// Default 8 MiB: room for a 4 MiB body with its header, while a peer's
    /// forged length can make the endpoint reserve at most this much per
    /// session. A larger incoming frame closes the session (after answering
    /// it with 413 when it is a call); a larger outgoing message fails with
    /// 413 before anything is sent.
    pub max_frame_len: usize,

    /// The deadline of a call that does not set its own, and of an incoming
    /// call whose peer sent none.
    ///
    /// Default 30 s: long enough for slow real work, short enough that a
    /// lost peer is noticed by every caller.
    pub default_timeout: Duration,

    /// How long a dial may take, connection and connection hooks included.
    ///
    /// Default 10 s.
    pub dial_timeout: Duration,

    /// The codec of outgoing calls and pushes that do not choose one.
    ///
    /// Default MessagePack: compact and schema-free.
    pub default_codec: CodecId,

    /// How many messages may wait for a session's writer.
    ///
    /// Default 1024. When the queue is full, senders wait (up to their
    /// deadline), so a slow peer slows its callers instead of growing memory.
    pub write_queue: usize,

    /// How many bytes the writer gathers from queued messages before one
    /// write to the socket.
    ///
    /// Default 64 KiB: many small messages share a system call, while one
    /// write stays short.
    pub write_batch: usize,

    /// How many bytes the reader asks the socket for at first. The size
    /// doubles, up to 256 KiB, while reads fill it, and falls back toward
    /// this value when they do not.
    ///
    /// Default 16 KiB: small for idle sessions; busy ones grow their reads.
    pub read_chunk: usize,

    /// How long a graceful close ([`Session::close`](crate::Session::close),
    /// [`Endpoint::close`](crate::Endpoint::close)) waits for running
    /// handlers, and then for their replies to be written, before it cancels
    /// them. [`Endpoint::shutdown`](crate::Endpoint::shutdown) takes its own.
    /// A peer that ends its stream (shuts down its write side) gets the same:
    /// the calls it already sent run and are answered within this grace.
    /// After its own end of stream, a side reads on until the peer's (so
    /// closing cannot reset a connection whose replies the peer still
    /// reads), for at most this grace and at most 1 s of the peer's silence.
    ///
    /// Default 10 s: long enough for most handlers to finish, short enough
    /// for a deploy to move on.
    pub close_grace: Duration,

    /// How long a peer may take to finish a frame once its first bytes
    /// have arrived. A peer that sends part of a frame and then goes quiet
    /// (slowloris) has its session closed with 408 when this runs out.
    /// Silence between frames is not limited here.
    ///
    /// Default 30 s: a full 8 MiB frame needs about 2.3 Mbit/s to make it,
    /// and a stalled peer holds a session and its buffer for half a minute
    /// at most.
    pub frame_timeout: Duration,

    /// The longest service method accepted or sent, in bytes. A longer one
    /// is answered (or refused before sending) with 413.
    ///
    /// Default 1 KiB: far above any real route, and a hostile name is never
    /// hashed, logged or echoed at length.
    pub max_method_len: usize,

    /// The most meta a message may carry, counted as its pairs take on the
    /// wire: 4 length bytes per pair plus its key and value. More is
    /// answered (or refused before sending) with 413.
    ///
    /// Default 16 KiB: room for trace context and a few tokens (a JWT is
    /// about 1 KiB), small enough that bulk data goes in the body. Counting
    /// the length bytes bounds the number of pairs (at most 4,096), so a
    /// message's meta never costs more to hold than it took on the wire.
    pub max_meta_len: usize,

    /// How long a session's connection may live before it is renewed;
    /// `None` (the default) for no limit. Counted from the connection's
    /// start, and shortened at random by up to a tenth so sessions opened
    /// together do not all renew together. When it is reached, this side
    /// sends the going-away notice with the reason `max-age`
    /// (docs/PROTOCOL.md section 3.1) and drains the connection: running
    /// calls finish, calls that cross the notice are answered "not run".
    /// A dialed session then redials at once (whatever
    /// [`Redial::after_shutdown`] says: the peer is not going away) and
    /// makes the calls the peer did not run again on the new connection;
    /// an accepted one closes, and its dialer redials. Use it to spread
    /// long-lived clients over new instances behind a load balancer, or to
    /// pick up rotated credentials. Per session:
    /// [`Session::set_max_age`](crate::Session::set_max_age).
    pub max_session_age: Option<Duration>,

    /// How long a session may go without a call or push of the
    /// application, either way, before its connection is closed; `None`
    /// (the default) for no limit. A call in flight either way keeps it
    /// busy however long it runs; drpc's own methods (`/_drpc/...`:
    /// heartbeat pings, health checks) do not count, so a heartbeat still
    /// lets it idle out. Checked every quarter of the timeout, so the
    /// connection closes between 1 and 1.25 times the timeout after the
    /// last activity. It closes as [`Config::max_session_age`] says, with
    /// the reason `idle`, except that a dialed session redials only when a
    /// call or push needs the connection again (it is
    /// [`Redialing`](crate::SessionState::Redialing) until then). Per
    /// session: [`Session::set_idle_timeout`](crate::Session::set_idle_timeout).
    pub idle_timeout: Option<Duration>,

    /// How a dialed session redials after losing its connection. See
    /// [`Redial`] for each default.
    pub redial: Redial,

    /// Overload limits: sessions, calls running at once, calls per second.
    /// See [`Limits`] for each default; change them while running with
    /// [`Endpoint::set_limits`](crate::Endpoint::set_limits).
    pub limits: Limits,

    /// Settings for the transports: certificates for `tls://` and
    /// `quic://`, QUIC and KCP tuning, the accept-side handshake timeout.
    /// See [`TransportConfig`] and each transport's own config for the
    /// defaults. TCP and Unix sockets need nothing here.
    pub transport: TransportConfig,

    /// The body codecs this endpoint knows: the built-in ones (MessagePack,
    /// JSON, raw, text; protobuf with the `protobuf` feature) and the
    /// application's own, registered under ids 128 to 255 with
    /// [`Codecs::register`]. A call whose handler decodes a body in a codec
    /// not among them is answered with 400 and the connection stays open;
    /// a raw handler (a proxy) may still pass such a body through.
    pub codecs: Codecs,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            default_timeout: Duration::from_secs(30),
            dial_timeout: Duration::from_secs(10),
            default_codec: CodecId::MSGPACK,
            write_queue: 1024,
            write_batch: 64 * 1024,
            read_chunk: 16 * 1024,
            close_grace: Duration::from_secs(10),
            frame_timeout: Duration::from_secs(30),
            max_method_len: 1024,
            max_meta_len: 16 * 1024,
            max_session_age: None,
            idle_timeout: None,
            redial: Redial::default(),
            limits: Limits::default(),
            transport: transports(),
            codecs: Codecs::new(),
        }
    }
}

/// The transports of `drpc-socket`, and the HTTP gateway with the `http`
/// feature: registered like any other, under `http`.
fn transports() -> TransportConfig {
    #[allow(unused_mut)]
    let mut t = TransportConfig::default();
    #[cfg(feature = "http")]
    drpc_gateway::register(&mut t);
    t
}
