//! The old process's side of a restart: copies of its listening sockets,
//! the new process started with them, and its report that it is ready.

use super::env::{self, FIRST_FD};
use super::Settings;
use crate::shared::Endpoint;
use command_fds::{CommandFdExt, FdMapping};
use drpc_socket::Addr;
use std::io::{self, Read};
use std::os::fd::OwnedFd;

/// A copy of every listening socket of `ep`, from its accept loops.
///
/// Errors: a listener that cannot be handed on, or the endpoint closing.
pub(super) async fn listeners(ep: &Endpoint) -> io::Result<Vec<(Addr, OwnedFd)>> {
    let loops = ep.inner.hand_offs.lock().clone();
    let mut sockets = Vec::new();
    for ask in loops {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if ask.send(tx).is_err() {
            continue; // That listener has stopped.
        }
        match rx.await {
            Ok(Ok(socket)) => sockets.push(socket),
            Ok(Err(e)) => return Err(io::Error::other(format!("cannot restart: {e}"))),
            Err(_) => continue, // It stopped meanwhile.
        }
    }
    // Loops that have ended leave the list.
    ep.inner.hand_offs.lock().retain(|ask| !ask.is_closed());
    Ok(sockets)
}

/// Starts the program with `sockets` as descriptors 3, 4, ... and waits
/// for it to report ready; returns its process id.
///
/// Errors: it could not start, exited before it was ready, or was not
/// ready in time (it is then stopped).
pub(super) async fn start(settings: &Settings, sockets: Vec<(Addr, OwnedFd)>) -> io::Result<u32> {
    let mut child = spawn_ready(settings, sockets, None).await?;
    let pid = child.id().unwrap_or(0);
    // It outlives this process as a rule; reaped here if not.
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    Ok(pid)
}

/// Starts the program with `sockets` as descriptors 3, 4, ... (and, for
/// a worker, its number in `DRPC_WORKER`), and waits for it to report
/// ready.
///
/// Errors: as [`start`].
pub(super) async fn spawn_ready(
    settings: &Settings,
    sockets: Vec<(Addr, OwnedFd)>,
    worker: Option<usize>,
) -> io::Result<tokio::process::Child> {
    let (ready_rx, ready_tx) = pipe()?;
    let n = sockets.len() as i32;
    let addrs: Vec<String> = sockets.iter().map(|(a, _)| a.to_string()).collect();
    let mut mappings: Vec<FdMapping> = sockets
        .into_iter()
        .enumerate()
        .map(|(i, (_, fd))| FdMapping {
            parent_fd: fd,
            child_fd: FIRST_FD + i as i32,
        })
        .collect();
    mappings.push(FdMapping {
        parent_fd: ready_tx,
        child_fd: FIRST_FD + n,
    });
    let mut command = tokio::process::Command::new(&settings.program);
    command
        .args(&settings.args)
        .env(env::LISTEN_FDS, n.to_string())
        .env(env::READY_FD, (FIRST_FD + n).to_string())
        .env(env::LISTEN_PARENT, std::process::id().to_string())
        // systemd's descriptors were this process's; the new process has
        // its own at those numbers.
        .env_remove(env::SYSTEMD_FDS)
        .env_remove(env::SYSTEMD_PID)
        .env_remove(env::SYSTEMD_NAMES);
    match worker {
        // A worker: a process group of its own (a terminal's Ctrl-C or a
        // group's signal reaches its supervisor, which passes it on once),
        // and stopped if its supervisor drops it unready.
        Some(n) => command
            .env(env::WORKER, n.to_string())
            .process_group(0)
            .kill_on_drop(true),
        None => command.env_remove(env::WORKER),
    };
    command
        .fd_mappings(mappings)
        .map_err(|e| io::Error::other(format!("cannot restart: {e}")))?;
    let program = settings.program.display().to_string();
    let mut child = command.spawn().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot start the new process {program}: {e}"),
        )
    })?;
    // Its copy of the ready pipe's write end: the read below ends when the
    // new process writes, or exits.
    drop(command);
    let pid = child.id().unwrap_or(0);
    tracing::info!(pid, %program, ?addrs, "started the new process; waiting for it to be ready");
    let read = tokio::task::spawn_blocking(move || {
        let mut byte = [0u8; 1];
        std::fs::File::from(ready_rx).read(&mut byte)
    });
    let timeout = settings.ready_timeout;
    let outcome = tokio::time::timeout(timeout, read).await;
    match outcome {
        Ok(Ok(Ok(1))) => Ok(child),
        Ok(Ok(_)) | Ok(Err(_)) => {
            // It closed its ready descriptor: it has ended, or will not
            // report; give it a moment to end, then stop it.
            let status = match tokio::time::timeout(ENDING, child.wait()).await {
                Ok(status) => status?.to_string(),
                Err(_) => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    "it closed its ready descriptor without reporting, and was stopped".into()
                }
            };
            Err(io::Error::other(format!(
                "the new process {program} (pid {pid}) ended before it was ready: {status}"
            )))
        }
        Err(_) => {
            let _ = child.start_kill();
            let _ = child.wait().await;
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the new process {program} (pid {pid}) was not ready within {timeout:?}; it was stopped"
                ),
            ))
        }
    }
}

/// How long a new process that closed its ready descriptor unreported
/// has to end before it is stopped.
const ENDING: std::time::Duration = std::time::Duration::from_secs(5);

/// A pipe, both ends closed on exec: (read end, write end).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both were just opened, and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Tells systemd the service is ready, and that this process is its main
/// one now (a restarted service's main process changes), when systemd
/// started it with a notify socket.
pub(super) fn notify_systemd() -> io::Result<()> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let socket = std::os::unix::net::UnixDatagram::unbound()?;
    let message = format!("READY=1\nMAINPID={}\n", std::process::id());
    let path = std::path::PathBuf::from(path);
    #[cfg(target_os = "linux")]
    if let Some(name) = path.to_str().and_then(|p| p.strip_prefix('@')) {
        // An abstract socket name.
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        socket.send_to_addr(message.as_bytes(), &addr)?;
        return Ok(());
    }
    socket.send_to(message.as_bytes(), &path)?;
    Ok(())
}
