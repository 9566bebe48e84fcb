//! What a process started by a restart (or by systemd's socket
//! activation) finds in its environment, and what a restart puts there.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// How many listening sockets a restart handed over, from fd 3 on.
pub(crate) const LISTEN_FDS: &str = "DRPC_LISTEN_FDS";
/// The fd on which the new process reports that it is ready.
pub(crate) const READY_FD: &str = "DRPC_READY_FD";
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
    let (listeners, by_restart) = match count(LISTEN_FDS)? {
        Some(n) => (n, true),
        // systemd's, when they are meant for this process.
        None => match var(SYSTEMD_PID).and_then(|p| p.trim().parse::<u32>().ok()) {
            Some(pid) if pid == std::process::id() => (count(SYSTEMD_FDS)?.unwrap_or(0), false),
            _ => (0, false),
        },
    };
    let ready = var(READY_FD)
        .map(|v| {
            v.trim()
                .parse::<RawFd>()
                .ok()
                .filter(|fd| *fd >= FIRST_FD)
                .ok_or_else(|| invalid(format!("{READY_FD}={v:?} is not a descriptor")))
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
