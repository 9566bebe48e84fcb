//! One connection of a session. A dialed session that loses its connection
//! redials and gets a new one behind the same `Session` handle; everything
//! here belongs to one connection and ends with it.

use crate::early::Early;
use crate::outbox::Outbox;
use crate::Status;
use drpc_socket::Addr;
use std::sync::OnceLock;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) struct Conn {
    pub(crate) local: Addr,
    pub(crate) peer: Addr,
    /// The write queue of this connection's writer.
    pub(crate) outbox: Outbox,
    /// Running call and push handlers, so a graceful close can wait for them.
    pub(crate) handlers: TaskTracker,
    /// Cancels running handlers when a close cannot wait for them, or the
    /// connection is lost (their replies could go nowhere).
    pub(crate) abort_handlers: CancellationToken,
    /// Asks the driver to drop this connection, as if it broke, for
    /// `drop_reason`.
    pub(crate) drop_requested: CancellationToken,
    pub(crate) drop_reason: OnceLock<Status>,
    /// The peer's notice about this connection: it is shutting down (102),
    /// or it refused the connection (503).
    pub(crate) notice: OnceLock<Status>,
    pub(crate) notice_signal: CancellationToken,
    /// Calls and pushes held until the connection's hooks pass.
    pub(crate) early: Early,
}

impl Conn {
    pub(crate) fn new(local: Addr, peer: Addr, outbox: Outbox) -> Self {
        Self {
            local,
            peer,
            outbox,
            handlers: TaskTracker::new(),
            abort_handlers: CancellationToken::new(),
            drop_requested: CancellationToken::new(),
            drop_reason: OnceLock::new(),
            notice: OnceLock::new(),
            notice_signal: CancellationToken::new(),
            early: Early::default(),
        }
    }
}
