//! Restarts with no lost call: a process hands its listening sockets to a
//! new process of the same program, waits until that one is ready, then
//! shuts down gracefully; its peers redial, and reach the new process on
//! the same address. Unix only, with the `restart` feature (on by
//! default).
//!
//! The new process learns of its sockets from its environment: the
//! listening sockets are descriptors 3, 4, ... (`DRPC_LISTEN_FDS` of them)
//! and it reports that it is ready by writing a byte to descriptor
//! `DRPC_READY_FD`. systemd's socket activation (`LISTEN_FDS` and
//! `LISTEN_PID`) is understood too, and a process started by systemd tells
//! it when it is ready (`READY=1` on `NOTIFY_SOCKET`). Listening on an
//! address takes the inherited socket bound to it (the same IP address
//! and port, or the same Unix path) instead of binding a new one, so the
//! address never stops accepting: connections that arrive meanwhile wait
//! in the socket's queue for whichever process accepts next.
//!
//! ```no_run
//! use drpc::restart::Restart;
//! use drpc::{Config, Endpoint};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let restart = Restart::from_env()?;
//! let mut config = Config::default();
//! restart.apply(&mut config);
//! let endpoint = Endpoint::builder().config(config).build()?;
//! endpoint.listen("tcp://0.0.0.0:9090").await?;
//! restart.serve(&endpoint);
//! restart.ready()?;
//! // SIGHUP restarts; SIGTERM or SIGINT shut down gracefully.
//! restart.close_on_signal(|signal| eprintln!("{signal}")).await?;
//! # Ok(()) }
//! ```

mod env;
mod successor;
mod workers;

pub use workers::{WorkerEvent, Workers};

use crate::core::lifecycle::Renewal;
use crate::shared::Endpoint;
use crate::signals::{Signal, Signals};
use crate::values::Config;
use drpc_socket::{Addr, Inherited};
use parking_lot::Mutex;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A process's restarts: the sockets it inherited, the endpoints whose
/// listeners it hands on, and how it starts its successor. A cheap,
/// cloneable handle.
#[derive(Clone)]
pub struct Restart {
    inner: Arc<Inner>,
}

struct Inner {
    inherited: Inherited,
    ready: Mutex<Option<OwnedFd>>,
    by_restart: bool,
    /// This process's number, when a [`Workers`] supervisor runs it.
    worker: Option<usize>,
    endpoints: Mutex<Vec<Endpoint>>,
    restarting: AtomicBool,
    settings: Mutex<Settings>,
    /// The signal handlers, installed as early as possible: a signal that
    /// comes before them would end the process (SIGHUP's default).
    signals: Mutex<Option<Signals>>,
}

#[derive(Clone)]
struct Settings {
    program: std::path::PathBuf,
    args: Vec<std::ffi::OsString>,
    ready_timeout: Duration,
    signal: i32,
}

impl Restart {
    /// Takes the sockets and the ready descriptor this process was handed
    /// (none when it was started by hand), and prepares its own restarts:
    /// the same program path, with the same arguments.
    ///
    /// Errors: the environment names descriptors that are not open, or
    /// this was called before in this process.
    pub fn from_env() -> io::Result<Self> {
        let handed = env::take(|name| std::env::var(name).ok())?;
        let inherited = Inherited::new(handed.listeners)?;
        // Within a runtime, the handlers go in now (they need its driver).
        let signals = match tokio::runtime::Handle::try_current() {
            Ok(_) => Some(Signals::new(Some(libc::SIGHUP))?),
            Err(_) => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                inherited,
                ready: Mutex::new(handed.ready),
                by_restart: handed.by_restart,
                // Only for a process its supervisor started.
                worker: std::env::var(env::WORKER)
                    .ok()
                    .filter(|_| handed.by_restart)
                    .and_then(|n| n.trim().parse().ok()),
                endpoints: Mutex::new(Vec::new()),
                restarting: AtomicBool::new(false),
                signals: Mutex::new(signals),
                settings: Mutex::new(Settings {
                    program: env::program()?,
                    args: std::env::args_os().skip(1).collect(),
                    ready_timeout: Duration::from_secs(30),
                    signal: libc::SIGHUP,
                }),
            }),
        })
    }

    /// How long a successor may take to report ready before it is stopped
    /// and this process keeps serving. Default: 30 s.
    pub fn set_ready_timeout(&self, timeout: Duration) {
        self.inner.settings.lock().ready_timeout = timeout;
    }

    /// The program a restart runs (default: this process's own path, so a
    /// binary deployed over it is what runs next) and its arguments
    /// (default: this process's).
    pub fn set_program(
        &self,
        program: impl Into<std::path::PathBuf>,
        args: impl IntoIterator<Item = impl Into<std::ffi::OsString>>,
    ) {
        let mut s = self.inner.settings.lock();
        s.program = program.into();
        s.args = args.into_iter().map(Into::into).collect();
    }

    /// The arguments a restart gives the program (default: this process's):
    /// the addresses this process actually bound, say, so that a server
    /// asked for port 0 keeps its port across restarts.
    pub fn set_args(&self, args: impl IntoIterator<Item = impl Into<std::ffi::OsString>>) {
        self.inner.settings.lock().args = args.into_iter().map(Into::into).collect();
    }

    /// The signal [`Restart::close_on_signal`] restarts on, as its number
    /// (`libc::SIGUSR2`, say). Default: SIGHUP.
    pub fn set_signal(&self, signal: i32) {
        self.inner.settings.lock().signal = signal;
        // Installed again, for this signal, when they are next used.
        *self.inner.signals.lock() = None;
    }

    /// The signal handlers, installed now if they are not yet.
    pub(crate) fn take_signals(&self) -> io::Result<Signals> {
        match self.inner.signals.lock().take() {
            Some(signals) => Ok(signals),
            None => Signals::new(Some(self.inner.settings.lock().signal)),
        }
    }

    /// Whether a drpc restart (or a [`Workers`] supervisor) started this
    /// process.
    pub fn is_successor(&self) -> bool {
        self.inner.by_restart
    }

    /// This process's number (from 0), when it is one of the workers a
    /// [`Workers`] supervisor runs. A worker does not restart itself: its
    /// supervisor starts its replacement, then sends it the restart
    /// signal, on which it leaves (its peers hear `restart` and redial).
    pub fn worker(&self) -> Option<usize> {
        self.inner.worker
    }

    /// Lets `config`'s listeners take the inherited sockets: set it on
    /// every endpoint's config before it listens.
    pub fn apply(&self, config: &mut Config) {
        config.transport.inherited = self.inner.inherited.clone();
    }

    /// Hands `endpoint`'s listeners on at each restart, and shuts it down
    /// once the successor is ready.
    pub fn serve(&self, endpoint: &Endpoint) {
        self.inner.endpoints.lock().push(endpoint.clone());
    }

    /// Tells whoever started this process that it serves now: the process
    /// it replaces (which then stops accepting and shuts down), or systemd
    /// (`READY=1`). Call it once every endpoint listens. Inherited sockets
    /// no listener took are closed (a warning names them). Calling it again
    /// does nothing.
    ///
    /// Errors: the report could not be written (the old process is gone).
    pub fn ready(&self) -> io::Result<()> {
        if self.inner.worker.is_none() {
            // A worker's sockets stay its supervisor's: the Unix socket
            // files too, which the other workers serve.
            self.inner.inherited.confirm();
        }
        let left = self.inner.inherited.remaining();
        if !left.is_empty() {
            tracing::warn!(?left, "inherited sockets that no listener took are closed");
            self.inner.inherited.clear();
        }
        if let Some(fd) = self.inner.ready.lock().take() {
            use std::io::Write;
            std::fs::File::from(fd).write_all(b"1")?;
        }
        successor::notify_systemd()
    }

    /// Restarts now: hands every served endpoint's listeners to a new
    /// process of the program, and once it reports ready, shuts the
    /// endpoints down gracefully; their peers hear a going-away notice
    /// with the reason `restart` (docs/PROTOCOL.md section 3.1) and redial
    /// at once. Returns the new process's id once it is ready, with the
    /// shutdown under way (await [`Endpoint::closed`] for its end).
    ///
    /// Errors, with this process serving on as before: a restart already
    /// under way, no endpoint served, a listener that cannot be handed on
    /// (QUIC, KCP), the program failed to start, exited, or was not ready
    /// in time (it is then stopped).
    pub async fn restart(&self) -> io::Result<u32> {
        if let Some(n) = self.inner.worker {
            return Err(io::Error::other(format!(
                "this process is worker {n}: its supervisor replaces the workers (send SIGHUP to the supervisor)"
            )));
        }
        if self.inner.restarting.swap(true, Ordering::AcqRel) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "a restart is already under way",
            ));
        }
        // A task of its own: a caller that stops waiting (a control
        // channel's client gone) must not leave it half done.
        let this = self.clone();
        let handing = tokio::spawn(async move {
            let result = this.hand_over().await;
            if result.is_err() {
                this.inner.restarting.store(false, Ordering::Release);
            }
            result
        });
        handing
            .await
            .unwrap_or_else(|e| Err(io::Error::other(format!("the restart failed: {e}"))))
    }

    async fn hand_over(&self) -> io::Result<u32> {
        let endpoints = self.inner.endpoints.lock().clone();
        if endpoints.is_empty() {
            return Err(io::Error::other(
                "no endpoint to hand over: call Restart::serve first",
            ));
        }
        let mut sockets: Vec<(Addr, OwnedFd)> = Vec::new();
        for ep in &endpoints {
            sockets.extend(successor::listeners(ep).await?);
        }
        let settings = self.inner.settings.lock().clone();
        let pid = successor::start(&settings, sockets).await?;
        self.leave();
        Ok(pid)
    }

    /// Shuts every served endpoint down for a restart: its peers hear the
    /// reason `restart` and redial at once (the new process serves).
    fn leave(&self) {
        for ep in self.inner.endpoints.lock().clone() {
            let _ = ep.inner.leaving.set(Renewal::Restart);
            tokio::spawn(async move { ep.close().await });
        }
    }

    /// Serves until a signal: SIGHUP (see [`Restart::set_signal`])
    /// restarts, and once the successor is ready and the served endpoints
    /// have closed, returns it; a failed restart is logged and this
    /// process serves on. SIGTERM or SIGINT shut the endpoints down as
    /// [`Endpoint::close_on_signal`] does, a second one at once. Returns
    /// `None` when the endpoints were closed some other way (a restart the
    /// control channel asked for, say).
    ///
    /// Errors: the signal handlers could not be installed.
    pub async fn close_on_signal(
        &self,
        mut on_signal: impl FnMut(Signal),
    ) -> io::Result<Option<Signal>> {
        let mut signals = self.take_signals()?;
        let first = loop {
            let s = tokio::select! {
                s = signals.next() => s?,
                _ = self.all_closed() => return Ok(None),
            };
            on_signal(s);
            if !matches!(s, Signal::Restart(_)) {
                break s;
            }
            if self.inner.worker.is_some() {
                // The supervisor has started this worker's replacement.
                self.leave();
                break s;
            }
            match self.restart().await {
                Ok(pid) => {
                    tracing::info!(
                        successor = pid,
                        "restarted: the new process serves; shutting down"
                    );
                    break s;
                }
                Err(e) => tracing::error!(error = %e, "restart failed; this process serves on"),
            }
        };
        // After a restart the endpoints are closing already: a close now
        // would hurry them.
        let closing = {
            let endpoints = self.inner.endpoints.lock().clone();
            let restarted = matches!(first, Signal::Restart(_));
            tokio::spawn(async move {
                let each = endpoints.iter().map(|ep| async move {
                    match restarted {
                        true => ep.closed().await,
                        false => ep.close().await,
                    }
                });
                futures_util::future::join_all(each).await;
            })
        };
        tokio::select! {
            _ = closing => {}
            second = signals.next() => {
                if let Ok(s) = second {
                    on_signal(s);
                }
                let endpoints = self.inner.endpoints.lock().clone();
                futures_util::future::join_all(endpoints.iter().map(Endpoint::close)).await;
            }
        }
        Ok(Some(first))
    }

    async fn all_closed(&self) {
        let endpoints = self.inner.endpoints.lock().clone();
        if endpoints.is_empty() {
            return std::future::pending().await;
        }
        futures_util::future::join_all(endpoints.iter().map(Endpoint::closed)).await;
    }
}
