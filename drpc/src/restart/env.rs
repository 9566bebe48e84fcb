//! What a process started by a restart (or by systemd's socket
//! activation) finds in its environment, and what a restart puts there.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// How many listening sockets a restart handed over, from fd 3 on.
pub(crate) const LISTEN_FDS: &str = "DRPC_LISTEN_FDS";
/// The fd on which the new process reports that it is ready.
pub(crate) const READY_FD: &str = "DRPC_READY_FD";
/// The process that handed the descriptors over: they are meant for its
/// child only, not for processes that child starts in turn.
pub(crate) const LISTEN_PARENT: &str = "DRPC_LISTEN_PARENT";
/// The number of a worker that a [`Workers`](super::Workers) supervisor
/// runs, from 0.
pub(crate) const WORKER: &str = "DRPC_WORKER";
/// systemd's socket activation: `LISTEN_FDS` sockets from fd 3 on, meant
/// for the process `LISTEN_PID`.
pub(crate) const SYSTEMD_FDS: &str = "LISTEN_FDS";
pub(crate) const SYSTEMD_PID: &str = "LISTEN_PID";
pub(crate) const SYSTEMD_NAMES: &str = "LISTEN_FDNAMES";
/// The first inherited fd, after stdin, stdout and stderr (systemd's
/// `SD_LISTEN_FDS_START`).
pub(crate) const FIRST_FD: RawFd = 3;

/// The file descriptors of a process: each taken once, by whoever reads
/// the environment first. The descriptors are the process's, so this is
/// the one piece of state kept for the process rather than for an
/// endpoint: a second owner would close them twice.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// What the environment handed this process.
pub(crate) struct Handed {
    pub(crate) listeners: Vec<OwnedFd>,
    pub(crate) ready: Option<OwnedFd>,
    /// Started by a drpc restart (not by systemd, nor by hand).
    pub(crate) by_restart: bool,
}

/// Takes the descriptors the environment names, once per process.
///
/// Errors: a variable that is not a number, a descriptor that is not open,
/// or a second call.
pub(crate) fn take(var: impl Fn(&str) -> Option<String>) -> io::Result<Handed> {
    let count = |name: &str| -> io::Result<Option<RawFd>> {
        var(name)
            .map(|v| {
                v.trim()
                    .parse::<RawFd>()
                    .ok()
                    .filter(|n| (0..=1024).contains(n))
                    .ok_or_else(|| invalid(format!("{name}={v:?} is not a count of descriptors")))
            })
            .transpose()
    };
    let from_parent = var(LISTEN_PARENT)
        .and_then(|p| p.trim().parse::<u32>().ok())
        .is_some_and(|p| p == std::os::unix::process::parent_id());
    let (listeners, by_restart) = match count(LISTEN_FDS)? {
        Some(n) if from_parent => (n, true),
        // Meant for the process that started this one.
        Some(_) => (0, false),
        // systemd's, when they are meant for this process.
        None => match var(SYSTEMD_PID).and_then(|p| p.trim().parse::<u32>().ok()) {
            Some(pid) if pid == std::process::id() => (count(SYSTEMD_FDS)?.unwrap_or(0), false),
            _ => (0, false),
        },
    };
    let ready = var(READY_FD)
        .filter(|_| by_restart)
        .map(|v| {
            v.trim()
                .parse::<RawFd>()
                .ok()
                // Not one of the listeners: each descriptor has one owner.
                .filter(|fd| *fd >= FIRST_FD + listeners)
                .ok_or_else(|| {
                    invalid(format!(
                        "{READY_FD}={v:?} is not a descriptor after the listeners"
                    ))
                })
        })
        .transpose()?;
    if listeners == 0 && ready.is_none() {
        return Ok(Handed {
            listeners: Vec::new(),
            ready: None,
            by_restart,
        });
    }
    if TAKEN.swap(true, Ordering::AcqRel) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the inherited descriptors were already taken by an earlier Restart::from_env",
        ));
    }
    let listeners = (FIRST_FD..FIRST_FD + listeners)
        .map(own)
        .collect::<io::Result<_>>()?;
    let ready = ready.map(own).transpose()?;
    Ok(Handed {
        listeners,
        ready,
        by_restart,
    })
}

/// Owns inherited descriptor `fd`, closed on exec so that processes this
/// one starts do not inherit it by accident.
fn own(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl on any number is sound; it fails on one not open.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(invalid(format!(
            "inherited descriptor {fd} is not open: {}",
            io::Error::last_os_error()
        )));
    }
    // SAFETY: as above; the descriptor is open.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the environment hands this descriptor to this process, and
    // `TAKEN` makes this the only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// The program a restart starts: this one's path, so a binary deployed
/// over it is what runs next (Linux names a replaced binary
/// `path (deleted)`).
pub(crate) fn program() -> io::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let text = exe.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(path) => path.into(),
        None => exe,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn nothing_handed_means_nothing_taken() {
        let handed = take(env(&[])).unwrap();
        assert!(handed.listeners.is_empty() && handed.ready.is_none() && !handed.by_restart);
    }

    #[test]
    fn descriptors_meant_for_another_process_are_left_alone() {
        // A drpc restart's variables seen by a process its successor
        // started: the parent is not the one that handed them over.
        let handed = take(env(&[
            (LISTEN_FDS, "2"),
            (READY_FD, "5"),
            (LISTEN_PARENT, "1"),
        ]))
        .unwrap();
        assert!(handed.listeners.is_empty() && handed.ready.is_none());
        // systemd's, for another pid.
        let handed = take(env(&[(SYSTEMD_FDS, "2"), (SYSTEMD_PID, "1")])).unwrap();
        assert!(handed.listeners.is_empty());
    }

    #[test]
    fn bad_counts_are_refused_with_the_variable_named() {
        let parent = std::os::unix::process::parent_id().to_string();
        let err = take(env(&[(LISTEN_FDS, "lots"), (LISTEN_PARENT, &parent)]))
            .err()
            .unwrap();
        assert!(err.to_string().contains("DRPC_LISTEN_FDS"), "{err}");
    }
}
