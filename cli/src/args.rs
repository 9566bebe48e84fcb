//! The command line, as clap reads it.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// Calls, pushes, listens and benchmarks drpc endpoints over any transport
/// (tcp://, unix://, tls://, quic://, kcp://).
///
/// Bodies are given and shown as JSON and sent in the chosen codec
/// (MessagePack by default). Exit status: 0 on success; 2 when the command
/// line cannot be parsed; 1 for any other failure: an error status, an
/// endpoint that cannot be reached, an argument that is not JSON, a bench
/// in which no call succeeded.
#[derive(Parser, Debug)]
#[command(name = "drpc", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Calls METHOD and prints the reply as pretty JSON.
    Call(CallArgs),
    /// Pushes to METHOD (one-way); returns once the push is written.
    Push(CallArgs),
    /// Opens a stream to METHOD: prints the endpoint's items as they come,
    /// one JSON value per line; with --client or --bidi, sends the lines
    /// of standard input as items (one JSON value each).
    Stream(StreamArgs),
    /// Accepts sessions and prints every call and push it receives.
    Listen(ListenArgs),
    /// Calls METHOD as fast as asked and reports throughput and latency.
    Bench(BenchArgs),
    /// Asks /_drpc/health and prints serving, draining or not_serving;
    /// exits 0 only when serving.
    Health(HealthArgs),
    /// Manages a running endpoint through its control channel
    /// (drpc_plugins::Admin): stats, sessions, routes, limits, health, stop.
    Ctl(CtlArgs),
}

#[derive(Args, Debug)]
pub struct CtlArgs {
    #[command(flatten)]
    pub conn: Conn,
    /// What to do.
    #[arg(value_enum)]
    pub action: CtlAction,
    /// For limits: key=value pairs (max_sessions, max_calls,
    /// max_calls_per_session); for health: serving or not_serving; for
    /// stop: the grace, as 5s (default: the endpoint's close grace).
    pub args: Vec<String>,
    /// How long to wait for the answer, dial included.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pub timeout: Duration,
}

/// A control-channel command.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq)]
pub enum CtlAction {
    /// Sessions, calls running, health and limits.
    Stats,
    /// Every live session.
    Sessions,
    /// Calls, errors and latency per route (when the endpoint keeps them).
    Routes,
    /// Shows the limits, or changes those given as key=value.
    Limits,
    /// Sets what /_drpc/health answers.
    Health,
    /// Shuts the endpoint down gracefully.
    Stop,
    /// Starts a new process of the server on the same sockets; prints its
    /// pid once it is ready (waits at least 60 s for it).
    Restart,
}

#[derive(Args, Debug)]
pub struct HealthArgs {
    #[command(flatten)]
    pub conn: Conn,
    /// How long to wait for the answer, dial included, as 500ms or 10s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5s")]
    pub timeout: Duration,
}

/// Where to connect and how.
#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// The endpoint's address: tcp://host:port, unix:///path, tls://,
    /// quic:// or kcp://.
    pub url: String,
    /// Trusted roots (PEM) for tls:// and quic://; when listening, the CA
    /// that client certificates must chain to (and then they are required).
    #[arg(long, value_name = "PEM")]
    pub ca: Option<PathBuf>,
    /// A certificate chain (PEM): the client's own when dialing, the
    /// server's when listening.
    #[arg(long, value_name = "PEM", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(long, value_name = "PEM", requires = "cert")]
    pub key: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the URL's
    /// host).
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
    /// A credential for the Auth plugin: presented when dialing; when
    /// listening, the one every session must present.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
}

/// How a body is encoded.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq)]
pub enum Codec {
    /// MessagePack (codec 1).
    Msgpack,
    /// JSON (codec 2).
    Json,
    /// Raw bytes (codec 3): the argument is a JSON string (its UTF-8
    /// bytes) or an array of byte values.
    Raw,
    /// Plain text (codec 4).
    Text,
}

impl From<Codec> for drpc::CodecId {
    fn from(c: Codec) -> Self {
        match c {
            Codec::Msgpack => drpc::CodecId::MSGPACK,
            Codec::Json => drpc::CodecId::JSON,
            Codec::Raw => drpc::CodecId::RAW,
            Codec::Text => drpc::CodecId::TEXT,
        }
    }
}

/// What a call or push sends.
#[derive(Args, Debug, Clone)]
pub struct Message {
    /// The service method, as /math/add.
    pub method: String,
    /// The argument as JSON (default: null, the empty value).
    pub json: Option<String>,
    /// A meta pair to send, KEY=VALUE; repeat for more.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub meta: Vec<(String, String)>,
    /// The codec of the body.
    #[arg(long, value_enum, default_value_t = Codec::Msgpack)]
    pub codec: Codec,
    /// How long a call waits for its reply (a push, to be queued), and a
    /// dial for its session, as 500ms or 10s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct CallArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(flatten)]
    pub message: Message,
    /// Also print the reply's meta (to standard error).
    #[arg(long, short)]
    pub verbose: bool,
}

#[derive(Args, Debug)]
pub struct StreamArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(flatten)]
    pub message: Message,
    /// Which way items go (docs/PROTOCOL.md 3.4): from the endpoint
    /// (server), from standard input (client: the reply is printed at the
    /// end), or both (bidi).
    #[arg(long, value_enum, default_value_t = StreamKind::Server)]
    pub kind: StreamKind,
    /// No deadline: the stream lasts until a side ends it (or Ctrl-C);
    /// --timeout then bounds only the dial.
    #[arg(long)]
    pub no_deadline: bool,
    /// Also print the trailers, the reply's meta (to standard error).
    #[arg(long, short)]
    pub verbose: bool,
}

/// Which way a stream's items go.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq)]
pub enum StreamKind {
    /// Items from the endpoint.
    Server,
    /// Items from standard input; one reply.
    Client,
    /// Both ways.
    Bidi,
}

#[derive(Args, Debug)]
pub struct ListenArgs {
    #[command(flatten)]
    pub conn: Conn,
    /// Answer every call with this JSON value (in the call's codec);
    /// without it, calls are echoed.
    #[arg(long, value_name = "JSON")]
    pub reply: Option<String>,
    /// Exit after this many calls and pushes (default: run until Ctrl-C).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub conn: Conn,
    #[command(flatten)]
    pub message: Message,
    /// Calls in flight at once.
    #[arg(long, short = 'c', default_value_t = 16)]
    pub concurrency: usize,
    /// How long to run, as 10s or 1m.
    #[arg(long, short = 'z', value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// At most this many calls per second in all (default: as fast as the
    /// calls in flight allow).
    #[arg(long, short = 'r')]
    pub rate: Option<f64>,
    /// Sessions to spread the calls over.
    #[arg(long, short = 's', default_value_t = 1)]
    pub sessions: usize,
    /// No live progress line.
    #[arg(long, short)]
    pub quiet: bool,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration such as 500ms or 10s: {e}"))
}
