//! Worker processes: a supervisor that binds the listening sockets and runs
//! several processes of the same program on them, restarts one that
//! crashes (with backoff), and replaces them one by one on the restart
//! signal with no call lost.

use super::successor::spawn_ready;
use super::{Restart, Settings};
use crate::core::backoff::Backoff;
use crate::endpoint::ToAddr;
use crate::signals::{Signal, Signals};
use crate::values::{Config, Redial, Status};
use drpc_socket::{Addr, Listener};
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::process::ExitStatus;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Runs `count` worker processes of this program that share the listening
/// sockets (the kernel spreads connections over them), in the manner of
/// DMicro's multi-process mode:
///
/// - the supervisor (this process) binds the addresses, then starts the
///   workers with the sockets as descriptors 3, 4, ... and
///   `DRPC_WORKER=n`; each worker runs the server as usual
///   ([`Restart::from_env`], [`Restart::apply`], listen, [`Restart::ready`],
///   [`Restart::close_on_signal`]);
/// - a worker that exits on its own is started again, after 100 ms,
///   doubling up to 10 s while it keeps failing (reset once one has run
///   for a minute);
/// - the restart signal (SIGHUP) replaces the workers one at a time: the
///   new one starts on the same sockets and reports ready, then the old
///   one leaves as a restarted process does (its peers hear `restart` and
///   redial); a fresh binary deployed over the program is what runs;
/// - SIGTERM or SIGINT pass on to every worker (each shuts down
///   gracefully; a second signal, at once), and [`Workers::run`] returns
///   once all have exited.
///
/// ```no_run
/// use drpc::restart::{Restart, Workers};
/// use drpc::Config;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let restart = Restart::from_env()?;
/// if restart.worker().is_none() {
///     let mut workers = Workers::new(&restart, 4);
///     let bound = workers.bind(["tcp://0.0.0.0:9090"], &Config::default()).await?;
///     restart.set_args(bound.iter().map(|a| a.to_string()));
///     workers.run(|event| eprintln!("{event}")).await?;
///     return Ok(());
/// }
/// // A worker: serve as a single process would.
/// # Ok(()) }
/// ```
pub struct Workers {
    restart: Restart,
    count: usize,
    sockets: Vec<(Addr, OwnedFd)>,
}

/// What happened to a worker, as [`Workers::run`] reports it.
#[derive(Debug)]
#[non_exhaustive]
pub enum WorkerEvent {
    /// Worker `worker` (process `pid`) reported ready.
    Ready {
        /// Its number, from 0.
        worker: usize,
        /// Its process id.
        pid: u32,
    },
    /// It exited without being asked to; it starts again after `again`.
    Exited {
        /// Its number.
        worker: usize,
        /// Its process id.
        pid: u32,
        /// How it ended.
        status: ExitStatus,
        /// The wait before it starts again.
        again: Duration,
    },
    /// A replaced worker left after its replacement was ready.
    Replaced {
        /// Its number.
        worker: usize,
        /// The old process's id.
        pid: u32,
    },
    /// A new process for `worker` failed to start or to become ready; the
    /// old one (if any) serves on.
    Failed {
        /// Its number.
        worker: usize,
        /// Why.
        error: String,
    },
}

impl fmt::Display for WorkerEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ready { worker, pid } => write!(f, "worker {worker} ready: pid {pid}"),
            Self::Exited {
                worker,
                pid,
                status,
                again,
            } => write!(
                f,
                "worker {worker} (pid {pid}) exited: {status}; starting it again in {again:?}"
            ),
            Self::Replaced { worker, pid } => write!(f, "worker {worker} replaced: pid {pid} left"),
            Self::Failed { worker, error } => write!(f, "worker {worker} not started: {error}"),
        }
    }
}

/// A worker's slot: the process running it now.
struct Slot {
    pid: u32,
    generation: u64,
    started: Instant,
    backoff: Backoff,
    /// When it is to start again, after it exited.
    again_at: Option<Instant>,
    /// Signals for its process, sent by the task that waits for it (so a
    /// signal never reaches another process that took its pid).
    signals: mpsc::UnboundedSender<i32>,
}

/// A worker process that ended.
struct Exit {
    worker: usize,
    generation: u64,
    pid: u32,
    status: io::Result<ExitStatus>,
}

/// A worker started and ready: its pid and its signal channel.
type Started = (u32, mpsc::UnboundedSender<i32>);

/// Runs of at least this long reset a worker's backoff.
const STEADY: Duration = Duration::from_secs(60);

/// How long workers told to stop may take before they are killed: a
/// close grace (10 s by default) and then some.
const STOP_WAIT: Duration = Duration::from_secs(60);

fn crash_backoff() -> Backoff {
    Backoff::new(Redial {
        initial_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(10),
        max_attempts: None,
        ..Redial::default()
    })
}

impl Workers {
    /// A supervisor of `count` workers (at least one), started as
    /// `restart` says (its program, arguments and ready timeout).
    pub fn new(restart: &Restart, count: usize) -> Self {
        Self {
            restart: restart.clone(),
            count: count.max(1),
            sockets: Vec::new(),
        }
    }

    /// Binds `addrs` with `config`'s transports (certificates included,
    /// and sockets this supervisor inherited) and returns the bound
    /// addresses, with the real port where port 0 was asked for: give
    /// them to the workers as arguments ([`Restart::set_args`]).
    ///
    /// Errors: an address that does not parse or cannot be bound, or a
    /// transport whose listeners cannot be shared (QUIC, KCP).
    pub async fn bind<A: ToAddr>(
        &mut self,
        addrs: impl IntoIterator<Item = A>,
        config: &Config,
    ) -> Result<Vec<Addr>, Status> {
        let mut transport = config.transport.clone();
        transport.inherited = self.restart.inner.inherited.clone();
        let mut bound = Vec::new();
        for addr in addrs {
            let addr = addr
                .to_addr()
                .map_err(|e| Status::internal(e.to_string()))?;
            let mut listener = Listener::bind(&addr, &transport)
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
            let fd = listener
                .hand_off()
                .map_err(|e| Status::internal(e.to_string()))?;
            let local = listener.local_addr().clone();
            bound.push(local.clone());
            self.sockets.push((local, fd));
        }
        Ok(bound)
    }

    /// Starts the workers and supervises them until SIGTERM or SIGINT has
    /// stopped them all; returns that signal. `on_event` hears what
    /// happens to each worker.
    ///
    /// Errors: nothing bound, the signal handlers could not be installed,
    /// or the first workers could not start (those started are stopped).
    pub async fn run(self, mut on_event: impl FnMut(WorkerEvent)) -> io::Result<Signal> {
        if self.sockets.is_empty() {
            return Err(io::Error::other(
                "no address bound: call Workers::bind first",
            ));
        }
        let mut signals = self.restart.take_signals()?;
        let (exits_tx, mut exits) = mpsc::unbounded_channel();
        let mut slots: Vec<Slot> = Vec::new();
        let ended = 'serve: {
            for worker in 0..self.count {
                let started = tokio::select! {
                    r = self.start(worker, 0, &exits_tx) => r,
                    s = signals.next() => match s {
                        Ok(Signal::Restart(_)) => continue,
                        other => break 'serve other,
                    },
                };
                match started {
                    Ok((pid, signals)) => {
                        on_event(WorkerEvent::Ready { worker, pid });
                        slots.push(Slot {
                            pid,
                            generation: 0,
                            started: Instant::now(),
                            backoff: crash_backoff(),
                            again_at: None,
                            signals,
                        });
                    }
                    Err(e) => break 'serve Err(e),
                }
            }
            loop {
                let next_start = slots.iter().filter_map(|s| s.again_at).min();
                tokio::select! {
                    s = signals.next() => match s {
                        Ok(Signal::Restart(_)) => {
                            let stop = self
                                .replace_all(&mut slots, &exits_tx, &mut exits, &mut signals, &mut on_event)
                                .await;
                            if let Some(stop) = stop {
                                break 'serve stop;
                            }
                        }
                        other => break 'serve other,
                    },
                    Some(exit) = exits.recv() => crashed(&mut slots, exit, &mut on_event),
                    _ = sleep_until(next_start) => {
                        let now = Instant::now();
                        for worker in 0..slots.len() {
                            if slots[worker].again_at.is_some_and(|at| at <= now) {
                                self.start_again(worker, &mut slots, &exits_tx, &mut on_event).await;
                            }
                        }
                    }
                }
            }
        };
        stop_all(&slots, &mut signals, &mut exits).await;
        self.remove_socket_files();
        ended
    }

    /// Starts worker `worker` again after it exited.
    async fn start_again(
        &self,
        worker: usize,
        slots: &mut [Slot],
        exits: &mpsc::UnboundedSender<Exit>,
        on_event: &mut impl FnMut(WorkerEvent),
    ) {
        let generation = slots[worker].generation + 1;
        match self.start(worker, generation, exits).await {
            Ok((pid, signals)) => {
                let slot = &mut slots[worker];
                (slot.pid, slot.generation, slot.again_at) = (pid, generation, None);
                (slot.started, slot.signals) = (Instant::now(), signals);
                on_event(WorkerEvent::Ready { worker, pid });
            }
            Err(e) => {
                let slot = &mut slots[worker];
                let again = slot
                    .backoff
                    .next_delay(fastrand::f64())
                    .unwrap_or(Duration::from_secs(10));
                slot.again_at = Some(Instant::now() + again);
                on_event(WorkerEvent::Failed {
                    worker,
                    error: e.to_string(),
                });
            }
        }
    }

    /// Replaces the workers one at a time: each new one is ready before
    /// the old one leaves. A replacement that fails stops the round; the
    /// workers not yet replaced serve on. Returns a stop signal that came
    /// meanwhile.
    async fn replace_all(
        &self,
        slots: &mut [Slot],
        exits_tx: &mpsc::UnboundedSender<Exit>,
        exits: &mut mpsc::UnboundedReceiver<Exit>,
        signals: &mut Signals,
        on_event: &mut impl FnMut(WorkerEvent),
    ) -> Option<io::Result<Signal>> {
        let restart_signal = self.restart.inner.settings.lock().signal;
        for worker in 0..slots.len() {
            if slots[worker].again_at.is_some() {
                // Not running: start it, as its timer would.
                self.start_again(worker, slots, exits_tx, on_event).await;
                continue;
            }
            let old_generation = slots[worker].generation;
            let started = tokio::select! {
                r = self.start(worker, old_generation + 1, exits_tx) => r,
                s = signals.next() => match s {
                    Ok(Signal::Restart(_)) => continue,
                    other => return Some(other),
                },
            };
            let (pid, new_signals) = match started {
                Ok(started) => started,
                Err(e) => {
                    on_event(WorkerEvent::Failed {
                        worker,
                        error: e.to_string(),
                    });
                    return None;
                }
            };
            let slot = &mut slots[worker];
            let old_pid = slot.pid;
            let old_signals = std::mem::replace(&mut slot.signals, new_signals);
            (slot.pid, slot.generation, slot.started) = (pid, old_generation + 1, Instant::now());
            on_event(WorkerEvent::Ready { worker, pid });
            // The old one leaves: its calls finish within its close grace.
            let _ = old_signals.send(restart_signal);
            let deadline = Instant::now() + STOP_WAIT;
            let mut killed = false;
            loop {
                tokio::select! {
                    Some(exit) = exits.recv() => {
                        if exit.worker == worker && exit.generation == old_generation {
                            break;
                        }
                        crashed(slots, exit, on_event);
                    }
                    s = signals.next() => match s {
                        Ok(Signal::Restart(_)) => {}
                        other => return Some(other),
                    },
                    _ = tokio::time::sleep_until(deadline), if !killed => {
                        killed = true;
                        let _ = old_signals.send(libc::SIGKILL);
                    }
                }
            }
            on_event(WorkerEvent::Replaced {
                worker,
                pid: old_pid,
            });
        }
        None
    }

    /// Starts worker `worker` on the sockets, waits until it is ready, and
    /// watches for its exit.
    async fn start(
        &self,
        worker: usize,
        generation: u64,
        exits: &mpsc::UnboundedSender<Exit>,
    ) -> io::Result<Started> {
        let sockets = self
            .sockets
            .iter()
            .map(|(addr, fd)| Ok((addr.clone(), fd.try_clone()?)))
            .collect::<io::Result<Vec<_>>>()?;
        let settings: Settings = self.restart.inner.settings.lock().clone();
        let mut child = spawn_ready(&settings, sockets, Some(worker)).await?;
        let pid = child.id().unwrap_or(0);
        let exits = exits.clone();
        let (signals, mut to_send) = mpsc::unbounded_channel::<i32>();
        tokio::spawn(async move {
            let status = loop {
                tokio::select! {
                    status = child.wait() => break status,
                    Some(sig) = to_send.recv() => {
                        // Not reaped yet (this task reaps it): still its pid.
                        if let Some(pid) = child.id() {
                            signal(pid, sig);
                        }
                    }
                }
            };
            let _ = exits.send(Exit {
                worker,
                generation,
                pid,
                status,
            });
        });
        Ok((pid, signals))
    }

    /// The socket files of the Unix addresses, which the workers left in
    /// place for each other.
    fn remove_socket_files(&self) {
        for (addr, _) in &self.sockets {
            if addr.scheme().as_str() == "unix" {
                let _ = std::fs::remove_file(addr.target());
            }
        }
    }
}

/// Records that a worker exited without being asked to: it starts again
/// after its backoff.
fn crashed(slots: &mut [Slot], exit: Exit, on_event: &mut impl FnMut(WorkerEvent)) {
    let slot = &mut slots[exit.worker];
    if exit.generation != slot.generation || slot.again_at.is_some() {
        return; // A replaced worker leaving.
    }
    if slot.started.elapsed() >= STEADY {
        slot.backoff = crash_backoff();
    }
    let again = slot
        .backoff
        .next_delay(fastrand::f64())
        .unwrap_or(Duration::from_secs(10));
    slot.again_at = Some(Instant::now() + again);
    let status = exit.status.unwrap_or_else(|_| exit_status_unknown());
    on_event(WorkerEvent::Exited {
        worker: exit.worker,
        pid: exit.pid,
        status,
        again,
    });
}

/// Passes the stop signal on and waits for every worker to exit: a second
/// signal is passed on too (workers then close at once), and workers
/// still running after [`STOP_WAIT`] are killed.
async fn stop_all(
    slots: &[Slot],
    signals: &mut Signals,
    exits: &mut mpsc::UnboundedReceiver<Exit>,
) {
    let running = |slot: &&Slot| slot.again_at.is_none();
    for slot in slots.iter().filter(running) {
        let _ = slot.signals.send(libc::SIGTERM);
    }
    let mut left: Vec<(usize, u64)> = slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.again_at.is_none())
        .map(|(i, s)| (i, s.generation))
        .collect();
    let deadline = Instant::now() + STOP_WAIT;
    let (mut hurried, mut killed) = (false, false);
    while !left.is_empty() {
        tokio::select! {
            Some(exit) = exits.recv() => left.retain(|w| *w != (exit.worker, exit.generation)),
            _ = signals.next(), if !hurried => {
                hurried = true;
                for slot in slots.iter().filter(running) {
                    let _ = slot.signals.send(libc::SIGTERM);
                }
            }
            _ = tokio::time::sleep_until(deadline), if !killed => {
                killed = true;
                for slot in slots.iter().filter(running) {
                    let _ = slot.signals.send(libc::SIGKILL);
                }
            }
            else => break,
        }
    }
}

fn signal(pid: u32, sig: i32) {
    if pid == 0 {
        return;
    }
    // SAFETY: kill has no memory effects.
    unsafe { libc::kill(pid as i32, sig) };
}

fn exit_status_unknown() -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    ExitStatus::from_raw(0)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
