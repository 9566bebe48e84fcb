//! The only code that spawns tasks, waits on sockets and timers: each
//! session's supervisor (its connections, redials and close), the reader
//! and writer of a connection, dispatch to handlers, and setting a session
//! up.

pub(crate) mod connection;
pub(crate) mod dispatch;
pub(crate) mod establish;
pub(crate) mod hooks;
mod read;
pub(crate) mod supervisor;
pub(crate) mod writer;
