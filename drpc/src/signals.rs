//! Signals, opt-in: an endpoint that shuts down when its process is told
//! to stop.

use crate::shared::Endpoint;
use std::fmt;
use std::io;

/// A signal that asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Signal {
    /// SIGINT: Ctrl-C in a terminal.
    Interrupt,
    /// SIGTERM: what service managers (systemd, Kubernetes) send.
    Terminate,
    /// The signal that restarts (SIGHUP unless set otherwise): see
    /// [`Restart::close_on_signal`](crate::restart::Restart::close_on_signal).
    Restart(i32),
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Interrupt => "SIGINT",
            Self::Terminate => "SIGTERM",
            #[cfg(unix)]
            Self::Restart(n) if *n == tokio::signal::unix::SignalKind::hangup().as_raw_value() => {
                "SIGHUP"
            }
            Self::Restart(n) => return write!(f, "signal {n}"),
        })
    }
}

/// SIGINT and, on Unix, SIGTERM and perhaps a restart signal, as a stream
/// of [`Signal`]s.
pub(crate) struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    restart: Option<(i32, tokio::signal::unix::Signal)>,
}

impl Signals {
    /// Listens for SIGINT and SIGTERM, and for signal `restart` if given.
    pub(crate) fn new(restart: Option<i32>) -> io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let restart = match restart {
                Some(n) => Some((n, signal(SignalKind::from_raw(n))?)),
                None => None,
            };
            Ok(Self {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
                restart,
            })
        }
        #[cfg(not(unix))]
        {
            let _ = restart;
            Ok(Self {})
        }
    }

    pub(crate) async fn next(&mut self) -> io::Result<Signal> {
        #[cfg(unix)]
        {
            let restart = async {
                match &mut self.restart {
                    Some((n, s)) => {
                        s.recv().await;
                        *n
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.int.recv() => Ok(Signal::Interrupt),
                _ = self.term.recv() => Ok(Signal::Terminate),
                n = restart => Ok(Signal::Restart(n)),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.map(|()| Signal::Interrupt)
        }
    }
}

impl Endpoint {
    /// Serves until SIGTERM or SIGINT (Ctrl-C), then shuts down gracefully
    /// within [`Config::close_grace`](crate::Config::close_grace), as
    /// [`Endpoint::close`] does: peers hear it is going away, running
    /// calls finish. A second signal during that shutdown closes at once.
    /// `on_signal` hears each signal as it comes (to log it, say). Returns
    /// the first signal once the endpoint has closed, or `None` when the
    /// endpoint was closed some other way first.
    ///
    /// This is the one call that opts in: an endpoint that never calls it
    /// leaves the process's signals alone. The process itself is not ended;
    /// `main` returns when this does.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let endpoint = drpc::Endpoint::builder().build()?;
    /// endpoint.listen("tcp://0.0.0.0:9090").await?;
    /// if let Some(signal) = endpoint.close_on_signal(|s| eprintln!("{s}")).await? {
    ///     eprintln!("stopped after {signal}");
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// Errors: the process's signal handlers could not be installed.
    pub async fn close_on_signal(
        &self,
        mut on_signal: impl FnMut(Signal),
    ) -> io::Result<Option<Signal>> {
        let mut signals = Signals::new(None)?;
        let first = tokio::select! {
            s = signals.next() => s?,
            // Closed some other way: nothing to wait for.
            _ = self.inner.closed.cancelled() => return Ok(None),
        };
        on_signal(first);
        // Closing goes on in its own task, so a second signal can hurry it
        // without cutting it short.
        let closing = tokio::spawn({
            let endpoint = self.clone();
            async move { endpoint.close().await }
        });
        tokio::select! {
            _ = closing => {}
            second = signals.next() => {
                if let Ok(s) = second {
                    on_signal(s);
                }
                self.close().await;
            }
        }
        Ok(Some(first))
    }
}
